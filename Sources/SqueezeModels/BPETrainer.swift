import Foundation
import Collections
import SqueezeSupport

/// Trains a byte-level BPE tokenizer (GPT-2 style) and writes it as a Hugging
/// Face `tokenizer.json` that `BPETokenizer` and `tokenizers` both load.
///
/// - Pre-tokenization is GPT-2's regex followed by the byte-to-scalar map,
///   the same code `BPETokenizer` encodes with (`ByteLevel`,
///   `add_prefix_space: false`, `use_regex: true`).
/// - Ids: the special tokens first (in the order given), then the 256 byte
///   tokens in the order of their byte-level scalars, then one token per
///   merge: the layout `tokenizers`' `BpeTrainer` gives.
/// - Each step merges the adjacent pair with the highest count over all
///   words (weighted by word frequency). Ties go to the pair with the smaller
///   (left id, right id), as `tokenizers`' `BpeTrainer` breaks them, so the
///   result depends only on the inputs (and on wikitext-2 `valid.txt` the
///   merges equal `BpeTrainer`'s on the whole file as one text). Training stops when the vocabulary
///   reaches `vocabularySize` or no pair occurs `minimumFrequency` times.
/// - Pair counts are kept incrementally with an index from each pair to the
///   words that contain it; a merge only revisits those words.
public struct BPETrainer: Sendable {
    public var vocabularySize: Int
    public var minimumFrequency: Int
    public var specialTokens: [String]

    /// What training produced.
    public struct Result: Sendable {
        /// Token strings by id (byte-level scalars; special tokens verbatim).
        public var tokens: [String]
        /// The merges in rank order, as pairs of token ids.
        public var merges: [(left: Int, right: Int)]
        /// Distinct pre-tokenized words seen.
        public var distinctWords: Int
        public var specialTokens: [String]
    }

    public enum TrainingError: Error, Sendable, Equatable, CustomStringConvertible {
        case vocabularyTooSmall(requested: Int, minimum: Int)
        case duplicateSpecialToken(String)
        case emptySpecialToken

        public var description: String {
            switch self {
            case .vocabularyTooSmall(let requested, let minimum):
                "vocabulary size \(requested) is below \(minimum) (256 byte tokens plus the special tokens)"
            case .duplicateSpecialToken(let token): "special token `\(token)` is listed twice"
            case .emptySpecialToken: "a special token is empty"
            }
        }
    }

    public init(vocabularySize: Int, minimumFrequency: Int = 2, specialTokens: [String] = []) {
        self.vocabularySize = vocabularySize
        self.minimumFrequency = minimumFrequency
        self.specialTokens = specialTokens
    }

    /// The bytes in the order of their byte-level scalars (`!`…`~`, `¡`…, then
    /// U+0100 onwards), which is how `tokenizers` numbers its alphabet; ties
    /// between pairs then break as they do there.
    static let byteTokenOrder: [Int] = (0..<256).sorted {
        BPEPreTokenization.byteToScalar[$0].value < BPEPreTokenization.byteToScalar[$1].value
    }

    /// The smallest vocabulary size for `specialTokens`.
    public static func minimumVocabularySize(specialTokens: Int) -> Int { 256 + specialTokens }

