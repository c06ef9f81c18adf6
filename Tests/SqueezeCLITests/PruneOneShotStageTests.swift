import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeModelsTestSupport
import Testing

/// `prune/oneshot` end to end through the CLI on the tiny random BERT of the
/// sentiment task (input widths 16, 8, 32 and 24): each method, unstructured
/// and 2:4, global magnitude and OWL; the masks in the artifact; the same
/// seed giving the same bits; bad parameters at their recipe position and
/// problems only the model or data reveal before any work.
@Suite struct PruneOneShotStageTests {
    static let calibration = "{split: train, samples: 32, seq_len: 16, batch_size: 8}"

    static func prune(_ name: String, method: String, target: String, extra: String = "") -> String {
        """
          \(name):
            uses: prune/oneshot
            with:
              model: ${base.model}
              data: ${data.dataset}
              method: \(method)
              \(target)
              calibration: \(calibration)
        """ + (extra.isEmpty ? "" : "\n      " + extra)
    }

    static let stages = [
        prune("magnitude24", method: "magnitude", target: "pattern: \"2:4\""),
        prune("wanda24", method: "wanda", target: "pattern: \"2:4\""),
        prune("sparsegpt24", method: "sparsegpt", target: "pattern: \"2:4\"", extra: "blocksize: 8"),
        prune("sparsegpt50", method: "sparsegpt", target: "sparsity: 0.5"),
        prune("wanda48", method: "wanda", target: "pattern: \"4:8\"", extra: "include: [intermediate.dense, output.dense]\n      skip: [attention.output.dense]"),
        prune("global", method: "magnitude", target: "sparsity: 0.6", extra: "scope: global"),
        prune("owl", method: "wanda", target: "sparsity: 0.5", extra: "allocation: owl\n      owl_lambda: 0.1\n      owl_threshold: 2"),
        prune("further", method: "wanda", target: "sparsity: 0.75").replacingOccurrences(of: "${base.model}", with: "${sparsegpt24.model}"),
    ].joined(separator: "\n")

    static func model(_ project: Project, _ runID: String?, _ stage: String) throws -> BertModel {
        let directory = try ModelStagesTests.outputDirectory(project, runID: runID, stage: stage, output: "model")
        try ModelArtifact(directory: directory).verify()
        return try BertModel(directory: directory)
    }

    static func report(_ project: Project, _ runID: String?, _ stage: String) throws -> [String: Any] {
        let path = try ModelStagesTests.outputDirectory(project, runID: runID, stage: stage, output: "report")
            .replacingOccurrences(of: "/cache/trees/", with: "/cache/objects/")
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// Non-zeros in every group of `m` consecutive weights of each row.
    static func groupCounts(_ weight: [Float], m: Int) -> Set<Int> {
        Set(stride(from: 0, to: weight.count, by: m).map { start in weight[start..<(start + m)].filter { $0 != 0 }.count })
    }

    @Test func everyMethodPrunesRecordsItsMasksAndReports() throws {
        let project = try TinySentiment.makeProject("oneshot", recipe: TinySentiment.recipe(name: "tiny-oneshot", stages: Self.stages))
        let result = try project.run(timeout: 900)
        #expect(result.status == 0, "\(result)")
        let base = try BertModel(directory: project.path("recipe/tiny"))
        let layers = base.linearBlocks.flatMap(\.layers)
        #expect(Set(layers.map(\.inFeatures)) == [16, 8, 32, 24])

        for stage in ["magnitude24", "wanda24", "sparsegpt24"] {
            let model = try Self.model(project, result.runID, stage)
            #expect(model.keepsItsMasks, "\(stage)")
            for layer in layers {
                let mask = try #require(model.linearMasks[layer.name], "\(stage): \(layer.name) has a mask")
                #expect(mask.pattern == .nOfM(n: 2, m: 4))
                let weight = try model.linearWeight(layer.name).floats
                #expect(Self.groupCounts(weight, m: 4) == [2], "\(stage): \(layer.name) keeps exactly 2 of every 4")
            }
            #expect(model.linearMasks["classifier"] == nil && model.linearMasks["pooler.dense"] == nil)
            let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: stage)
            #expect(metrics["realised_sparsity"] as? Double == 0.5 && metrics["pattern"] as? String == "2:4", "\(metrics)")
            #expect(metrics["pruned_layers"] as? Int == layers.count, "\(metrics)")
            let file = try SafetensorsFile(
                path: try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: stage, output: "model") + "/model.safetensors")
            #expect(file.entries["bert.encoder.layer.0.intermediate.dense.weight.sparse_mask"] != nil, "\(stage) is stored sparse")
        }
        let magnitude = try Self.model(project, result.runID, "magnitude24")
        let sparseGPT = try Self.model(project, result.runID, "sparsegpt24")
        let wanda = try Self.model(project, result.runID, "wanda24")
        let name = "encoder.layer.1.intermediate.dense"
        #expect(try magnitude.linearWeight(name).floats != sparseGPT.linearWeight(name).floats, "SparseGPT updates the kept weights")
        #expect(try magnitude.linearMasks[name] != wanda.linearMasks[name], "Wanda's metric chooses other weights")
        // Magnitude and Wanda keep the original values; SparseGPT changes them.
        let original = try base.linearWeight(name).floats
        let kept = try magnitude.linearWeight(name).floats
        #expect(zip(original, kept).allSatisfy { $1 == 0 || $0 == $1 })

