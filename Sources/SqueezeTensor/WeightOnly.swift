import CKernels

/// Why weights cannot be quantised or loaded for weight-only products; the
/// parameters come from recipes and files, so these are errors, not crashes.
public enum WeightOnlyQuantizationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Only 4- and 8-bit codes exist.
    case unsupportedBits(Int)
    /// A group size below 1.
    case invalidGroupSize(Int)
    /// The group size does not divide the input width K.
    case groupSizeDoesNotDivide(groupSize: Int, inputCount: Int)
    /// The weight (or the codes) is not a rank-2 tensor of the expected element type.
    case invalidWeight(dtype: DType, shape: [Int], expected: String)
    /// A NaN or infinite weight: it has no nearest code.
    case nonFiniteWeight(row: Int, column: Int)
    /// A code outside the range of its width and signedness.
    case codeOutOfRange(row: Int, column: Int, code: Int32, range: ClosedRange<Int32>)
    /// Not one scale (or zero point) per group: `expected` = N · K / groupSize.
    case parameterCount(name: String, count: Int, expected: Int)
    /// A scale that is not positive and finite.
    case invalidScale(index: Int, scale: Float)
    /// A zero point outside the code range.
    case zeroPointOutOfRange(index: Int, zeroPoint: Int32, range: ClosedRange<Int32>)
    /// Packed int4 bytes that do not hold exactly N · K codes.
    case packedSizeMismatch(byteCount: Int, count: Int)

    public var description: String {
        switch self {
        case .unsupportedBits(let bits):
            "weight-only quantization supports 4 or 8 bits, got \(bits)"
        case .invalidGroupSize(let size):
            "group size \(size) must be at least 1"
        case .groupSizeDoesNotDivide(let size, let width):
            "group size \(size) does not divide the input width \(width)"
        case .invalidWeight(let dtype, let shape, let expected):
            "expected \(expected), got a \(dtype) tensor of shape \(shape)"
        case .nonFiniteWeight(let row, let column):
            "weight [\(row), \(column)] is not finite"
        case .codeOutOfRange(let row, let column, let code, let range):
            "code \(code) at [\(row), \(column)] is outside \(range.lowerBound)...\(range.upperBound)"
        case .parameterCount(let name, let count, let expected):
            "\(count) \(name) for \(expected) groups"
        case .invalidScale(let index, let scale):
            "scale \(scale) of group \(index) must be positive and finite"
        case .zeroPointOutOfRange(let index, let zeroPoint, let range):
            "zero point \(zeroPoint) of group \(index) is outside \(range.lowerBound)...\(range.upperBound)"
        case .packedSizeMismatch(let byteCount, let count):
            "\(byteCount) packed bytes do not hold exactly \(count) int4 codes (need \((count + 1) / 2))"
        }
    }
}

/// A linear layer's weight (`[N, K]` = `[out, in]`) quantised to 4 or 8 bits
/// with one scale (and, asymmetric, one zero point) per group of `groupSize`
/// consecutive k of a row: `ŵ[n, k] = scale · (q[n, k] − zero)` of k's group.
/// The operand of `Backend.weightOnlyLinear` (f32 activations, W4A32/W8A32).
///
/// Codes are kept signed: int4 −8…7, int8 −128…127. Unsigned codes (0…15,
/// 0…255) are accepted and shifted by 2^(bits−1) together with their zero
/// points, which dequantises to the same values.
///
/// Stored once, in the layout the kernels read (panels of 16 rows; int4 two
/// codes per byte), with f32 scales: an int4 weight with groups of 32 takes
/// 4 + 1 bits per weight, int8 8 + 1 (plus 8 bits per group for zero points).
/// `codes`, `scales` and `int4PackedCodes()` rebuild the row-major views for
/// saving.
public struct PackedGroupWeights: Sendable {
    /// How a group's real range maps onto the codes.
    public enum Mapping: String, Sendable, Hashable, CaseIterable {
        /// Zero point 0, `scale = max|w| / q_max`, codes in [−q_max, q_max]
        /// (int4 −7…7, int8 −127…127), so `−w` quantises to `−q`.
        case symmetric
        /// The range widened to include 0, `scale = (max − min) / (q_max − q_min)`,
        /// `zero = q_min − round(min / scale)`, codes over the whole signed range:
        /// 0 is exact.
        case asymmetric
    }

