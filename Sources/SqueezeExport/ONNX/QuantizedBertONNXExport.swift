import SqueezeCompress
import SqueezeModels
import SqueezeONNXProto
import SqueezeSupport

/// ONNX export of squeeze's W8A8 BERT classifiers (`quantize/ptq`, with or
/// without SmoothQuant, and `quantize/dynamic`): the float graph of
/// `BertONNXGraph` with each Linear emitted by `QuantizedBertLinearEmitter`
/// — static models in QDQ form with squeeze's own scales and zero points,
/// dynamic ones with squeeze's per-row or per-tensor range formula, skipped
/// modules in f32. docs/export-onnx-int8.md has the forms and the bounds.
public enum QuantizedBertONNXExport {
    /// The manifest's `source.kind` of a static and of a dynamic W8A8 model.
    public static let staticKind = "static_int8"
    public static let dynamicKind = "dynamic_int8"

    /// The model in `artifact` (a `squeeze.quantized/1` or `/2` W8A8 BERT).
    public static func model(artifact: ModelArtifact, opset: Int = ONNXOpset.default) throws(ModelFileError) -> Onnx_ModelProto {
        try model(directory: artifact.directory, opset: opset)
    }

    /// The quantized model saved in `directory` (`config.json` with its
    /// `quantization` section and `model.safetensors`).
    public static func model(directory: String, opset: Int = ONNXOpset.default) throws(ModelFileError) -> Onnx_ModelProto {
        try checkOpset(opset, file: directory)
        let quantized = try QuantizedBertModel(directory: directory)
        return try model(quantized, opset: opset, file: directory)
    }

    /// `quantized` as an ONNX model of `opset`; `file` names the source in
    /// errors. `exposingCodes` adds the u8 codes of every int8 Linear's input
    /// as outputs named `<module>.codes` (`[batch, rows, in]`; a layer's key
    /// and value share the query's), so the codes can be compared one by one with squeeze's.
    public static func model(
        _ quantized: QuantizedBertModel, opset: Int = ONNXOpset.default, file: String = "<quantized model>", exposingCodes: Bool = false
    ) throws(ModelFileError) -> Onnx_ModelProto {
        try checkOpset(opset, file: file)
        let kind = try kind(of: quantized, file: file)
        let emitter = QuantizedBertLinearEmitter(opset: opset, perTensorWeights: quantized.quantization.weights.granularity == .perTensor)
        var graph = BertONNXGraph(
            config: quantized.config, weights: quantized.weights, pooling: quantized.pooling, opset: opset, emitter: emitter,
            graphName: "squeeze_bert_\(kind)")
        do {
            try graph.build()
        } catch {
            throw ModelFileError(file: file, error.message)
        }
        var builder = graph.graph
        if exposingCodes {
            var exposed: Set<String> = []
            for (module, codes) in graph.emitter.codesByModule where exposed.insert(codes).inserted {
                let inputs = quantized.int8Linears[module]?.weights.inputCount ?? 0
                let name = module + ".codes"
                builder.addNode("Identity", inputs: [codes], outputs: [name])
                builder.addOutput(name, .uint8, [.symbolic("batch"), .symbolic(module + ".rows"), .fixed(inputs)])
            }
        }
        return builder.model(
            opset: opset, producerVersion: SqueezeVersion.current,
            docString: "squeeze \(kind) BERT classifier: logits from input_ids, attention_mask, token_type_ids",
            metadata: metadata(quantized, kind: kind))
    }

    /// `static_int8` or `dynamic_int8`; a weight-only model is refused with the reason.
    public static func kind(of quantized: QuantizedBertModel, file: String = "<quantized model>") throws(ModelFileError) -> String {
        switch quantized.quantization.mode {
        case .static: return staticKind
        case .dynamic: return dynamicKind
        case .weightOnly:
            throw ModelFileError(
                file: file,
                "is a weight-only model (int4/int8 per-group weights with f32 activations); the int8 ONNX export takes W8A8 models from quantize/ptq or quantize/dynamic")
        }
    }

