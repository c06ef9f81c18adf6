import Foundation
import SqueezeStages
import SqueezeModels
import SqueezeTensor
import Testing

/// `train/finetune` and `eval/classification` end to end through the CLI on a
/// tiny random BERT and a tiny, learnable sentiment task.
@Suite struct TrainingStagesTests {
    static func recipe(finetune: String = "", eval: String = "") -> String {
        TinySentiment.recipe(name: "tiny-finetune", stages: """
          tuned:
            uses: train/finetune
            with:
              model: ${base.model}
              data: ${data.dataset}
              epochs: 6
              batch_size: 8
              lr: 3.0e-3
              max_seq_len: 16
              warmup_ratio: 0.1
              weight_decay: 0.01
              eval_every: 10
              log_every: 5
        \(finetune)
          eval:
            uses: eval/classification
            with:
              models:
                tuned: ${tuned.model}
              data: ${data.dataset}
              latency_samples: 5
              speed_seq_len: 16
              speed_repeats: 2
        \(eval)
        """)
    }

    static func makeProject(_ name: String, recipe: String = recipe()) throws -> Project {
        try TinySentiment.makeProject(name, recipe: recipe)
    }

    @Test func finetuneLearnsATinyTaskAndEvalReportsEverything() throws {
        let project = try Self.makeProject("finetune-learns")
        let result = try project.run(timeout: 300)
        #expect(result.status == 0, "\(result)")

        let tuned = try ModelStagesTests.metrics(project, runID: result.runID, stage: "tuned")
        #expect(tuned["steps"] as? Int == 120)
        let curve = try #require(tuned["loss_curve"] as? [[Double]])
        #expect(curve.count == 24)
        let firstLoss = try #require(curve.first?.last)
        let lastLoss = try #require(curve.last?.last)
        #expect(lastLoss < firstLoss * 0.5, "loss \(firstLoss) → \(lastLoss)")
        #expect((tuned["dev_accuracy"] as? Double ?? 0) >= 0.9, "\(tuned)")
        #expect((tuned["dev_curve"] as? [Any])?.count == 12)

        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        #expect(eval["examples"] as? Int == 40)
        #expect((eval["tuned.accuracy"] as? Double ?? 0) >= 0.9, "\(eval)")
        for key in ["macro_f1", "loss", "throughput_per_s", "latency_b1_p50_ms", "latency_b1_p95_ms", "latency_b32_t16_ms", "sparsity"] {
            #expect(eval["tuned.\(key)"] is Double, "missing tuned.\(key) in \(eval)")
        }
        let parameters = try #require(eval["tuned.parameters"] as? Int)
        let encoder = try #require(eval["tuned.encoder_parameters"] as? Int)
        #expect(encoder > 0 && encoder < parameters)
        #expect((eval["tuned.size_bytes"] as? Int ?? 0) > parameters * 4)

        let model = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "tuned", output: "model")
        let artifact = try ModelArtifact(directory: model)
        try artifact.verify()
        let loaded = try BertModel(directory: model)
        #expect(loaded.config.labels == ["0", "1"])
        #expect(loaded.layerShapes == [BertLayerShape(heads: 4, intermediateSize: 32), BertLayerShape(heads: 2, intermediateSize: 24)])
        let report = project.url("runs/\(try #require(result.runID))/outputs/eval/report")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
        let entry = try #require(json["tuned"] as? [String: Any])
        #expect(entry["latency_b1_p50_ms"] == nil, "timings stay out of the artifact")
        #expect(entry["accuracy"] as? Double == eval["tuned.accuracy"] as? Double)
    }

    @Test func sameSeedGivesByteIdenticalWeightsAndMetrics() throws {
        let project = try Self.makeProject("finetune-deterministic")
        let otherCache = project.path("cache2")
        let first = try project.run(timeout: 300)
        #expect(first.status == 0, "\(first)")
        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: otherCache), timeout: 300)
        #expect(second.status == 0, "\(second)")
        #expect(!second.stderr.contains("tuned: cached"), "the second run must train again: \(second)")

        let firstRecord = try project.record(of: first)
        let secondRecord = try project.record(of: second)
        let firstDigest = try #require(firstRecord.stages.first { $0.id == "tuned" }?.outputs["model"])
        let secondDigest = try #require(secondRecord.stages.first { $0.id == "tuned" }?.outputs["model"])
        #expect(firstDigest == secondDigest, "same seed, backend and threads: identical model artifacts")
        let firstMetrics = try ModelStagesTests.metrics(project, runID: first.runID, stage: "tuned")
        let secondMetrics = try ModelStagesTests.metrics(project, runID: second.runID, stage: "tuned")
        let canonical = { (metrics: [String: Any]) in try JSONSerialization.data(withJSONObject: metrics, options: [.sortedKeys]) }
        #expect(try canonical(firstMetrics) == canonical(secondMetrics), "same seed: identical metrics")

        let reseeded = try project.squeeze(
            ["run", "recipe/recipe.yaml", "--set", "stages.tuned.with.lr=2.9e-3"] + project.storage(cache: project.path("cache3")),
            timeout: 300)
        let reseededDigest = try project.record(of: reseeded).stages.first { $0.id == "tuned" }?.outputs["model"]
        #expect(reseededDigest != firstDigest, "another learning rate gives other weights")
    }

    @Test func divergingLossStopsWithTheStepNumber() throws {
        let project = try Self.makeProject(
            "finetune-nan", recipe: Self.recipe(finetune: "      lr: 1.0e+30\n      grad_clip: 0").replacingOccurrences(of: "      lr: 3.0e-3\n", with: ""))
        let result = try project.run(timeout: 300)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("the training loss became"), "\(result)")
        #expect(result.stderr.contains("at step"), "\(result)")
    }

    @Test func earlyStopAfterPatienceEvaluationsWithoutImprovement() throws {
        // A learning rate too small to change any float weight: every evaluation ties the first.
        let recipe = Self.recipe(finetune: "      early_stop_patience: 2")
            .replacingOccurrences(of: "      lr: 3.0e-3\n", with: "      lr: 1.0e-30\n")
        let project = try Self.makeProject("finetune-early-stop", recipe: recipe)
        let result = try project.run(timeout: 300)
        #expect(result.status == 0, "\(result)")
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "tuned")
        #expect(metrics["stopped_early"] as? Bool == true, "\(metrics)")
        #expect(metrics["steps"] as? Int == 30, "\(metrics)")
        #expect(metrics["output_step"] as? Int == 10, "\(metrics)")
    }

    @Test(arguments: [
        ("      epochs: 6\n", "      epochs: 6\n      steps: 5\n", "give either `epochs` or `steps`"),
        ("      batch_size: 8\n", "      batch_size: 0\n", "`batch_size` must be at least 1"),
        ("      warmup_ratio: 0.1\n", "      warmup_ratio: 1.5\n", "`warmup_ratio` must be between 0 and 1"),
        ("      log_every: 5\n", "      log_every: 5\n      pooling: max\n", "expected one of \"pooler\" | \"mean\""),
        ("      lr: 3.0e-3\n", "      lr: -1\n", "`lr` must be positive"),
    ])
    func badFinetuneParametersAreRecipeErrors(line: String, replacement: String, message: String) throws {
        let recipe = Self.recipe()
        #expect(recipe.contains(line))
        let project = try Self.makeProject("finetune-bad", recipe: recipe.replacingOccurrences(of: line, with: replacement))
        try project.expectInvalidRecipe(message)
    }

    @Test func evalRejectsAModelWithOtherClasses() throws {
        let project = try Self.makeProject("eval-classes", recipe: """
            version: 1
            name: eval-classes
            stages:
              base:
                uses: model/import
                with:
                  directory: tiny
              data:
                uses: data/text-classification
                with:
                  train: three.tsv
              eval:
                uses: eval/classification
                with:
                  models:
                    base: ${base.model}
                  data: ${data.dataset}
                  split: train
                  latency_samples: 0
                  speed_repeats: 0
            """)
        _ = try project.write("recipe/three.tsv", "sentence\tlabel\ngood film\t0\nbad film\t1\nthe plot\t2\n")
        let result = try project.run(timeout: 120)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("has 2 classes but the dataset has 3"), "\(result)")
    }
}

/// Cache keys of tensor stages carry the backend's numerics, not only its name.
@Suite struct BackendFingerprintTests {
    @Test func builtinRegistryKeysKernelRevisionAndVariant() {
        let fingerprint = BuiltinStages.registry(backends: .builtin).backendFingerprint
        #expect(fingerprint("cpu") == CPUBackend.numericsFingerprint)
        #expect(fingerprint("cpu").hasPrefix("cpu/r") && fingerprint("cpu").hasSuffix("/\(CPUBackend.kernelVariant)"))
        #expect(fingerprint("reference") == ReferenceBackend.numericsFingerprint)
        #expect(fingerprint("cpu") != fingerprint("reference"))
    }
}
