import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// A float BERT classifier as `BertForSequenceClassification`: dense,
/// sparse (pruned positions stored as zeros) or CoFi-pruned (heads and FFN
/// units zero-padded back to one shape for every layer).
///
/// Why the padding is exact: a padded head has zero query, key and value
/// rows and biases and zero columns in the attention output projection, so
/// its context is zero and it adds exactly 0 to the output; a padded FFN
/// unit has a zero row and bias (GELU(0) = 0) and a zero column in the down
/// projection. A layer CoFi emptied (no heads, or no units) computes, in
/// Squeeze, its output bias followed by the residual LayerNorm
/// (`BertModel.encoderLayer`), which is what an all-padded layer computes.
/// A pruned hidden size is different: LayerNorm's mean and variance run
/// over the kept dimensions, so zero dimensions cannot be padded back.
/// Stock BERT can still express it when the hidden size is a whole number
/// of heads (`hidden_size / num_attention_heads` is the head size there);
/// otherwise the export is refused.
enum BertHFExport {
    struct Prepared {
        var model: BertModel
        /// Heads and FFN width every exported layer has.
        var heads: Int
        var intermediateSize: Int
        var padded: Bool
        /// The checkpoint has no classifier: Squeeze's seeded one is exported.
        var seededClassifier: Bool
        var lowercase: Bool
    }

    /// Loads the model as Squeeze's stages do (a missing classifier from
    /// seed 0, as `eval/classification`), and refuses what
    /// `BertForSequenceClassification` cannot compute.
    static func prepare(_ artifact: ModelArtifact) throws(HFExportError) -> Prepared {
        let (model, hasClassifier, lowercase) = try HFCheckpointExport.wrapping {
            () throws(ModelFileError) -> (BertModel, Bool, Bool) in
            let config = try BertConfig(contentsOfFile: artifact.configPath)
            let file = try artifact.weights()
            let sparse = try file.sparseMasks()
            let hasClassifier = file.entries["classifier.weight"] != nil || sparse["classifier.weight"] != nil
            let model = try BertModel(config: config, file: file, classifierSeed: 0)
            return (model, hasClassifier, try artifact.tokenizer().basic.lowercase)
        }
        guard model.pooling == .pooler else {
            throw .refused("""
                the model pools by the mean of its hidden states (`squeeze_pooling: mean`), but \
                `BertForSequenceClassification` classifies the pooler's output for the first token; the checkpoint would \
                compute something else. Export it with `export/onnx`, or fine-tune it with `pooling: pooler`
                """)
        }
        let config = model.config
        let headDimension = config.headDimension
        let hidden = config.hiddenSize
        let mostHeads = model.layerShapes.map(\.heads).max() ?? 0
        guard hidden % headDimension == 0, hidden / headDimension >= mostHeads else {
            throw .refused("""
                the model's hidden size \(hidden) (pruned by CoFi) is not a whole number of its \(headDimension)-wide heads \
                (\(mostHeads) in the widest layer): `transformers` BERT takes the head size as hidden_size / num_attention_heads, \
                and padding the pruned hidden dimensions back with zeros would change every LayerNorm's mean and variance, so no \
                stock BERT checkpoint computes what this model computes. Export it with `export/onnx`, which keeps the pruned shapes
                """)
        }
        let heads = hidden / headDimension
        let widest = model.layerShapes.map(\.intermediateSize).max() ?? 0
        let uniform = model.layerShapes.allSatisfy { $0.heads == heads && $0.intermediateSize == widest }
        return Prepared(
            model: model, heads: heads, intermediateSize: Swift.max(widest, 1), padded: !uniform || widest == 0,
            seededClassifier: !hasClassifier, lowercase: lowercase)
    }

