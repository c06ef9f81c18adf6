/// `squeeze report` on a terminal: the run in a few lines, the model table,
/// the Pareto fronts, a line per training curve and the stages.
public enum TextReport {
    public static func render(_ report: RunReport) -> String {
        let run = report.run
        var lines = ["run \(run.id): \(run.status), \(Format.seconds(run.wallSeconds)) wall, started \(Format.date(run.startedAt))"]
        lines.append("recipe \(run.recipeFile)  backend \(run.backend)  threads \(run.threads)  jobs \(run.jobs)  host \(run.host)")
        var version = "squeeze \(run.squeezeVersion)"
        if let git = run.git { version += "  git \(git.commit.prefix(12))\(git.dirty ? " (dirty)" : "")" }
        lines.append(version)
        if !run.overrides.isEmpty { lines.append("overrides: \(run.overrides.joined(separator: " "))") }

        lines.append("")
        if report.models.isEmpty {
            lines.append("no evaluated models (no eval/classification stage produced metrics)")
        } else {
            let baselines = Set(report.models.compactMap(\.delta?.baseline))
            lines.append("models" + (baselines.isEmpty ? "" : " (Δ against baseline \(baselines.sorted().joined(separator: ", ")))"))
            for kind in ModelColumn.Table.allCases {
                let columns = ModelColumn.columns(kind, for: report.models)
                guard columns.count > 1 else { continue }
                var table = TextTable(
                    header: columns.map(\.title),
                    leftAligned: Set(columns.indices.filter { columns[$0].isText }))
                table.rows = report.models.map { model in
                    columns.map { column in
                        let cell = column.cell(model) ?? Format.missing
                        return column.title == "model" && model.isBaseline ? cell + " (baseline)" : cell
                    }
                }
                lines += table.lines.map { "  " + $0 }
                lines.append("")
            }
            for front in report.fronts {
                lines.append("Pareto front, accuracy vs \(front.axis): \(front.front.joined(separator: ", "))")
            }
        }

        if !report.curves.isEmpty {
            lines.append("")
            lines.append("training curves")
            for curve in report.curves {
                let summaries = curve.series.compactMap { series -> String? in
                    guard let last = series.points.last else { return nil }
                    return "\(series.name) \(Format.number(last.value, digits: 4))"
                }
                let points = curve.series.map(\.points.count).max() ?? 0
                let lastStep = curve.series.compactMap(\.points.last?.step).max().map { Format.number($0) } ?? Format.missing
                lines.append("  \(curve.stage) \(curve.metric): \(points) points to step \(lastStep); last \(summaries.joined(separator: ", "))")
            }
        }

        lines.append("")
        lines.append("stages")
        var stages = TextTable(header: ["stage", "uses", "status", "cache", "wall", "key"], leftAligned: [0, 1, 2, 3, 5])
        stages.rows = run.stages.map { stage in
            [stage.id, stage.uses, stage.status, stage.cache ?? "", Format.seconds(stage.wallSeconds),
             (stage.key.map { String($0.prefix(12)) } ?? "") + (stage.reason.map { "  (\($0))" } ?? "")]
        }
        lines += stages.lines.map { "  " + $0 }
        return lines.joined(separator: "\n") + "\n"
    }
}
