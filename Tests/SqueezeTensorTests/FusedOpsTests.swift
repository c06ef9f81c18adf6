import Testing
@testable import SqueezeTensor

/// The CPU backend's fused kernels against the reference's compositions of
/// plain ops, on odd sizes (every vector tail) and strided inputs, and their
/// bit-for-bit independence of the thread count.
@Suite struct FusedOpsTests {
    let cpu = CPUBackend(threads: 2)
    let reference = ReferenceBackend()

    @Test func linearWithBiasMatchesReference() {
        var generator = SeededGenerator(seed: 401)
        for (rows, inputs, outputs) in [(1, 1, 1), (7, 13, 5), (2 * 37, 50, 70), (129, 33, 200)] {
            for layout in Layout.allCases {
                let x = randomTensor([2, rows, inputs], layout, &generator)
                let weight = randomTensor([outputs, inputs], layout == .transposed ? .sliced : .transposed, &generator)
                let bias = randomTensor([outputs], .sliced, &generator)
                expectClose(
                    cpu.linear(x, weight: weight, bias: bias), reference.linear(x, weight: weight, bias: bias),
                    "linear \(x.shape)·\(weight.shape)ᵀ \(layout)")
                expectClose(
                    cpu.linear(x, weight: weight, bias: nil), reference.linear(x, weight: weight, bias: nil),
                    "linear without bias \(x.shape)")
            }
        }
    }

    @Test func geluWithDerivativeMatchesGeluAndItsBackward() {
        var generator = SeededGenerator(seed: 402)
        for shape in [[1], [7], [13, 33], [5, 200]] {
            let x = randomTensor(shape, .sliced, in: -6..<6, &generator)
            let ones = Tensor(shape: shape, floats: [Float](repeating: 1, count: x.count))
            let (output, derivative) = cpu.geluWithDerivative(x)
            #expect(bits(output) == bits(cpu.gelu(x)), "gelu \(shape)")
            #expect(bits(derivative) == bits(cpu.geluBackward(x, ones)), "derivative \(shape)")
            let expected = reference.geluWithDerivative(x)
            expectClose(output, expected.output, "gelu \(shape)")
            expectClose(derivative, expected.derivative, "derivative \(shape)")
        }
    }

    @Test(arguments: [0, 0.25] as [Float])
    func residualLayerNormMatchesReference(dropout: Float) {
        var generator = SeededGenerator(seed: 403)
        let parameters = dropout > 0 ? DropoutParameters(probability: dropout, seed: 9, stream: 4) : nil
        for shape in [[1, 1], [13, 33], [3, 70, 129], [2, 5, 64]] {
            let columns = shape[shape.count - 1]
            let x = randomTensor(shape, .transposed, in: -2..<2, &generator)
            let residual = randomTensor(shape, .sliced, in: -2..<2, &generator)
            let gamma = randomTensor([columns], .contiguous, in: 0.5..<1.5, &generator)
            let beta = randomTensor([columns], .contiguous, &generator)
            let fast = cpu.residualLayerNorm(x, residual: residual, gamma: gamma, beta: beta, epsilon: 1e-5, dropout: parameters)
            let slow = reference.residualLayerNorm(
                x, residual: residual, gamma: gamma, beta: beta, epsilon: 1e-5, dropout: parameters)
            #expect(bits(fast.sum) == bits(slow.sum), "sum \(shape): same masks, same rounding")
            expectClose(fast.output, slow.output, "output \(shape)")
            expectClose(fast.mean, slow.mean, absolute: 1e-6, "mean \(shape)")
            expectClose(fast.inverseStd, slow.inverseStd, "1/σ \(shape)")

            let dy = randomTensor(shape, .transposed, &generator)
            let fastGradients = cpu.residualLayerNormBackward(
                dy, sum: slow.sum, gamma: gamma, mean: slow.mean, inverseStd: slow.inverseStd, dropout: parameters)
            let slowGradients = reference.residualLayerNormBackward(
                dy, sum: slow.sum, gamma: gamma, mean: slow.mean, inverseStd: slow.inverseStd, dropout: parameters)
            expectClose(fastGradients.input, slowGradients.input, "dx \(shape)")
            expectClose(fastGradients.residual, slowGradients.residual, "d residual \(shape)")
            expectClose(fastGradients.gamma, slowGradients.gamma, "dγ \(shape)")
            expectClose(fastGradients.beta, slowGradients.beta, "dβ \(shape)")
        }
    }

    /// Queries, keys and values as the model makes them: heads split out of
    /// one `[B, T, H·d]` projection, i.e. `[B, H, T, d]` views with row stride H·d.
    private static func heads(_ batch: Int, _ heads: Int, _ rows: Int, _ depth: Int, _ generator: inout SeededGenerator) -> Tensor {
        Tensor.uniform(shape: [batch, rows, heads, depth], in: -1..<1, generator: &generator).transposed(1, 2)
    }

