import SqueezeTensor

/// A problem with the input of a decoder forward pass: ids outside the
/// vocabulary, a sequence longer than the model's context, a bad shape.
public struct DecoderInputError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// A decoder-only language model (Llama, Mistral, Qwen2, GPT-2 layouts; see
/// `DecoderConfig`): token (and learned position) embeddings, pre-norm
/// blocks of causal self-attention (rotary positions, grouped-query
/// attention) and an MLP (SwiGLU or GELU), a final norm and the LM head.
///
/// The forward pass is written once against `TensorOperations`: `Eager` for
/// inference (with an optional KV cache), a `Tape` for training.
public struct DecoderModel: Sendable {
    public let config: DecoderConfig
    public internal(set) var weights: DecoderWeights<Tensor>
    /// The pruning masks of sparse weights, by parameter name
    /// (`model.layers.0.mlp.up_proj.weight`): pruned positions are +0.0 and
    /// stay so through `updateParameters`, and `save` stores them sparsely.
    public internal(set) var masks: [String: WeightMask] = [:]
    /// The rotary inverse frequencies (scaling applied); empty for learned positions.
    public let inverseFrequencies: [Float]

    /// A model over `weights`, whose shapes are checked against `config`
    /// (`file` names the source in errors).
    public init(config: DecoderConfig, weights: DecoderWeights<Tensor>, masks: [String: WeightMask] = [:], file: String = "<weights>")
        throws(ModelFileError)
    {
        try config.validate(file: file)
        try Self.checkShapes(weights, config: config, file: file)
        self.config = config
        self.weights = weights
        self.inverseFrequencies = Self.rotaryInverseFrequencies(config)
        for (name, mask) in masks.sorted(by: { $0.key < $1.key }) {
            try setMask(mask, forParameter: name, file: file)
        }
    }

    /// Number of scalar parameters (a tied head counted once).
    public var parameterCount: Int { weights.elements.reduce(0) { $0 + $1.count } }

    /// True for parameters that get weight decay: matrices (not biases,
    /// norms), the `transformers` convention, in `elements` order.
    public static func decayMask(names: [String]) -> [Bool] {
        names.map { !$0.hasSuffix(".bias") && !$0.contains("norm") }
    }

    // MARK: Masks and updates

    /// Masks the weight `name`: its pruned positions become +0.0 and stay so.
    /// `nil` removes the mask, leaving the values.
    public mutating func setMask(_ mask: WeightMask?, forParameter name: String, file: String = "<weights>") throws(ModelFileError) {
        try applyMask(mask, forParameter: name, file: file)
    }

    /// Zeroes the gradients (in `weights.elements` order) of pruned weights.
    public func maskGradients(_ gradients: inout [Tensor?]) { zeroMaskedGradients(&gradients) }

    /// Lets `body` change the parameters in place (in `weights.elements`
    /// order; same shapes); the masks are applied afterwards.
    public mutating func updateParameters(_ body: (inout [Tensor]) throws -> Void) rethrows {
        try updateMaskedParameters(body)
    }

    // MARK: Inference and training

    /// Logits `[B, T, vocab]` for i32 token ids `[B, T]` (no cache).
    public func logits(_ ids: Tensor, backend: any Backend) throws(DecoderInputError) -> Tensor {
        try check(ids, past: 0)
        var cache: DecoderKVCache?
        return Self.logits(Eager(backend: backend), weights, config: config, inverseFrequencies: inverseFrequencies, ids: ids, cache: &cache)
    }

    /// Records the forward pass and the mean next-token cross-entropy over
    /// every position but the last of each row of `ids` `[B, T]` on `tape`
    /// (dropout when the tape has a seed).
    public func trainingLoss(on tape: Tape, ids: Tensor) throws(DecoderInputError) -> (loss: Variable, parameters: DecoderWeights<Variable>) {
        try check(ids, past: 0)
        guard ids.shape[1] >= 2 else { throw DecoderInputError("a training sequence needs at least 2 tokens, got \(ids.shape[1])") }
        let parameters = weights.map { _, tensor in tape.parameter(tensor) }
        let loss = Self.languageModelLoss(tape, parameters, config: config, inverseFrequencies: inverseFrequencies, ids: ids)
        return (loss, parameters)
    }

