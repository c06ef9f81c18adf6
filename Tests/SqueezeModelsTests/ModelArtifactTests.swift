import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

/// A tiny BERT-shaped model directory (random weights) for artifact tests.
enum TinyModel {
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "##s", "!"]

    static func write(in directory: String, tokenizerJSON: Bool = true, modelType: String = "bert") throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = #"{"model_type": "\#(modelType)", "vocab_size": \#(vocabulary.count), "hidden_size": 4, "num_hidden_layers": 1}"#
        try Data(config.utf8).write(to: URL(fileURLWithPath: directory + "/config.json"))
        try Data((vocabulary.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: directory + "/vocab.txt"))
        var generator = SystemRandomNumberGenerator()
        let embeddings = Tensor(shape: [vocabulary.count, 4], floats: (0..<(vocabulary.count * 4)).map { _ in Float.random(in: -1...1, using: &generator) })
        try SafetensorsWriter.write(
            tensors: [
                (name: "embeddings.word_embeddings.weight", tensor: embeddings),
                (name: "pooler.dense.bias", tensor: Tensor(shape: [4], floats: [0.1, 0.2, 0.3, 0.4])),
            ],
            to: directory + "/model.safetensors")
        if tokenizerJSON {
            let tokenizer = #"{"version": "1.0", "normalizer": {"type": "BertNormalizer", "lowercase": true}, "model": {"type": "WordPiece"}}"#
            try Data(tokenizer.utf8).write(to: URL(fileURLWithPath: directory + "/tokenizer.json"))
        }
    }
}

@Suite struct ModelArtifactTests {
    @Test func validatesAndWritesAnArtifact() throws {
        let dir = try TempDir()
        let source = dir.file("source")
        try TinyModel.write(in: source)
        let summary = try ModelArtifact.validateFiles(in: source)
        #expect(summary.architecture == "bert")
        #expect(summary.parameterCount == TinyModel.vocabulary.count * 4 + 4)
        #expect(summary.vocabularySize == TinyModel.vocabulary.count)
        #expect(summary.files == ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json"])

        let files = Dictionary(uniqueKeysWithValues: summary.files.map { ($0, source + "/" + $0) })
        let artifact = try ModelArtifact.write(to: dir.file("artifact"), files: files, architecture: "bert", source: "pip:tiny==1.0")
        #expect(artifact.manifest.format == "squeeze.model/1")
        #expect(artifact.manifest.source == "pip:tiny==1.0")
        #expect(artifact.manifest.files.keys.sorted() == ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"])
        #expect(artifact.manifest.files.values.allSatisfy { $0.count == 64 })
        try artifact.verify()
        #expect(try FileManager.default.contentsOfDirectory(atPath: artifact.directory).sorted()
            == ["config.json", "model.safetensors", "squeeze-model.json", "tokenizer.json", "vocab.txt"])

        let reopened = try ModelArtifact(directory: artifact.directory)
        #expect(reopened == artifact)
        #expect(reopened.tokenizerPath == artifact.directory + "/tokenizer.json")
        #expect(try reopened.weights().tensor("pooler.dense.bias").floats == [0.1, 0.2, 0.3, 0.4])
        #expect(try reopened.tokenizer().encode("Good movies!") == [2, 5, 7, 8, 9, 3])
        // The manifest is deterministic, sorted and readable.
        let text = try String(contentsOfFile: artifact.directory + "/squeeze-model.json", encoding: .utf8)
        #expect(text.hasPrefix("{\n  \"architecture\" : \"bert\",\n  \"files\" : {\n    \"config.json\" : \""))
        #expect(text.hasSuffix("\"format\" : \"squeeze.model/1\",\n  \"source\" : \"pip:tiny==1.0\"\n}\n"))
        // The SHA-256 matches an independent computation (sha256sum's format).
        let expected = try Self.sha256sum(artifact.vocabularyPath)
        if let expected { #expect(artifact.manifest.files["vocab.txt"] == expected) }
    }

    @Test func sealHashesFilesInPlace() throws {
        let dir = try TempDir()
        let model = dir.file("model")
        try TinyModel.write(in: model, tokenizerJSON: false)
        let artifact = try ModelArtifact.seal(directory: model, architecture: "bert", source: "fine-tune")
        #expect(artifact.manifest.files.keys.sorted() == ["config.json", "model.safetensors", "vocab.txt"])
        #expect(artifact.tokenizerPath == nil)
        try artifact.verify()
        try FileManager.default.removeItem(atPath: model + "/vocab.txt")
        let error = #expect(throws: ModelFileError.self) { try ModelArtifact.seal(directory: model, architecture: "bert", source: "x") }
        #expect(error?.file == model + "/vocab.txt")
    }

    @Test func verifyNoticesChangedFiles() throws {
        let dir = try TempDir()
        let model = dir.file("model")
        try TinyModel.write(in: model)
        let artifact = try ModelArtifact.seal(directory: model, architecture: "bert", source: "x")
        try Data("{\"model_type\": \"bert\"}".utf8).write(to: URL(fileURLWithPath: artifact.configPath))
        let error = #expect(throws: ModelFileError.self) { try artifact.verify() }
        #expect(error?.file == artifact.configPath)
        #expect(error?.message.contains("SHA-256 is") == true)
    }