    /// Trains on `texts` (each pre-tokenized on its own).
    public func train(_ texts: [String]) throws(TrainingError) -> Result {
        let minimum = Self.minimumVocabularySize(specialTokens: specialTokens.count)
        guard vocabularySize >= minimum else { throw .vocabularyTooSmall(requested: vocabularySize, minimum: minimum) }
        if specialTokens.contains(where: \.isEmpty) { throw .emptySpecialToken }
        var seenSpecial = Set<String>()
        for token in specialTokens where !seenSpecial.insert(token).inserted { throw .duplicateSpecialToken(token) }

        var tokens = specialTokens
        var tokenBytes: [[UInt8]] = specialTokens.map { Array($0.utf8) }
        var idOfBytes: [[UInt8]: Int] = [:]
        var idOfByte = [Int32](repeating: 0, count: 256)
        for byte in Self.byteTokenOrder {
            idOfByte[byte] = Int32(tokens.count)
            idOfBytes[[UInt8(byte)]] = tokens.count
            tokens.append(String(Character(BPEPreTokenization.byteToScalar[byte])))
            tokenBytes.append([UInt8(byte)])
        }

        var words = WordCounts(specialTokens: specialTokens.map { Array($0.unicodeScalars) })
        for text in texts { words.add(text, idOfByte: idOfByte) }
        var state = PairState(words: words.symbols, counts: words.counts)

        var merges: [(left: Int, right: Int)] = []
        while tokens.count < vocabularySize, let (pair, count) = state.popBest(), count >= max(minimumFrequency, 1) {
            let left = Int(pair >> 32), right = Int(pair & 0xFFFF_FFFF)
            let bytes = tokenBytes[left] + tokenBytes[right]
            let merged: Int
            if let existing = idOfBytes[bytes] {
                merged = existing
            } else {
                merged = tokens.count
                tokens.append(tokens[left] + tokens[right])
                tokenBytes.append(bytes)
                idOfBytes[bytes] = merged
            }
            merges.append((left, right))
            state.merge(pair, into: Int32(merged))
        }
        return Result(tokens: tokens, merges: merges, distinctWords: words.counts.count, specialTokens: specialTokens)
    }
}

/// Distinct pre-tokenized words (as byte-token ids) with their counts, in
/// order of first appearance. Special tokens in the text are cut out first
/// (leftmost, longest), as encoding splits them off before pre-tokenization,
/// so their pieces never become merges.
private struct WordCounts {
    let specialTokens: [[Unicode.Scalar]]
    /// The first scalar of every special token, to skip most positions at once.
    let specialStarts: Set<Unicode.Scalar>
    var symbols: [[Int32]] = []
    var counts: [Int] = []
    var index: [[UInt8]: Int] = [:]

    init(specialTokens: [[Unicode.Scalar]]) {
        self.specialTokens = specialTokens.sorted { $0.count > $1.count }
        specialStarts = Set(specialTokens.compactMap(\.first))
    }

    mutating func add(_ text: String, idOfByte: [Int32]) {
        let scalars = Array(text.unicodeScalars)
        var pieces: [[Unicode.Scalar]] = []
        var segmentStart = 0, position = 0
        while position < scalars.count {
            if specialStarts.contains(scalars[position]), let special = specialTokens.first(where: { scalars[position...].starts(with: $0) }) {
                BPETokenizer.splitPieces(Array(scalars[segmentStart..<position]), pattern: .gpt2, into: &pieces)
                position += special.count
                segmentStart = position
            } else {
                position += 1
            }
        }
        BPETokenizer.splitPieces(Array(scalars[segmentStart...]), pattern: .gpt2, into: &pieces)
        for piece in pieces {
            var bytes: [UInt8] = []
            for scalar in piece { UTF8.encode(scalar) { bytes.append($0) } }
            if let existing = index[bytes] {
                counts[existing] += 1
            } else {
                index[bytes] = counts.count
                symbols.append(bytes.map { idOfByte[Int($0)] })
                counts.append(1)
            }
        }
    }
}

/// Pair counts over all words, the words each pair occurs in, and a max-heap
/// of (count, pair) entries checked lazily against the current counts.
private struct PairState {
    var words: [[Int32]]
    let counts: [Int]
    var pairCounts: [UInt64: Int] = [:]
    var pairWords: [UInt64: Set<Int>] = [:]
    var heap = Heap<PairCount>()

    init(words: [[Int32]], counts: [Int]) {
        self.words = words
        self.counts = counts
        for (wordIndex, word) in words.enumerated() where word.count > 1 {
            for position in 0..<(word.count - 1) {
                let pair = BPETokenizer.pairKey(word[position], word[position + 1])
                pairCounts[pair, default: 0] += counts[wordIndex]
                pairWords[pair, default: []].insert(wordIndex)
            }
        }
        for (pair, count) in pairCounts { heap.insert(PairCount(count: count, pair: pair)) }
    }


    /// The pair with the highest current count (ties: smaller pair), removed from the heap.
    mutating func popBest() -> (UInt64, Int)? {
        while let entry = heap.popMax() {
            let current = pairCounts[entry.pair] ?? 0
            if current == entry.count, current > 0 { return (entry.pair, current) }
            if current > 0, current != entry.count { heap.insert(PairCount(count: current, pair: entry.pair)) }
        }
        return nil
    }

