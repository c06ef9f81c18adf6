import SqueezeModels
import SqueezeTensor

/// One layer's CoFi masks as forward-pass values; nil means 1 (not masked).
public struct CoFiLayerMaskInputs<V> {
    /// `z_head`, `[heads]`: each head's context before the output projection.
    public var heads: V?
    /// `z_MHA`, `[1]`: the attention block's output (projection and bias) before the residual.
    public var attention: V?
    /// `z_int`, `[intermediate]`: the FFN units after GELU.
    public var intermediate: V?
    /// `z_FFN`, `[1]`: the FFN block's output (down projection and bias) before the residual.
    public var ffn: V?

    public init(heads: V? = nil, attention: V? = nil, intermediate: V? = nil, ffn: V? = nil) {
        self.heads = heads
        self.attention = attention
        self.intermediate = intermediate
        self.ffn = ffn
    }
}

/// Every CoFi mask of an encoder as forward-pass values (tape leaves when
/// training, tensors for inference); nil entries are 1.
public struct CoFiMaskInputs<V> {
    public var layers: [CoFiLayerMaskInputs<V>]
    /// `z_hidden`, `[hidden]`, shared by every layer.
    public var hidden: V?

    public init(layers: [CoFiLayerMaskInputs<V>], hidden: V?) {
        self.layers = layers
        self.hidden = hidden
    }

    /// No masks: the masked forward is then `BertModel`'s.
    public static func unmasked(layerCount: Int) -> CoFiMaskInputs<V> {
        CoFiMaskInputs(layers: Array(repeating: CoFiLayerMaskInputs(), count: layerCount), hidden: nil)
    }
}

/// What the masked forward returns: the embedding output, every layer's
/// output hidden state (`[B, T, hidden]`, for layer distillation) and the logits.
public struct CoFiForwardResult<V> {
    public var embeddingOutput: V
    public var layerOutputs: [V]
    public var logits: V
}

extension CoFiMasks {
    /// The chosen units' entries of `values` made into forward values by
    /// `leaf` (e.g. `tape.parameter` to get `dL/dz` back, or the tensor itself
    /// for inference); the other units are nil (1).
    public func inputs<V>(_ values: CoFiMaskValues, _ leaf: (Tensor) -> V) -> CoFiMaskInputs<V> {
        precondition(values.fits(structure), "mask values do not fit the mask structure")
        func vector(_ entries: [Double]) -> V { leaf(Tensor(shape: [entries.count], floats: entries.map { Float($0) })) }
        let layers = structure.layers.indices.map { layer in
            CoFiLayerMaskInputs(
                heads: units.contains(.heads) && structure.layers[layer].heads > 0 ? vector(values.heads[layer]) : nil,
                attention: units.contains(.layers) ? vector([values.attentionLayers[layer]]) : nil,
                intermediate: units.contains(.ffnUnits) && structure.layers[layer].intermediateSize > 0
                    ? vector(values.intermediate[layer]) : nil,
                ffn: units.contains(.layers) ? vector([values.ffnLayers[layer]]) : nil)
        }
        return CoFiMaskInputs(layers: layers, hidden: units.contains(.hidden) ? vector(values.hidden) : nil)
    }

    /// `dL/dz` for every entry after `tape.backward`, from mask inputs made
    /// with `tape.parameter`; 0 where no gradient flowed or the unit is not chosen.
    public func zGradient(_ inputs: CoFiMaskInputs<Variable>, on tape: Tape) -> CoFiMaskValues {
        func read(_ variable: Variable?, count: Int) -> [Double] {
            guard let variable, let gradient = tape.gradient(of: variable) else { return Array(repeating: 0, count: count) }
            return gradient.floats.map(Double.init)
        }
        var result = CoFiMaskValues(structure: structure, repeating: 0)
        for (layer, masks) in inputs.layers.enumerated() {
            result.heads[layer] = read(masks.heads, count: structure.layers[layer].heads)
            result.attentionLayers[layer] = read(masks.attention, count: 1)[0]
            result.intermediate[layer] = read(masks.intermediate, count: structure.layers[layer].intermediateSize)
            result.ffnLayers[layer] = read(masks.ffn, count: 1)[0]
        }
        result.hidden = read(inputs.hidden, count: structure.hiddenSize)
        return result
    }
}

