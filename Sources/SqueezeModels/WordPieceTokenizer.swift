/// WordPiece sub-word splitting of one basic token: greedy longest-match-first,
/// continuation pieces prefixed with `##`. A word with a scalar that cannot be
/// matched, or longer than `maxInputCharsPerWord` scalars, becomes the unknown token.
public struct WordPieceTokenizer: Sendable {
    public let vocabulary: WordPieceVocabulary
    public let unknownToken: String
    public let maxInputCharsPerWord: Int
    public static let continuationPrefix = "##"

    public init(vocabulary: WordPieceVocabulary, unknownToken: String = "[UNK]", maxInputCharsPerWord: Int = 100) {
        self.vocabulary = vocabulary
        self.unknownToken = unknownToken
        self.maxInputCharsPerWord = maxInputCharsPerWord
    }

    public func tokenize(_ word: String) -> [String] {
        let scalars = Array(word.unicodeScalars)
        if scalars.count > maxInputCharsPerWord { return [unknownToken] }
        var pieces: [String] = []
        var start = 0
        while start < scalars.count {
            var end = scalars.count
            var match: String?
            while start < end {
                var candidate = String(String.UnicodeScalarView(scalars[start..<end]))
                if start > 0 { candidate = Self.continuationPrefix + candidate }
                if vocabulary.id(of: candidate) != nil {
                    match = candidate
                    break
                }
                end -= 1
            }
            guard let match else { return [unknownToken] }
            pieces.append(match)
            start = end
        }
        return pieces
    }
}
