import SqueezeTensor

/// The integer grid of a group-wise weight-only format: `bits`, one scale
/// (and, asymmetric, one zero point) per `groupSize` consecutive inputs of a
/// row (−1: one per row), `ŵ = scale · (q − zero)`.
///
/// The codes and parameters are those of the stored weight-only format
/// (`ModelQuantization.WeightScheme`, `PackedGroupWeights`): symmetric codes
/// `[−q, q]` with `q = 2^(bits−1) − 1` and `scale = max|w| / q`; asymmetric
/// codes `[−q − 1, q]`, the group's range widened to include 0,
/// `scale = (max − min) / (2q + 1)` and `zero = −q − 1 − round(min/scale)`,
/// so 0 is always exact. An all-zero group gets scale 1. For 4 and 8 bits the
/// codes, scales and zero points are bit-identical to `PackedGroupWeights`'s
/// (tested), so GPTQ's result loads with `PackedGroupWeights(codes:…)`; the
/// stored format takes only 4 and 8 bits, other widths are for study.
public struct WeightGrid: Sendable, Hashable {
    public var bits: Int
    /// Inputs sharing a scale; −1 = the whole row (per output channel).
    public var groupSize: Int
    public var symmetric: Bool

    public static let supportedBits = 2...8

    public init(bits: Int, groupSize: Int = -1, symmetric: Bool = true) {
        self.bits = bits
        self.groupSize = groupSize
        self.symmetric = symmetric
    }

    /// The codes: `[−q, q]` symmetric, `[−q − 1, q]` asymmetric.
    public var codeRange: ClosedRange<Int32> {
        let high = Int32(1) << Int32(bits - 1) - 1
        return symmetric ? -high...high : (-high - 1)...high
    }

    /// Checks the grid against a layer of `cols` inputs.
    public func validate(cols: Int) throws(OneShotError) {
        guard Self.supportedBits.contains(bits) else { throw .unsupportedBits(bits) }
        guard groupSize == -1 || groupSize >= 1 else { throw .invalidGroupSize(groupSize) }
        if groupSize >= 1, cols % groupSize != 0 { throw .groupSizeDoesNotDivide(groupSize: groupSize, cols: cols) }
    }

    /// Inputs per group in a layer of `cols` inputs.
    public func columnsPerGroup(cols: Int) -> Int { groupSize == -1 ? cols : groupSize }

    /// One group's parameters for values in `[low, high]` (low ≤ 0 ≤ high).
    struct Parameters: Sendable, Hashable {
        var scale: Float
        var zero: Int32
    }

    func parameters(low: Float, high: Float) -> Parameters {
        let (scale, zero) = PackedGroupWeights.parameters(
            low: low, high: high, codes: codeRange, mapping: symmetric ? .symmetric : .asymmetric)
        return Parameters(scale: scale, zero: zero)
    }

    /// Parameters for a group of values (the range widened to include 0).
    func parameters<C: Collection>(of values: C) -> Parameters where C.Element == Float {
        var low: Float = 0
        var high: Float = 0
        for value in values {
            low = Swift.min(low, value)
            high = Swift.max(high, value)
        }
        return parameters(low: low, high: high)
    }

    /// The nearest code (half to even), clamped to the grid; NaN (only from
    /// a numerical failure, which the callers report) maps to the zero point.
    func code(_ value: Float, _ p: Parameters) -> Int32 {
        let codes = codeRange
        let lowest = Float(codes.lowerBound - p.zero)
        let highest = Float(codes.upperBound - p.zero)
        let t = value / p.scale
        guard !t.isNaN else { return p.zero }
        return Int32(Swift.min(Swift.max(t, lowest), highest).rounded(.toNearestOrEven)) + p.zero
    }

    func dequantize(_ code: Int32, _ p: Parameters) -> Float { p.scale * Float(code - p.zero) }

    /// Round-to-nearest on the same grid, for comparison with GPTQ: each
    /// group's parameters from its own values, each weight to its nearest code.
    public func roundToNearest(weight: [Float], rows: Int, cols: Int) throws(OneShotError) -> QuantizedLayer {
        try OneShotValidation.checkWeight(weight, rows: rows, cols: cols)
        try validate(cols: cols)
        let size = columnsPerGroup(cols: cols)
        let groups = cols / size
        var result = QuantizedLayer(rows: rows, cols: cols, grid: self)
        for row in 0..<rows {
            for group in 0..<groups {
                let start = row * cols + group * size
                let p = parameters(of: weight[start..<(start + size)])
                result.setParameters(p, row: row, group: group)
                for index in start..<(start + size) { result.set(index: index, code: code(weight[index], p), p) }
            }
        }
        return result
    }
}

/// A layer quantized on a `WeightGrid`: codes (`rows × cols`, row-major, in
/// `grid.codeRange`), one scale (and zero point) per (row, group), row-major
/// `[rows, cols / groupSize]`, and the dequantized weights
/// `scale · (code − zero)` (Float, exactly what the stored format computes).
public struct QuantizedLayer: Sendable, Hashable {
    public let rows: Int
    public let cols: Int
    public let grid: WeightGrid
    /// Inputs per group (`cols` for per-row grids).
    public let groupSize: Int
    public internal(set) var codes: [Int8]
    public internal(set) var scales: [Float]
    /// Empty for symmetric grids (all zero points 0).
    public internal(set) var zeroPoints: [Int32]
    public internal(set) var dequantized: [Float]

    init(rows: Int, cols: Int, grid: WeightGrid) {
        self.rows = rows
        self.cols = cols
        self.grid = grid
        self.groupSize = grid.columnsPerGroup(cols: cols)
        let groups = rows * (cols / groupSize)
        self.codes = [Int8](repeating: 0, count: rows * cols)
        self.scales = [Float](repeating: 1, count: groups)
        self.zeroPoints = grid.symmetric ? [] : [Int32](repeating: 0, count: groups)
        self.dequantized = [Float](repeating: 0, count: rows * cols)
    }

    mutating func setParameters(_ p: WeightGrid.Parameters, row: Int, group: Int) {
        let index = row * (cols / groupSize) + group
        scales[index] = p.scale
        if !zeroPoints.isEmpty { zeroPoints[index] = p.zero }
    }

    mutating func set(index: Int, code: Int32, _ p: WeightGrid.Parameters) {
        codes[index] = Int8(code)
        dequantized[index] = grid.dequantize(code, p)
    }
}
