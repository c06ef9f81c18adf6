import Foundation
import SqueezeModels
import Testing

/// `export/hf` through the CLI: an imported tiny BERT with heterogeneous
/// layers (exported zero-padded), a weight-only one (compressed-tensors) and
/// an imported Llama;
/// a W8A8 model and a weight-only CoFi model are refused at the `model:`
/// parameter with the reason. transformers' side is in SqueezeExportTests.
@Suite struct ExportHFStageTests {
    static func recipe(_ stages: String) -> String {
        """
        version: 1
        name: tiny-export-hf
        seed: 11
        stages:
          base:
            uses: model/import
            with:
              directory: tiny
          uniform:
            uses: model/import
            with:
              directory: uniform
          int4:
            uses: quantize/weight-only
            with:
              model: ${uniform.model}
              weights: {bits: 4, group_size: 8}
        \(stages)
        """
    }

    static func project(_ name: String, stages: String) throws -> Project {
        let project = try Project(name)
        try TinySentiment.writeTinyBert(at: project.url("recipe/tiny"))
        try TinySentiment.writeRandomBert(
            at: project.url("recipe/uniform"), config: TinySentiment.config(hidden: 16, layers: 2, heads: 4, intermediate: 32), seed: 4)
        _ = try project.write("recipe/recipe.yaml", Self.recipe(stages))
        return project
    }

    static func manifest(_ directory: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/squeeze-export.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func exportsPaddedAndWeightOnlyCheckpoints() throws {
        let project = try Self.project("export-hf", stages: """
              hf:
                uses: export/hf
                with:
                  model: ${base.model}
              hf_int4:
                uses: export/hf
                with:
                  model: ${int4.model}
            """)
        let result = try project.run(timeout: 300)
        #expect(result.status == 0, "\(result)")

        let padded = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "hf", output: "model")
        let files = try FileManager.default.contentsOfDirectory(atPath: padded).sorted()
        #expect(files == ["config.json", "model.safetensors", "squeeze-export.json", "tokenizer_config.json", "vocab.txt"])
        let manifest = try Self.manifest(padded)
        let source = try #require(manifest["source"] as? [String: Any])
        let base = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "base", output: "model")
        #expect(source["digest"] as? String == "sha256:" + URL(fileURLWithPath: base).lastPathComponent)
        #expect(source["kind"] as? String == "cofi" && manifest["target"] as? String == "hf")
        let config = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: padded + "/config.json"))) as? [String: Any])
        #expect(config["num_attention_heads"] as? Int == 4 && config["intermediate_size"] as? Int == 32)
        #expect(config["squeeze_layers"] == nil && config["architectures"] as? [String] == ["BertForSequenceClassification"])

        let quantized = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "hf_int4", output: "model")
        #expect(try (Self.manifest(quantized)["source"] as? [String: Any])?["kind"] as? String == "weight_only")
        let quantizedConfig = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: quantized + "/config.json"))) as? [String: Any])
        let section = try #require(quantizedConfig["quantization_config"] as? [String: Any])
        #expect(section["quant_method"] as? String == "compressed-tensors" && section["format"] as? String == "pack-quantized")
        #expect(quantizedConfig["quantization"] == nil)
        #expect(try ModelStagesTests.metrics(project, runID: result.runID, stage: "hf")["source_kind"] as? String == "cofi")

        let again = try project.run()
        #expect(again.status == 0 && again.stdout.contains("cached"), "\(again)")
    }

    @Test func exportsAnImportedDecoder() throws {
        let project = try Project("export-hf-decoder")
        let config = DecoderConfig(
            family: .llama, vocabSize: 300, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1, numAttentionHeads: 2,
            maxPositionEmbeddings: 32)
        let directory = project.url("recipe/llama").path
        try DecoderModel(randomWithConfig: config, seed: 1).save(toDirectory: directory)
        let words = ["the film was good", "the plot was bad", "a very fine film"]
        try BPETrainer(vocabularySize: 280, minimumFrequency: 1).train(words).write(toDirectory: directory)
        _ = try project.write("recipe/recipe.yaml", """
            version: 1
            name: tiny-export-hf-decoder
            stages:
              llama:
                uses: model/import
                with:
                  directory: llama
              hf:
                uses: export/hf
                with:
                  model: ${llama.model}
            """)
        let result = try project.run(timeout: 300)
        #expect(result.status == 0, "\(result)")
        let exported = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "hf", output: "model")
        let files = try FileManager.default.contentsOfDirectory(atPath: exported).sorted()
        #expect(files == ["config.json", "model.safetensors", "squeeze-export.json", "tokenizer.json", "tokenizer_config.json"])
        let written = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exported + "/config.json"))) as? [String: Any])
        #expect(written["architectures"] as? [String] == ["LlamaForCausalLM"] && written["quantization_config"] == nil)
        #expect(try (Self.manifest(exported)["source"] as? [String: Any])?["architecture"] as? String == "llama")
    }

    @Test func refusesW8A8AndWeightOnlyCoFiAtTheModelParameter() throws {
        for (name, stages, fragment) in [
            ("w8a8", """
                  dynamic:
                    uses: quantize/dynamic
                    with:
                      model: ${uniform.model}
                  hf:
                    uses: export/hf
                    with:
                      model: ${dynamic.model}
                """, "dynamic W8A8"),
            ("cofi-int4", """
                  cofi_int4:
                    uses: quantize/weight-only
                    with:
                      model: ${base.model}
                      weights: {bits: 4, group_size: 8}
                  hf:
                    uses: export/hf
                    with:
                      model: ${cofi_int4.model}
                """, "CoFi-pruned"),
        ] {
            let project = try Self.project("export-hf-" + name, stages: stages)
            let result = try project.run(timeout: 300)
            #expect(result.status == 1, "\(name): \(result)")
            #expect(result.stderr.contains(fragment) && result.stderr.contains("export/onnx"), "\(name): \(result.stderr)")
            #expect(result.stderr.contains("recipe.yaml:"), "\(name): the error names no position: \(result.stderr)")
        }
    }
}
