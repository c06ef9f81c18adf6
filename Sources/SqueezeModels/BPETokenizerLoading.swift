import Foundation

extension BPETokenizer {
    static let supportedNormalizers = "Sequence, Prepend, Replace (string pattern)"
    static let supportedPreTokenizers =
        "ByteLevel, Metaspace, Split (GPT-2 or Llama-3 pattern, Isolated), Sequence of these"
    static let supportedDecoders = "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence of these"
    static let supportedPostProcessors = "TemplateProcessing (single), RobertaProcessing, BertProcessing, ByteLevel, Sequence"

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Reads a `tokenizer.json` whose model is BPE.
    public init(contentsOfFile path: String) throws(ModelFileError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, "cannot read the tokenizer file")
        }
        try self.init(json: data, file: path)
    }

    /// Parses `tokenizer.json` bytes; `file` names them in errors.
    public init(json data: Data, file: String) throws(ModelFileError) {
        let reader = TokenizerJSONReader(file: file)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ModelFileError(file: file, "is not valid JSON: \(error.localizedDescription)")
        }
        let root = try reader.object(parsed, "(root)")
        let model = try reader.object(root["model"], "model")
        let modelType = try reader.optionalString(model["type"], "model.type") ?? "BPE"
        guard modelType == "BPE" else {
            throw reader.fail("model.type", "is `\(modelType)`; only BPE models are supported here")
        }
        if let dropout = model["dropout"], !(dropout is NSNull) {
            throw reader.fail("model.dropout", "is set; BPE dropout is not supported (it must be null)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = try reader.optionalString(model[key], "model.\(key)"), !value.isEmpty {
                throw reader.fail("model.\(key)", "is `\(value)`; only null or empty is supported")
            }
        }

        var vocabulary: [[UInt8]: Int] = [:]
        let vocabObject = try reader.object(model["vocab"], "model.vocab")
        vocabulary.reserveCapacity(vocabObject.count)
        var largestID = -1
        for (token, value) in vocabObject {
            let id = try reader.tokenID(value, "model.vocab.\(token)")
            vocabulary[Array(token.utf8)] = id
            largestID = max(largestID, id)
        }

        var addedTokens: [AddedToken] = []
        for (index, entry) in try reader.array(root["added_tokens"] ?? [Any](), "added_tokens").enumerated() {
            let path = "added_tokens[\(index)]"
            let object = try reader.object(entry, path)
            let content = try reader.string(object["content"], "\(path).content")
            guard !content.isEmpty else { throw reader.fail("\(path).content", "is empty") }
            let special = try reader.bool(object["special"], "\(path).special", default: false)
            let token = AddedToken(
                id: try reader.tokenID(object["id"], "\(path).id"), content: content, special: special,
                lstrip: try reader.bool(object["lstrip"], "\(path).lstrip", default: false),
                rstrip: try reader.bool(object["rstrip"], "\(path).rstrip", default: false),
                singleWord: try reader.bool(object["single_word"], "\(path).single_word", default: false),
                normalized: try reader.bool(object["normalized"], "\(path).normalized", default: !special),
                scalars: Array(content.unicodeScalars))
            largestID = max(largestID, token.id)
            addedTokens.append(token)
        }
        var tokensByID = [String?](repeating: nil, count: largestID + 1)
        for (bytes, id) in vocabulary { tokensByID[id] = String(decoding: bytes, as: UTF8.self) }
        for token in addedTokens { tokensByID[token.id] = token.content }

        var merges: [UInt64: Merge] = [:]
        let mergeList = try reader.array(model["merges"] ?? [Any](), "model.merges")
        merges.reserveCapacity(mergeList.count)
        for (rank, entry) in mergeList.enumerated() {
            let path = "model.merges[\(rank)]"
            let pair: [String]
            if let text = entry as? String {
                pair = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else {
                pair = try reader.array(entry, path).enumerated().map { (index, part) throws(ModelFileError) in
                    try reader.string(part, "\(path)[\(index)]")
                }
            }
            guard pair.count == 2 else {
                throw reader.fail(path, "must be \"a b\" or [\"a\", \"b\"] (two tokens)")
            }
            guard let left = vocabulary[Array(pair[0].utf8)], let right = vocabulary[Array(pair[1].utf8)] else {
                throw reader.fail(path, "names a token that is not in model.vocab")
            }
            guard let merged = vocabulary[Array((pair[0] + pair[1]).utf8)] else {
                throw reader.fail(path, "merges into `\(pair[0] + pair[1])`, which is not in model.vocab")
            }
            // A pair listed twice keeps its last rank, as tokenizers' merge map does.
            merges[Self.pairKey(Int32(left), Int32(right))] = Merge(rank: Int32(rank), id: Int32(merged))
        }

        let unknownToken = try reader.optionalString(model["unk_token"], "model.unk_token")
        var unknownID: Int?
        if let unknownToken {
            guard let id = vocabulary[Array(unknownToken.utf8)] else {
                throw reader.fail("model.unk_token", "is `\(unknownToken)`, which is not in model.vocab")
            }
            unknownID = id
        }

        let normalizer = try Self.normalizerSteps(root["normalizer"], "normalizer", reader)
        let preTokenizer = try Self.preTokenizerSteps(root["pre_tokenizer"], "pre_tokenizer", reader)
        let decoder = try reader.optionalObject(root["decoder"], "decoder") == nil
            ? nil : try Self.decoderSteps(root["decoder"], "decoder", reader)
        let (prefix, suffix) = try Self.postProcessorIDs(root["post_processor"], "post_processor", reader)

        self.init(
            addedTokens: addedTokens, normalizer: normalizer, preTokenizer: preTokenizer, decoder: decoder,
            prefixIDs: prefix, suffixIDs: suffix, vocabulary: vocabulary, tokensByID: tokensByID, merges: merges,
            byteFallback: try reader.bool(model["byte_fallback"], "model.byte_fallback", default: false),
            unknownID: unknownID,
            fuseUnknown: try reader.bool(model["fuse_unk"], "model.fuse_unk", default: false),
            ignoreMerges: try reader.bool(model["ignore_merges"], "model.ignore_merges", default: false))
    }

    private static func normalizerSteps(_ value: Any?, _ path: String, _ reader: TokenizerJSONReader) throws(ModelFileError) -> [NormalizerStep] {
        guard let object = try reader.optionalObject(value, path) else { return [] }
        let type = try reader.string(object["type"], "\(path).type")
        switch type {
        case "Sequence":
            var steps: [NormalizerStep] = []
            for (index, item) in try reader.array(object["normalizers"], "\(path).normalizers").enumerated() {
                steps += try normalizerSteps(item, "\(path).normalizers[\(index)]", reader)
            }
            return steps
        case "Prepend":
            return [.prepend(Array(try reader.string(object["prepend"], "\(path).prepend").unicodeScalars))]
        case "Replace":
            let (pattern, content) = try replacePattern(object, path, reader)
            return [.replace(pattern: Array(pattern.unicodeScalars), content: Array(content.unicodeScalars))]
        default:
            throw reader.fail("\(path).type", "is `\(type)`; supported normalizers: \(supportedNormalizers)")
        }
    }

    private static func replacePattern(_ object: [String: Any], _ path: String, _ reader: TokenizerJSONReader) throws(ModelFileError) -> (String, String) {
        let pattern = try reader.object(object["pattern"], "\(path).pattern")
        guard let string = try reader.optionalString(pattern["String"], "\(path).pattern.String"), !string.isEmpty else {
            throw reader.fail("\(path).pattern", "must be {\"String\": \"...\"}; regex patterns are not supported")
        }
        return (string, try reader.string(object["content"], "\(path).content"))
    }

    private static func preTokenizerSteps(_ value: Any?, _ path: String, _ reader: TokenizerJSONReader) throws(ModelFileError) -> [PreTokenizerStep] {
        guard let object = try reader.optionalObject(value, path) else { return [] }
        let type = try reader.string(object["type"], "\(path).type")
        switch type {
        case "Sequence":
            var steps: [PreTokenizerStep] = []
            for (index, item) in try reader.array(object["pretokenizers"], "\(path).pretokenizers").enumerated() {
                steps += try preTokenizerSteps(item, "\(path).pretokenizers[\(index)]", reader)
            }
            return steps
        case "ByteLevel":
            return [.byteLevel(
                addPrefixSpace: try reader.bool(object["add_prefix_space"], "\(path).add_prefix_space", default: true),
                useRegex: try reader.bool(object["use_regex"], "\(path).use_regex", default: true))]
        case "Metaspace":
            let replacement = try reader.string(object["replacement"], "\(path).replacement").unicodeScalars
            guard replacement.count == 1, let scalar = replacement.first else {
                throw reader.fail("\(path).replacement", "must be one character")
            }
            let scheme = try reader.optionalString(object["prepend_scheme"], "\(path).prepend_scheme") ?? "always"
            guard let prepend = MetaspacePrepend(rawValue: scheme) else {
                throw reader.fail("\(path).prepend_scheme", "is `\(scheme)`; supported: always, first, never")
            }
            return [.metaspace(
                replacement: scalar, prepend: prepend,
                split: try reader.bool(object["split"], "\(path).split", default: true))]
        case "Split":
            let pattern = try reader.object(object["pattern"], "\(path).pattern")
            let regex = try reader.optionalString(pattern["Regex"], "\(path).pattern.Regex")
            let split: SplitPattern
            switch regex {
            case gpt2Pattern: split = .gpt2
            case llama3Pattern: split = .llama3
            default:
                throw reader.fail("\(path).pattern", "is not one of the supported split regexes (GPT-2's, Llama-3's)")
            }
            let behavior = try reader.optionalString(object["behavior"], "\(path).behavior") ?? "Isolated"
            guard behavior == "Isolated", !(try reader.bool(object["invert"], "\(path).invert", default: false)) else {
                throw reader.fail(path, "must have behavior Isolated and invert false")
            }
            return [.split(split)]
        default:
            throw reader.fail("\(path).type", "is `\(type)`; supported pre-tokenizers: \(supportedPreTokenizers)")
        }
    }

    private static func decoderSteps(_ value: Any?, _ path: String, _ reader: TokenizerJSONReader) throws(ModelFileError) -> [DecoderStep] {
        guard let object = try reader.optionalObject(value, path) else { return [] }
        let type = try reader.string(object["type"], "\(path).type")
        switch type {
        case "Sequence":
            var steps: [DecoderStep] = []
            for (index, item) in try reader.array(object["decoders"], "\(path).decoders").enumerated() {
                steps += try decoderSteps(item, "\(path).decoders[\(index)]", reader)
            }
            return steps
        case "ByteLevel": return [.byteLevel]
        case "ByteFallback": return [.byteFallback]
        case "Fuse": return [.fuse]
        case "Replace":
            let (pattern, content) = try replacePattern(object, path, reader)
            return [.replace(pattern: pattern, content: content)]
        case "Strip":
            let content = try reader.string(object["content"], "\(path).content")
            guard content.count == 1, let character = content.first else {
                throw reader.fail("\(path).content", "must be one character")
            }
            let start = try reader.int(object["start"], "\(path).start")
            let stop = try reader.int(object["stop"], "\(path).stop")
            guard start >= 0, stop >= 0 else { throw reader.fail(path, "start and stop must not be negative") }
            return [.strip(content: character, start: start, stop: stop)]
        case "Metaspace":
            let replacement = try reader.string(object["replacement"], "\(path).replacement")
            guard replacement.count == 1, let character = replacement.first else {
                throw reader.fail("\(path).replacement", "must be one character")
            }
            let scheme = try reader.optionalString(object["prepend_scheme"], "\(path).prepend_scheme") ?? "always"
            return [.metaspace(replacement: character, prependAlways: scheme != "never")]
        default:
            throw reader.fail("\(path).type", "is `\(type)`; supported decoders: \(supportedDecoders)")
        }
    }

    private static func postProcessorIDs(_ value: Any?, _ path: String, _ reader: TokenizerJSONReader) throws(ModelFileError) -> ([Int], [Int]) {
        guard let object = try reader.optionalObject(value, path) else { return ([], []) }
        let type = try reader.string(object["type"], "\(path).type")
        switch type {
        case "ByteLevel": return ([], [])
        case "Sequence":
            var prefix: [Int] = [], suffix: [Int] = []
            for (index, item) in try reader.array(object["processors"], "\(path).processors").enumerated() {
                let (before, after) = try postProcessorIDs(item, "\(path).processors[\(index)]", reader)
                prefix = before + prefix
                suffix += after
            }
            return (prefix, suffix)
        case "RobertaProcessing", "BertProcessing":
            func id(_ key: String) throws(ModelFileError) -> Int {
                let pair = try reader.array(object[key], "\(path).\(key)")
                guard pair.count == 2 else { throw reader.fail("\(path).\(key)", "must be [token, id]") }
                return try reader.tokenID(pair[1], "\(path).\(key)[1]")
            }
            return ([try id("cls")], [try id("sep")])
        case "TemplateProcessing":
            let specials = try reader.object(object["special_tokens"], "\(path).special_tokens")
            var prefix: [Int] = [], suffix: [Int] = []
            var seenSequence = false
            for (index, piece) in try reader.array(object["single"], "\(path).single").enumerated() {
                let piecePath = "\(path).single[\(index)]"
                let pieceObject = try reader.object(piece, piecePath)
                if pieceObject["Sequence"] != nil {
                    guard !seenSequence else { throw reader.fail(piecePath, "is a second sequence in a single template") }
                    seenSequence = true
                    continue
                }
                let special = try reader.object(pieceObject["SpecialToken"], "\(piecePath).SpecialToken")
                let name = try reader.string(special["id"], "\(piecePath).SpecialToken.id")
                let entry = try reader.object(specials[name], "\(path).special_tokens.\(name)")
                var ids: [Int] = []
                for (idIndex, id) in try reader.array(entry["ids"], "\(path).special_tokens.\(name).ids").enumerated() {
                    ids.append(try reader.tokenID(id, "\(path).special_tokens.\(name).ids[\(idIndex)]"))
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        default:
            throw reader.fail("\(path).type", "is `\(type)`; supported post-processors: \(supportedPostProcessors)")
        }
    }
}
