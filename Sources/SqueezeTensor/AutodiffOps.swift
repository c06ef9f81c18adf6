/// The differentiable operations: each runs the forward kernel and records
/// a node whose closure captures only what its backward reads.
extension Tape: TensorOperations {
    public func tensor(_ value: Variable) -> Tensor { value.value }

    public func matmul(_ a: Variable, _ b: Variable, transposeA: Bool, transposeB: Bool, alpha: Float) -> Variable {
        let backend = self.backend
        let output = backend.matmul(a.value, b.value, transposeA: transposeA, transposeB: transposeB, alpha: alpha)
        let needA = a.requiresGradient, needB = b.requiresGradient
        let aValue = needB ? a.value : nil
        let bValue = needA ? b.value : nil
        let bShared = b.value.rank == 2 && a.value.rank > 2
        return record(output, inputs: [a, b]) { gradient in
            var gradA: Tensor?
            var gradB: Tensor?
            if let bValue {
                // d op(A) = dC · op(B)ᵀ; transposed back when A was used transposed.
                let product = backend.matmul(gradient, bValue, transposeA: false, transposeB: !transposeB, alpha: alpha)
                gradA = transposeA ? product.transposed(product.rank - 2, product.rank - 1) : product
            }
            if let aValue {
                gradB = Tape.matmulGradientB(
                    backend, a: aValue, gradient: gradient, transposeA: transposeA, transposeB: transposeB,
                    alpha: alpha, shared: bShared)
            }
            return [gradA, gradB]
        }
    }

    /// `d op(B) = op(A)ᵀ · dC` (transposed back when B was used transposed).
    /// A weight shared by every batch gets the sum over batches: one GEMM
    /// over the flattened rows when `A` is not transposed.
    private static func matmulGradientB(
        _ backend: any Backend, a: Tensor, gradient: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float, shared: Bool
    ) -> Tensor {
        var a = a
        var gradient = gradient
        if shared && !transposeA {
            a = a.reshaped([-1, a.shape[a.rank - 1]])
            gradient = gradient.reshaped([-1, gradient.shape[gradient.rank - 1]])
        }
        var result = transposeB
            ? backend.matmul(gradient, a, transposeA: true, transposeB: transposeA, alpha: alpha)
            : backend.matmul(a, gradient, transposeA: !transposeA, transposeB: false, alpha: alpha)
        if result.rank > 2 && shared {
            result = backend.sum(result, axes: Array(0..<(result.rank - 2)), keepDimensions: false)
        }
        return result
    }

    public func linear(_ x: Variable, weight: Variable, bias: Variable?) -> Variable {
        let backend = self.backend
        let output = backend.linear(x.value, weight: weight.value, bias: bias?.value)
        let needX = x.requiresGradient, needWeight = weight.requiresGradient
        let needBias = bias?.requiresGradient ?? false
        let xValue = needWeight ? x.value : nil
        let weightValue = needX ? weight.value : nil
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        return record(output, inputs: inputs) { gradient in
            let outFeatures = gradient.shape[gradient.rank - 1]
            var result: [Tensor?] = [nil, nil]
            if let weightValue {
                result[0] = backend.matmul(gradient, weightValue, transposeA: false, transposeB: false, alpha: 1)
            }
            if let xValue {
                let rows = xValue.reshaped([-1, xValue.shape[xValue.rank - 1]])
                result[1] = backend.matmul(
                    gradient.reshaped([-1, outFeatures]), rows, transposeA: true, transposeB: false, alpha: 1)
            }
            if bias != nil {
                result.append(needBias ? Tape.sumToLastAxis(backend, gradient) : nil)
            }
            return result
        }
    }

    public func add(_ a: Variable, _ b: Variable) -> Variable {
        let backend = self.backend
        let shapeA = a.shape, shapeB = b.shape
        return record(backend.add(a.value, b.value), inputs: [a, b]) { gradient in
            [Tape.reduce(backend, gradient, to: shapeA), Tape.reduce(backend, gradient, to: shapeB)]
        }
    }

    public func subtract(_ a: Variable, _ b: Variable) -> Variable {
        let backend = self.backend
        let shapeA = a.shape, shapeB = b.shape
        let needB = b.requiresGradient
        return record(backend.subtract(a.value, b.value), inputs: [a, b]) { gradient in
            let gradB = needB ? backend.affine(Tape.reduce(backend, gradient, to: shapeB), scale: -1, shift: 0) : nil
            return [Tape.reduce(backend, gradient, to: shapeA), gradB]
        }
    }

