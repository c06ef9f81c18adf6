import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeTensor
import Testing

/// `distill/kd` with a decoder teacher through the CLI: the tiny pipeline of
/// `DecoderStagesTests` (a BPE tokenizer, a `data/text` dataset, a 2-layer
/// Llama pre-trained by `train/causal-lm`) distilled into a 1-layer student
/// made of the teacher's second block, and into a Wanda-pruned copy of
/// itself, which keeps its zeros.
@Suite struct DecoderDistillStageTests {
    static let distill = """
          student:
            uses: distill/kd
            with:
              teacher: ${pretrain.model}
              data: ${text.dataset}
              init: {from: teacher, layers: [1]}
              steps: 40
              lr: 0.01
              batch_size: 8
              eval_every: 10
              log_every: 5
              temperature: 2.0
              alpha: 0.5
              hidden_loss_weight: 0.5
        """

    static func recipe(distill: String = distill, extraStages: String = "", pretrainSteps: Int = 60) -> String {
        """
        version: 1
        name: decoder-distill
        backend: cpu
        seed: 7
        stages:
          bpe:
            uses: tokenizer/train-bpe
            with: {files: [train.txt], vocab_size: 300}
          text:
            uses: data/text
            with: {tokenizer: "${bpe.tokenizer}", train: [train.txt], test: [test.txt], valid_fraction: 0.2, block_size: 16}
          pretrain:
            uses: train/causal-lm
            with:
              config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true}
              tokenizer: ${bpe.tokenizer}
              data: ${text.dataset}
              steps: \(pretrainSteps)
              lr: 0.01
              batch_size: 8
        \(distill)
        \(extraStages)
        """
    }

    static func makeProject(_ name: String, recipe: String) throws -> Project {
        let project = try Project(name)
        _ = try project.write("recipe/train.txt", DecoderStagesTests.text)
        _ = try project.write("recipe/test.txt", String(DecoderStagesTests.text.split(separator: "\n").reversed().joined(separator: "\n")))
        _ = try project.write("recipe/recipe.yaml", recipe)
        return project
    }

    @Test func distilledStudentBeatsItsStartAndAPrunedStudentKeepsItsZeros() throws {
        let pruned = """
              wanda:
                uses: prune/oneshot
                with: {model: "${pretrain.model}", data: "${text.dataset}", method: wanda, sparsity: 0.5, calibration: {samples: 8, seq_len: 16, batch_size: 4}}
              recovered:
                uses: distill/kd
                with:
                  teacher: ${pretrain.model}
                  data: ${text.dataset}
                  student: ${wanda.model}
                  steps: 10
                  lr: 0.005
                  batch_size: 8
                  log_every: 5
            """
        let project = try Self.makeProject("decoder-distill", recipe: Self.recipe(extraStages: pruned))
        let result = try project.run(timeout: 900)
        #expect(result.status == 0, "\(result)")

        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "student")
        #expect(metrics["steps"] as? Int == 40)
        #expect(metrics["student_layers"] as? Int == 1)
        let perplexity = try #require(metrics["valid_perplexity"] as? Double)
        let teacherPerplexity = try #require(metrics["teacher_valid_perplexity"] as? Double)
        #expect(perplexity.isFinite && perplexity > 1, "\(metrics)")
        #expect(teacherPerplexity.isFinite && teacherPerplexity > 1, "\(metrics)")
        #expect((metrics["valid_curve"] as? [Any])?.count == 4, "evaluations at 10, 20, 30 and 40: \(metrics)")
        let parts = try #require(metrics["loss_parts_curve"] as? [[Any]])
        #expect(parts.count == 8)
        #expect(parts.allSatisfy { $0.count == 5 && $0[1] is Double && $0[2] is Double && $0[3] is Double && $0[4] is NSNull }, "\(parts.prefix(2))")
        let curve = try #require(metrics["loss_curve"] as? [[Double]])
        let first = try #require(curve.first?.last)
        let last = try #require(curve.last?.last)
        #expect(last < first, "loss \(first) → \(last)")
        #expect((metrics["student_parameters"] as? Int ?? .max) < (metrics["teacher_parameters"] as? Int ?? 0), "\(metrics)")

