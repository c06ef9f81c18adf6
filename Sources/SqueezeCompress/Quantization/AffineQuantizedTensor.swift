import SqueezeTensor

/// A tensor's integer codes with their scales and zero points.
///
/// Codes are one per element, in the input's shape: `i8` for signed schemes,
/// `u8` for unsigned ones (4-bit codes too; `int4PackedCodes()` packs them two
/// per byte for storage). Parameters are row-major over the slices: one for a
/// per-tensor tensor, `N` for per-channel, `N · K / g` for per-group (row `r`,
/// group `j` at `r · K / g + j`).
public struct AffineQuantizedTensor: Sendable {
    public let scheme: QuantizationScheme
    public let granularity: QuantizationGranularity
    public let codes: Tensor
    public let quantizers: [AffineQuantizer]

    public var shape: [Int] { codes.shape }
    public var scales: [Float] { quantizers.map(\.scale) }
    public var zeroPoints: [Int32] { quantizers.map(\.zeroPoint) }

    /// Quantizes `tensor` from its own values (weights need no calibration):
    /// each slice's finite min and max give its quantizer through `scheme`.
    ///
    /// NaN and ±∞ are left out of the ranges (NaN then quantizes to the zero
    /// point, ±∞ to the ends); a slice with no finite value gets the quantizer
    /// of the range {0}.
    ///
    /// - Throws: `unsupportedDType` unless `tensor` is f32; for per-channel and
    ///   per-group, `requiresMatrix` unless it is `[N, K]`; for per-group,
    ///   `invalidGroupSize` / `groupSizeDoesNotDivide` unless `0 < g` and `g | K`.
    public init(quantizing tensor: Tensor, scheme: QuantizationScheme, granularity: QuantizationGranularity) throws(QuantizationError) {
        guard tensor.dtype == .f32 else { throw .unsupportedDType(tensor.dtype, expected: .f32) }
        let (sliceCount, sliceLength) = try Self.slices(shape: tensor.shape, granularity: granularity)
        let ranges = tensor.withUnsafeFloats { values in
            (0..<sliceCount).map { slice in
                FiniteExtrema(UnsafeBufferPointer(rebasing: values[slice * sliceLength..<(slice + 1) * sliceLength]))
            }
        }
        var quantizers: [AffineQuantizer] = []
        quantizers.reserveCapacity(sliceCount)
        for extrema in ranges {
            quantizers.append(
                extrema.hasValues
                    ? try scheme.quantizer(min: extrema.minimum, max: extrema.maximum)
                    : try scheme.quantizer(min: 0, max: 0))
        }
        self.init(tensor: tensor, scheme: scheme, granularity: granularity, quantizers: quantizers, sliceLength: sliceLength)
    }

    /// Quantizes `tensor` per-tensor with a given quantizer (e.g. a calibrated
    /// activation range). The scheme records the code range's signedness and width.
    ///
    /// - Throws: `unsupportedDType` unless `tensor` is f32.
    public init(quantizing tensor: Tensor, with quantizer: AffineQuantizer, scheme: QuantizationScheme) throws(QuantizationError) {
        guard tensor.dtype == .f32 else { throw .unsupportedDType(tensor.dtype, expected: .f32) }
        guard scheme.storageRange.contains(quantizer.codeRange.lowerBound),
            scheme.storageRange.contains(quantizer.codeRange.upperBound)
        else { throw .invalidParameters(scale: quantizer.scale, zeroPoint: quantizer.zeroPoint) }
        self.init(tensor: tensor, scheme: scheme, granularity: .perTensor, quantizers: [quantizer], sliceLength: tensor.count)
    }

    private init(
        tensor: Tensor, scheme: QuantizationScheme, granularity: QuantizationGranularity, quantizers: [AffineQuantizer],
        sliceLength: Int
    ) {
        var codes = Tensor(zeros: tensor.shape, dtype: scheme.isSigned ? .i8 : .u8)
        if scheme.isSigned {
            Self.quantizeSlices(tensor, into: &codes, as: Int8.self, quantizers: quantizers, sliceLength: sliceLength)
        } else {
            Self.quantizeSlices(tensor, into: &codes, as: UInt8.self, quantizers: quantizers, sliceLength: sliceLength)
        }
        self.scheme = scheme
        self.granularity = granularity
        self.codes = codes
        self.quantizers = quantizers
    }

    /// How many quantizers, and how many consecutive elements share each.
    static func slices(shape: [Int], granularity: QuantizationGranularity) throws(QuantizationError) -> (count: Int, length: Int) {
        switch granularity {
        case .perTensor:
            return (1, shape.reduce(1, *))
        case .perChannel:
            guard shape.count == 2 else { throw .requiresMatrix(shape: shape) }
            return (shape[0], shape[1])
        case .perGroup(let size):
            guard shape.count == 2 else { throw .requiresMatrix(shape: shape) }
            guard size > 0 else { throw .invalidGroupSize(size) }
            guard shape[1] % size == 0 else { throw .groupSizeDoesNotDivide(groupSize: size, rowLength: shape[1]) }
            return (shape[0] * shape[1] / size, size)
        }
    }

