import Foundation
import SqueezeYAML
import Testing

@Suite struct YAMLErrorTests {
    @Test func libyamlProblemsAreTranslated() {
        expectError("a: b: c\n", at: 1, 5, "mapping values are not allowed here", hint: "quote the value")
        expectError("a: 1\n  b: 2\n", at: 2, 4, "mapping values are not allowed here", hint: "indentation")
        expectError("a: @x\n", at: 1, 4, "found character that cannot start any token", hint: "quote the value")
        expectError("a: [1, 2\n", at: 2, 1, "did not find expected ',' or ']' (while parsing a flow sequence that starts at line 1, column 4)")
        expectError("a: \"\\q\"\n", at: 1, 5, "found unknown escape character")
        expectError("a: !x!y 1\n", at: 1, 4, "found undefined tag handle")
        expectError("a:\n- x\n  - y: 1\n", at: 3, 6, "mapping values are not allowed here")
    }

    @Test func tabIndentationIsExplained() {
        expectError("a:\n\tb: 1\n", at: 2, 1, "tabs are not allowed for indentation in YAML", hint: "indent with spaces")
        expectError("a:\n  b: 1\n\tc: 2\n", at: 3, 1, "tabs are not allowed for indentation in YAML", hint: "indent with spaces")
        expectError("a:\n  - x\n  \t- y\n", at: 3, 3, "tabs are not allowed for indentation in YAML")
        expectError("x: |\n  a\n\tb\n", at: 3, 1, "tabs are not allowed for indentation in YAML")
        // A tab after a value indicator is separation, which YAML allows.
        #expect(parseError("a:\tb\n") == nil)
    }

    @Test func unclosedQuotesPointAtTheOpeningQuote() {
        expectError("a: 1\nb: \"abc\nc: 2\n", at: 2, 4, "unclosed quote", hint: "\"")
        expectError("a: 'abc\n", at: 1, 4, "unclosed quote", hint: "'")
    }

    @Test func badIndentation() {
        expectError("a:\n  b: 1\n c: 2\n", at: 3, 2, "bad indentation: expected a key of the mapping that starts at line 1, column 1")
        expectError("a:\n  - b\n  c: 1\n", at: 3, 3, "bad indentation: expected a `- ` item of the list that starts at line 2, column 3")
        expectError("a: 1\n- b\n", at: 2, 1, "expected a `key: value` entry of the mapping that starts at line 1, column 1")
        expectError("a: 1\n: b\n", at: 2, 1, "expected a `key: value` entry")
    }

    @Test func duplicateKeysNameTheFirstDefinition() {
        expectError(
            """
            name: x
            stages:
              train:
                lr: 0.1
                epochs: 3
                lr: 0.2
            """,
            at: 6, 5, "duplicate key `lr` (first defined at line 4)")
        expectError("{a: 1, b: 2, a: 3}\n", at: 1, 14, "duplicate key `a` (first defined at line 1)")
    }

    @Test func duplicateKeysCompareResolvedValues() throws {
        expectError("1: a\n0x1: b\n", at: 2, 1, "duplicate key `0x1` (first defined at line 1)")
        expectError("true: a\nTrue: b\n", at: 2, 1, "duplicate key `True`")
        expectError("~: a\nnull: b\n", at: 2, 1, "duplicate key `null`")
        expectError("a: 1\n'a': 2\n", at: 2, 1, "duplicate key `a`")
        let root = try parse("1: int\n\"1\": string\n")
        #expect(root.entries?.count == 2)
        // Equal keys in different mappings are fine.
        _ = try parse("a: {x: 1}\nb: {x: 2}\n")
    }

    @Test func mappingKeysMustBeScalars() {
        expectError("? [a, b]\n: 1\n", at: 1, 3, "mapping keys must be scalars")
        expectError("{[a]: 1}\n", at: 1, 2, "mapping keys must be scalars")
        expectError("? {a: 1}\n: 2\n", at: 1, 3, "mapping keys must be scalars")
        expectError("base: &m {a: 1}\n*m : 2\n", at: 2, 1, "mapping keys must be scalars")
    }

    @Test func aScalarAliasCanBeAKey() throws {
        let root = try parse("k: &name lr\n*name : 0.1\n")
        #expect(root["lr"]?.scalar == "0.1")
    }

    @Test func onlyOneDocument() {
        expectError("a: 1\n---\nb: 2\n", at: 2, 1, "a recipe must be a single YAML document")
        expectError("a: 1\n...\nb: 2\n", at: 3, 1, "unexpected content after the end of the document")
        expectError("[1]\nb: 2\n", at: 2, 1, "unexpected content after the end of the document")
    }

    @Test func undefinedAndRecursiveAliases() {
        expectError("a: 1\nb: *nope\n", at: 2, 4, "undefined alias `*nope`")
        expectError("a: &model [x]\nb: *mdel\n", at: 2, 4, "undefined alias `*mdel`", hint: "did you mean `model`?")
        expectError("a: *later\nb: &later 1\n", at: 1, 4, "undefined alias `*later`")
        expectError("a: &loop [1, *loop]\n", at: 1, 14, "recursive aliases are not supported")
    }

