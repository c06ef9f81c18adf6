import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// Weight-only (int4/int8 per-group) BERTs: the forward pass against the
/// float model, the artifact round trip, damaged artifacts and bad settings.
@Suite struct WeightOnlyQuantizerTests {
    let backend = CPUBackend(threads: 2)

    /// The dense model's widths are 32 and 64, the CoFi-shaped one's 16, 20, 24 and 40.
    static func model(cofi: Bool) throws -> BertModel {
        cofi ? try TinyQuantBert.heterogeneous() : try TinyQuantBert.dense()
    }

    static func options(bits: Int, cofi: Bool, symmetric: Bool = true) -> WeightOnlyOptions {
        WeightOnlyOptions(bits: bits, groupSize: cofi ? 4 : 16, symmetric: symmetric)
    }

    /// `model` with every weight-only Linear's weight replaced by its dequantized codes.
    static func dequantized(_ model: BertModel, _ quantized: QuantizedBertModel) throws -> BertModel {
        let linears = quantized.weightOnlyLinears
        let weights = model.weights.map { name, tensor -> Tensor in
            guard let module = BertWeights<Tensor>.linearModule(ofParameter: name), let linear = linears[module] else { return tensor }
            return linear.weights.dequantized()
        }
        return try BertModel(config: model.config, weights: weights, pooling: model.pooling)
    }

    @Test(arguments: [(4, false), (8, false), (4, true), (8, true)])
    func logitsMatchTheDequantizedFloatModel(bits: Int, cofi: Bool) throws {
        let float = try Self.model(cofi: cofi)
        for symmetric in [true, false] {
            let quantized = try WeightOnlyQuantizer.quantize(float, options: Self.options(bits: bits, cofi: cofi, symmetric: symmetric))
            #expect(quantized.quantization.mode == .weightOnly && quantized.quantization.activations == nil)
            let selection = ModuleSelection(model: float, skip: [])
            #expect(quantized.quantization.modules == selection.quantized)
            #expect(Set(quantized.weightOnlyLinears.keys) == Set(selection.quantized))
            let reference = try Self.dequantized(float, quantized)
            for batch in TinyQuantBert.batches(2, seed: 31) {
                let expected = try reference.logits(batch, backend: backend).floats
                let actual = try quantized.logits(batch, backend: backend).floats
                #expect(expected.count == actual.count)
                let worst = zip(expected, actual).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? .infinity
                #expect(worst < 1e-4, "bits \(bits) cofi \(cofi) symmetric \(symmetric): \(worst)")
            }
        }
    }

    @Test(arguments: [(4, false), (8, false), (4, true), (8, true)])
    func logitsAreCloseToTheFloatModel(bits: Int, cofi: Bool) throws {
        let float = try Self.model(cofi: cofi)
        let quantized = try WeightOnlyQuantizer.quantize(float, options: Self.options(bits: bits, cofi: cofi))
        let sqnr = try TinyQuantBert.logitsSQNR(float, quantized, TinyQuantBert.batches(3, seed: 32), backend: backend)
        // int4 noise compounds through the random layers: about 9 dB on the dense model with groups of 16.
        #expect(sqnr > (bits == 8 ? 30 : 6), "logits SQNR \(sqnr) dB")
        let report = WeightOnlyQuantizer.weightReport(float, quantized, skip: [])
        #expect(report.layers.count == quantized.quantization.modules.count)
        #expect(report.layers.allSatisfy { $0.weightSQNR > (bits == 8 ? 35 : 15) }, "\(report.layers.map(\.weightSQNR))")
    }

