import SqueezeTensor

/// Integer widths the quantizers produce.
public enum QuantizationBits: Int, Sendable, Hashable, Codable, CaseIterable {
    case four = 4
    case eight = 8
}

/// How a real range maps onto the integers.
public enum QuantizationMapping: String, Sendable, Hashable, Codable, CaseIterable {
    /// Zero point 0, scale `max|x| / q_max`.
    case symmetric
    /// Scale `(max − min) / (q_max − q_min)`, zero point `q_min − round(min / s)`.
    case asymmetric
}

/// What a quantized tensor's integers are: width, signedness and mapping.
///
/// Storage ranges: int8 −128…127, uint8 0…255, int4 −8…7, uint4 0…15.
/// A *symmetric signed* scheme uses the restricted range [−q_max, q_max]
/// (int8 −127…127, int4 −7…7), as TensorRT does: then `−x` quantizes to `−q`,
/// the clamp is symmetric (a value beyond `−max|x|` is not given one extra
/// step that `+max|x|` does not get), and the product of two codes never
/// reaches −128 · −128, which int8 kernels would have to special-case.
/// A symmetric unsigned scheme (zero point 0, codes 0…q_max) suits non-negative
/// data such as softmax outputs; negative values clamp to 0.
public struct QuantizationScheme: Sendable, Hashable, Codable, CustomStringConvertible {
    public var bits: QuantizationBits
    public var isSigned: Bool
    public var mapping: QuantizationMapping

    public init(bits: QuantizationBits = .eight, signed: Bool = true, mapping: QuantizationMapping = .symmetric) {
        self.bits = bits
        self.isSigned = signed
        self.mapping = mapping
    }

    /// Weights by default: int8, per-channel symmetric.
    public static let int8Symmetric = QuantizationScheme(bits: .eight, signed: true, mapping: .symmetric)
    public static let int8Asymmetric = QuantizationScheme(bits: .eight, signed: true, mapping: .asymmetric)
    /// Activations feeding a u8 × s8 kernel.
    public static let uint8Asymmetric = QuantizationScheme(bits: .eight, signed: false, mapping: .asymmetric)
    public static let int4Symmetric = QuantizationScheme(bits: .four, signed: true, mapping: .symmetric)
    public static let uint4Asymmetric = QuantizationScheme(bits: .four, signed: false, mapping: .asymmetric)

    /// All values of the integer type: int8 −128…127, uint8 0…255, int4 −8…7, uint4 0…15.
    public var storageRange: ClosedRange<Int32> {
        let levels = Int32(1) << Int32(bits.rawValue)
        return isSigned ? -(levels / 2)...(levels / 2 - 1) : 0...(levels - 1)
    }

    /// The codes this scheme produces: the storage range, restricted to
    /// [−q_max, q_max] for symmetric signed schemes.
    public var codeRange: ClosedRange<Int32> {
        let storage = storageRange
        if mapping == .symmetric && isSigned { return -storage.upperBound...storage.upperBound }
        return storage
    }

    public var description: String {
        "\(isSigned ? "int" : "uint")\(bits.rawValue) \(mapping.rawValue)"
    }

    /// The quantizer for the real range `[min, max]` (e.g. an observer's).
    ///
    /// - Symmetric: `s = max(|min|, |max|) / q_max`, `z = 0`.
    /// - Asymmetric: the range is first widened to include 0, then
    ///   `s = (max − min) / (q_max − q_min)` and `z = q_min − round(min / s)`
    ///   (round half to even), clamped into the code range; 0.0 quantizes to `z`
    ///   and dequantizes to exactly 0.
    ///
    /// Scales are computed in `Double`, so no finite range overflows. Degenerate
    /// ranges never give a zero, NaN or infinite scale: a range that is exactly
    /// {0} gets `s = 1` (any positive scale is exact for zeros; 1 keeps later
    /// products of scales well away from underflow), and a scale below
    /// `AffineQuantizer.minimumScale` (a range of subnormal width) is raised to it,
    /// so `1 / s` stays finite; every code dequantizes to a finite value.
    ///
    /// - Throws: `QuantizationError.invalidRange` when a bound is NaN or infinite
    ///   or `min > max`.
    public func quantizer(min: Float, max: Float) throws(QuantizationError) -> AffineQuantizer {
        guard min.isFinite, max.isFinite, min <= max else { throw .invalidRange(min: min, max: max) }
        let codes = codeRange
        let qMin = Double(codes.lowerBound)
        let qMax = Double(codes.upperBound)
        let scale: Float
        let zeroPoint: Int32
        switch mapping {
        case .symmetric:
            let bound = Swift.max(abs(Double(min)), abs(Double(max)))
            scale = Self.guardedScale(bound / qMax, isZeroRange: bound == 0)
            zeroPoint = 0
        case .asymmetric:
            let low = Swift.min(Double(min), 0)
            let high = Swift.max(Double(max), 0)
            scale = Self.guardedScale((high - low) / (qMax - qMin), isZeroRange: high == low)
            let shift = (low / Double(scale)).rounded(.toNearestOrEven)
            zeroPoint = Int32(Swift.min(Swift.max(qMin - shift, qMin), qMax))
        }
        // A scale rounded up to Float could push s · (q − z) past the largest float.
        let reach = Float(Swift.max(zeroPoint - codes.lowerBound, codes.upperBound - zeroPoint))
        var safeScale = scale
        while !(safeScale * reach).isFinite { safeScale = safeScale.nextDown }
        return AffineQuantizer(uncheckedScale: safeScale, zeroPoint: zeroPoint, codeRange: codes)
    }

