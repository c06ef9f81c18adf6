import Foundation

/// TensorRT-style entropy calibration: the clip range whose quantized
/// histogram diverges least (Kullback–Leibler) from the observed one.
///
/// Algorithm (TensorRT's calibrator, as in NVIDIA's pytorch-quantization):
/// values go into a `CalibrationHistogram` with at least `bins` (default 2048)
/// bins across the data — of |x| for symmetric schemes, of x for asymmetric
/// ones. With `L` levels (symmetric: `q_max + 1`, 128 for int8 and 8 for int4;
/// asymmetric: the number of codes, 256 for uint8), a candidate window of
/// `m ≥ L` consecutive bins is scored by:
/// - P: the window's counts, with the counts outside it folded into its first
///   and last bin (outliers are clipped to the ends);
/// - Q: the window's counts *before* folding, split into `L` groups (bin `k`
///   of the window in group `⌊k · L / m⌋`), each group's total spread evenly
///   over its nonzero bins and zero on its empty bins;
/// - score KL(P/ΣP ‖ Q/ΣQ) = Σ p log(p/q), +∞ where p > 0 = q (a folded end bin
///   that was empty). Quantizing the folded P instead would make the narrowest
///   window (`m = L`, Q = P) a perfect match and always win.
/// Symmetric schemes scan every window [0, i) for `i = L…n` (n bins used) and
/// clip at `t = i · w` (the window's upper edge, TensorRT's threshold);
/// asymmetric ones search windows [l, r) by coordinate descent from the full
/// range: best `r` for the current `l`, then best `l` for that `r`, until
/// neither moves (at most 16 rounds). Exact ties go to the wider window. Each
/// score costs O(L) from prefix sums of counts, nonzero bins and `n log n`.
/// With `n ≤ L` bins the histogram is already representable, and the full
/// range is returned. The result is clipped to the observed [min, max] and does
/// not depend on batch order or batch boundaries.
///
/// Limitation (TensorRT's too): KL compares shapes only, so it assumes data
/// with mass near 0, as activations have. When a symmetric scheme sees data far
/// from 0 on one side (|x| bins near 0 empty), a window whose only nonzero bin
/// is its last — every value clipped into it — has P = Q and KL 0, and wins.
/// Use minmax, percentile or mse for such tensors.
public struct EntropyObserver: RangeObserver, Hashable {
    public let scheme: QuantizationScheme
    private var histogram: CalibrationHistogram

    /// - Throws: `invalidBinCount` unless `L ≤ bins ≤ 2²⁰` (fewer bins than
    ///   levels could never clip).
    public init(scheme: QuantizationScheme = .int8Symmetric, bins: Int = 2048) throws(QuantizationError) {
        try HistogramBins.validate(bins, minimum: Swift.max(HistogramBins.minimum, Self.levels(scheme)))
        self.scheme = scheme
        self.histogram = CalibrationHistogram(bins: bins, absolute: scheme.mapping == .symmetric)
    }

    /// Quantization levels the histogram window is compared at.
    static func levels(_ scheme: QuantizationScheme) -> Int {
        let codes = scheme.codeRange
        return scheme.mapping == .symmetric ? Int(codes.upperBound) + 1 : Int(codes.upperBound - codes.lowerBound) + 1
    }

    public var observedCount: Int { histogram.total }
    public var nonFiniteCount: Int { histogram.extrema.nonFiniteCount }

