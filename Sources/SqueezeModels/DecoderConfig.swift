import Foundation
import SqueezeSupport

/// The decoder families Squeeze reads, by Hugging Face `model_type`.
public enum DecoderFamily: String, Sendable, Hashable, CaseIterable {
    /// Llama 1/2/3: RMSNorm, rotary positions, SwiGLU, grouped-query attention.
    case llama
    /// Mistral: the Llama layout (sequences must fit its sliding window).
    case mistral
    /// Qwen2: the Llama layout with biases on the query, key and value projections.
    case qwen2
    /// GPT-2: LayerNorm, learned positions, `gelu_new`, `Conv1D` weights, fused `c_attn`.
    case gpt2

    /// Every supported `model_type`, for error messages.
    public static let supportedList = allCases.map { "`\($0.rawValue)`" }.joined(separator: ", ")
}

/// How positions enter the model.
public enum DecoderPositions: Sendable, Hashable {
    /// Rotary embeddings on queries and keys (`rope_theta`, optional scaling).
    case rotary(theta: Double, scaling: RotaryScaling?)
    /// A learned table added to the token embeddings (GPT-2's `wpe`).
    case learned
}

/// The `rope_scaling` types supported: they rewrite the rotary inverse
/// frequencies and nothing else (no attention temperature).
public enum RotaryScaling: Sendable, Hashable {
    /// `linear`: positions divided by `factor` (frequencies divided by it).
    case linear(factor: Double)
    /// `llama3`: Llama 3.1's frequency-dependent rewrite.
    case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int)

    /// Every supported `rope_type`, for error messages.
    public static let supportedList = "`default`, `linear`, `llama3`"
}

/// A decoder-only language model's architecture, read from a Hugging Face
/// `config.json` of one of the `DecoderFamily` types and normalised to one
/// description: pre-norm blocks of (norm → attention → residual, norm → MLP
/// → residual), a final norm and a language-model head.
public struct DecoderConfig: Sendable, Hashable {
    public var family: DecoderFamily
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    /// Key/value heads (`num_key_value_heads`); fewer than the query heads is grouped-query attention.
    public var numKeyValueHeads: Int
    public var headDimension: Int
    public var maxPositionEmbeddings: Int
    public var normEpsilon: Double
    public var positions: DecoderPositions
    /// Biases on the query, key and value projections (Qwen2, GPT-2, Llama's `attention_bias`).
    public var queryKeyValueBias: Bool
    /// A bias on the attention output projection (GPT-2, Llama's `attention_bias`).
    public var outputBias: Bool
    /// Biases on the MLP projections (GPT-2, Llama's `mlp_bias`).
    public var mlpBias: Bool
    /// The head shares the token embedding matrix (`tie_word_embeddings`).
    public var tieWordEmbeddings: Bool
    /// Attention-probability dropout during training.
    public var attentionDropout: Double
    /// Dropout on embeddings and on each block's residual branches during training (GPT-2's `resid_pdrop`/`embd_pdrop`).
    public var residualDropout: Double
    public var initializerRange: Double
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    /// Mistral's attention window; sequences longer than it are refused.
    public var slidingWindow: Int?

    public init(
        family: DecoderFamily, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
        numAttentionHeads: Int, numKeyValueHeads: Int? = nil, headDimension: Int? = nil, maxPositionEmbeddings: Int,
        normEpsilon: Double = 1e-6, positions: DecoderPositions = .rotary(theta: 10000, scaling: nil),
        queryKeyValueBias: Bool = false, outputBias: Bool = false, mlpBias: Bool = false, tieWordEmbeddings: Bool = false,
        attentionDropout: Double = 0, residualDropout: Double = 0, initializerRange: Double = 0.02,
        bosTokenID: Int? = nil, eosTokenID: Int? = nil, slidingWindow: Int? = nil
    ) {
        self.family = family
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDimension = headDimension ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.normEpsilon = normEpsilon
        self.positions = positions
        self.queryKeyValueBias = queryKeyValueBias
        self.outputBias = outputBias
        self.mlpBias = mlpBias
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionDropout = attentionDropout
        self.residualDropout = residualDropout
        self.initializerRange = initializerRange
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.slidingWindow = slidingWindow
    }

    /// Query heads per key/value head.
    public var groupSize: Int { numAttentionHeads / Swift.max(numKeyValueHeads, 1) }
    /// RMSNorm (Llama layout) rather than LayerNorm with a bias (GPT-2).
    public var usesRMSNorm: Bool { family != .gpt2 }
    /// A gated SiLU MLP (gate, up, down) rather than GELU (up, down).
    public var usesGatedMLP: Bool { family != .gpt2 }

