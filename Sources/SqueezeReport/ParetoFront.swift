/// The Pareto front of a trade-off: lower cost (size, latency) and higher
/// value (accuracy) are better.
public enum ParetoFront {
    public struct Point: Sendable, Equatable {
        public var cost: Double
        public var value: Double

        public init(cost: Double, value: Double) {
            self.cost = cost
            self.value = value
        }
    }

    /// The indices of the points no other point dominates, ascending. A point
    /// dominates another when it costs no more and is worth no less, and is
    /// strictly better in one of the two; equal points do not dominate each
    /// other, so both stay on the front.
    public static func indices(_ points: [Point]) -> [Int] {
        points.indices.filter { candidate in
            !points.contains { other in dominates(other, points[candidate]) }
        }
    }

    static func dominates(_ a: Point, _ b: Point) -> Bool {
        a.cost <= b.cost && a.value >= b.value && (a.cost < b.cost || a.value > b.value)
    }
}
