import SqueezeTensor

/// What flows between decoder blocks for one batch: the hidden state
/// `[B, T, hidden]` (every token real: language-model batches are unpadded).
public struct DecoderBlockState: Sendable {
    public var hidden: Tensor

    public init(hidden: Tensor) { self.hidden = hidden }
}

/// A decoder's linear layers: one block per layer (`model.layers.i`) with
/// `self_attn.q_proj`, `k_proj`, `v_proj`, `o_proj`, `mlp.gate_proj` (gated
/// families), `mlp.up_proj` and `mlp.down_proj` — the module names
/// `transformers` gives Llama, used for GPT-2 too (its fused `c_attn` is
/// split into the three projections) — and `lm_head` outside every block
/// when the head is not tied to the embeddings. Batches are i32 token ids
/// `[B, T]`. Blocks run `DecoderModel.block`, the forward pass itself.
extension DecoderModel: LinearLayerModel {
    public typealias Batch = Tensor
    public typealias BlockState = DecoderBlockState

    static let blockLinearSuffixes = [
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
        "mlp.down_proj",
    ]

    public var linearBlocks: [LinearBlock] {
        weights.layers.indices.map { index in
            let prefix = "model.layers.\(index)"
            let layers = Self.blockLinearSuffixes.compactMap { suffix -> LinearLayer? in
                linearSlot(prefix + "." + suffix).map { Self.describe(prefix + "." + suffix, $0) }
            }
            return LinearBlock(index: index, name: prefix, layers: layers)
        }
    }

    public var linearLayers: [LinearLayer] {
        var layers = linearBlocks.flatMap(\.layers)
        if let head = linearSlot("lm_head") { layers.append(Self.describe("lm_head", head)) }
        return layers
    }

    public func linearWeight(_ name: String) throws(LinearViewError) -> Tensor { try existingSlot(name).weight }

    public func linearBias(_ name: String) throws(LinearViewError) -> Tensor? { try existingSlot(name).bias }

    /// A masked weight keeps its mask: the new weight's pruned positions become +0.0.
    public mutating func setLinearWeight(_ name: String, to weight: Tensor) throws(LinearViewError) {
        var linear = try existingSlot(name)
        try LinearSlots.checkReplacement(weight, for: linear.weight, name: name + ".weight")
        linear.weight = weight
        masks[name + ".weight"]?.zeroPruned(in: &linear.weight)
        setLinearSlot(name, linear)
    }

    public mutating func setLinearBias(_ name: String, to bias: Tensor) throws(LinearViewError) {
        var linear = try existingSlot(name)
        guard let current = linear.bias else { throw LinearViewError("`\(name)` has no bias") }
        try LinearSlots.checkReplacement(bias, for: current, name: name + ".bias")
        linear.bias = bias
        setLinearSlot(name, linear)
    }

    public var linearMasks: [String: WeightMask] { linearLayerMasks }

    public mutating func setLinearMask(_ name: String, to mask: WeightMask?) throws(LinearViewError) {
        _ = try existingSlot(name)
        try setLinearLayerMask(name, to: mask)
    }

    /// The embeddings' output for the token ids `batch` `[B, T]`.
    public func blockInput(for batch: Tensor, backend: any Backend) throws(LinearViewError) -> DecoderBlockState {
        do {
            try check(batch, past: 0)
        } catch {
            throw LinearViewError(error.message)
        }
        return DecoderBlockState(hidden: Self.embed(Eager(backend: backend), weights, config: config, ids: batch, past: 0))
    }

    public func runBlock(
        _ index: Int, on input: DecoderBlockState, capturing: Set<String>, backend: any Backend
    ) throws(LinearViewError) -> (output: DecoderBlockState, inputs: [String: Tensor]) {
        guard weights.layers.indices.contains(index) else {
            throw LinearViewError("block \(index) does not exist: the model has \(weights.layers.count) layers")
        }
        let shape = input.hidden.shape
        guard input.hidden.dtype == .f32, shape.count == 3, shape[2] == config.hiddenSize, shape[1] <= config.maximumSequenceLength else {
            throw LinearViewError("block input must be f32 [B, T ≤ \(config.maximumSequenceLength), \(config.hiddenSize)], got \(input.hidden.dtype) \(shape)")
        }
        let prefix = "model.layers.\(index)"
        let recorder = LinearInputRecorder(attentionMask: Tensor(shape: [shape[0], shape[1]], int32s: Array(repeating: 1, count: shape[0] * shape[1])))
        let ops = CapturingOperations(eager: Eager(backend: backend), recorder: recorder)
        let layer = weights.layers[index].map(prefix) { name, tensor in
            let module = String(name.dropLast(".weight".count))
            let captured = name.hasSuffix(".weight") && capturing.contains(module)
            return CapturingOperations.Value(tensor: tensor, capturedAs: captured ? module : nil)
        }
        let context = AttentionContext(config: config, inverseFrequencies: inverseFrequencies, length: shape[1], past: 0)
        var cache: DecoderKVCache?
        let output = Self.block(ops, ops.constant(input.hidden), layer, config: config, context: context, layerIndex: index, cache: &cache)
        return (DecoderBlockState(hidden: output.tensor), recorder.inputs)
    }

    // MARK: Slots

    /// The linear layer `name` when the model has it.
    private func linearSlot(_ name: String) -> OptionalBiasLinear<Tensor>? {
        if name == "lm_head" { return weights.head.map { OptionalBiasLinear(weight: $0, bias: nil) } }
        guard let (index, suffix) = LinearSlots.blockAddress(name, marker: "model.layers."), weights.layers.indices.contains(index) else { return nil }
        let layer = weights.layers[index]
        switch suffix {
        case "self_attn.q_proj": return layer.query
        case "self_attn.k_proj": return layer.key
        case "self_attn.v_proj": return layer.value
        case "self_attn.o_proj": return layer.output
        case "mlp.gate_proj": return layer.gate
        case "mlp.up_proj": return layer.up
        case "mlp.down_proj": return layer.down
        default: return nil
        }
    }

    private func existingSlot(_ name: String) throws(LinearViewError) -> OptionalBiasLinear<Tensor> {
        guard let linear = linearSlot(name) else {
            throw LinearViewError("the model has no linear layer `\(name)` (names look like `model.layers.0.self_attn.q_proj`)")
        }
        return linear
    }

    private mutating func setLinearSlot(_ name: String, _ linear: OptionalBiasLinear<Tensor>) {
        if name == "lm_head" {
            weights.head = linear.weight
            return
        }
        guard let (index, suffix) = LinearSlots.blockAddress(name, marker: "model.layers."), weights.layers.indices.contains(index) else { return }
        switch suffix {
        case "self_attn.q_proj": weights.layers[index].query = linear
        case "self_attn.k_proj": weights.layers[index].key = linear
        case "self_attn.v_proj": weights.layers[index].value = linear
        case "self_attn.o_proj": weights.layers[index].output = linear
        case "mlp.gate_proj": weights.layers[index].gate = linear
        case "mlp.up_proj": weights.layers[index].up = linear
        case "mlp.down_proj": weights.layers[index].down = linear
        default: return
        }
    }


    private static func describe(_ name: String, _ linear: OptionalBiasLinear<Tensor>) -> LinearLayer {
        LinearLayer(name: name, outFeatures: linear.weight.shape[0], inFeatures: linear.weight.shape[1], hasBias: linear.bias != nil)
    }

}