    /// Reads and validates `config.json`.
    public init(contentsOfFile path: String) throws(ModelFileError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, "cannot read the model config")
        }
        try self.init(json: data, file: path)
    }

    /// Decodes and validates a `config.json` document; `file` names it in errors.
    public init(json data: Data, file: String) throws(ModelFileError) {
        let object: Value
        do {
            object = try Value(json: data)
        } catch {
            throw ModelFileError(file: file, "config is not valid JSON: \(error)")
        }
        guard case .object(let members) = object else { throw ModelFileError(file: file, "config is not a JSON object") }
        try self.init(object: members, file: file)
    }

    /// Decodes and validates the members of a `config.json` object (a
    /// recipe's `config:` mapping); `file` names it in errors.
    public init(object: [String: Value], file: String) throws(ModelFileError) {
        let fields = DecoderConfigFields(object: .object(object), file: file)
        guard let typeName = try fields.string("model_type") else {
            throw ModelFileError(file: file, "missing `model_type`; supported decoder types: \(DecoderFamily.supportedList)")
        }
        guard let family = DecoderFamily(rawValue: typeName) else {
            throw ModelFileError(file: file, "model_type `\(typeName)` is not a supported decoder; supported: \(DecoderFamily.supportedList)")
        }
        switch family {
        case .gpt2: try self.init(gpt2: fields)
        case .llama, .mistral, .qwen2: try self.init(llamaLayout: family, fields)
        }
        try validate(file: file)
    }

    private init(gpt2 fields: DecoderConfigFields) throws(ModelFileError) {
        if let activation = try fields.string("activation_function"), !["gelu_new", "gelu_pytorch_tanh"].contains(activation) {
            throw ModelFileError(file: fields.file, "activation_function `\(activation)` is not supported (expected `gelu_new`)")
        }
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] where try fields.bool(flag) == true {
            throw ModelFileError(file: fields.file, "`\(flag)` is not supported")
        }
        if try fields.bool("scale_attn_weights") == false {
            throw ModelFileError(file: fields.file, "`scale_attn_weights: false` is not supported")
        }
        let hidden = try fields.requiredInt("n_embd")
        self.init(
            family: .gpt2, vocabSize: try fields.requiredInt("vocab_size"), hiddenSize: hidden,
            intermediateSize: try fields.int("n_inner") ?? 4 * hidden, numHiddenLayers: try fields.requiredInt("n_layer"),
            numAttentionHeads: try fields.requiredInt("n_head"), maxPositionEmbeddings: try fields.requiredInt("n_positions"),
            normEpsilon: try fields.double("layer_norm_epsilon") ?? 1e-5, positions: .learned,
            queryKeyValueBias: true, outputBias: true, mlpBias: true,
            tieWordEmbeddings: try fields.bool("tie_word_embeddings") ?? true,
            attentionDropout: try fields.double("attn_pdrop") ?? 0.1,
            residualDropout: try Swift.max(fields.double("resid_pdrop") ?? 0.1, fields.double("embd_pdrop") ?? 0.1),
            initializerRange: try fields.double("initializer_range") ?? 0.02,
            bosTokenID: try fields.int("bos_token_id"), eosTokenID: try fields.int("eos_token_id"))
        if try fields.double("resid_pdrop") != fields.double("embd_pdrop") {
            throw ModelFileError(file: fields.file, "`resid_pdrop` and `embd_pdrop` differ; Squeeze uses one dropout for both")
        }
    }

    private init(llamaLayout family: DecoderFamily, _ fields: DecoderConfigFields) throws(ModelFileError) {
        if let activation = try fields.string("hidden_act"), activation != "silu" {
            throw ModelFileError(file: fields.file, "hidden_act `\(activation)` is not supported (expected `silu`)")
        }
        if let slices = try fields.int("pretraining_tp"), slices != 1 {
            throw ModelFileError(file: fields.file, "`pretraining_tp: \(slices)` is not supported (expected 1)")
        }
        let heads = try fields.requiredInt("num_attention_heads")
        let attentionBias = try fields.bool("attention_bias") ?? false
        let slides = try fields.bool("use_sliding_window") ?? false
        let window = family == .mistral || slides ? try fields.int("sliding_window") : nil
        self.init(
            family: family, vocabSize: try fields.requiredInt("vocab_size"), hiddenSize: try fields.requiredInt("hidden_size"),
            intermediateSize: try fields.requiredInt("intermediate_size"),
            numHiddenLayers: try fields.requiredInt("num_hidden_layers"), numAttentionHeads: heads,
            numKeyValueHeads: try fields.int("num_key_value_heads"), headDimension: try fields.int("head_dim"),
            maxPositionEmbeddings: try fields.int("max_position_embeddings") ?? 2048,
            normEpsilon: try fields.double("rms_norm_eps") ?? 1e-6,
            positions: try fields.rotaryPositions(),
            queryKeyValueBias: family == .qwen2 || attentionBias, outputBias: attentionBias,
            mlpBias: try fields.bool("mlp_bias") ?? false,
            tieWordEmbeddings: try fields.bool("tie_word_embeddings") ?? false,
            attentionDropout: try fields.double("attention_dropout") ?? 0, residualDropout: 0,
            initializerRange: try fields.double("initializer_range") ?? 0.02,
            bosTokenID: try fields.int("bos_token_id"), eosTokenID: try fields.int("eos_token_id"), slidingWindow: window)
    }

    /// Checks sizes, ratios and probabilities; `file` names the config in errors.
    public func validate(file: String) throws(ModelFileError) {
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file, message) }
        for (key, value) in [
            ("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
            ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
            ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDimension),
            ("max_position_embeddings", maxPositionEmbeddings),
        ] where value <= 0 {
            throw fail("`\(key)` must be positive, got \(value)")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw fail("num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        if family == .gpt2, hiddenSize % numAttentionHeads != 0 {
            throw fail("n_embd \(hiddenSize) is not divisible by n_head \(numAttentionHeads)")
        }
        if case .rotary(let theta, let scaling) = positions {
            guard headDimension % 2 == 0 else { throw fail("rotary embeddings need an even head dimension, got \(headDimension)") }
            guard theta > 0, theta.isFinite else { throw fail("`rope_theta` must be positive, got \(theta)") }
            switch scaling {
            case .linear(let factor)?:
                guard factor > 0, factor.isFinite else { throw fail("rope scaling `factor` must be positive, got \(factor)") }
            case .llama3(let factor, let low, let high, let original)?:
                guard factor > 0, low > 0, high > low, original > 0 else {
                    throw fail("llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
                }
            case nil: break
            }
        }
        guard normEpsilon > 0, normEpsilon.isFinite else { throw fail("the norm epsilon must be positive, got \(normEpsilon)") }
        for (key, value) in [("attention dropout", attentionDropout), ("residual dropout", residualDropout)] where !(value >= 0 && value < 1) {
            throw fail("\(key) must be in [0, 1), got \(value)")
        }
        for (key, id) in [("bos_token_id", bosTokenID), ("eos_token_id", eosTokenID)] {
            if let id, id < 0 || id >= vocabSize { throw fail("`\(key)` \(id) is outside the vocabulary of \(vocabSize)") }
        }
        if let slidingWindow, slidingWindow <= 0 { throw fail("`sliding_window` must be positive, got \(slidingWindow)") }
    }

    /// The longest sequence the model takes: the position table, and Mistral's window.
    public var maximumSequenceLength: Int { Swift.min(maxPositionEmbeddings, slidingWindow ?? .max) }

    /// `config.json` as Hugging Face writes it for this family (loadable by
    /// `AutoModelForCausalLM`); sorted keys, so equal configs give equal bytes.
    public func jsonData() -> Data {
        var object: [String: Value] = [
            "model_type": .string(family.rawValue),
            "vocab_size": .int(vocabSize),
            "initializer_range": .double(initializerRange),
            "tie_word_embeddings": .bool(tieWordEmbeddings),
            "torch_dtype": .string("float32"),
        ]
        if let bosTokenID { object["bos_token_id"] = .int(bosTokenID) }
        if let eosTokenID { object["eos_token_id"] = .int(eosTokenID) }
        switch family {
        case .gpt2:
            object["architectures"] = .array([.string("GPT2LMHeadModel")])
            object["n_embd"] = .int(hiddenSize)
            object["n_inner"] = .int(intermediateSize)
            object["n_layer"] = .int(numHiddenLayers)
            object["n_head"] = .int(numAttentionHeads)
            object["n_positions"] = .int(maxPositionEmbeddings)
            object["layer_norm_epsilon"] = .double(normEpsilon)
            object["activation_function"] = .string("gelu_new")
            object["attn_pdrop"] = .double(attentionDropout)
            object["resid_pdrop"] = .double(residualDropout)
            object["embd_pdrop"] = .double(residualDropout)
        case .llama, .mistral, .qwen2:
            let architecture = ["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"]
            object["architectures"] = .array([.string(architecture[family.rawValue] ?? "")])
            object["hidden_size"] = .int(hiddenSize)
            object["intermediate_size"] = .int(intermediateSize)
            object["num_hidden_layers"] = .int(numHiddenLayers)
            object["num_attention_heads"] = .int(numAttentionHeads)
            object["num_key_value_heads"] = .int(numKeyValueHeads)
            object["head_dim"] = .int(headDimension)
            object["max_position_embeddings"] = .int(maxPositionEmbeddings)
            object["rms_norm_eps"] = .double(normEpsilon)
            object["hidden_act"] = .string("silu")
            object["attention_dropout"] = .double(attentionDropout)
            if family == .llama {
                object["attention_bias"] = .bool(outputBias)
                object["mlp_bias"] = .bool(mlpBias)
            }
            if let slidingWindow { object["sliding_window"] = .int(slidingWindow) }
            if family == .qwen2 { object["use_sliding_window"] = .bool(false) }
            if case .rotary(let theta, let scaling) = positions {
                object["rope_theta"] = .double(theta)
                switch scaling {
                case .linear(let factor)?:
                    object["rope_scaling"] = .object(["rope_type": .string("linear"), "factor": .double(factor)])
                case .llama3(let factor, let low, let high, let original)?:
                    object["rope_scaling"] = .object([
                        "rope_type": .string("llama3"), "factor": .double(factor), "low_freq_factor": .double(low),
                        "high_freq_factor": .double(high), "original_max_position_embeddings": .int(original),
                    ])
                case nil: break
                }
            }
        }
        return Data(Value.object(object).prettyJSON.utf8)
    }
}

