import SqueezeEngine
import SqueezeReport
import SqueezeSupport
import Testing

@Suite struct RunComparisonTests {
    static func run(_ id: String, eval: [String: Value], extra: [StageRecord] = []) -> RunRecord {
        Fixtures.run(id: id, stages: [
            Fixtures.stage("eval", "eval/classification", metrics: eval.merging(["note": .string("text"), "curve_curve": .array([])]) { a, _ in a })
        ] + extra)
    }

    static let a = run("run-a", eval: [
        "teacher.accuracy": .double(0.90), "int8.accuracy": .double(0.89), "int8.latency_b1_p50_ms": .double(10),
        "int8.parameters": .int(100), "gone.accuracy": .double(0.5), "zero.loss": .double(0),
    ])
    static let b = run("run-b", eval: [
        "teacher.accuracy": .double(0.90), "int8.accuracy": .double(0.87), "int8.latency_b1_p50_ms": .double(11.5),
        "int8.parameters": .int(100), "new.accuracy": .double(0.7), "zero.loss": .double(0.2),
    ])

    @Test func rowsMatchByStageAndMetricPath() throws {
        let comparison = RunComparison(Self.a, Self.b)
        #expect(comparison.rows.map(\.path) == [
            "eval.gone.accuracy", "eval.int8.accuracy", "eval.int8.latency_b1_p50_ms", "eval.int8.parameters",
            "eval.teacher.accuracy", "eval.zero.loss", "eval.new.accuracy",
        ], "numbers only; A's order, then B's extras")
        let latency = try #require(comparison.rows.first { $0.path == "eval.int8.latency_b1_p50_ms" })
        #expect(latency.change == 1.5)
        #expect(latency.relativeChangePercent == 15)
        let gone = try #require(comparison.rows.first)
        #expect(gone.b == nil && gone.change == nil && gone.relativeChangePercent == nil)
        #expect(comparison.rows.last { $0.path == "eval.zero.loss" }?.relativeChangePercent == .infinity)
    }

    @Test(arguments: [
        ("eval.*.accuracy < -0.5", "eval.*.accuracy", FailCondition.Comparison.less, -0.5, false),
        ("eval.*.latency_b1_p50_ms > +10%", "eval.*.latency_b1_p50_ms", .greater, 10, true),
        ("x>=0", "x", .greaterOrEqual, 0, false),
        ("eval[sparsity=0.8].*.accuracy <= -1e-2 %", "eval[sparsity=0.8].*.accuracy", .lessOrEqual, -0.01, true),
    ])
    func parsesConditions(text: String, pattern: String, comparison: FailCondition.Comparison, threshold: Double, relative: Bool) throws {
        let condition = try FailCondition.parse(text)
        #expect(condition.pattern.pattern == pattern)
        #expect(condition.comparison == comparison)
        #expect(condition.threshold == threshold)
        #expect(condition.isRelative == relative)
    }

    @Test(arguments: [
        ("eval.*.accuracy", "no comparison operator"),
        ("< -1", "no metric pattern"),
        ("eval.* accuracy < 1", "contains a space"),
        ("eval.*.accuracy <", "no threshold"),
        ("eval.*.accuracy < lots", "is not a number"),
        ("eval.*.accuracy < inf", "is not a number"),
        ("eval.*.accuracy < 1..2", "is not a number"),
        ("eval.*.accuracy <> 1", "is not a number"),
        ("eval.*.accuracy =< 1", "`=<` is not an operator"),
    ])
    func rejectsMalformedConditionsShowingTheGrammar(text: String, problem: String) {
        #expect {
            try FailCondition.parse(text)
        } throws: { error in
            let message = "\(error)"
            return message.contains(problem) && message.contains("OPERATOR   := < | <= | > | >=")
        }
    }

    @Test func absoluteConditionTripsOnTheDrop() throws {
        let outcome = try FailCondition.parse("eval.*.accuracy < -0.01").evaluate(RunComparison(Self.a, Self.b))
        #expect(outcome.holds)
        #expect(outcome.matched.count == 4)
        #expect(outcome.tripped.map(\.path) == ["eval.gone.accuracy", "eval.int8.accuracy"])
        #expect(outcome.tripped.first?.reason == "missing in run B")
        #expect(outcome.onlyInB == ["eval.new.accuracy"])
        let lenient = try FailCondition.parse("eval.int8.accuracy < -0.05").evaluate(RunComparison(Self.a, Self.b))
        #expect(!lenient.holds)
    }

    @Test func relativeConditionUsesPercentOfA() throws {
        let comparison = RunComparison(Self.a, Self.b)
        #expect(try FailCondition.parse("eval.*.latency_b1_p50_ms > +10%").evaluate(comparison).holds)
        #expect(try !FailCondition.parse("eval.*.latency_b1_p50_ms > +20%").evaluate(comparison).holds)
        #expect(try FailCondition.parse("eval.zero.loss > 1000%").evaluate(comparison).holds, "any growth from 0 is infinite")
        #expect(try !FailCondition.parse("eval.int8.parameters > 0%").evaluate(comparison).holds)
    }

    @Test func aPatternMatchingNothingIsAnError() throws {
        let condition = try FailCondition.parse("evl.*.accuracy < 0")
        #expect {
            try condition.evaluate(RunComparison(Self.a, Self.b))
        } throws: { error in
            "\(error)".contains("matches no metric") && "\(error)".contains("eval.gone.accuracy")
        }
    }

    @Test func textNamesWhatTripped() throws {
        let comparison = RunComparison(Self.a, Self.b)
        let outcome = try FailCondition.parse("eval.*.accuracy < -0.01").evaluate(comparison)
        let text = ComparisonText.render(comparison, outcomes: [outcome])
        #expect(text.contains("FAIL eval.*.accuracy < -0.01: 2 of 4 matched metrics"))
        #expect(text.contains("eval.int8.accuracy: 0.89 → 0.87, changed -0.02 < -0.01"))
        #expect(text.contains("eval.gone.accuracy: 0.5 → missing, missing in run B"))
        #expect(text.contains("not compared (only in run B): eval.new.accuracy"))
        #expect(text.contains("(2 other metrics equal)"))
    }

    @Test(arguments: [
        ("eval.*.accuracy", "eval.teacher.accuracy", true),
        ("eval.*.accuracy", "eval.a.b.accuracy", true),
        ("eval.*.accuracy", "eval.teacher.accuracy_x", false),
        ("eval[sparsity=0.8].*", "eval[sparsity=0.8].cofi.accuracy", true),
        ("eval[sparsity=0.8].*", "evals.cofi.accuracy", false),
        ("eval*.int?.loss", "eval[s=1].int8.loss", true),
        ("*", "", true),
        ("a*b*c", "abxbxc", true),
        ("a*b*c", "abxbx", false),
        ("a?", "a", false),
    ])
    func globs(pattern: String, path: String, matches: Bool) {
        #expect(Glob(pattern).matches(path) == matches)
    }
}