    @Test(arguments: [0, 0.2] as [Float])
    func attentionMatchesReference(dropout: Float) {
        var generator = SeededGenerator(seed: 404)
        let parameters = dropout > 0 ? DropoutParameters(probability: dropout, seed: 3, stream: 8) : nil
        let cases: [(batch: Int, heads: Int, queries: Int, keys: Int, depth: Int, valueDepth: Int)] = [
            (1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 6, 9), (2, 2, 17, 17, 16, 16), (1, 2, 64, 64, 32, 32),
        ]
        for c in cases {
            let q = Self.heads(c.batch, c.heads, c.queries, c.depth, &generator)
            let k = Self.heads(c.batch, c.heads, c.keys, c.depth, &generator)
            let v = randomTensor([c.batch, c.heads, c.keys, c.valueDepth], .transposed, &generator)
            var maskValues = [Float](repeating: 0, count: c.batch * c.keys)
            maskValues[maskValues.count - 1] = -1e9
            let bias = Tensor(shape: [c.batch, 1, 1, c.keys], floats: maskValues)
            let what = "attention \(c)"
            let fast = cpu.attention(query: q, key: k, value: v, bias: bias, scale: 0.3, dropout: parameters)
            let slow = reference.attention(query: q, key: k, value: v, bias: bias, scale: 0.3, dropout: parameters)
            #expect(fast.output.shape == [c.batch, c.queries, c.heads, c.valueDepth], "\(what): output layout")
            expectClose(fast.output, slow.output, what)
            expectClose(fast.probabilities, slow.probabilities, what)

            let gradient = Self.heads(c.batch, c.heads, c.queries, c.valueDepth, &generator)
            let fastGradients = cpu.attentionBackward(
                gradient, query: q, key: k, value: v, probabilities: slow.probabilities, scale: 0.3, dropout: parameters,
                wantQuery: true, wantKey: true, wantValue: true)
            let slowGradients = reference.attentionBackward(
                gradient, query: q, key: k, value: v, probabilities: slow.probabilities, scale: 0.3, dropout: parameters,
                wantQuery: true, wantKey: true, wantValue: true)
            for (name, a, b) in [
                ("dq", fastGradients.query, slowGradients.query), ("dk", fastGradients.key, slowGradients.key),
                ("dv", fastGradients.value, slowGradients.value),
            ] {
                guard let a, let b else {
                    Issue.record("\(what): \(name) missing")
                    continue
                }
                expectClose(a, b, "\(what) \(name)")
            }
            let onlyValue = cpu.attentionBackward(
                gradient, query: q, key: k, value: v, probabilities: slow.probabilities, scale: 0.3, dropout: parameters,
                wantQuery: false, wantKey: false, wantValue: true)
            #expect(onlyValue.query == nil && onlyValue.key == nil)
            #expect(onlyValue.value.map(bits) == fastGradients.value.map(bits), "\(what): dv alone")
        }
    }

    @Test func fusedOpsAreBitIdenticalAcrossThreadCounts() {
        var generator = SeededGenerator(seed: 405)
        let x = randomTensor([3, 70, 129], .contiguous, &generator)
        let residual = randomTensor([3, 70, 129], .contiguous, &generator)
        let gamma = randomTensor([129], .contiguous, &generator)
        let weight = randomTensor([150, 129], .contiguous, &generator)
        let bias = randomTensor([150], .contiguous, &generator)
        let q = Self.heads(4, 3, 33, 16, &generator)
        let k = Self.heads(4, 3, 33, 16, &generator)
        let v = Self.heads(4, 3, 33, 16, &generator)
        let dropout = DropoutParameters(probability: 0.1, seed: 1, stream: 2)
        func outputs(_ backend: CPUBackend) -> [[UInt32]] {
            let norm = backend.residualLayerNorm(x, residual: residual, gamma: gamma, beta: gamma, epsilon: 1e-5, dropout: dropout)
            let normBack = backend.residualLayerNormBackward(
                residual, sum: norm.sum, gamma: gamma, mean: norm.mean, inverseStd: norm.inverseStd, dropout: dropout)
            let attended = backend.attention(query: q, key: k, value: v, bias: nil, scale: 0.25, dropout: dropout)
            let back = backend.attentionBackward(
                q, query: q, key: k, value: v, probabilities: attended.probabilities, scale: 0.25, dropout: dropout,
                wantQuery: true, wantKey: true, wantValue: true)
            let gelu = backend.geluWithDerivative(x)
            return [
                bits(norm.output), bits(norm.sum), bits(normBack.input), bits(normBack.gamma),
                bits(attended.output), bits(attended.probabilities),
                back.query.map(bits) ?? [], back.key.map(bits) ?? [], back.value.map(bits) ?? [],
                bits(backend.linear(x, weight: weight, bias: bias)), bits(gelu.output), bits(gelu.derivative),
            ]
        }
        let first = outputs(CPUBackend(threads: 1))
        for threads in [2, 3] {
            let other = outputs(CPUBackend(threads: threads))
            for index in first.indices where first[index] != other[index] {
                Issue.record("fused output \(index) differs with \(threads) threads")
            }
        }
    }