    public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
        histogram.add(values)
    }

    public func range() throws(QuantizationError) -> ClosedRange<Float> {
        guard histogram.total > 0 else { throw .noData }
        let low = histogram.extrema.minimum
        let high = histogram.extrema.maximum
        let levels = Self.levels(scheme)
        let used = histogram.usedBinCount
        guard used > levels else { return low...high }
        let divergence = HistogramDivergence(histogram, levels: levels)
        switch scheme.mapping {
        case .symmetric:
            var best = (score: Double.infinity, end: used)
            for end in levels...used {
                let score = divergence.score(start: 0, end: end)
                if score <= best.score { best = (score, end) }
            }
            // At least the distance from 0 to data lying on one side of it.
            let t = Swift.max(Swift.min(Float(histogram.edge(best.end)), histogram.upperBound), low, -high)
            return Swift.max(low, -t)...Swift.min(high, t)
        case .asymmetric:
            var start = 0
            var end = used
            for _ in 0..<16 {
                var bestEnd = (score: Double.infinity, end: end)
                for candidate in (start + levels)...used {
                    let score = divergence.score(start: start, end: candidate)
                    if score <= bestEnd.score { bestEnd = (score, candidate) }
                }
                var bestStart = (score: Double.infinity, start: start)
                for candidate in stride(from: bestEnd.end - levels, through: 0, by: -1) {
                    let score = divergence.score(start: candidate, end: bestEnd.end)
                    if score <= bestStart.score { bestStart = (score, candidate) }
                }
                let moved = bestStart.start != start || bestEnd.end != end
                start = bestStart.start
                end = bestEnd.end
                if !moved { break }
            }
            return Swift.max(low, Float(histogram.edge(start)))...Swift.min(high, Float(histogram.edge(end)))
        }
    }
}

/// KL scores of histogram windows in O(levels) each, from prefix sums.
///
/// For window [s, e) with m = e − s bins, inside mass `M = C[e] − C[s]`,
/// folded masses `below = C[s]` and `above = N − C[e]`, and group `j` of mass
/// `M_j` over `nz_j` nonzero bins:
/// `KL = (Σ P log P − Σ_j (M_j + fold_j) log(M_j / nz_j)) / N + log(M / N)`,
/// where `fold_j` is the folded mass landing in group `j` (the first group gets
/// `below`, the last `above`), since every nonzero bin of group `j` has
/// `Q = M_j / nz_j` and `Σ P = N`, `Σ Q = M`.
struct HistogramDivergence {
    private let counts: [Int]
    private let cumulative: [Int]
    private let nonzero: [Int]
    private let entropyTerms: [Double]
    private let levels: Int

    init(_ histogram: CalibrationHistogram, levels: Int) {
        let used = histogram.usedBinCount
        var cumulative = [Int](repeating: 0, count: used + 1)
        var nonzero = cumulative
        var entropyTerms = [Double](repeating: 0, count: used + 1)
        for k in 0..<used {
            let n = histogram.counts[k]
            cumulative[k + 1] = cumulative[k] + n
            nonzero[k + 1] = nonzero[k] + (n > 0 ? 1 : 0)
            entropyTerms[k + 1] = entropyTerms[k] + Self.xLogX(Double(n))
        }
        self.counts = Array(histogram.counts[0..<used])
        self.cumulative = cumulative
        self.nonzero = nonzero
        self.entropyTerms = entropyTerms
        self.levels = levels
    }

    static func xLogX(_ x: Double) -> Double { x > 0 ? x * log(x) : 0 }

    /// KL(P ‖ Q) of window [start, end); requires `end − start ≥ levels ≥ 2`.
    func score(start: Int, end: Int) -> Double {
        let total = Double(cumulative[counts.count])
        let below = Double(cumulative[start])
        let above = total - Double(cumulative[end])
        let inside = Double(cumulative[end] - cumulative[start])
        let first = Double(counts[start])
        let last = Double(counts[end - 1])
        if inside == 0 || (below > 0 && first == 0) || (above > 0 && last == 0) { return .infinity }
        let pLogP = entropyTerms[end] - entropyTerms[start]
            - Self.xLogX(first) + Self.xLogX(first + below)
            - Self.xLogX(last) + Self.xLogX(last + above)
        let width = end - start
        var pLogQ = 0.0
        var groupStart = start
        for group in 0..<levels {
            let groupEnd = start + ((group + 1) * width + levels - 1) / levels
            let mass = Double(cumulative[groupEnd] - cumulative[groupStart])
            if mass > 0 {
                var fold = 0.0
                if group == 0 { fold += below }
                if group == levels - 1 { fold += above }
                pLogQ += (mass + fold) * log(mass / Double(nonzero[groupEnd] - nonzero[groupStart]))
            }
            groupStart = groupEnd
        }
        return Swift.max(0, (pLogP - pLogQ) / total + log(inside / total))
    }
}
