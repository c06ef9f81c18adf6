import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeONNXProto
import SqueezeSupport
import SqueezeTensor

/// Why a decoder cannot be exported to ONNX as asked; thrown before any work.
public enum DecoderONNXExportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The opset is outside what the exports are written for.
    case unsupportedOpset(Int)
    /// A construct of the model needs a newer opset (`construct` says which).
    case opsetTooLow(requested: Int, required: Int, construct: String)
    /// The model cannot be written as one ONNX file (size, quantization kind, …).
    case unsupported(String)
    /// The artifact could not be read.
    case model(ModelFileError)

    public var description: String {
        switch self {
        case .unsupportedOpset(let opset):
            "opset \(opset) is not supported; choose an opset from \(ONNXOpset.minimum) to \(ONNXOpset.maximum)"
        case .opsetTooLow(let requested, let required, let construct):
            "\(construct) needs opset \(required), but opset \(requested) was requested; set `opset: \(required)` (or higher)"
        case .unsupported(let reason):
            reason
        case .model(let error):
            error.description
        }
    }

    /// The error as a `ModelFileError` on `file` (what stages and the
    /// `export/onnx` dispatcher report), keeping a model error's own file.
    public func modelFileError(file: String) -> ModelFileError {
        if case .model(let error) = self { return error }
        return ModelFileError(file: file, "cannot be exported to ONNX: \(description)")
    }
}

/// ONNX export of Squeeze's decoder language models (Llama, Mistral, Qwen2,
/// GPT-2; float, sparse and weight-only int4/int8), with or without the
/// Hugging Face / Optimum KV-cache interface. `docs/export-onnx-decoder.md`
/// describes the graph's inputs and outputs and what it guarantees.
///
/// Inputs: `input_ids` i64 `[batch, sequence]` and `attention_mask` i64
/// `[batch, sequence]` (`[batch, past + sequence]` with a cache); with a
/// cache also `past_key_values.{i}.key`/`.value` f32 `[batch, kv heads,
/// past, head dim]` (past may be 0). Outputs: `logits` f32 `[batch,
/// sequence, vocab]`, with a cache also `present.{i}.key`/`.value` (past and
/// new keys, after the rotary embedding, as `transformers` caches them).
/// Position ids are derived inside the graph from the mask, as
/// `transformers`' `generate` derives them (`cumsum(mask) − 1`), so rows may be
/// padded on either side.
public enum DecoderONNXExport {
    /// What a weight-only (blocked `DequantizeLinear`, int4) graph needs.
    public static let weightOnlyOpset = 21
    /// Protobuf's hard limit for one message; larger models would need ONNX external data.
    static let protobufLimit = 2_000_000_000

    /// The graph of a float (dense or sparse) decoder.
    public static func model(_ model: DecoderModel, opset: Int = ONNXOpset.default, kvCache: Bool) throws(DecoderONNXExportError)
        -> Onnx_ModelProto
    {
        try check(opset: opset)
        let parameters = model.weights.map { _, tensor in DecoderONNXParameter.float(tensor) }
        try checkSize(parameters)
        return build(config: model.config, inverseFrequencies: model.inverseFrequencies, parameters, opset: opset, kvCache: kvCache)
    }

    /// The graph of a weight-only quantized decoder: each quantized Linear
    /// keeps its int4/int8 codes and per-group scales (and zero points),
    /// dequantized by a blocked `DequantizeLinear` to exactly Squeeze's
    /// `ŵ = scale · (q − zero)`. Needs opset 21.
    public static func model(_ model: QuantizedDecoderModel, opset: Int = weightOnlyOpset, kvCache: Bool) throws(DecoderONNXExportError)
        -> Onnx_ModelProto
    {
        try check(opset: opset)
        let bits = model.quantization.weights.bits
        guard opset >= weightOnlyOpset else {
            throw .opsetTooLow(
                requested: opset, required: weightOnlyOpset,
                construct: "a weight-only int\(bits) decoder (blocked DequantizeLinear with `block_size`\(bits == 4 ? ", INT4 tensors" : ""))")
        }
        let parameters = try model.weights.map { (name, value) throws(DecoderONNXExportError) -> DecoderONNXParameter in
            switch value {
            case .tensor(let tensor):
                return .float(tensor)
            case .linear(let linear):
                switch linear.kernel {
                case .float(let tensor): return .float(tensor)
                case .weightOnly(let weightOnly): return .grouped(weightOnly.weights)
                case .int8: throw .unsupported("`\(name)` is a W8A8 layer; decoders are exported float or weight-only")
                }
            }
        }
        try checkSize(parameters)
        return build(config: model.config, inverseFrequencies: DecoderModel.rotaryInverseFrequencies(model.config), parameters, opset: opset, kvCache: kvCache)
    }

