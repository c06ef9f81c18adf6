import Testing
@testable import SqueezeTensor

/// `maskedLayerNorm`: its definition against the plain layer norm on the
/// selected columns, CPU against reference, and finite differences.
@Suite struct MaskedLayerNormTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]

    /// Columns 0, 2, 3 and 6 of 7.
    static let mask = Tensor(shape: [7], floats: [1, 0, 0.5, -2, 0, 0, 1])
    static let selected = [0, 2, 3, 6]

    /// The selected columns of a `[rows, D]` tensor (or of a `[D]` one).
    static func pick(_ x: Tensor, _ columns: [Int]) -> Tensor {
        let width = x.shape[x.rank - 1]
        let rows = x.count / width
        let values = x.floats
        let picked = (0..<rows).flatMap { row in columns.map { values[row * width + $0] } }
        return Tensor(shape: Array(x.shape.dropLast()) + [columns.count], floats: picked)
    }

    @Test(arguments: backends)
    func equalsLayerNormOverTheSelectedColumns(backend: any Backend) {
        var generator = SeededGenerator(seed: 71)
        let x = randomTensor([3, 2, 7], .sliced, in: -3..<3, &generator)
        let gamma = randomTensor([7], .contiguous, in: 0.5..<1.5, &generator)
        let beta = randomTensor([7], .contiguous, &generator)
        let masked = backend.maskedLayerNorm(x, columnMask: Self.mask, gamma: gamma, beta: beta, epsilon: 1e-5)
        let plain = ReferenceBackend().layerNorm(
            Self.pick(x, Self.selected), gamma: Self.pick(gamma, Self.selected), beta: Self.pick(beta, Self.selected), epsilon: 1e-5)
        expectClose(Self.pick(masked.output, Self.selected), plain.output, "selected columns")
        #expect(Self.pick(masked.output, [1, 4, 5]).floats.allSatisfy { $0 == 0 }, "unselected columns are 0")
        expectClose(masked.mean, plain.mean, "mean")
        expectClose(masked.inverseStd, plain.inverseStd, "inverseStd")

        // All columns selected: the plain layer norm.
        let all = Tensor(shape: [7], int32s: [Int32](repeating: 1, count: 7))
        let full = backend.maskedLayerNorm(x, columnMask: all, gamma: gamma, beta: beta, epsilon: 1e-5)
        expectClose(full.output, ReferenceBackend().layerNorm(x, gamma: gamma, beta: beta, epsilon: 1e-5).output, "all columns")

        // No column selected: zeros, and a zero gradient.
        let none = Tensor(zeros: [7])
        let empty = backend.maskedLayerNorm(x, columnMask: none, gamma: gamma, beta: beta, epsilon: 1e-5)
        #expect(empty.output.floats.allSatisfy { $0 == 0 })
        let back = backend.maskedLayerNormBackward(
            x, x, columnMask: none, gamma: gamma, mean: empty.mean, inverseStd: empty.inverseStd)
        #expect(back.input.floats.allSatisfy { $0 == 0 } && back.gamma.floats.allSatisfy { $0 == 0 })
    }

    @Test func cpuMatchesReference() {
        let cpu = CPUBackend(threads: 2)
        let reference = ReferenceBackend()
        var generator = SeededGenerator(seed: 72)
        for shape in [[7], [13, 33], [3, 1, 129], [300, 129]] {
            let width = shape[shape.count - 1]
            let mask = Tensor(shape: [width], floats: (0..<width).map { $0 % 3 == 1 ? 0 : 1 })
            for layout in Layout.allCases {
                let x = randomTensor(shape, layout, in: -3..<5, &generator)
                let gamma = randomTensor([width], .contiguous, in: 0.5..<1.5, &generator)
                let beta = randomTensor([width], .sliced, &generator)
                let what = "\(shape) \(layout)"
                let fast = cpu.maskedLayerNorm(x, columnMask: mask, gamma: gamma, beta: beta, epsilon: 1e-5)
                let slow = reference.maskedLayerNorm(x, columnMask: mask, gamma: gamma, beta: beta, epsilon: 1e-5)
                expectClose(fast.output, slow.output, "maskedLayerNorm \(what)")
                expectClose(fast.mean, slow.mean, "mean \(what)")
                expectClose(fast.inverseStd, slow.inverseStd, "inverseStd \(what)")
                let dy = randomTensor(shape, layout, &generator)
                let fastBack = cpu.maskedLayerNormBackward(
                    dy, x, columnMask: mask, gamma: gamma, mean: slow.mean, inverseStd: slow.inverseStd)
                let slowBack = reference.maskedLayerNormBackward(
                    dy, x, columnMask: mask, gamma: gamma, mean: slow.mean, inverseStd: slow.inverseStd)
                expectClose(fastBack.input, slowBack.input, relative: 2e-5, "input gradient \(what)")
                expectClose(fastBack.gamma, slowBack.gamma, "gamma gradient \(what)")
                expectClose(fastBack.beta, slowBack.beta, "beta gradient \(what)")
            }
        }
    }

    @Test(arguments: backends)
    func gradientsMatchFiniteDifferences(backend: any Backend) {
        var generator = SeededGenerator(seed: 73)
        let x = randomTensor([3, 7], .contiguous, in: -2..<2, &generator)
        let gamma = randomTensor([7], .contiguous, in: 0.5..<1.5, &generator)
        let beta = randomTensor([7], .contiguous, &generator)
        let w = randomTensor([3, 7], .contiguous, &generator)
        let epsilon: Float = 1e-5
        let mask = Self.mask
        let forward = backend.maskedLayerNorm(x, columnMask: mask, gamma: gamma, beta: beta, epsilon: epsilon)
        let gradients = backend.maskedLayerNormBackward(
            w, x, columnMask: mask, gamma: gamma, mean: forward.mean, inverseStd: forward.inverseStd)
        GradientCheckTests.check("input", at: x, analytic: gradients.input) {
            GradientCheckTests.weightedSum(backend.maskedLayerNorm($0, columnMask: mask, gamma: gamma, beta: beta, epsilon: epsilon).output, w)
        }
        GradientCheckTests.check("gamma", at: gamma, analytic: gradients.gamma) {
            GradientCheckTests.weightedSum(backend.maskedLayerNorm(x, columnMask: mask, gamma: $0, beta: beta, epsilon: epsilon).output, w)
        }
        GradientCheckTests.check("beta", at: beta, analytic: gradients.beta) {
            GradientCheckTests.weightedSum(backend.maskedLayerNorm(x, columnMask: mask, gamma: gamma, beta: $0, epsilon: epsilon).output, w)
        }
    }

    /// The tape's node against finite differences of the eager forward.
    @Test func tapeGradients() {
        var generator = SeededGenerator(seed: 74)
        let inputs = [
            randomTensor([2, 3, 7], .contiguous, in: -2..<2, &generator),
            randomTensor([7], .contiguous, in: 0.5..<1.5, &generator), randomTensor([7], .contiguous, &generator),
        ]
        let worst = checkGradients(inputs: inputs, backend: CPUBackend(threads: 2)) { tape, v in
            tape.maskedLayerNorm(v[0], columnMask: Self.mask, gamma: v[1], beta: v[2], epsilon: 1e-5)
        }
        #expect(worst.ratio <= 1, "input \(worst.input)[\(worst.element)]: \(worst.analytic) vs \(worst.numeric)")
        let eager = Eager(backend: ReferenceBackend())
        let tape = Tape(backend: ReferenceBackend())
        let recorded = tape.maskedLayerNorm(
            tape.parameter(inputs[0]), columnMask: Self.mask, gamma: tape.parameter(inputs[1]), beta: tape.parameter(inputs[2]),
            epsilon: 1e-5)
        #expect(recorded.value.floats == eager.maskedLayerNorm(inputs[0], columnMask: Self.mask, gamma: inputs[1], beta: inputs[2], epsilon: 1e-5).floats)
    }
}
