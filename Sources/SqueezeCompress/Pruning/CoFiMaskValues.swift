import SqueezeModels

/// Sizes of the encoder a mask set is for: hidden size, head size and each
/// layer's heads and FFN width (layers may differ).
public struct CoFiStructure: Sendable, Hashable {
    public var hiddenSize: Int
    public var headDimension: Int
    public var layers: [BertLayerShape]

    public init(hiddenSize: Int, headDimension: Int, layers: [BertLayerShape]) {
        self.hiddenSize = hiddenSize
        self.headDimension = headDimension
        self.layers = layers
    }

    /// The structure of `model`.
    public init(model: BertModel) {
        self.init(hiddenSize: model.config.hiddenSize, headDimension: model.config.headDimension, layers: model.layerShapes)
    }

    /// `M`: the prunable parameters of the unpruned encoder, counted as the
    /// paper does (query, key, value and output weights, both FFN weights; no
    /// biases, embeddings or LayerNorms).
    public var fullPrunableParameterCount: Int {
        layers.reduce(0) { $0 + (4 * $1.heads * headDimension + 2 * $1.intermediateSize) * hiddenSize }
    }

    /// The expected number of remaining prunable parameters `ŝ` for the
    /// probabilities `p` of every mask entry being non-zero, and `dŝ/dp`:
    ///
    ///     ŝ = Σ_l Σ_h p_MHA,l · p_head,l,h · Σ_k p_hidden,k · 4·d_h
    ///       + Σ_l Σ_i p_FFN,l · p_int,l,i · Σ_k p_hidden,k · 2
    ///
    /// With every `p` in {0, 1} this is the exact count of the model
    /// compacted from those masks.
    public func expectedRemainingParameters(_ p: CoFiMaskValues) -> (value: Double, gradient: CoFiMaskValues) {
        var gradient = CoFiMaskValues(structure: self, repeating: 0)
        let hiddenTotal = p.hidden.reduce(0, +)
        let perHead = 4 * Double(headDimension)
        var attention = 0.0  // Σ_l Σ_h p_MHA · p_head · 4 d_h
        var ffn = 0.0  // Σ_l Σ_i p_FFN · p_int · 2
        for layer in layers.indices {
            let heads = p.heads[layer].reduce(0, +)
            attention += p.attentionLayers[layer] * heads * perHead
            gradient.attentionLayers[layer] = heads * perHead * hiddenTotal
            gradient.heads[layer] = p.heads[layer].map { _ in p.attentionLayers[layer] * perHead * hiddenTotal }
            let units = p.intermediate[layer].reduce(0, +)
            ffn += p.ffnLayers[layer] * units * 2
            gradient.ffnLayers[layer] = units * 2 * hiddenTotal
            gradient.intermediate[layer] = p.intermediate[layer].map { _ in p.ffnLayers[layer] * 2 * hiddenTotal }
        }
        gradient.hidden = p.hidden.map { _ in attention + ffn }
        return ((attention + ffn) * hiddenTotal, gradient)
    }
}

/// One number per mask entry (mask values, probabilities or gradients):
/// `z_MHA` `[L]`, `z_head` `[L][H_l]`, `z_FFN` `[L]`, `z_int` `[L][f_l]` and
/// `z_hidden` `[d]`.
public struct CoFiMaskValues: Sendable, Hashable {
    public var attentionLayers: [Double]
    public var heads: [[Double]]
    public var ffnLayers: [Double]
    public var intermediate: [[Double]]
    public var hidden: [Double]

    public init(attentionLayers: [Double], heads: [[Double]], ffnLayers: [Double], intermediate: [[Double]], hidden: [Double]) {
        self.attentionLayers = attentionLayers
        self.heads = heads
        self.ffnLayers = ffnLayers
        self.intermediate = intermediate
        self.hidden = hidden
    }

    /// Every entry `value`.
    public init(structure: CoFiStructure, repeating value: Double) {
        let count = structure.layers.count
        self.init(
            attentionLayers: Array(repeating: value, count: count),
            heads: structure.layers.map { Array(repeating: value, count: $0.heads) },
            ffnLayers: Array(repeating: value, count: count),
            intermediate: structure.layers.map { Array(repeating: value, count: $0.intermediateSize) },
            hidden: Array(repeating: value, count: structure.hiddenSize))
    }

    /// True when the shapes are those of `structure`.
    public func fits(_ structure: CoFiStructure) -> Bool {
        attentionLayers.count == structure.layers.count && ffnLayers.count == structure.layers.count
            && heads.map(\.count) == structure.layers.map(\.heads)
            && intermediate.map(\.count) == structure.layers.map(\.intermediateSize)
            && hidden.count == structure.hiddenSize
    }

    /// Every entry: `z_MHA`, `z_head`, `z_FFN`, `z_int`, `z_hidden`.
    public var entries: [Double] {
        attentionLayers + heads.flatMap { $0 } + ffnLayers + intermediate.flatMap { $0 } + hidden
    }

    /// Applies `transform` to every entry.
    public func map(_ transform: (Double) -> Double) -> CoFiMaskValues {
        CoFiMaskValues(
            attentionLayers: attentionLayers.map(transform), heads: heads.map { $0.map(transform) },
            ffnLayers: ffnLayers.map(transform), intermediate: intermediate.map { $0.map(transform) },
            hidden: hidden.map(transform))
    }
}
