import Testing
@testable import SqueezeTensor

/// Random f32 values in [-1, 1) from a fixed seed.
private func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var generator = SeededGenerator(seed: seed)
    return Tensor.uniform(shape: shape, in: -scale..<scale, generator: &generator)
}

/// Expects the tape's gradients to match finite differences on ReferenceBackend.
private func expectGradients(
    _ inputs: [Tensor], dropoutSeed: UInt64? = nil, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation, _ build: (Tape, [Variable]) -> Variable
) {
    let worst = checkGradients(inputs: inputs, backend: ReferenceBackend(), dropoutSeed: dropoutSeed, build)
    #expect(worst.input >= 0, "\(what): nothing compared", sourceLocation: sourceLocation)
    #expect(
        worst.ratio <= 1,
        "\(what): input \(worst.input) element \(worst.element): analytic \(worst.analytic) vs numeric \(worst.numeric)",
        sourceLocation: sourceLocation)
}

@Suite struct AutodiffGradientTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matmulAllTransposes(transposeA: Bool, transposeB: Bool) {
        let a = random(transposeA ? [4, 3] : [3, 4], seed: 1)
        let b = random(transposeB ? [5, 4] : [4, 5], seed: 2)
        expectGradients([a, b], "matmul \(transposeA) \(transposeB)") { tape, v in
            tape.matmul(v[0], v[1], transposeA: transposeA, transposeB: transposeB, alpha: 0.5)
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func batchedMatmul(transposeA: Bool, transposeB: Bool) {
        let a = random(transposeA ? [2, 2, 4, 3] : [2, 2, 3, 4], seed: 3)
        let b = random(transposeB ? [2, 2, 5, 4] : [2, 2, 4, 5], seed: 4)
        expectGradients([a, b], "batched matmul \(transposeA) \(transposeB)") { tape, v in
            tape.matmul(v[0], v[1], transposeA: transposeA, transposeB: transposeB, alpha: 1.5)
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func sharedWeightMatmul(transposeA: Bool, transposeB: Bool) {
        let a = random(transposeA ? [2, 3, 4, 3] : [2, 3, 3, 4], seed: 5)
        let b = random(transposeB ? [5, 4] : [4, 5], seed: 6)
        expectGradients([a, b], "shared matmul \(transposeA) \(transposeB)") { tape, v in
            tape.matmul(v[0], v[1], transposeA: transposeA, transposeB: transposeB, alpha: 1)
        }
    }

    @Test func linearWithAndWithoutBias() {
        let x = random([2, 3, 4], seed: 7), weight = random([5, 4], seed: 8), bias = random([5], seed: 9)
        expectGradients([x, weight, bias], "linear") { tape, v in tape.linear(v[0], weight: v[1], bias: v[2]) }
        expectGradients([x, weight], "linear without bias") { tape, v in tape.linear(v[0], weight: v[1], bias: nil) }
    }

    @Test func broadcastingArithmetic() {
        let a = random([2, 3, 4], seed: 10), row = random([4], seed: 11), column = random([2, 1, 4], seed: 12)
        expectGradients([a, row], "add") { tape, v in tape.add(v[0], v[1]) }
        expectGradients([column, a], "subtract") { tape, v in tape.subtract(v[0], v[1]) }
        expectGradients([a, column], "multiply") { tape, v in tape.multiply(v[0], v[1]) }
        expectGradients([a], "affine") { tape, v in tape.affine(v[0], scale: -2.5, shift: 0.75) }
    }

    @Test func reusedVariableAccumulates() {
        let x = random([3, 4], seed: 13)
        expectGradients([x], "x·x + tanh(x)") { tape, v in tape.add(tape.multiply(v[0], v[0]), tape.tanh(v[0])) }
    }

    @Test func activationsAndNormalisations() {
        let x = random([3, 5], seed: 14, scale: 2)
        expectGradients([x], "gelu") { tape, v in tape.gelu(v[0]) }
        expectGradients([x], "tanh") { tape, v in tape.tanh(v[0]) }
        expectGradients([x], "softmax") { tape, v in tape.softmax(v[0]) }
        expectGradients([x], "logSoftmax") { tape, v in tape.logSoftmax(v[0]) }
    }

    @Test func layerNorm() {
        let x = random([2, 3, 6], seed: 15, scale: 2), gamma = random([6], seed: 16), beta = random([6], seed: 17)
        expectGradients([x, gamma, beta], "layerNorm") { tape, v in tape.layerNorm(v[0], gamma: v[1], beta: v[2], epsilon: 1e-5) }
    }

    @Test func gatherWithRepeatedIDs() {
        let table = random([6, 3], seed: 18)
        let ids = Tensor(shape: [2, 3], int32s: [1, 4, 1, 0, 5, 1])
        expectGradients([table], "gather") { tape, v in tape.gather(v[0], ids: ids) }
    }

    @Test func maskedFillAndDropout() {
        let x = random([2, 3, 4], seed: 19)
        let mask = Tensor(shape: [2, 1, 4], int32s: [0, 1, 0, 0, 1, 1, 0, 1])
        expectGradients([x], "maskedFill") { tape, v in tape.maskedFill(v[0], mask: mask, value: -5) }
        expectGradients([x], dropoutSeed: 42, "dropout") { tape, v in tape.dropout(tape.tanh(v[0]), probability: 0.3) }
    }

    @Test func dropoutIsOffWithoutASeedAndReproducibleWithOne() {
        let x = random([4, 16], seed: 20)
        let off = Tape(backend: ReferenceBackend())
        #expect(bits(off.dropout(off.parameter(x), probability: 0.5).value) == bits(x))
        func run(seed: UInt64) -> [UInt32] {
            let tape = Tape(backend: ReferenceBackend(), dropoutSeed: seed)
            let p = tape.parameter(x)
            _ = tape.dropout(p, probability: 0.5)
            return bits(tape.dropout(p, probability: 0.5).value)
        }
        #expect(run(seed: 1) == run(seed: 1))
        #expect(run(seed: 1) != run(seed: 2))
        // Two sites on one tape draw different masks.
        let tape = Tape(backend: ReferenceBackend(), dropoutSeed: 1)
        let p = tape.parameter(x)
        #expect(bits(tape.dropout(p, probability: 0.5).value) != bits(tape.dropout(p, probability: 0.5).value))
    }

    @Test func layoutOps() {
        let x = random([2, 3, 4], seed: 21)
        expectGradients([x], "reshape") { tape, v in tape.tanh(tape.reshape(v[0], [6, 4])) }
        expectGradients([x], "transpose") { tape, v in
            tape.matmul(tape.transpose(v[0], 1, 2), tape.constant(random([3, 2], seed: 22)), transposeA: false, transposeB: false, alpha: 1)
        }
        expectGradients([x], "slice") { tape, v in tape.tanh(tape.slice(v[0], axis: 1, 1..<3)) }
    }

    @Test func reductions() {
        let x = random([2, 3, 4], seed: 23)
        expectGradients([x], "sum") { tape, v in tape.sum(v[0], axes: [1], keepDimensions: false) }
        expectGradients([x], "sum keep") { tape, v in tape.sum(v[0], axes: [0, -1], keepDimensions: true) }
        expectGradients([x], "mean") { tape, v in tape.mean(v[0], axes: [2], keepDimensions: false) }
        expectGradients([x], "mean all") { tape, v in tape.mean(v[0], axes: [0, 1, 2], keepDimensions: false) }
    }

    @Test func crossEntropy() {
        let logits = random([4, 3], seed: 24, scale: 2)
        let labels = Tensor(shape: [4], int32s: [2, 0, 1, 2])
        expectGradients([logits], "crossEntropy") { tape, v in tape.crossEntropy(v[0], labels: labels) }
    }

    @Test func fusedAttention() {
        let (q, k, v) = (random([2, 2, 3, 4], seed: 25), random([2, 2, 3, 4], seed: 26), random([2, 2, 3, 4], seed: 27))
        let bias = Tensor(shape: [2, 1, 1, 3], floats: [0, 0, 0, 0, 0, -1e9])
        expectGradients([q, k, v], "attention") { tape, x in
            tape.attention(query: x[0], key: x[1], value: x[2], bias: bias, scale: 0.5, dropout: 0)
        }
        expectGradients([q, k, v], dropoutSeed: 7, "attention with dropout") { tape, x in
            tape.attention(query: x[0], key: x[1], value: x[2], bias: bias, scale: 0.5, dropout: 0.25)
        }
    }

    @Test func fusedAttentionMatchesComposedOps() {
        let (q, k, v) = (random([1, 2, 4, 3], seed: 28), random([1, 2, 4, 3], seed: 29), random([1, 2, 4, 3], seed: 30))
        let bias = Tensor(shape: [1, 1, 1, 4], floats: [0, 0, -1e9, 0])
        let eager = Eager(backend: ReferenceBackend())
        let fused = eager.attention(query: q, key: k, value: v, bias: bias, scale: 0.25, dropout: 0.1)
        let composed = eager.matmul(
            eager.softmax(eager.add(eager.matmul(q, k, transposeA: false, transposeB: true, alpha: 0.25), bias)), v,
            transposeA: false, transposeB: false, alpha: 1)
        #expect(bits(fused) == bits(composed))
        let tape = Tape(backend: ReferenceBackend())
        let recorded = tape.attention(
            query: tape.parameter(q), key: tape.parameter(k), value: tape.parameter(v), bias: bias, scale: 0.25, dropout: 0.1)
        #expect(bits(recorded.value) == bits(fused))
    }
}

@Suite struct AutodiffTapeTests {
    @Test func constantsRecordNothing() {
        let tape = Tape(backend: ReferenceBackend())
        let c = tape.constant(random([2, 2], seed: 31))
        let y = tape.tanh(tape.add(c, c))
        #expect(!y.requiresGradient)
        #expect(tape.nodeCount == 0)
        let p = tape.parameter(random([2, 2], seed: 32))
        #expect(tape.add(p, c).requiresGradient)
        #expect(tape.nodeCount == 2)
    }

    @Test func parameterGradientsAreKeptAndIntermediatesDropped() throws {
        let tape = Tape(backend: ReferenceBackend())
        let x = tape.parameter(Tensor(shape: [3], floats: [1, 2, 3]))
        let doubled = tape.affine(x, scale: 2, shift: 0)
        let loss = tape.sum(tape.multiply(doubled, x), axes: [0], keepDimensions: false)
        tape.backward(from: loss)
        // d/dx Σ 2x·x = 4x
        #expect(try #require(tape.gradient(of: x)).floats == [4, 8, 12])
        #expect(tape.gradient(of: doubled) == nil)
        #expect(tape.gradient(of: tape.constant(Tensor(scalar: 1))) == nil)
    }

    @Test func unusedParameterHasNoGradient() {
        let tape = Tape(backend: ReferenceBackend())
        let used = tape.parameter(Tensor(shape: [2], floats: [1, 2]))
        let unused = tape.parameter(Tensor(shape: [2], floats: [3, 4]))
        tape.backward(from: tape.sum(used, axes: [0], keepDimensions: false))
        #expect(tape.gradient(of: unused) == nil)
        #expect(tape.gradient(of: used)?.floats == [1, 1])
    }

    /// Saved activations are released by the backward, not at the end of the step.
    @Test func backwardReleasesSavedActivations() {
        let tape = Tape(backend: ReferenceBackend())
        let x = tape.parameter(random([4, 8], seed: 33))
        weak var saved: TensorStorage?
        let loss: Variable = {
            let hidden = tape.tanh(x)  // the tanh node saves its output
            saved = hidden.value.storage
            return tape.sum(hidden, axes: [0, 1], keepDimensions: false)
        }()
        #expect(saved != nil)
        tape.backward(from: loss)
        #expect(saved == nil)
    }

    @Test func seedGradientScalesTheBackward() {
        let tape = Tape(backend: ReferenceBackend())
        let x = tape.parameter(Tensor(shape: [2], floats: [1, -1]))
        let y = tape.affine(x, scale: 3, shift: 1)
        tape.backward(from: y, seed: Tensor(shape: [2], floats: [2, 5]))
        #expect(tape.gradient(of: x)?.floats == [6, 15])
    }
}
