import SqueezeModels
import SqueezeONNXProto
import SqueezeTensor

/// One parameter of a decoder as the ONNX graph stores it: an f32 tensor,
/// or a Linear weight kept as int4/int8 per-group codes that a blocked
/// `DequantizeLinear` (opset 21) turns back into exactly Squeeze's `ŵ`.
enum DecoderONNXParameter {
    case float(Tensor)
    case grouped(PackedGroupWeights)
}

/// Writes the ONNX graph of one decoder: the forward pass of `DecoderModel`
/// node by node, with padding-aware positions and masks, and, with a KV
/// cache, the `past_key_values.{i}` inputs and `present.{i}` outputs of the
/// Hugging Face / Optimum convention. A class, so that node-building calls
/// nest (`op("Add", [op(…), op(…)])`) without overlapping `mutating` accesses.
final class DecoderONNXGraph {
    let config: DecoderConfig
    let inverseFrequencies: [Float]
    let opset: Int
    let kvCache: Bool
    private(set) var builder: ONNXGraphBuilder
    private var constants: [String: String] = [:]

    static let batchAxis = ONNXDimension.symbolic("batch_size")
    static let sequenceAxis = ONNXDimension.symbolic("sequence_length")
    static let pastAxis = ONNXDimension.symbolic("past_sequence_length")
    static let totalAxis = ONNXDimension.symbolic("total_sequence_length")
    /// What a masked attention score becomes (Squeeze's causal bias).
    static let maskedScore: Float = -1e9

    init(config: DecoderConfig, inverseFrequencies: [Float], opset: Int, kvCache: Bool) {
        self.config = config
        self.inverseFrequencies = inverseFrequencies
        self.opset = opset
        self.kvCache = kvCache
        self.builder = ONNXGraphBuilder(name: "squeeze_\(config.family.rawValue)_decoder")
    }

    // MARK: The graph

    /// Adds inputs, weights, nodes and outputs for `weights`.
    func build(_ weights: DecoderWeights<DecoderONNXParameter>) {
        let d = config.headDimension, kvHeads = config.numKeyValueHeads
        builder.addInput("input_ids", .int64, [Self.batchAxis, Self.sequenceAxis])
        builder.addInput("attention_mask", .int64, [Self.batchAxis, kvCache ? Self.totalAxis : Self.sequenceAxis])
        if kvCache {
            for layer in 0..<config.numHiddenLayers {
                for kind in ["key", "value"] {
                    builder.addInput(
                        "past_key_values.\(layer).\(kind)", .float, [Self.batchAxis, .fixed(kvHeads), Self.pastAxis, .fixed(d)])
                }
            }
        }
        let context = attentionContext()
        var x = op("Gather", [embedding(weights.tokenEmbedding), "input_ids"], "embeddings", [.int("axis", 0)])
        if let table = weights.positionEmbedding {
            let positions = op("Gather", [tensor(table, "model.embed_positions.weight"), context.positions], "position_embeddings", [.int("axis", 0)])
            x = op("Add", [x, positions], "embedded")
        }
        for (index, layer) in weights.layers.enumerated() {
            x = block(x, layer, index: index, context: context)
        }
        let normed = norm(x, weights.finalNorm, "model.norm")
        let head: String
        if let untied = weights.head {
            head = linearWeight(untied, "lm_head.weight")
        } else {
            head = op("Transpose", [embedding(weights.tokenEmbedding)], "lm_head.weight.transposed", [.ints("perm", [1, 0])])
        }
        builder.addNode("MatMul", inputs: [normed, head], outputs: ["logits"])
        builder.addOutput("logits", .float, [Self.batchAxis, Self.sequenceAxis, .fixed(config.vocabSize)])
        if kvCache {
            for layer in 0..<config.numHiddenLayers {
                for kind in ["key", "value"] {
                    builder.addOutput("present.\(layer).\(kind)", .float, [Self.batchAxis, .fixed(kvHeads), Self.totalAxis, .fixed(d)])
                }
            }
        }
    }