    @Test func nestingDeeperThanTheLimit() throws {
        let limit = YAMLLimits.default.maxDepth
        expectError(String(repeating: "[", count: 10_000), at: 1, limit + 1, "nesting is too deep (more than 256 levels)")
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        #expect(parseError(deepest) == nil)
        let block = (0...limit).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n")
        expectError(block, at: limit + 1, limit + 1, "nesting is too deep")

        let limits = YAMLLimits(maxDepth: 4)
        expectError("a: &deep [[[1]]]\nb: [*deep]\n", at: 2, 5, "once `*deep` is expanded", limits: limits)
        #expect(parseError("a: &deep [[[1]]]\n", limits: limits) == nil)
    }

    @Test func aliasExpansionIsBudgeted() {
        // Each `*x` costs the 3 nodes of `[1, 2]`.
        let limits = YAMLLimits(maxAliasExpansion: 6)
        #expect(parseError("a: &x [1, 2]\nb: *x\nc: *x\n", limits: limits) == nil)
        expectError("a: &x [1, 2]\nb: *x\nc: *x\nd: [*x]\n", at: 4, 5, "alias expansion", limits: limits)
        // Nested aliases count what they expand to.
        expectError("a: &x [1, 2]\nb: &y [*x, *x]\nc: *y\n", at: 3, 4, "alias expansion", limits: limits)
    }

    @Test(.timeLimit(.minutes(1)))
    func billionLaughsIsRejectedFast() {
        var lines = ["a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]"]
        let names = Array("abcdefghi").map(String.init)
        for (previous, name) in zip(names, names.dropFirst()) {
            lines.append("\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ", ") + "]")
        }
        let clock = ContinuousClock()
        var error: Diagnostic?
        let elapsed = clock.measure { error = parseError(lines.joined(separator: "\n")) }
        #expect(elapsed < .seconds(1))
        #expect(error?.message.contains("alias expansion") == true)
        // `b`...`d` expand 90 + 819 + 7380 nodes; the first `*d` in `e` adds 7381 more.
        #expect(error?.location?.line == 5)
        #expect(error?.location?.column == 8)
    }

    @Test func oversizedInputIsRejectedBeforeParsing() throws {
        let big = [UInt8](repeating: UInt8(ascii: "#"), count: 2 << 20)
        let error = try #require(parseError(big))
        #expect(error.message == "file is 2097152 bytes; recipes are limited to 1 MiB")
        #expect(error.location?.file == "r.yaml")

        let path = try TemporaryFile.write(Data(big))
        defer { TemporaryFile.remove(path) }
        do {
            _ = try YAMLParser.parseFile(atPath: path, displayName: "big.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.hasPrefix("big.yaml:1:1: error: file is 2097152 bytes; recipes are limited to 1 MiB"))
        }
        let small = YAMLLimits(maxBytes: 64 << 10)
        #expect(parseError([UInt8](repeating: 0x20, count: (64 << 10) + 1), limits: small)?.message
            == "file is 65537 bytes; recipes are limited to 64 KiB")
        #expect(parseError([UInt8](repeating: 0x20, count: 64 << 10), limits: small) == nil)
    }

    @Test func invalidUTF8IsReportedAtTheFirstBadByte() {
        expectError(Array("a: b\nc: ".utf8) + [0xFF], at: 2, 4, "invalid UTF-8 (byte 0xFF)")
        expectError(Array("é: ".utf8) + [0xC3], at: 1, 4, "invalid UTF-8 (byte 0xC3)")
        expectError(Array("a: x".utf8) + [0xC0, 0xAF], at: 1, 5, "invalid UTF-8", hint: "Latin-1")
        expectError(Array("a: ".utf8) + [0xED, 0xA0, 0x80], at: 1, 4, "invalid UTF-8")
        expectError(Array("a: ".utf8) + [0xF4, 0x90, 0x80, 0x80], at: 1, 4, "invalid UTF-8")
        expectError(Array("a: ".utf8) + [0xE2, 0x82], at: 1, 4, "invalid UTF-8")
        expectError([0xFF, 0xFE, 0x61, 0x00], at: 1, 1, "UTF-16")
    }

    @Test func nulBytesMeanABinaryFile() {
        expectError(Array("a: 1\nb: ".utf8) + [0x00, 0x01], at: 2, 4, "file contains a NUL byte; is this a binary file?")
        // Binary junk reports the NUL even when malformed UTF-8 comes first.
        expectError([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00], at: 3, 1, "NUL byte")
    }

    @Test func controlCharactersAreRejected() {
        expectError("a: 1\nb: x\u{07}\n", at: 2, 5, "control character U+0007", hint: "\"\\x07\"")
        expectError("a: \u{FFFE}\n", at: 1, 4, "control character U+FFFE", hint: "\"\\uFFFE\"")
    }
}
