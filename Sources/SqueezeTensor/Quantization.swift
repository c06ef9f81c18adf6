import CKernels

/// Affine 8-bit quantisation of activations, one scale and zero point for the
/// whole tensor or one per row (all leading axes flattened):
/// `q = clamp(round(x · (1/scale)) + zeroPoint, range)`, rounding half to even,
/// and back `x̂ = scale · (q − zeroPoint)`.
///
/// Multiplying by the reciprocal (rounded to `Float` once) rather than
/// dividing is what the vector kernels do; every backend does the same, so
/// the integers are identical everywhere.
public struct ActivationQuantization: Sendable, Hashable {
    /// One scale (per tensor) or one per row; finite and positive.
    public var scales: [Float]
    /// One per scale, inside `range`.
    public var zeroPoints: [Int32]
    /// The integers used, inside `0...255`. `0...127` (7 bits, PyTorch's
    /// `reduce_range`) lets the int8 product use its fastest kernel with any
    /// weights; the full `0...255` does so only with weights whose
    /// `fastActivationLimit` is 255 (e.g. quantised to 7 bits).
    public var range: ClosedRange<Int32>
    /// One positive factor per input column (the last axis), applied with the
    /// scale: column `j` is quantised as `x · inverseScales[j]`, with
    /// `inverseScales[j] = (1 / scale) · channelMultipliers[j]`, one multiply
    /// per element as without them. SmoothQuant's `1 / s_j` lives here
    /// (the weight holds `W · diag(s)`). Per-tensor parameters only; nil: none.
    public private(set) var channelMultipliers: [Float]?

    /// Per-tensor parameters.
    public init(scale: Float, zeroPoint: Int32, range: ClosedRange<Int32> = 0...255) {
        self.init(scales: [scale], zeroPoints: [zeroPoint], range: range)
    }

    /// Per-tensor parameters with one multiplier per input column
    /// (positive normal floats; see `channelMultipliers`).
    public init(scale: Float, zeroPoint: Int32, range: ClosedRange<Int32> = 0...255, channelMultipliers: [Float]) {
        precondition(
            !channelMultipliers.isEmpty && channelMultipliers.allSatisfy { $0.isNormal && $0 > 0 },
            "ActivationQuantization: channel multipliers must be positive normal numbers")
        self.init(scales: [scale], zeroPoints: [zeroPoint], range: range)
        self.channelMultipliers = channelMultipliers
    }

    /// Per-tensor (one element each) or per-row parameters.
    public init(scales: [Float], zeroPoints: [Int32], range: ClosedRange<Int32> = 0...255) {
        precondition(!scales.isEmpty && scales.count == zeroPoints.count, "ActivationQuantization: one zero point per scale")
        precondition(range.lowerBound >= 0 && range.upperBound <= 255 && range.count > 1, "ActivationQuantization: range \(range) outside 0...255")
        precondition(scales.allSatisfy { $0.isNormal && $0 > 0 }, "ActivationQuantization: scales must be positive normal numbers")
        precondition(zeroPoints.allSatisfy { range.contains($0) }, "ActivationQuantization: zero points outside \(range)")
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.range = range
    }

    /// Asymmetric parameters mapping each `[min, max]` of `ranges`, widened
    /// to include 0, onto `range`: `scale = (max − min) / (q_max − q_min)`,
    /// `zeroPoint = q_min − round(min / scale)`, so 0 is exact. An empty
    /// range (`min == max == 0`) gets scale 1.
    public init(ranges: ActivationRange, range: ClosedRange<Int32> = 0...255) {
        var scales: [Float] = []
        var zeroPoints: [Int32] = []
        let levels = Float(range.upperBound - range.lowerBound)
        for (minimum, maximum) in zip(ranges.minimums, ranges.maximums) {
            let (low, high) = (Swift.min(minimum, 0), Swift.max(maximum, 0))
            let width = high - low
            var scale = width > 0 && width.isFinite ? width / levels : 1
            if !scale.isNormal { scale = Float.leastNormalMagnitude }
            let zero = Float(range.lowerBound) - (low / scale).rounded(.toNearestOrEven)
            scales.append(scale)
            zeroPoints.append(Int32(Swift.min(Swift.max(zero, Float(range.lowerBound)), Float(range.upperBound))))
        }
        self.init(scales: scales, zeroPoints: zeroPoints, range: range)
    }

    /// True when every row has its own parameters.
    public var isPerRow: Bool { scales.count > 1 }

    /// These parameters without channel multipliers.
    public var withoutChannelMultipliers: ActivationQuantization {
        var copy = self
        copy.channelMultipliers = nil
        return copy
    }

