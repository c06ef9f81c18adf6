import SqueezeModels
import SqueezeTensor

/// How a BERT graph emits its Linear layers, and reads the rest of its
/// parameters. The float graph around the Linears (embeddings, attention,
/// LayerNorm, GELU, pooling) is the same for every kind of BERT export;
/// only the products differ: f32 `MatMul`, int8 QDQ, dynamic int8.
public protocol BertONNXLinearEmitter {
    /// A parameter as the model holds it (`Tensor`, `InferenceValue`).
    associatedtype Parameter

    /// The f32 values of a parameter that is not a Linear weight
    /// (embeddings, LayerNorm, biases).
    func floatTensor(_ parameter: Parameter) -> Tensor

    /// The shape `[out, in]` of a Linear weight.
    func linearShape(_ weight: Parameter) -> [Int]

    /// Emits `input · Wᵀ + bias` (f32 `[…, in]` → f32 `[…, out]`) for the
    /// Linear `module` and returns its output's name.
    mutating func emitLinear(
        _ input: String, weight: Parameter, bias: Parameter, module: String, graph: inout ONNXGraphBuilder
    ) throws(ModelFileError) -> String
}

/// The ONNX graph of `BertModel.logits`, for the float export
/// (`BertONNXExport`) and the int8 one (`QuantizedBertONNXExport`): inputs
/// `input_ids` and `attention_mask` (int64 `[batch, sequence]`, both axes
/// symbolic), output `logits` (f32 `[batch, labels]`). Each op follows
/// squeeze's forward pass for a batch without token types, as squeeze's
/// classifiers run: (word + token type 0) + position embeddings, post-LN
/// layers whose heads and FFN widths come from the weights (CoFi: a layer
/// without heads or FFN units adds only its output bias, both LayerNorms
/// kept), the additive mask of `BertModel.attentionBias`, erf GELU, and the
/// last layer of a pooler model computing only the first token past its key
/// and value projections (as squeeze does, which matters for dynamic
/// per-tensor ranges).
public struct BertONNXGraph<Emitter: BertONNXLinearEmitter> {
    public let config: BertConfig
    public let weights: BertWeights<Emitter.Parameter>
    public let pooling: BertPooling
    public let opset: Int
    public private(set) var emitter: Emitter
    public private(set) var graph: ONNXGraphBuilder
    private var constants = ONNXConstants()

    public static var inputNames: [String] { [BertONNXExport.inputIDsName, BertONNXExport.attentionMaskName] }
    public static var outputName: String { BertONNXExport.logitsName }

    /// What `BertModel.attentionBias` adds to the scores of padded keys,
    /// taken from it so the graph and squeeze agree by construction.
    static var paddingBias: Float {
        BertModel.attentionBias(Tensor(shape: [1, 1], int32s: [0])).floats[0]
    }

    public init(
        config: BertConfig, weights: BertWeights<Emitter.Parameter>, pooling: BertPooling, opset: Int, emitter: Emitter,
        graphName: String
    ) {
        self.config = config
        self.weights = weights
        self.pooling = pooling
        self.opset = opset
        self.emitter = emitter
        self.graph = ONNXGraphBuilder(name: graphName)
    }

    /// Emits the whole graph; `graph` holds it afterwards.
    public mutating func build() throws(ModelFileError) {
        let batch = ONNXDimension.symbolic("batch"), sequence = ONNXDimension.symbolic("sequence")
        for name in Self.inputNames { graph.addInput(name, .int64, [batch, sequence]) }
        var x = embeddings()
        let bias = attentionBias()
        for (index, layer) in weights.layers.enumerated() {
            let firstTokenOnly = pooling == .pooler && index == weights.layers.count - 1
            x = try encoderLayer(x, layer, index: index, attentionBias: bias, firstTokenOnly: firstTokenOnly)
        }
        let pooled = try pool(x)
        let logits = try emitter.emitLinear(
            pooled, weight: weights.classifier.weight, bias: weights.classifier.bias, module: "classifier", graph: &graph)
        graph.addNode("Reshape", inputs: [logits, int64s("flat_shape", [0, -1])], outputs: [Self.outputName])
        graph.addOutput(Self.outputName, .float, [batch, .fixed(config.labels.count)])
    }