    public func multiply(_ a: Variable, _ b: Variable) -> Variable {
        let backend = self.backend
        let shapeA = a.shape, shapeB = b.shape
        let aValue = b.requiresGradient ? a.value : nil
        let bValue = a.requiresGradient ? b.value : nil
        return record(backend.multiply(a.value, b.value), inputs: [a, b]) { gradient in
            [
                bValue.map { Tape.reduce(backend, backend.multiply(gradient, $0), to: shapeA) },
                aValue.map { Tape.reduce(backend, backend.multiply(gradient, $0), to: shapeB) },
            ]
        }
    }

    public func affine(_ x: Variable, scale: Float, shift: Float) -> Variable {
        let backend = self.backend
        return record(backend.affine(x.value, scale: scale, shift: shift), inputs: [x]) { gradient in
            [backend.affine(gradient, scale: scale, shift: 0)]
        }
    }

    public func gelu(_ x: Variable) -> Variable {
        let backend = self.backend
        let (output, derivative) = backend.geluWithDerivative(x.value)
        return record(output, inputs: [x]) { gradient in
            [backend.multiply(gradient, derivative)]
        }
    }

    public func tanh(_ x: Variable) -> Variable {
        let backend = self.backend
        let output = backend.tanh(x.value)
        return record(output, inputs: [x]) { gradient in
            [backend.tanhBackward(output, gradient)]
        }
    }

    public func softmax(_ x: Variable) -> Variable {
        let backend = self.backend
        let output = backend.softmax(x.value)
        return record(output, inputs: [x]) { gradient in
            [backend.softmaxBackward(output, gradient)]
        }
    }

    public func logSoftmax(_ x: Variable) -> Variable {
        let backend = self.backend
        let output = backend.logSoftmax(x.value)
        return record(output, inputs: [x]) { gradient in
            [backend.logSoftmaxBackward(output, gradient)]
        }
    }

    public func layerNorm(_ x: Variable, gamma: Variable, beta: Variable, epsilon: Float) -> Variable {
        let backend = self.backend
        let result = backend.layerNorm(x.value, gamma: gamma.value, beta: beta.value, epsilon: epsilon)
        let input = x.value, gammaValue = gamma.value
        let mean = result.mean, inverseStd = result.inverseStd
        return record(result.output, inputs: [x, gamma, beta]) { gradient in
            let gradients = backend.layerNormBackward(gradient, input, gamma: gammaValue, mean: mean, inverseStd: inverseStd)
            return [gradients.input, gradients.gamma, gradients.beta]
        }
    }

    public func maskedLayerNorm(_ x: Variable, columnMask: Tensor, gamma: Variable, beta: Variable, epsilon: Float) -> Variable {
        let backend = self.backend
        let result = backend.maskedLayerNorm(x.value, columnMask: columnMask, gamma: gamma.value, beta: beta.value, epsilon: epsilon)
        let input = x.value, gammaValue = gamma.value
        let mean = result.mean, inverseStd = result.inverseStd
        return record(result.output, inputs: [x, gamma, beta]) { gradient in
            let gradients = backend.maskedLayerNormBackward(
                gradient, input, columnMask: columnMask, gamma: gammaValue, mean: mean, inverseStd: inverseStd)
            return [gradients.input, gradients.gamma, gradients.beta]
        }
    }

    public func gather(_ table: Variable, ids: Tensor) -> Variable {
        let backend = self.backend
        let rows = table.shape[0]
        return record(backend.gather(table.value, ids), inputs: [table]) { gradient in
            [backend.scatterAdd(gradient, ids, rows: rows)]
        }
    }

    public func maskedFill(_ x: Variable, mask: Tensor, value: Float) -> Variable {
        let backend = self.backend
        return record(backend.maskedFill(x.value, mask: mask, value: value), inputs: [x]) { gradient in
            [backend.maskedFill(gradient, mask: mask, value: 0)]
        }
    }