    /// Replaces every occurrence of `pair` (left to right, not overlapping) by `merged`.
    mutating func merge(_ pair: UInt64, into merged: Int32) {
        let left = Int32(bitPattern: UInt32(pair >> 32)), right = Int32(bitPattern: UInt32(pair & 0xFFFF_FFFF))
        var grown = Set<UInt64>()
        for wordIndex in (pairWords[pair] ?? []).sorted() {
            let word = words[wordIndex]
            let weight = counts[wordIndex]
            var rewritten: [Int32] = []
            rewritten.reserveCapacity(word.count)
            var position = 0
            var changed = false
            while position < word.count {
                if position + 1 < word.count, word[position] == left, word[position + 1] == right {
                    rewritten.append(merged)
                    position += 2
                    changed = true
                } else {
                    rewritten.append(word[position])
                    position += 1
                }
            }
            guard changed else { continue }
            for position in 0..<(word.count - 1) {
                let old = BPETokenizer.pairKey(word[position], word[position + 1])
                pairCounts[old, default: 0] -= weight
            }
            for position in 0..<(rewritten.count - 1) {
                let new = BPETokenizer.pairKey(rewritten[position], rewritten[position + 1])
                pairCounts[new, default: 0] += weight
                pairWords[new, default: []].insert(wordIndex)
                if rewritten[position] == merged || rewritten[position + 1] == merged { grown.insert(new) }
            }
            words[wordIndex] = rewritten
        }
        pairCounts[pair] = nil
        pairWords[pair] = nil
        for new in grown.sorted() {
            if let count = pairCounts[new], count > 0 { heap.insert(PairCount(count: count, pair: new)) }
        }
    }
}

/// A pair's count when it was pushed; the greatest (highest count, then the
/// smaller pair) merges first.
private struct PairCount: Comparable {
    var count: Int
    var pair: UInt64
    static func < (a: Self, b: Self) -> Bool {
        a.count != b.count ? a.count < b.count : a.pair > b.pair
    }
}

extension BPETrainer.Result {
    /// The `tokenizer.json` text: model `BPE` (vocab, merges as pairs of token
    /// strings), `ByteLevel` pre-tokenizer, decoder and post-processor, the
    /// special tokens as added tokens. Same result → same bytes.
    public var tokenizerJSON: String {
        let byteLevel: Value = .object([
            "type": .string("ByteLevel"), "add_prefix_space": .bool(false),
            "trim_offsets": .bool(true), "use_regex": .bool(true),
        ])
        var vocab: [String: Value] = [:]
        for (id, token) in tokens.enumerated() where vocab[token] == nil { vocab[token] = .int(id) }
        let added: [Value] = specialTokens.enumerated().map { id, content in
            .object([
                "id": .int(id), "content": .string(content), "single_word": .bool(false),
                "lstrip": .bool(false), "rstrip": .bool(false), "normalized": .bool(false), "special": .bool(true),
            ])
        }
        let model: Value = .object([
            "type": .string("BPE"), "dropout": .null, "unk_token": .null,
            "continuing_subword_prefix": .null, "end_of_word_suffix": .null,
            "fuse_unk": .bool(false), "byte_fallback": .bool(false), "ignore_merges": .bool(false),
            "vocab": .object(vocab),
            "merges": .array(merges.map { .array([.string(tokens[$0.left]), .string(tokens[$0.right])]) }),
        ])
        let document: Value = .object([
            "version": .string("1.0"), "truncation": .null, "padding": .null,
            "added_tokens": .array(added), "normalizer": .null,
            "pre_tokenizer": byteLevel, "post_processor": byteLevel, "decoder": byteLevel,
            "model": model,
        ])
        return document.canonicalJSON + "\n"
    }

    /// Writes `tokenizer.json` into `directory` (atomically).
    public func write(toDirectory directory: String) throws {
        let path = (directory as NSString).appendingPathComponent("tokenizer.json")
        try AtomicFile.write(Data(tokenizerJSON.utf8), to: path)
    }
}