    static func write(
        _ prepared: Prepared, into directory: inout ExportDirectory, artifact: ModelArtifact
    ) throws(HFExportError) -> HFCheckpointExport.Written {
        let model = prepared.model
        let rows = prepared.heads * model.config.headDimension
        let width = prepared.intermediateSize
        var weights = model.weights
        weights.layers = weights.layers.map { layer in
            var padded = layer
            padded.query = padRows(layer.query, to: rows)
            padded.key = padRows(layer.key, to: rows)
            padded.value = padRows(layer.value, to: rows)
            padded.attentionOutput.weight = padColumns(layer.attentionOutput.weight, to: rows)
            padded.intermediate = padRows(layer.intermediate, to: width)
            padded.output.weight = padColumns(layer.output.weight, to: width)
            return padded
        }
        let tensors = weights.map { name, tensor in
            HFCheckpointExport.raw(hfName(name), tensor)
        }.elements
        try HFCheckpointExport.writeWeights(tensors, into: &directory)

        let config = hfConfig(model.config, heads: prepared.heads, width: width)
        try HFCheckpointExport.wrapping { () throws(ModelFileError) in
            try directory.write(ModelArtifact.configFileName, config.jsonData())
        }
        try writeTokenizerConfig(config, lowercase: prepared.lowercase, into: &directory)

        var details: [String: Value] = [
            "architecture": .string("BertForSequenceClassification"),
            "auto_class": .string("AutoModelForSequenceClassification"),
            "num_attention_heads": .int(prepared.heads),
            "intermediate_size": .int(width),
            "hidden_size": .int(config.hiddenSize),
            "labels": .array(config.labels.map(Value.string)),
            "parameters": .int(weights.elements.reduce(0) { $0 + $1.count }),
        ]
        if prepared.seededClassifier {
            details["classifier"] = .string(
                "the source checkpoint has no classifier; the one Squeeze evaluates with (initialised from seed 0) is exported")
        }
        var kind = "dense"
        if !model.masks.isEmpty {
            kind = "sparse"
            details["sparsity"] = HFSparsity.details(model.masks)
        }
        if prepared.padded {
            kind = "cofi"
            let compactParameters = model.parameterCount
            let compactBytes = HFCheckpointExport.size(of: artifact.weightsPath)
            let exportedParameters = weights.elements.reduce(0) { $0 + $1.count }
            let exportedBytes = HFCheckpointExport.size(of: directory.path + "/" + ModelArtifact.weightsFileName)
            details["padding"] = .object([
                "layers": .array(model.layerShapes.map { shape in
                    .object(["heads": .int(shape.heads), "intermediate_size": .int(shape.intermediateSize)])
                }),
                "padded_to": .object(["heads": .int(prepared.heads), "intermediate_size": .int(width)]),
                "compact_parameters": .int(compactParameters),
                "exported_parameters": .int(exportedParameters),
                "compact_safetensors_bytes": .int(compactBytes),
                "exported_safetensors_bytes": .int(exportedBytes),
                "note": .string("""
                    heads and FFN units CoFi removed are zero rows and columns here (exact: they contribute 0); the \
                    checkpoint holds \(exportedParameters - compactParameters) more parameters than the compact model
                    """),
            ])
        }
        let guarantee = """
            transformers' BertForSequenceClassification (float32, eval) computes Squeeze's forward on the same weights: \
            logits equal up to float rounding (tested ≤ 1e-4)\(prepared.padded ? "; the zero padding of heads and FFN units is exact" : "")
            """
        return HFCheckpointExport.Written(sourceKind: kind, details: details, guarantee: guarantee)
    }

    /// The name `BertForSequenceClassification` gives a Squeeze parameter or module.
    static func hfName(_ name: String) -> String { name.hasPrefix("classifier") ? name : "bert." + name }

    /// The config `BertForSequenceClassification` reads for layers of `heads`
    /// heads and `width` FFN units: no Squeeze-only keys (`squeeze_layers`,
    /// `squeeze_pooling`, `attention_head_size`, `quantization`).
    static func hfConfig(_ base: BertConfig, heads: Int, width: Int) -> BertConfig {
        var config = base
        config.numAttentionHeads = heads
        config.intermediateSize = width
        config.attentionHeadSize = nil
        config.layerShapes = nil
        config.pooling = nil
        return config
    }

    /// `tokenizer_config.json`: BERT's WordPiece tokenizer with Squeeze's lower-casing and length limit.
    static func writeTokenizerConfig(_ config: BertConfig, lowercase: Bool, into directory: inout ExportDirectory) throws(HFExportError) {
        let settings: [String: Value] = [
            "tokenizer_class": .string("BertTokenizer"),
            "do_lower_case": .bool(lowercase),
            "model_max_length": .int(config.maxPositionEmbeddings),
        ]
        try HFCheckpointExport.wrapping { () throws(ModelFileError) in
            try directory.write(HFCheckpointExport.tokenizerConfigFileName, Data(Value.object(settings).prettyJSON.utf8))
        }
    }

