import SqueezeEngine
import SqueezeSupport

/// One model as an `eval/classification` stage scored it, read back from the
/// stage's `<model>.<metric>` metrics, or a decoder language model as
/// `eval/perplexity` and `eval/generate` measured it (`languageModel`). A
/// metric the stage did not record (no latency with `latency_samples: 0`, no
/// speedup without a baseline) is nil.
public struct EvaluatedModel: Sendable, Codable, Equatable {
    /// The eval stage instance (`eval`, or `eval[sparsity=0.8]` in a sweep).
    public var stage: String
    /// The model's name under the stage's `models`.
    public var name: String
    /// Unique in the run: the name, or `stage/name` when the run has several eval stages.
    public var label: String
    public var isBaseline: Bool
    public var accuracy: Double?
    public var macroF1: Double?
    public var loss: Double?
    public var sizeBytes: Double?
    public var parameters: Double?
    public var sparsity: Double?
    /// The quantization mode of a quantized artifact (`static`, `dynamic`, `weight_only`).
    public var quantization: String?
    public var latencyP50Milliseconds: Double?
    public var latencyP95Milliseconds: Double?
    public var throughputPerSecond: Double?
    /// The median latency of the fixed-shape batch (`latency_b<B>_t<T>_ms`).
    public var batchLatency: BatchLatency?
    /// Changes relative to the stage's baseline model; nil without one.
    public var delta: Delta?
    /// Perplexity and generation speed; nil for a classifier.
    public var languageModel: LanguageModel?

    public struct BatchLatency: Sendable, Codable, Equatable {
        /// `b32_t64`: 32 sequences of 64 tokens.
        public var shape: String
        public var milliseconds: Double
        /// The recorded speedup over the baseline (`speedup_<shape>`).
        public var speedup: Double?
    }

    public struct Delta: Sendable, Codable, Equatable {
        public var baseline: String
        /// Accuracy minus the baseline's (a fraction; ×100 for percentage points).
        public var accuracy: Double?
        public var macroF1: Double?
        /// The baseline's size over this model's: 4 means four times smaller.
        public var sizeReduction: Double?
        /// This model's parameters over the baseline's.
        public var parameterRatio: Double?
        /// The baseline's batch-1 p50 latency over this model's.
        public var latencyP50Speedup: Double?
        /// This model's perplexity relative to the baseline's, (ppl − ppl₀) / ppl₀:
        /// 0.05 is 5 % higher, i.e. worse.
        public var perplexityChange: Double?
        /// This model's decode tokens/s over the baseline's.
        public var decodeSpeedup: Double?
    }
}

extension EvaluatedModel {
    static let evalStageType = "eval/classification"

    /// Every model of every eval stage of `run` that produced metrics: the
    /// classifiers in stage order and by name within a stage, then the
    /// language models (`LanguageModelRows`).
    static func all(in run: RunRecord) -> [EvaluatedModel] {
        let scored = classifiers(in: run)
        return scored + LanguageModelRows.all(in: run, takenLabels: Set(scored.map(\.label)))
    }

    static func classifiers(in run: RunRecord) -> [EvaluatedModel] {
        let stages = run.stages.filter { $0.uses == evalStageType && !$0.metrics.isEmpty }
        var models: [EvaluatedModel] = []
        for stage in stages {
            let byModel = metricsByModel(stage.metrics)
            let baseline = baselineName(of: stage, in: run.recipe, models: Array(byModel.keys))
            var stageModels = byModel.keys.sorted().compactMap { name in
                byModel[name].map { model(name, stage: stage.id, metrics: $0, label: stages.count > 1 ? "\(stage.id)/\(name)" : name) }
            }
            if let baseline, let reference = stageModels.first(where: { $0.name == baseline }) {
                for index in stageModels.indices {
                    stageModels[index].isBaseline = stageModels[index].name == baseline
                    stageModels[index].delta = Delta(stageModels[index], over: reference)
                }
            }
            models += stageModels
        }
        return models
    }

    /// Splits `teacher.accuracy` into model `teacher`, metric `accuracy`.
    /// Metric names have no dots, so the last dot separates them; metrics
    /// without one (`examples`) belong to the stage, not a model.
    static func metricsByModel(_ metrics: [String: Value]) -> [String: [String: Value]] {
        var byModel: [String: [String: Value]] = [:]
        for (key, value) in metrics {
            guard let dot = key.lastIndex(of: "."), dot != key.startIndex else { continue }
            byModel[String(key[..<dot]), default: [:]][String(key[key.index(after: dot)...])] = value
        }
        return byModel
    }

