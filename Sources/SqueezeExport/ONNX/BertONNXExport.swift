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

    /// What `BertModel.attentionBias` adds to the scores of padded keys,
    /// taken from it so the graph and squeeze agree by construction.
    static var paddingBias: Float {
        BertModel.attentionBias(Tensor(shape: [1, 1], int32s: [0])).floats[0]
    }

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

    /// The ONNX model of `model` at `opset` (17…21: one graph serves them
    /// all; `LayerNormalization` needs 17).
    public static func export(
        _ model: BertModel, kind: ArtifactKind, opset: Int, producerVersion: String = SqueezeVersion.current
    ) throws(ModelFileError) -> ONNXExportedModel {
        var emitter = BertGraphEmitter(config: model.config)
        let logits = try emitter.logits(model)
        emitter.builder.addOutput(logits, .float, [.symbolic("batch"), .fixed(model.config.labels.count)])
        let config = model.config
        let labels = Dictionary(uniqueKeysWithValues: config.labels.enumerated().map { (String($0.offset), Value.string($0.element)) })
        let layers = model.layerShapes.map { Value.object(["heads": .int($0.heads), "intermediate_size": .int($0.intermediateSize)]) }
        let metadata = [
            "squeeze.kind": kind.rawValue,
            "squeeze.pooling": model.pooling.rawValue,
            "id2label": Value.object(labels).canonicalJSON,
        ]
        let proto = emitter.builder.model(
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
            "nodes": .int(emitter.builder.nodeCount),
        ]
        return ONNXExportedModel(model: proto, nodeCount: emitter.builder.nodeCount, details: details, guarantee: guarantee)
    }
}

/// Emits the nodes of one BERT classifier graph into `builder`, mirroring
/// `BertModel.embed`, `encoderLayer` and `classify`.
struct BertGraphEmitter {
    var builder = ONNXGraphBuilder(name: "squeeze_bert_classifier")
    let config: BertConfig
    private var constants: [String: String] = [:]

    init(config: BertConfig) {
        self.config = config
    }

    /// The `logits` value of `model`'s graph, inputs declared.
    mutating func logits(_ model: BertModel) throws(ModelFileError) -> String {
        let pooler: LinearWeights<Tensor>?
        switch (model.pooling, model.weights.pooler) {
        case (.mean, _): pooler = nil
        case (.pooler, let weights?): pooler = weights
        case (.pooler, nil): throw ModelFileError(file: "<model>", "pooling `pooler` needs `pooler.dense` weights, which are missing")
        }
        builder.addInput(BertONNXExport.inputIDsName, .int64, [.symbolic("batch"), .symbolic("sequence")])
        builder.addInput(BertONNXExport.attentionMaskName, .int64, [.symbolic("batch"), .symbolic("sequence")])
        let weights = model.weights
        var x = embed(weights.embeddings)
        let bias = attentionBias()
        // As `BertModel.logits`: with the pooler only the first token of the
        // last layer is needed past its key and value projections.
        let lastFirstTokenOnly = model.pooling == .pooler
        for (index, layer) in weights.layers.enumerated() {
            x = encoderLayer(
                x, layer, index: index, attentionBias: bias,
                firstTokenOnly: lastFirstTokenOnly && index == weights.layers.count - 1)
        }
        let pooled = pool(x, pooler: pooler)
        return linear(pooled, weights.classifier, name: "classifier", output: BertONNXExport.logitsName)
    }

    // MARK: Blocks

    /// (word + token type 0) + positions[0..<sequence], LayerNorm: `BertModel.embed`.
    private mutating func embed(_ embeddings: BertEmbeddingWeights<Tensor>) -> String {
        let word = tensor("embeddings.word_embeddings.weight", embeddings.word)
        let typeZero = builder.addInitializer(
            "embeddings.token_type_embeddings.weight.row0", floats: Array(embeddings.tokenType.contiguous().floats.prefix(config.hiddenSize)),
            shape: [1, config.hiddenSize])
        let position = tensor("embeddings.position_embeddings.weight", embeddings.position)
        let gathered = builder.add("Gather", [word, BertONNXExport.inputIDsName], name: "embeddings.word", attributes: [.int("axis", 0)])
        let typed = builder.add("Add", [gathered, typeZero], name: "embeddings.typed")
        let length = builder.add(
            "Shape", [BertONNXExport.inputIDsName], name: "embeddings.sequence_length", attributes: [.int("start", 1), .int("end", 2)])
        let positions = builder.add("Slice", [position, int64s([0]), length, int64s([0])], name: "embeddings.positions")
        let summed = builder.add("Add", [typed, positions], name: "embeddings.sum")
        return layerNorm(summed, embeddings.layerNorm, name: "embeddings.LayerNorm")
    }

