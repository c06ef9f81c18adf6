import SqueezeEngine
import SqueezeSupport

/// A curve a training stage recorded as a `…_curve` metric: rows of
/// `[step, value, value, …]`, one series per value column.
public struct TrainingCurve: Sendable, Codable, Equatable {
    public var stage: String
    public var uses: String
    /// The metric it came from (`loss_curve`, `dev_curve`, …).
    public var metric: String
    public var title: String
    /// What the values are: `loss`, `fraction` (accuracy, sparsity) or `value`.
    public var axis: String
    public var series: [Series]

    public struct Series: Sendable, Codable, Equatable {
        public var name: String
        public var points: [Point]
    }

    public struct Point: Sendable, Codable, Equatable {
        public var step: Double
        public var value: Double
    }
}

extension TrainingCurve {
    /// Every curve of every stage of `run`, in stage order, then by metric name.
    static func all(in run: RunRecord) -> [TrainingCurve] {
        run.stages.flatMap { stage in
            stage.metrics.keys.filter { $0.hasSuffix("_curve") }.sorted().compactMap { key in
                stage.metrics[key].flatMap { curve(key, $0, stage: stage) }
            }
        }
    }

    static func curve(_ key: String, _ value: Value, stage: StageRecord) -> TrainingCurve? {
        guard case .array(let rows) = value else { return nil }
        let table: [[Value]] = rows.compactMap { if case .array(let row) = $0, row.first?.number != nil { row } else { nil } }
        guard let width = table.map(\.count).max(), width > 1 else { return nil }
        let (title, axis, names) = columns(of: key, uses: stage.uses, valueColumns: width - 1)
        var series: [Series] = []
        for (offset, name) in names.enumerated() {
            guard let name else { continue }
            let points = table.compactMap { row -> Point? in
                guard let step = row.first?.number, row.count > offset + 1, let value = row[offset + 1].number, value.isFinite else {
                    return nil
                }
                return Point(step: step, value: value)
            }
            if !points.isEmpty { series.append(Series(name: name, points: points)) }
        }
        guard !series.isEmpty else { return nil }
        return TrainingCurve(stage: stage.id, uses: stage.uses, metric: key, title: title, axis: axis, series: series)
    }

    /// A chart title, what the values are, and the names of a curve's value
    /// columns, as the training stages write them; nil names a column not
    /// worth plotting (an eval loss beside the accuracy, CoFi's Lagrange
    /// multipliers). Unknown curves get numbered columns.
    static func columns(of key: String, uses: String, valueColumns: Int) -> (title: String, axis: String, names: [String?]) {
        let pruning = uses == "prune/cofi"
        switch key {
        case "loss_curve" where pruning:
            return ("training loss", "loss", ["total", "layer distillation", "prediction distillation", "task (CE)", "lagrangian"])
        case "loss_curve":
            return ("training loss", "loss", ["train loss"])
        case "loss_parts_curve":
            return ("distillation loss parts", "loss", ["distillation", "task (CE)", "hidden states", "attention scores"])
        case "finetune_loss_curve":
            return ("recovery fine-tuning loss", "loss", ["train loss"])
        case "sparsity_curve":
            return ("sparsity", "fraction", ["expected sparsity", "target sparsity", nil, nil])
        default:
            let split = String(key.dropLast("_curve".count))
            let known = ["train/finetune", "distill/kd", "prune/cofi"].contains(uses)
            if known && pruning { return ("\(split) accuracy and sparsity", "fraction", ["\(split) accuracy", "sparsity"]) }
            if known { return ("\(split) accuracy", "fraction", ["\(split) accuracy", nil]) }
            return (key, "value", (1...valueColumns).map { "column \($0)" })
        }
    }
}
