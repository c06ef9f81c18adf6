import Foundation
import SqueezeModels
import SqueezeONNXProto
import SqueezeSupport
import SqueezeTensor

/// The ONNX graph of a float BERT classifier (`BertModel`): the same
/// computation as `BertModel.logits`, op for op, for every layer shape
/// squeeze produces — uniform layers, CoFi's per-layer head counts and FFN
/// widths, removed sublayers (0 heads, 0 FFN units) and pruned hidden sizes
/// with an explicit head size. Sparse models are exported with their stored
/// weights, whose pruned positions are zeros.
///
/// Inputs `input_ids` and `attention_mask`, int64 `[batch, sequence]` (both
/// symbolic; `sequence` up to `max_position_embeddings`); output `logits`,
/// float `[batch, num_labels]`. There is no `token_type_ids` input: squeeze
/// classifies single sentences and its forward always adds row 0 of the
/// token type table (`BertModel.embed` without `tokenTypeIDs`), so the graph
/// adds that row as a constant; an input would let a caller compute
/// something squeeze never does.
public enum BertONNXExport {
    public static let inputIDsName = "input_ids"
    public static let attentionMaskName = "attention_mask"
    public static let logitsName = "logits"

    /// The exactness the float export guarantees, and why (docs/export.md).
    public static let guarantee = """
        float32 graph with squeeze's operations in squeeze's order (embedding sums, LayerNorm, scaled dot-product \
        attention with the -1e9 padding bias, exact erf GELU, pooler or mean pooling, classifier); ONNX Runtime's \
        logits differ from squeeze's CPU forward only by float32 rounding inside reductions (matrix products, \
        LayerNorm, softmax) and by its erf/tanh/exp kernels: max abs difference <= 1e-4, tested on random tiny \
        models (dense, CoFi with removed sublayers and pruned hidden size) and the real MiniLM checkpoint
        """

    /// The ONNX model of the float BERT classifier in `artifact` (the dispatcher's entry).
    static func export(artifact: ModelArtifact, kind: ArtifactKind, options: ONNXExport.Options) throws(ModelFileError) -> ONNXExportedModel {
        let model = try BertModel(config: try BertConfig(contentsOfFile: artifact.configPath), file: try artifact.weights())
        return try export(model, kind: kind, opset: options.opset)
    }

    /// The ONNX model of `model` at `opset` (17…21: `LayerNormalization`
    /// needs 17; from 20 GELU is the `Gelu` op), built by `BertONNXGraph`
    /// with f32 Linears.
    public static func export(
        _ model: BertModel, kind: ArtifactKind, opset: Int, producerVersion: String = SqueezeVersion.current
    ) throws(ModelFileError) -> ONNXExportedModel {
        var graph = BertONNXGraph(
            config: model.config, weights: model.weights, pooling: model.pooling, opset: opset, emitter: FloatBertLinearEmitter(),
            graphName: "squeeze_bert_classifier")
        try graph.build()
        let builder = graph.graph
        let config = model.config
        let labels = Dictionary(uniqueKeysWithValues: config.labels.enumerated().map { (String($0.offset), Value.string($0.element)) })
        let layers = model.layerShapes.map { Value.object(["heads": .int($0.heads), "intermediate_size": .int($0.intermediateSize)]) }
        let metadata = [
            "squeeze.kind": kind.rawValue,
            "squeeze.pooling": model.pooling.rawValue,
            "id2label": Value.object(labels).canonicalJSON,
        ]
        let proto = builder.model(
            opset: opset, producerVersion: producerVersion,
            docString: "squeeze \(kind.rawValue) BERT classifier: logits = BertModel.logits(input_ids, attention_mask)",
            metadata: metadata)
        let tokenAxes = Value.array([.string("batch"), .string("sequence")])
        let details: [String: Value] = [
            "opset": .int(opset),
            "inputs": .array([
                .object(["name": .string(inputIDsName), "dtype": .string("int64"), "shape": tokenAxes]),
                .object(["name": .string(attentionMaskName), "dtype": .string("int64"), "shape": tokenAxes]),
            ]),
            "outputs": .array([
                .object([
                    "name": .string(logitsName), "dtype": .string("float32"),
                    "shape": .array([.string("batch"), .int(config.labels.count)]),
                ]),
            ]),
            "max_sequence": .int(config.maxPositionEmbeddings),
            "token_type_ids": .string("not an input: squeeze classifies single sentences, token type 0 is built in"),
            "hidden_size": .int(config.hiddenSize),
            "head_size": .int(config.headDimension),
            "layers": .array(layers),
            "pooling": .string(model.pooling.rawValue),
            "labels": .array(config.labels.map(Value.string)),
            "nodes": .int(builder.nodeCount),
        ]
        return ONNXExportedModel(model: proto, nodeCount: builder.nodeCount, details: details, guarantee: guarantee)
    }
}

/// The float Linears of `BertONNXExport`: `x · Wᵀ + b` as f32 `MatMul` + `Add`.
struct FloatBertLinearEmitter: BertONNXLinearEmitter {
    func floatTensor(_ parameter: Tensor) -> Tensor { parameter }

    func linearShape(_ weight: Tensor) -> [Int] { weight.shape }

    mutating func emitLinear(
        _ input: String, weight: Tensor, bias: Tensor, module: String, graph: inout ONNXGraphBuilder
    ) throws(ModelFileError) -> String {
        let contiguousBias = bias.contiguous()
        let biasName = graph.addInitializer(module + ".bias", floats: contiguousBias.floats, shape: contiguousBias.shape)
        return Self.floatLinear(input, weight: weight, biasName: biasName, module: module, graph: &graph)
    }

    /// `x · Wᵀ + b` in f32: the weight stored transposed (`[in, out]`) for `MatMul`.
    static func floatLinear(_ input: String, weight: Tensor, biasName: String, module: String, graph: inout ONNXGraphBuilder) -> String {
        let (rows, columns) = (weight.shape[0], weight.shape[1])
        let values = weight.contiguous().floats
        var transposed = [Float](repeating: 0, count: values.count)
        for row in 0..<rows {
            for column in 0..<columns { transposed[column * rows + row] = values[row * columns + column] }
        }
        let matrix = graph.addInitializer(module + ".weight_transposed", floats: transposed, shape: [columns, rows])
        let product = graph.add("MatMul", [input, matrix], name: module + ".matmul")
        return graph.add("Add", [product, biasName], name: module)
    }
}