    @Test(arguments: [(4, false, true), (8, false, true), (4, true, false), (8, true, false)])
    func roundTripGivesBitIdenticalLogits(bits: Int, cofi: Bool, symmetric: Bool) throws {
        let float = try Self.model(cofi: cofi)
        let quantized = try WeightOnlyQuantizer.quantize(float, options: Self.options(bits: bits, cofi: cofi, symmetric: symmetric))
        let directory = try TinyQuantBert.temporaryDirectory("weight-only")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
        let loaded = try QuantizedBertModel(directory: directory)
        #expect(loaded.quantization == quantized.quantization)
        #expect(loaded.layerShapes == quantized.layerShapes && loaded.pooling == quantized.pooling)
        for batch in TinyQuantBert.batches(2, seed: 33) {
            #expect(try loaded.logits(batch, backend: backend).floats == quantized.logits(batch, backend: backend).floats)
        }
        let file = try SafetensorsFile(path: directory + "/model.safetensors")
        let query = try #require(file.entries["bert.encoder.layer.0.attention.self.query.weight"])
        let (rows, columns) = cofi ? (16, 20) : (32, 32)
        let group = cofi ? 4 : 16
        #expect(query.dtype == (bits == 4 ? .u8 : .i8))
        #expect(query.shape == (bits == 4 ? [rows * columns / 2] : [rows, columns]))
        #expect(file.entries["bert.encoder.layer.0.attention.self.query.weight_scale"]?.shape == [rows, columns / group])
        #expect((file.entries["bert.encoder.layer.0.attention.self.query.weight_zero_point"] != nil) == !symmetric)
        #expect(file.metadata[ModelQuantization.metadataKey] == "weight_only")
    }

    @Test func int4NibbleOrderIsLowNibbleFirst() throws {
        let float = try TinyQuantBert.dense()
        let quantized = try WeightOnlyQuantizer.quantize(float, options: Self.options(bits: 4, cofi: false))
        let directory = try TinyQuantBert.temporaryDirectory("weight-only-nibbles")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
        let file = try SafetensorsFile(path: directory + "/model.safetensors")
        let bytes = try file.int64s("classifier.weight").map { UInt8(truncatingIfNeeded: $0) }
        let codes = try #require(quantized.weightOnlyLinears["classifier"]).codes.withUnsafeElements(Int8.self) { Array($0) }
        for (index, code) in codes.enumerated() {
            let byte = bytes[index / 2]
            let nibble = index % 2 == 0 ? byte & 0x0F : byte >> 4
            #expect(Int8(bitPattern: nibble << 4) >> 4 == code)
        }
    }

    @Test func sameInputsGiveIdenticalFiles() throws {
        let float = try TinyQuantBert.heterogeneous()
        var contents: [[Data]] = []
        for _ in 0..<2 {
            let quantized = try WeightOnlyQuantizer.quantize(float, options: WeightOnlyOptions(bits: 4, groupSize: 4, symmetric: false))
            let directory = try TinyQuantBert.temporaryDirectory("weight-only-digest")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try quantized.save(toDirectory: directory)
            contents.append(try ["model.safetensors", "config.json"].map { try Data(contentsOf: URL(fileURLWithPath: directory + "/" + $0)) })
        }
        #expect(contents[0] == contents[1])
    }