    /// `[batch, 1, 1, sequence]`: 0 where the mask is nonzero, the padding bias where it is 0 (`BertModel.attentionBias`).
    private mutating func attentionBias() -> String {
        let padded = builder.add("Equal", [BertONNXExport.attentionMaskName, int64Scalar(0)], name: "attention_bias.padded")
        let bias = builder.add("Where", [padded, floatScalar(BertONNXExport.paddingBias), floatScalar(0)], name: "attention_bias.values")
        return builder.add("Unsqueeze", [bias, int64s([1, 2])], name: "attention_bias")
    }

    /// One post-LN encoder layer (`BertModel.encoderLayer`). A layer without
    /// heads adds only its attention output bias before the LayerNorm, one
    /// without FFN units only its output bias: squeeze keeps both LayerNorms.
    private mutating func encoderLayer(
        _ input: String, _ layer: BertLayerWeights<Tensor>, index: Int, attentionBias: String, firstTokenOnly: Bool
    ) -> String {
        let prefix = "encoder.layer.\(index)"
        let x = firstTokenOnly
            ? builder.add("Slice", [input, int64s([0]), int64s([1]), int64s([1])], name: prefix + ".first_token")
            : input
        let headSize = config.headDimension
        let heads = layer.query.weight.shape[0] / headSize
        let afterAttentionSum: String
        if heads > 0 {
            let split = int64s([0, 0, heads, headSize])
            let query = linear(x, layer.query, name: prefix + ".attention.self.query")
            let key = linear(input, layer.key, name: prefix + ".attention.self.key")
            let value = linear(input, layer.value, name: prefix + ".attention.self.value")
            let queryHeads = builder.add(
                "Transpose", [builder.add("Reshape", [query, split], name: prefix + ".attention.query_split")],
                name: prefix + ".attention.query_heads", attributes: [.ints("perm", [0, 2, 1, 3])])
            let keyHeads = builder.add(
                "Transpose", [builder.add("Reshape", [key, split], name: prefix + ".attention.key_split")],
                name: prefix + ".attention.key_heads_transposed", attributes: [.ints("perm", [0, 2, 3, 1])])
            let valueHeads = builder.add(
                "Transpose", [builder.add("Reshape", [value, split], name: prefix + ".attention.value_split")],
                name: prefix + ".attention.value_heads", attributes: [.ints("perm", [0, 2, 1, 3])])
            let products = builder.add("MatMul", [queryHeads, keyHeads], name: prefix + ".attention.products")
            let scores = builder.add(
                "Mul", [products, floatScalar(1 / Float(headSize).squareRoot())], name: prefix + ".attention.scores")
            let biased = builder.add("Add", [scores, attentionBias], name: prefix + ".attention.masked_scores")
            let probabilities = builder.add("Softmax", [biased], name: prefix + ".attention.probabilities", attributes: [.int("axis", -1)])
            let context = builder.add("MatMul", [probabilities, valueHeads], name: prefix + ".attention.context")
            let merged = builder.add(
                "Reshape",
                [
                    builder.add("Transpose", [context], name: prefix + ".attention.context_tokens", attributes: [.ints("perm", [0, 2, 1, 3])]),
                    int64s([0, 0, heads * headSize]),
                ],
                name: prefix + ".attention.merged")
            let attended = linear(merged, layer.attentionOutput, name: prefix + ".attention.output.dense")
            afterAttentionSum = builder.add("Add", [attended, x], name: prefix + ".attention.residual")
        } else {
            let bias = vector(prefix + ".attention.output.dense.bias", layer.attentionOutput.bias)
            afterAttentionSum = builder.add("Add", [bias, x], name: prefix + ".attention.residual")
        }
        let afterAttention = layerNorm(afterAttentionSum, layer.attentionLayerNorm, name: prefix + ".attention.output.LayerNorm")

        let feedForwardSum: String
        if layer.intermediate.weight.shape[0] > 0 {
            let expanded = linear(afterAttention, layer.intermediate, name: prefix + ".intermediate.dense")
            let activated = gelu(expanded, name: prefix + ".intermediate.gelu")
            let fed = linear(activated, layer.output, name: prefix + ".output.dense")
            feedForwardSum = builder.add("Add", [fed, afterAttention], name: prefix + ".output.residual")
        } else {
            let bias = vector(prefix + ".output.dense.bias", layer.output.bias)
            feedForwardSum = builder.add("Add", [bias, afterAttention], name: prefix + ".output.residual")
        }
        return layerNorm(feedForwardSum, layer.outputLayerNorm, name: prefix + ".output.LayerNorm")
    }