/// Typed access to the members of a config object, with errors naming the key.
struct DecoderConfigFields {
    let object: Value
    let file: String

    private func fail(_ key: String, _ expected: String) -> ModelFileError {
        ModelFileError(file: file, "`\(key)` must be \(expected)")
    }

    private func present(_ key: String) -> Value? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    func requiredInt(_ key: String) throws(ModelFileError) -> Int {
        guard let value = try int(key) else { throw ModelFileError(file: file, "missing required field `\(key)`") }
        return value
    }

    func int(_ key: String) throws(ModelFileError) -> Int? {
        guard let raw = present(key) else { return nil }
        switch raw {
        case .int(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 1e15: return Int(value)
        case .array(let items) where key.hasSuffix("token_id"):
            // Llama 3 lists several end tokens; the first is the one generation stops on by default.
            guard case .int(let first)? = items.first else { throw fail(key, "an integer") }
            return first
        default: throw fail(key, "an integer")
        }
    }

    func double(_ key: String) throws(ModelFileError) -> Double? {
        guard let raw = present(key) else { return nil }
        guard let value = raw.number, value.isFinite else { throw fail(key, "a number") }
        return value
    }

    func bool(_ key: String) throws(ModelFileError) -> Bool? {
        guard let raw = present(key) else { return nil }
        guard case .bool(let value) = raw else { throw fail(key, "true or false") }
        return value
    }

    func string(_ key: String) throws(ModelFileError) -> String? {
        guard let raw = present(key) else { return nil }
        guard case .string(let value) = raw else { throw fail(key, "a string") }
        return value
    }

    /// `rope_theta` and `rope_scaling`, as transformers 4 writes them, or
    /// `rope_parameters` (transformers 5, which holds both).
    func rotaryPositions() throws(ModelFileError) -> DecoderPositions {
        let parameters = present("rope_parameters") ?? present("rope_scaling")
        let scaling = parameters.map { DecoderConfigFields(object: $0, file: file) }
        let nestedTheta = try scaling?.double("rope_theta")
        let topTheta = try double("rope_theta")
        let theta = nestedTheta ?? topTheta ?? 10000
        guard let scaling else { return .rotary(theta: theta, scaling: nil) }
        guard case .object = scaling.object else { throw fail("rope_scaling", "an object") }
        let ropeType = try scaling.string("rope_type")
        let legacyType = try scaling.string("type")
        let type = ropeType ?? legacyType ?? "default"
        switch type {
        case "default":
            return .rotary(theta: theta, scaling: nil)
        case "linear":
            guard let factor = try scaling.double("factor") else { throw fail("rope_scaling.factor", "a number") }
            return .rotary(theta: theta, scaling: .linear(factor: factor))
        case "llama3":
            guard let factor = try scaling.double("factor"), let low = try scaling.double("low_freq_factor"),
                  let high = try scaling.double("high_freq_factor"),
                  let original = try scaling.int("original_max_position_embeddings")
            else {
                throw ModelFileError(
                    file: file,
                    "llama3 rope scaling needs `factor`, `low_freq_factor`, `high_freq_factor` and `original_max_position_embeddings`")
            }
            return .rotary(
                theta: theta,
                scaling: .llama3(factor: factor, lowFrequencyFactor: low, highFrequencyFactor: high, originalMaxPositions: original))
        default:
            throw ModelFileError(file: file, "rope scaling type `\(type)` is not supported; supported: \(RotaryScaling.supportedList)")
        }
    }
}
