import Foundation
import Collections

/// A BPE tokenizer read from a Hugging Face `tokenizer.json`, encoding and
/// decoding as `tokenizers` does for the two families in use:
///
/// - byte-level BPE (GPT-2, RoBERTa, Llama-3): pre-tokenizer `ByteLevel`
///   (`add_prefix_space`, `use_regex` with GPT-2's pattern), or `Sequence` of
///   `Split` (GPT-2's or Llama-3's pattern, `Isolated`) and `ByteLevel`;
/// - SentencePiece-style BPE (Llama-2): normalizer `Prepend`/`Replace`, no
///   pre-tokenizer or `Metaspace`, `byte_fallback` to `<0xXX>` tokens, `fuse_unk`.
///
/// Added tokens are split off before pre-tokenization (leftmost-longest, the
/// `normalized: false` ones on the raw text, the others after normalization),
/// honouring `lstrip`, `rstrip` and `single_word`. Post-processors
/// `TemplateProcessing` (single sequence), `RobertaProcessing`, `BertProcessing`
/// and `ByteLevel` add special tokens when asked. Anything else is a
/// `ModelFileError` that lists what is supported.
public struct BPETokenizer: Sendable {
    /// An entry of `added_tokens`.
    public struct AddedToken: Sendable, Hashable {
        public var id: Int
        public var content: String
        public var special: Bool
        public var lstrip: Bool
        public var rstrip: Bool
        /// Matches only where no word character (`\w`) touches either end.
        public var singleWord: Bool
        public var normalized: Bool
        let scalars: [Unicode.Scalar]
    }

    enum NormalizerStep: Sendable {
        case prepend([Unicode.Scalar])
        case replace(pattern: [Unicode.Scalar], content: [Unicode.Scalar])
    }

    enum SplitPattern: Sendable { case gpt2, llama3 }

    /// Metaspace's `prepend_scheme`: `first` prepends only to text that starts
    /// the input (not after an added token).
    enum MetaspacePrepend: String, Sendable { case always, first, never }

    enum PreTokenizerStep: Sendable {
        case split(SplitPattern)
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
        case metaspace(replacement: Unicode.Scalar, prepend: MetaspacePrepend, split: Bool)
    }

    enum DecoderStep: Sendable {
        case byteLevel
        case replace(pattern: String, content: String)
        case byteFallback
        case fuse
        case strip(content: Character, start: Int, stop: Int)
        case metaspace(replacement: Character, prependAlways: Bool)
    }

    struct Merge: Sendable {
        var rank: Int32
        var id: Int32
    }

    public let addedTokens: [AddedToken]
    let normalizer: [NormalizerStep]
    let preTokenizer: [PreTokenizerStep]
    let decoder: [DecoderStep]?
    /// Special-token ids put before and after the sequence by the post-processor.
    let prefixIDs: [Int]
    let suffixIDs: [Int]

    let vocabulary: [[UInt8]: Int]
    let tokensByID: [String?]
    let merges: [UInt64: Merge]
    let singleScalarIDs: [Unicode.Scalar: Int]
    /// With `byte_fallback`, the id of `<0xXX>` for each byte (nil where the vocabulary lacks it).
    let byteFallbackIDs: [Int?]?
    let unknownID: Int?
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    let specialIDs: Set<Int>
    private let rawAddedTokens: [AddedToken]
    private let normalizedAddedTokens: [AddedToken]
    /// The first scalar of every added token, to skip most positions at once.
    private let addedTokenStarts: Set<Unicode.Scalar>

    // MARK: encoding

