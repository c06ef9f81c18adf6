import Foundation
import SqueezeCompress
import SqueezeExport
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeSupport
import SqueezeTensor
import Testing

/// Tiny random BERT classifiers exported to Hugging Face and run by
/// `transformers`: dense, sparse, CoFi-pruned (padded) and weight-only
/// (compressed-tensors) logits against Squeeze's; what cannot be expressed
/// is refused before anything is written.
@Suite struct HFBertExportTests {
    static let vocabulary = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "good", "bad", "is", "was", "not", "very", "fun",
        "dull", "it", "and", "plot", "great",
    ]
    static let rows: [[Int32]] = [[2, 5, 7, 11, 3], [2, 9, 3], [2, 19, 18, 10, 14, 16, 3]]

    /// `model` as an artifact in `directory` (with the tiny vocabulary).
    static func artifact(_ model: BertModel, in directory: String) throws -> ModelArtifact {
        try model.save(toDirectory: directory)
        try Data((vocabulary.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/vocab.txt"))
        return try ModelArtifact.seal(directory: directory, architecture: "bert", source: "test")
    }

    static func artifact(_ model: QuantizedBertModel, in directory: String) throws -> ModelArtifact {
        try model.save(toDirectory: directory)
        try Data((vocabulary.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/vocab.txt"))
        return try ModelArtifact.seal(directory: directory, architecture: "bert", source: "test")
    }

    static var batch: BertBatch { BertBatch(sequences: rows) }

    /// The rows padded as `BertBatch` pads them, with their attention mask.
    static var hfBatch: [String: [[Int]]] {
        let length = rows.map(\.count).max() ?? 0
        return [
            "input_ids": rows.map { $0.map(Int.init) + Array(repeating: 0, count: length - $0.count) },
            "attention_mask": rows.map { Array(repeating: 1, count: $0.count) + Array(repeating: 0, count: length - $0.count) },
        ]
    }

    /// Weights of σ 0.5, so the logits are of order 1 and a wrong sum shows.
    static func uniformConfig() -> BertConfig {
        var config = TinyBert.config(initializerRange: 0.5)
        config.layerShapes = nil
        return config
    }

    @Test func everyFloatAndWeightOnlyKindMatchesTransformers() throws {
        guard PythonPeers.available(HFPeer.modules, for: "HF BERT export") else { return }
        let root = try TempDir()
        let backend = CPUBackend(threads: 1)
        let dense = try BertModel(randomWithConfig: Self.uniformConfig(), seed: 7)
        let sparse = try dense.maskedNofM()
        // Heterogeneous layers: 2 heads / 16 units, 1 head / 5 units, and a layer CoFi emptied (no heads, no units).
        var cofiConfig = Self.uniformConfig()
        cofiConfig.numHiddenLayers = 3
        let cofiShapes = [
            BertLayerShape(heads: 2, intermediateSize: 16), BertLayerShape(heads: 1, intermediateSize: 5),
            BertLayerShape(heads: 0, intermediateSize: 0),
        ]
        var cofi = try BertModel(randomWithConfig: cofiConfig, layerShapes: cofiShapes, seed: 11)
        // Non-zero biases everywhere, so an emptied sublayer's output bias counts.
        cofi.updateParameters { parameters in
            for index in parameters.indices where parameters[index].rank == 1 {
                let count = parameters[index].count
                parameters[index] = Tensor(shape: [count], floats: (0..<count).map { Float(($0 * 7 + index) % 11) * 0.01 + 0.5 * Float(index % 2) })
            }
        }
        // 16 outputs or more per quantized Linear: compressed-tensors 0.20.1 cannot unpack the zero points of a
        // module whose rows fit one int32 word (≤ 32/bits rows) when it has several groups (a stride bug in
        // `unpack_from_int32`); real models are far wider.
        var wider = Self.uniformConfig()
        wider.hiddenSize = 16
        wider.intermediateSize = 32
        let widerDense = try BertModel(randomWithConfig: wider, seed: 5)
        let int4Symmetric = try WeightOnlyQuantizer.quantize(widerDense, options: WeightOnlyOptions(bits: 4, groupSize: 4, symmetric: true))
        let int4Asymmetric = try WeightOnlyQuantizer.quantize(widerDense, options: WeightOnlyOptions(bits: 4, groupSize: 8, symmetric: false))
        let int8Asymmetric = try WeightOnlyQuantizer.quantize(
            widerDense, options: WeightOnlyOptions(bits: 8, groupSize: 8, symmetric: false, skip: ["classifier"]))

        var cases: [(name: String, artifact: ModelArtifact, expected: [Float], asymmetric: Bool)] = []
        for (name, model) in [("dense", dense), ("sparse", sparse), ("cofi", cofi)] {
            let artifact = try Self.artifact(model, in: root.path + "/" + name)
            cases.append((name, artifact, try model.logits(Self.batch, backend: backend).floats, false))
        }
        for (name, model, asymmetric) in [
            ("int4-sym-g4", int4Symmetric, false), ("int4-asym-g8", int4Asymmetric, true), ("int8-asym-g8", int8Asymmetric, true),
        ] {
            let artifact = try Self.artifact(model, in: root.path + "/" + name)
            let reloaded = try QuantizedBertModel(directory: artifact.directory)
            cases.append((name, artifact, try reloaded.logits(Self.batch, backend: backend).floats, asymmetric))
        }
        var jobs: [HFPeer.Job] = []
        var manifests: [String: ExportManifest] = [:]
        for entry in cases {
            let output = root.path + "/export-" + entry.name
            manifests[entry.name] = try HFCheckpointExport.export(entry.artifact, to: output, sourceDigest: "sha256:test")
            jobs.append(.logits(directory: output, auto: "sequence-classification", batches: [Self.hfBatch], dequantize: entry.asymmetric))
        }
        // The 3-row classifier is stored dequantized (compressed-tensors 0.20.1 cannot unpack its zero points).
        let packedModules = int4Asymmetric.quantization.modules.filter { $0 != "classifier" }
        #expect(manifests["int4-asym-g8"]?.details["stored_dequantized"]?["modules"] == .array([.string("classifier")]))
        jobs.append(.dequantize(directory: root.path + "/export-int4-asym-g8", modules: packedModules.map { "bert." + $0 }))
        let results = try HFPeer.run(jobs)

        for (index, entry) in cases.enumerated() {
            let logits = HFPeer.logits(results[index])
            #expect(results[index]["class"] == .string("BertForSequenceClassification"))
            #expect(logits.first?.shape == [3, 3], "\(entry.name)")
            let difference = HFPeer.maxDifference(logits.first?.data ?? [], entry.expected)
            #expect(difference <= 1e-4, "\(entry.name): transformers vs Squeeze logits differ by \(difference)")
            print("HF BERT \(entry.name): max |transformers − Squeeze| = \(difference), max |logit| = \(entry.expected.map(abs).max() ?? 0)")
        }
        // compressed-tensors' dequantized weights are Squeeze's, bit for bit.
        let dequantized = results[cases.count]["weights"]
        let squeezeWeights = int4Asymmetric.weightOnlyLinears
        for module in packedModules {
            let stored = HFPeer.floats(dequantized?["bert." + module])
            let expected = try #require(squeezeWeights[module]).weights.dequantized()
            #expect(stored.shape == expected.shape, "\(module)")
            #expect(stored.data.map(\.bitPattern) == expected.floats.map(\.bitPattern), "\(module)")
        }

        let cofiManifest = try #require(manifests["cofi"])
        #expect(cofiManifest.source.kind == "cofi")
        #expect(cofiManifest.details["padding"]?["exported_parameters"] != nil)
        #expect(manifests["sparse"]?.source.kind == "sparse")
        #expect(manifests["sparse"]?.details["sparsity"]?["patterns"] == .array([.string("2:4")]))
        #expect(manifests["int4-sym-g4"]?.source.kind == "weight_only")
        let config = try Value(json: Array(Data(contentsOf: URL(fileURLWithPath: root.path + "/export-cofi/config.json"))))
        for key in ["squeeze_layers", "squeeze_pooling", "attention_head_size", "quantization"] {
            #expect(config[key] == nil, "config.json keeps the Squeeze-only key \(key)")
        }
        #expect(config["num_attention_heads"] == .int(2))
        #expect(config["intermediate_size"] == .int(16))
    }

    @Test func refusesWhatBertForSequenceClassificationCannotCompute() throws {
        let root = try TempDir()
        // A pruned hidden size that is not a whole number of heads.
        var pruned = Self.uniformConfig()
        pruned.hiddenSize = 6
        pruned.attentionHeadSize = 4
        let narrow = try BertModel(randomWithConfig: pruned, layerShapes: [BertLayerShape(heads: 1, intermediateSize: 4), BertLayerShape(heads: 1, intermediateSize: 4)], seed: 3)
        let mean = try TinyBert.model(layerShapes: [BertLayerShape(heads: 2, intermediateSize: 16), BertLayerShape(heads: 2, intermediateSize: 16)], pooling: .mean)
        let dense = try BertModel(randomWithConfig: Self.uniformConfig(), seed: 7)
        let dynamic = try W8A8Quantizer.quantizeDynamic(dense, options: W8A8Options())
        let cases: [(String, ModelArtifact, String)] = [
            ("hidden", try Self.artifact(narrow, in: root.path + "/hidden"), "not a whole number of its 4-wide heads"),
            ("mean", try Self.artifact(mean, in: root.path + "/mean"), "pools by the mean"),
            ("dynamic", try Self.artifact(dynamic, in: root.path + "/dynamic"), "export/onnx"),
        ]
        for (name, artifact, fragment) in cases {
            let output = root.path + "/out-" + name
            #expect {
                try HFCheckpointExport.export(artifact, to: output, sourceDigest: "sha256:test")
            } throws: { error in
                "\(error)".contains(fragment) && "\(error)".contains("export/onnx")
            }
            #expect(!FileManager.default.fileExists(atPath: output), "\(name): a refused export wrote \(output)")
        }
    }

    /// An artifact whose tokenizer file went missing after it was opened: a clear error naming it, nothing written.
    @Test func aMissingTokenizerIsAnErrorBeforeAnythingIsWritten() throws {
        let root = try TempDir()
        let artifact = try Self.artifact(try BertModel(randomWithConfig: Self.uniformConfig(), seed: 2), in: root.path + "/model")
        try FileManager.default.removeItem(atPath: artifact.vocabularyPath)
        #expect {
            try HFCheckpointExport.export(artifact, to: root.path + "/out", sourceDigest: "sha256:test")
        } throws: { "\($0)".contains("vocab.txt") }
        #expect(!FileManager.default.fileExists(atPath: root.path + "/out"))
    }

    @Test func theSameArtifactExportsTheSameBytes() throws {
        let root = try TempDir()
        let artifact = try Self.artifact(try TinyBert.model(seed: 4), in: root.path + "/model")
        try HFCheckpointExport.export(artifact, to: root.path + "/a", sourceDigest: "sha256:test")
        try HFCheckpointExport.export(artifact, to: root.path + "/b", sourceDigest: "sha256:test")
        let names = try FileManager.default.contentsOfDirectory(atPath: root.path + "/a").sorted()
        #expect(names == ["config.json", "model.safetensors", "squeeze-export.json", "tokenizer_config.json", "vocab.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/b").sorted() == names)
        for name in names {
            #expect(FileManager.default.contents(atPath: root.path + "/a/" + name) == FileManager.default.contents(atPath: root.path + "/b/" + name), "\(name)")
        }
    }
}
