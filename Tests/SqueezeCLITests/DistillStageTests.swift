import Foundation
import SqueezeCompress
import SqueezeModels
import Testing

/// `distill/kd` and `model/select-layers` end to end through the CLI: a tiny
/// teacher (TinySentiment's 2-layer BERT, fine-tuned on the tiny
/// sentiment task) distilled into a 1-layer student.
@Suite struct DistillStageTests {
    static let defaultDistill = """
              init: {from: teacher, layers: [0]}
              epochs: 6
              batch_size: 8
              lr: 3.0e-3
              max_seq_len: 16
              warmup_ratio: 0.1
              eval_every: 10
              log_every: 5
              temperature: 2.0
              alpha_start: 0.9
              alpha_end: 0.3
              hidden_loss_weight: 0.5
        """

    static func recipe(distill: String = defaultDistill, extraStages: String = "", teacherLength: String = "epochs: 6") -> String {
        TinySentiment.recipe(name: "tiny-distill", stages: """
        \(TinySentiment.teacherStage(length: teacherLength, extra: "eval_every: 10"))
          student:
            uses: distill/kd
            with:
              teacher: ${teacher.model}
              data: ${data.dataset}
        \(distill)
        \(extraStages)
        """)
    }

    static func makeProject(_ name: String, recipe: String = recipe()) throws -> Project {
        try TinySentiment.makeProject(name, recipe: recipe)
    }

    @Test func distilledStudentLearnsAndLoadsEverywhere() throws {
        let extra = """
              truncated:
                uses: model/select-layers
                with:
                  model: ${teacher.model}
                  layers: [0]
              plain:
                uses: train/finetune
                with:
                  model: ${truncated.model}
                  data: ${data.dataset}
                  steps: 5
                  max_seq_len: 16
              eval:
                uses: eval/classification
                with:
                  models:
                    teacher: ${teacher.model}
                    student: ${student.model}
                    plain: ${plain.model}
                  data: ${data.dataset}
                  latency_samples: 0
                  speed_repeats: 0
            """
        let project = try Self.makeProject("distill-learns", recipe: Self.recipe(extraStages: extra))
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")

        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "student")
        #expect(metrics["steps"] as? Int == 120)
        #expect(metrics["student_layers"] as? Int == 1)
        #expect((metrics["dev_accuracy"] as? Double ?? 0) >= 0.9, "\(metrics)")
        #expect((metrics["teacher_dev_accuracy"] as? Double ?? 0) >= 0.9, "\(metrics)")
        let parts = try #require(metrics["loss_parts_curve"] as? [[Any]])
        #expect(parts.count == 24)
        #expect(parts.allSatisfy { $0.count == 5 && $0[3] is Double && $0[4] is NSNull }, "hidden loss recorded, no attention loss: \(parts.prefix(2))")
        let curve = try #require(metrics["loss_curve"] as? [[Double]])
        let first = try #require(curve.first?.last)
        let last = try #require(curve.last?.last)
        #expect(last < first, "loss \(first) → \(last)")
        for key in ["train_distillation_loss", "train_ce_loss", "train_hidden_loss"] {
            #expect(metrics[key] is Double, "missing \(key) in \(metrics)")
        }
        let studentParameters = try #require(metrics["student_parameters"] as? Int)
        let teacherParameters = try #require(metrics["teacher_parameters"] as? Int)
        #expect(studentParameters < teacherParameters)

        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        #expect((eval["student.accuracy"] as? Double ?? 0) >= 0.9, "\(eval)")
        #expect(eval["student.parameters"] as? Int == studentParameters)

