import Foundation
import SqueezeTensor

/// Signal-to-quantization-noise ratio in decibels: `10 · log10(‖y‖² / ‖y − ŷ‖²)`,
/// with `y` the reference (e.g. a layer's fp32 output) and `ŷ` its approximation.
///
/// Sums are accumulated in `Double`. Edge cases: no noise gives `+∞` (also for
/// an all-zero or empty reference: the approximation is exact); a zero signal
/// with nonzero noise gives `−∞`; a NaN or infinite element in either input
/// gives NaN (the ratio is meaningless, and NaN makes that visible in a report).
public func signalToQuantizationNoiseRatio(reference: UnsafeBufferPointer<Float>, approximation: UnsafeBufferPointer<Float>) -> Double {
    precondition(reference.count == approximation.count, "SQNR: \(reference.count) reference values, \(approximation.count) approximations")
    var signal = 0.0
    var noise = 0.0
    for index in 0..<reference.count {
        let y = Double(reference[index])
        let difference = y - Double(approximation[index])
        signal += y * y
        noise += difference * difference
    }
    guard signal.isFinite, noise.isFinite else { return .nan }
    if noise == 0 { return .infinity }
    if signal == 0 { return -.infinity }
    return 10 * log10(signal / noise)
}

/// `signalToQuantizationNoiseRatio` of two f32 tensors of the same shape.
public func signalToQuantizationNoiseRatio(reference: Tensor, approximation: Tensor) -> Double {
    precondition(reference.shape == approximation.shape, "SQNR: shapes \(reference.shape) and \(approximation.shape) differ")
    return reference.withUnsafeFloats { y in
        approximation.withUnsafeFloats { yHat in signalToQuantizationNoiseRatio(reference: y, approximation: yHat) }
    }
}