    /// N: rows of the weight, columns of the product.
    public let outputCount: Int
    /// K: the reduced axis.
    public let inputCount: Int
    /// 4 or 8.
    public let bits: Int
    /// Consecutive k sharing a scale; divides K.
    public let groupSize: Int
    /// Panels of `SQ_WO_PANEL` rows (see `sq_wo_pack`).
    let packedCodes: [UInt8]
    let packedScales: [Float]
    /// Empty when every zero point is 0.
    let packedZeroPoints: [Int8]

    /// The widths there are codes for.
    public static let supportedBits: Set<Int> = [4, 8]

    /// Groups per row: K / groupSize.
    public var groupsPerRow: Int { inputCount / groupSize }

    /// True when every zero point is 0 (no zero points are stored).
    public var isSymmetric: Bool { packedZeroPoints.isEmpty }

    /// Bytes held: codes (padded to whole panels of 16 rows), scales, zero points.
    public var byteCount: Int { packedCodes.count + packedScales.count * 4 + packedZeroPoints.count }

    /// Every code a width can hold, signed or unsigned.
    public static func codeRange(bits: Int, signed: Bool) -> ClosedRange<Int32> {
        let levels = Int32(1) << Int32(bits)
        return signed ? -(levels / 2)...(levels / 2 - 1) : 0...(levels - 1)
    }

    /// Quantises an f32 weight `[N, K]` per group, rounding `w / scale` to the
    /// nearest code (half to even) and clamping to the mapping's codes. Each
    /// `|w − ŵ|` is then at most `scale / 2` (up to float rounding).
    ///
    /// Scales follow the zero-range and overflow guards of SqueezeCompress's
    /// `QuantizationScheme`: an all-zero group gets scale 1, a scale never
    /// drops below `Float.leastNormalMagnitude`, and `scale · q_max` stays finite.
    ///
    /// - Throws: `unsupportedBits` unless `bits` is 4 or 8; `invalidGroupSize`
    ///   / `groupSizeDoesNotDivide` unless `groupSize ≥ 1` divides K;
    ///   `invalidWeight` unless `weight` is f32 `[N, K]`; `nonFiniteWeight`.
    public init(
        quantizing weight: Tensor, bits: Int, groupSize: Int, mapping: Mapping = .symmetric
    ) throws(WeightOnlyQuantizationError) {
        guard weight.dtype == .f32, weight.rank == 2 else {
            throw .invalidWeight(dtype: weight.dtype, shape: weight.shape, expected: "an f32 [N, K] weight")
        }
        let (n, k) = (weight.shape[0], weight.shape[1])
        try Self.validate(bits: bits, groupSize: groupSize, inputCount: k)
        let groups = k / groupSize
        let storage = Self.codeRange(bits: bits, signed: true)
        let codes = mapping == .symmetric ? -storage.upperBound...storage.upperBound : storage
        var quantized = [Int8](repeating: 0, count: n * k)
        var scales = [Float](repeating: 1, count: n * groups)
        var zeros = [Int8](repeating: 0, count: mapping == .symmetric ? 0 : n * groups)
        let failure: WeightOnlyQuantizationError? = weight.withUnsafeFloats { w in
            for group in 0..<(n * groups) {
                let start = group * groupSize
                let values = UnsafeBufferPointer(rebasing: w[start..<(start + groupSize)])
                var low: Float = 0
                var high: Float = 0
                for (offset, value) in values.enumerated() {
                    guard value.isFinite else {
                        return .nonFiniteWeight(row: group / groups, column: group % groups * groupSize + offset)
                    }
                    low = Swift.min(low, value)
                    high = Swift.max(high, value)
                }
                let (scale, zero) = Self.parameters(low: low, high: high, codes: codes, mapping: mapping)
                scales[group] = scale
                if !zeros.isEmpty { zeros[group] = Int8(zero) }
                // Clamping t = w / s to [q_min − z, q_max − z] before rounding
                // is clamping after it: both bounds are integers.
                let lowest = Float(codes.lowerBound - zero)
                let highest = Float(codes.upperBound - zero)
                for (offset, value) in values.enumerated() {
                    let t = Swift.min(Swift.max(value / scale, lowest), highest).rounded(.toNearestOrEven)
                    quantized[start + offset] = Int8(Int32(t) + zero)
                }
            }
            return nil
        }
        if let failure { throw failure }
        self.init(
            unchecked: quantized, outputCount: n, inputCount: k, bits: bits, groupSize: groupSize, scales: scales,
            zeroPoints: zeros)
    }

