import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeTensor
import Testing

/// Round-to-nearest weight-only decoders (`WeightOnlyQuantizer.quantize` of
/// a `DecoderModel`): which layers, the codes, the forward pass, bad settings.
@Suite struct WeightOnlyDecoderQuantizerTests {
    let backend = CPUBackend(threads: 2)

    /// Hidden 16 and FFN 32, so groups of 8 divide every block layer's input; an untied head.
    static func model(tied: Bool = false) throws -> DecoderModel {
        var config = DecoderConfig(
            family: .llama, vocabSize: 29, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
            numKeyValueHeads: 2, maxPositionEmbeddings: 16, initializerRange: 0.4)
        config.tieWordEmbeddings = tied
        return try DecoderModel(randomWithConfig: config, seed: 3)
    }

    static let blockLayers = (0..<2).flatMap { layer in
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
            .map { "model.layers.\(layer).\($0)" }
    }

    @Test(arguments: [4, 8]) func everyBlockLinearIsRoundedToNearestAndTheHeadStaysFloat(bits: Int) throws {
        let model = try Self.model()
        let quantized = try WeightOnlyQuantizer.quantize(model, options: WeightOnlyOptions(bits: bits, groupSize: 8))
        #expect(quantized.quantization.modules == Self.blockLayers)
        #expect(quantized.quantization.skipped == [.init(module: "lm_head", reason: "outside the decoder blocks")])
        #expect(quantized.quantization.weights.bits == bits)
        #expect(quantized.quantization.weights.groupSize == 8)

        var dequantized: [String: Tensor] = [:]
        for (name, value) in zip(model.weights.names, quantized.weights.elements) {
            guard case .linear(let linear) = value, case .weightOnly(let weightOnly) = linear.kernel else {
                #expect(!Self.blockLayers.contains(String(name.dropLast(".weight".count))), "\(name) stayed float")
                continue
            }
            let expected = try PackedGroupWeights(quantizing: try model.linearWeight(linear.module), bits: bits, groupSize: 8)
            #expect(weightOnly.weights.codes.int8s == expected.codes.int8s, "\(name)")
            #expect(weightOnly.weights.scales == expected.scales, "\(name)")
            dequantized[name] = weightOnly.weights.dequantized()
        }
        #expect(dequantized.count == Self.blockLayers.count)

        // The quantized forward is the float forward of the dequantized weights.
        let reference = try DecoderModel(config: model.config, weights: model.weights.map { name, tensor in dequantized[name] ?? tensor })
        let ids = Tensor(shape: [1, 6], int32s: [1, 5, 28, 0, 7, 7])
        var cache: DecoderKVCache?
        let logits = quantized.forward(backend: backend)(ids, &cache).floats
        let expected = try reference.logits(ids, backend: backend).floats
        #expect(logits.count == expected.count)
        let worst = zip(logits, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-4, "largest difference \(worst)")
    }

    /// A saved weight-only decoder reads back to the same forward pass; a
    /// checkpoint without the quantization section, or of another mode, is refused.
    @Test(arguments: [4, 8]) func savedModelsReadBackAndWrongOnesAreRefused(bits: Int) throws {
        let quantized = try WeightOnlyQuantizer.quantize(try Self.model(), options: WeightOnlyOptions(bits: bits, groupSize: 8))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wo-decoder-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
        let reloaded = try QuantizedDecoderModel(directory: directory)
        #expect(reloaded.quantization == quantized.quantization)
        let ids = Tensor(shape: [1, 5], int32s: [3, 1, 4, 1, 5])
        var first: DecoderKVCache?
        var second: DecoderKVCache?
        #expect(quantized.forward(backend: backend)(ids, &first).floats == reloaded.forward(backend: backend)(ids, &second).floats)

        let configPath = directory + "/config.json"
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        var dynamic = config
        var section = try #require(config["quantization"] as? [String: Any])
        section["mode"] = "dynamic"
        dynamic["quantization"] = section
        try JSONSerialization.data(withJSONObject: dynamic).write(to: URL(fileURLWithPath: configPath))
        #expect(throws: ModelFileError.self) { try QuantizedDecoderModel(directory: directory) }
        var plain = config
        plain["quantization"] = nil
        try JSONSerialization.data(withJSONObject: plain).write(to: URL(fileURLWithPath: configPath))
        do {
            _ = try QuantizedDecoderModel(directory: directory)
            Issue.record("a checkpoint without a quantization section read as quantized")
        } catch {
            #expect(error.description.contains("has no `quantization` section"))
        }
    }

    @Test func skipPatternsKeepLayersFloatAndATiedHeadIsNoLayer() throws {
        let quantized = try WeightOnlyQuantizer.quantize(
            try Self.model(tied: true), options: WeightOnlyOptions(bits: 4, groupSize: 16, skip: ["mlp.down_proj"]))
        #expect(quantized.quantization.modules == Self.blockLayers.filter { !$0.hasSuffix("down_proj") })
        #expect(quantized.quantization.skipped.map(\.module) == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"])
        #expect(quantized.quantization.skipped.allSatisfy { $0.reason == "skip pattern `mlp.down_proj`" })
    }

    @Test func badSettingsAreErrorsNamingTheLayer() throws {
        let model = try Self.model()
        let width = try #require(throws: ModelFileError.self) {
            try WeightOnlyQuantizer.quantize(model, options: WeightOnlyOptions(bits: 4, groupSize: 12))
        }
        #expect(width.message.contains("`model.layers.0.self_attn.q_proj`"), "\(width)")
        #expect(width.message.contains("12"), "\(width)")
        let bits = try #require(throws: ModelFileError.self) {
            try WeightOnlyQuantizer.quantize(model, options: WeightOnlyOptions(bits: 3))
        }
        #expect(bits.message.contains("4 or 8"), "\(bits)")
    }
}