    /// What every block shares: the positions of the new tokens, the rotary
    /// tables and the additive attention bias.
    struct AttentionContext {
        /// i64 `[B, T]`.
        var positions: String
        /// f32 `[B, T, 1, d/2]`, rotary only.
        var cos: String?
        var sin: String?
        /// f32 `[B, 1, 1, T, S]`: 0 where a query may attend a key, −1e9 elsewhere.
        var bias: String
    }

    /// Positions are the count of attended tokens before each token
    /// (`cumsum(attention_mask) − 1`, clamped at 0 for padding), the last
    /// `T` of the `S` mask columns; query `t` (key index `S − T + t`) sees
    /// key `j` when `j ≤ S − T + t`, the mask has `j`, and (Mistral) `j` is
    /// inside the sliding window.
    private func attentionContext() -> AttentionContext {
        let mask = "attention_mask"
        let length = op("Shape", ["input_ids"], "sequence_length", [.int("start", 1), .int("end", 2)])
        let total = op("Shape", [mask], "total_length", [.int("start", 1), .int("end", 2)])
        let past = op("Sub", [total, length], "past_length")
        let counted = op("CumSum", [mask, int64Scalar(1)], "attended_count")
        let allPositions = op("Max", [op("Sub", [counted, int64Scalar(1)], "position_or_minus_one"), int64Scalar(0)], "all_positions")
        let positions = op("Slice", [allPositions, past, total, int64s([1])], "position_ids")

        var cos: String?, sin: String?
        if case .rotary = config.positions {
            let angles = op(
                "Mul",
                [unsqueeze(op("Cast", [positions], "positions_f32", [.int("to", Int(ONNXElementType.float.rawValue))]), [2]),
                 builder.addInitializer("rotary.inverse_frequencies", floats: inverseFrequencies, shape: [inverseFrequencies.count])],
                "rotary_angles")
            cos = unsqueeze(op("Cos", [angles], "rotary_cos_3d"), [2], "rotary_cos")
            sin = unsqueeze(op("Sin", [angles], "rotary_sin_3d"), [2], "rotary_sin")
        }

        let totalScalar = op("Squeeze", [total], "total_length_scalar")
        let pastScalar = op("Squeeze", [past], "past_length_scalar")
        let keys = op("Range", [int64Scalar(0), totalScalar, int64Scalar(1)], "key_index")
        let queries = unsqueeze(op("Range", [pastScalar, totalScalar, int64Scalar(1)], "query_index_row"), [1], "query_index")
        var allowed = op("LessOrEqual", [keys, queries], "causal")
        if config.family == .mistral, let window = config.slidingWindow {
            let lowest = op("Sub", [queries, int64Scalar(Int64(window))], "window_start")
            allowed = op("And", [allowed, op("Greater", [keys, lowest], "inside_window")], "causal_window")
        }
        let attended = unsqueeze(op("Cast", [mask], "mask_bool", [.int("to", Int(ONNXElementType.bool.rawValue))]), [1, 2, 3], "key_mask")
        allowed = op("And", [allowed, attended], "allowed")
        let bias = op("Where", [allowed, floatScalar(0), floatScalar(Self.maskedScore)], "attention_bias")
        return AttentionContext(positions: positions, cos: cos, sin: sin, bias: bias)
    }

    /// `x + attention(norm(x))`, then `+ mlp(norm(·))`.
    private func block(
        _ x: String, _ layer: DecoderLayerWeights<DecoderONNXParameter>, index: Int, context: AttentionContext
    ) -> String {
        let prefix = "model.layers.\(index)"
        let normed = norm(x, layer.attentionNorm, prefix + ".input_layernorm")
        let attended = attention(normed, layer, index: index, prefix: prefix + ".self_attn", context: context)
        let afterAttention = op("Add", [x, attended], prefix + ".attention_residual")
        let normedAgain = norm(afterAttention, layer.mlpNorm, prefix + ".post_attention_layernorm")
        let activated: String
        if let gate = layer.gate {
            let gated = linear(normedAgain, gate, prefix + ".mlp.gate_proj")
            let up = linear(normedAgain, layer.up, prefix + ".mlp.up_proj")
            let silu = op("Mul", [gated, op("Sigmoid", [gated], prefix + ".mlp.gate_sigmoid")], prefix + ".mlp.gate_silu")
            activated = op("Mul", [silu, up], prefix + ".mlp.activated")
        } else {
            activated = geluTanh(linear(normedAgain, layer.up, prefix + ".mlp.up_proj"), prefix + ".mlp.activated")
        }
        let down = linear(activated, layer.down, prefix + ".mlp.down_proj")
        return op("Add", [afterAttention, down], prefix + ".output")
    }