    /// A weight-only BERT (`quantize/weight-only`) as compressed-tensors;
    /// its layers must already have one shape (quantized codes are not padded).
    static func prepareWeightOnly(_ artifact: ModelArtifact) throws(HFExportError) -> (QuantizedBertModel, lowercase: Bool) {
        let (model, lowercase) = try HFCheckpointExport.wrapping { () throws(ModelFileError) -> (QuantizedBertModel, Bool) in
            (try QuantizedBertModel(directory: artifact.directory), try artifact.tokenizer().basic.lowercase)
        }
        guard model.pooling == .pooler else {
            throw .refused("""
                the model pools by the mean of its hidden states, but `BertForSequenceClassification` classifies the \
                pooler's output for the first token. Export it with `export/onnx`
                """)
        }
        let config = model.config
        let uniform = model.layerShapes.allSatisfy {
            $0.heads == config.numAttentionHeads && $0.intermediateSize == config.intermediateSize
        }
        guard uniform, config.attentionHeadSize == nil else {
            throw .refused("""
                the weight-only model is CoFi-pruned (layers of different heads and FFN widths): its quantized codes are not \
                padded back to one shape. Export the float pruned model (padded exactly) or use `export/onnx`
                """)
        }
        return (model, lowercase)
    }

    static func writeWeightOnly(
        _ model: QuantizedBertModel, lowercase: Bool, into directory: inout ExportDirectory
    ) throws(HFExportError) -> HFCheckpointExport.Written {
        let config = hfConfig(model.config, heads: model.config.numAttentionHeads, width: model.config.intermediateSize)
        try writeTokenizerConfig(config, lowercase: lowercase, into: &directory)
        let parameters = model.weights.map { name, value in (name: hfName(name), value: value) }.elements
        var written = try CompressedTensorsExport.write(
            CompressedTensorsExport.Source(
                parameters: parameters, moduleName: hfName, quantization: model.quantization, config: config.jsonData(),
                architecture: "BertForSequenceClassification", autoClass: "AutoModelForSequenceClassification"),
            into: &directory)
        written.details["labels"] = .array(config.labels.map(Value.string))
        return written
    }

    /// A linear layer `[out, in]` with zero rows (and zero bias) appended up to `rows` outputs.
    static func padRows(_ linear: LinearWeights<Tensor>, to rows: Int) -> LinearWeights<Tensor> {
        let (out, input) = (linear.weight.shape[0], linear.weight.shape[1])
        guard out < rows else { return linear }
        let weight = Tensor(shape: [rows, input], floats: linear.weight.contiguous().floats + [Float](repeating: 0, count: (rows - out) * input))
        let bias = Tensor(shape: [rows], floats: linear.bias.contiguous().floats + [Float](repeating: 0, count: rows - out))
        return LinearWeights(weight: weight, bias: bias)
    }

    /// A matrix `[out, in]` with zero columns appended up to `columns` inputs.
    static func padColumns(_ matrix: Tensor, to columns: Int) -> Tensor {
        let (out, input) = (matrix.shape[0], matrix.shape[1])
        guard input < columns else { return matrix }
        let values = matrix.contiguous().floats
        var padded = [Float](repeating: 0, count: out * columns)
        for row in 0..<out {
            for column in 0..<input { padded[row * columns + column] = values[row * input + column] }
        }
        return Tensor(shape: [out, columns], floats: padded)
    }
}

/// The manifest's account of a sparse model's masks.
enum HFSparsity {
    static func details(_ masks: [String: WeightMask]) -> Value {
        let total = masks.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let kept = masks.values.reduce(0) { $0 + $1.keptCount }
        let patterns = Set(masks.values.map(\.pattern.description)).sorted()
        return .object([
            "masked_weights": .int(masks.count),
            "patterns": .array(patterns.map(Value.string)),
            "sparsity": .double(total == 0 ? 0 : (Double(total - kept) / Double(total) * 1e6).rounded() / 1e6),
            "note": .string("pruned positions are stored as zeros (a dense checkpoint); the masks themselves are not stored"),
        ])
    }
}