    /// The next-token cross-entropy of `ids` `[B, T]`: position t predicts t+1.
    public static func languageModelLoss<Ops: TensorOperations>(
        _ ops: Ops, _ weights: DecoderWeights<Ops.Value>, config: DecoderConfig, inverseFrequencies: [Float], ids: Tensor
    ) -> Ops.Value {
        var cache: DecoderKVCache?
        let hidden = Self.hiddenStates(ops, weights, config: config, inverseFrequencies: inverseFrequencies, ids: ids, cache: &cache)
        let logits = nextTokenLogits(ops, hidden, weights, config: config)
        return ops.crossEntropy(logits, labels: nextTokenLabels(ids))
    }

    /// The logits `[B·(T−1), vocab]` of every position that predicts a next
    /// token (all but the last of each row), rows in `nextTokenLabels`
    /// order, from the final-norm hidden states `[B, T, hidden]`.
    public static func nextTokenLogits<Ops: TensorOperations>(
        _ ops: Ops, _ hidden: Ops.Value, _ weights: DecoderWeights<Ops.Value>, config: DecoderConfig
    ) -> Ops.Value {
        let shape = ops.tensor(hidden).shape
        let (batch, length) = (shape[0], shape[1])
        let predicting = ops.reshape(ops.slice(hidden, axis: 1, 0..<(length - 1)), [batch * (length - 1), config.hiddenSize])
        return head(ops, predicting, weights)
    }

    /// `ids[:, 1:]` flattened: the labels of `languageModelLoss`.
    public static func nextTokenLabels(_ ids: Tensor) -> Tensor {
        let (batch, length) = (ids.shape[0], ids.shape[1])
        let values = ids.int32s
        var labels: [Int32] = []
        labels.reserveCapacity(batch * (length - 1))
        for row in 0..<batch {
            labels.append(contentsOf: values[(row * length + 1)..<((row + 1) * length)])
        }
        return Tensor(shape: [batch * (length - 1)], int32s: labels)
    }

    /// Checks `ids` (`[B, T]` i32, in the vocabulary) and that `past + T` fits the context.
    public func check(_ ids: Tensor, past: Int) throws(DecoderInputError) {
        try DecoderInference.check(ids, past: past, config: config)
    }

    /// The forward pass `DecoderInference` runs: Eager logits, reading and extending the cache.
    public func forward(backend: any Backend) -> DecoderInference.Forward {
        let (weights, config, frequencies) = (weights, config, inverseFrequencies)
        return { ids, cache in
            Self.logits(Eager(backend: backend), weights, config: config, inverseFrequencies: frequencies, ids: ids, cache: &cache)
        }
    }

    // MARK: The forward pass

    /// Logits `[B, T, vocab]` for checked ids; with a cache, the tokens
    /// follow the cached ones and their keys and values are appended.
    public static func logits<Ops: TensorOperations>(
        _ ops: Ops, _ weights: DecoderWeights<Ops.Value>, config: DecoderConfig, inverseFrequencies: [Float], ids: Tensor,
        cache: inout DecoderKVCache?
    ) -> Ops.Value {
        let hidden = hiddenStates(ops, weights, config: config, inverseFrequencies: inverseFrequencies, ids: ids, cache: &cache)
        return head(ops, hidden, weights)
    }

    /// The final-norm hidden states `[B, T, hidden]`.
    public static func hiddenStates<Ops: TensorOperations>(
        _ ops: Ops, _ weights: DecoderWeights<Ops.Value>, config: DecoderConfig, inverseFrequencies: [Float], ids: Tensor,
        cache: inout DecoderKVCache?
    ) -> Ops.Value {
        layerStates(ops, weights, config: config, inverseFrequencies: inverseFrequencies, ids: ids, cache: &cache, keeping: []).hidden
    }

