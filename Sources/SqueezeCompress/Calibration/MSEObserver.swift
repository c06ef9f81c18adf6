/// The range whose quantizer minimises the squared error ‖x − x̂‖² over the
/// observed values.
///
/// Algorithm: values go into a `CalibrationHistogram` of x. The data are
/// modelled as uniform inside each bin, and a candidate quantizer's error
/// ∫ ρ(x) (x − x̂(x))² dx is computed exactly for that density — clipping
/// included, since the end codes' cells extend to ±∞ — in O(levels) from
/// prefix sums of the bins' zeroth, first and second moments (see
/// `HistogramDensity`). Candidates:
/// - symmetric schemes: every threshold `t` that is |a bin edge| inside
///   (0, max|x|), and max|x| itself; the quantizer of [−t, t] (`t` at least
///   the distance from 0 to the data when they lie on one side of it);
/// - asymmetric schemes: ranges `[a, b]` with `a` the minimum or a bin edge and
///   `b` a bin edge or the maximum, searched by coordinate descent from
///   [min, max]: the best `b` for the current `a` (all edges), then the best
///   `a` for that `b`, until neither moves (at most 16 rounds).
/// Exact ties go to the wider range. The result is clipped to the observed
/// [min, max] and does not depend on batch order or batch boundaries.
public struct MSEObserver: RangeObserver, Hashable {
    public let scheme: QuantizationScheme
    private var histogram: CalibrationHistogram

    /// - Throws: `invalidBinCount` unless 16 ≤ bins ≤ 2²⁰.
    public init(scheme: QuantizationScheme = .int8Symmetric, bins: Int = 2048) throws(QuantizationError) {
        try HistogramBins.validate(bins)
        self.scheme = scheme
        self.histogram = CalibrationHistogram(bins: bins, absolute: false)
    }

    public var observedCount: Int { histogram.total }
    public var nonFiniteCount: Int { histogram.extrema.nonFiniteCount }

    public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
        histogram.add(values)
    }

    public func range() throws(QuantizationError) -> ClosedRange<Float> {
        guard histogram.total > 0 else { throw .noData }
        let low = histogram.lowerBound
        let high = histogram.upperBound
        let density = HistogramDensity(histogram)
        let edges = (0...histogram.usedBinCount).map { histogram.edge($0) }
        switch scheme.mapping {
        case .symmetric:
            let largest = Double(Swift.max(abs(low), abs(high)))
            // Below this, [−t, t] would miss data lying on one side of 0 entirely.
            let smallest = Double(Swift.max(0, low, -high))
            let candidates = Set(edges.map(abs).filter { $0 > 0 && $0 >= smallest && $0 < largest }).sorted() + [largest]
            var best = (error: Double.infinity, threshold: largest)
            for t in candidates {
                guard let quantizer = try? scheme.quantizer(min: -Float(t), max: Float(t)) else { continue }
                let error = density.squaredError(quantizer)
                if error <= best.error { best = (error, t) }
            }
            let t = Float(best.threshold)
            return Swift.max(low, -t)...Swift.min(high, t)
        case .asymmetric:
            let inner = edges.dropFirst().dropLast().filter { $0 > Double(low) && $0 < Double(high) }
            let lows = [Double(low)] + inner
            let highs = inner + [Double(high)]
            var a = Double(low)
            var b = Double(high)
            func error(_ a: Double, _ b: Double) -> Double {
                guard let quantizer = try? scheme.quantizer(min: Float(a), max: Float(b)) else { return .infinity }
                return density.squaredError(quantizer)
            }
            for _ in 0..<16 {
                var bestB = (error: Double.infinity, value: b)
                for candidate in highs where candidate > a {
                    let e = error(a, candidate)
                    if e <= bestB.error { bestB = (e, candidate) }
                }
                var bestA = (error: Double.infinity, value: a)
                for candidate in lows.reversed() where candidate < bestB.value {
                    let e = error(candidate, bestB.value)
                    if e <= bestA.error { bestA = (e, candidate) }
                }
                let moved = bestA.value != a || bestB.value != b
                a = bestA.value
                b = bestB.value
                if !moved { break }
            }
            return Swift.max(low, Float(a))...Swift.min(high, Float(b))
        }
    }
}

/// A histogram read as a piecewise-uniform density, with prefix moments for
/// O(1) partial integrals.
///
/// Coordinates are in bins, `u = x / w − c` with `c` the middle of the used
/// bins (centring keeps the moments small, limiting cancellation). Stored bin
/// `k` covers `u ∈ [k − c, k − c + 1)`; with `n_k` values spread uniformly on
/// it, its moments are `n_k · (1, m, m² + 1/12)` with `m` its midpoint.
struct HistogramDensity {
    private let counts: [Double]
    private let zeroth: [Double]
    private let first: [Double]
    private let second: [Double]
    private let centre: Double
    private let firstIndex: Double
    private let width: Double

    init(_ histogram: CalibrationHistogram) {
        let used = histogram.usedBinCount
        let centre = Double(used) / 2
        var zeroth = [Double](repeating: 0, count: used + 1)
        var first = zeroth
        var second = zeroth
        var counts = [Double](repeating: 0, count: used)
        for k in 0..<used {
            let n = Double(histogram.counts[k])
            let middle = Double(k) + 0.5 - centre
            counts[k] = n
            zeroth[k + 1] = zeroth[k] + n
            first[k + 1] = first[k] + n * middle
            second[k + 1] = second[k] + n * (middle * middle + 1.0 / 12)
        }
        self.counts = counts
        self.zeroth = zeroth
        self.first = first
        self.second = second
        self.centre = centre
        self.firstIndex = Double(histogram.firstIndex)
        self.width = histogram.binWidth
    }

    /// `∫_{−∞}^{u} ρ(t) · (1, t, t²) dt`.
    func moments(upTo u: Double) -> (Double, Double, Double) {
        let position = u + centre
        let used = counts.count
        if !(position > 0) { return (0, 0, 0) }
        if position >= Double(used) { return (zeroth[used], first[used], second[used]) }
        let bin = Int(position)
        let n = counts[bin]
        let start = Double(bin) - centre
        let (u2, s2) = (u * u, start * start)
        return (
            zeroth[bin] + n * (u - start),
            first[bin] + n * (u2 - s2) / 2,
            second[bin] + n * (u2 * u - s2 * start) / 3
        )
    }

    /// `∫ ρ(x) (x − x̂(x))² dx` for `quantizer`'s fake quantization, in x units.
    func squaredError(_ quantizer: AffineQuantizer) -> Double {
        let step = Double(quantizer.scale) / width
        let zeroAt = -firstIndex - centre
        let z = quantizer.zeroPoint
        let top = quantizer.codeRange.upperBound
        let totals = (zeroth[counts.count], first[counts.count], second[counts.count])
        var previous = (0.0, 0.0, 0.0)
        var error = 0.0
        for code in quantizer.codeRange {
            let offset = Double(code - z)
            let next = code == top ? totals : moments(upTo: zeroAt + step * (offset + 0.5))
            let mass = next.0 - previous.0
            if mass > 0 {
                let v = zeroAt + step * offset
                error += Swift.max(0, (next.2 - previous.2) - 2 * v * (next.1 - previous.1) + v * v * mass)
            }
            previous = next
        }
        return error * width * width
    }
}
