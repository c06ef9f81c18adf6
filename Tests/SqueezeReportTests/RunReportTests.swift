import Foundation
import SqueezeEngine
@testable import SqueezeReport
import Testing
import SqueezeSupport

@Suite struct RunReportTests {
    @Test func everyModelOfEveryEvalStageLabelledWithItsStage() throws {
        let report = RunReport(Fixtures.cofiRun())
        #expect(report.models.map(\.label) == [
            "eval/cofi", "eval/cofi_int8", "eval/int8", "eval/teacher",
            "sweep_eval[sparsity=0.8]/cofi", "sweep_eval[sparsity=0.8]/teacher",
        ])
        let int8 = try #require(report.models.first { $0.label == "eval/int8" })
        #expect(int8.stage == "eval" && int8.name == "int8")
        #expect(int8.accuracy == 0.90 && int8.sizeBytes == 23_000_000 && int8.latencyP50Milliseconds == 4)
        #expect(int8.latencyP95Milliseconds == 4.8 && int8.throughputPerSecond == 250 && int8.sparsity == 0)
        #expect(int8.batchLatency == .init(shape: "b32_t64", milliseconds: 80, speedup: 2))
    }

    @Test func deltasAgainstTheRecipesBaseline() throws {
        let report = RunReport(Fixtures.cofiRun())
        #expect(report.models.filter(\.isBaseline).map(\.label) == ["eval/teacher", "sweep_eval[sparsity=0.8]/teacher"])
        let cofi = try #require(report.models.first { $0.label == "eval/cofi" })
        let delta = try #require(cofi.delta)
        #expect(delta.baseline == "teacher")
        #expect(abs((delta.accuracy ?? 0) - (-0.02)) < 1e-12)
        #expect(abs((delta.sizeReduction ?? 0) - 2.5) < 1e-12)
        #expect(abs((delta.latencyP50Speedup ?? 0) - 8 / 3.5) < 1e-12)
        // The sweep instance finds `baseline: ${vars.reference}` under its recipe stage `sweep_eval`.
        let swept = try #require(report.models.first { $0.label == "sweep_eval[sparsity=0.8]/cofi" })
        #expect(abs((swept.delta?.sizeReduction ?? 0) - 5) < 1e-12)
    }

    @Test func withoutABaselineOrTeacherThereAreNoDeltas() {
        let run = Fixtures.run(stages: [
            Fixtures.stage("check", "eval/classification", metrics: Fixtures.evalMetrics([("a", 0.8, 10, 1), ("b", 0.7, 5, 1)], baseline: nil)),
        ])
        let models = RunReport(run).models
        #expect(models.map(\.label) == ["a", "b"], "one eval stage: labels are the model names")
        #expect(models.allSatisfy { $0.delta == nil && !$0.isBaseline && $0.batchLatency?.speedup == nil })
    }

    @Test func fixedShapeKeys() {
        #expect(EvaluatedModel.fixedShape(ofLatencyKey: "latency_b32_t64_ms") == "b32_t64")
        #expect(EvaluatedModel.fixedShape(ofLatencyKey: "latency_b1_p50_ms") == nil)
        #expect(EvaluatedModel.fixedShape(ofLatencyKey: "latency_b_t_ms") == nil)
        #expect(EvaluatedModel.fixedShape(ofLatencyKey: "throughput_per_s") == nil)
    }

    @Test func paretoFrontsOverSizeAndLatency() throws {
        let report = RunReport(Fixtures.cofiRun())
        let size = try #require(report.tradeOff(.size))
        #expect(Set(size.front) == ["eval/teacher", "eval/int8", "sweep_eval[sparsity=0.8]/teacher", "sweep_eval[sparsity=0.8]/cofi"])
        #expect(size.models.count == 6)
        let latency = try #require(report.tradeOff(.latency))
        #expect(latency.axis == "batch-1 p50 latency (ms)")
        #expect(Set(latency.front) == [
            "eval/teacher", "eval/int8", "eval/cofi", "sweep_eval[sparsity=0.8]/teacher", "sweep_eval[sparsity=0.8]/cofi",
        ])
    }

    @Test func latencyFallsBackToTheFixedShapeBatch() throws {
        var metrics = Fixtures.evalMetrics([("a", 0.8, 10, 1), ("b", 0.7, 5, 0.5)], baseline: nil)
        metrics = metrics.filter { !$0.key.contains("latency_b1_") }
        let report = RunReport(Fixtures.run(stages: [Fixtures.stage("eval", "eval/classification", metrics: metrics)]))
        let latency = try #require(report.tradeOff(.latency))
        #expect(latency.axis == "b32_t64 batch latency (ms)")
        #expect(latency.front == ["a", "b"])
    }

    @Test func trainingCurvesByStageWithNamedSeries() throws {
        let curves = RunReport(Fixtures.cofiRun()).curves
        #expect(curves.map { "\($0.stage).\($0.metric)" } == [
            "teacher.dev_curve", "teacher.loss_curve", "cofi.dev_curve", "cofi.finetune_loss_curve", "cofi.loss_curve",
            "cofi.sparsity_curve", "student.loss_parts_curve",
        ])
        let dev = try #require(curves.first)
        #expect(dev.series.map(\.name) == ["dev accuracy"], "the eval loss column is not plotted")
        #expect(dev.axis == "fraction")
        #expect(dev.series.first?.points == [.init(step: 50, value: 0.80), .init(step: 100, value: 0.85), .init(step: 150, value: 0.88)])
        let pruning = try #require(curves.first { $0.stage == "cofi" && $0.metric == "loss_curve" })
        #expect(pruning.series.map(\.name) == ["total", "layer distillation", "prediction distillation", "task (CE)", "lagrangian"])
        let sparsity = try #require(curves.first { $0.metric == "sparsity_curve" })
        #expect(sparsity.series.map(\.name) == ["expected sparsity", "target sparsity"])
        let parts = try #require(curves.last)
        #expect(parts.series.map(\.name) == ["distillation", "task (CE)"], "all-null columns give no series")
    }

    @Test func unknownCurvesGetNumberedColumnsAndJunkIsIgnored() {
        let run = Fixtures.run(stages: [
            Fixtures.stage("custom", "command", metrics: [
                "speed_curve": .array([.array([.int(1), .double(2), .double(3)])]),
                "empty_curve": .array([]),
                "text_curve": .string("not a curve"),
                "ragged_curve": .array([.array([.string("x"), .double(1)]), .int(3)]),
            ])
        ])
        let curves = RunReport(run).curves
        #expect(curves.map(\.metric) == ["speed_curve"])
        #expect(curves.first?.series.map(\.name) == ["column 1", "column 2"])
        #expect(curves.first?.axis == "value")
    }

    @Test func textReportListsModelsFrontsCurvesAndStages() {
        let text = TextReport.render(RunReport(Fixtures.cofiRun()))
        for label in ["eval/teacher (baseline)", "eval/cofi_int8", "sweep_eval[sparsity=0.8]/cofi"] {
            #expect(text.contains(label), "\(label) in:\n\(text)")
        }
        #expect(text.contains("Pareto front, accuracy vs size (bytes): eval/int8, eval/teacher"))
        #expect(text.contains("teacher dev_curve: 3 points to step 150; last dev accuracy 0.88"))
        #expect(text.contains("git 0123456789ab (dirty)"))
        #expect(text.contains("broken") && text.contains("failed"))
        #expect(text.contains("-2.00 pp"), "cofi's accuracy delta in percentage points:\n\(text)")
    }

    @Test func jsonRoundTrips() throws {
        let report = RunReport(Fixtures.cofiRun())
        let data = try SqueezeJSON.encode(report)
        let decoded = try SqueezeJSON.decode(RunReport.self, from: data)
        #expect(decoded.models == report.models && decoded.fronts == report.fronts && decoded.curves == report.curves)
    }

    @Test func chartScaleTicksAreRoundNumbers() {
        let scale = ChartScale(minimum: 0, maximum: 87.3)
        #expect(scale.ticks == [0, 20, 40, 60, 80, 100])
        let fine = ChartScale(minimum: 0.1, maximum: 0.65)
        #expect(fine.ticks.map(fine.label) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"])
        let flat = ChartScale(minimum: 5, maximum: 5)
        #expect(flat.low < 5 && flat.high > 5)
    }
}