    /// Weights from codes already quantised (e.g. read from a file): `codes`
    /// is i8 (signed: −8…7 / −128…127) or u8 (unsigned: 0…15 / 0…255)
    /// `[N, K]`, one code per element; `scales` and `zeroPoints` (nil: all 0)
    /// hold one entry per group, row-major (`[N, K / groupSize]`), zero points
    /// in the codes' range.
    ///
    /// - Throws: the `validate` errors of the bits and group size;
    ///   `invalidWeight` for another dtype or rank; `codeOutOfRange`;
    ///   `parameterCount`; `invalidScale`; `zeroPointOutOfRange`.
    public init(
        codes: Tensor, bits: Int, groupSize: Int, scales: [Float], zeroPoints: [Int32]? = nil
    ) throws(WeightOnlyQuantizationError) {
        guard codes.dtype == .i8 || codes.dtype == .u8, codes.rank == 2 else {
            throw .invalidWeight(dtype: codes.dtype, shape: codes.shape, expected: "i8 or u8 [N, K] codes")
        }
        let (n, k) = (codes.shape[0], codes.shape[1])
        try Self.validate(bits: bits, groupSize: groupSize, inputCount: k)
        let signed = codes.dtype == .i8
        let range = Self.codeRange(bits: bits, signed: signed)
        let shift: Int32 = signed ? 0 : Int32(1) << Int32(bits - 1)
        var values = [Int8](repeating: 0, count: n * k)
        let failure: WeightOnlyQuantizationError? = {
            if signed {
                return codes.withUnsafeElements(Int8.self) { source in
                    Self.copyCodes(source, into: &values, range: range, shift: 0, columns: k)
                }
            }
            return codes.withUnsafeElements(UInt8.self) { source in
                Self.copyCodes(source, into: &values, range: range, shift: shift, columns: k)
            }
        }()
        if let failure { throw failure }
        try self.init(
            validatedCodes: values, outputCount: n, inputCount: k, bits: bits, groupSize: groupSize, scales: scales,
            zeroPoints: zeroPoints, zeroPointRange: range, shift: shift)
    }

    /// Int4 weights from codes packed two per byte in row-major element order
    /// (code 2i in the low nibble of byte i, 2i + 1 in the high nibble; an odd
    /// N · K leaves the last high nibble unused): SqueezeCompress's
    /// `Int4Packing` layout. `signed`: two's-complement nibbles −8…7, else 0…15.
    ///
    /// - Throws: `packedSizeMismatch` unless there are ⌈N · K / 2⌉ bytes, and
    ///   the errors of `init(codes:…)`.
    public init(
        int4Codes packed: [UInt8], signed: Bool, outputCount: Int, inputCount: Int, groupSize: Int, scales: [Float],
        zeroPoints: [Int32]? = nil
    ) throws(WeightOnlyQuantizationError) {
        guard outputCount >= 0, inputCount >= 0 else {
            throw .invalidWeight(dtype: .u8, shape: [outputCount, inputCount], expected: "a non-negative [N, K]")
        }
        try Self.validate(bits: 4, groupSize: groupSize, inputCount: inputCount)
        let count = outputCount * inputCount
        guard packed.count == (count + 1) / 2 else { throw .packedSizeMismatch(byteCount: packed.count, count: count) }
        var values = [Int8](repeating: 0, count: count)
        for index in 0..<count {
            let byte = packed[index / 2]
            let nibble = index % 2 == 0 ? byte & 0x0F : byte >> 4
            // Two's complement (signed), or 0…15 shifted by −8: both are the nibble with bit 3 read as −8.
            let signedNibble = Int8(bitPattern: nibble << 4) >> 4
            values[index] = signed ? signedNibble : Int8(Int(nibble) - 8)
        }
        try self.init(
            validatedCodes: values, outputCount: outputCount, inputCount: inputCount, bits: 4, groupSize: groupSize,
            scales: scales, zeroPoints: zeroPoints, zeroPointRange: Self.codeRange(bits: 4, signed: signed),
            shift: signed ? 0 : 8)
    }