    // MARK: Constants

    mutating func floats(_ name: String, _ parameter: Emitter.Parameter) -> String {
        let tensor = emitter.floatTensor(parameter).contiguous()
        return graph.addInitializer(name, floats: tensor.floats, shape: tensor.shape)
    }

    mutating func scalar(_ name: String, _ value: Float) -> String {
        constants.float(value, name: name, graph: &graph)
    }

    mutating func int64s(_ name: String, _ values: [Int64]) -> String {
        constants.int64s(values, name: name, graph: &graph)
    }

    // MARK: Blocks

    /// `LayerNorm((word + token type 0) + position)`.
    mutating func embeddings() -> String {
        let embeddings = weights.embeddings
        let word = graph.add(
            "Gather", [floats("embeddings.word_embeddings.weight", embeddings.word), BertONNXExport.inputIDsName], name: "word_embeddings")
        let types = emitter.floatTensor(embeddings.tokenType).contiguous()
        let typeZero = graph.addInitializer(
            "embeddings.token_type_embeddings.weight.row0", floats: Array(types.floats.prefix(types.shape[1])), shape: [1, types.shape[1]])
        let sum = graph.add("Add", [word, typeZero], name: "embeddings_sum")
        let length = graph.add(
            "Shape", [BertONNXExport.inputIDsName], name: "sequence_length", attributes: [.int("start", 1), .int("end", 2)])
        let positions = graph.add(
            "Slice", [floats("embeddings.position_embeddings.weight", embeddings.position), int64s("zero_1d", [0]), length, int64s("zero_1d", [0])],
            name: "position_embeddings")
        let summed = graph.add("Add", [sum, positions], name: "embeddings_with_positions")
        return layerNorm(summed, embeddings.layerNorm, name: "embeddings.LayerNorm")
    }

    /// `[batch, 1, 1, sequence]`: 0 where `attention_mask` is non-zero, `paddingBias` where it is 0.
    mutating func attentionBias() -> String {
        let padded = graph.add(
            "Equal", [BertONNXExport.attentionMaskName, constants.int64(0, name: "int64_zero", graph: &graph)], name: "padded_keys")
        let bias = graph.add("Where", [padded, scalar("masked_score", Self.paddingBias), scalar("float_zero", 0)], name: "attention_bias_2d")
        return graph.add("Unsqueeze", [bias, int64s("bias_axes", [1, 2])], name: "attention_bias")
    }

    mutating func layerNorm(_ x: String, _ weights: LayerNormWeights<Emitter.Parameter>, name: String) -> String {
        graph.add(
            "LayerNormalization", [x, floats(name + ".weight", weights.weight), floats(name + ".bias", weights.bias)], name: name,
            attributes: [.int("axis", -1), .float("epsilon", Float(config.layerNormEpsilon))])
    }

