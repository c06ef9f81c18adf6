import SqueezeTensor

/// Heads and FFN width of one encoder layer, read from its weights (pruned
/// layers differ from the config and from each other).
public struct BertLayerShape: Sendable, Hashable {
    public var heads: Int
    public var intermediateSize: Int

    public init(heads: Int, intermediateSize: Int) {
        self.heads = heads
        self.intermediateSize = intermediateSize
    }
}

/// A BERT encoder with a sequence-classification head: embeddings (word +
/// position + token type, LayerNorm), post-LN encoder layers (multi-head
/// attention, GELU FFN), pooling (pooler or mean) and a linear classifier.
///
/// The forward pass is written once against `TensorOperations`: `Eager` for
/// inference, a `Tape` for training.
public struct BertModel: Sendable {
    public private(set) var config: BertConfig
    public internal(set) var weights: BertWeights<Tensor>
    public let pooling: BertPooling
    public let layerShapes: [BertLayerShape]
    /// The pruning masks of sparse weights, by parameter name
    /// (`encoder.layer.0.intermediate.dense.weight`). Pruned positions are
    /// +0.0 and stay so: every `updateParameters` re-applies the masks, and
    /// `save` stores these weights sparsely with their masks.
    public internal(set) var masks: [String: WeightMask] = [:]

    /// A model over `weights`, whose shapes are checked against `config`
    /// (`file` names the source in errors). `pooling` defaults to the
    /// config's, else to the pooler when its weights exist, else mean.
    /// `masks` (by parameter name) are applied to their weights.
    public init(
        config: BertConfig, weights: BertWeights<Tensor>, pooling: BertPooling? = nil, masks: [String: WeightMask] = [:],
        file: String = "<weights>"
    ) throws(ModelFileError) {
        try config.validate(file: file)
        let layerShapes = try Self.checkShapes(weights, config: config, file: file)
        let resolved = pooling ?? config.pooling ?? (weights.pooler == nil ? .mean : .pooler)
        if resolved == .pooler && weights.pooler == nil {
            throw ModelFileError(file: file, "pooling `pooler` needs `pooler.dense` weights, which are missing")
        }
        self.config = config
        self.weights = weights
        self.pooling = resolved
        self.layerShapes = layerShapes
        for (name, mask) in masks.sorted(by: { $0.key < $1.key }) {
            try setMask(mask, forParameter: name, file: file)
        }
    }

    /// Masks the weight `name` (a 2-D parameter, e.g.
    /// `encoder.layer.0.attention.self.query.weight`): its pruned positions
    /// become +0.0 and stay so. `nil` removes the mask, leaving the values.
    public mutating func setMask(_ mask: WeightMask?, forParameter name: String, file: String = "<weights>") throws(ModelFileError) {
        try applyMask(mask, forParameter: name, file: file)
    }

    /// Zeroes the gradients (in `weights.elements` order) of pruned weights,
    /// so clipping and the optimiser's moments never see them.
    public func maskGradients(_ gradients: inout [Tensor?]) { zeroMaskedGradients(&gradients) }

    /// Lets `body` change the parameters in place (in `weights.elements`
    /// order; same shapes), e.g. an optimiser step. The model lets go of its
    /// references first, so uniquely held tensors are updated without copies.
    /// The masks are applied afterwards: pruned weights stay +0.0 whatever
    /// `body` (momentum, weight decay) did to them.
    public mutating func updateParameters(_ body: (inout [Tensor]) throws -> Void) rethrows {
        try updateMaskedParameters(body)
    }

    /// Number of scalar parameters.
    public var parameterCount: Int { weights.elements.reduce(0) { $0 + $1.count } }

    /// True for parameters that get weight decay: everything but biases and
    /// LayerNorm weights (the Hugging Face `Trainer` split), in `elements` order.
    public static func decayMask(names: [String]) -> [Bool] {
        names.map { !$0.hasSuffix(".bias") && !$0.contains("LayerNorm") }
    }

    // MARK: Inference