        // The student before distillation: the teacher's second block alone, on the same windows.
        let teacherDirectory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "pretrain", output: "model")
        let datasetDirectory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "text", output: "dataset")
        let untrained = try DecoderModel(directory: teacherDirectory).selectingLayers([1])
        let valid = try TextTokenDataset(directory: datasetDirectory).tokens("valid")
        let before = try untrained.perplexity(
            of: valid, protocol: PerplexityProtocol(sequenceLength: 16, batchSize: 8), backend: CPUBackend(threads: 2)).perplexity
        #expect(perplexity < before, "distilled \(perplexity), untrained \(before), teacher \(teacherPerplexity)")

        let studentDirectory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "student", output: "model")
        try ModelArtifact(directory: studentDirectory).verify()
        let student = try ModelArtifact(directory: studentDirectory).decoderModel()
        #expect(student.config.numHiddenLayers == 1 && student.config.vocabSize == untrained.config.vocabSize)
        #expect(FileManager.default.fileExists(atPath: studentDirectory + "/tokenizer.json"))
        let log = project.read("runs/\(result.runID ?? "")/logs/student.log") ?? ""
        #expect(log.contains("hidden loss weight 0.5 on [[0, 1]]"), "\(log)")
        #expect(log.contains("teacher valid perplexity"), "\(log)")

        // Distilling into the pruned model: every pruned weight is still zero, the kept ones trained.
        let wanda = try DecoderModel(directory: try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "wanda", output: "model"))
        let recovered = try DecoderModel(directory: try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "recovered", output: "model"))
        #expect(!wanda.masks.isEmpty)
        #expect(recovered.masks == wanda.masks)
        var changed = false
        for (name, (before, after)) in zip(wanda.weights.names, zip(wanda.weights.elements, recovered.weights.elements)) {
            guard let mask = wanda.masks[name] else { continue }
            let values = after.floats
            #expect((0..<values.count).allSatisfy { mask.isKept($0) || values[$0] == 0 }, "\(name): a pruned weight moved")
            changed = changed || before.floats != values
        }
        #expect(changed, "the kept weights trained")
        let recoveredMetrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "recovered")
        #expect((recoveredMetrics["valid_perplexity"] as? Double)?.isFinite == true, "\(recoveredMetrics)")

        let second = try project.run(timeout: 300)
        #expect(second.status == 0 && second.stderr.contains("student: cached"), "\(second)")
    }

    /// A random, narrower student from a config (hidden 8 against 16: a
    /// random projection for the hidden loss; logit MSE) learns, keeps the
    /// teacher's family, vocabulary and rotary settings, and the same seed
    /// gives the same student in a fresh cache.
    @Test func aRandomStudentFromAConfigLearnsReproducibly() throws {
        let distill = Self.distill
            .replacingOccurrences(
                of: "      init: {from: teacher, layers: [1]}",
                with: "      init: {from: config, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16}")
            .replacingOccurrences(of: "      alpha: 0.5", with: "      alpha: 0.5\n      loss: mse")
        let project = try Self.makeProject("decoder-distill-config", recipe: Self.recipe(distill: distill))
        let first = try project.run(timeout: 600)
        #expect(first.status == 0, "\(first)")
        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache2")), timeout: 600)
        #expect(second.status == 0 && !second.stderr.contains("student: cached"), "\(second)")
        let digest = try #require(try project.modelDigest(first, stage: "student"))
        #expect(try project.modelDigest(second, stage: "student") == digest, "same seed: identical students")

        let metrics = try ModelStagesTests.metrics(project, runID: first.runID, stage: "student")
        let parts = try #require(metrics["loss_parts_curve"] as? [[Any]])
        let firstHidden = try #require(parts.first?[3] as? Double)
        let lastHidden = try #require(parts.last?[3] as? Double)
        #expect(lastHidden < firstHidden, "hidden loss \(firstHidden) → \(lastHidden)")
        let curve = try #require(metrics["valid_curve"] as? [[Double]])
        let perplexities = curve.map { $0[1] }
        #expect(perplexities.allSatisfy(\.isFinite) && (perplexities.last ?? .infinity) < (perplexities.first ?? 0), "\(curve)")

        let teacher = try DecoderModel(directory: try ModelStagesTests.outputDirectory(project, runID: first.runID, stage: "pretrain", output: "model"))
        let student = try DecoderModel(directory: try ModelStagesTests.outputDirectory(project, runID: first.runID, stage: "student", output: "model"))
        #expect(student.config.family == .llama && student.config.vocabSize == teacher.config.vocabSize)
        #expect(student.config.hiddenSize == 8 && student.config.numHiddenLayers == 1 && student.config.intermediateSize == 16)
        #expect(student.config.numAttentionHeads == 2 && student.config.numKeyValueHeads == 2 && student.config.headDimension == 4)
        #expect(student.config.positions == teacher.config.positions && student.config.tieWordEmbeddings)
    }

    /// Set-ups that cannot work stop the stage before any update, with the
    /// error at the parameter's line.
    @Test(arguments: [
        ("      init: {from: teacher, layers: [1]}\n", "      student: ${wide.model}\n", "student",
         "the student's vocabulary has 320 tokens"),
        ("      hidden_loss_weight: 0.5", "      attention_loss_weight: 1.0", "attention_loss_weight",
         "the attention-score loss is for BERT students"),
        ("      hidden_loss_weight: 0.5", "      cache_teacher: true", "cache_teacher",
         "`cache_teacher` is for BERT teachers"),
        ("      teacher: ${pretrain.model}\n", "      teacher: ${bert.model}\n", "data",
         "the teacher is a BERT classifier, which distils on a `data/text-classification` dataset"),
        ("      init: {from: teacher, layers: [1]}\n", "      init: {from: teacher, layers: [0, 2]}\n", "init",
         "layer 2 does not exist: the teacher has 2 layers (0…1)"),
        ("      init: {from: teacher, layers: [1]}\n", "      init: {from: config, hidden_size: 12, num_attention_heads: 8}\n", "init",
         "hidden_size 12 is not divisible by num_attention_heads 8"),
    ])
    func decoderMistakesFailBeforeTrainingAtTheirParameter(line: String, replacement: String, parameter: String, message: String) throws {
        let models = """
              wide:
                uses: train/causal-lm
                with:
                  config: {model_type: llama, vocab_size: 320, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 64}
                  tokenizer: ${bpe.tokenizer}
                  data: ${text.dataset}
                  steps: 1
              bert:
                uses: model/import
                with:
                  directory: bert
            """
        #expect(Self.distill.contains(line))
        let recipe = Self.recipe(distill: Self.distill.replacingOccurrences(of: line, with: replacement), extraStages: models, pretrainSteps: 2)
        let project = try Self.makeProject("decoder-distill-bad", recipe: recipe)
        try TinySentiment.writeCheckpoint(at: project.url("recipe/bert"), labels: ["0", "1"], classifier: true)
        try project.expectFailureBeforeTraining(stage: "student", message)
        let lines = recipe.components(separatedBy: "\n")
        let stage = try #require(lines.firstIndex { $0 == "  student:" })
        let line = try #require(lines[stage...].firstIndex { $0.hasPrefix("      \(parameter): ") }) + 1
        let result = try project.run(timeout: 300)
        #expect(result.stderr.contains("recipe.yaml:\(line):") && result.stderr.contains("`\(parameter)`: "), "the error names line \(line): \(result)")
    }

    /// The decoder-only `init` size is refused for a BERT student, at `init`.
    @Test func keyValueHeadsAreForDecoderStudents() throws {
        let distill = DistillStageTests.defaultDistill.replacingOccurrences(
            of: "      init: {from: teacher, layers: [0]}",
            with: "      init: {from: config, num_hidden_layers: 1, num_key_value_heads: 2}")
        let recipe = DistillStageTests.recipe(distill: distill, teacherLength: "steps: 2")
        let project = try DistillStageTests.makeProject("distill-bert-kv-heads", recipe: recipe)
        try project.expectFailureBeforeTraining(stage: "student", "`num_key_value_heads` is for decoder students")
        let lines = recipe.components(separatedBy: "\n")
        let line = try #require(lines.firstIndex { $0.hasPrefix("      init: {from: config") }) + 1
        let result = try project.run(timeout: 300)
        #expect(result.stderr.contains("recipe.yaml:\(line):") && result.stderr.contains("`init`: "), "the error names line \(line): \(result)")
    }
}