    /// Inverted dropout. The mask is not saved: the backward draws it again
    /// from the same `(seed, stream)` (the backend's dropout is a pure
    /// function of them), which saves one activation-sized tensor per site.
    public func dropout(_ x: Variable, probability: Float) -> Variable {
        guard let seed = dropoutSeed, probability > 0 else { return x }
        let backend = self.backend
        let stream = takeDropoutStream()
        let output = backend.dropout(x.value, probability: probability, seed: seed, stream: stream).output
        return record(output, inputs: [x]) { gradient in
            [backend.dropout(gradient, probability: probability, seed: seed, stream: stream).output]
        }
    }

    public func reshape(_ x: Variable, _ shape: [Int]) -> Variable {
        let original = x.shape
        return record(x.value.reshaped(shape), inputs: [x]) { gradient in
            [gradient.reshaped(original)]
        }
    }

    public func transpose(_ x: Variable, _ first: Int, _ second: Int) -> Variable {
        record(x.value.transposed(first, second), inputs: [x]) { gradient in
            [gradient.transposed(first, second)]
        }
    }

    public func slice(_ x: Variable, axis: Int, _ range: Range<Int>) -> Variable {
        let original = x.shape
        return record(x.value.sliced(axis: axis, range), inputs: [x]) { gradient in
            [Tape.embed(gradient, in: original, axis: axis, at: range.lowerBound)]
        }
    }

    public func sum(_ x: Variable, axes: [Int], keepDimensions: Bool) -> Variable {
        let backend = self.backend
        let original = x.shape
        let kept = Tape.keptShape(original, axes: axes)
        return record(backend.sum(x.value, axes: axes, keepDimensions: keepDimensions), inputs: [x]) { gradient in
            [backend.add(Tensor(zeros: original), gradient.reshaped(kept))]
        }
    }

    public func mean(_ x: Variable, axes: [Int], keepDimensions: Bool) -> Variable {
        let backend = self.backend
        let original = x.shape
        let kept = Tape.keptShape(original, axes: axes)
        let reduced = original.reduce(1, *) / Swift.max(kept.reduce(1, *), 1)
        let scale = reduced == 0 ? 0 : 1 / Float(reduced)
        return record(backend.mean(x.value, axes: axes, keepDimensions: keepDimensions), inputs: [x]) { gradient in
            [backend.add(Tensor(zeros: original), backend.affine(gradient.reshaped(kept), scale: scale, shift: 0))]
        }
    }

    public func crossEntropy(_ logits: Variable, labels: Tensor) -> Variable {
        let backend = self.backend
        let result = backend.crossEntropy(logits.value, labels: labels)
        let probabilities = result.probabilities
        return record(result.loss, inputs: [logits]) { gradient in
            [backend.crossEntropyBackward(probabilities: probabilities, labels: labels, dLoss: gradient.scalarValue)]
        }
    }

    // MARK: Helpers

    /// The broadcast backward: `gradient` summed down to `shape` (itself when equal).
    static func reduce(_ backend: any Backend, _ gradient: Tensor, to shape: [Int]) -> Tensor {
        gradient.shape == shape ? gradient : backend.reduce(gradient, toShape: shape)
    }

    /// Sum over every axis but the last (a bias gradient).
    static func sumToLastAxis(_ backend: any Backend, _ gradient: Tensor) -> Tensor {
        gradient.rank == 1 ? gradient : backend.sum(gradient, axes: Array(0..<(gradient.rank - 1)), keepDimensions: false)
    }

    /// `shape` with the reduced `axes` (negative from the end) set to 1.
    static func keptShape(_ shape: [Int], axes: [Int]) -> [Int] {
        var kept = shape
        for axis in axes { kept[axis < 0 ? axis + shape.count : axis] = 1 }
        return kept
    }

    /// A zero tensor of `shape` holding `part` at `start` along `axis`.
    static func embed(_ part: Tensor, in shape: [Int], axis: Int, at start: Int) -> Tensor {
        var result = Tensor(zeros: shape)
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        let partLength = part.shape[axis] * inner
        let fullLength = shape[axis] * inner
        part.withUnsafeFloats { source in
            result.withUnsafeMutableFloats { target in
                guard let from = source.baseAddress, let to = target.baseAddress else { return }
                for block in 0..<outer {
                    (to + block * fullLength + start * inner).update(from: from + block * partLength, count: partLength)
                }
            }
        }
        return result
    }
}