    static func model(_ name: String, stage: String, metrics: [String: Value], label: String) -> EvaluatedModel {
        var model = EvaluatedModel(stage: stage, name: name, label: label, isBaseline: false)
        model.accuracy = metrics["accuracy"]?.number
        model.macroF1 = metrics["macro_f1"]?.number
        model.loss = metrics["loss"]?.number
        model.sizeBytes = metrics["size_bytes"]?.number
        model.parameters = metrics["parameters"]?.number
        model.sparsity = metrics["sparsity"]?.number
        model.quantization = metrics["quantization"]?.string
        model.latencyP50Milliseconds = metrics["latency_b1_p50_ms"]?.number
        model.latencyP95Milliseconds = metrics["latency_b1_p95_ms"]?.number
        model.throughputPerSecond = metrics["throughput_per_s"]?.number
        let shapes = metrics.keys.compactMap(fixedShape(ofLatencyKey:)).sorted()
        if let shape = shapes.first, let milliseconds = metrics["latency_\(shape)_ms"]?.number {
            model.batchLatency = BatchLatency(shape: shape, milliseconds: milliseconds, speedup: metrics["speedup_\(shape)"]?.number)
        }
        return model
    }

    /// `b32_t64` from `latency_b32_t64_ms`; nil for other keys (the batch-1 percentiles included).
    static func fixedShape(ofLatencyKey key: String) -> String? {
        guard key.hasPrefix("latency_b"), key.hasSuffix("_ms") else { return nil }
        let shape = key.dropFirst("latency_".count).dropLast("_ms".count)
        let parts = shape.split(separator: "_")
        guard parts.count == 2, parts[0].count > 1, parts[1].count > 1, parts[0].first == "b", parts[1].first == "t",
            parts.allSatisfy({ $0.dropFirst().allSatisfy(\.isNumber) })
        else { return nil }
        return String(shape)
    }

    /// The model the stage compared the others with: the recipe's `baseline`
    /// parameter (a literal or `${vars.NAME}`), else a model named `teacher`.
    /// A sweep instance `eval[sparsity=0.8]` is looked up as stage `eval`.
    static func baselineName(of stage: StageRecord, in recipe: Value, models: [String]) -> String? {
        let stages = recipe[member: "stages"]
        let recipeID = stage.id.split(separator: "[", maxSplits: 1).first.map(String.init) ?? stage.id
        let written = (stages?[member: stage.id] ?? stages?[member: recipeID])?[member: "with"]?[member: "baseline"]?.string
        var name = written
        if let text = written, text.hasPrefix("${vars."), text.hasSuffix("}") {
            name = recipe[member: "vars"]?[member: String(text.dropFirst("${vars.".count).dropLast())]?.string
        }
        if let name, models.contains(name) { return name }
        return models.contains("teacher") ? "teacher" : nil
    }
}

extension EvaluatedModel.Delta {
    init(_ model: EvaluatedModel, over baseline: EvaluatedModel) {
        func ratio(_ numerator: Double?, _ denominator: Double?) -> Double? {
            guard let numerator, let denominator, denominator != 0 else { return nil }
            return numerator / denominator
        }
        func difference(_ a: Double?, _ b: Double?) -> Double? {
            guard let a, let b else { return nil }
            return a - b
        }
        self.init(
            baseline: baseline.name,
            accuracy: difference(model.accuracy, baseline.accuracy),
            macroF1: difference(model.macroF1, baseline.macroF1),
            sizeReduction: ratio(baseline.sizeBytes, model.sizeBytes),
            parameterRatio: ratio(model.parameters, baseline.parameters),
            latencyP50Speedup: ratio(baseline.latencyP50Milliseconds, model.latencyP50Milliseconds),
            perplexityChange: ratio(model.languageModel?.perplexity, baseline.languageModel?.perplexity).map { $0 - 1 },
            decodeSpeedup: ratio(model.languageModel?.decodeTokensPerSecond, baseline.languageModel?.decodeTokensPerSecond))
    }
}