    /// `(1 / scale) · channelMultipliers[j]` per column (per-tensor parameters
    /// with multipliers only): what each column's values are multiplied by.
    func columnInverseScales(_ columns: Int, _ op: String) -> [Float] {
        guard let channelMultipliers else { return [Float](repeating: 1 / scales[0], count: columns) }
        precondition(!isPerRow, "\(op): channel multipliers with per-row parameters")
        precondition(channelMultipliers.count == columns, "\(op): \(channelMultipliers.count) channel multipliers for \(columns) columns")
        let inverse = 1 / scales[0]
        return channelMultipliers.map { inverse * $0 }
    }

    /// Precondition that there are no channel multipliers (ops that do not take them).
    func requireNoChannelMultipliers(_ op: String) {
        precondition(channelMultipliers == nil, "\(op): channel multipliers are not supported here")
    }

    /// Precondition that these parameters fit a tensor of `rows` rows.
    func requireRows(_ rows: Int, _ op: String) {
        precondition(scales.count == 1 || scales.count == rows, "\(op): \(scales.count) activation scales for \(rows) rows")
    }

    /// Row `row`'s scale and zero point.
    func parameters(row: Int) -> (scale: Float, zeroPoint: Int32) {
        let index = scales.count == 1 ? 0 : row
        return (scales[index], zeroPoints[index])
    }
}

/// The range of a batch of activations, per tensor (one element) or per row:
/// the smallest and largest finite values, widened to include 0.
public struct ActivationRange: Sendable, Hashable {
    public var minimums: [Float]
    public var maximums: [Float]

    public init(minimums: [Float], maximums: [Float]) {
        precondition(minimums.count == maximums.count, "ActivationRange: one maximum per minimum")
        precondition(
            zip(minimums, maximums).allSatisfy { $0.isFinite && $1.isFinite && $0 <= $1 },
            "ActivationRange: bounds must be finite with minimum <= maximum")
        self.minimums = minimums
        self.maximums = maximums
    }
}

/// What an int8 linear layer returns.
public enum QuantizedLinearOutput: Sendable, Hashable {
    /// `Σ_k q_x[m, k] · q_w[n, k]` as i32: the exact integer sums, no epilogue.
    case accumulators
    /// f32 `y = fma(Float(Σ_k (q_x − z_x) · q_w), s_x · s_w[n], bias[n])`.
    case float
    /// `y` requantised to u8 with these per-tensor parameters.
    case quantized(ActivationQuantization)
}

/// A linear layer's weight (`[out, in]`, as PyTorch stores it) quantised to
/// int8 symmetrically per output row (`w ≈ scales[n] · values[n, k]`) and
/// packed once for the int8 product, with the row sums the zero-point
/// correction needs.
///
/// Weight-only and 4-bit variants (per-group scales) would be types of their
/// own next to this one; this one is the W8A8 operand.
public struct PackedInt8Weights: Sendable {
    /// N: rows of the weight, columns of the product.
    public let outputCount: Int
    /// K: the reduced axis.
    public let inputCount: Int
    /// The int8 weights, i8 `[N, K]`.
    public let values: Tensor
    /// One per output row.
    public let scales: [Float]
    /// `Σ_k values[n, k]`.
    public let columnSums: [Int32]
    /// The largest activation (≤ 255) with which these weights run the
    /// fastest AVX2 kernel: it adds two u8·s8 products in int16, so it needs
    /// `a · (w₀ + w₁)` inside int16 for every same-signed pair of weights.
    /// Any weights allow at least 128 (so 7-bit activations always qualify);
    /// weights within ±64 (e.g. `init(quantizing:bits: 7)`) allow 255.
    public let fastActivationLimit: Int32
    /// Panels of `SQ_I8_PANEL` rows × groups of 4 k (see `sq_i8_pack_weights`).
    let packed: [Int8]

    /// Largest K: the int32 sums of 255 · 128 · K must not overflow.
    public static let maxInputCount = 65_535