    /// One post-LN encoder layer; `[batch, 1, hidden]` when `firstTokenOnly`.
    mutating func encoderLayer(
        _ input: String, _ layer: BertLayerWeights<Emitter.Parameter>, index: Int, attentionBias: String, firstTokenOnly: Bool
    ) throws(ModelFileError) -> String {
        let prefix = "encoder.layer.\(index)"
        let x = firstTokenOnly
            ? graph.add("Slice", [input, int64s("zero_1d", [0]), int64s("one_1d", [1]), int64s("one_1d", [1])], name: prefix + ".first_token")
            : input
        let headDimension = config.headDimension
        let heads = emitter.linearShape(layer.query.weight)[0] / headDimension
        let attended: String
        if heads > 0 {
            func projected(_ source: String, _ projection: LinearWeights<Emitter.Parameter>, _ name: String, keyLayout: Bool) throws(ModelFileError) -> String {
                let y = try emitter.emitLinear(
                    source, weight: projection.weight, bias: projection.bias, module: prefix + ".attention.self." + name, graph: &graph)
                let split = graph.add("Reshape", [y, int64s("heads_shape_\(heads)", [0, -1, Int64(heads), Int64(headDimension)])], name: "\(prefix).\(name)_heads")
                return graph.add(
                    "Transpose", [split], name: "\(prefix).\(name)_transposed", attributes: [.ints("perm", keyLayout ? [0, 2, 3, 1] : [0, 2, 1, 3])])
            }
            let query = try projected(x, layer.query, "query", keyLayout: false)
            let key = try projected(input, layer.key, "key", keyLayout: true)
            let value = try projected(input, layer.value, "value", keyLayout: false)
            let products = graph.add("MatMul", [query, key], name: prefix + ".attention_products")
            let scale = 1 / Float(headDimension).squareRoot()
            let scaled = graph.add("Mul", [products, scalar("attention_scale", scale)], name: prefix + ".attention_scores")
            let masked = graph.add("Add", [scaled, attentionBias], name: prefix + ".attention_masked_scores")
            let probabilities = graph.add("Softmax", [masked], name: prefix + ".attention_probabilities", attributes: [.int("axis", -1)])
            let context = graph.add("MatMul", [probabilities, value], name: prefix + ".attention_context")
            let merged = graph.add(
                "Reshape",
                [graph.add("Transpose", [context], name: prefix + ".context_transposed", attributes: [.ints("perm", [0, 2, 1, 3])]),
                 int64s("merged_shape_\(heads * headDimension)", [0, 0, Int64(heads * headDimension)])],
                name: prefix + ".attention_merged")
            attended = try emitter.emitLinear(
                merged, weight: layer.attentionOutput.weight, bias: layer.attentionOutput.bias, module: prefix + ".attention.output.dense",
                graph: &graph)
        } else {
            // A layer without heads contributes only its output bias.
            attended = floats(prefix + ".attention.output.dense.bias", layer.attentionOutput.bias)
        }
        let residual = graph.add("Add", [attended, x], name: prefix + ".attention_residual")
        let afterAttention = layerNorm(residual, layer.attentionLayerNorm, name: prefix + ".attention.output.LayerNorm")
        let fed: String
        if emitter.linearShape(layer.intermediate.weight)[0] > 0 {
            let inner = try emitter.emitLinear(
                afterAttention, weight: layer.intermediate.weight, bias: layer.intermediate.bias, module: prefix + ".intermediate.dense",
                graph: &graph)
            fed = try emitter.emitLinear(
                gelu(inner, name: prefix + ".intermediate.gelu"), weight: layer.output.weight, bias: layer.output.bias,
                module: prefix + ".output.dense", graph: &graph)
        } else {
            fed = floats(prefix + ".output.dense.bias", layer.output.bias)
        }
        let outputResidual = graph.add("Add", [fed, afterAttention], name: prefix + ".output_residual")
        return layerNorm(outputResidual, layer.outputLayerNorm, name: prefix + ".output.LayerNorm")
    }

    /// The exact (erf) GELU: the `Gelu` op from opset 20, else
    /// `x · 0.5 · (1 + erf(x / √2))`, the pattern ONNX Runtime fuses.
    mutating func gelu(_ x: String, name: String) -> String {
        if opset >= 20 { return graph.add("Gelu", [x], name: name) }
        let divided = graph.add("Div", [x, scalar("sqrt_two", Float(2).squareRoot())], name: name + "_scaled")
        let erf = graph.add("Erf", [divided], name: name + "_erf")
        let shifted = graph.add("Add", [erf, scalar("float_one", 1)], name: name + "_shifted")
        let product = graph.add("Mul", [x, shifted], name: name + "_product")
        return graph.add("Mul", [product, scalar("float_half", 0.5)], name: name)
    }