    /// Grouped-query attention as `DecoderModel.attention` computes it: the
    /// `g` query heads of a key/value head as one axis (`[B, kv, g, T, d]`)
    /// against `[B, kv, 1, S, d]` keys, so keys are never repeated.
    private func attention(
        _ x: String, _ layer: DecoderLayerWeights<DecoderONNXParameter>, index: Int, prefix: String, context: AttentionContext
    ) -> String {
        let heads = config.numAttentionHeads, kvHeads = config.numKeyValueHeads, group = config.groupSize
        let d = config.headDimension
        var query = op("Reshape", [linear(x, layer.query, prefix + ".q_proj"), int64s([0, 0, Int64(heads), Int64(d)])], prefix + ".query_heads")
        var key = op("Reshape", [linear(x, layer.key, prefix + ".k_proj"), int64s([0, 0, Int64(kvHeads), Int64(d)])], prefix + ".key_heads")
        let value = op("Reshape", [linear(x, layer.value, prefix + ".v_proj"), int64s([0, 0, Int64(kvHeads), Int64(d)])], prefix + ".value_heads")
        if let cos = context.cos, let sin = context.sin {
            query = rotary(query, cos: cos, sin: sin, prefix + ".query_rotary")
            key = rotary(key, cos: cos, sin: sin, prefix + ".key_rotary")
        }
        var keys = op("Transpose", [key], prefix + ".keys", [.ints("perm", [0, 2, 1, 3])])
        var values = op("Transpose", [value], prefix + ".values", [.ints("perm", [0, 2, 1, 3])])
        if kvCache {
            keys = builder.addNode(
                "Concat", inputs: ["past_key_values.\(index).key", keys], outputs: ["present.\(index).key"], attributes: [.int("axis", 2)])[0]
            values = builder.addNode(
                "Concat", inputs: ["past_key_values.\(index).value", values], outputs: ["present.\(index).value"],
                attributes: [.int("axis", 2)])[0]
        }
        let grouped = op("Reshape", [query, int64s([0, 0, Int64(kvHeads), Int64(group), Int64(d)])], prefix + ".query_groups")
        let queries = op("Transpose", [grouped], prefix + ".queries", [.ints("perm", [0, 2, 3, 1, 4])])
        let keysTransposed = unsqueeze(op("Transpose", [keys], prefix + ".keys_transposed_4d", [.ints("perm", [0, 1, 3, 2])]), [2], prefix + ".keys_transposed")
        let scores = op("MatMul", [queries, keysTransposed], prefix + ".scores")
        let scaled = op("Mul", [scores, floatScalar(1 / Float(d).squareRoot())], prefix + ".scaled_scores")
        let probabilities = op("Softmax", [op("Add", [scaled, context.bias], prefix + ".masked_scores")], prefix + ".probabilities", [.int("axis", -1)])
        let mixed = op("MatMul", [probabilities, unsqueeze(values, [2], prefix + ".values_grouped")], prefix + ".context_groups")
        let tokenMajor = op("Transpose", [mixed], prefix + ".context_token_major", [.ints("perm", [0, 3, 1, 2, 4])])
        let merged = op("Reshape", [tokenMajor, int64s([0, 0, Int64(heads * d)])], prefix + ".context")
        return linear(merged, layer.output, prefix + ".o_proj")
    }

    /// Hugging Face's rotate-half rotary embedding of `x` `[B, T, n, d]`.
    private func rotary(_ x: String, cos: String, sin: String, _ name: String) -> String {
        let half = Int64(config.headDimension / 2)
        let first = op("Slice", [x, int64s([0]), int64s([half]), int64s([3])], name + ".first_half")
        let second = op("Slice", [x, int64s([half]), int64s([2 * half]), int64s([3])], name + ".second_half")
        let rotatedFirst = op("Sub", [op("Mul", [first, cos], name + ".first_cos"), op("Mul", [second, sin], name + ".second_sin")], name + ".rotated_first")
        let rotatedSecond = op("Add", [op("Mul", [second, cos], name + ".second_cos"), op("Mul", [first, sin], name + ".first_sin")], name + ".rotated_second")
        return op("Concat", [rotatedFirst, rotatedSecond], name, [.int("axis", 3)])
    }

