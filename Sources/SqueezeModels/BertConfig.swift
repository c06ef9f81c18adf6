import Foundation

/// How a sequence becomes one vector for classification.
public enum BertPooling: String, Sendable, Hashable, CaseIterable {
    /// BERT's pooler: `tanh(dense(hidden[CLS]))` (Hugging Face `BertForSequenceClassification`).
    case pooler
    /// Mean of the hidden states over tokens with mask 1 (sentence-transformers).
    case mean
}

/// A BERT architecture as described by a Hugging Face `config.json`.
///
/// Decoding follows `transformers.BertConfig`: the sizes are required, the
/// rest default to BERT's values. Only the exact (erf) GELU and absolute
/// position embeddings are supported. `numAttentionHeads` and
/// `intermediateSize` describe an unpruned layer; the head dimension is
/// `hiddenSize / numAttentionHeads` unless `attentionHeadSize` says otherwise
/// (pruned hidden dimensions), while each layer's own head count and FFN
/// width come from its weights (and, for pruned models, `layerShapes`).
public struct BertConfig: Sendable, Hashable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var hiddenDropoutProbability: Double
    public var attentionDropoutProbability: Double
    /// Dropout before the classifier; `hiddenDropoutProbability` when nil.
    public var classifierDropoutProbability: Double?
    public var initializerRange: Double
    public var layerNormEpsilon: Double
    public var padTokenID: Int
    /// Class names by label id (`id2label`); its count is `num_labels`.
    public var labels: [String]
    /// Pooling for classification (`squeeze_pooling`); nil picks the pooler when its weights exist.
    public var pooling: BertPooling?
    /// Size of one attention head (`attention_head_size`), when it is not
    /// `hiddenSize / numAttentionHeads` (a model whose hidden size was pruned).
    public var attentionHeadSize: Int?
    /// Each layer's heads and FFN width (`squeeze_layers`), recorded for
    /// pruned models; the weights must agree with it.
    public var layerShapes: [BertLayerShape]?

    public init(
        vocabSize: Int, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, intermediateSize: Int,
        maxPositionEmbeddings: Int = 512, typeVocabSize: Int = 2, hiddenDropoutProbability: Double = 0.1,
        attentionDropoutProbability: Double = 0.1, classifierDropoutProbability: Double? = nil,
        initializerRange: Double = 0.02, layerNormEpsilon: Double = 1e-12, padTokenID: Int = 0,
        labels: [String] = ["LABEL_0", "LABEL_1"], pooling: BertPooling? = nil, attentionHeadSize: Int? = nil,
        layerShapes: [BertLayerShape]? = nil
    ) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.intermediateSize = intermediateSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.typeVocabSize = typeVocabSize
        self.hiddenDropoutProbability = hiddenDropoutProbability
        self.attentionDropoutProbability = attentionDropoutProbability
        self.classifierDropoutProbability = classifierDropoutProbability
        self.initializerRange = initializerRange
        self.layerNormEpsilon = layerNormEpsilon
        self.padTokenID = padTokenID
        self.labels = labels
        self.pooling = pooling
        self.attentionHeadSize = attentionHeadSize
        self.layerShapes = layerShapes
    }

    /// Size of one attention head (every layer).
    public var headDimension: Int { attentionHeadSize ?? hiddenSize / numAttentionHeads }

    /// Reads and validates `config.json`.
    public init(contentsOfFile path: String) throws(ModelFileError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ModelFileError(file: path, "cannot read: \(error.localizedDescription)")
        }
        try self.init(json: data, file: path)
    }

    /// Decodes and validates a `config.json` document; `file` names it in errors.
    public init(json data: Data, file: String) throws(ModelFileError) {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ModelFileError(file: file, "config is not a JSON object")
            }
            object = parsed
        } catch let error as ModelFileError {
            throw error
        } catch {
            throw ModelFileError(file: file, "config is not valid JSON")
        }
        let fields = ConfigFields(object: object, file: file)
        if let type = try fields.string("model_type"), type != "bert" {
            throw ModelFileError(file: file, "model_type `\(type)` is not supported (expected `bert`)")
        }
        if let activation = try fields.string("hidden_act"), activation != "gelu" {
            throw ModelFileError(file: file, "hidden_act `\(activation)` is not supported (expected `gelu`, the exact erf GELU)")
        }
        if let positions = try fields.string("position_embedding_type"), positions != "absolute" {
            throw ModelFileError(file: file, "position_embedding_type `\(positions)` is not supported (expected `absolute`)")
        }
        self.init(
            vocabSize: try fields.requiredInt("vocab_size"),
            hiddenSize: try fields.requiredInt("hidden_size"),
            numHiddenLayers: try fields.requiredInt("num_hidden_layers"),
            numAttentionHeads: try fields.requiredInt("num_attention_heads"),
            intermediateSize: try fields.requiredInt("intermediate_size"),
            maxPositionEmbeddings: try fields.int("max_position_embeddings") ?? 512,
            typeVocabSize: try fields.int("type_vocab_size") ?? 2,
            hiddenDropoutProbability: try fields.double("hidden_dropout_prob") ?? 0.1,
            attentionDropoutProbability: try fields.double("attention_probs_dropout_prob") ?? 0.1,
            classifierDropoutProbability: try fields.double("classifier_dropout"),
            initializerRange: try fields.double("initializer_range") ?? 0.02,
            layerNormEpsilon: try fields.double("layer_norm_eps") ?? 1e-12,
            padTokenID: try fields.int("pad_token_id") ?? 0,
            labels: try fields.labels(),
            pooling: try fields.pooling(),
            attentionHeadSize: try fields.int("attention_head_size"),
            layerShapes: try fields.layerShapes())
        try validate(file: file)
    }

    /// Checks sizes and probabilities; `file` names the config in the error.
    public func validate(file: String) throws(ModelFileError) {
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file, message) }
        for (key, value) in [
            ("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
            ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
            ("max_position_embeddings", maxPositionEmbeddings), ("type_vocab_size", typeVocabSize),
        ] where value <= 0 {
            throw fail("`\(key)` must be positive, got \(value)")
        }
        if let attentionHeadSize {
            guard attentionHeadSize > 0 else { throw fail("`attention_head_size` must be positive, got \(attentionHeadSize)") }
        } else if hiddenSize % numAttentionHeads != 0 {
            throw fail("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(numAttentionHeads)")
        }
        if let layerShapes {
            guard layerShapes.count == numHiddenLayers else {
                throw fail("`squeeze_layers` has \(layerShapes.count) entries for \(numHiddenLayers) layers")
            }
            if let bad = layerShapes.firstIndex(where: { $0.heads < 0 || $0.intermediateSize < 0 }) {
                throw fail("`squeeze_layers` entry \(bad) has a negative size")
            }
        }
        guard layerNormEpsilon > 0, layerNormEpsilon.isFinite else {
            throw fail("`layer_norm_eps` must be a positive number, got \(layerNormEpsilon)")
        }
        guard initializerRange >= 0, initializerRange.isFinite else {
            throw fail("`initializer_range` must be a non-negative number, got \(initializerRange)")
        }
        for (key, value) in [
            ("hidden_dropout_prob", hiddenDropoutProbability), ("attention_probs_dropout_prob", attentionDropoutProbability),
            ("classifier_dropout", classifierDropoutProbability ?? 0),
        ] where !(value >= 0 && value < 1) {
            throw fail("`\(key)` must be in [0, 1), got \(value)")
        }
        guard !labels.isEmpty else { throw fail("a classifier needs at least one label") }
        guard padTokenID >= 0, padTokenID < vocabSize else {
            throw fail("pad_token_id \(padTokenID) is outside the vocabulary of \(vocabSize)")
        }
    }

    /// `config.json` for this configuration: sorted keys, so equal configs give equal bytes.
    /// Loadable by Hugging Face `transformers` as a `BertForSequenceClassification`.
    public func jsonData() -> Data {
        var object: [String: Any] = [
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
            "vocab_size": vocabSize,
            "hidden_size": hiddenSize,
            "num_hidden_layers": numHiddenLayers,
            "num_attention_heads": numAttentionHeads,
            "intermediate_size": intermediateSize,
            "max_position_embeddings": maxPositionEmbeddings,
            "type_vocab_size": typeVocabSize,
            "hidden_dropout_prob": hiddenDropoutProbability,
            "attention_probs_dropout_prob": attentionDropoutProbability,
            "initializer_range": initializerRange,
            "layer_norm_eps": layerNormEpsilon,
            "pad_token_id": padTokenID,
            "num_labels": labels.count,
            "id2label": Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0.offset), $0.element) }),
            "label2id": Dictionary(labels.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first }),
        ]
        if let classifierDropoutProbability { object["classifier_dropout"] = classifierDropoutProbability }
        if let pooling { object["squeeze_pooling"] = pooling.rawValue }
        if let attentionHeadSize { object["attention_head_size"] = attentionHeadSize }
        if let layerShapes {
            object["squeeze_layers"] = layerShapes.map { ["heads": $0.heads, "intermediate_size": $0.intermediateSize] }
        }
        // Only numbers, strings, arrays and dictionaries above: serialisation cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return data + Data("\n".utf8)
    }
}

