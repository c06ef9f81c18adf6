import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// Quantized checkpoints: save/load round trips and every kind of damage
/// reported as a `ModelFileError`, never a crash.
@Suite struct QuantizedArtifactTests {
    let backend = CPUBackend(threads: 2)

    static func saved(dynamic: Bool = false, model: BertModel? = nil) throws -> (directory: String, model: QuantizedBertModel) {
        let float = try model ?? TinyQuantBert.dense()
        let quantized = dynamic ? try W8A8Quantizer.quantizeDynamic(float) : try TinyQuantBert.calibrated(float).model
        let directory = try TinyQuantBert.temporaryDirectory("quantized")
        try quantized.save(toDirectory: directory)
        return (directory, quantized)
    }

    @Test(arguments: [false, true])
    func roundTripGivesBitIdenticalLogits(dynamic: Bool) throws {
        let (directory, quantized) = try Self.saved(dynamic: dynamic)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let loaded = try QuantizedBertModel(directory: directory)
        #expect(loaded.quantization == quantized.quantization)
        #expect(loaded.pooling == quantized.pooling && loaded.layerShapes == quantized.layerShapes)
        for batch in TinyQuantBert.batches(3, seed: 21) {
            #expect(try loaded.logits(batch, backend: backend).floats == quantized.logits(batch, backend: backend).floats)
        }
        let file = try SafetensorsFile(path: directory + "/model.safetensors")
        let query = try #require(file.entries["bert.encoder.layer.0.attention.self.query.weight"])
        #expect(query.dtype == .i8 && query.shape == [32, 32])
        #expect(file.entries["bert.encoder.layer.0.attention.self.query.weight_scale"]?.shape == [32])
        #expect((file.entries["classifier.input_scale"] != nil) == !dynamic)
        #expect(file.metadata[ModelQuantization.metadataKey] == (dynamic ? "dynamic" : "static"))
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))) as? [String: Any])
        let section = try #require(config["quantization"] as? [String: Any])
        #expect(section["format"] as? String == ModelQuantization.currentFormat)
        #expect((section["modules"] as? [String])?.count == 14)
    }

    @Test func coFiShapedRoundTrip() throws {
        let (directory, quantized) = try Self.saved(model: try TinyQuantBert.heterogeneous())
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let loaded = try QuantizedBertModel(directory: directory)
        #expect(loaded.layerShapes == quantized.layerShapes && loaded.pooling == .mean)
        let batch = TinyQuantBert.batches(1, seed: 3)[0]
        #expect(try loaded.logits(batch, backend: backend).floats == quantized.logits(batch, backend: backend).floats)
    }

    @Test func floatLoadersRefuseQuantizedCheckpoints() throws {
        let (directory, _) = try Self.saved()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = try #require(throws: ModelFileError.self) { try BertModel(directory: directory) }
        #expect(error.message.contains("quantized"), "\(error)")
        let float = try TinyQuantBert.temporaryDirectory("float")
        defer { try? FileManager.default.removeItem(atPath: float) }
        try TinyQuantBert.dense().save(toDirectory: float)
        let notQuantized = try #require(throws: ModelFileError.self) { try QuantizedBertModel(directory: float) }
        #expect(notQuantized.message.contains("not a quantized model"))
    }

    /// Parts that disagree with their `quantization` section are refused too.
    @Test func inconsistentPartsAreErrors() throws {
        let model = try TinyQuantBert.dense()
        let quantized = try W8A8Quantizer.quantizeDynamic(model)
        func rebuilt(_ section: ModelQuantization, weights: BertWeights<InferenceValue>? = nil) throws {
            _ = try QuantizedBertModel(
                config: model.config, weights: weights ?? quantized.weights, pooling: quantized.pooling, quantization: section)
        }
        var unlisted = quantized.quantization
        unlisted.modules.removeLast()
        let notListed = try #require(throws: ModelFileError.self) { try rebuilt(unlisted) }
        #expect(notListed.message.contains("the int8 Linear `classifier` is not listed in `quantization.modules`"))
        let float = try #require(throws: ModelFileError.self) { try rebuilt(quantized.quantization, weights: model.inferenceWeights) }
        #expect(float.message.contains("is listed as quantized but is f32"))
        var otherMode = quantized.quantization
        otherMode.mode = .static
        otherMode.activations?.granularity = .perTensor
        otherMode.observer = "minmax"
        let mode = try #require(throws: ModelFileError.self) { try rebuilt(otherMode) }
        #expect(mode.message.contains("activation parameters of another mode"))
    }

    /// The float forward pass over `InferenceOperations` (what calibration
    /// runs) is `BertModel`'s, bit for bit.
    @Test func inferenceOperationsReproduceTheFloatModel() throws {
        for model in [try TinyQuantBert.dense(), try TinyQuantBert.heterogeneous()] {
            for batch in TinyQuantBert.batches(2, seed: 31) {
                let ops = InferenceOperations(backend: backend)
                let logits = ops.tensor(BertModel.logits(ops, model.inferenceWeights, config: model.config, pooling: model.pooling, batch: batch))
                #expect(logits.floats == (try model.logits(batch, backend: backend)).floats)
            }
        }
    }

    /// One way to damage a saved model: tensors by name, and the config object.
    static let query = "bert.encoder.layer.1.attention.self.query"

    static func section(_ config: inout [String: Any], _ change: (inout [String: Any]) -> Void) {
        var section = config["quantization"] as? [String: Any] ?? [:]
        change(&section)
        config["quantization"] = section
    }

    static let damages: [ArtifactDamage] = [
        ArtifactDamage("negative weight scale", "weight scales must be finite and positive") {
            $0[query + ".weight_scale"] = Tensor(shape: [32], floats: [-1] + [Float](repeating: 0.01, count: 31))
        },
        ArtifactDamage("NaN weight scale", "weight scales must be finite and positive") {
            $0[query + ".weight_scale"] = Tensor(shape: [32], floats: [Float](repeating: .nan, count: 32))
        },
        ArtifactDamage("zero weight scale", "weight scales must be finite and positive") {
            $0[query + ".weight_scale"] = Tensor(shape: [32], floats: [Float](repeating: 0, count: 32))
        },
        ArtifactDamage("weight scale shape", "expected [32]") { $0[query + ".weight_scale"] = Tensor(shape: [31], floats: [Float](repeating: 0.01, count: 31)) },
        ArtifactDamage("infinite input scale", "positive normal") { $0[query + ".input_scale"] = Tensor(shape: [1], floats: [.infinity]) },
        ArtifactDamage("zero input scale", "positive normal") { $0[query + ".input_scale"] = Tensor(shape: [1], floats: [0]) },
        ArtifactDamage("subnormal input scale", "positive normal") { $0[query + ".input_scale"] = Tensor(shape: [1], floats: [Float.leastNonzeroMagnitude]) },
        ArtifactDamage("input scale shape", "must have shape [1]") { $0[query + ".input_scale"] = Tensor(shape: [2], floats: [1, 1]) },
        ArtifactDamage("zero point above the range", "outside the activations' code range") {
            $0[query + ".input_zero_point"] = Tensor(shape: [1], int32s: [256])
        },
        ArtifactDamage("negative zero point", "outside the activations' code range") { $0[query + ".input_zero_point"] = Tensor(shape: [1], int32s: [-1]) },
        ArtifactDamage("float zero point", "expected I32") { $0[query + ".input_zero_point"] = Tensor(shape: [1], floats: [3]) },
        ArtifactDamage("missing input scale", "missing tensor") { $0[query + ".input_scale"] = nil },
        ArtifactDamage("float weight of an int8 module", "expected I8") { $0[query + ".weight"] = Tensor(zeros: [32, 32]) },
        ArtifactDamage("int8 weight of another shape", "shape") { $0[query + ".weight"] = Tensor(zeros: [32, 31], dtype: .i8) },
        ArtifactDamage("weight outside the code range", "outside the weights' code range") {
            $0[query + ".weight"] = Tensor(shape: [32, 32], int8s: [-128] + [Int8](repeating: 1, count: 1023))
        },
        ArtifactDamage("int8 weight on a float module", "must be a floating-point tensor") {
            $0["bert.embeddings.LayerNorm.weight"] = Tensor(zeros: [32], dtype: .i8)
        },
        ArtifactDamage("stray activation scale", "unexpected tensor") { $0["bert.pooler.dense.bias.input_scale"] = Tensor(shape: [1], floats: [1]) },
        ArtifactDamage("missing bias", "missing tensors") { $0["bert.encoder.layer.0.output.dense.bias"] = nil },
        ArtifactDamage("unknown format", "format", config: { config in section(&config) { $0["format"] = "squeeze.quantized/9" } }),
        ArtifactDamage("4-bit weights", "weights.bits", config: { config in
            section(&config) { section in
                var weights = section["weights"] as? [String: Any] ?? [:]
                weights["bits"] = 4
                section["weights"] = weights
            }
        }),
        ArtifactDamage("weight code range", "code_range", config: { config in
            section(&config) { section in
                var weights = section["weights"] as? [String: Any] ?? [:]
                weights["code_range"] = [-128, 127]
                section["weights"] = weights
            }
        }),
        ArtifactDamage("activation code range", "code_range", config: { config in
            section(&config) { section in
                var activations = section["activations"] as? [String: Any] ?? [:]
                activations["code_range"] = [0, 300]
                section["activations"] = activations
            }
        }),
        ArtifactDamage("unknown mode", "not a valid quantization section", config: { config in section(&config) { $0["mode"] = "fancy" } }),
        ArtifactDamage("missing observer", "needs `observer`", config: { config in section(&config) { $0["observer"] = nil } }),
        ArtifactDamage("module listed twice", "listed twice", config: { config in
            section(&config) { section in
                section["skipped"] = [["module": "classifier", "reason": "x"]]
            }
        }),
        ArtifactDamage("unknown module", "does not have", config: { config in
            section(&config) { section in
                section["skipped"] = [["module": "encoder.layer.7.output.dense", "reason": "x"]]
            }
        }),
        ArtifactDamage("int8 module missing from `modules`", "must be a floating-point tensor", config: { config in
            section(&config) { section in
                section["modules"] = (section["modules"] as? [String] ?? []).filter { $0 != "classifier" }
            }
        }),
        ArtifactDamage("quantization is not an object", "not a valid quantization section", config: { $0["quantization"] = [1, 2] }),
    ]

    @Test(arguments: damages)
    func damagedArtifactsAreErrors(damage: ArtifactDamage) throws {
        let (directory, _) = try Self.saved()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weightsPath = directory + "/model.safetensors"
        let file = try SafetensorsFile(path: weightsPath)
        var tensors = Dictionary(uniqueKeysWithValues: try file.tensors().map { ($0.name, $0.tensor.contiguous()) })
        damage.tensors(&tensors)
        try SafetensorsWriter.write(tensors: tensors.map { (name: $0.key, tensor: $0.value) }, metadata: file.metadata, to: weightsPath)
        let configURL = URL(fileURLWithPath: directory + "/config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        damage.config(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let error = try #require(throws: ModelFileError.self) { try QuantizedBertModel(directory: directory) }
        #expect(error.description.contains(damage.expected), "\(damage.label): \(error)")
    }
}