    /// Packs int8 weights (i8 `[N, K]`) with one scale per row.
    public init(values: Tensor, scales: [Float]) {
        precondition(values.dtype == .i8 && values.rank == 2, "PackedInt8Weights: values must be i8 [N, K], got \(values.dtype) \(values.shape)")
        let (n, k) = (values.shape[0], values.shape[1])
        precondition(k <= Self.maxInputCount, "PackedInt8Weights: K = \(k) exceeds \(Self.maxInputCount)")
        precondition(scales.count == n, "PackedInt8Weights: \(scales.count) scales for \(n) rows")
        precondition(scales.allSatisfy { $0.isFinite && $0 > 0 }, "PackedInt8Weights: scales must be finite and positive")
        let contiguous = values.contiguous()
        var packed = [Int8](repeating: 0, count: Swift.max(1, sq_i8_packed_bytes(n, k)))
        var sums = [Int32](repeating: 0, count: Swift.max(1, n))
        let limit = contiguous.withUnsafeElements(Int8.self) { w in
            packed.withUnsafeMutableBufferPointer { out in
                sums.withUnsafeMutableBufferPointer { sumsOut in
                    sq_i8_pack_weights(w.baseAddress, n, k, out.baseAddress, sumsOut.baseAddress)
                }
            }
        }
        self.outputCount = n
        self.inputCount = k
        self.values = contiguous
        self.scales = scales
        self.columnSums = Array(sums.prefix(n))
        self.fastActivationLimit = limit
        self.packed = packed
    }

    /// Quantises an f32 weight `[N, K]` symmetrically per row to `bits` bits:
    /// `scale = max|w| / q_max`, `q = clamp(round(w / scale), −q_max, q_max)`
    /// with `q_max = 2^(bits−1) − 1` (an all-zero row gets scale 1).
    /// Non-finite weights are a precondition failure.
    public init(quantizing weight: Tensor, bits: Int = 8) {
        weight.requireFloat("PackedInt8Weights")
        precondition(weight.rank == 2, "PackedInt8Weights: weight must be [N, K], got \(weight.shape)")
        precondition((2...8).contains(bits), "PackedInt8Weights: bits must be in 2...8")
        let (n, k) = (weight.shape[0], weight.shape[1])
        let limit = Float((1 << (bits - 1)) - 1)
        var scales = [Float](repeating: 1, count: n)
        var quantized = [Int8](repeating: 0, count: n * k)
        weight.withUnsafeFloats { w in
            for row in 0..<n {
                let values = w[(row * k)..<((row + 1) * k)]
                precondition(values.allSatisfy(\.isFinite), "PackedInt8Weights: non-finite weight in row \(row)")
                let largest = values.reduce(Float(0)) { Swift.max($0, abs($1)) }
                let scale = largest > 0 ? largest / limit : 1
                scales[row] = scale.isNormal ? scale : Float.leastNormalMagnitude
                for (offset, value) in values.enumerated() {
                    let q = (value / scales[row]).rounded(.toNearestOrEven)
                    quantized[row * k + offset] = Int8(Swift.min(Swift.max(q, -limit), limit))
                }
            }
        }
        self.init(values: Tensor(shape: [n, k], int8s: quantized), scales: scales)
    }

    /// `scales[n] · values[n, k]` as f32 `[N, K]` (the fake-quantised weight).
    public func dequantized() -> Tensor {
        let k = inputCount
        let floats = values.withUnsafeElements(Int8.self) { q in
            (0..<(outputCount * k)).map { scales[$0 / Swift.max(k, 1)] * Float(q[$0]) }
        }
        return Tensor(shape: [outputCount, inputCount], floats: floats)
    }
}

extension Tensor {
    /// An i8 tensor with the given values (row-major).
    public init(shape: [Int], int8s values: [Int8]) {
        precondition(values.count == shape.reduce(1, *), "Tensor(shape:int8s:): \(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .i8)
        let base = storage.bytes.assumingMemoryBound(to: Int8.self)
        values.withUnsafeBufferPointer { source in
            if let address = source.baseAddress { base.update(from: address, count: values.count) }
        }
    }

    /// A u8 tensor with the given values (row-major).
    public init(shape: [Int], uint8s values: [UInt8]) {
        precondition(values.count == shape.reduce(1, *), "Tensor(shape:uint8s:): \(values.count) values for shape \(shape)")
        self.init(zeros: shape, dtype: .u8)
        let base = storage.bytes.assumingMemoryBound(to: UInt8.self)
        values.withUnsafeBufferPointer { source in
            if let address = source.baseAddress { base.update(from: address, count: values.count) }
        }
    }

    /// All elements as `Int8` (i8 only), row-major.
    public var int8s: [Int8] {
        precondition(dtype == .i8, "int8s of a \(dtype) tensor")
        return withUnsafeElements(Int8.self) { Array($0) }
    }

    /// All elements as `UInt8` (u8 only), row-major.
    public var uint8s: [UInt8] {
        precondition(dtype == .u8, "uint8s of a \(dtype) tensor")
        return withUnsafeElements(UInt8.self) { Array($0) }
    }
}