    /// The final-norm hidden states `[B, T, hidden]` and the outputs
    /// (residual stream, `[B, T, hidden]`) of the blocks in `keeping`
    /// (0-based), as layer distillation compares them. Only the blocks asked
    /// for are kept, so inference holds one block's activations at a time.
    public static func layerStates<Ops: TensorOperations>(
        _ ops: Ops, _ weights: DecoderWeights<Ops.Value>, config: DecoderConfig, inverseFrequencies: [Float], ids: Tensor,
        cache: inout DecoderKVCache?, keeping: Set<Int>
    ) -> (hidden: Ops.Value, blockOutputs: [Int: Ops.Value]) {
        let past = cache?.length ?? 0
        let context = AttentionContext(config: config, inverseFrequencies: inverseFrequencies, length: ids.shape[1], past: past)
        var x = embed(ops, weights, config: config, ids: ids, past: past)
        var kept: [Int: Ops.Value] = [:]
        for (index, layer) in weights.layers.enumerated() {
            x = block(ops, x, layer, config: config, context: context, layerIndex: index, cache: &cache)
            if keeping.contains(index) { kept[index] = x }
        }
        cache?.advance(by: ids.shape[1])
        return (norm(ops, x, weights.finalNorm, config: config), kept)
    }

    /// Token embeddings (plus learned positions `past..<past+T`), with dropout.
    static func embed<Ops: TensorOperations>(
        _ ops: Ops, _ weights: DecoderWeights<Ops.Value>, config: DecoderConfig, ids: Tensor, past: Int
    ) -> Ops.Value {
        var x = ops.gather(weights.tokenEmbedding, ids: ids)
        if let positions = weights.positionEmbedding {
            x = ops.add(x, ops.slice(positions, axis: 0, past..<(past + ids.shape[1])))
        }
        return ops.dropout(x, probability: Float(config.residualDropout))
    }

    /// The LM head: logits over the vocabulary (the tied embedding when there is no head).
    static func head<Ops: TensorOperations>(_ ops: Ops, _ hidden: Ops.Value, _ weights: DecoderWeights<Ops.Value>) -> Ops.Value {
        ops.linear(hidden, weight: weights.head ?? weights.tokenEmbedding, bias: nil)
    }

    static func norm<Ops: TensorOperations>(_ ops: Ops, _ x: Ops.Value, _ norm: NormWeights<Ops.Value>, config: DecoderConfig) -> Ops.Value {
        let epsilon = Float(config.normEpsilon)
        if let bias = norm.bias { return ops.layerNorm(x, gamma: norm.weight, beta: bias, epsilon: epsilon) }
        return ops.rmsNorm(x, gamma: norm.weight, epsilon: epsilon)
    }

    static func linear<Ops: TensorOperations>(_ ops: Ops, _ x: Ops.Value, _ linear: OptionalBiasLinear<Ops.Value>) -> Ops.Value {
        ops.linear(x, weight: linear.weight, bias: linear.bias)
    }

    /// The rotary tables and causal bias one forward pass shares across blocks.
    struct AttentionContext {
        var cos: Tensor?
        var sin: Tensor?
        /// `[1, 1, T·g, past+T]` for `g` query heads per key/value head, rows
        /// token-major; nil when a single new token sees every key.
        var causalBias: Tensor?
        var past: Int

        init(config: DecoderConfig, inverseFrequencies: [Float], length: Int, past: Int) {
            self.past = past
            if case .rotary = config.positions {
                let tables = Rotary.rotaryTables(
                    positions: past..<(past + length), headDimension: config.headDimension, inverseFrequencies: inverseFrequencies)
                cos = tables.cos
                sin = tables.sin
            }
            causalBias = length == 1 ? nil : Self.causalBias(length: length, past: past, group: config.groupSize)
        }

