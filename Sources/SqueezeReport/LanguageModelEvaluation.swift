import SqueezeEngine
import SqueezeSupport

extension EvaluatedModel {
    /// What `eval/perplexity` and `eval/generate` measured of a decoder
    /// language model. A model row with this is a language model; its
    /// `sizeBytes` is the stored model artifact (weights, masks, config and
    /// tokenizer), the same measure for every language model of the run.
    public struct LanguageModel: Sendable, Codable, Equatable {
        /// Lower is better.
        public var perplexity: Double?
        public var meanNLL: Double?
        /// Tokens per second the perplexity evaluation processed (`tokens_per_s`).
        public var evalTokensPerSecond: Double?
        /// Batch-1 generation speeds of `eval/generate` (medians over its repeats).
        public var prefillTokensPerSecond: Double?
        public var decodeTokensPerSecond: Double?
        public var kvCacheBytes: Double?
        /// The weights file alone, as `eval/generate` measured it.
        public var weightsBytes: Double?
        /// The `eval/generate` stage and model whose measurements this row
        /// carries; for a row of a perplexity stage, the same artifact scored
        /// there (its name there may differ).
        public var generation: Source?
        /// The model artifact's content digest, when the run record names it.
        public var artifact: String?

        public struct Source: Sendable, Codable, Equatable {
            public var stage: String
            public var name: String
        }

        /// Milliseconds per generated token: 1000 ÷ decode tokens/s, the cost
        /// axis of the decode-speed trade-off (lower is better, like latency).
        public var decodeMillisecondsPerToken: Double? {
            guard let rate = decodeTokensPerSecond, rate > 0, rate.isFinite else { return nil }
            return 1000 / rate
        }
    }

    public var isLanguageModel: Bool { languageModel != nil }
}

/// The language-model rows of a run: one per model of each `eval/perplexity`
/// stage, with the `eval/generate` measurements of the same artifact merged
/// in, then one per generated-only model.
///
/// Matching across stages: two stages scored the same model when the run
/// record leads both names to the same artifact — the recorded recipe's
/// `with.models.<name>` is a `${stage.output}` reference, and the producing
/// stage's recorded output gives its content digest (or both are the same
/// literal path). The names need not agree (`dense` in the perplexity stage,
/// `fp32` in the generate stage); when several perplexity rows hold that
/// artifact, the one of the same name is taken, and otherwise none. A model
/// whose reference cannot be resolved stays a row of its own.
enum LanguageModelRows {
    static let perplexityStageType = "eval/perplexity"
    static let generateStageType = "eval/generate"

