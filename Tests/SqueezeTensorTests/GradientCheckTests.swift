import Testing
@testable import SqueezeTensor

/// Finite-difference checks of every backward, on both backends.
///
/// The loss is `Σ out ⊙ w` for fixed random weights `w`, accumulated in
/// Double; its gradient with respect to `out` is `w`, so each backward is fed
/// `w` as the incoming gradient. Central differences with a step of 1e-2 on
/// small tensors leave a truncation plus f32 rounding error of at most ~4e-5
/// (measured) against gradients of order 1; the tolerance 2e-4 + 5e-4·|g|
/// still fails a kernel that is off by 1% in one term (checked by breaking
/// softmaxBackward, geluBackward, layerNormBackward and scatterAdd locally).
@Suite struct GradientCheckTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]

    static let step: Float = 1e-2

    /// Σ out ⊙ w in Double.
    static func weightedSum(_ out: Tensor, _ weights: Tensor) -> Double {
        zip(out.floats, weights.floats).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    /// Central-difference gradient of `loss` at `x`.
    static func numericGradient(_ x: Tensor, _ loss: (Tensor) -> Double) -> [Float] {
        var values = x.contiguous().floats
        var gradient = [Float](repeating: 0, count: values.count)
        for i in values.indices {
            let original = values[i]
            let up = original + step
            let down = original - step
            values[i] = up
            let plus = loss(Tensor(shape: x.shape, floats: values))
            values[i] = down
            let minus = loss(Tensor(shape: x.shape, floats: values))
            values[i] = original
            gradient[i] = Float((plus - minus) / (Double(up) - Double(down)))
        }
        return gradient
    }

    /// Expects the analytic gradient to match central differences of `loss`.
    static func check(
        _ what: String, at x: Tensor, analytic: Tensor, _ loss: (Tensor) -> Double,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(analytic.shape == x.shape, "\(what): gradient shape \(analytic.shape) vs \(x.shape)", sourceLocation: sourceLocation)
        let numeric = numericGradient(x, loss)
        let (ratio, index) = worstViolation(analytic.floats, numeric, absolute: 2e-4, relative: 5e-4)
        #expect(
            ratio <= 1,
            "\(what): element \(index) analytic \(index >= 0 ? analytic.floats[index] : 0) vs numeric \(index >= 0 ? numeric[index] : 0)",
            sourceLocation: sourceLocation)
    }

    @Test(arguments: backends)
    func activations(backend: any Backend) {
        var generator = SeededGenerator(seed: 101)
        let x = randomTensor([3, 7], .contiguous, in: -3..<3, &generator)
        let w = randomTensor([3, 7], .contiguous, &generator)
        Self.check("gelu", at: x, analytic: backend.geluBackward(x, w)) { Self.weightedSum(backend.gelu($0), w) }
        Self.check("tanh", at: x, analytic: backend.tanhBackward(backend.tanh(x), w)) { Self.weightedSum(backend.tanh($0), w) }
        Self.check("affine", at: x, analytic: backend.affine(w, scale: -1.5, shift: 0)) {
            Self.weightedSum(backend.affine($0, scale: -1.5, shift: 0.5), w)
        }
    }

    @Test(arguments: backends)
    func softmaxFamily(backend: any Backend) {
        var generator = SeededGenerator(seed: 102)
        let x = randomTensor([3, 7], .contiguous, in: -2..<2, &generator)
        let w = randomTensor([3, 7], .contiguous, &generator)
        Self.check("softmax", at: x, analytic: backend.softmaxBackward(backend.softmax(x), w)) {
            Self.weightedSum(backend.softmax($0), w)
        }
        Self.check("logSoftmax", at: x, analytic: backend.logSoftmaxBackward(backend.logSoftmax(x), w)) {
            Self.weightedSum(backend.logSoftmax($0), w)
        }
    }

    @Test(arguments: backends)
    func layerNorm(backend: any Backend) {
        var generator = SeededGenerator(seed: 103)
        let x = randomTensor([3, 9], .contiguous, in: -2..<2, &generator)
        let gamma = randomTensor([9], .contiguous, in: 0.5..<1.5, &generator)
        let beta = randomTensor([9], .contiguous, &generator)
        let w = randomTensor([3, 9], .contiguous, &generator)
        let epsilon: Float = 1e-5
        let forward = backend.layerNorm(x, gamma: gamma, beta: beta, epsilon: epsilon)
        let gradients = backend.layerNormBackward(w, x, gamma: gamma, mean: forward.mean, inverseStd: forward.inverseStd)
        Self.check("layerNorm input", at: x, analytic: gradients.input) {
            Self.weightedSum(backend.layerNorm($0, gamma: gamma, beta: beta, epsilon: epsilon).output, w)
        }
        Self.check("layerNorm gamma", at: gamma, analytic: gradients.gamma) {
            Self.weightedSum(backend.layerNorm(x, gamma: $0, beta: beta, epsilon: epsilon).output, w)
        }
        Self.check("layerNorm beta", at: beta, analytic: gradients.beta) {
            Self.weightedSum(backend.layerNorm(x, gamma: gamma, beta: $0, epsilon: epsilon).output, w)
        }
    }

    @Test(arguments: backends)
    func gatherAndMasking(backend: any Backend) {
        var generator = SeededGenerator(seed: 104)
        let table = randomTensor([5, 4], .contiguous, &generator)
        let ids = Tensor(shape: [2, 3], int32s: [4, 0, 4, 2, 4, 1])
        let w = randomTensor([2, 3, 4], .contiguous, &generator)
        Self.check("gather", at: table, analytic: backend.scatterAdd(w, ids, rows: 5)) {
            Self.weightedSum(backend.gather($0, ids), w)
        }
        let x = randomTensor([2, 3, 4], .contiguous, &generator)
        let mask = Tensor(shape: [3, 1], int32s: [0, 1, 0])
        Self.check("maskedFill", at: x, analytic: backend.maskedFill(w, mask: mask, value: 0)) {
            Self.weightedSum(backend.maskedFill($0, mask: mask, value: -7), w)
        }
        let mask2 = backend.dropout(x, probability: 0.4, seed: 3, stream: 1).mask
        Self.check("dropout", at: x, analytic: backend.multiply(w, mask2)) {
            Self.weightedSum(backend.dropout($0, probability: 0.4, seed: 3, stream: 1).output, w)
        }
    }

    @Test(arguments: backends)
    func broadcastingArithmetic(backend: any Backend) {
        var generator = SeededGenerator(seed: 105)
        let a = randomTensor([3, 1, 5], .contiguous, &generator)
        let b = randomTensor([4, 1], .contiguous, &generator)
        let w = randomTensor([3, 4, 5], .contiguous, &generator)
        Self.check("add a", at: a, analytic: backend.reduce(w, toShape: a.shape)) { Self.weightedSum(backend.add($0, b), w) }
        Self.check("add b", at: b, analytic: backend.reduce(w, toShape: b.shape)) { Self.weightedSum(backend.add(a, $0), w) }
        Self.check("subtract b", at: b, analytic: backend.reduce(backend.affine(w, scale: -1, shift: 0), toShape: b.shape)) {
            Self.weightedSum(backend.subtract(a, $0), w)
        }
        Self.check("multiply a", at: a, analytic: backend.reduce(backend.multiply(w, b), toShape: a.shape)) {
            Self.weightedSum(backend.multiply($0, b), w)
        }
        Self.check("multiply b", at: b, analytic: backend.reduce(backend.multiply(w, a), toShape: b.shape)) {
            Self.weightedSum(backend.multiply(a, $0), w)
        }
    }

    @Test(arguments: backends)
    func crossEntropy(backend: any Backend) {
        var generator = SeededGenerator(seed: 106)
        let logits = randomTensor([4, 5], .contiguous, in: -2..<2, &generator)
        let labels = Tensor(shape: [4], int32s: [0, 4, 2, 2])
        let scale: Float = 0.7
        let probabilities = backend.crossEntropy(logits, labels: labels).probabilities
        Self.check("crossEntropy", at: logits, analytic: backend.crossEntropyBackward(probabilities: probabilities, labels: labels, dLoss: scale)) {
            Double(backend.crossEntropy($0, labels: labels).loss.scalarValue) * Double(scale)
        }
    }

    /// C = α·op(A)·op(B); dA, dB are themselves matrix products with transposes.
    @Test(arguments: backends)
    func matmul(backend: any Backend) {
        var generator = SeededGenerator(seed: 107)
        let (m, k, n) = (3, 4, 2)
        let alpha: Float = 0.5
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                for batch in [[Int](), [2]] {
                    let a = randomTensor(batch + (transposeA ? [k, m] : [m, k]), .contiguous, &generator)
                    let b = randomTensor(batch + (transposeB ? [n, k] : [k, n]), .contiguous, &generator)
                    let w = randomTensor(batch + [m, n], .contiguous, &generator)
                    let dA = transposeA
                        ? backend.matmul(b, w, transposeA: transposeB, transposeB: true, alpha: alpha)
                        : backend.matmul(w, b, transposeA: false, transposeB: !transposeB, alpha: alpha)
                    let dB = transposeB
                        ? backend.matmul(w, a, transposeA: true, transposeB: transposeA, alpha: alpha)
                        : backend.matmul(a, w, transposeA: !transposeA, transposeB: false, alpha: alpha)
                    let what = "matmul tA \(transposeA) tB \(transposeB) batch \(batch)"
                    Self.check("\(what) dA", at: a, analytic: dA) {
                        Self.weightedSum(backend.matmul($0, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha), w)
                    }
                    Self.check("\(what) dB", at: b, analytic: dB) {
                        Self.weightedSum(backend.matmul(a, $0, transposeA: transposeA, transposeB: transposeB, alpha: alpha), w)
                    }
                }
            }
        }
        // A shared weight: its gradient sums over the batch, one product over the folded rows.
        let x = randomTensor([2, 3, 4], .contiguous, &generator)
        let weight = randomTensor([2, 4], .contiguous, &generator)
        let w = randomTensor([2, 3, 2], .contiguous, &generator)
        let dWeight = backend.matmul(w.reshaped([6, 2]), x.reshaped([6, 4]), transposeA: true, transposeB: false, alpha: 1)
        Self.check("shared weight", at: weight, analytic: dWeight) {
            Self.weightedSum(backend.matmul(x, $0, transposeA: false, transposeB: true, alpha: 1), w)
        }
        Self.check("shared weight input", at: x, analytic: backend.matmul(w, weight, transposeA: false, transposeB: false, alpha: 1)) {
            Self.weightedSum(backend.matmul($0, weight, transposeA: false, transposeB: true, alpha: 1), w)
        }
    }
}
