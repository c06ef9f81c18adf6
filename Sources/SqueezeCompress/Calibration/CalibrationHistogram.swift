import Foundation

/// A histogram fed batch by batch whose range grows with the data, exactly and
/// independently of batch order.
///
/// Bins live on a fixed grid anchored at 0 with power-of-two width
/// `w = 2^e`: grid bin `k` is `[k·w, (k+1)·w)`. The histogram stores
/// `capacity = 2 · bins` consecutive grid bins starting at the bin of the
/// smallest value. When a batch needs a wider range, `e` grows and every pair
/// of bins `(2k, 2k+1)` merges into bin `k` of the coarser grid — an exact
/// merge, because the coarser grid's edges are edges of the finer one (no
/// re-binning by interpolation, unlike PyTorch's HistogramObserver).
///
/// `e` is always the smallest exponent such that (1) the data's bins fit in
/// `capacity`, (2) every value is below 2³⁰ bins from 0 (so grid indices are
/// exact integers), and (3) `e ≥ −126`. Each condition only gets harder as data
/// arrive, so the exponent after any sequence of batches equals the one the
/// whole data set needs at once, and the counts are the exact histogram of all
/// values on that grid. Hence the histogram — and every range computed from it —
/// is identical (`==`) for any order and any split of the same values into
/// batches. Resolution: the data span at least `bins` bins (`w ≤ (max − min) /
/// (bins − 1)`) unless condition (2) or (3) binds.
///
/// NaN and ±∞ are counted in `nonFiniteCount` and not binned. In absolute mode
/// the binned quantity is |x| and its range always starts at 0 (entropy
/// calibration of symmetric schemes); `extrema` still records the signed data.
struct CalibrationHistogram: Sendable, Hashable {
    let capacity: Int
    let isAbsolute: Bool
    /// The bin width is `2^exponent`.
    private(set) var exponent = 0
    /// Grid index of `counts[0]`.
    private(set) var firstIndex = 0
    private(set) var counts: [Int]
    /// Finite extrema of the signed data, and the non-finite count.
    private(set) var extrema = FiniteExtrema.empty
    /// Finite values binned.
    private(set) var total = 0

    static let minimumExponent = -126
    static let indexBits = 30

    /// A histogram whose data will span at least `bins` bins.
    init(bins: Int, absolute: Bool) {
        capacity = 2 * bins
        isAbsolute = absolute
        counts = [Int](repeating: 0, count: capacity)
    }

    var binWidth: Double { Double(sign: .plus, exponent: exponent, significand: 1) }

    /// The binned quantity's range: the data's, or `[0, max|x|]` in absolute mode.
    var lowerBound: Float { isAbsolute ? 0 : extrema.minimum }
    var upperBound: Float { isAbsolute ? Swift.max(abs(extrema.minimum), abs(extrema.maximum)) : extrema.maximum }

    /// Bins from `counts[0]` through the last one holding data (0 when empty).
    var usedBinCount: Int {
        total == 0 ? 0 : Self.gridIndex(upperBound, exponent: exponent) - firstIndex + 1
    }

    /// The real value of the lower edge of stored bin `bin` (`bin == usedBinCount` gives the top edge).
    func edge(_ bin: Int) -> Double { Double(firstIndex + bin) * binWidth }

    /// `⌊x / 2^e⌋`, exact: `x · 2^−e` is exact in `Double` for any float `x` and `e` in range.
    @inline(__always)
    static func gridIndex(_ value: Float, exponent: Int) -> Int {
        gridIndex(value, inverseWidth: Double(sign: .plus, exponent: -exponent, significand: 1))
    }

    @inline(__always)
    static func gridIndex(_ value: Float, inverseWidth: Double) -> Int {
        let t = Double(value) * inverseWidth
        let truncated = Int(t)
        return Double(truncated) > t ? truncated &- 1 : truncated
    }

    mutating func add(_ values: UnsafeBufferPointer<Float>) {
        let batch = FiniteExtrema(values)
        let merged = extrema.merged(with: batch)
        extrema = merged
        guard batch.hasValues, let base = values.baseAddress else { return }
        let low = lowerBound
        let high = upperBound
        let largest = Swift.max(abs(low), abs(high))
        var newExponent = Swift.max(Self.minimumExponent, largest == 0 ? Self.minimumExponent : Int(largest.exponent) - (Self.indexBits - 1))
        if total > 0 { newExponent = Swift.max(newExponent, exponent) }
        while Self.gridIndex(high, exponent: newExponent) - Self.gridIndex(low, exponent: newExponent) + 1 > capacity {
            newExponent += 1
        }
        rebin(exponent: newExponent, firstIndex: Self.gridIndex(low, exponent: newExponent))

        let inverseWidth = Double(sign: .plus, exponent: -exponent, significand: 1)
        let first = firstIndex
        let absolute = isAbsolute
        var binned = 0
        counts.withUnsafeMutableBufferPointer { bins in
            guard let histogram = bins.baseAddress else { return }
            for index in 0..<values.count {
                let value = base[index]
                guard value.isFinite else { continue }
                // Wrapping arithmetic: indices are in range by construction, and
                // overflow checks make this loop several times slower.
                histogram[Self.gridIndex(absolute ? abs(value) : value, inverseWidth: inverseWidth) &- first] &+= 1
                binned &+= 1
            }
        }
        total += binned
    }

    /// Moves the stored counts to width `2^exponent` (never smaller than the
    /// current one) and first grid bin `firstIndex`, merging bins exactly.
    private mutating func rebin(exponent newExponent: Int, firstIndex newFirst: Int) {
        if total == 0 {
            exponent = newExponent
            firstIndex = newFirst
            return
        }
        if newExponent == exponent && newFirst == firstIndex { return }
        let shift = newExponent - exponent
        var moved = [Int](repeating: 0, count: capacity)
        for (bin, count) in counts.enumerated() where count > 0 {
            moved[((firstIndex + bin) >> shift) - newFirst] += count
        }
        counts = moved
        exponent = newExponent
        firstIndex = newFirst
    }

    /// The value below which a fraction `q` of the binned values lie, assuming
    /// values spread uniformly inside each bin, clamped to the binned range.
    /// Requires `total > 0` and `0 ≤ q ≤ 1`.
    func quantile(_ q: Double) -> Float {
        let rank = q * Double(total)
        let used = usedBinCount
        var below = 0.0
        var value = Double(upperBound)
        for bin in 0..<used where counts[bin] > 0 {
            let count = Double(counts[bin])
            if below + count >= rank {
                value = edge(bin) + binWidth * Swift.max(0, rank - below) / count
                break
            }
            below += count
        }
        return Swift.min(Swift.max(Float(value), lowerBound), upperBound)
    }
}