    static func all(in run: RunRecord, takenLabels: Set<String>) -> [EvaluatedModel] {
        let perplexityStages = run.stages.filter { $0.uses == perplexityStageType && !$0.metrics.isEmpty }
        let generateStages = run.stages.filter { $0.uses == generateStageType && !$0.metrics.isEmpty }
        var rows: [EvaluatedModel] = []
        var references: [ModelReference?] = []
        var groups: [(stage: StageRecord, rows: [Int])] = []

        for stage in perplexityStages {
            let byModel = EvaluatedModel.metricsByModel(stage.metrics)
            var members: [Int] = []
            for name in byModel.keys.sorted() {
                guard let metrics = byModel[name] else { continue }
                let reference = ModelReference.resolve(name, of: stage, in: run)
                var model = EvaluatedModel(stage: stage.id, name: name, label: name, isBaseline: false)
                model.parameters = metrics["parameters"]?.number
                model.sparsity = metrics["sparsity"]?.number
                model.sizeBytes = reference?.storedBytes
                model.languageModel = EvaluatedModel.LanguageModel(
                    perplexity: metrics["perplexity"]?.number, meanNLL: metrics["mean_nll"]?.number,
                    evalTokensPerSecond: metrics["tokens_per_s"]?.number, artifact: reference?.artifact)
                members.append(rows.count)
                rows.append(model)
                references.append(reference)
            }
            groups.append((stage, members))
        }
        let scoredRows = rows.count

        for stage in generateStages {
            let byModel = EvaluatedModel.metricsByModel(stage.metrics)
            var members: [Int] = []
            for name in byModel.keys.sorted() {
                guard let metrics = byModel[name] else { continue }
                let reference = ModelReference.resolve(name, of: stage, in: run)
                let source = EvaluatedModel.LanguageModel.Source(stage: stage.id, name: name)
                let target = reference.flatMap { reference in
                    partner(named: name, identity: reference.identity, among: rows.prefix(scoredRows), references: references)
                }
                let index: Int
                if let target {
                    index = target
                } else {
                    var model = EvaluatedModel(stage: stage.id, name: name, label: name, isBaseline: false)
                    model.sizeBytes = reference?.storedBytes
                    model.languageModel = EvaluatedModel.LanguageModel(artifact: reference?.artifact)
                    index = rows.count
                    rows.append(model)
                    references.append(reference)
                    members.append(index)
                }
                rows[index].languageModel?.generation = source
                rows[index].languageModel?.prefillTokensPerSecond = metrics["prefill_tokens_per_s"]?.number
                rows[index].languageModel?.decodeTokensPerSecond = metrics["decode_tokens_per_s"]?.number
                rows[index].languageModel?.kvCacheBytes = metrics["kv_cache_bytes"]?.number
                rows[index].languageModel?.weightsBytes = metrics["weights_bytes"]?.number
            }
            if !members.isEmpty { groups.append((stage, members)) }
        }

        label(&rows, scoredRows: scoredRows, perplexityStages: perplexityStages.count, generateStages: generateStages.count, takenLabels: takenLabels)
        for group in groups {
            let names = group.rows.map { rows[$0].name }
            let written = EvaluatedModel.baselineName(of: group.stage, in: run.recipe, models: names)
            let baseline = written ?? commonAncestor(group.rows.map { (rows[$0].name, references[$0]) }, recipe: run.recipe)
            guard let baseline, let reference = group.rows.first(where: { rows[$0].name == baseline }).map({ rows[$0] }) else { continue }
            for index in group.rows {
                rows[index].isBaseline = rows[index].name == baseline
                rows[index].delta = EvaluatedModel.Delta(rows[index], over: reference)
            }
        }
        // A model scored alone (one per sweep instance) is compared with a
        // baseline of another stage when that baseline's model is upstream of
        // it and both stages measured the same way (split, window, stride).
        var protocols: [String: [Double?]] = [:]
        for stage in perplexityStages {
            protocols[stage.id] = ["split_tokens", "seq_len", "stride"].map { key in stage.metrics[key]?.number }
        }
        let baselines = rows.indices.filter { rows[$0].isBaseline && rows[$0].languageModel?.perplexity != nil }
        for index in rows.indices where rows[index].delta == nil && rows[index].languageModel?.perplexity != nil {
            guard let producer = references[index]?.producer else { continue }
            let upstream = ModelReference.ancestors(of: producer, in: run.recipe)
            let candidates = baselines.filter { candidate in
                guard let root = references[candidate]?.producer, upstream.contains(root) else { return false }
                return protocols[rows[candidate].stage] == protocols[rows[index].stage]
            }
            guard candidates.count == 1, let candidate = candidates.first else { continue }
            rows[index].delta = EvaluatedModel.Delta(rows[index], over: rows[candidate])
        }
        return rows
    }

    /// The perplexity row a generated model joins: the one row holding the
    /// same artifact and no generation yet, preferring the same name.
    static func partner(
        named name: String, identity: ModelReference.Identity, among rows: ArraySlice<EvaluatedModel>, references: [ModelReference?]
    ) -> Int? {
        let same = rows.indices.filter { references[$0]?.identity == identity && rows[$0].languageModel?.generation == nil }
        let named = same.filter { rows[$0].name == name }
        if named.count == 1 { return named.first }
        return same.count == 1 ? same.first : nil
    }