    /// `[batch, hidden]` sentence vectors (`BertModel.pool`): the pooler's
    /// `tanh(dense(first token))` when given its weights, else mean pooling.
    private mutating func pool(_ hidden: String, pooler: LinearWeights<Tensor>?) -> String {
        if let pooler {
            let first = builder.add("Gather", [hidden, int64Scalar(0)], name: "pooler.first_token", attributes: [.int("axis", 1)])
            return builder.add("Tanh", [linear(first, pooler, name: "pooler.dense")], name: "pooler.output")
        } else {
            // The mask as 1/0 floats, 1 / max(count, 1) per sequence: `BertModel.meanPoolingFactors`.
            let padded = builder.add("Equal", [BertONNXExport.attentionMaskName, int64Scalar(0)], name: "mean_pool.padded")
            let mask = builder.add("Where", [padded, floatScalar(0), floatScalar(1)], name: "mean_pool.mask")
            let count = builder.add("ReduceSum", [mask, int64s([1])], name: "mean_pool.count", attributes: [.int("keepdims", 1)])
            let inverse = builder.add(
                "Reciprocal", [builder.add("Max", [count, floatScalar(1)], name: "mean_pool.count_at_least_one")],
                name: "mean_pool.inverse_count")
            let masked = builder.add(
                "Mul", [hidden, builder.add("Unsqueeze", [mask, int64s([2])], name: "mean_pool.mask_column")], name: "mean_pool.masked")
            let summed = builder.add("ReduceSum", [masked, int64s([1])], name: "mean_pool.sum", attributes: [.int("keepdims", 0)])
            return builder.add("Mul", [summed, inverse], name: "mean_pool.output")
        }
    }

    // MARK: Operations

    /// `x · Wᵀ + b` with `Wᵀ` stored `[in, out]`; the last node is named `output` when given.
    private mutating func linear(_ x: String, _ weights: LinearWeights<Tensor>, name: String, output: String? = nil) -> String {
        let shape = weights.weight.shape
        let (rows, columns) = (shape[0], shape[1])
        let values = weights.weight.contiguous().floats
        var transposed = [Float](repeating: 0, count: values.count)
        for row in 0..<rows {
            for column in 0..<columns { transposed[column * rows + row] = values[row * columns + column] }
        }
        let weight = builder.addInitializer(name + ".weight.T", floats: transposed, shape: [columns, rows])
        let bias = vector(name + ".bias", weights.bias)
        let product = builder.add("MatMul", [x, weight], name: name + ".product")
        guard let output else { return builder.add("Add", [product, bias], name: name + ".output") }
        builder.addNode("Add", inputs: [product, bias], outputs: [output])
        return output
    }

    /// The exact (erf) GELU `x · ½ · (1 + erf(x / √2))`, in the form ONNX Runtime fuses into its Gelu kernel.
    private mutating func gelu(_ x: String, name: String) -> String {
        let scaled = builder.add("Div", [x, floatScalar(Float(2).squareRoot())], name: name + ".scaled")
        let erf = builder.add("Erf", [scaled], name: name + ".erf")
        let shifted = builder.add("Add", [erf, floatScalar(1)], name: name + ".shifted")
        let product = builder.add("Mul", [x, shifted], name: name + ".product")
        return builder.add("Mul", [product, floatScalar(0.5)], name: name + ".output")
    }

    private mutating func layerNorm(_ x: String, _ weights: LayerNormWeights<Tensor>, name: String) -> String {
        builder.add(
            "LayerNormalization", [x, vector(name + ".weight", weights.weight), vector(name + ".bias", weights.bias)],
            name: name + ".output", attributes: [.int("axis", -1), .float("epsilon", Float(config.layerNormEpsilon))])
    }

    // MARK: Initializers

    private mutating func tensor(_ name: String, _ value: Tensor) -> String {
        builder.addInitializer(name, floats: value.contiguous().floats, shape: value.shape)
    }

    private mutating func vector(_ name: String, _ value: Tensor) -> String {
        builder.addInitializer(name, floats: value.contiguous().floats, shape: [value.count])
    }

    /// A shared float scalar constant.
    private mutating func floatScalar(_ value: Float) -> String {
        constant("f32:\(value.bitPattern)") { builder in builder.addInitializer("const_f32", floats: [value], shape: []) }
    }

    private mutating func int64Scalar(_ value: Int) -> String {
        constant("i64:\(value)") { builder in builder.addInitializer("const_i64", int64s: [Int64(value)], shape: []) }
    }

    private mutating func int64s(_ values: [Int]) -> String {
        constant("i64s:\(values)") { builder in builder.addInitializer("const_i64s", int64s: values.map(Int64.init), shape: [values.count]) }
    }

    private mutating func constant(_ key: String, _ make: (inout ONNXGraphBuilder) -> String) -> String {
        if let name = constants[key] { return name }
        let name = make(&builder)
        constants[key] = name
        return name
    }
}