    /// `[batch, 1, hidden]`: `tanh(pooler(first token))`, or the mean over
    /// tokens with a non-zero mask. The pooler and the classifier read 3-D
    /// inputs like every other Linear: ONNX Runtime turns a 2-D `MatMul` +
    /// `Add` into `Gemm` before its QDQ fusion, which then leaves the int8
    /// product in f32.
    mutating func pool(_ hidden: String) throws(ModelFileError) -> String {
        switch pooling {
        case .pooler:
            guard let pooler = weights.pooler else {
                throw ModelFileError(file: "<model>", "pooling `pooler` needs `pooler.dense` weights, which are missing")
            }
            let first = graph.add("Slice", [hidden, int64s("zero_1d", [0]), int64s("one_1d", [1]), int64s("one_1d", [1])], name: "first_token")
            let dense = try emitter.emitLinear(first, weight: pooler.weight, bias: pooler.bias, module: "pooler.dense", graph: &graph)
            return graph.add("Tanh", [dense], name: "pooled")
        case .mean:
            let padded = graph.add(
                "Equal", [BertONNXExport.attentionMaskName, constants.int64(0, name: "int64_zero", graph: &graph)], name: "pooling_padded")
            let real = graph.add("Cast", [graph.add("Not", [padded], name: "pooling_real")], name: "pooling_mask", attributes: [.int("to", Int(ONNXElementType.float.rawValue))])
            let mask = graph.add("Unsqueeze", [real, int64s("two_1d", [2])], name: "pooling_mask_3d")
            let masked = graph.add("Mul", [hidden, mask], name: "pooling_masked")
            let summed = graph.add("ReduceSum", [masked, int64s("one_1d", [1])], name: "pooling_sum", attributes: [.int("keepdims", 1)])
            let counts = graph.add("ReduceSum", [mask, int64s("one_1d", [1])], name: "pooling_counts", attributes: [.int("keepdims", 1)])
            let atLeastOne = graph.add("Max", [counts, scalar("float_one", 1)], name: "pooling_counts_at_least_one")
            let inverse = graph.add("Div", [scalar("float_one", 1), atLeastOne], name: "pooling_inverse_counts")
            return graph.add("Mul", [summed, inverse], name: "pooled")
        }
    }
}

/// Constants added once and reused by value: the same shape or scalar
/// used by every layer is one initializer.
public struct ONNXConstants: Sendable {
    private var names: [String: String] = [:]

    public init() {}

    /// A 1-D int64 constant.
    public mutating func int64s(_ values: [Int64], name: String, graph: inout ONNXGraphBuilder) -> String {
        remembered("i64[\(values)]") { graph.addInitializer(name, int64s: values, shape: [values.count]) }
    }

    /// A scalar int64 constant.
    public mutating func int64(_ value: Int64, name: String, graph: inout ONNXGraphBuilder) -> String {
        remembered("i64 \(value)") { graph.addInitializer(name, int64s: [value], shape: []) }
    }

    /// A scalar f32 constant (by its bits: -0 and 0 are two constants).
    public mutating func float(_ value: Float, name: String, graph: inout ONNXGraphBuilder) -> String {
        remembered("f32 \(value.bitPattern)") { graph.addInitializer(name, floats: [value], shape: []) }
    }

    /// A scalar int32 constant.
    public mutating func int32(_ value: Int32, name: String, graph: inout ONNXGraphBuilder) -> String {
        remembered("i32 \(value)") { graph.addInitializer(name, int32s: [value], shape: []) }
    }

    /// A scalar uint8 constant.
    public mutating func uint8(_ value: UInt8, name: String, graph: inout ONNXGraphBuilder) -> String {
        remembered("u8 \(value)") { graph.addInitializer(name, uint8s: [value], shape: []) }
    }

    private mutating func remembered(_ key: String, _ make: () -> String) -> String {
        if let name = names[key] { return name }
        let name = make()
        names[key] = name
        return name
    }
}
