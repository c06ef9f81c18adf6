import Foundation
import SqueezeSupport
import SqueezeTensor

/// A tokenized language-modelling dataset directory (`squeeze.text-tokens/1`),
/// as `data/text` writes it:
///
///     manifest.json      {"format": "squeeze.text-tokens/1", "tokenizer_sha256": "…",
///                         "vocab_size": 8000, "eos": "<|endoftext|>", "eos_id": 0,
///                         "block_size": 128, "test_protocol": "joined",
///                         "splits": {"train": {"file": "train.safetensors", "documents": 23767,
///                                              "tokens": 2088628, "sources": ["<sha256>", …]}, …}}
///     train.safetensors  one 1-D I32 tensor `tokens`: the split's whole token stream
///
/// A `train` or `valid` stream (and `test` under the `documents` protocol) is
/// every document's tokens followed by `eos_id`; a `test` stream under the
/// `joined` protocol is the split's rows joined by "\n\n" and tokenized once,
/// with no EOS. No BOS is added. `sources` are the SHA-256s of the files read,
/// not their names: the stage's cache key holds only their content, so the
/// output may not depend on where they were. `valid_fraction` is present when
/// the valid split is the tail of the train documents.
public struct TextTokenDataset: Sendable {
    public static let format = "squeeze.text-tokens/1"
    public static let manifestFileName = "manifest.json"
    /// The tensor every split file holds.
    public static let tensorName = "tokens"
    /// The split names a dataset may have, in the order `splits` lists them.
    public static let splitNames = ["train", "valid", "test"]

    /// How the test split's stream was made.
    public enum TestProtocol: String, Sendable, CaseIterable {
        /// Rows joined by "\n\n", tokenized once, no EOS (GPTQ/SparseGPT perplexity).
        case joined
        /// Like train: each document's tokens followed by EOS.
        case documents
    }

    /// One split as the manifest describes it.
    public struct Split: Codable, Sendable, Hashable {
        /// The safetensors file in the dataset directory.
        public var file: String
        /// Documents in the stream (under the `joined` protocol: rows joined).
        public var documents: Int
        /// Tokens in the stream.
        public var tokens: Int
        /// Lowercase hex SHA-256 of each source file, in reading order.
        public var sources: [String]

        public init(file: String, documents: Int, tokens: Int, sources: [String]) {
            self.file = file
            self.documents = documents
            self.tokens = tokens
            self.sources = sources
        }
    }

    /// `manifest.json`.
    public struct Manifest: Codable, Sendable, Hashable {
        public var format: String
        /// Lowercase hex SHA-256 of the `tokenizer.json` that made the streams.
        public var tokenizerSHA256: String
        /// One more than the largest token id the tokenizer has.
        public var vocabSize: Int
        public var eos: String
        public var eosID: Int
        /// The training block length.
        public var blockSize: Int
        public var testProtocol: String
        /// The fraction of the train documents that became `valid`, when it did.
        public var validFraction: Double?
        public var splits: [String: Split]

        enum CodingKeys: String, CodingKey {
            case format
            case tokenizerSHA256 = "tokenizer_sha256"
            case vocabSize = "vocab_size"
            case eos
            case eosID = "eos_id"
            case blockSize = "block_size"
            case testProtocol = "test_protocol"
            case validFraction = "valid_fraction"
            case splits
        }

        public init(
            tokenizerSHA256: String, vocabSize: Int, eos: String, eosID: Int, blockSize: Int, testProtocol: TestProtocol,
            validFraction: Double?, splits: [String: Split]
        ) {
            self.format = TextTokenDataset.format
            self.tokenizerSHA256 = tokenizerSHA256
            self.vocabSize = vocabSize
            self.eos = eos
            self.eosID = eosID
            self.blockSize = blockSize
            self.testProtocol = testProtocol.rawValue
            self.validFraction = validFraction
            self.splits = splits
        }
    }

    public let directory: String
    public let manifest: Manifest
    /// Each split's stream, a 1-D i32 view of its mapped file.
    private let streams: [String: Tensor]

