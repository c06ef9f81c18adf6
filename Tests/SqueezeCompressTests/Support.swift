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
