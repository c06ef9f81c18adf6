import Foundation

/// A `--fail-if` condition of `squeeze compare`: a glob over metric paths,
/// a comparison and a threshold on the change from run A to run B, absolute
/// (in the metric's unit) or relative (with `%`, of A's value).
public struct FailCondition: Sendable, Equatable {
    public enum Comparison: String, Sendable, Codable, CaseIterable {
        case lessOrEqual = "<="
        case greaterOrEqual = ">="
        case less = "<"
        case greater = ">"

        func holds(_ change: Double, _ threshold: Double) -> Bool {
            switch self {
            case .less: change < threshold
            case .lessOrEqual: change <= threshold
            case .greater: change > threshold
            case .greaterOrEqual: change >= threshold
            }
        }
    }

    public var expression: String
    public var pattern: Glob
    public var comparison: Comparison
    public var threshold: Double
    public var isRelative: Bool

    public static let grammar = """
        condition  := PATTERN OPERATOR THRESHOLD
        PATTERN    := a metric path, `*` matching any characters and `?` one (e.g. eval.*.accuracy)
        OPERATOR   := < | <= | > | >=
        THRESHOLD  := a signed number, absolute in the metric's unit (-0.01), or with % relative to run A (+10%)
        The condition compares the change B - A with the threshold: `eval.*.accuracy < -0.01` trips when an
        accuracy drops by more than 0.01, `eval.*.latency_b1_p50_ms > +10%` when a latency grows by more than 10 %.
        """

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ text: String) throws(ParseError) -> FailCondition {
        func fail(_ problem: String) -> ParseError {
            ParseError(description: "bad --fail-if `\(text)`: \(problem)\n\(grammar)")
        }
        guard let operatorIndex = text.firstIndex(where: { $0 == "<" || $0 == ">" }) else {
            throw fail("no comparison operator (<, <=, >, >=)")
        }
        let pattern = text[..<operatorIndex].trimmingCharacters(in: .whitespaces)
        guard !pattern.isEmpty else { throw fail("no metric pattern before the operator") }
        if let last = pattern.last, "=!".contains(last) {
            throw fail("`\(last)\(text[operatorIndex])` is not an operator; use <, <=, > or >=")
        }
        guard !pattern.contains(where: \.isWhitespace) else { throw fail("the metric pattern `\(pattern)` contains a space") }
        var rest = text[operatorIndex...]
        let comparison = Comparison.allCases.first { rest.hasPrefix($0.rawValue) } ?? .less
        rest = rest.dropFirst(comparison.rawValue.count)
        var number = rest.trimmingCharacters(in: .whitespaces)
        let isRelative = number.hasSuffix("%")
        if isRelative { number = String(number.dropLast()).trimmingCharacters(in: .whitespaces) }
        guard !number.isEmpty else { throw fail("no threshold after `\(comparison.rawValue)`") }
        guard number.allSatisfy({ "+-0123456789.eE".contains($0) }), let threshold = Double(number), threshold.isFinite else {
            throw fail("the threshold `\(number)` is not a number")
        }
        return FailCondition(
            expression: text, pattern: Glob(pattern), comparison: comparison, threshold: threshold, isRelative: isRelative)
    }

    /// What a condition found in a comparison.
    public struct Outcome: Sendable, Codable, Equatable {
        public var condition: String
        /// Paths of the metrics the pattern matched, in either run.
        public var matched: [String]
        public var tripped: [Trip]
        /// Metrics only run B has: nothing to compare with, so they never trip.
        public var onlyInB: [String]

        public var holds: Bool { !tripped.isEmpty }
    }

    public struct Trip: Sendable, Codable, Equatable {
        public var path: String
        public var a: Double?
        public var b: Double?
        /// The change the threshold was compared with (absolute, or percent of A); nil when B lacks the metric.
        public var change: Double?
        public var reason: String
    }

    public struct NoMatch: Error, CustomStringConvertible {
        public var description: String
    }

    /// Checks the condition against every metric its pattern matches. A metric
    /// run B lacks (its stage failed, or it was renamed) trips the condition:
    /// a gate must not pass because the numbers are gone. A pattern that
    /// matches no metric of either run is a mistake in the condition.
    public func evaluate(_ comparison: RunComparison) throws(NoMatch) -> Outcome {
        let rows = comparison.rows.filter { pattern.matches($0.path) }
        guard !rows.isEmpty else {
            let examples = comparison.rows.prefix(5).map(\.path).joined(separator: ", ")
            throw NoMatch(description: """
                --fail-if `\(expression)`: `\(pattern)` matches no metric of either run\
                \(examples.isEmpty ? " (they have no numeric metrics)" : "; metrics are named like \(examples)")
                """)
        }
        var outcome = Outcome(condition: expression, matched: rows.map(\.path), tripped: [], onlyInB: [])
        for row in rows {
            guard row.a != nil else {
                outcome.onlyInB.append(row.path)
                continue
            }
            guard let change = isRelative ? row.relativeChangePercent : row.change else {
                outcome.tripped.append(Trip(path: row.path, a: row.a, b: row.b, change: nil, reason: "missing in run B"))
                continue
            }
            if self.comparison.holds(change, threshold) {
                let shown = isRelative ? String(format: "%+.2f%%", change) : String(format: "%+g", change)
                let limit = isRelative ? String(format: "%+g%%", threshold) : String(format: "%+g", threshold)
                outcome.tripped.append(Trip(
                    path: row.path, a: row.a, b: row.b, change: change.isFinite ? change : nil,
                    reason: "changed \(shown) \(self.comparison.rawValue) \(limit)"))
            }
        }
        return outcome
    }
}