    /// The last hidden state `[B, T, hidden]`.
    public func hiddenStates(_ batch: BertBatch, backend: any Backend) throws(BertInputError) -> Tensor {
        try check(batch)
        return Self.encode(Eager(backend: backend), weights, config: config, batch: batch)
    }

    /// Classification logits `[B, labels]`.
    public func logits(_ batch: BertBatch, backend: any Backend) throws(BertInputError) -> Tensor {
        try check(batch)
        return Self.logits(Eager(backend: backend), weights, config: config, pooling: pooling, batch: batch)
    }

    // MARK: Training

    /// Records the forward pass and the mean cross-entropy against i32 `labels`
    /// `[B]` on `tape` (dropout active when the tape has a seed). After
    /// `tape.backward(from: loss)`, `parameters.map { tape.gradient(of: $1) }`
    /// are the gradients.
    public func trainingLoss(
        on tape: Tape, batch: BertBatch, labels: Tensor
    ) throws(BertInputError) -> (loss: Variable, parameters: BertWeights<Variable>) {
        try check(batch)
        try check(labels: labels, batchSize: batch.inputIDs.shape[0])
        let parameters = weights.map { _, tensor in tape.parameter(tensor) }
        let logits = Self.logits(tape, parameters, config: config, pooling: pooling, batch: batch)
        return (tape.crossEntropy(logits, labels: labels), parameters)
    }

    // MARK: The forward pass

