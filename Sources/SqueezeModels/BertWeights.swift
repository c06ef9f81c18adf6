/// BERT's parameters, generic over what is stored per parameter: `Tensor`
/// for a model, `Variable` on a training tape, `String` for names, `Tensor?`
/// for gradients. `map` visits every parameter with its Hugging Face name in
/// `named_parameters()` order, which is also the optimiser's order.
public struct BertWeights<T> {
    public var embeddings: BertEmbeddingWeights<T>
    public var layers: [BertLayerWeights<T>]
    /// `pooler.dense`; absent in checkpoints saved without a pooler.
    public var pooler: LinearWeights<T>?
    public var classifier: LinearWeights<T>

    public init(embeddings: BertEmbeddingWeights<T>, layers: [BertLayerWeights<T>], pooler: LinearWeights<T>?, classifier: LinearWeights<T>) {
        self.embeddings = embeddings
        self.layers = layers
        self.pooler = pooler
        self.classifier = classifier
    }

    /// Every slot holding `value`.
    public init(repeating value: T, layerCount: Int, hasPooler: Bool) {
        self.init(
            embeddings: BertEmbeddingWeights(repeating: value),
            layers: Array(repeating: BertLayerWeights(repeating: value), count: layerCount),
            pooler: hasPooler ? LinearWeights(repeating: value) : nil,
            classifier: LinearWeights(repeating: value))
    }

    /// Applies `transform` to every parameter with its name (`embeddings.word_embeddings.weight`, ...,
    /// `classifier.bias`; no `bert.` prefix).
    public func map<U, E: Error>(_ transform: (String, T) throws(E) -> U) throws(E) -> BertWeights<U> {
        let embeddings = try embeddings.map("embeddings", transform)
        var layers: [BertLayerWeights<U>] = []
        layers.reserveCapacity(self.layers.count)
        for (index, layer) in self.layers.enumerated() {
            layers.append(try layer.map("encoder.layer.\(index)", transform))
        }
        let pooler = try pooler.map { (pooler) throws(E) -> LinearWeights<U> in try pooler.map("pooler.dense", transform) }
        return BertWeights<U>(
            embeddings: embeddings, layers: layers, pooler: pooler, classifier: try classifier.map("classifier", transform))
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
    public func replacing<U>(with values: [U]) -> BertWeights<U> {
        precondition(values.count == elements.count, "\(values.count) values for \(elements.count) parameters")
        var index = 0
        return map { _, _ in
            defer { index += 1 }
            return values[index]
        }
    }
}

/// A dense layer: `weight` `[out, in]`, `bias` `[out]`.
public struct LinearWeights<T> {
    public var weight: T
    public var bias: T

    public init(weight: T, bias: T) {
        self.weight = weight
        self.bias = bias
    }

    public init(repeating value: T) { self.init(weight: value, bias: value) }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> LinearWeights<U> {
        LinearWeights<U>(weight: try transform(prefix + ".weight", weight), bias: try transform(prefix + ".bias", bias))
    }
}

/// LayerNorm's scale (`weight`, γ) and shift (`bias`, β), both `[hidden]`.
public struct LayerNormWeights<T> {
    public var weight: T
    public var bias: T

    public init(weight: T, bias: T) {
        self.weight = weight
        self.bias = bias
    }

    public init(repeating value: T) { self.init(weight: value, bias: value) }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> LayerNormWeights<U> {
        LayerNormWeights<U>(weight: try transform(prefix + ".weight", weight), bias: try transform(prefix + ".bias", bias))
    }
}

public struct BertEmbeddingWeights<T> {
    /// `[vocab, hidden]`
    public var word: T
    /// `[max positions, hidden]`
    public var position: T
    /// `[type vocab, hidden]`
    public var tokenType: T
    public var layerNorm: LayerNormWeights<T>

    public init(word: T, position: T, tokenType: T, layerNorm: LayerNormWeights<T>) {
        self.word = word
        self.position = position
        self.tokenType = tokenType
        self.layerNorm = layerNorm
    }

    public init(repeating value: T) {
        self.init(word: value, position: value, tokenType: value, layerNorm: LayerNormWeights(repeating: value))
    }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> BertEmbeddingWeights<U> {
        BertEmbeddingWeights<U>(
            word: try transform(prefix + ".word_embeddings.weight", word),
            position: try transform(prefix + ".position_embeddings.weight", position),
            tokenType: try transform(prefix + ".token_type_embeddings.weight", tokenType),
            layerNorm: try layerNorm.map(prefix + ".LayerNorm", transform))
    }
}

/// One encoder layer. With `h` heads of size `d` and FFN width `f`: query,
/// key and value are `[h·d, hidden]`, `attentionOutput` is `[hidden, h·d]`,
/// `intermediate` `[f, hidden]`, `output` `[hidden, f]`.
public struct BertLayerWeights<T> {
    public var query: LinearWeights<T>
    public var key: LinearWeights<T>
    public var value: LinearWeights<T>
    public var attentionOutput: LinearWeights<T>
    public var attentionLayerNorm: LayerNormWeights<T>
    public var intermediate: LinearWeights<T>
    public var output: LinearWeights<T>
    public var outputLayerNorm: LayerNormWeights<T>

    public init(
        query: LinearWeights<T>, key: LinearWeights<T>, value: LinearWeights<T>, attentionOutput: LinearWeights<T>,
        attentionLayerNorm: LayerNormWeights<T>, intermediate: LinearWeights<T>, output: LinearWeights<T>,
        outputLayerNorm: LayerNormWeights<T>
    ) {
        self.query = query
        self.key = key
        self.value = value
        self.attentionOutput = attentionOutput
        self.attentionLayerNorm = attentionLayerNorm
        self.intermediate = intermediate
        self.output = output
        self.outputLayerNorm = outputLayerNorm
    }

    public init(repeating value: T) {
        let linear = LinearWeights(repeating: value)
        let norm = LayerNormWeights(repeating: value)
        self.init(
            query: linear, key: linear, value: linear, attentionOutput: linear, attentionLayerNorm: norm,
            intermediate: linear, output: linear, outputLayerNorm: norm)
    }

    public func map<U, E: Error>(_ prefix: String, _ transform: (String, T) throws(E) -> U) throws(E) -> BertLayerWeights<U> {
        BertLayerWeights<U>(
            query: try query.map(prefix + ".attention.self.query", transform),
            key: try key.map(prefix + ".attention.self.key", transform),
            value: try value.map(prefix + ".attention.self.value", transform),
            attentionOutput: try attentionOutput.map(prefix + ".attention.output.dense", transform),
            attentionLayerNorm: try attentionLayerNorm.map(prefix + ".attention.output.LayerNorm", transform),
            intermediate: try intermediate.map(prefix + ".intermediate.dense", transform),
            output: try output.map(prefix + ".output.dense", transform),
            outputLayerNorm: try outputLayerNorm.map(prefix + ".output.LayerNorm", transform))
    }
}

extension BertWeights: Sendable where T: Sendable {}
extension BertEmbeddingWeights: Sendable where T: Sendable {}
extension BertLayerWeights: Sendable where T: Sendable {}
extension LinearWeights: Sendable where T: Sendable {}
extension LayerNormWeights: Sendable where T: Sendable {}
