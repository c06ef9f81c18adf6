/// The columns of the model tables, shared by the text and HTML reports: one
/// table of quality and size, one of speed, each led by the model label.
struct ModelColumn: Sendable {
    enum Table: String, CaseIterable, Sendable {
        case quality = "Quality and size"
        case speed = "Speed"
    }

    var title: String
    /// Left-aligned (text) rather than a right-aligned number.
    var isText = false
    var cell: @Sendable (EvaluatedModel) -> String?

    static let model = ModelColumn(title: "model", isText: true) { $0.label }

    /// The model column and the columns of `table` with at least one value among `models`.
    static func columns(_ table: Table, for models: [EvaluatedModel]) -> [ModelColumn] {
        let candidates = table == .quality ? quality : speed
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
}
