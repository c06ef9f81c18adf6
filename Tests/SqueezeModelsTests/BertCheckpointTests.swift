import Foundation
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeModels

@Suite struct BertCheckpointTests {
    private func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    private func bitPatterns(_ model: BertModel) -> [[UInt32]] {
        model.weights.elements.map { $0.floats.map(\.bitPattern) }
    }

    /// Writes the tiny model's tensors under the given names (nil drops a tensor)
    /// plus its config without a pooling choice, as Hugging Face writes it.
    private func writeCheckpoint(
        _ model: BertModel, in dir: TempDir, rename: (String) -> String? = { "bert." + $0 }
    ) throws {
        var tensors: [SafetensorsWriter.RawTensor] = []
        _ = model.weights.map { name, tensor in
            if let stored = rename(name) {
                tensors.append((stored, .f32, tensor.shape, tensor.withUnsafeFloats { Array(UnsafeRawBufferPointer($0)) }))
            }
        }
        try SafetensorsWriter.write(tensors, to: dir.file("model.safetensors"))
        var config = model.config
        config.pooling = nil
        try config.jsonData().write(to: URL(fileURLWithPath: dir.file("config.json")))
    }

    private func loadError(_ dir: TempDir) -> String? {
        do {
            _ = try BertModel(directory: dir.path)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func saveLoadRoundTripIsExactAndDeterministic() throws {
        let model = try TinyBert.model(seed: 3, pooling: .mean)
        let dir = try TempDir()
        try model.save(toDirectory: dir.file("a"))
        let loaded = try BertModel(directory: dir.file("a"))
        #expect(loaded.config == { var c = model.config; c.pooling = .mean; return c }())
        #expect(loaded.pooling == .mean)
        #expect(loaded.layerShapes == model.layerShapes)
        #expect(bitPatterns(loaded) == bitPatterns(model))
        try loaded.save(toDirectory: dir.file("b"))
        for name in ["model.safetensors", "config.json"] {
            #expect(try bytes(dir.file("a/" + name)) == bytes(dir.file("b/" + name)), "\(name) bytes differ")
        }
        let file = try SafetensorsFile(path: dir.file("a/model.safetensors"))
        #expect(file.metadata == ["format": "pt"])
        #expect(file.entries["bert.encoder.layer.1.attention.self.query.weight"]?.shape == [4, 8])
        #expect(file.entries["classifier.weight"]?.shape == [3, 8])
        let config = try JSONSerialization.jsonObject(with: bytes(dir.file("a/config.json"))) as? [String: Any]
        #expect(config?["num_labels"] as? Int == 3)
        #expect(config?["id2label"] as? [String: String] == ["0": "class0", "1": "class1", "2": "class2"])
    }

    @Test func loadsWithoutPrefixAndBorrowsF32Weights() throws {
        let model = try TinyBert.model(seed: 4)
        let dir = try TempDir()
        try writeCheckpoint(model, in: dir) { $0.hasPrefix("classifier.") ? $0 : $0 }
        let loaded = try BertModel(directory: dir.path)
        #expect(bitPatterns(loaded) == bitPatterns(model))
        #expect(loaded.weights.embeddings.word.storage.isBorrowed)
        #expect(loaded.pooling == .pooler)
    }

    @Test func missingClassifierIsSeededAndPoolerOptional() throws {
        let model = try TinyBert.model(seed: 5)
        let dir = try TempDir()
        try writeCheckpoint(model, in: dir) { name in
            name.hasPrefix("classifier.") || name.hasPrefix("pooler.") ? nil : "bert." + name
        }
        let first = try BertModel(directory: dir.path, classifierSeed: 7)
        let second = try BertModel(directory: dir.path, classifierSeed: 7)
        let other = try BertModel(directory: dir.path, classifierSeed: 8)
        #expect(first.weights.pooler == nil)
        #expect(first.pooling == .mean)
        #expect(first.weights.classifier.weight.shape == [3, 8])
        #expect(first.weights.classifier.bias.floats == [0, 0, 0])
        #expect(first.weights.classifier.weight.floats == second.weights.classifier.weight.floats)
        #expect(first.weights.classifier.weight.floats != other.weights.classifier.weight.floats)
        #expect(throws: ModelFileError.self) { try BertModel(directory: dir.path, pooling: .pooler) }
    }

    @Test func missingTensorsAreListed() throws {
        let model = try TinyBert.model()
        let dir = try TempDir()
        try writeCheckpoint(model, in: dir) { name in
            name.hasSuffix("key.bias") || name == "embeddings.LayerNorm.weight" ? nil : "bert." + name
        }
        #expect(loadError(dir) == """
            missing tensors: `bert.embeddings.LayerNorm.weight`, `bert.encoder.layer.0.attention.self.key.bias`, \
            `bert.encoder.layer.1.attention.self.key.bias`
            """)
    }

    @Test func shapeMismatchesAreReported() throws {
        let model = try TinyBert.model()
        let dir = try TempDir()
        var tensors: [SafetensorsWriter.RawTensor] = []
        _ = model.weights.map { name, tensor in
            let shape = name == "encoder.layer.1.output.dense.weight" ? [8, 11] : tensor.shape
            tensors.append(("bert." + name, .f32, shape, [UInt8](repeating: 0, count: shape.reduce(1, *) * 4)))
        }
        try SafetensorsWriter.write(tensors, to: dir.file("model.safetensors"))
        try model.config.jsonData().write(to: URL(fileURLWithPath: dir.file("config.json")))
        #expect(loadError(dir) == "shape mismatch: `encoder.layer.1.output.dense.weight` has shape [8, 11], expected [8, 12]")
    }

    @Test func headsMustDivideIntoTheHeadDimension() throws {
        let model = try TinyBert.model()
        let dir = try TempDir()
        var tensors: [SafetensorsWriter.RawTensor] = []
        _ = model.weights.map { name, tensor in
            let shape = name.hasPrefix("encoder.layer.0.attention.self.query.") ? [6] + tensor.shape.dropFirst() : tensor.shape
            tensors.append(("bert." + name, .f32, shape, [UInt8](repeating: 0, count: shape.reduce(1, *) * 4)))
        }
        try SafetensorsWriter.write(tensors, to: dir.file("model.safetensors"))
        try model.config.jsonData().write(to: URL(fileURLWithPath: dir.file("config.json")))
        #expect(loadError(dir)?.contains("encoder.layer.0.attention.self.query.weight has shape [6, 8]") == true)
    }

    @Test func extraLayersAndBadConfigAreErrors() throws {
        let model = try TinyBert.model()
        let dir = try TempDir()
        try writeCheckpoint(model, in: dir)
        var fewer = model.config
        fewer.numHiddenLayers = 1
        try fewer.jsonData().write(to: URL(fileURLWithPath: dir.file("config.json")))
        #expect(loadError(dir)?.contains("belongs to layer 1, but num_hidden_layers is 1") == true)
        try Data(#"{"hidden_size": 8}"#.utf8).write(to: URL(fileURLWithPath: dir.file("config.json")))
        #expect(loadError(dir)?.contains("missing required field") == true)
        try FileManager.default.removeItem(atPath: dir.file("config.json"))
        #expect(loadError(dir)?.hasPrefix("cannot read") == true)
    }

    @Test func halfPrecisionWeightsAreWidened() throws {
        let model = try TinyBert.model()
        let dir = try TempDir()
        var tensors: [SafetensorsWriter.RawTensor] = []
        _ = model.weights.map { name, tensor in
            // bfloat16: the top half of each f32.
            let halves = tensor.floats.flatMap { value -> [UInt8] in
                let bits = UInt16(value.bitPattern >> 16)
                return [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            }
            tensors.append(("bert." + name, .bf16, tensor.shape, halves))
        }
        try SafetensorsWriter.write(tensors, to: dir.file("model.safetensors"))
        try model.config.jsonData().write(to: URL(fileURLWithPath: dir.file("config.json")))
        let loaded = try BertModel(directory: dir.path)
        let expected = model.weights.embeddings.word.floats.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) }
        #expect(loaded.weights.embeddings.word.floats == expected)
        #expect(loaded.weights.embeddings.word.dtype == .f32)
    }
}
