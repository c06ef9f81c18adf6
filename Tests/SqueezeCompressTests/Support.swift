import Testing
import SqueezeTensor
@testable import SqueezeCompress

/// `count` uniform values in `range`, from a fixed seed.
func uniformValues(_ count: Int, in range: Range<Float>, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in generator.uniform(in: range) }
}

/// `count` standard normal values, from a fixed seed.
func normalValues(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in generator.normal() }
}

/// 200 000 standard normal values plus six outliers at ±40…±50.
let gaussianWithOutliers: [Float] = normalValues(200_000, seed: 11) + [40, -45, 50, -50, 44, 47]

/// `Σ (x − x̂)²` when `values` are quantized and dequantized by `quantizer`.
func squaredQuantizationError(_ values: [Float], _ quantizer: AffineQuantizer) -> Double {
    values.reduce(0.0) { sum, x in
        let difference = Double(x) - Double(quantizer.fakeQuantize(x))
        return sum + difference * difference
    }
}

/// `values` fed to `observer` in batches of `batchSize`.
func observed<O: RangeObserver>(_ observer: O, _ values: [Float], batchSize: Int) -> O {
    var observer = observer
    var start = 0
    while start < values.count {
        let end = min(start + batchSize, values.count)
        observer.observe(Array(values[start..<end]))
        start = end
    }
    return observer
}

/// One way of damaging a saved quantized model: a change to its tensors and/or
/// its config.json, and the text the load error must contain.
struct ArtifactDamage: Sendable, CustomTestStringConvertible {
    let label: String
    let expected: String
    let tensors: @Sendable (inout [String: Tensor]) -> Void
    let config: @Sendable (inout [String: Any]) -> Void

    init(
        _ label: String, _ expected: String, tensors: @escaping @Sendable (inout [String: Tensor]) -> Void = { _ in },
        config: @escaping @Sendable (inout [String: Any]) -> Void = { _ in }
    ) {
        self.label = label
        self.expected = expected
        self.tensors = tensors
        self.config = config
    }

    var testDescription: String { label }
}