        static func causalBias(length: Int, past: Int, group: Int) -> Tensor {
            let keys = past + length
            var values = [Float](repeating: 0, count: length * group * keys)
            for token in 0..<length {
                for member in 0..<group {
                    let row = (token * group + member) * keys
                    for key in (past + token + 1)..<keys { values[row + key] = -1e9 }
                }
            }
            return Tensor(shape: [1, 1, length * group, keys], floats: values)
        }
    }

    /// One pre-norm block: `x + attention(norm(x))`, then `+ mlp(norm(·))`.
    static func block<Ops: TensorOperations>(
        _ ops: Ops, _ x: Ops.Value, _ layer: DecoderLayerWeights<Ops.Value>, config: DecoderConfig, context: AttentionContext,
        layerIndex: Int, cache: inout DecoderKVCache?
    ) -> Ops.Value {
        let dropout = Float(config.residualDropout)
        let normed = norm(ops, x, layer.attentionNorm, config: config)
        let attended = attention(ops, normed, layer, config: config, context: context, layerIndex: layerIndex, cache: &cache)
        let afterAttention = ops.add(x, ops.dropout(attended, probability: dropout))
        let normedAgain = norm(ops, afterAttention, layer.mlpNorm, config: config)
        let activated: Ops.Value
        if let gate = layer.gate {
            activated = ops.gatedSiLU(gate: linear(ops, normedAgain, gate), up: linear(ops, normedAgain, layer.up))
        } else {
            activated = ops.geluTanh(linear(ops, normedAgain, layer.up))
        }
        return ops.add(afterAttention, ops.dropout(linear(ops, activated, layer.down), probability: dropout))
    }

    /// Causal multi-head attention with grouped key/value heads. The `g`
    /// query heads sharing a key/value head are folded into the query
    /// length (`[B, kv, T·g, d]` against `[B, kv, S, d]`), so one attention
    /// call serves grouped-query attention without repeating keys.
    static func attention<Ops: TensorOperations>(
        _ ops: Ops, _ x: Ops.Value, _ layer: DecoderLayerWeights<Ops.Value>, config: DecoderConfig, context: AttentionContext,
        layerIndex: Int, cache: inout DecoderKVCache?
    ) -> Ops.Value {
        let shape = ops.tensor(x).shape
        let (batch, length) = (shape[0], shape[1])
        let heads = config.numAttentionHeads, kvHeads = config.numKeyValueHeads, group = config.groupSize
        let d = config.headDimension
        var query = ops.reshape(linear(ops, x, layer.query), [batch, length, heads, d])
        var key = ops.reshape(linear(ops, x, layer.key), [batch, length, kvHeads, d])
        let value = ops.reshape(linear(ops, x, layer.value), [batch, length, kvHeads, d])
        if let cos = context.cos, let sin = context.sin {
            query = ops.rotary(query, cos: cos, sin: sin)
            key = ops.rotary(key, cos: cos, sin: sin)
        }
        // [B, S, kv, d] → [B, kv, S, d] views; with a cache, every key so far.
        var keys = ops.transpose(key, 1, 2)
        var values = ops.transpose(value, 1, 2)
        if cache != nil {
            let all = cache?.append(layer: layerIndex, keys: ops.tensor(key), values: ops.tensor(value))
            if let all {
                keys = ops.constant(all.keys)
                values = ops.constant(all.values)
            }
        }
        let queries: Ops.Value = group == 1
            ? ops.transpose(query, 1, 2)
            : ops.reshape(ops.transpose(ops.reshape(query, [batch, length, kvHeads, group, d]), 1, 2), [batch, kvHeads, length * group, d])
        let context = ops.attention(
            query: queries, key: keys, value: values, bias: context.causalBias, scale: 1 / Float(d).squareRoot(),
            dropout: Float(config.attentionDropout))
        let merged: Ops.Value = group == 1
            ? ops.reshape(ops.transpose(context, 1, 2), [batch, length, heads * d])
            : ops.reshape(ops.transpose(ops.reshape(context, [batch, kvHeads, length, group, d]), 1, 2), [batch, length, heads * d])
        return linear(ops, merged, layer.output)
    }