    @Test func adamWGradientScaleIsClippingFoldedIn() {
        var generator = SeededGenerator(seed: 406)
        let shape = [33, 70]
        let gradient = randomTensor(shape, .contiguous, &generator)
        let start = randomTensor(shape, .contiguous, &generator)
        for backend in [cpu as any Backend, reference] {
            var scaledP = start, scaledM = Tensor(zeros: shape), scaledV = Tensor(zeros: shape)
            var clippedP = start, clippedM = Tensor(zeros: shape), clippedV = Tensor(zeros: shape)
            let clipped = backend.affine(gradient, scale: 0.3, shift: 0)
            backend.adamWUpdate(
                parameter: &scaledP, gradient: gradient, firstMoment: &scaledM, secondMoment: &scaledV,
                hyperparameters: AdamWHyperparameters(learningRate: 1e-2, weightDecay: 0.1, gradientScale: 0.3), step: 2)
            backend.adamWUpdate(
                parameter: &clippedP, gradient: clipped, firstMoment: &clippedM, secondMoment: &clippedV,
                hyperparameters: AdamWHyperparameters(learningRate: 1e-2, weightDecay: 0.1), step: 2)
            #expect(bits(scaledP) == bits(clippedP), "\(backend.id): parameter")
            #expect(bits(scaledM) == bits(clippedM) && bits(scaledV) == bits(clippedV), "\(backend.id): moments")
        }
    }

    @Test func dropoutWithoutMaskMatchesTheMaskedKernel() {
        var generator = SeededGenerator(seed: 407)
        let x = randomTensor([1000 + 5], .contiguous, &generator)
        let (output, mask) = cpu.dropout(x, probability: 0.3, seed: 2, stream: 5)
        #expect(bits(output) == bits(cpu.multiply(x, mask)))
        let parameters = DropoutParameters(probability: 0.3, seed: 2, stream: 5)
        let zeros = Tensor(zeros: x.shape)
        let viaFused = cpu.residualLayerNorm(
            x.reshaped([1, 1005]), residual: zeros.reshaped([1, 1005]), gamma: Tensor(shape: [1005], floats: .init(repeating: 1, count: 1005)),
            beta: zeros, epsilon: 1e-5, dropout: parameters)
        // Equal values (adding the zero residual turns −0 into +0).
        let mismatches = zip(viaFused.sum.floats, output.floats).filter { $0 != $1 }.count
        #expect(mismatches == 0, "the fused dropout draws the same mask")
    }
}

@Suite struct BufferPoolTests {
    @Test func sizeClassesArePagesAndCloseToTheRequest() {
        var previous = 0
        for request in stride(from: 1, through: 64 << 20, by: 4093) {
            let capacity = BufferPool.capacity(for: request)
            #expect(capacity >= request && capacity % 4096 == 0)
            #expect(capacity <= request + Swift.max(4096, request / 8), "class \(capacity) for \(request)")
            #expect(capacity >= previous)
            previous = capacity
        }
    }

    @Test func recycledBuffersAreZeroedForZeroTensors() {
        let count = BufferPool.minimumBytes / 4 * 3
        for _ in 0..<3 {
            var dirty = Tensor(storage: TensorStorage(uninitializedByteCount: count * 4), dtype: .f32, shape: [count])
            dirty.withUnsafeMutableFloats { $0.update(repeating: 7) }
        }
        let zeros = Tensor(zeros: [count])
        #expect(zeros.floats.allSatisfy { $0 == 0 })
    }

    @Test func cacheStaysWithinItsLimit() {
        let pool = BufferPool(cacheLimit: 3 * 4096)
        let buffers = (0..<5).map { _ in pool.take(capacity: 4096) }
        #expect(buffers.allSatisfy { $0.fresh })
        for buffer in buffers { pool.give(buffer.pointer, capacity: 4096) }
        #expect(pool.cachedBytes == 3 * 4096)
        let again = pool.take(capacity: 4096)
        #expect(!again.fresh && pool.cachedBytes == 2 * 4096)
        pool.give(again.pointer, capacity: 4096)
        pool.trim()
        #expect(pool.cachedBytes == 0)
    }
}
