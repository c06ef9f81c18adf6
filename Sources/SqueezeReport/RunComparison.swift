import SqueezeEngine

/// The numeric metrics of two runs side by side, matched by dotted path
/// `<stage instance>.<metric>` (`eval.teacher.accuracy`,
/// `eval[sparsity=0.8].int8.latency_b1_p50_ms`). Curves, strings and flags
/// are not compared.
public struct RunComparison: Sendable, Codable {
    public var runA: String
    public var runB: String
    /// Every metric of either run: A's stages in order, then stages only B has;
    /// metric names sorted within a stage.
    public var rows: [Row]

    public struct Row: Sendable, Codable, Equatable {
        public var path: String
        public var a: Double?
        public var b: Double?

        public init(path: String, a: Double?, b: Double?) {
            self.path = path
            self.a = a
            self.b = b
        }

        /// `b - a`, in the metric's unit; nil when either run lacks the metric.
        public var change: Double? {
            guard let a, let b else { return nil }
            return b - a
        }

        /// The change as a percentage of `|a|`: ±∞ when `a` is 0 and `b` is not, 0 when both are.
        public var relativeChangePercent: Double? {
            guard let a, let b else { return nil }
            if a == b { return 0 }
            return a == 0 ? (b > 0 ? .infinity : -.infinity) : (b - a) / abs(a) * 100
        }

        enum CodingKeys: String, CodingKey {
            case path, a, b, change, relativeChangePercent
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            path = try container.decode(String.self, forKey: .path)
            a = try container.decodeIfPresent(Double.self, forKey: .a)
            b = try container.decodeIfPresent(Double.self, forKey: .b)
        }

        /// Writes the derived changes too; an infinite relative change (from 0) is written as null.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(path, forKey: .path)
            try container.encodeIfPresent(a, forKey: .a)
            try container.encodeIfPresent(b, forKey: .b)
            try container.encodeIfPresent(change, forKey: .change)
            try container.encodeIfPresent(relativeChangePercent.flatMap { $0.isFinite ? $0 : nil }, forKey: .relativeChangePercent)
        }
    }

    public init(_ a: RunRecord, _ b: RunRecord) {
        runA = a.id
        runB = b.id
        let metricsA = Self.numericMetrics(a), metricsB = Self.numericMetrics(b)
        let valuesA = Dictionary(metricsA, uniquingKeysWith: { first, _ in first })
        let valuesB = Dictionary(metricsB, uniquingKeysWith: { first, _ in first })
        let paths = metricsA.map(\.path) + metricsB.map(\.path).filter { valuesA[$0] == nil }
        rows = paths.map { Row(path: $0, a: valuesA[$0], b: valuesB[$0]) }
    }

    /// `(stage.metric, value)` for every int or double metric, in stage order.
    static func numericMetrics(_ run: RunRecord) -> [(path: String, value: Double)] {
        run.stages.flatMap { stage in
            stage.metrics.keys.sorted().compactMap { key in
                stage.metrics[key]?.number.map { ("\(stage.id).\(key)", $0) }
            }
        }
    }
}
