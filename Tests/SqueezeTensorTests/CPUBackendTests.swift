import Testing
@testable import SqueezeTensor

/// The CPU backend against the reference, op by op: odd sizes, size-1 axes,
/// broadcasting and strided (transposed, sliced) inputs.
@Suite struct CPUBackendTests {
    let cpu = CPUBackend(threads: 2)
    let reference = ReferenceBackend()

    static let elementShapes: [[Int]] = [[1], [7], [13, 33], [1, 129], [3, 1, 7], [2, 3, 5, 7], [5, 200]]
    static let rowShapes: [[Int]] = [[7], [1, 1], [13, 33], [3, 1, 129], [2, 5, 64], [4, 8]]

    // MARK: Matrix products

    @Test(arguments: [false, true], [false, true])
    func matmulMatchesReference(transposeA: Bool, transposeB: Bool) {
        var generator = SeededGenerator(seed: 11)
        let sizes: [(m: Int, k: Int, n: Int)] = [(1, 1, 1), (7, 13, 5), (33, 1, 129), (13, 33, 7), (1, 64, 1)]
        let batches: [[Int]] = [[], [3], [2, 3]]
        for (m, k, n) in sizes {
            for batch in batches {
                let aShape = batch + (transposeA ? [k, m] : [m, k])
                let bShape = batch + (transposeB ? [n, k] : [k, n])
                for layout in Layout.allCases {
                    let a = randomTensor(aShape, layout, &generator)
                    let b = randomTensor(bShape, layout == .transposed ? .sliced : .transposed, &generator)
                    let alpha: Float = layout == .sliced ? 0.5 : 1
                    expectClose(
                        cpu.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha),
                        reference.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha),
                        "matmul \(aShape)·\(bShape) \(layout)")
                    // A shared rank-2 right operand (a linear layer's weight).
                    let w = randomTensor(transposeB ? [n, k] : [k, n], layout, &generator)
                    expectClose(
                        cpu.matmul(a, w, transposeA: transposeA, transposeB: transposeB, alpha: alpha),
                        reference.matmul(a, w, transposeA: transposeA, transposeB: transposeB, alpha: alpha),
                        "shared matmul \(aShape)·\(w.shape) \(layout)")
                }
            }
        }
    }

    @Test(arguments: [false, true], [false, true])
    func matmulSplitIntoTilesMatchesReference(transposeA: Bool, transposeB: Bool) {
        // Products large enough to be cut into row tiles (m ≥ n) or column tiles.
        var generator = SeededGenerator(seed: 13)
        for (m, k, n) in [(300, 64, 40), (20, 128, 401), (129, 33, 129)] {
            let a = randomTensor(transposeA ? [k, m] : [m, k], .sliced, &generator)
            let b = randomTensor(transposeB ? [n, k] : [k, n], .transposed, &generator)
            expectClose(
                cpu.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: 1),
                reference.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: 1), "tiled \(m)×\(k)×\(n)")
            let batched = randomTensor([2] + (transposeA ? [k, m] : [m, k]), .contiguous, &generator)
            expectClose(
                cpu.matmul(batched, b, transposeA: transposeA, transposeB: transposeB, alpha: 1),
                reference.matmul(batched, b, transposeA: transposeA, transposeB: transposeB, alpha: 1),
                "tiled batch \(m)×\(k)×\(n)")
        }
    }

    @Test func matmulOnAttentionHeadViews() {
        // [B, T, H·D] split into heads [B, H, T, D] by reshape + transpose: used in place.
        var generator = SeededGenerator(seed: 12)
        let (batch, tokens, heads, width) = (2, 7, 3, 5)
        let q = randomTensor([batch, tokens, heads * width], .contiguous, &generator)
            .reshaped([batch, tokens, heads, width]).transposed(1, 2)
        let k = randomTensor([batch, tokens, heads * width], .contiguous, &generator)
            .reshaped([batch, tokens, heads, width]).transposed(1, 2)
        #expect(!q.isContiguous)
        expectClose(
            cpu.matmul(q, k, transposeA: false, transposeB: true, alpha: 0.25),
            reference.matmul(q, k, transposeA: false, transposeB: true, alpha: 0.25), "scores")
        let scores = randomTensor([batch, heads, tokens, tokens], .contiguous, &generator)
        expectClose(
            cpu.matmul(scores, q, transposeA: true, transposeB: false, alpha: 1),
            reference.matmul(scores, q, transposeA: true, transposeB: false, alpha: 1), "context")
        // A batch slice whose rows do not continue across batches (no folding).
        let gappy = randomTensor([3, 4, 6], .contiguous, &generator).sliced(axis: 1, 1..<3)
        let w = randomTensor([6, 5], .contiguous, &generator)
        expectClose(
            cpu.matmul(gappy, w, transposeA: false, transposeB: false, alpha: 1),
            reference.matmul(gappy, w, transposeA: false, transposeB: false, alpha: 1), "gappy batches")
    }

    @Test func matmulWithEmptyAxes() {
        let a = Tensor(zeros: [2, 0, 3])
        let b = Tensor(zeros: [3, 4])
        #expect(cpu.matmul(a, b, transposeA: false, transposeB: false, alpha: 1).shape == [2, 0, 4])
        let product = cpu.matmul(Tensor(zeros: [2, 0]), Tensor(zeros: [0, 3]), transposeA: false, transposeB: false, alpha: 1)
        #expect(product.floats == [Float](repeating: 0, count: 6))
    }

    // MARK: Element-wise

    @Test func broadcastingBinaryOpsMatchReference() {
        var generator = SeededGenerator(seed: 21)
        let pairs: [([Int], [Int])] = [
            ([7], [7]), ([13, 33], [33]), ([13, 33], [13, 1]), ([3, 1, 7], [1, 5, 1]), ([1], [2, 3]),
            ([2, 3, 5, 7], [3, 1, 7]), ([129], []), ([], []), ([2, 1, 1, 7], [2, 3, 5, 7]), ([5, 200], [5, 200]),
        ]
        for (aShape, bShape) in pairs {
            for layout in Layout.allCases {
                let a = randomTensor(aShape, layout, &generator)
                let b = randomTensor(bShape, layout == .sliced ? .transposed : .contiguous, &generator)
                expectClose(cpu.add(a, b), reference.add(a, b), "add \(aShape) \(bShape) \(layout)")
                expectClose(cpu.subtract(a, b), reference.subtract(a, b), "subtract \(aShape) \(bShape)")
                expectClose(cpu.subtract(b, a), reference.subtract(b, a), "subtract \(bShape) \(aShape)")
                expectClose(cpu.multiply(a, b), reference.multiply(a, b), "multiply \(aShape) \(bShape)")
            }
        }
    }

    @Test func unaryOpsMatchReference() {
        var generator = SeededGenerator(seed: 22)
        for shape in Self.elementShapes {
            for layout in Layout.allCases {
                let x = randomTensor(shape, layout, in: -6..<6, &generator)
                let dy = randomTensor(shape, .contiguous, &generator)
                let what = "\(shape) \(layout)"
                expectClose(cpu.affine(x, scale: -1.5, shift: 0.25), reference.affine(x, scale: -1.5, shift: 0.25), "affine \(what)")
                expectClose(cpu.gelu(x), reference.gelu(x), absolute: 2e-7, "gelu \(what)")
                expectClose(cpu.geluBackward(x, dy), reference.geluBackward(x, dy), absolute: 2e-7, "geluBackward \(what)")
                expectClose(cpu.tanh(x), reference.tanh(x), absolute: 1e-7, "tanh \(what)")
                let y = reference.tanh(x)
                expectClose(cpu.tanhBackward(y, dy), reference.tanhBackward(y, dy), "tanhBackward \(what)")
            }
        }
    }

    @Test func geluIsAccurateOverItsWholeRange() {
        // A dense sweep including both tails: absolute error ~1e-7 (a few ulp of the output).
        let values = (0..<4001).map { Float($0 - 2000) * 0.01 }
        let x = Tensor(shape: [values.count], floats: values)
        let ones = Tensor(shape: [values.count], floats: [Float](repeating: 1, count: values.count))
        expectClose(cpu.gelu(x), reference.gelu(x), relative: 1.2e-7, absolute: 1e-7, "gelu sweep")
        expectClose(cpu.geluBackward(x, ones), reference.geluBackward(x, ones), relative: 1.2e-7, absolute: 2e-7, "gelu' sweep")
        expectClose(cpu.tanh(x), reference.tanh(x), relative: 2e-7, absolute: 1e-8, "tanh sweep")
    }

    // MARK: Normalisation

    @Test func softmaxFamilyMatchesReference() {
        var generator = SeededGenerator(seed: 31)
        for shape in Self.rowShapes {
            for layout in Layout.allCases {
                var x = randomTensor(shape, layout, in: -8..<8, &generator)
                if let width = shape.last, width > 4 {
                    // Attention-style masking of every third column with a huge negative value.
                    let mask = Tensor(shape: [width], int32s: (0..<width).map { Int32($0 % 3 == 1 ? 1 : 0) })
                    x = reference.maskedFill(x, mask: mask, value: -1e9)
                }
                let dy = randomTensor(shape, .contiguous, &generator)
                let what = "\(shape) \(layout)"
                expectClose(cpu.softmax(x), reference.softmax(x), "softmax \(what)")
                expectClose(cpu.logSoftmax(x), reference.logSoftmax(x), "logSoftmax \(what)")
                let y = reference.softmax(x)
                expectClose(cpu.softmaxBackward(y, dy), reference.softmaxBackward(y, dy), "softmaxBackward \(what)")
                let logY = reference.logSoftmax(randomTensor(shape, layout, in: -3..<3, &generator))
                expectClose(cpu.logSoftmaxBackward(logY, dy), reference.logSoftmaxBackward(logY, dy), "logSoftmaxBackward \(what)")
            }
        }
    }

    @Test func layerNormMatchesReference() {
        var generator = SeededGenerator(seed: 32)
        for shape in Self.rowShapes + [[300, 129]] {
            let width = shape[shape.count - 1]
            for layout in Layout.allCases {
                let x = randomTensor(shape, layout, in: -3..<5, &generator)
                let gamma = randomTensor([width], .contiguous, in: 0.5..<1.5, &generator)
                let beta = randomTensor([width], .sliced, &generator)
                let what = "\(shape) \(layout)"
                let fast = cpu.layerNorm(x, gamma: gamma, beta: beta, epsilon: 1e-5)
                let slow = reference.layerNorm(x, gamma: gamma, beta: beta, epsilon: 1e-5)
                expectClose(fast.output, slow.output, "layerNorm \(what)")
                expectClose(fast.mean, slow.mean, "mean \(what)")
                expectClose(fast.inverseStd, slow.inverseStd, "inverseStd \(what)")
                let dy = randomTensor(shape, layout, &generator)
                let fastBack = cpu.layerNormBackward(dy, x, gamma: gamma, mean: slow.mean, inverseStd: slow.inverseStd)
                let slowBack = reference.layerNormBackward(dy, x, gamma: gamma, mean: slow.mean, inverseStd: slow.inverseStd)
                expectClose(fastBack.input, slowBack.input, relative: 2e-5, "layerNormBackward input \(what)")
                expectClose(fastBack.gamma, slowBack.gamma, "layerNormBackward gamma \(what)")
                expectClose(fastBack.beta, slowBack.beta, "layerNormBackward beta \(what)")
            }
        }
    }

    // MARK: Indexing and masking

    @Test func gatherAndScatterAddMatchReference() {
        var generator = SeededGenerator(seed: 41)
        for (rows, width, idShape) in [(13, 7, [3, 5]), (5, 129, [33]), (1, 1, [4]), (300, 300, [2, 50])] {
            let table = randomTensor([rows, width], .sliced, &generator)
            let ids = randomIDs(idShape, upper: rows, &generator)
            let picked = cpu.gather(table, ids)
            #expect(bits(picked) == bits(reference.gather(table, ids)))
            let dy = randomTensor(idShape + [width], .transposed, &generator)
            expectClose(cpu.scatterAdd(dy, ids, rows: rows), reference.scatterAdd(dy, ids, rows: rows), "scatterAdd \(rows)×\(width)")
        }
    }

    @Test func maskedFillMatchesReferenceForEveryMaskType() {
        var generator = SeededGenerator(seed: 42)
        let x = randomTensor([2, 3, 5, 7], .transposed, &generator)
        let pattern: [Int32] = (0..<14).map { Int32($0 % 3 == 0 ? 1 : 0) }
        let masks: [Tensor] = [
            Tensor(shape: [2, 1, 1, 7], int32s: pattern),
            Tensor(shape: [7], floats: [0, -0.0, 1, 0, 2, 0, -1]),
            Tensor(shape: [2, 3, 5, 7], int32s: (0..<210).map { Int32($0 % 2) }),
            u8Tensor([1, 7], [0, 1, 1, 0, 0, 0, 255]),
            Tensor(shape: [], int32s: [0]),
        ]
        for mask in masks {
            let fast = cpu.maskedFill(x, mask: mask, value: -1e4)
            #expect(bits(fast) == bits(reference.maskedFill(x, mask: mask, value: -1e4)), "mask \(mask)")
        }
        // −0.0 counts as zero.
        #expect(cpu.maskedFill(Tensor(shape: [2], floats: [5, 6]), mask: Tensor(shape: [2], floats: [-0.0, 1]), value: 9).floats == [5, 9])
    }

    private func u8Tensor(_ shape: [Int], _ values: [UInt8]) -> Tensor {
        var t = Tensor(zeros: shape, dtype: .u8)
        t.withUnsafeMutableElements(UInt8.self) { buffer in
            for (i, v) in values.enumerated() { buffer[i] = v }
        }
        return t
    }

    // MARK: Reductions

    @Test func reductionsMatchReference() {
        var generator = SeededGenerator(seed: 51)
        let cases: [([Int], [Int])] = [
            ([7], [0]), ([13, 33], [0]), ([13, 33], [1]), ([13, 33], [-1, 0]), ([3, 1, 7], [1]),
            ([2, 3, 5, 7], [0, 2]), ([2, 3, 5, 7], [1, 3]), ([2, 3, 5, 7], [1, 2]), ([4, 300], [0]),
            ([2, 3], []), ([600, 3], [0]),
        ]
        for (shape, axes) in cases {
            for layout in Layout.allCases {
                let x = randomTensor(shape, layout, &generator)
                for keep in [false, true] {
                    let what = "\(shape) axes \(axes) keep \(keep) \(layout)"
                    expectClose(cpu.sum(x, axes: axes, keepDimensions: keep), reference.sum(x, axes: axes, keepDimensions: keep), "sum \(what)")
                    expectClose(cpu.mean(x, axes: axes, keepDimensions: keep), reference.mean(x, axes: axes, keepDimensions: keep), "mean \(what)")
                }
                let sumsFast = cpu.sumOfSquares(x)
                let sumsSlow = reference.sumOfSquares(x)
                #expect(abs(sumsFast - sumsSlow) <= 1e-6 * sumsSlow, "sumOfSquares \(shape)")
            }
        }
    }

    @Test func reduceToShapeMatchesReference() {
        var generator = SeededGenerator(seed: 52)
        let cases: [([Int], [Int])] = [
            ([13, 33], [33]), ([13, 33], [13, 1]), ([13, 33], [1]), ([13, 33], []), ([2, 3, 5, 7], [3, 1, 7]),
            ([2, 3, 5, 7], [2, 1, 5, 1]), ([7], [7]), ([600, 3], [3]),
        ]
        for (gradientShape, target) in cases {
            let gradient = randomTensor(gradientShape, .sliced, &generator)
            expectClose(cpu.reduce(gradient, toShape: target), reference.reduce(gradient, toShape: target), "reduce \(gradientShape)→\(target)")
        }
    }

    @Test func maxMatchesReferenceIncludingTies() {
        var generator = SeededGenerator(seed: 53)
        for (shape, axis) in [([7], 0), ([13, 33], 1), ([13, 33], 0), ([2, 3, 5, 7], 2), ([3, 1, 7], -2)] {
            // Few distinct values, so ties are common.
            let values = (0..<shape.reduce(1, *)).map { _ in Float(generator.next() % 4) }
            let x = Tensor(shape: shape, floats: values)
            for keep in [false, true] {
                let fast = cpu.max(x, axis: axis, keepDimensions: keep)
                let slow = reference.max(x, axis: axis, keepDimensions: keep)
                #expect(fast.values.shape == slow.values.shape)
                #expect(fast.values.floats == slow.values.floats)
                #expect(fast.indices.int32s == slow.indices.int32s, "max indices \(shape) axis \(axis)")
            }
        }
    }

    // MARK: Training

    @Test func dropoutMatchesReferenceExactly() {
        var generator = SeededGenerator(seed: 61)
        for shape in [[7], [13, 33], [300, 257]] {
            let x = randomTensor(shape, .transposed, &generator)
            for p: Float in [0, 0.1, 0.5] {
                let fast = cpu.dropout(x, probability: p, seed: 5, stream: 9)
                let slow = reference.dropout(x, probability: p, seed: 5, stream: 9)
                #expect(bits(fast.mask) == bits(slow.mask), "dropout mask \(shape) p \(p)")
                #expect(bits(fast.output) == bits(slow.output), "dropout output \(shape) p \(p)")
            }
        }
    }

    @Test func crossEntropyMatchesReference() {
        var generator = SeededGenerator(seed: 62)
        for (rows, classes) in [(1, 1), (7, 2), (13, 33), (4, 129)] {
            let logits = randomTensor([rows, classes], .transposed, in: -10..<10, &generator)
            let labels = randomIDs([rows], upper: classes, &generator)
            let fast = cpu.crossEntropy(logits, labels: labels)
            let slow = reference.crossEntropy(logits, labels: labels)
            expectClose(fast.loss, slow.loss, absolute: 1e-6, "loss \(rows)×\(classes)")
            expectClose(fast.probabilities, slow.probabilities, "probabilities \(rows)×\(classes)")
            expectClose(
                cpu.crossEntropyBackward(probabilities: slow.probabilities, labels: labels, dLoss: 0.75),
                reference.crossEntropyBackward(probabilities: slow.probabilities, labels: labels, dLoss: 0.75),
                "crossEntropyBackward \(rows)×\(classes)")
        }
    }

    @Test func adamWMatchesReference() {
        var generator = SeededGenerator(seed: 63)
        let shape = [33, 7]
        var fastP = randomTensor(shape, .contiguous, &generator)
        var slowP = fastP
        var fastM = Tensor(zeros: shape)
        var fastV = Tensor(zeros: shape)
        var slowM = fastM
        var slowV = fastV
        let settings = AdamWHyperparameters(learningRate: 1e-2, weightDecay: 0.1)
        for step in 1...5 {
            let gradient = randomTensor(shape, .transposed, &generator)
            cpu.adamWUpdate(parameter: &fastP, gradient: gradient, firstMoment: &fastM, secondMoment: &fastV, hyperparameters: settings, step: step)
            reference.adamWUpdate(parameter: &slowP, gradient: gradient, firstMoment: &slowM, secondMoment: &slowV, hyperparameters: settings, step: step)
        }
        expectClose(fastP, slowP, "parameter")
        expectClose(fastM, slowM, "first moment")
        expectClose(fastV, slowV, "second moment")
    }
}