    /// What the export promises against squeeze's own forward pass (the
    /// manifest's `guarantee`; docs/export-onnx-int8.md derives it).
    public static func guarantee(kind: String) -> String {
        let common =
            "Same int8 weights, weight scales and integer sums as squeeze; skipped modules f32. Float ops (LayerNorm, softmax, GELU, attention products) round differently in ONNX Runtime, so an activation whose value lies within rounding of a code boundary can get the neighbouring code (never more than one code away), and the Linear epilogue may round once more (multiply then add where squeeze fuses them)."
        if kind == staticKind {
            return common
                + " Static activations use squeeze's scale and zero point in QuantizeLinear, which divides by the scale where squeeze multiplies by its reciprocal: the two differ by at most one code, only for values within 2^-22 relative of a rounding tie. Logits agree with squeeze's within the bound docs/export-onnx-int8.md states and the tests check."
        }
        return common
            + " Dynamic ranges, scales and zero points are computed with squeeze's formula (multiplying by the reciprocal, half-to-even rounding), so equal f32 inputs give equal codes. Logits agree with squeeze's within the bound docs/export-onnx-int8.md states and the tests check."
    }

    /// Target details for `squeeze-export.json`.
    public static func details(_ quantized: QuantizedBertModel, opset: Int) -> [String: Value] {
        let quantization = quantized.quantization
        var details: [String: Value] = [
            "opset": .int(opset),
            "inputs": .array(BertONNXGraph<QuantizedBertLinearEmitter>.inputNames.map { .string($0) }),
            "outputs": .array([.string(BertONNXGraph<QuantizedBertLinearEmitter>.outputName)]),
            "dynamic_axes": .object(["batch": .string("input axis 0"), "sequence": .string("input axis 1, 1 … \(quantized.config.maxPositionEmbeddings)")]),
            "quantization_mode": .string(quantization.mode.rawValue),
            "weight_granularity": .string(quantization.weights.granularity.rawValue),
            "int8_modules": .int(quantization.modules.count),
            "f32_modules": .array(quantization.skipped.map { .string($0.module) }),
        ]
        if let activations = quantization.activations {
            details["activation_granularity"] = .string(activations.granularity.rawValue)
            details["activation_code_range"] = .array(activations.codeRange.map { .int($0) })
        }
        details["linear_form"] = .string(
            quantization.mode == .static
                ? "QuantizeLinear/DequantizeLinear (u8 activations, per-axis int8 weights) + MatMul + Add"
                : "squeeze's range formula from primitive ops + MatMulInteger + int32 zero-point correction + scale + Add")
        if let smoothing = quantization.smoothing {
            details["smoothing_alpha"] = .double(smoothing.alpha)
            details["smoothed_modules"] = .int(smoothing.modules.count)
        }
        return details
    }

    static func metadata(_ quantized: QuantizedBertModel, kind: String) -> [String: String] {
        var metadata = [
            "squeeze.kind": kind,
            "squeeze.quantization.format": quantized.quantization.format,
            "squeeze.pooling": quantized.pooling.rawValue,
            "squeeze.labels": quantized.config.labels.joined(separator: ","),
        ]
        if let activations = quantized.quantization.activations {
            metadata["squeeze.activations"] = activations.granularity.rawValue
        }
        return metadata
    }

    static func checkOpset(_ opset: Int, file: String) throws(ModelFileError) {
        guard (ONNXOpset.minimum...ONNXOpset.maximum).contains(opset) else {
            throw ModelFileError(
                file: file,
                "cannot be exported at opset \(opset): the int8 BERT graph needs opset \(ONNXOpset.minimum) or newer (LayerNormalization), and squeeze writes at most opset \(ONNXOpset.maximum); choose one in \(ONNXOpset.minimum)…\(ONNXOpset.maximum)")
        }
    }
}
