import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor

extension BackendRegistry {
    /// The backend a stage runs on, from the recipe's backend id.
    func make(_ context: StageContext) throws(StageFailure) -> any Backend {
        if let problem = self[context.backend]?.unavailability() { throw StageFailure(problem) }
        do {
            return try make(context.backend, threads: context.threads)
        } catch {
            throw StageFailure(error.description)
        }
    }

    /// What recipe validation and the schema accept for `backend:`.
    public var recipeBackends: RecipeBackends {
        RecipeBackends(
            descriptions: Dictionary(uniqueKeysWithValues: providers.map { ($0.id, $0.summary) }), defaultID: defaultID)
    }
}

/// A model artifact opened for training or evaluation: the model with its
/// tokenizer.
struct LoadedClassifier {
    var artifact: ModelArtifact
    var model: BertModel
    var tokenizer: BertTokenizer

    /// Loads `directory`; with `labels`, the classifier gets exactly these
    /// classes (a fresh head when the checkpoint has none, seeded by `seed`).
    /// A quantized model is refused: every user of a float model trains,
    /// distils, prunes or quantizes it.
    init(directory: String, labels: [String]? = nil, pooling: BertPooling? = nil, seed: UInt64) throws(StageFailure) {
        try Self.refuseQuantized(directory)
        (artifact, model, tokenizer) = try StageFailure.wrapping("cannot load the model: ") { () throws(ModelFileError) in
            let artifact = try ModelArtifact(directory: directory)
            var config = try BertConfig(contentsOfFile: artifact.configPath)
            if let labels { config.labels = labels }
            let model = try BertModel(config: config, file: try artifact.weights(), pooling: pooling, classifierSeed: seed)
            return (artifact, model, try artifact.tokenizer())
        }
    }

    var padID: Int32 { Int32(truncatingIfNeeded: tokenizer.padID) }

    /// `dynamic W8A8, 38 int8 Linear modules` / `weight_only int4 g128, 38 Linear modules`.
    static func describe(_ quantization: ModelQuantization) -> String {
        switch quantization.mode {
        case .weightOnly:
            "weight_only int\(quantization.weights.codeBits.map { "\($0) in int" } ?? "")\(quantization.weights.bits) g\(quantization.weights.groupSize ?? 0), \(quantization.modules.count) quantized Linear modules"
        case .static, .dynamic:
            "\(quantization.mode.rawValue) W8A8, \(quantization.modules.count) int8 Linear modules"
        }
    }

    /// Fails when the artifact in `directory` is quantized (its config has a
    /// `quantization` section), before anything else is read.
    static func refuseQuantized(_ directory: String) throws(StageFailure) {
        let quantization = try StageFailure.wrapping("cannot load the model: ") { () throws(ModelFileError) in
            try ModelQuantization.read(configFile: try ModelArtifact(directory: directory).configPath)
        }
        if let quantization {
            throw StageFailure("""
                the model is already quantized (\(Self.describe(quantization))): it can only be evaluated; training, distilling, pruning or quantizing needs the float model \
                it was quantized from
                """)
        }
    }

    /// Texts as `[CLS] … [SEP]` token ids, cut to `maxLength` and to the
    /// model's position limit.
    func encode(_ texts: [String], maxLength: Int) -> TokenSequences {
        tokenizer.encodeAll(texts, maxLength: min(maxLength, model.config.maxPositionEmbeddings))
    }

    /// Writes the model as an artifact into `directory` with this artifact's vocabulary and tokenizer.
    static func save(_ model: BertModel, from artifact: ModelArtifact, to directory: String, source: String) throws(StageFailure) {
        try StageFailure.wrapping("cannot write the model: ") { () throws(ModelFileError) in
            try model.save(toDirectory: directory)
            var extras = [ModelArtifact.vocabularyFileName]
            if artifact.tokenizerPath != nil { extras.append(ModelArtifact.tokenizerFileName) }
            try artifact.copy(extras, into: directory)
            _ = try ModelArtifact.seal(directory: directory, architecture: "bert", source: source)
        }
    }
}

extension Value {
    /// A metric value from a Float, rounded through its shortest decimal form
    /// so the JSON reads as the Float printed.
    static func metric(_ value: Float) -> Value { .double(Double("\(value)") ?? Double(value)) }
}

/// A model artifact opened for inference: a float or a quantized classifier
/// with its tokenizer (what `eval/classification` scores).
struct LoadedInferenceModel {
    var artifact: ModelArtifact
    var model: any SequenceClassifier
    var tokenizer: BertTokenizer
    /// The `quantization` section of a quantized model.
    var quantization: ModelQuantization?

    init(directory: String) throws(StageFailure) {
        let quantization = try StageFailure.wrapping("cannot load the model: ") { () throws(ModelFileError) in
            try ModelQuantization.read(configFile: try ModelArtifact(directory: directory).configPath)
        }
        guard let quantization else {
            let loaded = try LoadedClassifier(directory: directory, seed: 0)
            (artifact, model, tokenizer, self.quantization) = (loaded.artifact, loaded.model, loaded.tokenizer, nil)
            return
        }
        (artifact, model, tokenizer) = try StageFailure.wrapping("cannot load the quantized model: ") {
            () throws(ModelFileError) -> (ModelArtifact, any SequenceClassifier, BertTokenizer) in
            let artifact = try ModelArtifact(directory: directory)
            return (artifact, try QuantizedBertModel(directory: directory), try artifact.tokenizer())
        }
        self.quantization = quantization
    }

    var padID: Int32 { Int32(truncatingIfNeeded: tokenizer.padID) }

    /// Texts as `[CLS] … [SEP]` token ids, cut to `maxLength` and to the
    /// model's position limit.
    func encode(_ texts: [String], maxLength: Int) -> TokenSequences {
        tokenizer.encodeAll(texts, maxLength: min(maxLength, model.config.maxPositionEmbeddings))
    }
}

extension ParameterType where Decoded == String {
    /// The data of a stage that takes a BERT classifier or a decoder: a
    /// `dataset` (`data/text-classification`, for BERT) or a `text-dataset`
    /// (`data/text`, for decoders).
    static var classificationOrTextDataset: Self { Self(.oneOf([.artifact("dataset"), .artifact("text-dataset")])) }
}
