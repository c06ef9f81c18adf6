import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML

/// `uses: data/text` — tokenizes text files into a language-modelling dataset
/// (`TextTokenDataset`, `squeeze.text-tokens/1`): per split one I32 token
/// stream. Train and valid documents are each followed by EOS; the test split
/// is by default the GPTQ/SparseGPT perplexity stream: its rows (the lines as
/// Hugging Face `datasets` yields wikitext rows) joined by "\n\n" and tokenized
/// once. No BOS is added. See docs/text-data.md. The files may come from a
/// pinned download (`source`, docs/sources.md).
public struct TextDataStage: Stage {
    /// `files` of a download: member paths by split (`train`, `valid`, `test`).
    typealias Download = PinnedDownload<[String: [String]]>

    public struct Params: StageParameters {
        public static let tokenizer = Parameter("tokenizer", .tokenizerDirectory, doc: "A directory with tokenizer.json: `${stage.tokenizer}` of `tokenizer/train-bpe`, or a model artifact that has one (`${stage.model}`).")
        public static let train = Parameter("train", .optional(.array(.path)), doc: "The training files, read in order; their content is part of the cache key. Give at least one of `train`, `valid` and `test`.")
        public static let valid = Parameter("valid", .optional(.array(.path)), doc: "The validation files (or leave them out and set `valid_fraction`).")
        public static let test = Parameter("test", .optional(.array(.path)), doc: "The test files, read as `test_protocol` says.")
        public static let format = Parameter("format", .enumeration(TextFileFormat.allCases.map(\.rawValue)), default: TextFileFormat.text.rawValue, doc: "`text`: UTF-8 plain text, split into documents by `documents`; `jsonl`: one JSON object per line, whose `text_field` string is one document.")
        public static let textField = Parameter("text_field", .string, default: "text", doc: "JSONL: the field holding the text; it must be a string in every record.")
        public static let documents = Parameter("documents", .enumeration(DocumentBoundary.allCases.map(\.rawValue)), default: DocumentBoundary.line.rawValue, doc: "Plain text: `line` makes every non-blank line a document (wikitext's paragraphs), `blank_line` every run of lines between blank lines, `file` every file.")
        public static let validFraction = Parameter("valid_fraction", .optional(.number), doc: "Without `valid` files: this fraction (above 0, at most 0.5) of the train documents, the last ones (a contiguous tail, no seed), becomes the valid split.")
        public static let blockSize = Parameter("block_size", .int, default: 128, doc: "The training block length (at least 2), recorded in the dataset for the training stages.")
        public static let eos = Parameter("eos", .optional(.string), doc: "The token appended after every document of train and valid (and of test under `test_protocol: documents`); by default the tokenizer's `<|endoftext|>`, else `</s>`.")
        static let source = Parameter(
            "source", .optional(.download(Download.self)), fallback: ParameterFallback(replaces: ["train", "valid", "test"]),
            doc: "Download the files instead: `{url: https://…, sha256: <64 hex digits>, files: {train: [MEMBER, …], valid: […], test: […]}}`, fetched once into the store's download area, verified against the pin and unpacked when it is a zip or tar(.gz); `files` lists the archive's members per split. Without `files` the URL is one text file, the train split. Keyed by `sha256` and `files`, never the URL. Given together with split files, it is the fallback: used only when one of those files does not exist, and left out of the key otherwise. See docs/sources.md.")
        public static let testProtocol = Parameter("test_protocol", .enumeration(TextTokenDataset.TestProtocol.allCases.map(\.rawValue)), default: TextTokenDataset.TestProtocol.joined.rawValue, doc: "`joined`: the GPTQ/SparseGPT perplexity stream, the test rows (every line of a text file as Hugging Face `datasets` yields wikitext rows: with its \"\\n\", a blank line as \"\"; JSONL: every record's field) joined by \"\\n\\n\" and tokenized once, no EOS; `documents`: as train.")

        public static let parameters: [any ParameterDeclaration] = [
            tokenizer, train, valid, test, source, format, textField, documents, validFraction, blockSize, eos, testProtocol,
        ]

        public var tokenizer: String
        public var train: [String]?
        public var valid: [String]?
        public var test: [String]?
        public var format: String
        public var textField: String
        public var documents: String
        public var validFraction: Double?
        public var blockSize: Int
        public var eos: String?
        public var testProtocol: String
        var source: Download?