    /// Reads a decoder artifact (float, sparse or weight-only) and builds its
    /// graph. The opset defaults to 17 for float models and 21 for weight-only ones.
    public static func model(artifact: ModelArtifact, opset: Int? = nil, kvCache: Bool) throws(DecoderONNXExportError) -> Onnx_ModelProto {
        switch try load(artifact) {
        case .float(let decoder): try Self.model(decoder, opset: opset ?? ONNXOpset.default, kvCache: kvCache)
        case .weightOnly(let decoder): try Self.model(decoder, opset: opset ?? weightOnlyOpset, kvCache: kvCache)
        }
    }

    /// A built graph with what `squeeze-export.json` says of it.
    public struct Exported: Sendable {
        public var model: Onnx_ModelProto
        /// `dense`, `sparse` or `weight_only`.
        public var kind: String
        /// Opset, cache, inputs and outputs, dynamic axes, how positions are derived, the quantization.
        public var details: [String: Value]
        /// The exactness against Squeeze's forward, in words.
        public var guarantee: String
    }

    /// The graph of the decoder `artifact` (float, sparse or weight-only) and
    /// its manifest details; the opset defaults to 17 (float) or 21 (weight-only).
    public static func exported(artifact: ModelArtifact, opset requested: Int? = nil, kvCache: Bool) throws(DecoderONNXExportError) -> Exported {
        do {
            try ExportDirectory.requireTokenizer(of: artifact, [ModelArtifact.tokenizerFileName])
        } catch {
            throw .model(error)
        }
        let loaded = try load(artifact)
        let opset = requested ?? loaded.defaultOpset
        let graph: Onnx_ModelProto
        switch loaded {
        case .float(let decoder): graph = try Self.model(decoder, opset: opset, kvCache: kvCache)
        case .weightOnly(let decoder): graph = try Self.model(decoder, opset: opset, kvCache: kvCache)
        }
        return Exported(model: graph, kind: loaded.kind, details: details(loaded, opset: opset, kvCache: kvCache), guarantee: loaded.guarantee)
    }

    /// `ONNXExport`'s exporter for decoder artifacts (float, sparse or
    /// weight-only): the graph and what `squeeze-export.json` says of it.
    static func export(artifact: ModelArtifact, kind: ArtifactKind, options: ONNXExport.Options) throws(ModelFileError)
        -> ONNXExportedModel
    {
        do {
            let exported = try Self.exported(artifact: artifact, opset: options.opset, kvCache: options.kvCache)
            return ONNXExportedModel(
                model: exported.model, nodeCount: exported.model.graph.node.count, details: exported.details,
                guarantee: exported.guarantee)
        } catch {
            throw error.modelFileError(file: artifact.directory)
        }
    }

    // MARK: Loading

    enum Loaded {
        case float(DecoderModel)
        case weightOnly(QuantizedDecoderModel)

        var defaultOpset: Int {
            if case .weightOnly = self { return weightOnlyOpset }
            return ONNXOpset.default
        }

        var kind: String {
            switch self {
            case .float(let model): model.masks.isEmpty ? "dense" : "sparse"
            case .weightOnly: "weight_only"
            }
        }

        var guarantee: String {
            switch self {
            case .float:
                "f32 graph of Squeeze's decoder forward pass (same weights, same operations in f32); "
                    + "ONNX Runtime's logits match Squeeze's within 1e-4 (max abs) on the tested models, "
                    + "with and without the KV cache; position ids are cumsum(attention_mask) - 1, so padded rows "
                    + "give, at their real tokens, Squeeze's logits of the unpadded row"
            case .weightOnly:
                "weight-only codes, scales and zero points stored as Squeeze stores them; blocked DequantizeLinear "
                    + "computes scale * (q - zero) in f32, Squeeze's dequantized weight bit for bit; the rest is the f32 graph, "
                    + "so ONNX Runtime's logits match Squeeze's within 1e-4 (max abs) on the tested models when ONNX Runtime "
                    + "does not replace DequantizeLinear+MatMul by MatMulNBits at accuracy level 4 (int8 activations; see docs)"
            }
        }
    }

