import Foundation
import SqueezeEngine
import SqueezeSupport

/// The continuations one `eval/generate` stage wrote to its `report` output
/// (report.json), for a person to read beside the numbers.
public struct GenerationSamples: Sendable, Codable, Equatable {
    /// The eval/generate stage instance.
    public var stage: String
    /// How the tokens were chosen, e.g. `greedy, up to 48 new tokens`; nil when the report does not say.
    public var sampling: String?
    public var models: [Model]
    /// Why the report could not be read; `models` is then empty.
    public var problem: String?

    public struct Model: Sendable, Codable, Equatable {
        /// The name under the stage's `models`.
        public var name: String
        /// The row in the model tables this model is (a perplexity row of the same artifact, or its own).
        public var label: String
        public var quantization: String?
        public var samples: [Sample]
    }

    public struct Sample: Sendable, Codable, Equatable {
        public var prompt: String
        public var promptTokens: Int?
        public var continuation: String
        public var generatedTokens: Int?
        public var stoppedAtEndToken: Bool?
    }
}

/// The `report` outputs (report.json) of a run's language-model evaluation
/// stages, parsed. A report that cannot be read or parsed is kept as its
/// problem, so the page says why the texts are missing.
struct StageReports {
    var reports: [String: Result<Value, Problem>] = [:]

    struct Problem: Error, Equatable {
        var description: String
    }

    /// More than this is no report.json an eval stage wrote; it is not read.
    static let maximumBytes = 64 << 20

    init(_ record: RunRecord, read: (StageRecord, String) throws -> Data) {
        let types = [LanguageModelRows.perplexityStageType, LanguageModelRows.generateStageType]
        for stage in record.stages where types.contains(stage.uses) && !stage.metrics.isEmpty {
            reports[stage.id] = Self.load(stage, read: read)
        }
    }

    static func load(_ stage: StageRecord, read: (StageRecord, String) throws -> Data) -> Result<Value, Problem> {
        if let size = stage.outputs["report"]?.size, size > maximumBytes {
            return .failure(Problem(description: "its report output has \(size) bytes, more than the \(maximumBytes) a report shows"))
        }
        let data: Data
        do {
            data = try read(stage, "report")
        } catch {
            return .failure(Problem(description: "cannot read its report output: \(error)"))
        }
        do {
            let value = try Value(json: data)
            guard case .object = value else { return .failure(Problem(description: "its report.json is \(value.typeName), not a mapping")) }
            return .success(value)
        } catch {
            return .failure(Problem(description: "its report.json is not valid JSON: \(error)"))
        }
    }

    func report(_ stage: String) -> Value? {
        if case .success(let value)? = reports[stage] { return value }
        return nil
    }

    /// Each language model's quantization (`weight_only int4 g128, …`) as its
    /// perplexity or generate report names it.
    func addQuantization(to models: inout [EvaluatedModel]) {
        for index in models.indices where models[index].isLanguageModel && models[index].quantization == nil {
            let model = models[index]
            var sources = [(model.stage, model.name)]
            if let generation = model.languageModel?.generation { sources.append((generation.stage, generation.name)) }
            models[index].quantization = sources.lazy.compactMap { report($0.0)?[member: $0.1]?[member: "quantization"]?.string }.first
        }
    }

    /// The samples of every eval/generate stage, in stage order; nil when the run has none.
    func generations(in record: RunRecord, models: [EvaluatedModel]) -> [GenerationSamples]? {
        let stages = record.stages.filter { $0.uses == LanguageModelRows.generateStageType && reports[$0.id] != nil }
        guard !stages.isEmpty else { return nil }
        return stages.map { stage in
            switch reports[stage.id] {
            case .failure(let problem)?:
                return GenerationSamples(stage: stage.id, sampling: nil, models: [], problem: problem.description)
            case .success(let report)?:
                return Self.samples(stage.id, report, models: models)
            case nil:
                return GenerationSamples(stage: stage.id, sampling: nil, models: [], problem: "no report was read")
            }
        }
    }

    static func samples(_ stage: String, _ report: Value, models: [EvaluatedModel]) -> GenerationSamples {
        guard case .object(let fields) = report else { return GenerationSamples(stage: stage, sampling: nil, models: [], problem: "no models") }
        var entries: [GenerationSamples.Model] = []
        for name in fields.keys.sorted() where name != "sampling" {
            guard let samples = fields[name]?[member: "samples"]?.items else { continue }
            let source = EvaluatedModel.LanguageModel.Source(stage: stage, name: name)
            let label = models.first { $0.languageModel?.generation == source }?.label ?? name
            entries.append(GenerationSamples.Model(
                name: name, label: label, quantization: fields[name]?[member: "quantization"]?.string,
                samples: samples.compactMap { sample in
                    guard let prompt = sample[member: "prompt"]?.string, let continuation = sample[member: "continuation"]?.string else {
                        return nil
                    }
                    return GenerationSamples.Sample(
                        prompt: prompt, promptTokens: sample[member: "prompt_tokens"]?.integer, continuation: continuation,
                        generatedTokens: sample[member: "tokens"]?.items?.count,
                        stoppedAtEndToken: sample[member: "stopped_at_eos"]?.boolean)
                }))
        }
        return GenerationSamples(stage: stage, sampling: fields["sampling"].flatMap(describeSampling), models: entries, problem: nil)
    }

    /// `greedy, up to 48 new tokens` or `temperature 0.8, top-k 40, top-p 0.95, up to 48 new tokens, stopping at the end token`.
    static func describeSampling(_ sampling: Value) -> String? {
        var parts: [String] = []
        if let temperature = sampling[member: "temperature"]?.number {
            if temperature == 0 {
                parts.append("greedy")
            } else {
                parts.append("temperature \(Format.number(temperature, digits: 3))")
                if let k = sampling[member: "top_k"]?.number, k > 0 { parts.append("top-k \(Format.number(k))") }
                if let p = sampling[member: "top_p"]?.number, p < 1 { parts.append("top-p \(Format.number(p, digits: 3))") }
            }
        }
        if let tokens = sampling[member: "max_new_tokens"]?.number { parts.append("up to \(Format.number(tokens)) new tokens") }
        if sampling[member: "stop_at_eos"]?.boolean == true { parts.append("stopping at the end token") }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
}

extension GenerationSamples {
    /// Every prompt any model continued, in the order they first appear.
    static func prompts(of generation: GenerationSamples) -> [String] {
        var seen: Set<String> = []
        return generation.models.flatMap { $0.samples.map(\.prompt) }.filter { seen.insert($0).inserted }
    }
}