    /// Token ids of `text`; with `addSpecialTokens`, the post-processor's
    /// special tokens (BOS/EOS, CLS/SEP) around them.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        if addSpecialTokens { ids += prefixIDs }
        for segment in split(scalars, on: rawAddedTokens) {
            switch segment {
            case .added(let id): ids.append(id)
            case .text(let raw, let rawStart):
                for inner in split(normalize(raw), on: normalizedAddedTokens) {
                    switch inner {
                    case .added(let id): ids.append(id)
                    case .text(let normalized, let start):
                        for word in preTokenize(normalized, atInputStart: rawStart == 0 && start == 0) {
                            applyModel(to: word, into: &ids)
                        }
                    }
                }
            }
        }
        if addSpecialTokens { ids += suffixIDs }
        return ids
    }

    /// The pre-tokenizer alone on `text` (no added tokens, no normalizer): the
    /// words BPE would see, as `tokenizers`' `pre_tokenize_str` gives them.
    public func preTokenizedWords(_ text: String) -> [String] {
        preTokenize(Array(text.unicodeScalars), atInputStart: true).map { String(String.UnicodeScalarView($0)) }
    }

    /// The tokens of `ids` (nil for an id the tokenizer does not have).
    public func tokens(of ids: [Int]) -> [String?] {
        ids.map { token(of: $0) }
    }

    public func token(of id: Int) -> String? {
        tokensByID.indices.contains(id) ? tokensByID[id] : nil
    }

    /// The id of `token` in the vocabulary or the added tokens (exact scalars).
    public func id(of token: String) -> Int? {
        let scalars = Array(token.unicodeScalars)
        return addedTokens.first { $0.scalars == scalars }?.id ?? vocabulary[Array(token.utf8)]
    }

    /// One more than the largest id.
    public var count: Int { tokensByID.count }

    enum Segment {
        case added(Int)
        /// Text and where it starts in the text that was split.
        case text([Unicode.Scalar], start: Int)
    }

    /// Splits at added tokens, leftmost-longest; `lstrip`/`rstrip` swallow the
    /// whitespace beside a match. Empty text segments are dropped.
    private func split(_ text: [Unicode.Scalar], on tokens: [AddedToken]) -> [Segment] {
        guard !tokens.isEmpty, !text.isEmpty else { return text.isEmpty ? [] : [.text(text, start: 0)] }
        var segments: [Segment] = []
        var pendingStart = 0
        var position = 0
        while position < text.count {
            guard let token = longestMatch(in: text, at: position, among: tokens) else {
                position += 1
                continue
            }
            if token.singleWord {
                let matchEnd = position + token.scalars.count
                let touchesWord = (position > 0 && Self.isWordScalar(text[position - 1]))
                    || (matchEnd < text.count && Self.isWordScalar(text[matchEnd]))
                if touchesWord {
                    // A discarded match still consumes its text, as tokenizers' match iterator does.
                    position = matchEnd
                    continue
                }
            }
            var start = position
            var end = position + token.scalars.count
            if token.lstrip {
                while start > pendingStart, text[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.rstrip {
                while end < text.count, text[end].properties.isWhitespace { end += 1 }
            }
            if start > pendingStart { segments.append(.text(Array(text[pendingStart..<start]), start: pendingStart)) }
            segments.append(.added(token.id))
            pendingStart = end
            position = end
        }
        if pendingStart < text.count { segments.append(.text(Array(text[pendingStart...]), start: pendingStart)) }
        return segments
    }

    /// Rust regex `\w`: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
    static func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    private func longestMatch(in text: [Unicode.Scalar], at position: Int, among tokens: [AddedToken]) -> AddedToken? {
        // `tokens` are sorted longest first.
        guard addedTokenStarts.contains(text[position]) else { return nil }
        for token in tokens where token.scalars.count <= text.count - position {
            var matches = true
            for (offset, scalar) in token.scalars.enumerated() where text[position + offset] != scalar {
                matches = false
                break
            }
            if matches { return token }
        }
        return nil
    }

    private func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var text = text
        for step in normalizer {
            switch step {
            case .prepend(let prefix):
                if !text.isEmpty { text = prefix + text }
            case .replace(let pattern, let content):
                text = Self.replacing(pattern, with: content, in: text)
            }
        }
        return text
    }

    static func replacing(_ pattern: [Unicode.Scalar], with content: [Unicode.Scalar], in text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard !pattern.isEmpty, text.count >= pattern.count else { return text }
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(text.count)
        var index = 0
        while index < text.count {
            if index + pattern.count <= text.count, text[index] == pattern[0],
               text[index..<(index + pattern.count)].elementsEqual(pattern) {
                result += content
                index += pattern.count
            } else {
                result.append(text[index])
                index += 1
            }
        }
        return result
    }

    /// The words the model sees: pieces of `text` after each pre-tokenizer step.
    private func preTokenize(_ text: [Unicode.Scalar], atInputStart: Bool) -> [[Unicode.Scalar]] {
        guard !text.isEmpty else { return [] }
        var pieces = [text]
        for step in preTokenizer {
            var next: [[Unicode.Scalar]] = []
            for (pieceIndex, piece) in pieces.enumerated() {
                switch step {
                case .split(let pattern):
                    Self.splitPieces(piece, pattern: pattern, into: &next)
                case .byteLevel(let addPrefixSpace, let useRegex):
                    var piece = piece
                    if addPrefixSpace, piece.first != " " { piece.insert(" ", at: 0) }
                    var words: [[Unicode.Scalar]] = []
                    if useRegex { Self.splitPieces(piece, pattern: .gpt2, into: &words) } else { words = [piece] }
                    for word in words {
                        var mapped: [Unicode.Scalar] = []
                        for scalar in word {
                            UTF8.encode(scalar) { mapped.append(BPEPreTokenization.byteToScalar[Int($0)]) }
                        }
                        next.append(mapped)
                    }
                case .metaspace(let replacement, let prepend, let split):
                    var piece = piece.map { $0 == " " ? replacement : $0 }
                    let prepends = prepend == .always || (prepend == .first && atInputStart && pieceIndex == 0)
                    if prepends, piece.first != replacement { piece.insert(replacement, at: 0) }
                    guard split else {
                        next.append(piece)
                        continue
                    }
                    // MergedWithNext: each replacement starts a new word.
                    var start = 0
                    for index in piece.indices.dropFirst() where piece[index] == replacement {
                        next.append(Array(piece[start..<index]))
                        start = index
                    }
                    if start < piece.count { next.append(Array(piece[start...])) }
                }
            }
            pieces = next
        }
        return pieces.filter { !$0.isEmpty }
    }

    static func splitPieces(_ text: [Unicode.Scalar], pattern: SplitPattern, into pieces: inout [[Unicode.Scalar]]) {
        var start = 0
        while start < text.count {
            let end: Int
            switch pattern {
            case .gpt2: end = BPEPreTokenization.gpt2MatchEnd(text, from: start)
            case .llama3: end = BPEPreTokenization.llama3MatchEnd(text, from: start)
            }
            pieces.append(Array(text[start..<end]))
            start = end
        }
    }

    /// BPE on one word: characters to ids (byte fallback, unknown token),
    /// then repeatedly the lowest-ranked adjacent merge, leftmost first.
    private func applyModel(to word: [Unicode.Scalar], into ids: inout [Int]) {
        if ignoreMerges, let id = vocabulary[Array(String(String.UnicodeScalarView(word)).utf8)] {
            ids.append(id)
            return
        }
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        var previousWasUnknown = false
        for scalar in word {
            if let id = singleScalarIDs[scalar] {
                symbols.append(Int32(id))
                previousWasUnknown = false
                continue
            }
            if let byteIDs = byteFallbackIDs {
                var fallback: [Int32] = []
                UTF8.encode(scalar) { byte in
                    if let id = byteIDs[Int(byte)] { fallback.append(Int32(id)) }
                }
                if fallback.count == UTF8.width(scalar) {
                    symbols += fallback
                    previousWasUnknown = false
                    continue
                }
            }
            if let unknownID {
                if !(fuseUnknown && previousWasUnknown) { symbols.append(Int32(unknownID)) }
                previousWasUnknown = true
            }
        }
        mergeAll(&symbols)
        for symbol in symbols { ids.append(Int(symbol)) }
    }

    /// Applies merges lowest rank first, leftmost first among equal ranks, with
    /// a heap of candidate pairs over a linked list of symbols (as `tokenizers`
    /// does), so a long word costs n log n rather than n².
    private func mergeAll(_ symbols: inout [Int32]) {
        guard symbols.count > 1 else { return }
        let count = symbols.count
        var next = Array(1...count)
        next[count - 1] = -1
        var previous = Array(-1..<(count - 1))
        var heap = Heap<MergeCandidate>()
        func candidate(_ left: Int, _ right: Int) {
            if let merge = merges[Self.pairKey(symbols[left], symbols[right])] {
                heap.insert(MergeCandidate(rank: merge.rank, position: left))
            }
        }
        for index in 0..<(count - 1) { candidate(index, index + 1) }
        while let top = heap.popMin() {
            let left = top.position
            let right = next[left]
            guard symbols[left] >= 0, right >= 0,
                  let merge = merges[Self.pairKey(symbols[left], symbols[right])], merge.rank == top.rank
            else { continue }
            symbols[left] = merge.id
            symbols[right] = -1
            let after = next[right]
            next[left] = after
            if after >= 0 { previous[after] = left }
            if previous[left] >= 0 { candidate(previous[left], left) }
            if after >= 0 { candidate(left, after) }
        }
        symbols.removeAll { $0 < 0 }
    }

    static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// A merge candidate: the merge's rank and the left symbol's position;
    /// the least (lowest rank, then leftmost) merges first.
    struct MergeCandidate: Comparable {
        var rank: Int32
        var position: Int
        static func < (a: Self, b: Self) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.position < b.position
        }
    }

    // MARK: decoding

    /// The text of `ids` through the tokenizer's decoder; ids it does not have
    /// are skipped, and special added tokens too when `skipSpecialTokens`.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var tokens: [String] = []
        for id in ids {
            if skipSpecialTokens, specialIDs.contains(id) { continue }
            if let token = token(of: id) { tokens.append(token) }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        for step in decoder {
            switch step {
            case .byteLevel:
                var bytes: [UInt8] = []
                for token in tokens {
                    var mapped: [UInt8] = []
                    var complete = true
                    for scalar in token.unicodeScalars {
                        guard let byte = BPEPreTokenization.scalarToByte[scalar] else {
                            complete = false
                            break
                        }
                        mapped.append(byte)
                    }
                    bytes += complete ? mapped : Array(token.utf8)
                }
                tokens = [String(decoding: bytes, as: UTF8.self)]
            case .replace(let pattern, let content):
                tokens = tokens.map { $0.replacingOccurrences(of: pattern, with: content) }
            case .byteFallback:
                tokens = Self.decodeByteTokens(tokens)
            case .fuse:
                tokens = [tokens.joined()]
            case .strip(let content, let start, let stop):
                tokens = tokens.map { token in
                    var characters = Array(token)
                    var removedStart = 0
                    while removedStart < start, characters.first == content {
                        characters.removeFirst()
                        removedStart += 1
                    }
                    var removedStop = 0
                    while removedStop < stop, characters.last == content {
                        characters.removeLast()
                        removedStop += 1
                    }
                    return String(characters)
                }
            case .metaspace(let replacement, let prependAlways):
                tokens = tokens.enumerated().map { index, token in
                    var text = String(token.map { $0 == replacement ? " " : $0 })
                    if index == 0, prependAlways, text.first == " " { text.removeFirst() }
                    return text
                }
            }
        }
        return tokens.joined()
    }

    /// `ByteFallback`: runs of `<0xXX>` tokens become their UTF-8 text, or one
    /// U+FFFD per byte when the run is not valid UTF-8.
    private static func decodeByteTokens(_ tokens: [String]) -> [String] {
        var result: [String] = []
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            if let text = String(validating: pending, as: UTF8.self) {
                result.append(text)
            } else {
                result += Array(repeating: "\u{FFFD}", count: pending.count)
            }
            pending = []
        }
        for token in tokens {
            if let byte = byteValue(ofFallbackToken: token) {
                pending.append(byte)
            } else {
                flush()
                result.append(token)
            }
        }
        flush()
        return result
    }

    static func byteValue(ofFallbackToken token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">") else { return nil }
        return UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
    }

    static func fallbackToken(for byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
    }

    // MARK: construction

    init(
        addedTokens: [AddedToken], normalizer: [NormalizerStep], preTokenizer: [PreTokenizerStep],
        decoder: [DecoderStep]?, prefixIDs: [Int], suffixIDs: [Int], vocabulary: [[UInt8]: Int],
        tokensByID: [String?], merges: [UInt64: Merge], byteFallback: Bool, unknownID: Int?,
        fuseUnknown: Bool, ignoreMerges: Bool
    ) {
        self.addedTokens = addedTokens
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.decoder = decoder
        self.prefixIDs = prefixIDs
        self.suffixIDs = suffixIDs
        self.vocabulary = vocabulary
        self.tokensByID = tokensByID
        self.merges = merges
        var singles: [Unicode.Scalar: Int] = [:]
        for (bytes, id) in vocabulary {
            let scalars = String(decoding: bytes, as: UTF8.self).unicodeScalars
            if scalars.count == 1, let scalar = scalars.first { singles[scalar] = id }
        }
        self.singleScalarIDs = singles
        if byteFallback {
            self.byteFallbackIDs = (0...255).map { vocabulary[Array(Self.fallbackToken(for: UInt8($0)).utf8)] }
        } else {
            self.byteFallbackIDs = nil
        }
        self.unknownID = unknownID
        self.fuseUnknown = fuseUnknown
        self.ignoreMerges = ignoreMerges
        self.specialIDs = Set(addedTokens.filter(\.special).map(\.id))
        let longestFirst = addedTokens.sorted { $0.scalars.count > $1.scalars.count }
        self.rawAddedTokens = longestFirst.filter { !$0.normalized }
        self.normalizedAddedTokens = longestFirst.filter(\.normalized)
        self.addedTokenStarts = Set(addedTokens.compactMap(\.scalars.first))
    }
}