    /// The f32 tensor the codes stand for: `s · (q − z)` per slice.
    public func dequantized() -> Tensor {
        var result = Tensor(zeros: codes.shape)
        let count = codes.count
        let sliceLength = quantizers.count == 0 ? 0 : count / quantizers.count
        guard sliceLength > 0 else { return result }
        if scheme.isSigned {
            Self.dequantizeSlices(codes, as: Int8.self, into: &result, quantizers: quantizers, sliceLength: sliceLength)
        } else {
            Self.dequantizeSlices(codes, as: UInt8.self, into: &result, quantizers: quantizers, sliceLength: sliceLength)
        }
        return result
    }

    /// The codes packed two per byte in row-major element order (see `Int4Packing`).
    ///
    /// - Throws: `unsupportedBits` unless the scheme is 4-bit.
    public func int4PackedCodes() throws(QuantizationError) -> [UInt8] {
        guard scheme.bits == .four else { throw .unsupportedBits(scheme.bits, expected: .four) }
        if scheme.isSigned {
            return codes.withUnsafeElements(Int8.self) { Int4Packing.pack($0) }
        }
        return codes.withUnsafeElements(UInt8.self) { Int4Packing.pack($0) }
    }

    /// `quantizers[i]` maps the `i`-th run of `sliceLength` elements of f32
    /// `tensor` to codes of type `Code` in `codes`.
    private static func quantizeSlices<Code: QuantizationCode>(
        _ tensor: Tensor, into codes: inout Tensor, as: Code.Type, quantizers: [AffineQuantizer], sliceLength: Int
    ) {
        guard sliceLength > 0 else { return }
        tensor.withUnsafeFloats { values in
            guard let base = values.baseAddress else { return }
            codes.withUnsafeMutableElements(Code.self) { output in
                guard let out = output.baseAddress else { return }
                for (slice, quantizer) in quantizers.enumerated() {
                    let start = slice * sliceLength
                    Code.quantize(
                        UnsafeBufferPointer(start: base + start, count: sliceLength), with: quantizer,
                        into: UnsafeMutableBufferPointer(start: out + start, count: sliceLength))
                }
            }
        }
    }

    /// The inverse of `quantizeSlices`: `s · (q − z)` per run into f32 `result`.
    private static func dequantizeSlices<Code: QuantizationCode>(
        _ codes: Tensor, as: Code.Type, into result: inout Tensor, quantizers: [AffineQuantizer], sliceLength: Int
    ) {
        guard sliceLength > 0 else { return }
        result.withUnsafeMutableFloats { output in
            guard let out = output.baseAddress else { return }
            codes.withUnsafeElements(Code.self) { input in
                guard let base = input.baseAddress else { return }
                for (slice, quantizer) in quantizers.enumerated() {
                    let start = slice * sliceLength
                    Code.dequantize(
                        UnsafeBufferPointer(start: base + start, count: sliceLength), with: quantizer,
                        into: UnsafeMutableBufferPointer(start: out + start, count: sliceLength))
                }
            }
        }
    }
}

/// The storage types of quantized codes (`i8` and `u8` tensors), so one
/// generic loop serves signed and unsigned schemes.
private protocol QuantizationCode {
    static func quantize(_ values: UnsafeBufferPointer<Float>, with quantizer: AffineQuantizer, into codes: UnsafeMutableBufferPointer<Self>)
    static func dequantize(_ codes: UnsafeBufferPointer<Self>, with quantizer: AffineQuantizer, into values: UnsafeMutableBufferPointer<Float>)
}

extension Int8: QuantizationCode {
    fileprivate static func quantize(_ values: UnsafeBufferPointer<Float>, with quantizer: AffineQuantizer, into codes: UnsafeMutableBufferPointer<Int8>) {
        quantizer.quantize(values, into: codes)
    }
    fileprivate static func dequantize(_ codes: UnsafeBufferPointer<Int8>, with quantizer: AffineQuantizer, into values: UnsafeMutableBufferPointer<Float>) {
        quantizer.dequantize(codes, into: values)
    }
}

extension UInt8: QuantizationCode {
    fileprivate static func quantize(_ values: UnsafeBufferPointer<Float>, with quantizer: AffineQuantizer, into codes: UnsafeMutableBufferPointer<UInt8>) {
        quantizer.quantize(values, into: codes)
    }
    fileprivate static func dequantize(_ codes: UnsafeBufferPointer<UInt8>, with quantizer: AffineQuantizer, into values: UnsafeMutableBufferPointer<Float>) {
        quantizer.dequantize(codes, into: values)
    }
}
