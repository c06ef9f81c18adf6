/// One affine map between reals and integer codes:
/// `q = clamp(round(x / s) + z, q_min, q_max)` and `x̂ = s · (q − z)`.
///
/// Rounding is round-half-to-even everywhere (0.5 → 0, 1.5 → 2, −2.5 → −2).
/// Non-finite inputs: NaN quantizes to the zero point (so it dequantizes to
/// 0.0), +∞ to `q_max` and −∞ to `q_min`.
///
/// The hot loops are branch-free and trap-free so the compiler can vectorise
/// them: `x / s` is clamped to the integer interval `[q_min − z, q_max − z]`
/// first (equivalent to clamping after rounding, since both bounds are
/// integers), then rounded by adding and subtracting 1.5 · 2²³ (exact
/// round-half-to-even in IEEE arithmetic for |t| < 2²²), and the integer is
/// read from the low mantissa bits instead of a checked conversion.
public struct AffineQuantizer: Sendable, Hashable, Codable {
    /// The smallest scale a scheme produces (`Float.leastNormalMagnitude`), so `1 / s` is finite.
    public static let minimumScale = Float.leastNormalMagnitude

    public let scale: Float
    public let zeroPoint: Int32
    /// The codes produced: a sub-range of −128…255 (so every code fits a byte).
    public let codeRange: ClosedRange<Int32>

    /// A quantizer with explicit parameters (e.g. read from a file).
    ///
    /// - Throws: `QuantizationError.invalidParameters` unless `scale` is
    ///   positive and finite, `codeRange` lies within −128…255 and is either
    ///   signed-byte or unsigned-byte, and `zeroPoint` lies in `codeRange`.
    public init(scale: Float, zeroPoint: Int32, codeRange: ClosedRange<Int32>) throws(QuantizationError) {
        let fitsByte = (codeRange.lowerBound >= -128 && codeRange.upperBound <= 127)
            || (codeRange.lowerBound >= 0 && codeRange.upperBound <= 255)
        guard scale.isFinite, scale > 0, fitsByte, codeRange.lowerBound < codeRange.upperBound, codeRange.contains(zeroPoint)
        else { throw .invalidParameters(scale: scale, zeroPoint: zeroPoint) }
        self.init(uncheckedScale: scale, zeroPoint: zeroPoint, codeRange: codeRange)
    }

    init(uncheckedScale scale: Float, zeroPoint: Int32, codeRange: ClosedRange<Int32>) {
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.codeRange = codeRange
    }

    private enum CodingKeys: String, CodingKey { case scale, zeroPoint, codeRange }

    /// Decodes and validates like `init(scale:zeroPoint:codeRange:)`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let scale = try container.decode(Float.self, forKey: .scale)
        let zeroPoint = try container.decode(Int32.self, forKey: .zeroPoint)
        let codeRange = try container.decode(ClosedRange<Int32>.self, forKey: .codeRange)
        do {
            try self.init(scale: scale, zeroPoint: zeroPoint, codeRange: codeRange)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    /// The real interval that quantizes without clamping: `[s · (q_min − z), s · (q_max − z)]`.
    public var representableRange: ClosedRange<Float> {
        scale * Float(codeRange.lowerBound - zeroPoint)...scale * Float(codeRange.upperBound - zeroPoint)
    }

    public func quantize(_ value: Float) -> Int32 {
        Self.roundedOffset(value, scale: scale, low: lowOffset, high: highOffset) &+ zeroPoint
    }

    public func dequantize(_ code: Int32) -> Float {
        scale * Float(code &- zeroPoint)
    }

    /// Quantize then dequantize (the value the integer path computes with).
    public func fakeQuantize(_ value: Float) -> Float {
        scale * Float(Self.roundedOffset(value, scale: scale, low: lowOffset, high: highOffset))
    }

    /// Quantizes `source` into signed bytes; the code range must fit `Int8`.
    public func quantize(_ source: UnsafeBufferPointer<Float>, into destination: UnsafeMutableBufferPointer<Int8>) {
        precondition(source.count == destination.count, "quantize: \(source.count) values into \(destination.count) codes")
        precondition(codeRange.upperBound <= 127, "quantize: codes \(codeRange) do not fit Int8")
        guard let input = source.baseAddress, let output = destination.baseAddress else { return }
        let (s, low, high, z) = (scale, lowOffset, highOffset, zeroPoint)
        for index in 0..<source.count {
            output[index] = Int8(truncatingIfNeeded: Self.roundedOffset(input[index], scale: s, low: low, high: high) &+ z)
        }
    }

    /// Quantizes `source` into unsigned bytes; the code range must fit `UInt8`.
    public func quantize(_ source: UnsafeBufferPointer<Float>, into destination: UnsafeMutableBufferPointer<UInt8>) {
        precondition(source.count == destination.count, "quantize: \(source.count) values into \(destination.count) codes")
        precondition(codeRange.lowerBound >= 0, "quantize: codes \(codeRange) do not fit UInt8")
        guard let input = source.baseAddress, let output = destination.baseAddress else { return }
        let (s, low, high, z) = (scale, lowOffset, highOffset, zeroPoint)
        for index in 0..<source.count {
            output[index] = UInt8(truncatingIfNeeded: Self.roundedOffset(input[index], scale: s, low: low, high: high) &+ z)
        }
    }

    public func dequantize(_ source: UnsafeBufferPointer<Int8>, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count, "dequantize: \(source.count) codes into \(destination.count) values")
        guard let input = source.baseAddress, let output = destination.baseAddress else { return }
        let (s, z) = (scale, zeroPoint)
        for index in 0..<source.count { output[index] = s * Float(Int32(input[index]) &- z) }
    }

    public func dequantize(_ source: UnsafeBufferPointer<UInt8>, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count, "dequantize: \(source.count) codes into \(destination.count) values")
        guard let input = source.baseAddress, let output = destination.baseAddress else { return }
        let (s, z) = (scale, zeroPoint)
        for index in 0..<source.count { output[index] = s * Float(Int32(input[index]) &- z) }
    }

    /// Quantize-dequantize `source` into `destination` (which may be the same memory).
    public func fakeQuantize(_ source: UnsafeBufferPointer<Float>, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count, "fakeQuantize: \(source.count) values into \(destination.count)")
        guard let input = source.baseAddress, let output = destination.baseAddress else { return }
        let (s, low, high) = (scale, lowOffset, highOffset)
        for index in 0..<source.count {
            output[index] = s * Float(Self.roundedOffset(input[index], scale: s, low: low, high: high))
        }
    }

    /// `q_min − z` and `q_max − z` as floats: the clamp bounds of `x / s`.
    private var lowOffset: Float { Float(codeRange.lowerBound - zeroPoint) }
    private var highOffset: Float { Float(codeRange.upperBound - zeroPoint) }

    /// `round(clamp(x / s, low, high))` as an integer; NaN gives 0. `low` and
    /// `high` are integers with magnitude below 2²².
    @inline(__always)
    static func roundedOffset(_ value: Float, scale: Float, low: Float, high: Float) -> Int32 {
        var t = value / scale
        t = t == t ? t : 0
        t = t < low ? low : t
        t = t > high ? high : t
        let shifted = t + roundingShift
        return Int32(bitPattern: shifted.bitPattern) &- roundingShiftBits
    }

    /// 1.5 · 2²³: adding it leaves exactly the rounded integer in the low mantissa bits.
    private static let roundingShift: Float = 12_582_912
    private static let roundingShiftBits = Int32(bitPattern: roundingShift.bitPattern)
}
