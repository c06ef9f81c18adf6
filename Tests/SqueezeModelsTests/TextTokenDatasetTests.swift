import Foundation
import SqueezeModels
import SqueezeTensor
import Testing

/// `TextTokenDataset`: a written dataset reads back (streams, blocks, split
/// order), and a damaged one (manifest, dtype, shape, out-of-range id) is an
/// error naming the file. `TextCorpusReader`: lines as Python's text mode
/// reads them, the Hugging Face wikitext row rule, the document boundaries,
/// JSONL and UTF-8 errors with file:line.
@Suite struct TextTokenDatasetTests {
    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("text-tokens-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @discardableResult
    static func writeSample(_ directory: String, test: [Int32] = [7, 8, 9]) throws -> TextTokenDataset {
        try TextTokenDataset.write(
            to: directory, tokenizerSHA256: String(repeating: "ab", count: 32), vocabSize: 10, eos: "<|endoftext|>", eosID: 0,
            blockSize: 4, testProtocol: .joined, validFraction: nil,
            splits: [
                .init(name: "test", tokens: test, documents: 2, sources: ["cd"]),
                .init(name: "train", tokens: [1, 2, 3, 0, 4, 5, 0, 6, 6, 6, 0], documents: 3, sources: ["ef", "01"]),
            ])
    }

    @Test func roundTrip() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.writeSample(directory)
        let dataset = try TextTokenDataset(directory: directory)
        #expect(dataset.vocabularySize == 10 && dataset.eosID == 0 && dataset.blockSize == 4)
        #expect(dataset.splits == ["train", "test"])
        #expect(try dataset.tokens("train") == [1, 2, 3, 0, 4, 5, 0, 6, 6, 6, 0])
        #expect(try dataset.tokens("test") == [7, 8, 9])
        #expect(dataset.manifest.splits["train"] == .init(file: "train.safetensors", documents: 3, tokens: 11, sources: ["ef", "01"]))
        #expect(dataset.manifest.testProtocol == "joined" && dataset.manifest.validFraction == nil)

        let blocks = try dataset.blocks("train")
        #expect(blocks.shape == [2, 4] && blocks.dtype == .i32)
        #expect(blocks.int32s == [1, 2, 3, 0, 4, 5, 0, 6])
        let threes = try dataset.blocks("train", length: 3)
        #expect(threes.shape == [3, 3] && threes.int32s == [1, 2, 3, 0, 4, 5, 0, 6, 6])
        #expect(throws: ModelFileError.self) { try dataset.blocks("test") }
        #expect(throws: ModelFileError.self) { try dataset.blocks("train", length: 0) }
        let missing = #expect(throws: ModelFileError.self) { try dataset.tokens("valid") }
        #expect(missing?.message.contains("no split `valid` (splits: `train`, `test`)") == true, "\(String(describing: missing))")

        let manifest = try #require(FileManager.default.contents(atPath: directory + "/manifest.json"))
        let text = String(decoding: manifest, as: UTF8.self)
        #expect(text.contains(#""format" : "squeeze.text-tokens/1""#) || text.contains(#""format": "squeeze.text-tokens/1""#), "\(text)")
        #expect(text.contains("tokenizer_sha256") && text.contains("eos_id") && text.contains("block_size"), "\(text)")
        #expect(!text.contains("valid_fraction"), "\(text)")
    }

