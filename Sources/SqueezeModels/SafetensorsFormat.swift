import SqueezeTensor

/// Element types a safetensors file can declare that this reader understands.
/// Tensors with any other dtype are listed in `SafetensorsFile.skipped`.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }
}

extension SafetensorsDType {
    /// The file dtype that stores a tensor's `dtype` unchanged.
    public init(_ dtype: DType) {
        switch dtype {
        case .f32: self = .f32
        case .f16: self = .f16
        case .bf16: self = .bf16
        case .i64: self = .i64
        case .i32: self = .i32
        case .i8: self = .i8
        case .u8: self = .u8
        }
    }

    /// The tensor dtype holding this file dtype's bytes unchanged (`BOOL` as
    /// `u8`); nil for F64 and I16, which `SafetensorsFile.tensor` converts.
    public var tensorDType: DType? {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .i64: .i64
        case .i32: .i32
        case .i8: .i8
        case .u8, .bool: .u8
        case .f64, .i16: nil
        }
    }
}

/// One tensor's description from a safetensors header.
public struct SafetensorsEntry: Sendable, Hashable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range within the data buffer (the bytes after the header).
    public let byteRange: Range<Int>

    public init(name: String, dtype: SafetensorsDType, shape: [Int], byteRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
    }

    /// Product of the shape (1 for a scalar, 0 for an empty tensor). The
    /// reader has already checked that this product does not overflow.
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Shared helpers for the format, internal to the module.
enum Safetensors {
    /// The reference implementation refuses headers above 100 MB; so do we.
    static let maxHeaderLength: UInt64 = 100_000_000
    static let metadataKey = "__metadata__"

    /// Product of `shape` times `byteSize`, or nil on a negative dimension or overflow.
    static func byteCount(shape: [Int], byteSize: Int) -> Int? {
        var product = byteSize
        for dim in shape {
            guard dim >= 0 else { return nil }
            let (next, overflow) = product.multipliedReportingOverflow(by: dim)
            guard !overflow else { return nil }
            product = next
        }
        return product
    }

    /// Converts IEEE 754 half-precision bits to a Float (exact: every half is a float).
    static func floatFromHalf(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32((bits >> 10) & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0x1F {
            // Infinity or NaN: all-ones exponent, mantissa kept (NaN payload).
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {
            // Zero or subnormal: value is mantissa * 2^-24.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// bfloat16 is the top half of a Float's bits.
    static func floatFromBFloat16(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Compares names by their UTF-8 bytes, so ordering never depends on
    /// Unicode normalization.
    static func utf8Less(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}
