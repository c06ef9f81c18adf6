/// A decoder's parameters, generic over what is stored per parameter
/// (`Tensor` for a model, `Variable` on a tape, `Tensor?` for gradients).
/// Every family is held in one layout, named as Hugging Face names Llama's
/// parameters (`model.layers.0.self_attn.q_proj.weight`); GPT-2's fused and
/// transposed `Conv1D` weights are split and transposed into it when loaded
/// (`DecoderCheckpoint`). Optional slots (biases, the gate, learned
/// positions, an untied head) are nil when the family has none. `map`
/// visits the parameters in one fixed order, the optimiser's.
public struct DecoderWeights<T> {
    /// `model.embed_tokens.weight` `[vocab, hidden]`.
    public var tokenEmbedding: T
    /// `model.embed_positions.weight` `[positions, hidden]` (GPT-2's `wpe`).
    public var positionEmbedding: T?
    public var layers: [DecoderLayerWeights<T>]
    /// `model.norm`.
    public var finalNorm: NormWeights<T>
    /// `lm_head.weight` `[vocab, hidden]`; nil when tied to the token embedding.
    public var head: T?

    public init(tokenEmbedding: T, positionEmbedding: T?, layers: [DecoderLayerWeights<T>], finalNorm: NormWeights<T>, head: T?) {
        self.tokenEmbedding = tokenEmbedding
        self.positionEmbedding = positionEmbedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.head = head
    }

    /// Every slot `config` has, holding `value`.
    public init(repeating value: T, config: DecoderConfig) {
        let normBias = config.usesRMSNorm ? nil : value
        let norm = NormWeights(weight: value, bias: normBias)
        func linear(_ bias: Bool) -> OptionalBiasLinear<T> { OptionalBiasLinear(weight: value, bias: bias ? value : nil) }
        let layer = DecoderLayerWeights(
            attentionNorm: norm, query: linear(config.queryKeyValueBias), key: linear(config.queryKeyValueBias),
            value: linear(config.queryKeyValueBias), output: linear(config.outputBias), mlpNorm: norm,
            gate: config.usesGatedMLP ? linear(config.mlpBias) : nil, up: linear(config.mlpBias), down: linear(config.mlpBias))
        self.init(
            tokenEmbedding: value, positionEmbedding: config.positions == .learned ? value : nil,
            layers: Array(repeating: layer, count: config.numHiddenLayers), finalNorm: norm,
            head: config.tieWordEmbeddings ? nil : value)
    }

    /// Applies `transform` to every parameter with its name, in order.
    public func map<U, E: Error>(_ transform: (String, T) throws(E) -> U) throws(E) -> DecoderWeights<U> {
        let token = try transform("model.embed_tokens.weight", tokenEmbedding)
        let position = try positionEmbedding.map { (value) throws(E) -> U in try transform("model.embed_positions.weight", value) }
        var mapped: [DecoderLayerWeights<U>] = []
        mapped.reserveCapacity(layers.count)
        for (index, layer) in layers.enumerated() {
            mapped.append(try layer.map("model.layers.\(index)", transform))
        }
        let norm = try finalNorm.map("model.norm", transform)
        let head = try self.head.map { (value) throws(E) -> U in try transform("lm_head.weight", value) }
        return DecoderWeights<U>(tokenEmbedding: token, positionEmbedding: position, layers: mapped, finalNorm: norm, head: head)
    }

    /// The parameters in order.
    public var elements: [T] {
        var result: [T] = []
        _ = map { _, value in result.append(value) }
        return result
    }

    /// The parameter names in order.
    public var names: [String] {
        var result: [String] = []
        _ = map { name, _ in result.append(name) }
        return result
    }

    /// The same structure filled from `values` in `elements` order.
    public func replacing<U>(with values: [U]) -> DecoderWeights<U> {
        precondition(values.count == elements.count, "\(values.count) values for \(elements.count) parameters")
        var index = 0
        return map { _, _ in
            defer { index += 1 }
            return values[index]
        }
    }
}