    @Test func readerRejectsBrokenArtifacts() throws {
        let dir = try TempDir()
        let model = dir.file("model")
        try TinyModel.write(in: model)
        let manifest = model + "/squeeze-model.json"
        func expectError(_ json: String?, _ fragment: String, file: String? = nil) throws {
            if let json { try Data(json.utf8).write(to: URL(fileURLWithPath: manifest)) }
            let error = #expect(throws: ModelFileError.self) { try ModelArtifact(directory: model) }
            #expect(error?.message.contains(fragment) == true, "\(error?.description ?? "no error")")
            #expect(error?.file == (file ?? manifest))
        }
        let digest = String(repeating: "a", count: 64)
        let files = #"{"config.json": "\#(digest)", "model.safetensors": "\#(digest)", "vocab.txt": "\#(digest)"}"#
        try expectError(nil, "is not a squeeze model artifact")
        try expectError("[]", "not a valid model manifest")
        try expectError("{", "not a valid model manifest: not valid JSON (line 1, column 2: expected a string key, found end of input)")
        try expectError(#"{"format": "squeeze.model/1", "architecture": "bert", "source": "x"}"#, "missing field `files`")
        try expectError(#"{"format": "squeeze.model/9", "architecture": "bert", "source": "x", "files": {}}"#, "format is \"squeeze.model/9\"")
        try expectError(#"{"format": "squeeze.model/1", "architecture": "bert", "source": "x", "files": {"config.json": "\#(digest)"}}"#, "does not list the required file `model.safetensors`")
        try expectError(#"{"format": "squeeze.model/1", "architecture": "bert", "source": "x", "files": {"../x": "\#(digest)"}}"#, "not a plain file name")
        try expectError(#"{"format": "squeeze.model/1", "architecture": "bert", "source": "x", "files": {"vocab.txt": "ABC"}}"#, "not 64 lowercase hex digits")
        try expectError(#"{"format": "squeeze.model/1", "architecture": "bert", "source": "x", "files": {"extra.bin": "\#(digest)"}}"#, "listed in squeeze-model.json but missing", file: model + "/extra.bin")
        try Data("[1]".utf8).write(to: URL(fileURLWithPath: model + "/config.json"))
        try expectError(#"{"format": "squeeze.model/1", "architecture": "bert", "source": "x", "files": \#(files)}"#, "is not a JSON object", file: model + "/config.json")
        let notDirectory = #expect(throws: ModelFileError.self) { try ModelArtifact(directory: model + "/vocab.txt") }
        #expect(notDirectory?.message == "not a directory")
    }

    @Test func validationRejectsBrokenModelDirectories() throws {
        let dir = try TempDir()
        func expectInvalid(_ fragment: String, file: String, setup: (String) throws -> Void) throws {
            let model = dir.file(UUID().uuidString)
            try TinyModel.write(in: model)
            try setup(model)
            let error = #expect(throws: ModelFileError.self) { try ModelArtifact.validateFiles(in: model) }
            #expect(error?.message.contains(fragment) == true, "\(error?.description ?? "no error")")
            #expect(error?.file == model + "/" + file)
        }
        func write(_ text: String, _ path: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
        try expectInvalid("missing; a model directory needs", file: "vocab.txt") { try FileManager.default.removeItem(atPath: $0 + "/vocab.txt") }
        try expectInvalid("is not valid JSON", file: "config.json") { try write("{oops", $0 + "/config.json") }
        try expectInvalid("has no string `model_type`", file: "config.json") { try write("{}", $0 + "/config.json") }
        try expectInvalid("model_type \"falcon\" is not supported (supported: bert, gpt2, llama, mistral, qwen2)", file: "config.json") {
            try write(#"{"model_type": "falcon"}"#, $0 + "/config.json")
        }
        try expectInvalid("missing required field `n_embd`", file: "config.json") { try write(#"{"model_type": "gpt2"}"#, $0 + "/config.json") }
        try expectInvalid("missing; a decoder model directory needs config.json, model.safetensors, tokenizer.json", file: "tokenizer.json") {
            try? FileManager.default.removeItem(atPath: $0 + "/tokenizer.json")
            try write(#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}"#, $0 + "/config.json")
        }
        try expectInvalid("shorter than the 8-byte header length", file: "model.safetensors") { try write("", $0 + "/model.safetensors") }
        try expectInvalid("the vocabulary is empty", file: "vocab.txt") { try write("", $0 + "/vocab.txt") }
        try expectInvalid("lacks the special token(s) [CLS]", file: "vocab.txt") { try write("[PAD]\n[UNK]\n[SEP]\n", $0 + "/vocab.txt") }
        try expectInvalid("more than the config's vocab_size 3", file: "vocab.txt") {
            try write(#"{"model_type": "bert", "vocab_size": 3}"#, $0 + "/config.json")
        }
        try expectInvalid("tokenizer model is BPE", file: "tokenizer.json") { try write(#"{"model": {"type": "BPE"}}"#, $0 + "/tokenizer.json") }
        try expectInvalid("holds no tensors", file: "model.safetensors") {
            let header = #"{"x": {"dtype": "F8_E5M2", "shape": [1], "data_offsets": [0, 1]}}"#
            var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
            bytes += Array(header.utf8) + [0]
            try Data(bytes).write(to: URL(fileURLWithPath: $0 + "/model.safetensors"))
        }
    }

    /// `sha256sum`'s digest of `path`, or nil when the tool is missing.
    static func sha256sum(_ path: String) throws -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init)
    }
}
