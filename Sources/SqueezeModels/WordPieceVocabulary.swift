import Foundation

/// A WordPiece vocabulary (`vocab.txt`): one token per line, id = line index.
///
/// Lookups compare tokens scalar by scalar (UTF-8 bytes), as HuggingFace does,
/// not by Swift's canonical-equivalence `String` equality. As in HuggingFace, a
/// token listed twice maps to its last line.
public struct WordPieceVocabulary: Sendable {
    /// Tokens a BERT vocabulary must contain.
    public static let requiredSpecialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

    private let tokens: [String]
    private let ids: [[UInt8]: Int]

    /// Reads `vocab.txt`. Lines are split on `\n`; trailing whitespace (including
    /// `\r`) is trimmed, matching `tokenizers`' `WordPiece::read_file`.
    public init(contentsOfFile path: String) throws(ModelFileError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, "cannot read the vocabulary file")
        }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        var tokens: [String] = []
        tokens.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            guard let text = String(validating: line, as: UTF8.self) else {
                throw ModelFileError(file: path, "line \(index + 1) is not valid UTF-8")
            }
            tokens.append(Self.trimmingTrailingWhitespace(text))
        }
        try self.init(validating: tokens, file: path)
    }

    /// A vocabulary from in-memory tokens (id = index). Throws when it is empty
    /// or lacks one of `requiredSpecialTokens`.
    public init(tokens: [String]) throws(ModelFileError) {
        try self.init(validating: tokens, file: "(in-memory vocabulary)")
    }

    private init(validating tokens: [String], file: String) throws(ModelFileError) {
        guard !tokens.isEmpty else {
            throw ModelFileError(file: file, "the vocabulary is empty")
        }
        var ids: [[UInt8]: Int] = [:]
        ids.reserveCapacity(tokens.count)
        for (id, token) in tokens.enumerated() {
            ids[Array(token.utf8)] = id
        }
        let missing = Self.requiredSpecialTokens.filter { ids[Array($0.utf8)] == nil }
        guard missing.isEmpty else {
            throw ModelFileError(file: file, "the vocabulary lacks the special token(s) \(missing.joined(separator: " "))")
        }
        self.tokens = tokens
        self.ids = ids
    }

    /// The id of `token` (exact scalar match), or nil.
    public func id(of token: String) -> Int? {
        ids[Array(token.utf8)]
    }

    /// The token on line `id`, or nil when out of range.
    public func token(of id: Int) -> String? {
        tokens.indices.contains(id) ? tokens[id] : nil
    }

    /// The number of lines (ids), duplicates included.
    public var count: Int { tokens.count }

    private static func trimmingTrailingWhitespace(_ text: String) -> String {
        var scalars = text.unicodeScalars[...]
        while let last = scalars.last, last.properties.isWhitespace {
            scalars.removeLast()
        }
        return String(String.UnicodeScalarView(scalars))
    }
}
