/// The (100 − p)-th and p-th percentiles of the observed values (p = 99.99 by
/// default), which clips the rarest 2 · (100 − p) % of values.
///
/// Algorithm: values go into a `CalibrationHistogram` of x (at least `bins`
/// bins across the data, exact merges as the range grows). The q-quantile is
/// found by walking the cumulative counts to the bin holding rank `q · n` and
/// interpolating linearly inside it (values assumed uniform within a bin), then
/// clamping to the exact observed [min, max]. The error against the exact
/// sample quantile is therefore below one bin width, `(max − min) / (bins − 1)`.
/// p = 100 gives the exact min and max. The result does not depend on batch
/// order or batch boundaries.
public struct PercentileObserver: RangeObserver, Hashable {
    public let percentile: Double
    private var histogram: CalibrationHistogram

    /// - Throws: `invalidPercentile` unless 50 < p ≤ 100; `invalidBinCount`
    ///   unless 16 ≤ bins ≤ 2²⁰.
    public init(percentile: Double = 99.99, bins: Int = 2048) throws(QuantizationError) {
        guard percentile > 50, percentile <= 100 else { throw .invalidPercentile(percentile) }
        try HistogramBins.validate(bins)
        self.percentile = percentile
        self.histogram = CalibrationHistogram(bins: bins, absolute: false)
    }

    public var observedCount: Int { histogram.total }
    public var nonFiniteCount: Int { histogram.extrema.nonFiniteCount }

    public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
        histogram.add(values)
    }

    public func range() throws(QuantizationError) -> ClosedRange<Float> {
        guard histogram.total > 0 else { throw .noData }
        if percentile == 100 { return histogram.lowerBound...histogram.upperBound }
        let low = histogram.quantile((100 - percentile) / 100)
        let high = histogram.quantile(percentile / 100)
        return low...Swift.max(low, high)
    }
}