/// Typed access to the members of a config object, with errors naming the key.
private struct ConfigFields {
    let object: [String: Any]
    let file: String

    private func fail(_ key: String, _ expected: String) -> ModelFileError {
        ModelFileError(file: file, "`\(key)` must be \(expected)")
    }

    private func isBoolean(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        return String(cString: number.objCType) == "c"
    }

    func requiredInt(_ key: String) throws(ModelFileError) -> Int {
        guard let value = try int(key) else { throw ModelFileError(file: file, "missing required field `\(key)`") }
        return value
    }

    func int(_ key: String) throws(ModelFileError) -> Int? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        guard !isBoolean(raw), let number = raw as? NSNumber, let value = Int(exactly: number.doubleValue) else {
            throw fail(key, "an integer")
        }
        return value
    }

    func double(_ key: String) throws(ModelFileError) -> Double? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        guard !isBoolean(raw), let number = raw as? NSNumber, number.doubleValue.isFinite else {
            throw fail(key, "a number")
        }
        return number.doubleValue
    }

    func string(_ key: String) throws(ModelFileError) -> String? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        guard let value = raw as? String else { throw fail(key, "a string") }
        return value
    }

    /// `id2label` (keys "0"..<"n") when present, else `num_labels` generic names, else two.
    func labels() throws(ModelFileError) -> [String] {
        let count = try int("num_labels")
        if let raw = object["id2label"], !(raw is NSNull) {
            guard let mapping = raw as? [String: Any] else { throw fail("id2label", "an object of label names") }
            var labels = [String?](repeating: nil, count: mapping.count)
            for (key, value) in mapping {
                guard let index = Int(key), index >= 0, index < mapping.count else {
                    throw ModelFileError(file: file, "`id2label` keys must be 0..<\(mapping.count), got `\(key)`")
                }
                guard let name = value as? String else { throw fail("id2label", "an object of label names") }
                labels[index] = name
            }
            let names = labels.compactMap { $0 }
            guard names.count == mapping.count else {
                throw ModelFileError(file: file, "`id2label` has duplicate label ids")
            }
            if let count, count != names.count {
                throw ModelFileError(file: file, "num_labels \(count) disagrees with the \(names.count) entries of id2label")
            }
            return names
        }
        let resolved = count ?? 2
        guard resolved > 0 else { throw fail("num_labels", "positive") }
        return (0..<resolved).map { "LABEL_\($0)" }
    }

    /// `squeeze_layers`: `[{"heads": h, "intermediate_size": f}, ...]`.
    func layerShapes() throws(ModelFileError) -> [BertLayerShape]? {
        guard let raw = object["squeeze_layers"], !(raw is NSNull) else { return nil }
        let expected = "a list of {\"heads\": n, \"intermediate_size\": n} objects"
        guard let entries = raw as? [Any] else { throw fail("squeeze_layers", expected) }
        var shapes: [BertLayerShape] = []
        for entry in entries {
            guard let object = entry as? [String: Any] else { throw fail("squeeze_layers", expected) }
            let fields = ConfigFields(object: object, file: file)
            guard let heads = try? fields.int("heads"), let width = try? fields.int("intermediate_size") else {
                throw fail("squeeze_layers", expected)
            }
            shapes.append(BertLayerShape(heads: heads, intermediateSize: width))
        }
        return shapes
    }

    func pooling() throws(ModelFileError) -> BertPooling? {
        guard let name = try string("squeeze_pooling") else { return nil }
        guard let pooling = BertPooling(rawValue: name) else {
            throw fail("squeeze_pooling", "one of \(BertPooling.allCases.map { "`\($0.rawValue)`" }.joined(separator: ", "))")
        }
        return pooling
    }
}
