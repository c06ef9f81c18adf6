import Foundation
import SqueezeModels
import Testing

/// `prune/cofi` end to end through the CLI: a tiny teacher fine-tuned on the
/// tiny sentiment task (TinySentiment's data and vocabulary), pruned to
/// half its prunable parameters, fine-tuned with distillation, and loaded by
/// the other model stages.
@Suite struct CoFiPruneStageTests {
    static let defaultPrune = """
              target_sparsity: 0.5
              units: [heads, ffn_units, hidden]
              steps: 300
              lagrangian_warmup_steps: 100
              batch_size: 8
              max_seq_len: 16
              lr: 1.0e-3
              mask_lr: 0.1
              lambda_lr: 0.1
              eval_every: 100
              log_every: 25
              finetune_epochs: 1
        """

    static func recipe(prune: String = defaultPrune, extraStages: String = "") -> String {
        TinySentiment.recipe(name: "tiny-cofi", stages: """
        \(TinySentiment.teacherStage())
          pruned:
            uses: prune/cofi
            with:
              teacher: ${teacher.model}
              data: ${data.dataset}
        \(prune)
        \(extraStages)
        """)
    }

    /// The tiny sentiment project with a wider tiny BERT (hidden 32, 3 layers
    /// of 4 heads × 8, FFN 64), so one hidden dimension is 3% of the
    /// prunable parameters rather than 6%.
    static func makeProject(_ name: String, recipe: String = recipe()) throws -> Project {
        let project = try TinySentiment.makeProject(name, recipe: recipe)
        let directory = project.url("recipe/tiny")
        try FileManager.default.removeItem(at: directory)
        try TinySentiment.writeRandomBert(
            at: directory, config: TinySentiment.config(hidden: 32, layers: 3, heads: 4, intermediate: 64), seed: 3)
        return project
    }

    @Test func prunesToTheTargetAndTheModelLoadsEverywhere() throws {
        let extra = """
              tuned:
                uses: train/finetune
                with:
                  model: ${pruned.model}
                  data: ${data.dataset}
                  steps: 3
                  max_seq_len: 16
              eval:
                uses: eval/classification
                with:
                  models:
                    teacher: ${teacher.model}
                    pruned: ${pruned.model}
                    tuned: ${tuned.model}
                  baseline: teacher
                  data: ${data.dataset}
                  latency_samples: 0
                  speed_seq_len: 16
                  speed_repeats: 3
            """
        let project = try Self.makeProject("cofi-prunes", recipe: Self.recipe(extraStages: extra))
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")

        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "pruned")
        #expect(metrics["steps"] as? Int == 300)
        let realised = try #require(metrics["realised_sparsity"] as? Double)
        #expect(abs(realised - 0.5) <= 0.02, "realised sparsity \(realised): \(metrics)")
        let expected = try #require(metrics["expected_sparsity"] as? Double)
        #expect(abs(expected - 0.5) <= 0.02, "expected sparsity \(expected)")
        let remaining = try #require(metrics["prunable_parameters"] as? Int)
        let original = try #require(metrics["original_prunable_parameters"] as? Int)
        #expect(original == 3 * (4 * 32 * 32 + 2 * 64 * 32))
        #expect(realised == 1 - Double(remaining) / Double(original))
        #expect((metrics["parameters"] as? Int ?? .max) < metrics["original_parameters"] as? Int ?? 0)
        let sparsityCurve = try #require(metrics["sparsity_curve"] as? [[Double]])
        #expect(sparsityCurve.count == 12 && sparsityCurve.allSatisfy { $0.count == 5 })
        #expect(sparsityCurve.first?[2] == 0.12, "the target ramps: update 25 (24 done) of 100 warm-up updates → 0.5 · 0.24")
        #expect(sparsityCurve.last?[2] == 0.5)
        let losses = try #require(metrics["loss_curve"] as? [[Double]])
        #expect(losses.count == 12 && losses.allSatisfy { $0.count == 6 })
        #expect((metrics["mask_history"] as? [Any])?.count == 12)
        #expect((metrics["dev_curve"] as? [Any])?.count == 2)
        #expect((metrics["finetune_loss_curve"] as? [Any])?.isEmpty == false)
        for key in ["pruned_dev_accuracy", "dev_accuracy", "teacher_dev_accuracy", "lambda1", "lambda2"] {
            #expect(metrics[key] is Double, "missing \(key) in \(metrics)")
        }
        #expect((metrics["dev_accuracy"] as? Double ?? 0) >= 0.8, "\(metrics)")