        let studentDirectory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "student", output: "model")
        try ModelArtifact(directory: studentDirectory).verify()
        let student = try BertModel(directory: studentDirectory)
        #expect(student.config.numHiddenLayers == 1)
        #expect(student.config.labels == ["0", "1"])
        #expect(student.weights.names.allSatisfy { !$0.contains("projection") }, "the projection is dropped")

        // model/select-layers builds the same starting point as `init: {from: teacher}`.
        let teacher = try BertModel(directory: try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "teacher", output: "model"))
        let truncated = try BertModel(directory: try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "truncated", output: "model"))
        let expected = try teacher.selectingLayers([0])
        #expect(truncated.weights.names == expected.weights.names)
        #expect(truncated.weights.elements.map(\.floats) == expected.weights.elements.map(\.floats))
    }

    @Test func sameSeedGivesTheSameStudentAndCachedTeacherWorks() throws {
        // A random, narrower student (hidden 8 against 16: a random projection) learning from scratch.
        let distill = Self.defaultDistill
            .replacingOccurrences(
                of: "      init: {from: teacher, layers: [0]}",
                with: "      init: {from: config, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16}")
            .replacingOccurrences(of: "      hidden_loss_weight: 0.5", with: "      hidden_loss_weight: 0.5\n      loss: mse")
        let project = try Self.makeProject("distill-deterministic", recipe: Self.recipe(distill: distill))
        let first = try project.run(timeout: 600)
        #expect(first.status == 0, "\(first)")
        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache2")), timeout: 600)
        #expect(second.status == 0, "\(second)")
        #expect(!second.stderr.contains("student: cached"), "the second run must distil again: \(second)")
        // The random student learns to match the teacher's hidden states through the projection.
        let firstMetrics = try ModelStagesTests.metrics(project, runID: first.runID, stage: "student")
        let parts = try #require(firstMetrics["loss_parts_curve"] as? [[Any]])
        let firstHidden = try #require(parts.first?[3] as? Double)
        let lastHidden = try #require(parts.last?[3] as? Double)
        #expect(lastHidden < firstHidden * 0.7, "hidden loss \(firstHidden) → \(lastHidden)")
        #expect(firstMetrics["student_parameters"] as? Int ?? .max < firstMetrics["teacher_parameters"] as? Int ?? 0)
        let firstDigest = try #require(try project.modelDigest(first, stage: "student"))
        #expect(try project.modelDigest(second, stage: "student") == firstDigest, "same seed: identical students")

        // The teacher's logits cached once: same teacher (a cache hit), a student from its first layer.
        let cachedRecipe = Self.recipe(
            distill: Self.defaultDistill.replacingOccurrences(of: "      hidden_loss_weight: 0.5", with: "      cache_teacher: true"))
        _ = try project.write("recipe/cached.yaml", cachedRecipe)
        let cached = try project.run("recipe/cached.yaml", timeout: 600)
        #expect(cached.stderr.contains("teacher: cached"), "\(cached)")
        #expect(cached.status == 0, "\(cached)")
        let metrics = try ModelStagesTests.metrics(project, runID: cached.runID, stage: "student")
        #expect((metrics["dev_accuracy"] as? Double ?? 0) >= 0.9, "\(metrics)")
        #expect(try project.modelDigest(cached, stage: "student") != nil)
    }

    @Test(arguments: [
        ("      init: {from: teacher, layers: [0]}\n", "", "`distill/kd` needs `student` or `init`"),
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teacher, layers: [0]}\n      student: ${base.model}\n", "give either `student` or `init`, not both"),
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teachr, layers: [0]}\n", "did you mean `teacher`?"),
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teacher, layers: [1, 0]}\n", "`layers` must be in increasing order"),
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teacher, layers: [0, 0]}\n", "layer 0 is listed twice"),
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teacher}\n", "needs `layers`"),
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teacher, layer: [0]}\n", "unknown key `layer` in `init`"),
        ("      temperature: 2.0\n", "      temperature: 0\n", "`temperature` must be positive"),
        ("      alpha_end: 0.3\n", "      alpha_end: 1.5\n", "`alpha_end` must be between 0 and 1"),
        ("      alpha_end: 0.3\n", "      alpha_end: 0.3\n      alpha: 0.5\n", "give either `alpha` or `alpha_start`/`alpha_end`"),
        ("      alpha_end: 0.3\n", "", "`alpha_start` and `alpha_end` go together"),
        ("      hidden_loss_weight: 0.5\n", "      hidden_loss_weight: 0.5\n      cache_teacher: true\n", "`cache_teacher` keeps only the teacher's logits"),
        ("      hidden_loss_weight: 0.5\n", "      hidden_loss_weight: 0.5\n      layer_map: [[0, 1, 2]]\n", "`[student, teacher]` pair"),
        ("      hidden_loss_weight: 0.5\n", "      hidden_loss_weight: 0.5\n      loss: kld\n", "expected one of \"kl\" | \"mse\""),
        ("      hidden_loss_weight: 0.5\n", "      attention_loss_weight: 0.5\n      cache_teacher: true\n",
         "the attention loss needs its attention scores every step"),
        ("      hidden_loss_weight: 0.5\n", "      attention_loss_weight: -1\n", "`attention_loss_weight` must not be negative, got -1"),
    ])
    func badParametersAreRecipeErrors(line: String, replacement: String, message: String) throws {
        let recipe = Self.recipe()
        #expect(recipe.contains(line))
        let project = try Self.makeProject("distill-bad", recipe: recipe.replacingOccurrences(of: line, with: replacement))
        try project.expectInvalidRecipe(message)
    }

    /// Problems only the models reveal stop the stage before any update.
    @Test(arguments: [
        ("      init: {from: teacher, layers: [0]}\n", "      init: {from: teacher, layers: [0, 5]}\n",
         "layer 5 does not exist: the teacher has 2 layers (0…1)"),
        ("      init: {from: teacher, layers: [0]}\n",
         "      init: {from: config, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2}\n      hidden_projection: none\n",
         "the student's hidden size 32 differs from the teacher's 16"),
        ("      hidden_loss_weight: 0.5\n", "      hidden_loss_weight: 0.5\n      layer_map: [[0, 3]]\n",
         "layer map pair [0, 3]: the teacher has 2 layers"),
        ("      teacher: ${teacher.model}\n", "      teacher: ${headless.model}\n", "the teacher has no classifier head"),
        ("      teacher: ${teacher.model}\n", "      teacher: ${three.model}\n", "the teacher's labels [\"0\", \"1\", \"2\"] differ from the dataset's [\"0\", \"1\"]"),
        ("      init: {from: teacher, layers: [0]}\n", "      student: ${three.model}\n", "the student's labels [\"0\", \"1\", \"2\"] differ from the dataset's [\"0\", \"1\"]"),
    ])
    func badModelsFailBeforeTraining(line: String, replacement: String, message: String) throws {
        let models = """
              three:
                uses: model/import
                with:
                  directory: three
              headless:
                uses: model/import
                with:
                  directory: headless
            """
        let recipe = Self.recipe(extraStages: models, teacherLength: "steps: 2")
        #expect(recipe.contains(line))
        let project = try Self.makeProject("distill-bad-models", recipe: recipe.replacingOccurrences(of: line, with: replacement))
        try TinySentiment.writeCheckpoint(at: project.url("recipe/three"), labels: ["0", "1", "2"], classifier: true)
        try TinySentiment.writeCheckpoint(at: project.url("recipe/headless"), labels: ["0", "1"], classifier: false)
        try project.expectFailureBeforeTraining(stage: "student", message)
    }

    /// A random 1-layer student (2 heads) learns the attention scores of the
    /// teacher's last layer (2 heads; the default layer map [[0, 1]]).
    @Test func attentionLossFallsEndToEnd() throws {
        let distill = Self.defaultDistill
            .replacingOccurrences(
                of: "      init: {from: teacher, layers: [0]}",
                with: "      init: {from: config, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16}")
            .replacingOccurrences(of: "      hidden_loss_weight: 0.5", with: "      attention_loss_weight: 1.0")
        let project = try Self.makeProject("distill-attention", recipe: Self.recipe(distill: distill))
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "student")
        let parts = try #require(metrics["loss_parts_curve"] as? [[Any]])
        #expect(parts.count == 24)
        #expect(parts.allSatisfy { $0.count == 5 && $0[3] is NSNull && $0[4] is Double }, "attention loss recorded, no hidden loss: \(parts.prefix(2))")
        let firstAttention = try #require(parts.first?[4] as? Double)
        let lastAttention = try #require(parts.last?[4] as? Double)
        #expect(lastAttention < firstAttention * 0.7, "attention loss \(firstAttention) → \(lastAttention)")
        #expect(metrics["train_attention_loss"] is Double, "\(metrics)")
        #expect(metrics["train_hidden_loss"] is NSNull, "\(metrics)")
        let log = project.read("runs/\(result.runID ?? "")/logs/student.log") ?? ""
        #expect(log.contains("attention loss weight 1.0 on [[0, 1]]"), "\(log)")
        #expect(log.contains(", attention "), "the loss lines show the attention part: \(log)")
    }

    /// Attention scores are compared head for head: layers whose head counts
    /// differ, or that have no heads, stop the stage before any update.
    @Test(arguments: [
        ("      hidden_loss_weight: 0.5\n", "      attention_loss_weight: 1\n",
         "`attention_loss_weight`: student layer 0 has 4 attention heads but teacher layer 1, its pair in the layer map, has 2"),
        ("      init: {from: teacher, layers: [0]}\n", "      student: ${noheads.model}\n      attention_loss_weight: 1\n",
         "student layer 0 (layer map pair [0, 1]) has no attention heads left"),
    ])
    func badAttentionSetupsFailBeforeTraining(line: String, replacement: String, message: String) throws {
        let models = """
              noheads:
                uses: model/import
                with:
                  directory: noheads
            """
        let recipe = Self.recipe(extraStages: models, teacherLength: "steps: 2")
        #expect(recipe.contains(line))
        let project = try Self.makeProject("distill-bad-attention", recipe: recipe.replacingOccurrences(of: line, with: replacement))
        try TinySentiment.writeRandomBert(
            at: project.url("recipe/noheads"), config: TinySentiment.config(hidden: 16, layers: 1, heads: 4, intermediate: 32, labels: ["0", "1"]),
            layerShapes: [BertLayerShape(heads: 0, intermediateSize: 32)], seed: 9)
        try project.expectFailureBeforeTraining(stage: "student", message)
    }
}
