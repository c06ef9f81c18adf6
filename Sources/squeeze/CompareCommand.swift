import ArgumentParser
import Foundation
import SqueezeReport
import SqueezeSupport

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare the metrics of two runs; with --fail-if, gate on regressions.",
        discussion: """
            Metrics are matched by path `<stage>.<metric>`, e.g. `eval.teacher.accuracy`. Exit codes: 0 no condition \
            holds, 1 a condition holds (the metrics that tripped it are printed), 2 a malformed condition, a pattern \
            matching no metric, or an unknown run. A metric run A has and run B lacks trips every condition matching it; \
            one only run B has is listed and never trips.

            \(FailCondition.grammar)
            """)

    @OptionGroup var storage: StorageOptions
    @Argument(help: "The reference run (A).") var runA: String
    @Argument(help: "The run compared with it (B).") var runB: String
    @Option(name: .customLong("fail-if"), help: ArgumentHelp(
        "Exit 1 when the change B - A of a matching metric meets the condition, e.g. 'eval.*.accuracy < -0.01' or 'eval.*.latency_b1_p50_ms > +10%' (repeatable).",
        valueName: "condition"))
    var failIf: [String] = []
    @Flag(help: "Print the comparison as JSON.") var json = false

    struct Output: Encodable {
        var comparison: RunComparison
        var conditions: [FailCondition.Outcome]
        var failed: Bool
    }

    func run() throws {
        let conditions: [FailCondition]
        do {
            conditions = try failIf.map(FailCondition.parse)
        } catch {
            throw UserError("\(error)")
        }
        let comparison = RunComparison(try RunsCommand.load(storage, runA), try RunsCommand.load(storage, runB))
        let outcomes: [FailCondition.Outcome]
        do {
            outcomes = try conditions.map { try $0.evaluate(comparison) }
        } catch {
            throw UserError("\(error)")
        }
        let failed = outcomes.contains(where: \.holds)
        if json {
            print(Output(comparison: comparison, conditions: outcomes, failed: failed).prettyJSON, terminator: "")
        } else {
            print(ComparisonText.render(comparison, outcomes: outcomes), terminator: "")
        }
        if failed { throw ExitStatus(code: 1) }
    }
}