    static func load(_ artifact: ModelArtifact) throws(DecoderONNXExportError) -> Loaded {
        do {
            guard artifact.isDecoder else {
                throw DecoderONNXExportError.unsupported(
                    "\(artifact.directory) is a \(artifact.manifest.architecture) model, not a decoder (\(DecoderFamily.supportedList))")
            }
            guard let quantization = try ModelQuantization.read(configFile: artifact.configPath) else {
                return .float(try artifact.decoderModel())
            }
            guard quantization.mode == .weightOnly else {
                throw DecoderONNXExportError.unsupported(
                    "a \(quantization.mode.rawValue) quantized decoder cannot be exported; decoders export float or weight-only")
            }
            return .weightOnly(try QuantizedDecoderModel(directory: artifact.directory))
        } catch let error as DecoderONNXExportError {
            throw error
        } catch let error as ModelFileError {
            throw .model(error)
        } catch {
            throw .unsupported("cannot read \(artifact.directory): \(error)")
        }
    }

    // MARK: Building

    static func check(opset: Int) throws(DecoderONNXExportError) {
        guard ONNXOpset.supported.contains(opset) else { throw .unsupportedOpset(opset) }
    }

    /// Refuses a model whose weights alone reach protobuf's 2 GB message limit.
    static func checkSize(_ parameters: DecoderWeights<DecoderONNXParameter>) throws(DecoderONNXExportError) {
        let bytes = parameters.elements.reduce(0) { total, parameter in
            switch parameter {
            case .float(let tensor): total + tensor.count * 4
            case .grouped(let packed): total + packed.byteCount
            }
        }
        guard bytes < protobufLimit else {
            throw .unsupported(
                "the weights take \(bytes) bytes, over the 2 GB a single ONNX file can hold; external-data ONNX is not supported yet")
        }
    }

    static func build(
        config: DecoderConfig, inverseFrequencies: [Float], _ parameters: DecoderWeights<DecoderONNXParameter>, opset: Int, kvCache: Bool
    ) -> Onnx_ModelProto {
        let graph = DecoderONNXGraph(config: config, inverseFrequencies: inverseFrequencies, opset: opset, kvCache: kvCache)
        graph.build(parameters)
        return graph.builder.model(
            opset: opset, producerVersion: SqueezeVersion.current,
            docString: "Squeeze \(config.family.rawValue) decoder\(kvCache ? " with KV cache" : "")",
            metadata: [
                "squeeze.family": config.family.rawValue,
                "squeeze.kv_cache": kvCache ? "true" : "false",
                "squeeze.num_hidden_layers": String(config.numHiddenLayers),
                "squeeze.num_key_value_heads": String(config.numKeyValueHeads),
                "squeeze.head_dim": String(config.headDimension),
                "squeeze.position_ids": "cumsum(attention_mask, axis 1) - 1, clamped at 0",
            ])
    }

    static func details(_ loaded: Loaded, opset: Int, kvCache: Bool) -> [String: Value] {
        let config: DecoderConfig
        switch loaded {
        case .float(let model): config = model.config
        case .weightOnly(let model): config = model.config
        }
        var inputs: [Value] = [.string("input_ids"), .string("attention_mask")]
        var outputs: [Value] = [.string("logits")]
        if kvCache {
            inputs.append(.string("past_key_values.{0..\(config.numHiddenLayers - 1)}.{key,value}"))
            outputs.append(.string("present.{0..\(config.numHiddenLayers - 1)}.{key,value}"))
        }
        var details: [String: Value] = [
            "decoder_kind": .string(loaded.kind),
            "opset": .int(opset),
            "kv_cache": .bool(kvCache),
            "inputs": .array(inputs),
            "outputs": .array(outputs),
            "dynamic_axes": .array([.string("batch_size"), .string("sequence_length")] + (kvCache ? [.string("past_sequence_length")] : [])),
            "position_ids": .string("derived from attention_mask: cumsum - 1 (left or right padding)"),
            "num_hidden_layers": .int(config.numHiddenLayers),
            "num_key_value_heads": .int(config.numKeyValueHeads),
            "head_dim": .int(config.headDimension),
        ]
        if case .weightOnly(let model) = loaded {
            let weights = model.quantization.weights
            details["weight_only"] = .object([
                "bits": .int(weights.bits), "group_size": .int(weights.groupSize ?? 0), "symmetric": .bool(weights.symmetric),
                "modules": .int(model.quantization.modules.count),
            ])
        }
        return details
    }
}