    /// Signed codes already in range; checks and shifts the parameters.
    private init(
        validatedCodes values: [Int8], outputCount n: Int, inputCount k: Int, bits: Int, groupSize: Int,
        scales: [Float], zeroPoints: [Int32]?, zeroPointRange: ClosedRange<Int32>, shift: Int32
    ) throws(WeightOnlyQuantizationError) {
        let expected = n * (k / groupSize)
        guard scales.count == expected else { throw .parameterCount(name: "scales", count: scales.count, expected: expected) }
        if let index = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw .invalidScale(index: index, scale: scales[index])
        }
        var zeros: [Int8] = []
        if let zeroPoints {
            guard zeroPoints.count == expected else {
                throw .parameterCount(name: "zero points", count: zeroPoints.count, expected: expected)
            }
            if let index = zeroPoints.firstIndex(where: { !zeroPointRange.contains($0) }) {
                throw .zeroPointOutOfRange(index: index, zeroPoint: zeroPoints[index], range: zeroPointRange)
            }
            zeros = zeroPoints.map { Int8($0 - shift) }
        } else if shift != 0 {
            // Unsigned codes without zero points stand for 0…2^bits − 1 themselves.
            zeros = [Int8](repeating: Int8(-shift), count: expected)
        }
        self.init(unchecked: values, outputCount: n, inputCount: k, bits: bits, groupSize: groupSize, scales: scales, zeroPoints: zeros)
    }

    /// Packs signed codes `[N, K]` with row-major parameters (`zeroPoints` empty: symmetric).
    private init(
        unchecked codes: [Int8], outputCount n: Int, inputCount k: Int, bits: Int, groupSize: Int, scales: [Float],
        zeroPoints: [Int8]
    ) {
        let parameterCount = sq_wo_parameter_count(n, k, groupSize)
        var packed = [UInt8](repeating: 0, count: sq_wo_code_bytes(Int32(bits), n, k))
        var packedScales = [Float](repeating: 0, count: parameterCount)
        let zeroed = zeroPoints.contains { $0 != 0 }
        var packedZeros = [Int8](repeating: 0, count: zeroed ? parameterCount : 0)
        codes.withUnsafeBufferPointer { c in
            scales.withUnsafeBufferPointer { s in
                zeroPoints.withUnsafeBufferPointer { z in
                    packed.withUnsafeMutableBufferPointer { p in
                        packedScales.withUnsafeMutableBufferPointer { ps in
                            packedZeros.withUnsafeMutableBufferPointer { pz in
                                sq_wo_pack(
                                    Int32(bits), n, k, groupSize, c.baseAddress, s.baseAddress,
                                    zeroed ? z.baseAddress : nil, p.baseAddress, ps.baseAddress, pz.baseAddress)
                            }
                        }
                    }
                }
            }
        }
        self.outputCount = n
        self.inputCount = k
        self.bits = bits
        self.groupSize = groupSize
        self.packedCodes = packed
        self.packedScales = packedScales
        self.packedZeroPoints = packedZeros
    }

    /// Checks the bits and the group size against K.
    public static func validate(bits: Int, groupSize: Int, inputCount: Int) throws(WeightOnlyQuantizationError) {
        guard supportedBits.contains(bits) else { throw .unsupportedBits(bits) }
        guard groupSize >= 1 else { throw .invalidGroupSize(groupSize) }
        guard inputCount % groupSize == 0 else { throw .groupSizeDoesNotDivide(groupSize: groupSize, inputCount: inputCount) }
    }

    /// Copies codes into signed bytes, shifted by `−shift`; the first one outside `range` is an error.
    private static func copyCodes<Code: BinaryInteger>(
        _ source: UnsafeBufferPointer<Code>, into values: inout [Int8], range: ClosedRange<Int32>, shift: Int32,
        columns: Int
    ) -> WeightOnlyQuantizationError? {
        for (index, code) in source.enumerated() {
            let value = Int32(code)
            guard range.contains(value) else {
                return .codeOutOfRange(row: index / columns, column: index % columns, code: value, range: range)
            }
            values[index] = Int8(value - shift)
        }
        return nil
    }

    /// One group's scale and zero point from its range `[low, high]` (which
    /// includes 0), for codes in `codes`; GPTQ's grid (SqueezeCompress) uses
    /// it too, so its 4- and 8-bit codes are what this format stores.
    package static func parameters(
        low: Float, high: Float, codes: ClosedRange<Int32>, mapping: Mapping
    ) -> (scale: Float, zero: Int32) {
        let qMin = Double(codes.lowerBound)
        let qMax = Double(codes.upperBound)
        var scale: Float
        var zero: Int32 = 0
        switch mapping {
        case .symmetric:
            let bound = Swift.max(-Double(low), Double(high))
            scale = bound == 0 ? 1 : Swift.max(Float(bound / qMax), Float.leastNormalMagnitude)
        case .asymmetric:
            let width = Double(high) - Double(low)
            scale = width == 0 ? 1 : Swift.max(Float(width / (qMax - qMin)), Float.leastNormalMagnitude)
            let shift = (Double(low) / Double(scale)).rounded(.toNearestOrEven)
            zero = Int32(Swift.min(Swift.max(qMin - shift, qMin), qMax))
        }
        // A scale rounded up to Float could push s · (q − z) past the largest float.
        let reach = Float(Swift.max(zero - codes.lowerBound, codes.upperBound - zero))
        while !(scale * reach).isFinite { scale = scale.nextDown }
        return (scale, zero)
    }

    // MARK: Row-major views

    /// Codes, scales (`[N · G]`) and zero points (`[N · G]`, empty when symmetric), row-major.
    private func unpacked() -> (codes: [Int8], scales: [Float], zeroPoints: [Int8]) {
        let n = outputCount
        let k = inputCount
        var codes = [Int8](repeating: 0, count: n * k)
        var scales = [Float](repeating: 0, count: n * groupsPerRow)
        var zeros = [Int8](repeating: 0, count: isSymmetric ? 0 : n * groupsPerRow)
        let symmetric = isSymmetric
        packedCodes.withUnsafeBufferPointer { p in
            packedScales.withUnsafeBufferPointer { ps in
                packedZeroPoints.withUnsafeBufferPointer { pz in
                    codes.withUnsafeMutableBufferPointer { c in
                        scales.withUnsafeMutableBufferPointer { s in
                            zeros.withUnsafeMutableBufferPointer { z in
                                sq_wo_unpack(
                                    Int32(bits), n, k, groupSize, p.baseAddress, ps.baseAddress,
                                    symmetric ? nil : pz.baseAddress, c.baseAddress, s.baseAddress,
                                    symmetric ? nil : z.baseAddress)
                            }
                        }
                    }
                }
            }
        }
        return (codes, scales, zeros)
    }

    /// The signed codes, i8 `[N, K]`.
    public var codes: Tensor { Tensor(shape: [outputCount, inputCount], int8s: unpacked().codes) }

    /// One scale per group, row-major: group `g` of row `n` at `n · groupsPerRow + g`.
    public var scales: [Float] { unpacked().scales }

    /// One signed zero point per group (as `scales`); nil when symmetric.
    public var zeroPoints: [Int32]? { isSymmetric ? nil : unpacked().zeroPoints.map { Int32($0) } }

    /// The signed codes packed two per byte in row-major element order
    /// (`Int4Packing`'s layout); nil for 8-bit weights.
    public func int4PackedCodes() -> [UInt8]? {
        guard bits == 4 else { return nil }
        let codes = unpacked().codes
        var packed = [UInt8](repeating: 0, count: (codes.count + 1) / 2)
        for (index, code) in codes.enumerated() {
            let nibble = UInt8(bitPattern: code) & 0x0F
            packed[index / 2] |= index % 2 == 0 ? nibble : nibble << 4
        }
        return packed
    }

    /// `ŵ = scale · Float(q − zero)` as f32 `[N, K]`.
    public func dequantized() -> Tensor {
        let (codes, scales, zeros) = unpacked()
        let k = inputCount
        var values = [Float](repeating: 0, count: codes.count)
        for index in codes.indices {
            let group = (index / Swift.max(k, 1)) * groupsPerRow + (index % Swift.max(k, 1)) / groupSize
            let zero = zeros.isEmpty ? 0 : Int32(zeros[group])
            values[index] = scales[group] * Float(Int32(codes[index]) - zero)
        }
        return Tensor(shape: [outputCount, inputCount], floats: values)
    }
}