/// A linear layer whose bias may be absent: `weight` `[out, in]`, `bias` `[out]`.
public struct OptionalBiasLinear<T> {
    public var weight: T
    public var bias: T?

    public init(weight: T, bias: T?) {
        self.weight = weight
        self.bias = bias
    }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> OptionalBiasLinear<U> {
        let weight = try transform(prefix + ".weight", weight)
        let bias = try self.bias.map { (value) throws(E) -> U in try transform(prefix + ".bias", value) }
        return OptionalBiasLinear<U>(weight: weight, bias: bias)
    }
}

/// A norm's scale (`weight`) and, for LayerNorm, its shift (`bias`; nil for RMSNorm).
public struct NormWeights<T> {
    public var weight: T
    public var bias: T?

    public init(weight: T, bias: T?) {
        self.weight = weight
        self.bias = bias
    }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> NormWeights<U> {
        let weight = try transform(prefix + ".weight", weight)
        let bias = try self.bias.map { (value) throws(E) -> U in try transform(prefix + ".bias", value) }
        return NormWeights<U>(weight: weight, bias: bias)
    }
}

/// One decoder block. With `h` query heads, `g` key/value heads of size `d`
/// and MLP width `f`: query `[h·d, hidden]`, key and value `[g·d, hidden]`,
/// output `[hidden, h·d]`, gate and up `[f, hidden]`, down `[hidden, f]`.
public struct DecoderLayerWeights<T> {
    /// `input_layernorm`
    public var attentionNorm: NormWeights<T>
    public var query: OptionalBiasLinear<T>
    public var key: OptionalBiasLinear<T>
    public var value: OptionalBiasLinear<T>
    /// `self_attn.o_proj`
    public var output: OptionalBiasLinear<T>
    /// `post_attention_layernorm`
    public var mlpNorm: NormWeights<T>
    /// `mlp.gate_proj`; nil for GPT-2's ungated MLP.
    public var gate: OptionalBiasLinear<T>?
    public var up: OptionalBiasLinear<T>
    public var down: OptionalBiasLinear<T>

    public init(
        attentionNorm: NormWeights<T>, query: OptionalBiasLinear<T>, key: OptionalBiasLinear<T>, value: OptionalBiasLinear<T>,
        output: OptionalBiasLinear<T>, mlpNorm: NormWeights<T>, gate: OptionalBiasLinear<T>?, up: OptionalBiasLinear<T>,
        down: OptionalBiasLinear<T>
    ) {
        self.attentionNorm = attentionNorm
        self.query = query
        self.key = key
        self.value = value
        self.output = output
        self.mlpNorm = mlpNorm
        self.gate = gate
        self.up = up
        self.down = down
    }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> DecoderLayerWeights<U> {
        DecoderLayerWeights<U>(
            attentionNorm: try attentionNorm.map(prefix + ".input_layernorm", transform),
            query: try query.map(prefix + ".self_attn.q_proj", transform),
            key: try key.map(prefix + ".self_attn.k_proj", transform),
            value: try value.map(prefix + ".self_attn.v_proj", transform),
            output: try output.map(prefix + ".self_attn.o_proj", transform),
            mlpNorm: try mlpNorm.map(prefix + ".post_attention_layernorm", transform),
            gate: try gate.map { (gate) throws(E) -> OptionalBiasLinear<U> in try gate.map(prefix + ".mlp.gate_proj", transform) },
            up: try up.map(prefix + ".mlp.up_proj", transform),
            down: try down.map(prefix + ".mlp.down_proj", transform))
    }
}

extension DecoderWeights: Sendable where T: Sendable {}
extension DecoderLayerWeights: Sendable where T: Sendable {}
extension OptionalBiasLinear: Sendable where T: Sendable {}
extension NormWeights: Sendable where T: Sendable {}
