import Foundation
import SqueezeModels
import Testing

/// Hand-written `tokenizer.json` files: the BPE rules on tiny vocabularies
/// (no python needed) and malformed files that must be errors naming the file
/// and the JSON path, never a crash.
@Suite struct BPETokenizerTests {
    static func json(_ object: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: object)
    }

    /// Byte-level: `a`, `b`, `Ġ` (space) and their merges.
    static func byteLevel(merges: [Any], extra: [String: Any] = [:]) -> [String: Any] {
        var root: [String: Any] = [
            "model": [
                "type": "BPE", "vocab": ["a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4, "<s>": 5], "merges": merges,
            ] as [String: Any],
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            "decoder": ["type": "ByteLevel"],
            "added_tokens": [["id": 5, "content": "<s>", "special": true, "normalized": false]],
            "post_processor": [
                "type": "TemplateProcessing",
                "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "special_tokens": ["<s>": ["id": "<s>", "ids": [5], "tokens": ["<s>"]]],
            ] as [String: Any],
        ]
        root.merge(extra) { $1 }
        return root
    }

    @Test func mergesAsStringsAndAsPairsEncodeAlike() throws {
        let strings = try BPETokenizer(json: Self.json(Self.byteLevel(merges: ["a b", "Ġ ab"])), file: "strings.json")
        let pairs = try BPETokenizer(json: Self.json(Self.byteLevel(merges: [["a", "b"], ["Ġ", "ab"]])), file: "pairs.json")
        for tokenizer in [strings, pairs] {
            #expect(tokenizer.encode("ab ab<s>a") == [3, 4, 5, 0])
            #expect(tokenizer.encode("ab", addSpecialTokens: true) == [5, 3])
            #expect(tokenizer.decode([3, 4, 5, 0]) == "ab aba")
            #expect(tokenizer.decode([3, 4, 5, 0], skipSpecialTokens: false) == "ab ab<s>a")
            #expect(tokenizer.encode("") == [])
        }
    }

    /// tokenizers keeps the last rank of a pair listed twice ("abc" → ab c there, checked with 0.23.3).
    @Test func aRepeatedMergeKeepsItsLastRank() throws {
        let root: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4], "merges": ["b c", "a b", "b c"]] as [String: Any],
        ]
        let tokenizer = try BPETokenizer(json: Self.json(root), file: "repeated.json")
        #expect(tokenizer.encode("abc") == [3, 2])
        #expect(tokenizer.tokens(of: [3, 2, 99]) == ["ab", "c", nil])
    }

    @Test func byteFallbackAndFusedUnknown() throws {
        var vocab: [String: Int] = ["<unk>": 0, "▁": 1, "h": 2, "i": 3, "▁h": 4, "▁hi": 5]
        for byte in 0..<256 { vocab[String(format: "<0x%02X>", byte)] = 6 + byte }
        func tokenizer(byteFallback: Bool) throws -> BPETokenizer {
            let root: [String: Any] = [
                "model": [
                    "type": "BPE", "vocab": vocab, "merges": ["▁ h", "▁h i"], "unk_token": "<unk>",
                    "fuse_unk": true, "byte_fallback": byteFallback,
                ] as [String: Any],
                "normalizer": ["type": "Sequence", "normalizers": [
                    ["type": "Prepend", "prepend": "▁"], ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
                ]] as [String: Any],
                "decoder": ["type": "Sequence", "decoders": [
                    ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"],
                    ["type": "Fuse"], ["type": "Strip", "content": " ", "start": 1, "stop": 0],
                ]] as [String: Any],
            ]
            return try BPETokenizer(json: Self.json(root), file: "sp.json")
        }
        let fallback = try tokenizer(byteFallback: true)
        // "é" is U+00E9 = C3 A9 in UTF-8.
        #expect(fallback.encode("hi é") == [5, 1, 6 + 0xC3, 6 + 0xA9])
        #expect(fallback.decode([5, 1, 6 + 0xC3, 6 + 0xA9]) == "hi é")
        #expect(fallback.decode([6 + 0xC3]) == "\u{FFFD}")
        let unknown = try tokenizer(byteFallback: false)
        #expect(unknown.encode("hi éé") == [5, 1, 0])
    }

    @Test func malformedFilesAreErrorsNamingFileAndPath() throws {
        let cases: [(Data, String)] = [
            (Data("{\"model\": ".utf8), "is not valid JSON"),
            (try Self.json(["model": ["type": "WordPiece", "vocab": [:] as [String: Any]]]), "only BPE models"),
            (try Self.json(Self.byteLevel(merges: ["a c"])), "model.merges[0]"),
            (try Self.json(Self.byteLevel(merges: ["a b c"])), "model.merges[0]"),
            (try Self.json(Self.byteLevel(merges: [["a", 7]])), "model.merges[0][1]"),
            (try Self.json(Self.byteLevel(merges: [], extra: ["normalizer": ["type": "NFKC"]])), "supported normalizers"),
            (try Self.json(Self.byteLevel(merges: [], extra: ["pre_tokenizer": ["type": "Whitespace"]])), "supported pre-tokenizers"),
            (try Self.json(Self.byteLevel(merges: [], extra: ["pre_tokenizer": [
                "type": "Split", "pattern": ["Regex": "\\w+"], "behavior": "Isolated", "invert": false,
            ] as [String: Any]])), "supported split regexes"),
            (try Self.json(Self.byteLevel(merges: [], extra: ["added_tokens": [
                ["id": -1, "content": "<x>", "special": true],
            ]])), "added_tokens[0].id"),
            (try Self.json(Self.byteLevel(merges: [], extra: ["added_tokens": [
                ["id": 9, "content": "<x>", "single_word": "yes"],
            ]])), "added_tokens[0].single_word"),
            (try Self.json(Self.byteLevel(merges: [], extra: ["post_processor": [
                "type": "TemplateProcessing", "single": [["SpecialToken": ["id": "<t>", "type_id": 0]]],
                "special_tokens": [:] as [String: Any],
            ] as [String: Any]])), "special_tokens.<t>"),
            (try Self.json(["model": ["type": "BPE", "vocab": ["a": "zero"], "merges": [] as [Any]] as [String: Any]]), "model.vocab.a"),
            (try Self.json(["model": ["type": "BPE", "vocab": ["a": 0], "dropout": 0.1] as [String: Any]]), "dropout"),
            (try Self.json(["model": ["type": "BPE", "vocab": ["a": 0], "unk_token": "<unk>"] as [String: Any]]), "unk_token"),
        ]
        for (data, expected) in cases {
            do {
                _ = try BPETokenizer(json: data, file: "broken/tokenizer.json")
                Issue.record("no error for a file that should fail with \(expected)")
            } catch {
                #expect(error.file == "broken/tokenizer.json")
                #expect(error.description.contains(expected), "\(error.description) does not mention \(expected)")
            }
        }
    }

    /// Every value of a valid file, replaced in turn by each value of the wrong
    /// kind, loads or throws — never crashes — and what loads still encodes.
    @Test func everyValueOfTheWrongKindIsHandled() throws {
        let replacements: [Any] = [NSNull(), 1.5, -3, 1 << 40, "x", true, [Any](), [String: Any]()]
        var variants: [Any] = []
        func mutate(_ value: Any, rebuild: (Any) -> Any) {
            for replacement in replacements { variants.append(rebuild(replacement)) }
            if let object = value as? [String: Any] {
                for (key, child) in object {
                    mutate(child) { replaced in
                        var copy = object
                        copy[key] = replaced
                        return rebuild(copy)
                    }
                }
            } else if let array = value as? [Any] {
                for (index, child) in array.enumerated() {
                    mutate(child) { replaced in
                        var copy = array
                        copy[index] = replaced
                        return rebuild(copy)
                    }
                }
            }
        }
        mutate(Self.byteLevel(merges: ["a b", ["Ġ", "ab"]]) as Any) { $0 }
        var loaded = 0, refused = 0
        for variant in variants {
            let data = try JSONSerialization.data(withJSONObject: variant, options: [.fragmentsAllowed])
            do {
                let tokenizer = try BPETokenizer(json: data, file: "mutated.json")
                _ = tokenizer.decode(tokenizer.encode("ab ab<s>a", addSpecialTokens: true))
                loaded += 1
            } catch {
                #expect(error.file == "mutated.json")
                refused += 1
            }
        }
        #expect(loaded > 0 && refused > 0)
        print("BPE loader mutations: \(variants.count) variants, \(loaded) load, \(refused) refused with an error")
    }

    @Test func missingFileIsAnError() {
        #expect(throws: ModelFileError.self) { try BPETokenizer(contentsOfFile: "/nonexistent/tokenizer.json") }
    }
}