    /// Classification logits `[B, labels]` for a checked batch.
    public static func logits<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, pooling: BertPooling, batch: BertBatch
    ) -> Ops.Value {
        // The pooler reads only the first token, so the last layer computes
        // nothing else past its key and value projections.
        let hidden = encode(ops, weights, config: config, batch: batch, lastLayerFirstTokenOnly: pooling == .pooler)
        return classify(ops, hidden, weights: weights, config: config, pooling: pooling, batch: batch)
    }

    /// Classification logits `[B, labels]` from a last hidden state: pooling,
    /// classifier dropout and the classifier.
    public static func classify<Ops: TensorOperations>(
        _ ops: Ops, _ hidden: Ops.Value, weights: BertWeights<Ops.Value>, config: BertConfig, pooling: BertPooling, batch: BertBatch
    ) -> Ops.Value {
        let pooled = pool(ops, hidden, weights: weights, pooling: pooling, batch: batch)
        let dropout = Float(config.classifierDropoutProbability ?? config.hiddenDropoutProbability)
        return ops.linear(ops.dropout(pooled, probability: dropout), weight: weights.classifier.weight, bias: weights.classifier.bias)
    }

    /// The last hidden state `[B, T, hidden]` for a checked batch.
    public static func encode<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, batch: BertBatch
    ) -> Ops.Value {
        encode(ops, weights, config: config, batch: batch, lastLayerFirstTokenOnly: false)
    }

    /// The last hidden state; `[B, 1, hidden]`, the first token's, when
    /// `lastLayerFirstTokenOnly` (the same values as that row of the full state).
    static func encode<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, batch: BertBatch, lastLayerFirstTokenOnly: Bool
    ) -> Ops.Value {
        var x = embed(ops, weights, config: config, batch: batch)
        let bias = attentionBias(batch.attentionMask)
        for (index, layer) in weights.layers.enumerated() {
            let firstTokenOnly = lastLayerFirstTokenOnly && index == weights.layers.count - 1
            x = encoderLayer(ops, x, layer, config: config, attentionBias: bias, firstTokenOnly: firstTokenOnly).output
        }
        return x
    }

    /// Every encoder layer's output `[B, T, hidden]`, first to last, for a
    /// checked batch (layer-wise distillation); the last is `encode`'s result.
    public static func encodeLayers<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, batch: BertBatch
    ) -> [Ops.Value] {
        encodeLayers(ops, weights, config: config, batch: batch, attentionScoresOf: []).outputs
    }

    /// Every encoder layer's output (as `encodeLayers`) and, for each layer
    /// index in `scoreLayers` that has attention heads, its pre-softmax
    /// attention scores `q·kᵀ/√d_head` `[B, heads, T, T]` (no mask added:
    /// padded queries and keys hold finite values the caller masks out).
    /// The other layers keep the fused attention alone; the outputs are the
    /// same values with or without scores.
    public static func encodeLayers<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, batch: BertBatch, attentionScoresOf scoreLayers: Set<Int>
    ) -> (outputs: [Ops.Value], scores: [Int: Ops.Value]) {
        var x = embed(ops, weights, config: config, batch: batch)
        let bias = attentionBias(batch.attentionMask)
        var outputs: [Ops.Value] = []
        var scores: [Int: Ops.Value] = [:]
        outputs.reserveCapacity(weights.layers.count)
        for (index, layer) in weights.layers.enumerated() {
            let result = encoderLayer(ops, x, layer, config: config, attentionBias: bias, keepingScores: scoreLayers.contains(index))
            x = result.output
            outputs.append(x)
            if let layerScores = result.scores { scores[index] = layerScores }
        }
        return (outputs, scores)
    }

    /// The embedding block's output `[B, T, hidden]`: word + token type +
    /// position embeddings, LayerNorm, dropout.
    static func embed<Ops: TensorOperations>(
        _ ops: Ops, _ weights: BertWeights<Ops.Value>, config: BertConfig, batch: BertBatch
    ) -> Ops.Value {
        let length = batch.inputIDs.shape[1]
        let epsilon = Float(config.layerNormEpsilon)
        let hiddenDropout = Float(config.hiddenDropoutProbability)
        let embeddings = weights.embeddings
        // Hugging Face's order: (word + token type) + position.
        var x = ops.gather(embeddings.word, ids: batch.inputIDs)
        if let types = batch.tokenTypeIDs {
            x = ops.add(x, ops.gather(embeddings.tokenType, ids: types))
        } else {
            x = ops.add(x, ops.slice(embeddings.tokenType, axis: 0, 0..<1))
        }
        x = ops.add(x, ops.slice(embeddings.position, axis: 0, 0..<length))
        x = ops.layerNorm(x, gamma: embeddings.layerNorm.weight, beta: embeddings.layerNorm.bias, epsilon: epsilon)
        return ops.dropout(x, probability: hiddenDropout)
    }

    /// One post-LN encoder layer. With `firstTokenOnly` the keys and values
    /// still come from every token, but only the first token attends and
    /// goes through the rest of the layer: the output is `[B, 1, hidden]`.
    /// With `keepingScores` (and at least one head) the pre-softmax scores
    /// `q·kᵀ/√d_head` are computed as well, beside the fused attention.
    static func encoderLayer<Ops: TensorOperations>(
        _ ops: Ops, _ input: Ops.Value, _ layer: BertLayerWeights<Ops.Value>, config: BertConfig, attentionBias: Tensor,
        firstTokenOnly: Bool = false, keepingScores: Bool = false
    ) -> (output: Ops.Value, scores: Ops.Value?) {
        let shape = ops.tensor(input).shape
        let (batch, tokens, hidden) = (shape[0], shape[1], shape[2])
        let x = firstTokenOnly ? ops.reshape(ops.slice(input, axis: 1, 0..<1), [batch, 1, hidden]) : input
        let length = firstTokenOnly ? 1 : tokens
        let headDimension = config.headDimension
        let heads = ops.tensor(layer.query.weight).shape[0] / headDimension
        let epsilon = Float(config.layerNormEpsilon)
        let hiddenDropout = Float(config.hiddenDropoutProbability)

        let attended: Ops.Value
        var scores: Ops.Value?
        if heads > 0 {
            func splitHeads(_ source: Ops.Value, _ rows: Int, _ projection: LinearWeights<Ops.Value>) -> Ops.Value {
                let y = ops.linear(source, weight: projection.weight, bias: projection.bias)
                return ops.transpose(ops.reshape(y, [batch, rows, heads, headDimension]), 1, 2)
            }
            let query = splitHeads(x, length, layer.query)
            let key = splitHeads(input, tokens, layer.key)
            let value = splitHeads(input, tokens, layer.value)
            let scale = 1 / Float(headDimension).squareRoot()
            let context = ops.attention(
                query: query, key: key, value: value, bias: attentionBias, scale: scale,
                dropout: Float(config.attentionDropoutProbability))
            if keepingScores { scores = ops.attentionScores(query: query, key: key, scale: scale) }
            let merged = ops.reshape(ops.transpose(context, 1, 2), [batch, length, heads * headDimension])
            attended = ops.linear(merged, weight: layer.attentionOutput.weight, bias: layer.attentionOutput.bias)
        } else {
            // A fully pruned attention block contributes only its output bias.
            attended = ops.add(ops.constant(Tensor(zeros: [batch, length, hidden])), layer.attentionOutput.bias)
        }
        let afterAttention = ops.residualLayerNorm(
            attended, residual: x, gamma: layer.attentionLayerNorm.weight, beta: layer.attentionLayerNorm.bias,
            epsilon: epsilon, dropout: hiddenDropout)

        let fed: Ops.Value
        if ops.tensor(layer.intermediate.weight).shape[0] > 0 {
            fed = ops.feedForward(
                afterAttention, intermediateWeight: layer.intermediate.weight, intermediateBias: layer.intermediate.bias,
                outputWeight: layer.output.weight, outputBias: layer.output.bias)
        } else {
            fed = ops.add(ops.constant(Tensor(zeros: [batch, length, hidden])), layer.output.bias)
        }
        let output = ops.residualLayerNorm(
            fed, residual: afterAttention, gamma: layer.outputLayerNorm.weight, beta: layer.outputLayerNorm.bias,
            epsilon: epsilon, dropout: hiddenDropout)
        return (output, scores)
    }

    /// `[B, hidden]` sentence vectors from the last hidden state.
    public static func pool<Ops: TensorOperations>(
        _ ops: Ops, _ hidden: Ops.Value, weights: BertWeights<Ops.Value>, pooling: BertPooling, batch: BertBatch
    ) -> Ops.Value {
        let shape = ops.tensor(hidden).shape
        switch pooling {
        case .pooler:
            guard let pooler = weights.pooler else { preconditionFailure("pooler pooling without pooler weights") }
            let first = ops.reshape(ops.slice(hidden, axis: 1, 0..<1), [shape[0], shape[2]])
            return ops.tanh(ops.linear(first, weight: pooler.weight, bias: pooler.bias))
        case .mean:
            let (mask, inverseCounts) = meanPoolingFactors(batch.attentionMask)
            let summed = ops.sum(ops.multiply(hidden, ops.constant(mask)), axes: [1], keepDimensions: false)
            return ops.multiply(summed, ops.constant(inverseCounts))
        }
    }

    /// The additive attention mask `[B, 1, 1, T]`: 0 for real keys, -1e9 for padding.
    package static func attentionBias(_ mask: Tensor) -> Tensor {
        let (batch, length) = (mask.shape[0], mask.shape[1])
        let values = mask.int32s.map { $0 == 0 ? Float(-1e9) : 0 }
        return Tensor(shape: [batch, 1, 1, length], floats: values)
    }

    /// The mask as floats `[B, T, 1]` and 1/count per sequence `[B, 1]`.
    static func meanPoolingFactors(_ mask: Tensor) -> (mask: Tensor, inverseCounts: Tensor) {
        let (batch, length) = (mask.shape[0], mask.shape[1])
        let values = mask.int32s.map { $0 == 0 ? Float(0) : 1 }
        var inverse = [Float](repeating: 0, count: batch)
        for row in 0..<batch {
            let count = values[(row * length)..<((row + 1) * length)].reduce(0, +)
            inverse[row] = 1 / Swift.max(count, 1)
        }
        return (Tensor(shape: [batch, length, 1], floats: values), Tensor(shape: [batch, 1], floats: inverse))
    }
}

extension BertModel: MaskedParameters {
    public var parameterTensors: [Tensor] { weights.elements }

    mutating func replaceParameters(_ tensors: [Tensor]) { weights = weights.replacing(with: tensors) }

    mutating func takeParameters() -> [Tensor] {
        let tensors = weights.elements
        weights = weights.map { _, _ in Tensor(zeros: [0]) }
        return tensors
    }
}