    /// RMSNorm (`x / √(mean(x²) + ε) · γ`) or LayerNormalization.
    private func norm(_ x: String, _ weights: NormWeights<DecoderONNXParameter>, _ prefix: String) -> String {
        let gamma = tensor(weights.weight, prefix + ".weight")
        if let bias = weights.bias {
            return op(
                "LayerNormalization", [x, gamma, tensor(bias, prefix + ".bias")], prefix,
                [.int("axis", -1), .float("epsilon", Float(config.normEpsilon))])
        }
        let squares = op("Mul", [x, x], prefix + ".squares")
        let meanSquare: String
        if opset >= 18 {
            meanSquare = op("ReduceMean", [squares, int64s([-1])], prefix + ".mean_square", [.int("keepdims", 1)])
        } else {
            meanSquare = op("ReduceMean", [squares], prefix + ".mean_square", [.ints("axes", [-1]), .int("keepdims", 1)])
        }
        let root = op("Sqrt", [op("Add", [meanSquare, floatScalar(Float(config.normEpsilon))], prefix + ".mean_square_eps")], prefix + ".rms")
        let inverse = op("Reciprocal", [root], prefix + ".inverse_rms")
        return op("Mul", [op("Mul", [x, inverse], prefix + ".normalized"), gamma], prefix)
    }

    /// GPT-2's `gelu_new`: `Gelu(approximate: tanh)` from opset 20, spelled out before.
    private func geluTanh(_ x: String, _ name: String) -> String {
        if opset >= 20 { return op("Gelu", [x], name, [.string("approximate", "tanh")]) }
        let cube = op("Mul", [op("Mul", [x, x], name + ".square"), x], name + ".cube")
        let inner = op("Add", [x, op("Mul", [cube, floatScalar(0.044715)], name + ".cubic_term")], name + ".inner")
        let scaled = op("Mul", [inner, floatScalar(Float((2 / Double.pi).squareRoot()))], name + ".tanh_argument")
        let onePlus = op("Add", [op("Tanh", [scaled], name + ".tanh"), floatScalar(1)], name + ".one_plus_tanh")
        return op("Mul", [op("Mul", [x, floatScalar(0.5)], name + ".half_x"), onePlus], name)
    }

    /// `x · Wᵀ (+ b)`.
    private func linear(_ x: String, _ weights: OptionalBiasLinear<DecoderONNXParameter>, _ module: String) -> String {
        let product = op("MatMul", [x, linearWeight(weights.weight, module + ".weight")], module + ".product")
        guard let bias = weights.bias else { return product }
        return op("Add", [product, tensor(bias, module + ".bias")], module + ".output")
    }

    /// A Linear weight as the right operand of `MatMul`, `[in, out]`: the f32
    /// weight stored transposed, or the codes stored transposed with their
    /// scales (and zero points) and a blocked `DequantizeLinear` over the input axis.
    private func linearWeight(_ parameter: DecoderONNXParameter, _ name: String) -> String {
        switch parameter {
        case .float(let weight):
            let (rows, columns) = (weight.shape[0], weight.shape[1])
            let transposed = Self.transpose(weight.contiguous().floats, rows: rows, columns: columns)
            return builder.addInitializer(name + ".transposed", floats: transposed, shape: [columns, rows])
        case .grouped(let packed):
            return dequantized(packed, name)
        }
    }

