import Foundation
import SqueezeEngine

/// What `squeeze report` shows of one run: the evaluated models with their
/// trade-off fronts, the training curves, the generated texts and the
/// provenance. Rendered as text (`TextReport`), JSON (this value) or HTML
/// (`HTMLReport`).
public struct RunReport: Sendable, Codable {
    public var run: Provenance
    public var models: [EvaluatedModel]
    public var fronts: [TradeOff]
    public var curves: [TrainingCurve]
    /// The continuations of each `eval/generate` stage, read from its
    /// `report` output; nil when the run has none or no reader was given.
    public var generations: [GenerationSamples]?
    /// How each eval/perplexity and eval/generate stage measured; nil when the run has none.
    public var languageModelStages: [LanguageModelStage]?

    /// A quality (accuracy of classifiers, perplexity of language models)
    /// against one cost, and the labels of the models on its Pareto front.
    public struct TradeOff: Sendable, Codable, Equatable {
        public enum Cost: String, Sendable, Codable {
            case size
            case latency
            /// Milliseconds per generated token (1000 ÷ decode tokens/s).
            case decodeTime = "decode_time"
        }

        public enum Quality: String, Sendable, Codable {
            /// Classifiers; higher is better.
            case accuracy
            /// Language models; lower is better.
            case perplexity

            public var better: ParetoFront.Better { self == .accuracy ? .higher : .lower }
        }

        public var quality: Quality
        public var cost: Cost
        /// What the cost axis measures, e.g. `batch-1 p50 latency (ms)`.
        public var axis: String
        /// Models with both the quality and this cost, in model order.
        public var models: [String]
        public var front: [String]

        public init(quality: Quality = .accuracy, cost: Cost, axis: String, models: [String], front: [String]) {
            self.quality = quality
            self.cost = cost
            self.axis = axis
            self.models = models
            self.front = front
        }

        enum CodingKeys: String, CodingKey {
            case quality, cost, axis, models, front
        }

        /// `quality` is written only for perplexity, so an accuracy front reads as before it existed.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            if quality != .accuracy { try container.encode(quality, forKey: .quality) }
            try container.encode(cost, forKey: .cost)
            try container.encode(axis, forKey: .axis)
            try container.encode(models, forKey: .models)
            try container.encode(front, forKey: .front)
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            quality = try container.decodeIfPresent(Quality.self, forKey: .quality) ?? .accuracy
            cost = try container.decode(Cost.self, forKey: .cost)
            axis = try container.decode(String.self, forKey: .axis)
            models = try container.decode([String].self, forKey: .models)
            front = try container.decode([String].self, forKey: .front)
        }
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

    /// The report of `record`. `readOutput` reads a stage's stored output
    /// file (the stage record and the output's name); given it, the report
    /// includes the texts `eval/generate` wrote and the quantization the
    /// language-model evaluations name.
    public init(_ record: RunRecord, readOutput: ((StageRecord, String) throws -> Data)? = nil) {
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
        var models = EvaluatedModel.all(in: record)
        if let readOutput {
            let outputs = StageReports(record, read: readOutput)
            outputs.addQuantization(to: &models)
            generations = outputs.generations(in: record, models: models)
        }
        self.models = models
        let stages = LanguageModelStage.all(in: record)
        languageModelStages = stages.isEmpty ? nil : stages
        curves = TrainingCurve.all(in: record)
        let classifiers = models.filter { !$0.isLanguageModel }
        let languageModels = models.filter(\.isLanguageModel)
        fronts = [TradeOff.Cost.size, .latency].compactMap { Self.tradeOff($0, classifiers) }
            + [TradeOff.Cost.size, .decodeTime].compactMap { Self.tradeOff($0, languageModels, quality: .perplexity) }
    }

    /// The models' cost on the `cost` axis: bytes, or milliseconds of the
    /// batch-1 p50 latency when any model has one, else of the fixed-shape
    /// batch, or milliseconds per decoded token.
    static func costs(_ cost: TradeOff.Cost, _ models: [EvaluatedModel]) -> (axis: String, values: [Double?]) {
        switch cost {
        case .size:
            return ("size (bytes)", models.map(\.sizeBytes))
        case .decodeTime:
            return ("decode time per token (ms)", models.map { $0.languageModel?.decodeMillisecondsPerToken })
        case .latency:
            if models.contains(where: { $0.latencyP50Milliseconds != nil }) {
                return ("batch-1 p50 latency (ms)", models.map(\.latencyP50Milliseconds))
            }
            let shape = models.compactMap(\.batchLatency?.shape).first ?? ""
            return ("\(shape) batch latency (ms)", models.map { $0.batchLatency?.shape == shape ? $0.batchLatency?.milliseconds : nil })
        }
    }

    /// A model's value on the quality axis: accuracy, or a finite perplexity.
    static func quality(_ quality: TradeOff.Quality, of model: EvaluatedModel) -> Double? {
        switch quality {
        case .accuracy: model.accuracy
        case .perplexity: model.languageModel?.perplexity.flatMap { $0.isFinite ? $0 : nil }
        }
    }

    static func tradeOff(_ cost: TradeOff.Cost, _ models: [EvaluatedModel], quality: TradeOff.Quality = .accuracy) -> TradeOff? {
        let (axis, values) = costs(cost, models)
        let placed = zip(models, values).compactMap { model, value -> (label: String, point: ParetoFront.Point)? in
            guard let score = Self.quality(quality, of: model), let value else { return nil }
            return (model.label, ParetoFront.Point(cost: value, value: score))
        }
        guard !placed.isEmpty else { return nil }
        let front = ParetoFront.indices(placed.map(\.point), better: quality.better).map { placed[$0].label }
        return TradeOff(quality: quality, cost: cost, axis: axis, models: placed.map(\.label), front: front)
    }

    /// The trade-off of `quality` against `cost`, if any model has both values.
    public func tradeOff(_ cost: TradeOff.Cost, quality: TradeOff.Quality = .accuracy) -> TradeOff? {
        fronts.first { $0.cost == cost && $0.quality == quality }
    }
}