    /// Labels unique in the run: the name when the run has one stage of the
    /// row's kind (perplexity, or generate for a generated-only model), else
    /// `stage/name`; `stage/name` too when an earlier row (a classifier
    /// included) already has the name, and a counter if even that is taken.
    static func label(_ rows: inout [EvaluatedModel], scoredRows: Int, perplexityStages: Int, generateStages: Int, takenLabels: Set<String>) {
        var taken = takenLabels
        for index in rows.indices {
            let stagesOfKind = index >= scoredRows ? generateStages : perplexityStages
            var label = stagesOfKind > 1 ? "\(rows[index].stage)/\(rows[index].name)" : rows[index].name
            if taken.contains(label) { label = "\(rows[index].stage)/\(rows[index].name)" }
            var suffix = 2
            let base = label
            while taken.contains(label) {
                label = "\(base) (\(suffix))"
                suffix += 1
            }
            rows[index].label = label
            taken.insert(label)
        }
    }

    /// The model every other model of a stage was made from, when the stage
    /// names no baseline: the one whose producing stage is upstream (by the
    /// recorded recipe's dependencies) of every other model's. nil when any
    /// model's origin is unknown or no single model qualifies.
    static func commonAncestor(_ models: [(name: String, reference: ModelReference?)], recipe: Value) -> String? {
        guard models.count > 1 else { return nil }
        let producers = models.map { $0.reference?.producer }
        guard producers.allSatisfy({ $0 != nil }) else { return nil }
        let ancestors = producers.map { ModelReference.ancestors(of: $0 ?? "", in: recipe) }
        let roots = models.indices.filter { candidate in
            guard let root = producers[candidate] else { return false }
            return models.indices.allSatisfy { $0 == candidate || ancestors[$0].contains(root) }
        }
        guard roots.count == 1, let root = roots.first else { return nil }
        return models[root].name
    }
}

/// How one language-model evaluation stage measured, from its stage-level
/// metrics: perplexities are comparable only under the same split, window
/// and stride, and generation speeds under the same prompt and token counts.
public struct LanguageModelStage: Sendable, Codable, Equatable {
    public var stage: String
    public var uses: String
    /// `the test split, 280.0k tokens, non-overlapping windows of 128 tokens`,
    /// or `2 prompts, 48 new tokens each; peak resident memory 400.0 MB`.
    public var summary: String

    static func all(in run: RunRecord) -> [LanguageModelStage] {
        run.stages.compactMap { stage in
            let metrics = stage.metrics
            var parts: [String] = []
            switch stage.uses {
            case LanguageModelRows.perplexityStageType:
                let split = ModelReference.recipeStage(stage.id, in: run.recipe)?[member: "with"]?[member: "split"]?.string
                if let split { parts.append("the \(split) split") }
                if let tokens = metrics["split_tokens"]?.number { parts.append("\(Format.count(tokens)) tokens") }
                if let length = metrics["seq_len"]?.number {
                    parts.append(metrics["stride"]?.number.map { "sliding windows of \(Format.number(length)) tokens, stride \(Format.number($0))" }
                        ?? "non-overlapping windows of \(Format.number(length)) tokens")
                }
            case LanguageModelRows.generateStageType:
                var prompts: [String] = []
                if let count = metrics["prompts"]?.number { prompts.append("\(Format.number(count)) prompt\(count == 1 ? "" : "s")") }
                if let tokens = metrics["max_new_tokens"]?.number { prompts.append("up to \(Format.number(tokens)) new tokens each") }
                if !prompts.isEmpty { parts.append(prompts.joined(separator: ", ") + " at batch 1") }
                if let rss = metrics["peak_rss_bytes"]?.number { parts.append("peak resident memory \(Format.bytes(rss)) (the whole squeeze process)") }
            default:
                return nil
            }
            guard !parts.isEmpty else { return nil }
            return LanguageModelStage(stage: stage.id, uses: stage.uses, summary: parts.joined(separator: ", "))
        }
    }
}