    // MARK: Rotary frequencies

    /// The rotary inverse frequencies of `config`, scaled as its `rope_scaling` says (f32, as `transformers` computes them).
    public static func rotaryInverseFrequencies(_ config: DecoderConfig) -> [Float] {
        guard case .rotary(let theta, let scaling) = config.positions else { return [] }
        let base = Rotary.inverseFrequencies(headDimension: config.headDimension, theta: theta)
        switch scaling {
        case nil:
            return base
        case .linear(let factor)?:
            return base.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let original)?:
            let factor = Float(factor), low = Float(low), high = Float(high), original = Float(original)
            let lowFrequencyWavelength = original / low
            let highFrequencyWavelength = original / high
            return base.map { frequency in
                let wavelength = 2 * Float.pi / frequency
                let scaled = wavelength > lowFrequencyWavelength ? frequency / factor : frequency
                guard !(wavelength < highFrequencyWavelength) && !(wavelength > lowFrequencyWavelength) else { return scaled }
                let smooth = (original / wavelength - low) / (high - low)
                return (1 - smooth) * scaled / factor + smooth * scaled
            }
        }
    }

    // MARK: Shapes

    /// The shape of every parameter `config` has.
    public static func expectedShapes(_ config: DecoderConfig) -> DecoderWeights<[Int]> {
        let hidden = config.hiddenSize, d = config.headDimension
        let queryWidth = config.numAttentionHeads * d, keyValueWidth = config.numKeyValueHeads * d
        let structure = DecoderWeights<Bool>(repeating: true, config: config)
        return structure.map { name, _ -> [Int] in
            let isBias = name.hasSuffix(".bias")
            func linear(_ out: Int, _ input: Int) -> [Int] { isBias ? [out] : [out, input] }
            switch name {
            case "model.embed_tokens.weight", "lm_head.weight": return [config.vocabSize, hidden]
            case "model.embed_positions.weight": return [config.maxPositionEmbeddings, hidden]
            default: break
            }
            if name.contains("norm") { return [hidden] }
            if name.contains(".q_proj.") { return linear(queryWidth, hidden) }
            if name.contains(".k_proj.") || name.contains(".v_proj.") { return linear(keyValueWidth, hidden) }
            if name.contains(".o_proj.") { return linear(hidden, queryWidth) }
            if name.contains(".gate_proj.") || name.contains(".up_proj.") { return linear(config.intermediateSize, hidden) }
            return linear(hidden, config.intermediateSize)
        }
    }

    static func checkShapes(_ weights: DecoderWeights<Tensor>, config: DecoderConfig, file: String) throws(ModelFileError) {
        guard weights.layers.count == config.numHiddenLayers else {
            throw ModelFileError(file: file, "\(weights.layers.count) layers, but num_hidden_layers is \(config.numHiddenLayers)")
        }
        let expected = expectedShapes(config)
        guard expected.names == weights.names else {
            let missing = Set(expected.names).subtracting(weights.names).sorted()
            let extra = Set(weights.names).subtracting(expected.names).sorted()
            throw ModelFileError(
                file: file,
                "the parameters do not match the config: missing \(missing.prefix(5)), unexpected \(extra.prefix(5))")
        }
        for ((name, shape), tensor) in zip(zip(expected.names, expected.elements), weights.elements) {
            guard tensor.dtype == .f32 else { throw ModelFileError(file: file, "`\(name)` is \(tensor.dtype), expected f32") }
            guard tensor.shape == shape else {
                throw ModelFileError(file: file, "`\(name)` has shape \(tensor.shape), but the config implies \(shape)")
            }
        }
    }
}

extension DecoderModel: MaskedParameters {
    public var parameterTensors: [Tensor] { weights.elements }

    mutating func replaceParameters(_ tensors: [Tensor]) { weights = weights.replacing(with: tensors) }

    mutating func takeParameters() -> [Tensor] {
        let tensors = weights.elements
        weights = weights.map { _, _ in Tensor(zeros: [0]) }
        return tensors
    }
}