@Suite struct PerplexityGateTests {
    static func run(_ id: String, _ perplexities: [String: Double]) -> RunRecord {
        Fixtures.run(id: id, stages: [
            Fixtures.stage("eval", "eval/perplexity", metrics: perplexities.reduce(into: ["seq_len": .int(128)]) { metrics, entry in
                metrics[entry.key + ".perplexity"] = .double(entry.value)
                metrics[entry.key + ".tokens_per_s"] = .double(1000)
            }),
        ])
    }

    @Test func aPerplexityRiseOfMoreThanThreePercentTrips() throws {
        let before = Self.run("run-a", ["dense": 30.0, "int4": 31.0, "wanda": 40.0])
        let after = Self.run("run-b", ["dense": 30.0, "int4": 32.55, "wanda": 38.0])
        let outcome = try FailCondition.parse("eval.*.perplexity > +3%").evaluate(RunComparison(before, after))
        #expect(outcome.matched == ["eval.dense.perplexity", "eval.int4.perplexity", "eval.wanda.perplexity"])
        #expect(outcome.holds)
        #expect(outcome.tripped.map(\.path) == ["eval.int4.perplexity"], "+5 % trips; unchanged and lower do not")
        #expect(abs((outcome.tripped.first?.change ?? 0) - 5) < 1e-9)
        let within = Self.run("run-c", ["dense": 30.8, "int4": 31.0, "wanda": 40.0])
        #expect(try !FailCondition.parse("eval.*.perplexity > +3%").evaluate(RunComparison(before, within)).holds, "+2.7 % is within")
    }
}
