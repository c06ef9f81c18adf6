/// The int8 ops' specification: plain loops, sums in `Int64`.
extension ReferenceBackend {
    public func activationRange(_ x: Tensor, perRow: Bool) -> ActivationRange {
        x.requireFloat("activationRange")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        let values = x.floats
        let groups = perRow ? rows : 1
        let span = perRow ? columns : values.count
        var minimums = [Float](repeating: 0, count: groups)
        var maximums = [Float](repeating: 0, count: groups)
        for group in 0..<groups {
            for value in values[(group * span)..<((group + 1) * span)] where value.isFinite {
                minimums[group] = Swift.min(minimums[group], value)
                maximums[group] = Swift.max(maximums[group], value)
            }
        }
        return ActivationRange(minimums: minimums, maximums: maximums)
    }

    public func quantize(_ x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        x.requireFloat("quantize")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        quantization.requireRows(rows, "quantize")
        let values = x.floats
        var out = [UInt8](repeating: 0, count: values.count)
        let columnInverses = quantization.channelMultipliers == nil ? nil : quantization.columnInverseScales(columns, "quantize")
        for row in 0..<rows {
            let (scale, zero) = quantization.parameters(row: row)
            for column in 0..<columns {
                let index = row * columns + column
                let inverse = columnInverses?[column] ?? 1 / scale
                out[index] = Self.quantized(values[index], inverseScale: inverse, zero: zero, range: quantization.range)
            }
        }
        return Tensor(shape: x.shape, uint8s: out)
    }

    public func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        output: QuantizedLinearOutput
    ) -> Tensor {
        let (rows, n, k) = Self.checkQuantizedLinear(x, quantization, weights, bias, output)
        let activations = x.uint8s
        let w = weights.values.int8s
        let biasValues = bias?.floats
        var sums = [Int32](repeating: 0, count: rows * n)
        var floats = [Float](repeating: 0, count: rows * n)
        var bytes = [UInt8](repeating: 0, count: rows * n)
        for row in 0..<rows {
            let (scale, zero) = quantization.parameters(row: row)
            for column in 0..<n {
                var total: Int64 = 0
                var corrected: Int64 = 0
                for index in 0..<k {
                    let a = Int64(activations[row * k + index])
                    let b = Int64(w[column * k + index])
                    total += a * b
                    corrected += (a - Int64(zero)) * b
                }
                let at = row * n + column
                sums[at] = Int32(total)
                let y = (biasValues?[column] ?? 0).addingProduct(Float(corrected), scale * weights.scales[column])
                floats[at] = y
                if case .quantized(let target) = output {
                    let (outScale, outZero) = target.parameters(row: 0)
                    bytes[at] = Self.quantized(y, inverseScale: 1 / outScale, zero: outZero, range: target.range)
                }
            }
        }
        let shape = Array(x.shape.dropLast()) + [n]
        switch output {
        case .accumulators: return Tensor(shape: shape, int32s: sums)
        case .float: return Tensor(shape: shape, floats: floats)
        case .quantized: return Tensor(shape: shape, uint8s: bytes)
        }
    }

    /// `clamp(round(x · inverseScale) + zero, range)`, half to even; NaN gives the range's lower end.
    static func quantized(_ x: Float, inverseScale: Float, zero: Int32, range: ClosedRange<Int32>) -> UInt8 {
        let low = Float(range.lowerBound - zero)
        let high = Float(range.upperBound - zero)
        var v = x * inverseScale
        v = v > low ? v : low
        v = v < high ? v : high
        return UInt8(Int32(v.rounded(.toNearestOrEven)) + zero)
    }

    /// Validates the operands of `quantizedLinear(quantized:…)`; returns (rows, N, K).
    static func checkQuantizedLinear(
        _ x: Tensor, _ quantization: ActivationQuantization, _ weights: PackedInt8Weights, _ bias: Tensor?,
        _ output: QuantizedLinearOutput
    ) -> (rows: Int, n: Int, k: Int) {
        precondition(x.dtype == .u8, "quantizedLinear: activations must be u8, got \(x.dtype)")
        let (rows, k) = Shapes.rowsAndColumns(x.shape)
        precondition(k == weights.inputCount, "quantizedLinear: activations \(x.shape) for weights [\(weights.outputCount), \(weights.inputCount)]")
        quantization.requireRows(rows, "quantizedLinear")
        if let bias {
            bias.requireFloat("quantizedLinear")
            precondition(bias.shape == [weights.outputCount], "quantizedLinear: bias \(bias.shape) for \(weights.outputCount) outputs")
        }
        if case .quantized(let target) = output {
            precondition(!target.isPerRow, "quantizedLinear: output quantisation must be per tensor")
            target.requireNoChannelMultipliers("quantizedLinear(output: .quantized)")
        }
        return (rows, weights.outputCount, k)
    }
}

/// The fused int8 ops' specification: the compositions they stand for.
extension ReferenceBackend {
    public func quantize(geluOf x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        quantization.requireNoChannelMultipliers("quantize(geluOf:)")
        return quantize(gelu(x), quantization)
    }

    public func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        geluCodes: ActivationQuantization
    ) -> Tensor {
        let product = quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: .float)
        return quantize(geluOf: product, geluCodes)
    }

    public func quantizedLinear(_ x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?) -> Tensor {
        quantizedLinear(quantized: quantize(x, quantization), quantization: quantization, weights: weights, bias: bias, output: .float)
    }
}
