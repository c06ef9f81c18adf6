import Foundation
import SqueezeModels
import SqueezeSupport
import Testing

/// `export/onnx` through the CLI: the export directory of an imported tiny
/// BERT, its manifest naming the source's store digest, a cached rerun, and
/// bad input (an opset the export cannot write, a kind it cannot express).
@Suite struct ExportONNXStageTests {
    static func export(_ name: String = "onnx", model: String = "${base.model}", extra: String = "") -> String {
        "  \(name):\n    uses: export/onnx\n    with:\n      model: \(model)" + extra
    }

    @Test func exportsTheModelWithItsTokenizerConfigAndManifestThenHitsTheCache() throws {
        let project = try TinySentiment.makeProject("export-onnx", recipe: TinySentiment.recipe(name: "tiny-onnx", stages: Self.export()))
        let first = try project.run(timeout: 120)
        #expect(first.status == 0, "\(first)")

        let directory = try ModelStagesTests.outputDirectory(project, runID: first.runID, stage: "onnx", output: "model")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(files == ["config.json", "model.onnx", "squeeze-export.json", "vocab.txt"], "\(files)")
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/squeeze-export.json"))) as? [String: Any])
        let source = try #require(manifest["source"] as? [String: Any])
        let baseDirectory = try ModelStagesTests.outputDirectory(project, runID: first.runID, stage: "base", output: "model")
        #expect(source["digest"] as? String == "sha256:" + URL(fileURLWithPath: baseDirectory).lastPathComponent, "\(source)")
        #expect(source["kind"] as? String == "dense" && source["architecture"] as? String == "bert", "\(source)")
        let listed = try #require(manifest["files"] as? [String: String])
        #expect(listed["model.onnx"] == (try Hashing.sha256(fileAt: directory + "/model.onnx").hex))
        #expect(listed["vocab.txt"] == (try ModelArtifact(directory: baseDirectory).manifest.files["vocab.txt"]))

        let metrics = try ModelStagesTests.metrics(project, runID: first.runID, stage: "onnx")
        #expect(metrics["opset"] as? Int == 17 && metrics["kind"] as? String == "dense", "\(metrics)")
        #expect(metrics["onnx_bytes"] as? Int == (try FileManager.default.attributesOfItem(atPath: directory + "/model.onnx")[.size] as? Int))
        #expect((metrics["onnx_nodes"] as? Int ?? 0) > 50, "\(metrics)")

        let second = try project.run(timeout: 120)
        #expect(second.status == 0, "\(second)")
        let record = try project.record(of: first)
        let again = try project.record(of: second)
        #expect(again.stage("onnx")?.status == "cached", "\(again.stages.map { "\($0.id): \($0.status)" })")
        #expect(again.stage("onnx")?.outputs == record.stage("onnx")?.outputs)
    }

    /// `destination:` gets a copy of the export after the run and after a
    /// cached rerun; a foreign non-empty folder is refused before any stage
    /// runs, at the parameter's position, with exit 2.
    @Test func theExportIsPublishedToItsDestinationAndAForeignFolderIsRefused() throws {
        let project = try TinySentiment.makeProject(
            "export-onnx-destination",
            recipe: TinySentiment.recipe(name: "tiny-onnx", stages: Self.export(extra: "\n      destination: ../deploy/onnx")))
        let first = try project.run(timeout: 120)
        #expect(first.status == 0, "\(first)")
        let published = project.path("deploy/onnx")
        let directory = try ModelStagesTests.outputDirectory(project, runID: first.runID, stage: "onnx", output: "model")
        #expect(FileManager.default.contents(atPath: published + "/model.onnx") == FileManager.default.contents(atPath: directory + "/model.onnx"))
        #expect(FileManager.default.fileExists(atPath: published + "/.squeeze-published.json"))

        try FileManager.default.removeItem(atPath: published)
        let cached = try project.run(timeout: 120)
        #expect(cached.status == 0, "\(cached)")
        #expect(try project.record(of: cached).stage("onnx")?.status == "cached")
        #expect(FileManager.default.fileExists(atPath: published + "/model.onnx"), "a cached rerun publishes again")

        try FileManager.default.removeItem(atPath: published)
        _ = try project.write("deploy/onnx/notes.txt", "mine")
        let refused = try project.run(timeout: 120)
        #expect(refused.status == 2, "\(refused)")
        #expect(refused.stderr.contains("recipe.yaml:19:20") && refused.stderr.contains("not empty"), "\(refused.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: published) == ["notes.txt"])
    }

    @Test(arguments: [("16", "`opset` must be 17…21, got 16"), ("22", "`opset` must be 17…21, got 22"), ("seventeen", "opset")])
    func anOpsetOutsideTheSupportedRangeIsARecipeError(opset: String, message: String) throws {
        let project = try TinySentiment.makeProject(
            "export-onnx-opset", recipe: TinySentiment.recipe(name: "tiny-onnx", stages: Self.export(extra: "\n      opset: \(opset)")))
        try project.expectInvalidRecipe(message)
        let result = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(result.status == 2)
        // The position of the value: line 19 of the recipe (the stage follows the two shared ones).
        #expect(result.stderr.contains("recipe.yaml:19:14"), "\(result)")
    }

