import SqueezeCompress
import SqueezeModels

/// What a model artifact is, as far as an export cares: the exporters differ
/// by kind (a float graph, a quantized graph, a decoder with a cache), and a
/// target refuses a kind it cannot express by this name.
public enum ArtifactKind: String, Sendable, Hashable, CaseIterable {
    /// A float BERT classifier with the config's uniform layers.
    case dense
    /// A float BERT classifier with pruning masks (`prune/oneshot`): stored
    /// sparsely, its pruned weights are zeros.
    case sparse
    /// A float BERT classifier compacted by CoFi: per-layer head counts and
    /// FFN widths (`squeeze_layers`), possibly pruned hidden dimensions
    /// (`attention_head_size`) and removed sublayers.
    case cofi
    /// Static W8A8 (`quantize/ptq`): int8 weights, activation scales fixed by calibration.
    case staticInt8 = "static_int8"
    /// Dynamic W8A8 (`quantize/dynamic`): int8 weights, activation ranges measured per batch.
    case dynamicInt8 = "dynamic_int8"
    /// Weight-only int4/int8 (`quantize/weight-only`, `quantize/gptq`) of a BERT classifier.
    case weightOnly = "weight_only"
    /// A decoder language model (Llama, Mistral, Qwen2, GPT-2), float or quantized.
    case decoder

    /// A few words for messages: `a CoFi-compacted BERT classifier`.
    public var phrase: String {
        switch self {
        case .dense: "a dense float BERT classifier"
        case .sparse: "a sparse (masked) float BERT classifier"
        case .cofi: "a CoFi-compacted float BERT classifier"
        case .staticInt8: "a static int8 (W8A8) BERT classifier"
        case .dynamicInt8: "a dynamic int8 (W8A8) BERT classifier"
        case .weightOnly: "a weight-only quantized BERT classifier"
        case .decoder: "a decoder language model"
        }
    }

    /// The kind of `artifact`, read from its config (`quantization`,
    /// `squeeze_layers`, `attention_head_size`) and the safetensors header
    /// (`squeeze.sparse`); no weight is read. A decoder is `decoder` whatever
    /// its weights; a quantized BERT is its quantization mode; masks make a
    /// float BERT `sparse` (CoFi compaction writes dense weights, so both at
    /// once means masks added after compaction, exported the same way).
    public static func of(_ artifact: ModelArtifact) throws(ModelFileError) -> ArtifactKind {
        if artifact.isDecoder { return .decoder }
        if let quantization = try ModelQuantization.read(configFile: artifact.configPath) {
            switch quantization.mode {
            case .static: return .staticInt8
            case .dynamic: return .dynamicInt8
            case .weightOnly: return .weightOnly
            }
        }
        if try !artifact.weights().sparseMasks().isEmpty { return .sparse }
        let config = try BertConfig(contentsOfFile: artifact.configPath)
        if config.layerShapes != nil || config.attentionHeadSize != nil { return .cofi }
        return .dense
    }
}
