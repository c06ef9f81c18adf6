import Foundation
import SqueezeModels
import Testing

/// `eval/classification`'s fixed-shape inference timing and speedups over a
/// baseline, through the CLI on two random BERTs of very different cost.
@Suite struct EvalSpeedTests {
    /// A random BERT over TinySentiment's vocabulary with 64 positions.
    static func writeBert(at directory: URL, hidden: Int, layers: Int, heads: Int, intermediate: Int) throws {
        let config = TinySentiment.config(hidden: hidden, layers: layers, heads: heads, intermediate: intermediate, positions: 64)
        try TinySentiment.writeRandomBert(at: directory, config: config, seed: 5)
    }

    static func recipe(eval: String) -> String {
        """
        version: 1
        name: eval-speed
        seed: 7
        stages:
          large:
            uses: model/import
            with:
              directory: large
          small:
            uses: model/import
            with:
              directory: small
          data:
            uses: data/text-classification
            with:
              train: train.tsv
          eval:
            uses: eval/classification
            with:
              models:
                large: ${large.model}
                small: ${small.model}
              data: ${data.dataset}
              split: train
              latency_samples: 0
        \(eval)
        """
    }

    /// `large` (hidden 64, 4 layers, FFN 256) costs about 20× the FLOPs of `small` (hidden 32, 1 layer, FFN 64).
    static func makeProject(_ name: String, eval: String) throws -> Project {
        let project = try Project(name)
        try writeBert(at: project.url("recipe/large"), hidden: 64, layers: 4, heads: 4, intermediate: 256)
        try writeBert(at: project.url("recipe/small"), hidden: 32, layers: 1, heads: 2, intermediate: 64)
        _ = try project.write("recipe/train.tsv", TinySentiment.tsv(rows: 8, seed: 1))
        _ = try project.write("recipe/recipe.yaml", recipe(eval: eval))
        return project
    }

    @Test func fixedShapeLatencyAndSpeedupOverTheBaseline() throws {
        let project = try Self.makeProject("eval-speedup", eval: "      baseline: large\n      speed_repeats: 5")
        let result = try project.run(timeout: 300)
        #expect(result.status == 0, "\(result)")
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")

        let largeLatency = try #require(metrics["large.latency_b32_t64_ms"] as? Double, "\(metrics)")
        let smallLatency = try #require(metrics["small.latency_b32_t64_ms"] as? Double, "\(metrics)")
        #expect(largeLatency > 0 && smallLatency > 0)
        #expect(metrics["large.speedup_b32_t64"] as? Double == 1)
        let speedup = try #require(metrics["small.speedup_b32_t64"] as? Double, "\(metrics)")
        #expect(speedup > 1, "a model of ~1/20 the FLOPs must run faster: \(metrics)")
        #expect(abs(speedup - largeLatency / smallLatency) < 1e-9 * speedup)

        let largeParameters = try #require(metrics["large.parameters"] as? Int)
        let smallParameters = try #require(metrics["small.parameters"] as? Int)
        #expect(metrics["large.parameter_ratio"] as? Double == 1)
        let ratio = try #require(metrics["small.parameter_ratio"] as? Double)
        #expect(abs(ratio - Double(smallParameters) / Double(largeParameters)) < 1e-12)
        #expect(ratio < 1)

        let runID = try #require(result.runID)
        let report = project.url("runs/\(runID)/outputs/eval/report")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
        let entry = try #require(json["small"] as? [String: Any])
        #expect(entry["parameter_ratio"] as? Double == ratio, "the deterministic ratio is in the artifact")
        #expect(entry.keys.filter { $0.hasPrefix("latency") || $0.hasPrefix("speedup") || $0.hasPrefix("throughput") }.isEmpty,
                "timings stay out of the artifact: \(entry.keys.sorted())")
        let log = try #require(project.read("runs/\(runID)/logs/eval.log"))
        #expect(log.contains("inference 32 × 64 tokens, median of 5: large "), "\(log)")
        #expect(log.contains("× `large`)"), "\(log)")
    }

    @Test func shapeParametersNameTheMetricAndZeroRepeatsSkipIt() throws {
        let project = try Self.makeProject(
            "eval-speed-shape", eval: "      speed_batch_size: 4\n      speed_seq_len: 16\n      speed_repeats: 1")
        let result = try project.run(timeout: 120)
        #expect(result.status == 0, "\(result)")
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        #expect((metrics["large.latency_b4_t16_ms"] as? Double ?? 0) > 0, "\(metrics)")
        #expect((metrics["small.latency_b4_t16_ms"] as? Double ?? 0) > 0, "\(metrics)")
        #expect(metrics.keys.filter { $0.contains("speedup") || $0.contains("parameter_ratio") }.isEmpty, "no baseline: \(metrics)")

        let skipped = try Self.makeProject("eval-speed-skip", eval: "      baseline: large\n      speed_repeats: 0")
        let skippedResult = try skipped.run(timeout: 120)
        #expect(skippedResult.status == 0, "\(skippedResult)")
        let skippedMetrics = try ModelStagesTests.metrics(skipped, runID: skippedResult.runID, stage: "eval")
        #expect(skippedMetrics["small.accuracy"] is Double, "\(skippedMetrics)")
        #expect(skippedMetrics["small.parameter_ratio"] is Double, "\(skippedMetrics)")
        #expect(skippedMetrics.keys.filter { $0.contains("_b32_t64") }.isEmpty, "speed_repeats: 0 skips the timing: \(skippedMetrics)")
    }

    @Test func baselineMustBeOneOfTheModels() throws {
        let project = try Self.makeProject("eval-speed-baseline", eval: "      baseline: lareg")
        let result = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe.yaml:26:17: error: `baseline` must name one of `models`, got `lareg`"), "\(result)")
        #expect(result.stderr.contains("did you mean `large`?"), "\(result)")

        let unrelated = try Self.makeProject("eval-speed-baseline-far", eval: "      baseline: teacher")
        let far = try unrelated.squeeze(["validate", unrelated.path("recipe/recipe.yaml")])
        #expect(far.status == 2, "\(far)")
        #expect(far.stderr.contains("`models` names `large`, `small`"), "\(far)")
    }

    @Test func speedSequenceLongerThanTheModelFailsBeforeEvaluating() throws {
        let project = try Self.makeProject("eval-speed-too-long", eval: "      speed_seq_len: 65")
        let result = try project.run(timeout: 120)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("`speed_seq_len` 65 exceeds max_position_embeddings 64 of model `large`"), "\(result)")
        let runID = try #require(result.runID, "\(result)")
        let log = try #require(project.read("runs/\(runID)/logs/eval.log"), "\(result)")
        #expect(!log.contains("accuracy"), "fails before any evaluation: \(log)")
    }
}
