/// One compared gradient element.
public struct GradientComparison: Sendable, Hashable {
    public var input: Int
    public var element: Int
    public var analytic: Double
    public var numeric: Double
    /// `|analytic − numeric|` over the allowed error (≤ 1 passes).
    public var ratio: Double
}

/// Compares the tape's gradients with central finite differences, as
/// `torch.autograd.gradcheck` does.
///
/// `build` maps parameter variables to an output `y`; the checked scalar is
/// `Σ y ⊙ r` for a fixed random `r` (so every output element matters),
/// evaluated in `Double` for the differences. Each forward runs on a fresh
/// tape with the same `dropoutSeed`, so dropout masks are identical. Checks
/// `elementsPerInput` evenly spread elements of each input (all when nil)
/// and returns the worst comparison.
public func checkGradients(
    inputs: [Tensor], backend: any Backend, dropoutSeed: UInt64? = nil, step: Float = 1e-2,
    absoluteTolerance: Double = 1e-3, relativeTolerance: Double = 1e-2, elementsPerInput: Int? = nil,
    _ build: (Tape, [Variable]) -> Variable
) -> GradientComparison {
    let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
    let variables = inputs.map { tape.parameter($0) }
    let output = build(tape, variables)
    var generator = SeededGenerator(seed: 0x6EAD)
    let projection = Tensor.uniform(shape: output.shape, in: -1..<1, generator: &generator)
    let weights = projection.floats.map(Double.init)
    let projected = tape.multiply(output, tape.constant(projection))
    let loss = output.shape.isEmpty ? projected : tape.sum(projected, axes: Array(0..<output.shape.count), keepDimensions: false)
    tape.backward(from: loss)
    let analytic = variables.map { variable in tape.gradient(of: variable).map { $0.floats } }

    func objective(_ perturbed: [Tensor]) -> Double {
        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let values = build(tape, perturbed.map { tape.constant($0) }).value.floats
        return zip(values, weights).reduce(0.0) { $0 + Double($1.0) * $1.1 }
    }

    var worst = GradientComparison(input: -1, element: -1, analytic: 0, numeric: 0, ratio: 0)
    for (index, input) in inputs.enumerated() {
        let count = input.count
        let picks = elementsPerInput.map { limit in
            Array(Set((0..<Swift.min(limit, count)).map { $0 * count / Swift.min(limit, count) })).sorted()
        } ?? Array(0..<count)
        let original = input.floats
        for element in picks {
            var plus = original, minus = original
            plus[element] += step
            minus[element] -= step
            var perturbed = inputs
            perturbed[index] = Tensor(shape: input.shape, floats: plus)
            let high = objective(perturbed)
            perturbed[index] = Tensor(shape: input.shape, floats: minus)
            let low = objective(perturbed)
            let numeric = (high - low) / (Double(plus[element]) - Double(minus[element]))
            let exact = analytic[index].map { Double($0[element]) } ?? 0
            let allowed = absoluteTolerance + relativeTolerance * Swift.max(abs(exact), abs(numeric))
            let ratio = abs(exact - numeric) / allowed
            if ratio > worst.ratio || worst.input < 0 {
                worst = GradientComparison(input: index, element: element, analytic: exact, numeric: numeric, ratio: ratio)
            }
        }
    }
    return worst
}