/// BERT's forward pass with CoFi's masks (`BertModel.logits` plus masks).
///
/// Hidden dimensions: with `K` the dimensions where `z_hidden` is non-zero,
/// every LayerNorm (embeddings, after attention, after the FFN) takes its
/// statistics over `K` only, outputs 0 elsewhere and is multiplied by
/// `z_hidden`, and the pooler's output is zeroed outside `K`. Every value
/// that reaches a weight is then 0 outside `K`, so removing those dimensions
/// from the weights (`CoFiCompaction`) changes nothing. When `K` is every
/// dimension the fused ops of the unmasked model run, so with all masks 1 the
/// result is `BertModel`'s.
public enum MaskedBert {
    public static func forward<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, pooling: BertPooling, batch: BertBatch,
        masks: CoFiMaskInputs<Ops.Value>
    ) -> CoFiForwardResult<Ops.Value> {
        precondition(masks.layers.count == weights.layers.count, "\(masks.layers.count) layer masks for \(weights.layers.count) layers")
        let length = batch.inputIDs.shape[1]
        let hiddenDropout = Float(config.hiddenDropoutProbability)
        let norm = HiddenNorm(ops: ops, hidden: masks.hidden, epsilon: Float(config.layerNormEpsilon), dropout: hiddenDropout)
        let embeddings = weights.embeddings
        var x = ops.gather(embeddings.word, ids: batch.inputIDs)
        if let types = batch.tokenTypeIDs {
            x = ops.add(x, ops.gather(embeddings.tokenType, ids: types))
        } else {
            x = ops.add(x, ops.slice(embeddings.tokenType, axis: 0, 0..<1))
        }
        x = ops.add(x, ops.slice(embeddings.position, axis: 0, 0..<length))
        x = ops.dropout(norm.apply(x, residual: nil, embeddings.layerNorm), probability: hiddenDropout)
        let embeddingOutput = x
        let bias = BertModel.attentionBias(batch.attentionMask)
        var outputs: [Ops.Value] = []
        for (layer, layerMasks) in zip(weights.layers, masks.layers) {
            x = encoderLayer(ops, x, layer, masks: layerMasks, norm: norm, config: config, attentionBias: bias)
            outputs.append(x)
        }
        var pooled = BertModel.pool(ops, x, weights: weights, pooling: pooling, batch: batch)
        if pooling == .pooler, let selection = norm.selection {
            pooled = ops.multiply(pooled, ops.constant(selection))
        }
        let dropout = Float(config.classifierDropoutProbability ?? config.hiddenDropoutProbability)
        let logits = ops.linear(ops.dropout(pooled, probability: dropout), weight: weights.classifier.weight, bias: weights.classifier.bias)
        return CoFiForwardResult(embeddingOutput: embeddingOutput, layerOutputs: outputs, logits: logits)
    }

    /// One post-LN encoder layer with its masks (as `BertModel.encoderLayer`).
    static func encoderLayer<Ops: TensorOperations>(
        _ ops: Ops, _ x: Ops.Value, _ layer: BertLayerWeights<Ops.Value>, masks: CoFiLayerMaskInputs<Ops.Value>,
        norm: HiddenNorm<Ops>, config: BertConfig, attentionBias: Tensor
    ) -> Ops.Value {
        let shape = ops.tensor(x).shape
        let (batch, length, hidden) = (shape[0], shape[1], shape[2])
        let headDimension = config.headDimension
        let heads = ops.tensor(layer.query.weight).shape[0] / headDimension

        var attended: Ops.Value
        if heads > 0 {
            func splitHeads(_ projection: LinearWeights<Ops.Value>) -> Ops.Value {
                let y = ops.linear(x, weight: projection.weight, bias: projection.bias)
                return ops.transpose(ops.reshape(y, [batch, length, heads, headDimension]), 1, 2)
            }
            let context = ops.attention(
                query: splitHeads(layer.query), key: splitHeads(layer.key), value: splitHeads(layer.value),
                bias: attentionBias, scale: 1 / Float(headDimension).squareRoot(),
                dropout: Float(config.attentionDropoutProbability))
            var perHead = ops.transpose(context, 1, 2)  // [B, T, H, d_h]
            if let headMask = masks.heads {
                perHead = ops.multiply(perHead, ops.reshape(headMask, [heads, 1]))
            }
            let merged = ops.reshape(perHead, [batch, length, heads * headDimension])
            attended = ops.linear(merged, weight: layer.attentionOutput.weight, bias: layer.attentionOutput.bias)
        } else {
            attended = ops.add(ops.constant(Tensor(zeros: [batch, length, hidden])), layer.attentionOutput.bias)
        }
        if let attentionMask = masks.attention { attended = ops.multiply(attended, attentionMask) }
        let afterAttention = norm.apply(attended, residual: x, layer.attentionLayerNorm)

        var fed: Ops.Value
        if ops.tensor(layer.intermediate.weight).shape[0] > 0 {
            var inner = ops.gelu(ops.linear(afterAttention, weight: layer.intermediate.weight, bias: layer.intermediate.bias))
            if let unitMask = masks.intermediate { inner = ops.multiply(inner, unitMask) }
            fed = ops.linear(inner, weight: layer.output.weight, bias: layer.output.bias)
        } else {
            fed = ops.add(ops.constant(Tensor(zeros: [batch, length, hidden])), layer.output.bias)
        }
        if let ffnMask = masks.ffn { fed = ops.multiply(fed, ffnMask) }
        return norm.apply(fed, residual: afterAttention, layer.outputLayerNorm)
    }

    /// The LayerNorms under the hidden mask: `layerNorm(dropout(x) + residual)`
    /// (or `layerNorm(x)` without a residual) over `K`, times `z_hidden`.
    struct HiddenNorm<Ops: TensorOperations> {
        let ops: Ops
        let hidden: Ops.Value?
        let epsilon: Float
        let dropout: Float
        /// 1 on `K`, 0 elsewhere; nil when `K` is every dimension.
        let selection: Tensor?

        init(ops: Ops, hidden: Ops.Value?, epsilon: Float, dropout: Float) {
            self.ops = ops
            self.hidden = hidden
            self.epsilon = epsilon
            self.dropout = dropout
            if let hidden {
                let flags = ops.tensor(hidden).floats.map { $0 != 0 }
                selection = flags.allSatisfy { $0 } ? nil : Tensor(shape: [flags.count], floats: flags.map { $0 ? 1 : 0 })
            } else {
                selection = nil
            }
        }

        func apply(_ x: Ops.Value, residual: Ops.Value?, _ weights: LayerNormWeights<Ops.Value>) -> Ops.Value {
            var y: Ops.Value
            if let selection {
                let sum = residual.map { ops.add(ops.dropout(x, probability: dropout), $0) } ?? x
                y = ops.maskedLayerNorm(sum, columnMask: selection, gamma: weights.weight, beta: weights.bias, epsilon: epsilon)
            } else if let residual {
                y = ops.residualLayerNorm(
                    x, residual: residual, gamma: weights.weight, beta: weights.bias, epsilon: epsilon, dropout: dropout)
            } else {
                y = ops.layerNorm(x, gamma: weights.weight, beta: weights.bias, epsilon: epsilon)
            }
            if let hidden { y = ops.multiply(y, hidden) }
            return y
        }
    }
}
