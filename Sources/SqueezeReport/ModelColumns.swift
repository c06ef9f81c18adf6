/// The columns of the model tables, shared by the text and HTML reports:
/// for classifiers one table of quality and size and one of speed, for
/// language models one of perplexity, size and speed and one of generation,
/// each led by the model label.
struct ModelColumn: Sendable {
    enum Table: String, CaseIterable, Sendable {
        case quality = "Quality and size"
        case speed = "Speed"
        case languageModels = "Language models"
        case generation = "Generation (batch 1)"

        static let classifierTables: [Table] = [.quality, .speed]
        static let languageModelTables: [Table] = [.languageModels, .generation]

        /// The HTML table's class suffix: `models-quality`, `models-lm`, …
        var className: String {
            switch self {
            case .quality: "quality"
            case .speed: "speed"
            case .languageModels: "lm"
            case .generation: "generation"
            }
        }
    }

    var title: String
    /// Left-aligned (text) rather than a right-aligned number.
    var isText = false
    var cell: @Sendable (EvaluatedModel) -> String?

    static let model = ModelColumn(title: "model", isText: true) { $0.label }

    /// The model column and the columns of `table` with at least one value among `models`.
    static func columns(_ table: Table, for models: [EvaluatedModel]) -> [ModelColumn] {
        let candidates = switch table {
        case .quality: quality
        case .speed: speed
        case .languageModels: languageModels
        case .generation: generation
        }
        return [model] + candidates.filter { column in models.contains { column.cell($0) != nil } }
    }

    static let quality: [ModelColumn] = [
        ModelColumn(title: "quantization", isText: true) { $0.quantization },
        ModelColumn(title: "accuracy") { $0.accuracy.map { Format.percent($0) } },
        ModelColumn(title: "Δ accuracy") { $0.delta?.accuracy.map { Format.points($0) } },
        ModelColumn(title: "macro-F1") { $0.macroF1.map { Format.percent($0) } },
        ModelColumn(title: "Δ macro-F1") { $0.delta?.macroF1.map { Format.points($0) } },
        ModelColumn(title: "size") { $0.sizeBytes.map { Format.bytes($0) } },
        ModelColumn(title: "smaller") { $0.delta?.sizeReduction.map { Format.factor($0) } },
        ModelColumn(title: "params") { $0.parameters.map { Format.count($0) } },
        ModelColumn(title: "sparsity") { $0.sparsity.map { Format.percent($0, digits: 1) } },
    ]

    static let speed: [ModelColumn] = [
        ModelColumn(title: "p50 (batch 1)") { $0.latencyP50Milliseconds.map { Format.milliseconds($0) } },
        ModelColumn(title: "p95 (batch 1)") { $0.latencyP95Milliseconds.map { Format.milliseconds($0) } },
        ModelColumn(title: "p50 speedup") { $0.delta?.latencyP50Speedup.map { Format.factor($0) } },
        ModelColumn(title: "throughput") { $0.throughputPerSecond.map { Format.rate($0) } },
        ModelColumn(title: "batch latency") { model in
            model.batchLatency.map { "\(Format.milliseconds($0.milliseconds)) (\($0.shape))" }
        },
        ModelColumn(title: "batch speedup") { $0.batchLatency?.speedup.map { Format.factor($0) } },
    ]

    static let languageModels: [ModelColumn] = [
        ModelColumn(title: "quantization", isText: true) { $0.quantization },
        ModelColumn(title: "perplexity") { $0.languageModel?.perplexity.map { Format.decimal($0) } },
        ModelColumn(title: "Δ perplexity") { $0.delta?.perplexityChange.map { Format.signedPercent($0) } },
        ModelColumn(title: "sparsity") { $0.sparsity.map { Format.percent($0, digits: 1) } },
        ModelColumn(title: "params") { $0.parameters.map { Format.count($0) } },
        ModelColumn(title: "size") { $0.sizeBytes.map { Format.bytes($0) } },
        ModelColumn(title: "smaller") { $0.delta?.sizeReduction.map { Format.factor($0) } },
        ModelColumn(title: "eval tokens/s") { $0.languageModel?.evalTokensPerSecond.map { Format.rate($0) } },
        ModelColumn(title: "decode tokens/s") { $0.languageModel?.decodeTokensPerSecond.map { Format.rate($0) } },
    ]

    static let generation: [ModelColumn] = [
        ModelColumn(title: "prefill tokens/s") { $0.languageModel?.prefillTokensPerSecond.map { Format.rate($0) } },
        ModelColumn(title: "decode tokens/s") { $0.languageModel?.decodeTokensPerSecond.map { Format.rate($0) } },
        ModelColumn(title: "ms/token") { $0.languageModel?.decodeMillisecondsPerToken.map { Format.milliseconds($0) } },
        ModelColumn(title: "decode speedup") { $0.delta?.decodeSpeedup.map { Format.factor($0) } },
        ModelColumn(title: "KV cache") { $0.languageModel?.kvCacheBytes.map { Format.bytes($0) } },
        ModelColumn(title: "weights file") { $0.languageModel?.weightsBytes.map { Format.bytes($0) } },
        ModelColumn(title: "in eval/generate as", isText: true) { model in
            model.languageModel?.generation.flatMap { $0.stage == model.stage && $0.name == model.name ? nil : "\($0.stage)/\($0.name)" }
        },
    ]
}