        let report = try Self.report(project, result.runID, "sparsegpt24")
        let entries = try #require(report["layers"] as? [[String: Any]])
        #expect(entries.count == layers.count)
        #expect(entries.allSatisfy { ($0["relative_error"] as? Double).map { $0 > 0 && $0 < 1 } == true }, "\(entries)")
        #expect(entries.allSatisfy { $0["sparsity"] as? Double == 0.5 && $0["target"] as? String == "2:4" })
        let magnitudeReport = try Self.report(project, result.runID, "magnitude24")
        #expect((magnitudeReport["layers"] as? [[String: Any]])?.allSatisfy { $0["relative_error"] is NSNull } == true, "magnitude calibrates nothing")
        #expect(magnitudeReport["calibration"] is NSNull)

        let unstructured = try ModelStagesTests.metrics(project, runID: result.runID, stage: "sparsegpt50")
        #expect(unstructured["realised_sparsity"] as? Double == 0.5, "\(unstructured)")

        let partial = try Self.model(project, result.runID, "wanda48")
        #expect(Set(partial.linearMasks.keys) == ["encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense",
            "encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense"])
        for (layer, mask) in partial.linearMasks {
            #expect(mask.pattern == .nOfM(n: 4, m: 8))
            #expect(Self.groupCounts(try partial.linearWeight(layer).floats, m: 8) == [4], "\(layer)")
        }

        let global = try ModelStagesTests.metrics(project, runID: result.runID, stage: "global")
        let globalSparsity = try #require(global["realised_sparsity"] as? Double)
        #expect(abs(globalSparsity - 0.6) < 0.001, "\(global)")
        let globalLayers = try #require(Self.report(project, result.runID, "global")["layers"] as? [[String: Any]])
        #expect(Set(globalLayers.compactMap { $0["sparsity"] as? Double }).count > 1, "one threshold, different layer sparsities")

        // A masked input keeps its zeros: they count toward the new target.
        let further = try Self.model(project, result.runID, "further")
        #expect(further.keepsItsMasks)
        for layer in layers {
            let before = try #require(sparseGPT.linearMasks[layer.name])
            let after = try #require(further.linearMasks[layer.name])
            #expect((0..<before.elementCount).allSatisfy { before.isKept($0) || !after.isKept($0) }, "\(layer.name) keeps the 2:4 zeros")
            #expect(after.keptCount * 4 == after.elementCount, "\(layer.name): 75% pruned")
        }
        let furtherMetrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "further")
        #expect(furtherMetrics["kept_prior_masks"] as? Int == layers.count && furtherMetrics["realised_sparsity"] as? Double == 0.75, "\(furtherMetrics)")

        let owl = try Self.report(project, result.runID, "owl")
        let summary = try #require(owl["summary"] as? [String: Any])
        let blocks = try #require(summary["block_sparsities"] as? [Double])
        #expect(blocks.count == 2 && abs(blocks.reduce(0, +) / 2 - 0.5) < 1e-9, "\(summary)")
        #expect(summary["block_outlier_ratios"] is [Double], "\(summary)")
    }

    /// Two runs into two caches: the pruned and the GPTQ artifacts (and reports) are identical.
    @Test func sameSeedGivesTheSameBitsAndMagnitudeSkipsCalibration() throws {
        let stages = [
            Self.prune("sparsegpt24", method: "sparsegpt", target: "pattern: \"2:4\""),
            """
              magnitude:
                uses: prune/oneshot
                with:
                  model: ${base.model}
                  method: magnitude
                  sparsity: 0.7
              gptq:
                uses: quantize/gptq
                with:
                  model: ${sparsegpt24.model}
                  data: ${data.dataset}
                  bits: 4
                  group_size: 8
                  act_order: true
                  calibration: \(Self.calibration)
            """,
        ].joined(separator: "\n")
        let project = try TinySentiment.makeProject("oneshot-digest", recipe: TinySentiment.recipe(name: "tiny-oneshot", stages: stages))
        let first = try project.run(timeout: 600)
        #expect(first.status == 0, "\(first)")
        let second = try project.squeeze(["run", "recipe/recipe.yaml"] + project.storage(cache: project.path("cache2")), timeout: 600)
        #expect(second.status == 0, "\(second)")
        #expect(!second.stderr.contains("sparsegpt24: cached"), "the second run prunes again: \(second)")
        let record = try project.record(of: first)
        let again = try project.record(of: second)
        for stage in ["sparsegpt24", "magnitude", "gptq"] {
            for output in ["model", "report"] {
                let digest = try #require(record.stage(stage)?.outputs[output]?.raw)
                #expect(again.stage(stage)?.outputs[output]?.raw == digest, "same inputs, same \(stage) \(output)")
            }
        }
        let log = project.read("runs/\(first.runID ?? "")/logs/magnitude.log") ?? ""
        #expect(log.contains("no calibration"), "\(log)")
        let metrics = try ModelStagesTests.metrics(project, runID: first.runID, stage: "magnitude")
        #expect(metrics["calibration_tokens"] as? Int == 0, "\(metrics)")
        let realised = try #require(metrics["realised_sparsity"] as? Double)
        #expect(abs(realised - 0.7) < 0.01, "\(metrics)")
    }

    @Test(arguments: [
        ("method: wandaa\n      sparsity: 0.5", "did you mean `wanda`"),
        ("method: magnitude\n      sparsity: 1.0", "`sparsity` must be in [0, 1), got 1.0"),
        ("method: magnitude\n      sparsity: -0.1", "`sparsity` must be in [0, 1)"),
        ("method: magnitude\n      pattern: \"4:2\"", "`pattern` 4:2 must keep 0 < N < M"),
        ("method: magnitude\n      pattern: \"2-4\"", "`pattern` must be N:M (two integers), got `2-4`"),
        ("method: magnitude\n      pattern: \"0:4\"", "`pattern` 0:4 must keep 0 < N < M"),
        ("method: magnitude", "give the target: `sparsity` (unstructured), `pattern` (N:M) or `layer_sparsity`"),
        ("method: magnitude\n      sparsity: 0.5\n      pattern: \"2:4\"", "give one of `sparsity`, `pattern` and `layer_sparsity`"),
        ("method: wanda\n      data: ${data.dataset}\n      sparsity: 0.5\n      scope: global", "`scope: global` is for `method: magnitude`"),
        ("method: magnitude\n      pattern: \"2:4\"\n      scope: global", "`scope: global` needs an unstructured `sparsity`"),
        ("method: wanda\n      sparsity: 0.5", "`method: wanda` needs calibration data: give `data`"),
        ("method: wanda\n      data: ${data.dataset}\n      pattern: \"2:4\"\n      allocation: owl", "`allocation: owl` spreads an unstructured `sparsity`"),
        ("method: magnitude\n      layer_sparsity: [0.5, 1.5]", "every `layer_sparsity` must be in [0, 1), got 1.5"),
        ("method: sparsegpt\n      data: ${data.dataset}\n      sparsity: 0.5\n      percdamp: -1", "`percdamp` must not be negative"),
        ("method: sparsegpt\n      data: ${data.dataset}\n      sparsity: 0.5\n      blocksize: 0", "`blocksize` must be at least 1"),
        ("method: sparsegpt\n      data: ${data.dataset}\n      sparsity: 0.5\n      calibration: {sample: 8}", "unknown key `sample` in `calibration`"),
        ("method: sparsegpt\n      data: ${data.dataset}\n      sparsity: 0.5\n      calibration: {seq_len: 2}", "`calibration.seq_len` must be at least 3"),
        ("method: magnitude\n      sparsity: 0.5\n      include: [\"\"]", "an empty `include` pattern matches nothing"),
    ])
    func badParametersAreRecipeErrors(with: String, message: String) throws {
        let stage = "  pruned:\n    uses: prune/oneshot\n    with:\n      model: ${base.model}\n      \(with)"
        let project = try TinySentiment.makeProject("oneshot-bad", recipe: TinySentiment.recipe(name: "tiny-oneshot", stages: stage))
        try project.expectInvalidRecipe(message)
    }

    /// Problems only the model or the data reveal stop the stage before any forward pass.
    @Test func modelAndDataProblemsFailBeforeAnyWork() throws {
        let stages = [
            Self.prune("wide", method: "sparsegpt", target: "pattern: \"2:16\""),
            Self.prune("nothing", method: "wanda", target: "sparsity: 0.5", extra: "include: [layer.7.*]"),
            Self.prune("typo", method: "magnitude", target: "sparsity: 0.5", extra: "include: [layer.0.*, qeury]"),
            Self.prune("skipall", method: "wanda", target: "sparsity: 0.5", extra: "skip: [\"*\"]"),
            Self.prune("blocks", method: "magnitude", target: "layer_sparsity: [0.5, 0.5, 0.5]"),
            """
              few:
                uses: prune/oneshot
                with:
                  model: ${base.model}
                  data: ${data.dataset}
                  method: sparsegpt
                  sparsity: 0.5
                  calibration: {split: dev, samples: 100}
              quantized:
                uses: quantize/weight-only
                with:
                  model: ${base.model}
                  weights: {bits: 8, group_size: 8}
            """,
            Self.prune("again", method: "wanda", target: "sparsity: 0.5").replacingOccurrences(of: "${base.model}", with: "${quantized.model}"),
        ]
        let project = try TinySentiment.makeProject(
            "oneshot-fail", recipe: TinySentiment.recipe(name: "tiny-oneshot", stages: stages.joined(separator: "\n")))
        let result = try project.run("recipe/recipe.yaml", ["--keep-going"], timeout: 600)
        #expect(result.status == 1, "\(result)")
        // Each is reported at the recipe position of the parameter it is about.
        for (parameter, message) in [
            ("pattern", "`pattern` 2:16: M = 16 does not divide the input width 8 of `encoder.layer.1.attention.output.dense`"),
            ("include", "include pattern `layer.7.*` matches no linear layer"),
            ("include", "the include and skip patterns leave no linear layer to compress"),
            ("layer_sparsity", "`layer_sparsity` has 3 entries; the model has 2 encoder blocks"),
            ("calibration", "the calibration split `dev` has 40 examples, fewer than `calibration.samples` = 100"),
            ("model", "the model is already quantized (weight_only int8 g8"),
        ] {
            #expect(result.stderr.contains(message), "\(message): \(result)")
            let located = #"recipe\.yaml:\d+:\d+: `"# + parameter + "`: .*" + NSRegularExpression.escapedPattern(for: message)
            #expect(result.stderr.range(of: located, options: .regularExpression) != nil, "\(located) in \(result.stderr)")
        }
        // A pattern that matches nothing while another selects layers is a warning; the stage runs.
        #expect(result.stderr.contains("include pattern `qeury` matches no linear layer"), "\(result)")
        let typo = try ModelStagesTests.metrics(project, runID: result.runID, stage: "typo")
        #expect(typo["pruned_layers"] as? Int == 6, "\(typo)")
        for stage in ["wide", "nothing", "skipall", "blocks", "few", "again"] {
            let log = project.read("runs/\(result.runID ?? "")/logs/\(stage).log") ?? ""
            #expect(!log.contains("prune/oneshot:"), "\(stage) did no work: \(log)")
        }
    }
}