    /// A weight-only model is a kind ONNX export does not express: the stage
    /// fails naming the kind, before writing anything.
    @Test func anArtifactKindTheExportCannotExpressFailsNamingIt() throws {
        let stages = [
            "  wo:\n    uses: quantize/weight-only\n    with:\n      model: ${base.model}\n      weights: {bits: 8, group_size: 8}",
            Self.export(model: "${wo.model}"),
        ]
        let project = try TinySentiment.makeProject(
            "export-onnx-kind", recipe: TinySentiment.recipe(name: "tiny-onnx", stages: stages.joined(separator: "\n")))
        let result = try project.run(timeout: 120)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("kind `weight_only`"), "\(result)")
        #expect(result.stderr.contains("which export/onnx cannot export"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:23:14"), "the error points at `model:`: \(result)")
        let record = try project.record(of: result)
        #expect(record.stage("onnx")?.status == "failed")
    }

    /// A dynamic int8 model goes through the int8 exporter: its manifest
    /// names the kind and the int8 details and guarantee.
    @Test func exportsAnInt8Model() throws {
        let stages = [
            "  int8:\n    uses: quantize/dynamic\n    with:\n      model: ${base.model}",
            Self.export(model: "${int8.model}"),
        ]
        let project = try TinySentiment.makeProject(
            "export-onnx-int8", recipe: TinySentiment.recipe(name: "tiny-onnx", stages: stages.joined(separator: "\n")))
        let result = try project.run(timeout: 120)
        #expect(result.status == 0, "\(result)")
        let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "onnx", output: "model")
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/squeeze-export.json"))) as? [String: Any])
        let source = try #require(manifest["source"] as? [String: Any])
        #expect(source["kind"] as? String == "dynamic_int8", "\(source)")
        let details = try #require(manifest["details"] as? [String: Any])
        #expect(details["quantization_mode"] as? String == "dynamic", "\(details)")
        #expect((manifest["guarantee"] as? String)?.contains("squeeze's codes") == true, "\(manifest)")
    }

    /// A trained tiny Llama and its GPTQ int4 model export with the KV-cache
    /// interface (the int4 one at opset 21, keeping its codes); at the
    /// default opset the int4 model fails naming opset 21.
    @Test func decodersExportFloatAndWeightOnlyWithTheirCache() throws {
        let recipe = """
            version: 1
            name: decoder-onnx
            backend: cpu
            seed: 7
            stages:
              bpe:
                uses: tokenizer/train-bpe
                with: {files: [train.txt], vocab_size: 300}
              text:
                uses: data/text
                with: {tokenizer: "${bpe.tokenizer}", train: [train.txt], test: [train.txt], valid_fraction: 0.2, block_size: 16}
              pretrain:
                uses: train/causal-lm
                with:
                  config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}
                  tokenizer: ${bpe.tokenizer}
                  data: ${text.dataset}
                  steps: 4
                  batch_size: 4
              gptq:
                uses: quantize/gptq
                with: {model: "${pretrain.model}", data: "${text.dataset}", bits: 4, group_size: 16, calibration: {samples: 4, seq_len: 16, batch_size: 4}}
              float_onnx:
                uses: export/onnx
                with: {model: "${pretrain.model}"}
              int4_onnx:
                uses: export/onnx
                with: {model: "${gptq.model}", opset: 21, kv_cache: false}
              int4_default_opset:
                uses: export/onnx
                with: {model: "${gptq.model}"}
            """
        let project = try Project("export-onnx-decoder")
        _ = try project.write("recipe/train.txt", DecoderStagesTests.text)
        _ = try project.write("recipe/recipe.yaml", recipe)
        let result = try project.run(timeout: 600)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("needs opset 21"), "\(result)")
        let record = try project.record(of: result)
        #expect(record.stage("int4_default_opset")?.status == "failed")

        for (stage, opset, cache) in [("float_onnx", 17, true), ("int4_onnx", 21, false)] {
            #expect(record.stage(stage)?.status == "ran", "\(record.stages.map { "\($0.id): \($0.status)" })")
            let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: stage, output: "model")
            let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
            #expect(files == ["config.json", "model.onnx", "squeeze-export.json", "tokenizer.json"], "\(files)")
            let manifest = try SqueezeJSON.decode(
                ExportManifestFields.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/squeeze-export.json")))
            #expect(manifest.source.kind == "decoder" && manifest.source.architecture == "llama", "\(manifest)")
            #expect(manifest.details.opset == opset && manifest.details.kv_cache == cache, "\(manifest)")
            #expect(manifest.details.decoder_kind == (stage == "float_onnx" ? "dense" : "weight_only"), "\(manifest)")
        }
    }

    /// The parts of `squeeze-export.json` the decoder test reads.
    struct ExportManifestFields: Decodable, CustomStringConvertible {
        struct Source: Decodable { var kind: String; var architecture: String }
        struct Details: Decodable { var opset: Int; var kv_cache: Bool; var decoder_kind: String }
        var source: Source
        var details: Details
        var description: String { "source \(source.kind)/\(source.architecture), opset \(details.opset), kv \(details.kv_cache), \(details.decoder_kind)" }
    }
}
