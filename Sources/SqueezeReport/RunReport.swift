import Foundation
import SqueezeEngine

/// What `squeeze report` shows of one run: the evaluated models with their
/// trade-off fronts, the training curves and the provenance. Rendered as
/// text (`TextReport`), JSON (this value) or HTML (`HTMLReport`).
public struct RunReport: Sendable, Codable {
    public var run: Provenance
    public var models: [EvaluatedModel]
    public var fronts: [TradeOff]
    public var curves: [TrainingCurve]

    /// Accuracy against one cost, and the labels of the models on its Pareto front.
    public struct TradeOff: Sendable, Codable, Equatable {
        public enum Cost: String, Sendable, Codable {
            case size
            case latency
        }

        public var cost: Cost
        /// What the cost axis measures, e.g. `batch-1 p50 latency (ms)`.
        public var axis: String
        /// Models with both an accuracy and this cost, in model order.
        public var models: [String]
        public var front: [String]
    }

    public struct Provenance: Sendable, Codable {
        public var id: String
        public var name: String
        public var status: String
        public var recipeFile: String
        public var overrides: [String]
        public var git: RunRecord.GitState?
        public var squeezeVersion: String
        public var backend: String
        public var jobs: Int
        public var threads: Int
        public var host: String
        public var startedAt: Date
        public var endedAt: Date?
        public var wallSeconds: Double
        public var stages: [Stage]
    }

    public struct Stage: Sendable, Codable, Equatable {
        public var id: String
        public var uses: String
        public var status: String
        /// `hit` or `miss` when the cache was consulted.
        public var cache: String?
        public var wallSeconds: Double
        public var cpuSeconds: Double
        public var key: String?
        public var reason: String?
    }

    public init(_ record: RunRecord) {
        run = Provenance(
            id: record.id, name: record.name, status: record.status.rawValue, recipeFile: record.recipeFile,
            overrides: record.overrides, git: record.git, squeezeVersion: record.squeezeVersion, backend: record.backend,
            jobs: record.jobs, threads: record.threads, host: record.host, startedAt: record.startedAt, endedAt: record.endedAt,
            wallSeconds: record.wallSeconds,
            stages: record.stages.map {
                Stage(
                    id: $0.id, uses: $0.uses, status: $0.status.rawValue, cache: $0.cache, wallSeconds: $0.wallSeconds,
                    cpuSeconds: $0.cpuSeconds, key: $0.key, reason: $0.reason)
            })
        let models = EvaluatedModel.all(in: record)
        self.models = models
        curves = TrainingCurve.all(in: record)
        fronts = [TradeOff.Cost.size, .latency].compactMap { Self.tradeOff($0, models) }
    }

    /// The models' cost on the `cost` axis: bytes, or milliseconds of the
    /// batch-1 p50 latency when any model has one, else of the fixed-shape batch.
    static func costs(_ cost: TradeOff.Cost, _ models: [EvaluatedModel]) -> (axis: String, values: [Double?]) {
        switch cost {
        case .size:
            return ("size (bytes)", models.map(\.sizeBytes))
        case .latency:
            if models.contains(where: { $0.latencyP50Milliseconds != nil }) {
                return ("batch-1 p50 latency (ms)", models.map(\.latencyP50Milliseconds))
            }
            let shape = models.compactMap(\.batchLatency?.shape).first ?? ""
            return ("\(shape) batch latency (ms)", models.map { $0.batchLatency?.shape == shape ? $0.batchLatency?.milliseconds : nil })
        }
    }

    static func tradeOff(_ cost: TradeOff.Cost, _ models: [EvaluatedModel]) -> TradeOff? {
        let (axis, values) = costs(cost, models)
        let placed = zip(models, values).compactMap { model, value -> (label: String, point: ParetoFront.Point)? in
            guard let accuracy = model.accuracy, let value else { return nil }
            return (model.label, ParetoFront.Point(cost: value, value: accuracy))
        }
        guard !placed.isEmpty else { return nil }
        let front = ParetoFront.indices(placed.map(\.point)).map { placed[$0].label }
        return TradeOff(cost: cost, axis: axis, models: placed.map(\.label), front: front)
    }

    /// The trade-off against `cost`, if any model has both values.
    public func tradeOff(_ cost: TradeOff.Cost) -> TradeOff? {
        fronts.first { $0.cost == cost }
    }
}