        public init(_ arguments: StageArguments) throws {
            source = try arguments[Self.source]
            tokenizer = try arguments[Self.tokenizer]
            train = try arguments[Self.train]
            valid = try arguments[Self.valid]
            test = try arguments[Self.test]
            format = try arguments[Self.format]
            textField = try arguments[Self.textField]
            documents = try arguments[Self.documents]
            validFraction = try arguments[Self.validFraction]
            blockSize = try arguments[Self.blockSize]
            eos = try arguments[Self.eos]
            testProtocol = try arguments[Self.testProtocol]
        }
    }

    /// The EOS tokens looked for, in order, when `eos` is left out.
    static let defaultEOSTokens = ["<|endoftext|>", "</s>"]

    public static let descriptor = StageTypeDescriptor(
        type: "data/text",
        version: 1,
        summary: "Tokenize text files (plain text or JSONL) into a language-modelling dataset: one token stream per split, documents separated by EOS; test by default as the GPTQ perplexity stream.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("dataset", kind: "text-dataset", doc: "The dataset directory: manifest.json and one <split>.safetensors (a 1-D I32 tensor `tokens`) per split."),
        ],
        seedUse: .never,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = PinnedDownloads.check(with, parameter: "source")
        let splits = TextTokenDataset.splitNames
        let downloaded = with["source"]?["files"]
        if let files = downloaded {
            for entry in files.entries ?? [] {
                let name = entry.key.scalar ?? ""
                if !splits.contains(name) {
                    problems.append(Diagnostic(
                        "`files` lists the members per split: `\(name)` is not `train`, `valid` or `test`", at: entry.key.location,
                        hint: Suggestion.hint(for: name, in: splits)))
                } else if entry.value.items.map({ $0.isEmpty || $0.contains { $0.scalar == nil } }) ?? true {
                    problems.append(Diagnostic(
                        "expected a non-empty list of member paths", at: entry.value.location, hint: "for example `test: [wikitext-2-raw/wiki.test.raw]`"))
                }
            }
            if files.entries == nil {
                problems.append(Diagnostic(
                    "expected a mapping from split to a list of archive members", at: files.location,
                    hint: "for example `files: {test: [wikitext-2-raw/wiki.test.raw]}`"))
            }
        }
        if splits.allSatisfy({ with[$0] == nil }), with["source"] == nil {
            problems.append(Diagnostic(
                "no split is given", at: with.location,
                hint: "list the files of at least one of `train`, `valid` and `test`, e.g. `test: [wikitext-2/test.txt]`"))
        }
        for split in splits {
            if let files = with[split], let items = files.items, items.isEmpty {
                problems.append(Diagnostic("`\(split)` is empty", at: files.location, hint: "list at least one file, or leave `\(split)` out"))
            }
        }
        if let fraction = with["valid_fraction"] {
            if let (text, location) = QuantizeStages.literal(with, "valid_fraction"), let value = Double(text), !(value > 0 && value <= 0.5) {
                problems.append(Diagnostic(
                    "`valid_fraction` must be above 0 and at most 0.5, got \(text)", at: location,
                    hint: "for example 0.05 keeps the last 5% of the train documents for valid"))
            }
            if with["valid"] != nil {
                problems.append(Diagnostic(
                    "`valid_fraction` is set, but `valid` files are given", at: fraction.location,
                    hint: "remove one of them: either take valid from the tail of train, or read it from `valid`"))
            }
            if with["train"] == nil, with["source"] == nil || (downloaded != nil && downloaded?["train"] == nil) {
                problems.append(Diagnostic(
                    "`valid_fraction` takes the valid split from the train documents, but no `train` files are given",
                    at: fraction.location, hint: "add `train` files, or give `valid` files instead"))
            }
        }
        if let (text, location) = QuantizeStages.literal(with, "block_size"), let value = Int(text), value < 2 {
            problems.append(Diagnostic("`block_size` must be at least 2, got \(value)", at: location, hint: "use e.g. `block_size: 128`"))
        }
        let format = QuantizeStages.literal(with, "format")?.text ?? (with["format"] == nil ? TextFileFormat.text.rawValue : nil)
        if format == TextFileFormat.jsonl.rawValue, let documents = with["documents"] {
            problems.append(Diagnostic(
                "`documents` applies to plain text; with `format: jsonl` every record is one document", at: documents.location,
                hint: "remove `documents`"))
        }
        if format == TextFileFormat.text.rawValue, let field = with["text_field"] {
            problems.append(Diagnostic(
                "`text_field` applies to `format: jsonl` only", at: field.location, hint: "remove `text_field`, or add `format: jsonl`"))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let started = Date()
        guard let format = TextFileFormat(rawValue: params.format) else {
            throw StageFailure("unknown format `\(params.format)`", parameter: "format")
        }
        guard let boundary = DocumentBoundary(rawValue: params.documents) else {
            throw StageFailure("unknown document boundary `\(params.documents)`", parameter: "documents")
        }
        guard let testProtocol = TextTokenDataset.TestProtocol(rawValue: params.testProtocol) else {
            throw StageFailure("unknown test protocol `\(params.testProtocol)`", parameter: "test_protocol")
        }
        guard params.blockSize >= 2 else {
            throw StageFailure("`block_size` must be at least 2, got \(params.blockSize)", parameter: "block_size")
        }
        if let fraction = params.validFraction {
            guard fraction > 0, fraction <= 0.5 else {
                throw StageFailure("`valid_fraction` must be above 0 and at most 0.5, got \(fraction)", parameter: "valid_fraction")
            }
            guard params.valid == nil else {
                throw StageFailure("`valid_fraction` needs `train` files and no `valid` files", parameter: "valid_fraction")
            }
        }
        var files: (train: [String]?, valid: [String]?, test: [String]?) = (params.train, params.valid, params.test)
        let scratch = try PinnedDownloads.makeScratch("text-data")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        if files.train == nil, files.valid == nil, files.test == nil, let source = params.source {
            let fetched = try await PinnedDownloads.fetch(
                url: source.url, sha256: source.sha256, parameter: "source", context: context, scratch: scratch)
            if let members = source.files {
                func paths(_ split: String) throws -> [String]? {
                    try members[split].map { try $0.map { try fetched.member($0, parameter: "source") } }
                }
                files = (try paths("train"), try paths("valid"), try paths("test"))
            } else {
                guard fetched.unpacked == nil else {
                    throw StageFailure(
                        "\(fetched.shownURL) is an archive: list the members per split in `files`, e.g. `files: {test: [DIR/test.txt]}`",
                        parameter: "source")
                }
                files.train = [fetched.file]
            }
            context.log.line("reading the files downloaded from \(fetched.shownURL)")
        }
        if params.validFraction != nil, files.train == nil {
            throw StageFailure("`valid_fraction` needs `train` files", parameter: "valid_fraction")
        }
        guard files.train != nil || files.valid != nil || files.test != nil else {
            throw StageFailure("no split is given; list the files of at least one of `train`, `valid` and `test`")
        }

        let tokenizerFile = (params.tokenizer as NSString).appendingPathComponent(ModelArtifact.tokenizerFileName)
        guard FileManager.default.fileExists(atPath: tokenizerFile) else {
            throw StageFailure(
                "\(params.tokenizer) has no \(ModelArtifact.tokenizerFileName); give `${stage.tokenizer}` of `tokenizer/train-bpe` or a model artifact that has one",
                parameter: "tokenizer")
        }
        let tokenizer: BPETokenizer
        let tokenizerDigest: String
        do {
            tokenizer = try BPETokenizer(contentsOfFile: tokenizerFile)
            tokenizerDigest = try Hashing.sha256(fileAt: tokenizerFile).hex
        } catch {
            throw StageFailure("\(error)", parameter: "tokenizer")
        }
        let vocabularySize = tokenizer.count
        guard (1...(Int(Int32.max) + 1)).contains(vocabularySize) else {
            throw StageFailure("the tokenizer has \(vocabularySize) ids; token streams need between 1 and 2^31", parameter: "tokenizer")
        }
        let (eos, eosID) = try Self.endOfSequence(params.eos, tokenizer)

        let reader = TextCorpusReader(format: format, textField: params.textField, boundary: boundary)
        func sources(_ files: [String], _ parameter: String) throws -> [TextCorpusReader.Source] {
            try files.map { file in
                try StageFailure.wrapping(parameter: parameter) { () throws(ModelFileError) in try TextCorpusReader.read(file) }
            }
        }
        func documents(_ sources: [TextCorpusReader.Source], _ parameter: String) throws -> [String] {
            let documents = try StageFailure.wrapping(parameter: parameter) { () throws(ModelFileError) in try reader.documents(of: sources) }
            guard !documents.isEmpty else {
                throw StageFailure("split `\(parameter)` has no documents: its files are empty or blank", parameter: parameter)
            }
            return documents
        }

        /// Documents (train, valid, and test under the `documents` protocol) or rows (joined test) per split.
        var texts: [(name: String, texts: [String], joined: Bool, sources: [String])] = []
        if let trainFiles = files.train {
            let read = try sources(trainFiles, "train")
            var trainDocuments = try documents(read, "train")
            let digests = read.map(\.sha256)
            if let fraction = params.validFraction {
                guard let tail = TextCorpusReader.tailCount(of: trainDocuments.count, fraction: fraction) else {
                    throw StageFailure(
                        "the train files hold \(trainDocuments.count) document(s); taking a valid split from them needs at least 2",
                        parameter: "valid_fraction")
                }
                let validDocuments = Array(trainDocuments.suffix(tail))
                trainDocuments.removeLast(tail)
                texts.append(("train", trainDocuments, false, digests))
                texts.append(("valid", validDocuments, false, digests))
            } else {
                texts.append(("train", trainDocuments, false, digests))
            }
        }
        if let validFiles = files.valid {
            let read = try sources(validFiles, "valid")
            texts.append(("valid", try documents(read, "valid"), false, read.map(\.sha256)))
        }
        if let testFiles = files.test {
            let read = try sources(testFiles, "test")
            if testProtocol == .joined {
                let rows = try StageFailure.wrapping(parameter: "test") { () throws(ModelFileError) in try reader.rows(of: read) }
                guard !rows.allSatisfy(TextCorpusReader.isBlank) else {
                    throw StageFailure("split `test` has no text: its files are empty or blank", parameter: "test")
                }
                texts.append(("test", rows, true, read.map(\.sha256)))
            } else {
                texts.append(("test", try documents(read, "test"), false, read.map(\.sha256)))
            }
        }

        var streams: [TextTokenDataset.SplitStream] = []
        var metrics: [String: Value] = ["vocab_size": .int(vocabularySize)]
        for split in texts {
            context.progress.report(StageProgress(message: "tokenizing \(split.name) (\(split.texts.count) \(split.joined ? "rows" : "documents"))"))
            let tokens = split.joined
                ? tokenizer.joinedStream(split.texts)
                : await tokenizer.documentStream(split.texts, eos: eosID, threads: context.threads)
            guard !tokens.isEmpty else {
                throw StageFailure("split `\(split.name)` tokenizes to no tokens", parameter: split.name)
            }
            streams.append(TextTokenDataset.SplitStream(name: split.name, tokens: tokens, documents: split.texts.count, sources: split.sources))
            metrics["\(split.name)_tokens"] = .int(tokens.count)
            metrics["\(split.name)_documents"] = .int(split.texts.count)
            context.log.line(
                "\(split.name): \(split.texts.count) \(split.joined ? "rows joined by \"\\n\\n\"" : "documents"), \(tokens.count) tokens from \(split.sources.count) file(s)")
        }
        _ = try StageFailure.wrapping { () throws(ModelFileError) in
            try TextTokenDataset.write(
                to: context.outputDirectory, tokenizerSHA256: tokenizerDigest, vocabSize: vocabularySize, eos: eos,
                eosID: Int(eosID), blockSize: params.blockSize, testProtocol: testProtocol,
                validFraction: params.validFraction, splits: streams)
        }
        let seconds = Date().timeIntervalSince(started)
        metrics["seconds"] = .double(seconds)
        context.log.line("vocabulary \(vocabularySize), eos \(eos) = \(eosID), block size \(params.blockSize), test protocol \(testProtocol.rawValue); \(String(format: "%.2f", seconds)) s")
        return StageResult(metrics: metrics, outputs: ["dataset": "."])
    }

    /// The EOS token and its id: `eos` when given, else the first of
    /// `defaultEOSTokens` the tokenizer has.
    static func endOfSequence(_ eos: String?, _ tokenizer: BPETokenizer) throws -> (String, Int32) {
        if let eos {
            guard let id = tokenizer.id(of: eos) else {
                throw StageFailure("the tokenizer has no token `\(eos)`", parameter: "eos")
            }
            return (eos, Int32(truncatingIfNeeded: id))
        }
        for token in defaultEOSTokens {
            if let id = tokenizer.id(of: token) { return (token, Int32(truncatingIfNeeded: id)) }
        }
        throw StageFailure(
            "the tokenizer has neither `<|endoftext|>` nor `</s>`; set `eos` to the token that ends a document", parameter: "tokenizer")
    }
}

extension ParameterType where Decoded == String {
    /// A directory with `tokenizer.json`: a `tokenizer` output, or a `model` artifact.
    static var tokenizerDirectory: Self { Self(.oneOf([.artifact("tokenizer"), .artifact("model")])) }
}