    @Test func badSettingsAreErrorsNamingTheModule() throws {
        let float = try TinyQuantBert.heterogeneous()
        let bits = try #require(throws: BertQuantizationError.self) {
            try WeightOnlyQuantizer.quantize(float, options: WeightOnlyOptions(bits: 3, groupSize: 4))
        }
        #expect(bits.message.contains("4 or 8"))
        let group = try #require(throws: BertQuantizationError.self) {
            try WeightOnlyQuantizer.quantize(float, options: WeightOnlyOptions(bits: 4, groupSize: 8))
        }
        #expect(group.message.contains("encoder.layer.0.attention.self.query") && group.message.contains("width 20"), "\(group.message)")
        #expect(group.message.contains("e.g. 4"), "\(group.message)")
        let skipped = try WeightOnlyQuantizer.quantize(
            float, options: WeightOnlyOptions(bits: 4, groupSize: 8, skip: ["query", "key", "value", "intermediate", "classifier"]))
        #expect(!skipped.quantization.modules.isEmpty)
    }

    static let query = "bert.encoder.layer.1.attention.self.query"

    static func weights(_ config: inout [String: Any], _ change: (inout [String: Any]) -> Void) {
        var section = config["quantization"] as? [String: Any] ?? [:]
        var weights = section["weights"] as? [String: Any] ?? [:]
        change(&weights)
        section["weights"] = weights
        config["quantization"] = section
    }

    /// Damage to an int4, group-16, symmetric dense model (query: 32 × 32, 2 groups per row).
    static let damages: [ArtifactDamage] = [
        ArtifactDamage("negative scale", "finite and positive") {
            $0[query + ".weight_scale"] = Tensor(shape: [32, 2], floats: [-1] + [Float](repeating: 0.01, count: 63))
        },
        ArtifactDamage("NaN scale", "finite and positive") { $0[query + ".weight_scale"] = Tensor(shape: [32, 2], floats: [Float](repeating: .nan, count: 64)) },
        ArtifactDamage("scale of another shape", "expected [256]") { $0[query + ".weight_scale"] = Tensor(shape: [32, 1], floats: [Float](repeating: 0.01, count: 32)) },
        ArtifactDamage("flat scale", "expected [out, in / group_size]") { $0[query + ".weight_scale"] = Tensor(shape: [64], floats: [Float](repeating: 0.01, count: 64)) },
        ArtifactDamage("missing scale", "missing tensor") { $0[query + ".weight_scale"] = nil },
        ArtifactDamage("too few int4 bytes", "expected [512]") { $0[query + ".weight"] = Tensor(shape: [511], uint8s: [UInt8](repeating: 0x11, count: 511)) },
        ArtifactDamage("int4 codes as I8", "expected U8") { $0[query + ".weight"] = Tensor(shape: [32, 32], int8s: [Int8](repeating: 1, count: 1024)) },
        ArtifactDamage("code -8 in a symmetric model", "outside the code range") {
            $0[query + ".weight"] = Tensor(shape: [512], uint8s: [0x08] + [UInt8](repeating: 0x11, count: 511))
        },
        ArtifactDamage("stray zero point", "unexpected tensor") { $0[query + ".weight_zero_point"] = Tensor(shape: [32, 2], int8s: [Int8](repeating: 0, count: 64)) },
        ArtifactDamage("missing codes", "missing tensors") { $0[query + ".weight"] = nil },
        ArtifactDamage("3 bits", "weights.bits", config: { config in weights(&config) { $0["bits"] = 3 } }),
        ArtifactDamage("8 bits over int4 codes", "expected I8", config: { config in weights(&config) { $0["bits"] = 8; $0["code_range"] = [-127, 127] } }),
        ArtifactDamage("group size 0", "group_size", config: { config in weights(&config) { $0["group_size"] = 0 } }),
        ArtifactDamage("no group size", "group_size", config: { config in weights(&config) { $0["group_size"] = nil } }),
        ArtifactDamage("group size 8", "expected [256]", config: { config in weights(&config) { $0["group_size"] = 8 } }),
        ArtifactDamage("huge group size", "too many weights", config: { config in weights(&config) { $0["group_size"] = Int.max / 2 } }),
        ArtifactDamage("per_channel", "per_group", config: { config in weights(&config) { $0["granularity"] = "per_channel" } }),
        ArtifactDamage("code range", "code_range", config: { config in weights(&config) { $0["code_range"] = [-8, 7] } }),
        ArtifactDamage("code bits as wide as the storage", "weights.code_bits is 4", config: { config in weights(&config) { $0["code_bits"] = 4 } }),
        ArtifactDamage("3-bit codes with the int4 range", "must be [-3, 3] for symmetric 3-bit", config: { config in weights(&config) { $0["code_bits"] = 3 } }),
        ArtifactDamage("int4 codes declared 3-bit", "outside the code range", config: { config in
            weights(&config) {
                $0["code_bits"] = 3
                $0["code_range"] = [-3, 3]
            }
        }),
        ArtifactDamage("activation section", "no `activations` section", config: { config in
            var section = config["quantization"] as? [String: Any] ?? [:]
            section["activations"] = ["bits": 8, "granularity": "per_tensor", "symmetric": false, "code_range": [0, 255]]
            config["quantization"] = section
        }),
        ArtifactDamage("observer", "no calibration", config: { config in
            var section = config["quantization"] as? [String: Any] ?? [:]
            section["observer"] = "minmax"
            config["quantization"] = section
        }),
    ]

    @Test(arguments: damages)
    func damagedArtifactsAreErrors(damage: ArtifactDamage) throws {
        let quantized = try WeightOnlyQuantizer.quantize(try TinyQuantBert.dense(), options: Self.options(bits: 4, cofi: false))
        let directory = try TinyQuantBert.temporaryDirectory("weight-only-damage")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
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