        // The saved model: dense, smaller, its sizes recorded in its config.
        let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "pruned", output: "model")
        try ModelArtifact(directory: directory).verify()
        let pruned = try BertModel(directory: directory)
        let heads = try #require(metrics["layer_heads"] as? [Int])
        let units = try #require(metrics["layer_ffn_units"] as? [Int])
        #expect(pruned.layerShapes.map(\.heads) == heads)
        #expect(pruned.layerShapes.map(\.intermediateSize) == units)
        #expect(pruned.config.layerShapes == pruned.layerShapes)
        #expect(pruned.config.hiddenSize == metrics["hidden_size"] as? Int)
        #expect(pruned.config.headDimension == 8)
        #expect(heads.reduce(0, +) * 8 * 4 * pruned.config.hiddenSize + units.reduce(0, +) * 2 * pruned.config.hiddenSize == remaining)
        #expect(pruned.config.hiddenSize < 32 || heads.reduce(0, +) < 12 || units.reduce(0, +) < 192)
        #expect(pruned.weights.layers[0].query.weight.shape == [heads[0] * 8, pruned.config.hiddenSize])
        #expect(pruned.config.labels == ["0", "1"])

        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        #expect(eval["pruned.parameters"] as? Int == metrics["parameters"] as? Int)
        #expect((eval["pruned.parameters"] as? Int ?? .max) < eval["teacher.parameters"] as? Int ?? 0)
        #expect((eval["pruned.accuracy"] as? Double ?? 0) >= 0.8, "\(eval)")
        #expect((eval["pruned.speedup_b32_t16"] as? Double ?? 0) > 0, "the speedup is measured: \(eval)")
        #expect(eval["teacher.speedup_b32_t16"] as? Double == 1)
        #expect(eval["tuned.parameters"] as? Int == metrics["parameters"] as? Int, "train/finetune keeps the pruned shapes")
    }

    @Test func sameSeedGivesTheSamePrunedModel() throws {
        let prune = Self.defaultPrune
            .replacingOccurrences(of: "      steps: 300\n", with: "      steps: 40\n")
            .replacingOccurrences(of: "      lagrangian_warmup_steps: 100\n", with: "      lagrangian_warmup_steps: 20\n")
            .replacingOccurrences(of: "      units: [heads, ffn_units, hidden]\n", with: "")
        let project = try Self.makeProject("cofi-deterministic", recipe: Self.recipe(prune: prune))
        let first = try project.run(timeout: 600)
        #expect(first.status == 0, "\(first)")
        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache2")), timeout: 600)
        #expect(second.status == 0, "\(second)")
        #expect(!second.stderr.contains("pruned: cached"), "the second run must prune again: \(second)")
        let digest = try #require(try project.modelDigest(first, stage: "pruned"))
        #expect(try project.modelDigest(second, stage: "pruned") == digest, "same seed: identical pruned models")
        let log = project.read("runs/\(first.runID ?? "")/logs/pruned.log") ?? ""
        #expect(log.contains("units [\"heads\", \"ffn_units\", \"hidden\", \"layers\"]"), "all units by default: \(log)")
    }

    @Test(arguments: [
        ("      target_sparsity: 0.5\n", "      target_sparsity: 1.0\n", "`target_sparsity` must be in [0, 1), got 1.0"),
        ("      target_sparsity: 0.5\n", "      target_sparsity: -0.1\n", "`target_sparsity` must be in [0, 1)"),
        ("      target_sparsity: 0.5\n", "", "missing required parameter"),
        ("      units: [heads, ffn_units, hidden]\n", "      units: [heads, ffn_unit]\n", "did you mean `ffn_units`?"),
        ("      units: [heads, ffn_units, hidden]\n", "      units: []\n", "`units` is empty"),
        ("      lagrangian_warmup_steps: 100\n", "      lagrangian_warmup_steps: 100\n      lagrangian_warmup_ratio: 0.2\n", "not both"),
        ("      mask_lr: 0.1\n", "      mask_lr: 0\n", "`mask_lr` must be positive"),
        ("      lambda_lr: 0.1\n", "      lambda_lr: 0.1\n      teacher_layers: [2, 1]\n", "`teacher_layers` must be strictly increasing"),
    ])
    func badParametersAreRecipeErrors(line: String, replacement: String, message: String) throws {
        let recipe = Self.recipe()
        #expect(recipe.contains(line))
        let project = try Self.makeProject("cofi-bad", recipe: recipe.replacingOccurrences(of: line, with: replacement))
        try project.expectInvalidRecipe(message)
    }

    /// Problems only the models reveal stop the stage before any update.
    @Test(arguments: [
        ("      teacher: ${teacher.model}\n", "      teacher: ${three.model}\n",
         "the teacher's labels [\"0\", \"1\", \"2\"] differ from the dataset's [\"0\", \"1\"]"),
        ("      teacher: ${teacher.model}\n", "      teacher: ${teacher.model}\n      student: ${narrow.model}\n",
         "the student's hidden size 16 differs from the teacher's 32"),
        ("      lambda_lr: 0.1\n", "      lambda_lr: 0.1\n      teacher_layers: [0, 5]\n", "teacher layer 5 does not exist"),
    ])
    func badModelsFailBeforeTraining(line: String, replacement: String, message: String) throws {
        let models = """
              three:
                uses: model/import
                with:
                  directory: three
              narrowbase:
                uses: model/import
                with:
                  directory: narrow
              narrow:
                uses: train/finetune
                with:
                  model: ${narrowbase.model}
                  data: ${data.dataset}
                  steps: 1
                  max_seq_len: 16
            """
        let recipe = Self.recipe(extraStages: models).replacingOccurrences(of: "      epochs: 6\n", with: "      steps: 2\n")
        #expect(recipe.contains(line))
        let project = try Self.makeProject("cofi-bad-models", recipe: recipe.replacingOccurrences(of: line, with: replacement))
        try TinySentiment.writeCheckpoint(at: project.url("recipe/three"), labels: ["0", "1", "2"], classifier: true)
        try TinySentiment.writeCheckpoint(at: project.url("recipe/narrow"), labels: ["0", "1"], classifier: false)
        try project.expectFailureBeforeTraining(stage: "pruned", message)
    }
}
