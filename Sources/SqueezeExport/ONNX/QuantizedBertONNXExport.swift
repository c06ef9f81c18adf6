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
    public static func model(
        artifact: ModelArtifact, opset: Int = ONNXOpset.default, staticForm: StaticQuantizeForm = .exactCodes
    ) throws(ModelFileError) -> Onnx_ModelProto {
        try model(directory: artifact.directory, opset: opset, staticForm: staticForm)
    }

    /// The quantized model saved in `directory` (`config.json` with its
    /// `quantization` section and `model.safetensors`).
    public static func model(
        directory: String, opset: Int = ONNXOpset.default, staticForm: StaticQuantizeForm = .exactCodes
    ) throws(ModelFileError) -> Onnx_ModelProto {
        try ONNXExport.checkOpset(opset, file: directory)
        let quantized = try QuantizedBertModel(directory: directory)
        return try model(quantized, opset: opset, file: directory, staticForm: staticForm)
    }

    /// `quantized` as an ONNX model of `opset`; `file` names the source in
    /// errors. `exposingCodes` adds the u8 codes of every int8 Linear's input
    /// as outputs named `<module>.codes` (`[batch, rows, in]`; a layer's key
    /// and value share the query's), so the codes can be compared one by one with squeeze's.
    public static func model(
        _ quantized: QuantizedBertModel, opset: Int = ONNXOpset.default, file: String = "<quantized model>",
        staticForm: StaticQuantizeForm = .exactCodes, exposingCodes: Bool = false
    ) throws(ModelFileError) -> Onnx_ModelProto {
        try ONNXExport.checkOpset(opset, file: file)
        let kind = try kind(of: quantized, file: file)
        let emitter = QuantizedBertLinearEmitter(
            opset: opset, perTensorWeights: quantized.quantization.weights.granularity == .perTensor, staticForm: staticForm)
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
            docString: "squeeze \(kind) BERT classifier: logits from input_ids and attention_mask",
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
    public static func guarantee(kind: String, staticForm: StaticQuantizeForm = .exactCodes) -> String {
        let codes: String
        if kind == dynamicKind {
            codes = "Dynamic ranges, scales and zero points use squeeze's formula op for op (per row or per tensor, widened to 0, x·(1/scale), half-to-even rounding), so an int8 Linear given squeeze's f32 input computes squeeze's codes."
        } else if staticForm == .exactCodes {
            codes = "Static activations are quantized with squeeze's scales and zero points as x·(1/s_x) (with SmoothQuant's multipliers folded in per column) before QuantizeLinear with scale 1, so an int8 Linear given squeeze's f32 input computes squeeze's codes."
        } else {
            codes = "Static activations go through QuantizeLinear(x, s_x, z_x) with squeeze's scales and zero points; it divides where squeeze multiplies by 1/s_x, so a code can differ by one for values within 2^-22 (relative) of a rounding tie."
        }
        return codes
            + " The int8 weights, weight scales and integer sums are squeeze's; skipped and empty modules run in f32. Not bit-exact: ONNX Runtime's float ops (LayerNorm, softmax, GELU, attention products, the Linear epilogue) round differently, so a value within rounding of a code boundary can get the neighbouring code, and in a trained model a moved code moves values downstream. docs/export-onnx-int8.md gives the differences measured on real models."
    }

    /// Target details for `squeeze-export.json`.
    public static func details(_ quantized: QuantizedBertModel, opset: Int, staticForm: StaticQuantizeForm = .exactCodes) -> [String: Value] {
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
        if quantization.mode == .static { details["static_form"] = .string(staticForm.rawValue) }
        details["linear_form"] = .string(
            quantization.mode == .static
                ? (staticForm == .exactCodes
                    ? "Mul by 1/s_x, QuantizeLinear (scale 1, z_x) / DequantizeLinear (s_x, z_x), int8 weights through DequantizeLinear, MatMul + Add"
                    : "QuantizeLinear/DequantizeLinear (s_x, z_x), int8 weights through DequantizeLinear, MatMul + Add")
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
}

extension QuantizedBertONNXExport {
    /// `ONNXExport`'s exporter for `static_int8` and `dynamic_int8` artifacts
    /// (the exact-codes static form).
    static func export(artifact: ModelArtifact, kind: ArtifactKind, options: ONNXExport.Options) throws(ModelFileError) -> ONNXExportedModel {
        let quantized = try QuantizedBertModel(directory: artifact.directory)
        let proto = try model(quantized, opset: options.opset, file: artifact.directory)
        return ONNXExportedModel(
            model: proto, nodeCount: proto.graph.node.count, details: details(quantized, opset: options.opset),
            guarantee: guarantee(kind: kind.rawValue))
    }
}