    /// Opens the dataset and checks it whole: the manifest (format, sizes,
    /// known split names, plain file names), and every split file (one 1-D
    /// I32 tensor `tokens` of the manifest's length, every id in
    /// `[0, vocab_size)`).
    public init(directory: String) throws(ModelFileError) {
        let manifestPath = (directory as NSString).appendingPathComponent(Self.manifestFileName)
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw ModelFileError(file: manifestPath, "missing or unreadable; this directory is not a tokenized text dataset")
        }
        let manifest: Manifest
        do {
            manifest = try SqueezeJSON.decode(Manifest.self, from: data)
        } catch {
            throw ModelFileError(file: manifestPath, "not a valid text dataset manifest: \(ModelArtifact.describe(error))")
        }
        guard manifest.format == Self.format else {
            throw ModelFileError(file: manifestPath, "format is \"\(manifest.format)\", expected \"\(Self.format)\"")
        }
        try Self.check(manifest, file: manifestPath)
        var streams: [String: Tensor] = [:]
        for name in Self.splitNames {
            guard let split = manifest.splits[name] else { continue }
            let path = (directory as NSString).appendingPathComponent(split.file)
            streams[name] = try Self.readStream(path, split: split, vocabularySize: manifest.vocabSize)
        }
        self.directory = directory
        self.manifest = manifest
        self.streams = streams
    }

    public var vocabularySize: Int { manifest.vocabSize }
    public var eosID: Int { manifest.eosID }
    public var blockSize: Int { manifest.blockSize }
    /// The splits present, in the order train, valid, test.
    public var splits: [String] { Self.splitNames.filter { streams[$0] != nil } }

    /// The token stream of `split`.
    public func tokens(_ split: String) throws(ModelFileError) -> [Int32] {
        try stream(split).int32s
    }

    /// Concatenate-and-chunk: the stream cut into non-overlapping blocks of
    /// `length` tokens, the remainder dropped; `[N, length]` i32 (a view of
    /// the mapped file). A stream shorter than one block is an error.
    public func blocks(_ split: String, length: Int) throws(ModelFileError) -> Tensor {
        let stream = try stream(split)
        guard length >= 1 else {
            throw ModelFileError(file: directory, "block length must be at least 1, got \(length)")
        }
        let count = stream.count / length
        guard count >= 1 else {
            throw ModelFileError(file: directory, "split `\(split)` has \(stream.count) tokens, fewer than one block of \(length)")
        }
        return stream.sliced(axis: 0, 0..<(count * length)).reshaped([count, length])
    }

    /// `blocks(split, length: blockSize)`.
    public func blocks(_ split: String) throws(ModelFileError) -> Tensor {
        try blocks(split, length: blockSize)
    }

    private func stream(_ split: String) throws(ModelFileError) -> Tensor {
        guard let stream = streams[split] else {
            let known = splits.map { "`\($0)`" }.joined(separator: ", ")
            throw ModelFileError(
                file: (directory as NSString).appendingPathComponent(Self.manifestFileName),
                "no split `\(split)` (splits: \(known))")
        }
        return stream
    }

    private static func check(_ manifest: Manifest, file: String) throws(ModelFileError) {
        guard (1...(Int(Int32.max) + 1)).contains(manifest.vocabSize) else {
            throw ModelFileError(file: file, "`vocab_size` must be between 1 and 2^31 (ids are I32), got \(manifest.vocabSize)")
        }
        guard (0..<manifest.vocabSize).contains(manifest.eosID) else {
            throw ModelFileError(file: file, "`eos_id` \(manifest.eosID) is not an id below `vocab_size` \(manifest.vocabSize)")
        }
        guard manifest.blockSize >= 2 else {
            throw ModelFileError(file: file, "`block_size` must be at least 2, got \(manifest.blockSize)")
        }
        guard TestProtocol(rawValue: manifest.testProtocol) != nil else {
            let known = TestProtocol.allCases.map { "`\($0.rawValue)`" }.joined(separator: ", ")
            throw ModelFileError(file: file, "unknown `test_protocol` `\(manifest.testProtocol)` (known: \(known))")
        }
        guard !manifest.splits.isEmpty else {
            throw ModelFileError(file: file, "`splits` is empty")
        }
        for (name, split) in manifest.splits.sorted(by: { $0.key < $1.key }) {
            guard splitNames.contains(name) else {
                throw ModelFileError(file: file, "unknown split `\(name)` (splits are train, valid and test)")
            }
            guard ModelArtifact.isPlainFileName(split.file), split.file != manifestFileName else {
                throw ModelFileError(file: file, "split `\(name)`: `\(split.file)` is not a plain file name")
            }
            guard split.tokens >= 1, split.documents >= 1 else {
                throw ModelFileError(file: file, "split `\(name)` must have at least one document and one token")
            }
        }
    }

    /// The split file's `tokens` tensor, checked against the manifest.
    private static func readStream(_ path: String, split: Split, vocabularySize: Int) throws(ModelFileError) -> Tensor {
        let file = try SafetensorsFile(path: path)
        guard let entry = file.entries[tensorName] else {
            throw ModelFileError(file: path, "has no tensor `\(tensorName)`")
        }
        guard entry.dtype == .i32, entry.shape == [split.tokens] else {
            throw ModelFileError(
                file: path,
                "`\(tensorName)` is \(entry.dtype.rawValue) \(entry.shape), but \(manifestFileName) says I32 [\(split.tokens)]")
        }
        let stream = try file.tensor(tensorName)
        let bound = Int32(truncatingIfNeeded: vocabularySize)
        let outOfRange = stream.withUnsafeElements(Int32.self) { ids in
            ids.firstIndex { $0 < 0 || (vocabularySize <= Int(Int32.max) && $0 >= bound) }.map { ($0, ids[$0]) }
        }
        if let (position, id) = outOfRange {
            throw ModelFileError(file: path, "token \(position) is id \(id), outside [0, \(vocabularySize))")
        }
        return stream
    }

    /// One split to write: its stream, document count and source digests.
    public struct SplitStream: Sendable {
        public var name: String
        public var tokens: [Int32]
        public var documents: Int
        public var sources: [String]

        public init(name: String, tokens: [Int32], documents: Int, sources: [String]) {
            self.name = name
            self.tokens = tokens
            self.documents = documents
            self.sources = sources
        }
    }

    /// Writes the dataset into `directory` (created when missing): each
    /// split's `<name>.safetensors` atomically, then the manifest, so a
    /// directory with a manifest is complete. Returns it opened (and so checked).
    @discardableResult
    public static func write(
        to directory: String, tokenizerSHA256: String, vocabSize: Int, eos: String, eosID: Int, blockSize: Int,
        testProtocol: TestProtocol, validFraction: Double?, splits: [SplitStream]
    ) throws(ModelFileError) -> TextTokenDataset {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create the directory: \(error.localizedDescription)")
        }
        var entries: [String: Split] = [:]
        for split in splits {
            guard splitNames.contains(split.name), entries[split.name] == nil else {
                throw ModelFileError(file: directory, "invalid or duplicate split name `\(split.name)`")
            }
            entries[split.name] = Split(
                file: split.name + ".safetensors", documents: split.documents, tokens: split.tokens.count, sources: split.sources)
        }
        let manifest = Manifest(
            tokenizerSHA256: tokenizerSHA256, vocabSize: vocabSize, eos: eos, eosID: eosID, blockSize: blockSize,
            testProtocol: testProtocol, validFraction: validFraction, splits: entries)
        let manifestPath = (directory as NSString).appendingPathComponent(manifestFileName)
        try check(manifest, file: manifestPath)
        for split in splits {
            let path = (directory as NSString).appendingPathComponent(split.name + ".safetensors")
            try SafetensorsWriter.write(tensors: [(tensorName, Tensor(shape: [split.tokens.count], int32s: split.tokens))], to: path)
        }
        let bytes: [UInt8]
        do {
            bytes = try SqueezeJSON.encode(manifest)
        } catch {
            throw ModelFileError(file: manifestPath, "cannot encode the manifest: \(error)")
        }
        let writer = try AtomicFileWriter(path: manifestPath)
        try writer.write(bytes)
        try writer.commit()
        return try TextTokenDataset(directory: directory)
    }
}
