/// The fused ops' specification: each is the composition of core ops it
/// stands for, so its numerics are those ops'.
extension ReferenceBackend {
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let product = matmul(x, weight, transposeA: false, transposeB: true, alpha: 1)
        guard let bias else { return product }
        return add(product, bias)
    }

    public func geluWithDerivative(_ x: Tensor) -> (output: Tensor, derivative: Tensor) {
        let ones = Tensor(shape: x.shape, floats: [Float](repeating: 1, count: x.count))
        return (gelu(x), geluBackward(x, ones))
    }

    public func residualLayerNorm(
        _ x: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, dropout: DropoutParameters?
    ) -> ResidualLayerNormResult {
        precondition(x.shape == residual.shape, "residualLayerNorm: x \(x.shape) vs residual \(residual.shape)")
        let dropped = dropout.map { self.dropout(x, probability: $0.probability, seed: $0.seed, stream: $0.stream).output } ?? x
        let sum = add(dropped, residual)
        let normalized = layerNorm(sum, gamma: gamma, beta: beta, epsilon: epsilon)
        return ResidualLayerNormResult(
            output: normalized.output, sum: sum, mean: normalized.mean, inverseStd: normalized.inverseStd)
    }

    public func residualLayerNormBackward(
        _ dy: Tensor, sum: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, dropout: DropoutParameters?
    ) -> ResidualLayerNormGradients {
        let gradients = layerNormBackward(dy, sum, gamma: gamma, mean: mean, inverseStd: inverseStd)
        let input = dropout.map {
            self.dropout(gradients.input, probability: $0.probability, seed: $0.seed, stream: $0.stream).output
        } ?? gradients.input
        return ResidualLayerNormGradients(
            input: input, residual: gradients.input, gamma: gradients.gamma, beta: gradients.beta)
    }

    public func attention(
        query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: DropoutParameters?
    ) -> AttentionResult {
        precondition(query.rank == 4 && key.rank == 4 && value.rank == 4, "attention: q, k, v must be [B, H, T, d]")
        var scores = matmul(query, key, transposeA: false, transposeB: true, alpha: scale)
        if let bias { scores = add(scores, bias) }
        let probabilities = softmax(scores)
        let dropped = dropout.map {
            self.dropout(probabilities, probability: $0.probability, seed: $0.seed, stream: $0.stream).output
        } ?? probabilities
        let context = matmul(dropped, value, transposeA: false, transposeB: false, alpha: 1)
        return AttentionResult(output: context.transposed(1, 2).contiguous(), probabilities: probabilities)
    }

    public func attentionBackward(
        _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, probabilities: Tensor, scale: Float,
        dropout: DropoutParameters?, wantQuery: Bool, wantKey: Bool, wantValue: Bool
    ) -> AttentionGradients {
        func dropped(_ x: Tensor) -> Tensor {
            guard let dropout else { return x }
            return self.dropout(x, probability: dropout.probability, seed: dropout.seed, stream: dropout.stream).output
        }
        let gradValue = wantValue
            ? matmul(dropped(probabilities), gradient, transposeA: true, transposeB: false, alpha: 1) : nil
        guard wantQuery || wantKey else { return AttentionGradients(query: nil, key: nil, value: gradValue) }
        let gradDropped = matmul(gradient, value, transposeA: false, transposeB: true, alpha: 1)
        let gradScores = softmaxBackward(probabilities, dropped(gradDropped))
        let gradQuery = wantQuery ? matmul(gradScores, key, transposeA: false, transposeB: false, alpha: scale) : nil
        let gradKey = wantKey ? matmul(gradScores, query, transposeA: true, transposeB: false, alpha: scale) : nil
        return AttentionGradients(query: gradQuery, key: gradKey, value: gradValue)
    }
}