    private func dequantized(_ packed: PackedGroupWeights, _ name: String) -> String {
        let (n, k, groups) = (packed.outputCount, packed.inputCount, packed.groupsPerRow)
        let codes = packed.codes.withUnsafeElements(Int8.self) { Self.transpose(Array($0), rows: n, columns: k) }
        let scales = Self.transpose(packed.scales, rows: n, columns: groups)
        let codeName: String
        if packed.bits == 4 {
            codeName = builder.addInitializer(name + ".codes", int4Packed: Self.packInt4(codes), shape: [k, n])
        } else {
            codeName = builder.addInitializer(name + ".codes", int8s: codes, shape: [k, n])
        }
        var inputs = [codeName, builder.addInitializer(name + ".scales", floats: scales, shape: [groups, n])]
        if let zeroPoints = packed.zeroPoints {
            let transposed = Self.transpose(zeroPoints.map { Int8(clamping: $0) }, rows: n, columns: groups)
            if packed.bits == 4 {
                inputs.append(builder.addInitializer(name + ".zero_points", int4Packed: Self.packInt4(transposed), shape: [groups, n]))
            } else {
                inputs.append(builder.addInitializer(name + ".zero_points", int8s: transposed, shape: [groups, n]))
            }
        }
        return op("DequantizeLinear", inputs, name + ".dequantized", [.int("axis", 0), .int("block_size", packed.groupSize)])
    }

    /// An f32 parameter (norms, biases, position table) as an initializer.
    private func tensor(_ parameter: DecoderONNXParameter, _ name: String) -> String {
        switch parameter {
        case .float(let tensor):
            return builder.addInitializer(name, floats: tensor.contiguous().floats, shape: tensor.shape)
        case .grouped(let packed):
            return op("Transpose", [dequantized(packed, name)], name + ".weight", [.ints("perm", [1, 0])])
        }
    }

    /// The token embedding `[vocab, hidden]`, stored once (the tied head reads it too).
    private func embedding(_ parameter: DecoderONNXParameter) -> String {
        let key = "embedding"
        if let name = constants[key] { return name }
        let name = tensor(parameter, "model.embed_tokens.weight")
        constants[key] = name
        return name
    }

    // MARK: Small helpers

    private func op(_ type: String, _ inputs: [String], _ name: String, _ attributes: [ONNXAttribute] = []) -> String {
        builder.add(type, inputs, name: name, attributes: attributes)
    }

    private func unsqueeze(_ x: String, _ axes: [Int64], _ name: String? = nil) -> String {
        op("Unsqueeze", [x, int64s(axes)], name ?? x + ".unsqueezed")
    }

    /// A 1-D i64 constant, shared by every node that uses the same values.
    private func int64s(_ values: [Int64]) -> String {
        let key = "i64:" + values.map(String.init).joined(separator: ",")
        if let name = constants[key] { return name }
        let name = builder.addInitializer("const_i64_" + values.map { String($0).replacingOccurrences(of: "-", with: "m") }.joined(separator: "_"), int64s: values, shape: [values.count])
        constants[key] = name
        return name
    }

    private func int64Scalar(_ value: Int64) -> String {
        let key = "i64 scalar:\(value)"
        if let name = constants[key] { return name }
        let name = builder.addInitializer("const_i64_scalar_\(value)".replacingOccurrences(of: "-", with: "m"), int64s: [value], shape: [])
        constants[key] = name
        return name
    }

    private func floatScalar(_ value: Float) -> String {
        let key = "f32 scalar:\(value.bitPattern)"
        if let name = constants[key] { return name }
        let name = builder.addInitializer("const_f32_\(value.bitPattern)", floats: [value], shape: [])
        constants[key] = name
        return name
    }

    static func transpose<T>(_ values: [T], rows: Int, columns: Int) -> [T] {
        guard let first = values.first else { return [] }
        var result = [T](repeating: first, count: values.count)
        for row in 0..<rows {
            for column in 0..<columns {
                result[column * rows + row] = values[row * columns + column]
            }
        }
        return result
    }

    /// Signed 4-bit values two per byte, element `2i` in the low nibble of byte `i` (ONNX INT4).
    static func packInt4(_ values: [Int8]) -> [UInt8] {
        var packed = [UInt8](repeating: 0, count: (values.count + 1) / 2)
        for (index, value) in values.enumerated() {
            let nibble = UInt8(bitPattern: value) & 0x0F
            packed[index / 2] |= index % 2 == 0 ? nibble : nibble << 4
        }
        return packed
    }
}
