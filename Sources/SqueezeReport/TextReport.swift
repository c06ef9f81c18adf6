/// `squeeze report` on a terminal: the run in a few lines, the model tables
/// (classifiers, then language models), the Pareto fronts, the generated
/// texts, a line per training curve and the stages.
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
            let classifiers = report.models.filter { !$0.isLanguageModel }
            let languageModels = report.models.filter(\.isLanguageModel)
            if !classifiers.isEmpty { lines += tables("models", classifiers, ModelColumn.Table.classifierTables) }
            if !languageModels.isEmpty { lines += tables("language models", languageModels, ModelColumn.Table.languageModelTables) }
            for stage in report.languageModelStages ?? [] {
                lines.append("\(stage.stage) (\(stage.uses)): \(stage.summary)")
            }
            if report.languageModelStages?.isEmpty == false { lines.append("") }
            for front in report.fronts {
                let quality = front.quality == .accuracy ? "accuracy" : "perplexity (lower is better)"
                lines.append("Pareto front, \(quality) vs \(front.axis): \(front.front.joined(separator: ", "))")
            }
        }
        for generation in report.generations ?? [] {
            lines.append("")
            lines += samples(generation)
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

    /// A heading naming the baselines, then each table with a value, as text.
    static func tables(_ heading: String, _ models: [EvaluatedModel], _ kinds: [ModelColumn.Table]) -> [String] {
        let baselines = Set(models.compactMap(\.delta?.baseline))
        var lines = [heading + (baselines.isEmpty ? "" : " (Δ against baseline \(baselines.sorted().joined(separator: ", ")))")]
        for kind in kinds {
            let columns = ModelColumn.columns(kind, for: models)
            guard columns.count > 1 else { continue }
            var table = TextTable(
                header: columns.map(\.title),
                leftAligned: Set(columns.indices.filter { columns[$0].isText }))
            table.rows = models.map { model in
                columns.map { column in
                    let cell = column.cell(model) ?? Format.missing
                    return column.title == "model" && model.isBaseline ? cell + " (baseline)" : cell
                }
            }
            lines += table.lines.map { "  " + $0 }
            lines.append("")
        }
        return lines
    }

    /// Longer texts are cut here, with `…`; the HTML page shows them whole.
    static let sampleCharacters = 160

    /// Each prompt, then every model's continuation of it, quoted on one line.
    static func samples(_ generation: GenerationSamples) -> [String] {
        var lines = ["generated text (\(generation.stage)\(generation.sampling.map { ": \($0)" } ?? ""))"]
        if let problem = generation.problem {
            lines.append("  not shown: \(problem)")
            return lines
        }
        for (index, prompt) in GenerationSamples.prompts(of: generation).enumerated() {
            lines.append("  prompt \(index + 1): \(quoted(prompt))")
            for model in generation.models {
                for sample in model.samples where sample.prompt == prompt {
                    lines.append("    \(model.label): \(quoted(sample.continuation))")
                }
            }
        }
        return lines
    }

    /// `"text"` on one line: quotes, backslashes and line breaks escaped,
    /// other control characters dropped, cut at `sampleCharacters`.
    static func quoted(_ text: String) -> String {
        var out = ""
        var count = 0
        for character in text {
            guard count < sampleCharacters else {
                out += "…"
                break
            }
            switch character {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n", "\r\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if character.unicodeScalars.allSatisfy({ $0.properties.generalCategory != .control }) { out.append(character) }
            }
            count += 1
        }
        return "\"" + out + "\""
    }
}