    private static func guardedScale(_ scale: Double, isZeroRange: Bool) -> Float {
        if isZeroRange { return 1 }
        return Swift.max(Float(scale), AffineQuantizer.minimumScale)
    }
}

/// How many (scale, zero point) pairs a tensor gets.
public enum QuantizationGranularity: Sendable, Hashable, Codable {
    /// One pair for the whole tensor.
    case perTensor
    /// One pair per row of an `[N, K]` matrix (a Linear weight's output channel).
    case perChannel
    /// One pair per `size` consecutive elements of a row of an `[N, K]` matrix;
    /// `size` must divide `K`.
    case perGroup(size: Int)
}

/// Why a quantization request cannot be met; never a crash.
public enum QuantizationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A range bound is NaN or infinite, or `min > max`.
    case invalidRange(min: Float, max: Float)
    /// A scale that is not a positive finite number, or a zero point outside the codes.
    case invalidParameters(scale: Float, zeroPoint: Int32)
    /// An observer (or a slice of a tensor) saw no finite values.
    case noData
    /// A percentile outside (50, 100].
    case invalidPercentile(Double)
    /// A histogram bin count below the minimum the observer needs.
    case invalidBinCount(Int, minimum: Int)
    /// A group size that is not positive.
    case invalidGroupSize(Int)
    /// The group size does not divide the row length.
    case groupSizeDoesNotDivide(groupSize: Int, rowLength: Int)
    /// Per-channel and per-group quantization need an `[N, K]` matrix.
    case requiresMatrix(shape: [Int])
    /// The tensor's element type is not the one required.
    case unsupportedDType(DType, expected: DType)
    /// An operation that only exists for one width (e.g. int4 packing of int8 codes).
    case unsupportedBits(QuantizationBits, expected: QuantizationBits)
    /// Packed int4 bytes that cannot hold (or are more than) the stated number of codes.
    case packedSizeMismatch(byteCount: Int, count: Int)

    public var description: String {
        switch self {
        case .invalidRange(let min, let max):
            "invalid quantization range [\(min), \(max)]: bounds must be finite with min <= max"
        case .invalidParameters(let scale, let zeroPoint):
            "invalid quantization parameters: scale \(scale) must be positive and finite, zero point \(zeroPoint) inside the code range"
        case .noData:
            "no finite values were observed, so there is no range to quantize to"
        case .invalidPercentile(let p):
            "percentile \(p) must be in (50, 100]"
        case .invalidBinCount(let bins, let minimum):
            "histogram bin count \(bins) is below the minimum \(minimum)"
        case .invalidGroupSize(let size):
            "group size \(size) must be positive"
        case .groupSizeDoesNotDivide(let size, let length):
            "group size \(size) does not divide the row length \(length)"
        case .requiresMatrix(let shape):
            "per-channel and per-group quantization need an [N, K] matrix, got shape \(shape)"
        case .unsupportedDType(let dtype, let expected):
            "expected a \(expected) tensor, got \(dtype)"
        case .unsupportedBits(let bits, let expected):
            "expected \(expected.rawValue)-bit codes, got \(bits.rawValue)-bit"
        case .packedSizeMismatch(let byteCount, let count):
            "\(byteCount) packed bytes do not hold exactly \(count) int4 codes (need \((count + 1) / 2))"
        }
    }
}
