/// The running minimum and maximum of every finite value observed.
///
/// Exact and independent of batch order. One vectorised pass per batch, no
/// allocation.
public struct MinMaxObserver: RangeObserver, Hashable {
    private var extrema = FiniteExtrema.empty
    public private(set) var observedCount = 0

    public init() {}

    public var nonFiniteCount: Int { extrema.nonFiniteCount }

    public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
        let batch = FiniteExtrema(values)
        extrema = extrema.merged(with: batch)
        observedCount += values.count - batch.nonFiniteCount
    }

    public func range() throws(QuantizationError) -> ClosedRange<Float> {
        guard extrema.hasValues else { throw .noData }
        return extrema.minimum...extrema.maximum
    }
}