    @Test func writingTwiceGivesIdenticalBytes() throws {
        let first = try Self.temporaryDirectory(), second = try Self.temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: first)
            try? FileManager.default.removeItem(atPath: second)
        }
        try Self.writeSample(first)
        try Self.writeSample(second)
        for file in ["manifest.json", "train.safetensors", "test.safetensors"] {
            #expect(FileManager.default.contents(atPath: "\(first)/\(file)") == FileManager.default.contents(atPath: "\(second)/\(file)"), "\(file)")
        }
    }

    @Test func writeRefusesAnEmptySplitOrAnUnknownName() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: ModelFileError.self) { try Self.writeSample(directory, test: []) }
        #expect(throws: ModelFileError.self) {
            try TextTokenDataset.write(
                to: directory, tokenizerSHA256: "", vocabSize: 10, eos: "</s>", eosID: 0, blockSize: 4, testProtocol: .joined,
                validFraction: nil, splits: [.init(name: "dev", tokens: [1], documents: 1, sources: [])])
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/manifest.json"))
    }

    /// Replaces one key of the manifest and expects opening to fail with `fragment`.
    func expectBadManifest(_ edit: (inout [String: Any]) -> Void, _ fragment: String) throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.writeSample(directory)
        let path = directory + "/manifest.json"
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(error?.description.contains(fragment) == true, "\(String(describing: error)) should say \(fragment)")
    }

    @Test func badManifestsAreErrors() throws {
        try expectBadManifest({ $0["format"] = "squeeze.text-classification/1" }, "expected \"squeeze.text-tokens/1\"")
        try expectBadManifest({ $0["vocab_size"] = 0 }, "`vocab_size` must be between 1 and 2^31")
        try expectBadManifest({ $0["eos_id"] = 10 }, "`eos_id` 10 is not an id below `vocab_size` 10")
        try expectBadManifest({ $0["block_size"] = 1 }, "`block_size` must be at least 2")
        try expectBadManifest({ $0["test_protocol"] = "sliding" }, "unknown `test_protocol` `sliding`")
        try expectBadManifest({ $0.removeValue(forKey: "eos_id") }, "missing field `eos_id`")
        try expectBadManifest({ $0["splits"] = [String: Any]() }, "`splits` is empty")
        try expectBadManifest({ manifest in
            var splits = manifest["splits"] as? [String: Any] ?? [:]
            splits["dev"] = splits["test"]
            manifest["splits"] = splits
        }, "unknown split `dev`")
        try expectBadManifest({ manifest in
            var splits = manifest["splits"] as? [String: Any] ?? [:]
            var test = splits["test"] as? [String: Any] ?? [:]
            test["file"] = "../test.safetensors"
            splits["test"] = test
            manifest["splits"] = splits
        }, "is not a plain file name")
        try expectBadManifest({ manifest in
            var splits = manifest["splits"] as? [String: Any] ?? [:]
            var test = splits["test"] as? [String: Any] ?? [:]
            test["tokens"] = 4
            splits["test"] = test
            manifest["splits"] = splits
        }, "says I32 [4]")

        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let missing = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(missing?.message.contains("not a tokenized text dataset") == true)
        try Data("{\"format\": ".utf8).write(to: URL(fileURLWithPath: directory + "/manifest.json"))
        let invalid = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(invalid?.message.contains("not valid JSON") == true, "\(String(describing: invalid))")
    }

    @Test func outOfRangeIDsAndWrongTensorsAreErrors() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.writeSample(directory)
        let testFile = directory + "/test.safetensors"
        try SafetensorsWriter.write(tensors: [("tokens", Tensor(shape: [3], int32s: [7, 10, 9]))], to: testFile)
        let high = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(high?.file == testFile && high?.message == "token 1 is id 10, outside [0, 10)", "\(String(describing: high))")

        try SafetensorsWriter.write(tensors: [("tokens", Tensor(shape: [3], int32s: [-1, 1, 1]))], to: testFile)
        let negative = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(negative?.message == "token 0 is id -1, outside [0, 10)", "\(String(describing: negative))")

        try SafetensorsWriter.write(
            [(name: "tokens", dtype: .i64, shape: [3], bytes: [UInt8](repeating: 1, count: 24))], to: testFile)
        let wide = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(wide?.message.contains("`tokens` is I64 [3], but manifest.json says I32 [3]") == true, "\(String(describing: wide))")

        try SafetensorsWriter.write(tensors: [("tokens", Tensor(shape: [1, 3], int32s: [1, 2, 3]))], to: testFile)
        let matrix = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(matrix?.message.contains("`tokens` is I32 [1, 3]") == true, "\(String(describing: matrix))")

        try SafetensorsWriter.write(tensors: [("ids", Tensor(shape: [3], int32s: [1, 2, 3]))], to: testFile)
        let renamed = #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
        #expect(renamed?.message == "has no tensor `tokens`", "\(String(describing: renamed))")

        try FileManager.default.removeItem(atPath: testFile)
        #expect(throws: ModelFileError.self) { try TextTokenDataset(directory: directory) }
    }

    // MARK: TextCorpusReader

    static func source(_ text: String, path: String = "/data/x.txt") -> TextCorpusReader.Source {
        TextCorpusReader.Source(path: path, text: text, sha256: "")
    }

    @Test func linesAreReadAsPythonTextModeReadsThem() {
        #expect(TextCorpusReader.pythonLines("") == [])
        #expect(TextCorpusReader.pythonLines("a\nb") == ["a\n", "b"])
        #expect(TextCorpusReader.pythonLines("a\r\nb\rc\n\n") == ["a\n", "b\n", "c\n", "\n"])
        #expect(TextCorpusReader.pythonLines("é\u{2028}x\n") == ["é\u{2028}x\n"], "only \\n, \\r\\n and \\r end a line")
        #expect(TextCorpusReader.pythonLines("\r") == ["\n"])
    }

    /// The rows of `datasets`' wikitext script: `row if row.strip() else ""`.
    @Test func rowsFollowTheHuggingFaceWikitextRule() throws {
        let reader = TextCorpusReader(format: .text)
        let text = " \n = Robert Boulter = \n \n Robert is an actor . \n\u{1C}\u{A0}\t\nlast"
        #expect(try reader.rows(of: [Self.source(text)]) == ["", " = Robert Boulter = \n", "", " Robert is an actor . \n", "", "last"])
        #expect(try reader.rows(of: [Self.source("a\n"), Self.source("b\n")]) == ["a\n", "b\n"])
        #expect(TextCorpusReader.isPythonWhitespace("\u{1F}") && !TextCorpusReader.isPythonWhitespace("\u{200B}"))
    }

    @Test func documentBoundaries() throws {
        let text = " = Title = \n\n First paragraph .\n continues here\n \n\n Second .\n"
        #expect(try TextCorpusReader(format: .text, boundary: .line).documents(of: [Self.source(text)])
            == [" = Title = ", " First paragraph .", " continues here", " Second ."])
        #expect(try TextCorpusReader(format: .text, boundary: .blankLine).documents(of: [Self.source(text)])
            == [" = Title = ", " First paragraph .\n continues here", " Second ."])
        #expect(try TextCorpusReader(format: .text, boundary: .file).documents(of: [Self.source(text), Self.source(" \n"), Self.source("b")])
            == [text, "b"])
    }

    @Test func jsonlRecordsAndTheirErrors() throws {
        let reader = TextCorpusReader(format: .jsonl, textField: "body")
        let good = "{\"body\": \"first\", \"id\": 1}\n\n{\"body\": \"  \"}\r\n{\"body\": \"a\\nb\"}\n"
        #expect(try reader.documents(of: [Self.source(good)]) == ["first", "a\nb"])
        #expect(try reader.rows(of: [Self.source(good)]) == ["first", "  ", "a\nb"])

        let cases = [
            ("{\"body\": \"ok\"}\n{\"body\": 3}\n", "/data/x.jsonl:2: `body` is an integer, not a string"),
            ("{\"body\": \"ok\"}\n\n[1]\n", "/data/x.jsonl:3: not a JSON object but a list"),
            ("{\"text\": \"ok\"}\n", "/data/x.jsonl:1: no field `body` (fields: `text`)"),
            ("{\"body\": \"ok\"\n", "/data/x.jsonl:1: not valid JSON"),
        ]
        for (text, expected) in cases {
            let error = #expect(throws: ModelFileError.self) { try reader.documents(of: [Self.source(text, path: "/data/x.jsonl")]) }
            #expect(error?.description.hasPrefix(expected) == true, "\(String(describing: error)) should start with \(expected)")
        }
    }

    @Test func invalidUTF8NamesTheLine() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/bad.txt"
        try Data([0x61, 0x0A, 0x62, 0x0A, 0x63, 0xFF, 0x0A]).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: ModelFileError.self) { try TextCorpusReader.read(path) }
        #expect(error?.description == "\(path):3: not valid UTF-8 text", "\(String(describing: error))")
        try Data("ok\n".utf8).write(to: URL(fileURLWithPath: path))
        let source = try TextCorpusReader.read(path)
        #expect(source.text == "ok\n" && source.sha256 == "dc51b8c96c2d745df3bd5590d990230a482fd247123599548e0632fdbf97fc22")
    }

    @Test func validTailCounts() {
        #expect(TextCorpusReader.tailCount(of: 10, fraction: 0.1) == 1)
        #expect(TextCorpusReader.tailCount(of: 10, fraction: 0.25) == 3, "2.5 rounds up")
        #expect(TextCorpusReader.tailCount(of: 3, fraction: 0.5) == 2)
        #expect(TextCorpusReader.tailCount(of: 100, fraction: 0.001) == 1, "at least one")
        #expect(TextCorpusReader.tailCount(of: 2, fraction: 0.5) == 1)
        #expect(TextCorpusReader.tailCount(of: 1, fraction: 0.5) == nil)
    }

    @Test func documentStreamDoesNotDependOnThreads() async throws {
        let result = try BPETrainer(vocabularySize: 300, minimumFrequency: 1, specialTokens: ["<|endoftext|>"])
            .train(["the cat sat on the mat and the dog sat on the log"])
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try result.write(toDirectory: directory)
        let tokenizer = try BPETokenizer(contentsOfFile: directory + "/tokenizer.json")
        let documents = (0..<7).map { "the cat \($0) sat on the mat" }
        let expected: [Int32] = documents.flatMap { document -> [Int32] in tokenizer.encode(document).map { Int32($0) } + [0] }
        for threads in [1, 2, 3, 7, 16] {
            #expect(await tokenizer.documentStream(documents, eos: 0, threads: threads) == expected, "threads \(threads)")
        }
        #expect(await tokenizer.documentStream([], eos: 0, threads: 2) == [])
        #expect(tokenizer.joinedStream(["a b\n", "", "c\n"]) == tokenizer.encode("a b\n\n\n\n\nc\n").map(Int32.init))
    }
}
