/// `squeeze compare` on a terminal: the metrics that differ, then each
/// `--fail-if` condition and what tripped it.
public enum ComparisonText {
    public static func render(_ comparison: RunComparison, outcomes: [FailCondition.Outcome]) -> String {
        var lines = ["A \(comparison.runA)", "B \(comparison.runB)", ""]
        let differing = comparison.rows.filter { $0.a != $0.b }
        if differing.isEmpty {
            lines.append("no numeric metric differs (\(comparison.rows.count) compared)")
        } else {
            var table = TextTable(header: ["metric", "A", "B", "change", "relative"])
            table.rows = differing.map { row in
                [
                    row.path, row.a.map { Format.number($0) } ?? "missing", row.b.map { Format.number($0) } ?? "missing",
                    row.change.map { ($0 >= 0 ? "+" : "") + Format.number($0) } ?? Format.missing,
                    row.relativeChangePercent.map { $0.isFinite ? String(format: "%+.2f%%", $0) : "from 0" } ?? Format.missing,
                ]
            }
            lines += table.lines
            let same = comparison.rows.count - differing.count
            if same > 0 { lines.append("(\(same) other metric\(same == 1 ? "" : "s") equal)") }
        }
        for outcome in outcomes {
            lines.append("")
            if outcome.holds {
                lines.append("FAIL \(outcome.condition): \(outcome.tripped.count) of \(outcome.matched.count) matched metrics")
                for trip in outcome.tripped {
                    let values = "\(trip.a.map { Format.number($0) } ?? "missing") → \(trip.b.map { Format.number($0) } ?? "missing")"
                    lines.append("  \(trip.path): \(values), \(trip.reason)")
                }
            } else {
                lines.append("ok   \(outcome.condition): \(outcome.matched.count) matched metrics")
            }
            if !outcome.onlyInB.isEmpty {
                lines.append("  not compared (only in run B): \(outcome.onlyInB.joined(separator: ", "))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
