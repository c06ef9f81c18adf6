import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeYAML

/// `uses: tokenizer/train-bpe` — trains a byte-level BPE tokenizer (GPT-2's
/// pre-tokenizer) on text files and writes a Hugging Face `tokenizer.json`.
public struct TrainBPEStage: Stage {
    public struct Params: StageParameters {
        public static let files = Parameter("files", .array(.path), doc: "The UTF-8 text files to train on; their content is part of the cache key.")
        public static let vocabSize = Parameter("vocab_size", .int, default: 8000, doc: "Vocabulary size to reach: 256 byte tokens, the special tokens and one token per merge.")
        public static let minFrequency = Parameter("min_frequency", .int, default: 2, doc: "Stop merging when no adjacent pair occurs this many times.")
        public static let specialTokens = Parameter("special_tokens", .array(.string), default: ["<|endoftext|>"], doc: "Special tokens, given the first ids in this order and never split.")

        public static let parameters: [any ParameterDeclaration] = [
            files, vocabSize, minFrequency, specialTokens,
        ]

        public var files: [String]
        public var vocabSize: Int
        public var minFrequency: Int
        public var specialTokens: [String]

        public init(_ arguments: StageArguments) throws {
            files = try arguments[Self.files]
            vocabSize = try arguments[Self.vocabSize]
            minFrequency = try arguments[Self.minFrequency]
            specialTokens = try arguments[Self.specialTokens]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "tokenizer/train-bpe",
        version: 1,
        summary: "Train a byte-level BPE tokenizer (GPT-2 pre-tokenization) on text files; writes a Hugging Face tokenizer.json.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("tokenizer", kind: "tokenizer", doc: "A directory with tokenizer.json."),
        ],
        seedUse: .never,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let files = with["files"], let items = files.items, items.isEmpty {
            problems.append(Diagnostic("`files` is empty", at: files.location, hint: "list at least one text file to train on"))
        }
        let specials = with["special_tokens"]?.items?.count ?? 1
        let minimumVocabulary = BPETrainer.minimumVocabularySize(specialTokens: specials)
        if let (text, location) = QuantizeStages.literal(with, "vocab_size"), let value = Int(text), value < minimumVocabulary {
            problems.append(Diagnostic(
                "`vocab_size` must be at least \(minimumVocabulary) (256 byte tokens plus \(specials) special tokens), got \(value)",
                at: location, hint: "use e.g. `vocab_size: 8000`"))
        }
        if let (text, location) = QuantizeStages.literal(with, "min_frequency"), let value = Int(text), value < 1 {
            problems.append(Diagnostic("`min_frequency` must be at least 1, got \(value)", at: location))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let started = Date()
        var texts: [String] = []
        for file in params.files {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw StageFailure("cannot read \(file)", parameter: "files")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw StageFailure("\(file) is not valid UTF-8 text", parameter: "files")
            }
            texts.append(text)
        }
        let trainer = BPETrainer(vocabularySize: params.vocabSize, minimumFrequency: params.minFrequency, specialTokens: params.specialTokens)
        let result: BPETrainer.Result
        do {
            result = try trainer.train(texts)
        } catch {
            let parameter: String = switch error {
            case .vocabularyTooSmall: "vocab_size"
            case .duplicateSpecialToken, .emptySpecialToken: "special_tokens"
            }
            throw StageFailure(error.description, parameter: parameter)
        }
        try result.write(toDirectory: context.outputDirectory)
        let seconds = Date().timeIntervalSince(started)
        context.log.line("\(result.tokens.count) tokens (\(result.merges.count) merges) from \(result.distinctWords) distinct words in \(String(format: "%.2f", seconds)) s")
        return StageResult(
            metrics: [
                "vocab_size": .int(result.tokens.count),
                "merges": .int(result.merges.count),
                "words": .int(result.distinctWords),
                "seconds": .double(seconds),
            ],
            outputs: ["tokenizer": "."])
    }
}
