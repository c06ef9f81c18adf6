/// The Pareto front of a trade-off: lower cost (size, latency, time per
/// token) is better, and higher value (accuracy) or lower value
/// (perplexity), as the trade-off says.
public enum ParetoFront {
    public struct Point: Sendable, Equatable {
        public var cost: Double
        public var value: Double

        public init(cost: Double, value: Double) {
            self.cost = cost
            self.value = value
        }
    }

    /// Which way the value improves.
    public enum Better: String, Sendable, Codable {
        /// Accuracy.
        case higher
        /// Perplexity, loss.
        case lower
    }

    /// The indices of the points no other point dominates, ascending. A point
    /// dominates another when it costs no more and its value is no worse,
    /// and is strictly better in one of the two; equal points do not dominate
    /// each other, so both stay on the front.
    public static func indices(_ points: [Point], better: Better = .higher) -> [Int] {
        points.indices.filter { candidate in
            !points.contains { other in dominates(other, points[candidate], better: better) }
        }
    }

    static func dominates(_ a: Point, _ b: Point, better: Better) -> Bool {
        let (valueA, valueB) = better == .higher ? (a.value, b.value) : (-a.value, -b.value)
        return a.cost <= b.cost && valueA >= valueB && (a.cost < b.cost || valueA > valueB)
    }
}
