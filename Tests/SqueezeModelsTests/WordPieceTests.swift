import Foundation
import SqueezeModels
import Testing

@Suite struct WordPieceTests {
    static let tokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
        "hello", "world", "un", "##aff", "##able", ",", "!", "'", "s", "a", "##b",
        "一", "二", "x", "##y", "héllo",
    ]

    static func vocabulary() throws -> WordPieceVocabulary {
        try WordPieceVocabulary(tokens: tokens)
    }

    @Test func vocabularyLookups() throws {
        let vocabulary = try Self.vocabulary()
        #expect(vocabulary.count == Self.tokens.count)
        #expect(vocabulary.id(of: "[CLS]") == 2)
        #expect(vocabulary.id(of: "##aff") == 8)
        #expect(vocabulary.id(of: "nope") == nil)
        #expect(vocabulary.token(of: 5) == "hello")
        #expect(vocabulary.token(of: -1) == nil)
        #expect(vocabulary.token(of: Self.tokens.count) == nil)
        // Exact scalar match: the decomposed form is not the precomposed token.
        #expect(vocabulary.id(of: "he\u{301}llo") == nil)
        #expect(vocabulary.id(of: "h\u{E9}llo") == 20)
    }

    @Test func vocabularyDuplicatesKeepTheLastID() throws {
        let vocabulary = try WordPieceVocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "a"])
        #expect(vocabulary.id(of: "a") == 5)
        #expect(vocabulary.token(of: 4) == "a")
    }

    @Test func vocabularyRejectsEmptyAndMissingSpecialTokens() {
        #expect(throws: ModelFileError.self) { try WordPieceVocabulary(tokens: []) }
        do {
            _ = try WordPieceVocabulary(tokens: ["[PAD]", "[UNK]", "hello"])
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("[CLS] [SEP]"))
        }
    }

    @Test func vocabularyFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wordpiece-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("vocab.txt").path
        try Data("[PAD]\r\n[UNK]\n[CLS]  \n[SEP]\nhello\n".utf8).write(to: URL(fileURLWithPath: file))
        let vocabulary = try WordPieceVocabulary(contentsOfFile: file)
        #expect(vocabulary.count == 5)
        #expect(vocabulary.id(of: "[PAD]") == 0)
        #expect(vocabulary.id(of: "[CLS]") == 2)
        #expect(vocabulary.id(of: "hello") == 4)

        let bad = directory.appendingPathComponent("bad.txt").path
        try Data([0x5B, 0xFF, 0x0A]).write(to: URL(fileURLWithPath: bad))
        #expect(throws: ModelFileError(file: bad, "line 1 is not valid UTF-8")) {
            try WordPieceVocabulary(contentsOfFile: bad)
        }
        let missing = directory.appendingPathComponent("missing.txt").path
        #expect(throws: ModelFileError.self) { try WordPieceVocabulary(contentsOfFile: missing) }
    }

    @Test func basicSplitsPunctuationAndWhitespace() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("Hello, world!") == ["hello", ",", "world", "!"])
        #expect(basic.tokenize("it's  a\ttest\n") == ["it", "'", "s", "a", "test"])
        #expect(basic.tokenize("a$b~c`d") == ["a", "$", "b", "~", "c", "`", "d"])
        #expect(basic.tokenize("«quote» — dash") == ["«", "quote", "»", "—", "dash"])
        #expect(basic.tokenize("   ") == [])
    }

    @Test func basicStripsAccentsAndLowercases() {
        #expect(BasicTokenizer().tokenize("Héllo") == ["hello"])
        #expect(BasicTokenizer().tokenize("\u{130}stanbul") == ["istanbul"])
        #expect(BasicTokenizer(lowercase: false).tokenize("Héllo") == ["Héllo"])
        #expect(BasicTokenizer(lowercase: true, stripAccents: false).tokenize("Héllo") == ["héllo"])
    }

    @Test func basicSplitsChineseCharacters() {
        #expect(BasicTokenizer().tokenize("ab一二cd") == ["ab", "一", "二", "cd"])
        #expect(BasicTokenizer(tokenizeChineseCharacters: false).tokenize("ab一二cd") == ["ab一二cd"])
        // tokenizers' range starts at U+2B920, so U+2B820 is not split.
        #expect(BasicTokenizer().tokenize("a\u{2B820}b").count == 1)
    }

    @Test func basicCleansControlCharacters() {
        #expect(BasicTokenizer().tokenize("a\u{0}b\u{FFFD}c\u{200B}d") == ["abcd"])
        #expect(BasicTokenizer().tokenize("x\u{0B}x x\u{85}y x\u{A0}y") == ["xx", "xy", "x", "y"])
    }

    @Test func wordPieceContinuationAndUnknown() throws {
        let wordPiece = WordPieceTokenizer(vocabulary: try Self.vocabulary())
        #expect(wordPiece.tokenize("unaffable") == ["un", "##aff", "##able"])
        #expect(wordPiece.tokenize("xy") == ["x", "##y"])
        #expect(wordPiece.tokenize("unknown") == ["[UNK]"])
        #expect(wordPiece.tokenize("abz") == ["[UNK]"])
        #expect(wordPiece.tokenize("") == [])
        let short = WordPieceTokenizer(vocabulary: try Self.vocabulary(), maxInputCharsPerWord: 4)
        #expect(short.tokenize("xyyy") == ["x", "##y", "##y", "##y"])
        #expect(short.tokenize("xyyyy") == ["[UNK]"])
    }

    @Test func bertEncodesWithSpecialTokens() throws {
        let bert = BertTokenizer(vocabulary: try Self.vocabulary())
        #expect(bert.tokenize("Hello, unaffable World!") == ["hello", ",", "un", "##aff", "##able", "world", "!"])
        #expect(bert.encode("hello world") == [2, 5, 6, 3])
        #expect(bert.encode("hello qqq") == [2, 5, 1, 3])
        #expect(bert.tokenize("hello [MASK] world[SEP]") == ["hello", "[MASK]", "world", "[SEP]"])
    }

    @Test func truncationKeepsSeparator() throws {
        let bert = BertTokenizer(vocabulary: try Self.vocabulary())
        #expect(bert.encode("hello world hello world", maxLength: 4) == [2, 5, 6, 3])
        #expect(bert.encode("hello world", maxLength: 10) == [2, 5, 6, 3])
        #expect(bert.encode("hello world", maxLength: 2) == [2, 3])
        #expect(bert.encode("hello world", maxLength: 0) == [2, 3])
    }

    @Test func batchPadsToTheLongest() throws {
        let bert = BertTokenizer(vocabulary: try Self.vocabulary())
        let batch = bert.batch(["hello", "hello world !", "hello world hello world hello"], maxLength: 5)
        #expect(batch.ids.shape == [3, 5] && batch.ids.dtype == .i32)
        #expect(batch.ids.int32s == [2, 5, 3, 0, 0, 2, 5, 6, 11, 3, 2, 5, 6, 5, 3])
        #expect(batch.attentionMask.shape == [3, 5] && batch.attentionMask.dtype == .i32)
        #expect(batch.attentionMask.int32s == [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
        #expect(batch.indices == [0, 1, 2])
        let short = bert.batch(["hello", "world"], maxLength: 8)
        #expect(short.ids.shape == [2, 3])
        #expect(short.ids.int32s == [2, 5, 3, 2, 6, 3])
        #expect(short.attentionMask.int32s == [1, 1, 1, 1, 1, 1])
        let empty = bert.batch([], maxLength: 8)
        #expect(empty.ids.shape == [0, 0] && empty.size == 0)
    }

    /// A vocabulary with overlapping prefixes, to see the greedy longest match.
    static func overlapping() throws -> WordPieceVocabulary {
        try WordPieceVocabulary(tokens: [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "una", "unaff", "##a", "##ff", "##able", "##affable", "##b", "##le", "a",
        ])
    }

    @Test func wordPieceTakesTheLongestMatchFirst() throws {
        let wordPiece = WordPieceTokenizer(vocabulary: try Self.overlapping())
        // "unaff" beats "una" and "un"; then "##able" beats "##a".
        #expect(wordPiece.tokenize("unaffable") == ["unaff", "##able"])
        // "una" then the longest continuation "##ff"; nothing matches "##x", so the whole word is unknown.
        #expect(wordPiece.tokenize("unaffx") == ["[UNK]"])
        // Greedy, not optimal: "una" + "##b" + "##le" although "un" + "##able" exists.
        #expect(wordPiece.tokenize("unable") == ["una", "##b", "##le"])
        // A continuation piece is never matched at the start of a word.
        #expect(wordPiece.tokenize("able") == ["a", "##b", "##le"])
    }

    @Test func overlongWordsAreUnknown() throws {
        let bert = BertTokenizer(vocabulary: try WordPieceVocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##a"]))
        let hundred = String(repeating: "a", count: 100)
        #expect(bert.tokenize(hundred) == ["a"] + Array(repeating: "##a", count: 99))
        #expect(bert.tokenize(hundred + "a") == ["[UNK]"])
        #expect(bert.encode("a " + hundred + "a a") == [2, 4, 1, 4, 3])
        // Counted in Unicode scalars after normalization: 101 accented letters strip to 101 "a"s.
        #expect(bert.tokenize(String(repeating: "á", count: 101)) == ["[UNK]"])
        #expect(bert.tokenize(String(repeating: "á", count: 100)).count == 100)
    }

    @Test func basicLowercasesBeyondASCII() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("ÀÉÎÕÜ Ça") == ["aeiou", "ca"])
        #expect(basic.tokenize("ΣΑΣ Straße ǅ") == ["σασ", "straße", "ǆ"])
        #expect(basic.tokenize("ДОБРО") == ["добро"])
        #expect(BasicTokenizer(lowercase: false).tokenize("ΣΑΣ Straße") == ["ΣΑΣ", "Straße"])
    }

    @Test func basicStripsDecomposedAndPrecomposedAccents() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("e\u{301}te\u{301}") == ["ete"])
        #expect(basic.tokenize("naïve façade ñ") == ["naive", "facade", "n"])
        // Spacing marks and letters without decomposition are kept.
        #expect(basic.tokenize("ø æ ł") == ["ø", "æ", "ł"])
        #expect(BasicTokenizer(lowercase: false, stripAccents: true).tokenize("Ñandú") == ["Nandu"])
    }

    @Test func basicIsolatesPunctuationOnly() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("¿Qué?") == ["¿", "que", "?"])
        #expect(basic.tokenize("a+b=c") == ["a", "+", "b", "=", "c"])
        #expect(basic.tokenize("don't...") == ["don", "'", "t", ".", ".", "."])
        // Symbols outside ASCII (Sc, Sm, So) are not punctuation.
        #expect(basic.tokenize("5€ ±1 ©x") == ["5€", "±1", "©x"])
        #expect(basic.tokenize("「引用」") == ["「", "引", "用", "」"])
    }

    @Test func basicSplitsCJKButNotKanaOrHangul() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("日本語テキスト") == ["日", "本", "語", "テキスト"])
        #expect(basic.tokenize("한국어abc") == ["한국어abc"])
        #expect(basic.tokenize("x\u{20000}y\u{F900}z") == ["x", "\u{20000}", "y", "\u{F900}", "z"])
    }

    @Test func basicDropsControlAndFormatCharacters() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("a\u{7F}b\u{1}c\u{200D}d\u{E000}e\u{FEFF}f") == ["abcdef"])
        #expect(basic.tokenize("\u{0}\u{FFFD}") == [])
    }

    @Test func basicSplitsOnEveryKindOfWhitespace() {
        let basic = BasicTokenizer()
        #expect(basic.tokenize("a\r\nb\tc\u{3000}d\u{2003}e\u{A0}f\u{2028}g") == ["a", "b", "c", "d", "e", "f", "g"])
        #expect(basic.tokenize("  lead trail  ") == ["lead", "trail"])
        #expect(basic.tokenize("") == [])
    }
}
