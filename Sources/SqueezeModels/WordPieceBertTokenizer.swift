/// The full BERT tokenizer of uncased HuggingFace models: special tokens matched
/// verbatim in the raw text, `BasicTokenizer`, then `WordPieceTokenizer`; ids are
/// framed as `[CLS] … [SEP]`. Matches `tokenizers` run over the model's
/// `tokenizer.json` (with truncation and padding disabled there).
public struct BertTokenizer: Sendable {
    public let vocabulary: WordPieceVocabulary
    public let basic: BasicTokenizer
    public let wordPiece: WordPieceTokenizer
    public let padID: Int
    public let unknownID: Int
    public let classID: Int
    public let separatorID: Int
    /// Special tokens in the vocabulary, matched verbatim (before normalization)
    /// as HuggingFace's added tokens are, longest first.
    private let specialTokens: [(scalars: [Unicode.Scalar], token: String)]

    public init(vocabulary: WordPieceVocabulary, lowercase: Bool = true) {
        self.vocabulary = vocabulary
        self.basic = BasicTokenizer(lowercase: lowercase)
        self.wordPiece = WordPieceTokenizer(vocabulary: vocabulary)
        // WordPieceVocabulary guarantees the required special tokens; -1 is unreachable.
        self.padID = vocabulary.id(of: "[PAD]") ?? -1
        self.unknownID = vocabulary.id(of: "[UNK]") ?? -1
        self.classID = vocabulary.id(of: "[CLS]") ?? -1
        self.separatorID = vocabulary.id(of: "[SEP]") ?? -1
        self.specialTokens = (WordPieceVocabulary.requiredSpecialTokens + ["[MASK]"])
            .filter { vocabulary.id(of: $0) != nil }
            .map { (Array($0.unicodeScalars), $0) }
            .sorted { $0.scalars.count > $1.scalars.count }
    }

    /// Word pieces of `text`, without `[CLS]`/`[SEP]`.
    public func tokenize(_ text: String) -> [String] {
        var pieces: [String] = []
        for segment in splitOnSpecialTokens(text) {
            switch segment {
            case .special(let token):
                pieces.append(token)
            case .text(let text):
                for word in basic.tokenize(text) {
                    pieces.append(contentsOf: wordPiece.tokenize(word))
                }
            }
        }
        return pieces
    }

    /// `[CLS] pieces [SEP]` as ids. With `maxLength`, pieces are cut so the result
    /// has at most `max(maxLength, 2)` ids and always ends with `[SEP]`.
    public func encode(_ text: String, maxLength: Int? = nil) -> [Int] {
        var ids = tokenize(text).map { vocabulary.id(of: $0) ?? unknownID }
        if let maxLength {
            let room = max(maxLength - 2, 0)
            if ids.count > room { ids.removeLast(ids.count - room) }
        }
        return [classID] + ids + [separatorID]
    }

    /// Every text encoded (see `encode`), stored back to back.
    public func encodeAll(_ texts: [String], maxLength: Int? = nil) -> TokenSequences {
        var sequences = TokenSequences()
        for text in texts {
            sequences.append(encode(text, maxLength: maxLength).map { Int32(truncatingIfNeeded: $0) })
        }
        return sequences
    }

    /// The texts encoded (truncated to `maxLength`) in order, right-padded
    /// with `[PAD]` to the longest; the mask is 1 for real ids, 0 for padding.
    public func batch(_ texts: [String], maxLength: Int) -> TokenBatch {
        LengthBucketing.batch(encodeAll(texts, maxLength: maxLength), indices: Array(texts.indices), padID: Int32(truncatingIfNeeded: padID))
    }

    /// The texts encoded and grouped into length-bucketed padded batches (see
    /// `LengthBucketing.batches`); `indices` map rows back to `texts`.
    /// To batch the same texts again (a new epoch), encode once with
    /// `encodeAll` and call `LengthBucketing.batches` with a new seed.
    public func batches(
        _ texts: [String], maxLength: Int, batchSize: Int, shuffle: Bool, seed: UInt64
    ) -> [TokenBatch] {
        LengthBucketing.batches(
            encodeAll(texts, maxLength: maxLength), batchSize: batchSize, padID: Int32(truncatingIfNeeded: padID),
            shuffle: shuffle, seed: seed)
    }

    private enum Segment {
        case text(String)
        case special(String)
    }

    private func splitOnSpecialTokens(_ text: String) -> [Segment] {
        let scalars = Array(text.unicodeScalars)
        var segments: [Segment] = []
        var plain = String.UnicodeScalarView()
        var index = 0
        scan: while index < scalars.count {
            if scalars[index] == "[" {
                for special in specialTokens where scalars[index...].starts(with: special.scalars) {
                    if !plain.isEmpty {
                        segments.append(.text(String(plain)))
                        plain = String.UnicodeScalarView()
                    }
                    segments.append(.special(special.token))
                    index += special.scalars.count
                    continue scan
                }
            }
            plain.append(scalars[index])
            index += 1
        }
        if !plain.isEmpty { segments.append(.text(String(plain))) }
        return segments
    }
}
