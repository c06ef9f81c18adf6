/// The columns of the model table, shared by the text and HTML reports.
struct ModelColumn: Sendable {
    var title: String
    /// Left-aligned (text) rather than a right-aligned number.
    var isText = false
    var cell: @Sendable (EvaluatedModel) -> String?

    /// The columns worth showing for `models`: those with at least one value,
    /// and the stage only when there are several.
    static func columns(for models: [EvaluatedModel]) -> [ModelColumn] {
        let stages = Set(models.map(\.stage))
        return all.filter { column in
            if column.title == "stage" { return stages.count > 1 }
            return models.contains { column.cell($0) != nil }
        }
    }

    static let all: [ModelColumn] = [
        ModelColumn(title: "model", isText: true) { $0.label },
        ModelColumn(title: "stage", isText: true) { $0.stage },
        ModelColumn(title: "quantization", isText: true) { $0.quantization },
        ModelColumn(title: "accuracy") { $0.accuracy.map { Format.percent($0) } },
        ModelColumn(title: "macro-F1") { $0.macroF1.map { Format.percent($0) } },
        ModelColumn(title: "size") { $0.sizeBytes.map { Format.bytes($0) } },
        ModelColumn(title: "params") { $0.parameters.map { Format.count($0) } },
        ModelColumn(title: "sparsity") { $0.sparsity.map { Format.percent($0, digits: 1) } },
        ModelColumn(title: "p50") { $0.latencyP50Milliseconds.map { Format.milliseconds($0) } },
        ModelColumn(title: "p95") { $0.latencyP95Milliseconds.map { Format.milliseconds($0) } },
        ModelColumn(title: "throughput") { $0.throughputPerSecond.map { Format.rate($0) } },
        ModelColumn(title: "batch latency") { model in
            model.batchLatency.map { "\(Format.milliseconds($0.milliseconds)) (\($0.shape))" }
        },
        ModelColumn(title: "Δ accuracy") { $0.delta?.accuracy.map { Format.points($0) } },
        ModelColumn(title: "Δ macro-F1") { $0.delta?.macroF1.map { Format.points($0) } },
        ModelColumn(title: "smaller") { $0.delta?.sizeReduction.map { Format.factor($0) } },
        ModelColumn(title: "p50 speedup") { $0.delta?.latencyP50Speedup.map { Format.factor($0) } },
        ModelColumn(title: "batch speedup") { $0.batchLatency?.speedup.map { Format.factor($0) } },
    ]
}
