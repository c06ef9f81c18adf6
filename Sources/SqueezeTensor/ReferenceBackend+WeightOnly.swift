/// The weight-only product's specification: dequantise, then plain loops
/// with sums in `Double`.
extension ReferenceBackend {
    public func weightOnlyLinear(_ x: Tensor, weights: PackedGroupWeights, bias: Tensor?) -> Tensor {
        let (rows, n, k) = Self.checkWeightOnlyLinear(x, weights, bias)
        let activations = x.floats
        let w = weights.dequantized().floats
        let biasValues = bias?.floats
        var out = [Float](repeating: 0, count: rows * n)
        for row in 0..<rows {
            for column in 0..<n {
                var total = Double(biasValues?[column] ?? 0)
                for index in 0..<k {
                    total += Double(activations[row * k + index]) * Double(w[column * k + index])
                }
                out[row * n + column] = Float(total)
            }
        }
        return Tensor(shape: Array(x.shape.dropLast()) + [n], floats: out)
    }

    /// Validates the operands of `weightOnlyLinear`; returns (rows, N, K).
    static func checkWeightOnlyLinear(
        _ x: Tensor, _ weights: PackedGroupWeights, _ bias: Tensor?
    ) -> (rows: Int, n: Int, k: Int) {
        x.requireFloat("weightOnlyLinear")
        precondition(x.rank >= 1, "weightOnlyLinear: activations must be [..., K], got a scalar")
        let (rows, k) = Shapes.rowsAndColumns(x.shape)
        precondition(
            k == weights.inputCount,
            "weightOnlyLinear: activations \(x.shape) for weights [\(weights.outputCount), \(weights.inputCount)]")
        if let bias {
            bias.requireFloat("weightOnlyLinear")
            precondition(bias.shape == [weights.outputCount], "weightOnlyLinear: bias \(bias.shape) for \(weights.outputCount) outputs")
        }
        return (rows, weights.outputCount, k)
    }
}
