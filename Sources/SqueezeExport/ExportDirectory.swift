import Foundation
import SqueezeModels
import SqueezeSupport

/// `squeeze-export.json`, written beside every export: what was exported,
/// from which artifact, into which files, and what the export guarantees.
/// A deployment can check the files against it and trace a served model back
/// to the run that made it.
public struct ExportManifest: Codable, Sendable, Hashable {
    public static let fileName = "squeeze-export.json"
    public static let currentFormat = "squeeze.export/1"

    public struct Source: Codable, Sendable, Hashable {
        /// The content digest of the exported artifact directory (as the
        /// store names it), so the export can be traced to its run.
        public var digest: String
        /// `squeeze.model/1`, `squeeze.quantized/1`, … of the source.
        public var format: String
        /// The source's `model_type` (`bert`, `llama`, …).
        public var architecture: String
        /// What the source is: `dense`, `sparse`, `cofi`, `static_int8`,
        /// `dynamic_int8`, `weight_only`, ….
        public var kind: String

        public init(digest: String, format: String, architecture: String, kind: String) {
            self.digest = digest
            self.format = format
            self.architecture = architecture
            self.kind = kind
        }
    }

    public var format: String
    /// `onnx` or `hf`.
    public var target: String
    public var source: Source
    /// File name → lowercase hex SHA-256 of every other file in the directory.
    public var files: [String: String]
    /// Target details: opset, axes, inputs and outputs, the quantization
    /// config, padding applied, …
    public var details: [String: Value]
    /// The exactness the export guarantees against squeeze's own forward, in
    /// words (docs/export.md explains each).
    public var guarantee: String
    /// The squeeze version that wrote it.
    public var producer: String

    public init(
        target: String, source: Source, files: [String: String], details: [String: Value], guarantee: String,
        producer: String
    ) {
        self.format = Self.currentFormat
        self.target = target
        self.source = source
        self.files = files
        self.details = details
        self.guarantee = guarantee
        self.producer = producer
    }
}

/// The files of an export directory: writes each one atomically, copies the
/// tokenizer files beside the model, and finishes with `squeeze-export.json`
/// listing them all with their SHA-256.
public struct ExportDirectory: Sendable {
    public let path: String
    public private(set) var files: [String: String] = [:]

    /// An empty directory at `path`, created if missing. A directory with
    /// anything in it is refused: an export never mixes with other files.
    public init(path: String) throws(ModelFileError) {
        self.path = path
        do {
            if let status = try FileSystem.lstatIfPresent(path) {
                guard status.fileType == UInt32(S_IFDIR) else {
                    throw ModelFileError(file: path, "exists and is not a directory; name a new or empty directory")
                }
                let entries = try FileManager.default.contentsOfDirectory(atPath: path)
                guard entries.isEmpty else {
                    throw ModelFileError(file: path, "is not empty (\(entries.count) entries); name a new or empty directory")
                }
            } else {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            }
        } catch let error as ModelFileError {
            throw error
        } catch {
            throw ModelFileError(file: path, "cannot prepare the export directory: \(error)")
        }
    }

    /// Writes `bytes` as `name` (a plain file name) atomically.
    public mutating func write(_ name: String, _ bytes: Data) throws(ModelFileError) {
        let target = try filePath(name)
        do {
            try AtomicFile.write(Array(bytes), to: target)
        } catch {
            throw ModelFileError(file: target, "cannot write: \(error)")
        }
        files[name] = Hashing.sha256(bytes).hex
    }

    /// Copies `source` in as `name`.
    public mutating func copy(_ source: String, as name: String) throws(ModelFileError) {
        files[name] = try ModelFiles.copy(source, to: try filePath(name))
    }

    /// Refuses `artifact` when it lacks one of the tokenizer files in
    /// `required`, naming it; exporters call it before any work, and
    /// `copyTokenizer` again when it copies.
    public static func requireTokenizer(of artifact: ModelArtifact, _ required: [String]) throws(ModelFileError) {
        for name in required where artifact.manifest.files[name] == nil {
            throw ModelFileError(
                file: artifact.directory,
                "has no \(name), which the export needs beside the model; import the model with its tokenizer files"
            )
        }
    }

    /// Copies the tokenizer files of `artifact` (those among `ModelArtifact`'s
    /// `vocab.txt` and `tokenizer.json` it lists) and returns their names.
    /// `required` names the ones the target needs: one missing is an error
    /// that says which.
    @discardableResult
    public mutating func copyTokenizer(from artifact: ModelArtifact, required: [String]) throws(ModelFileError) -> [String] {
        let candidates = [ModelArtifact.vocabularyFileName, ModelArtifact.tokenizerFileName]
        try Self.requireTokenizer(of: artifact, required)
        var copied: [String] = []
        for name in candidates where artifact.manifest.files[name] != nil {
            try copy(artifact.directory + "/" + name, as: name)
            copied.append(name)
        }
        return copied
    }

    /// Writes `squeeze-export.json` over every file written so far; call last.
    public mutating func finish(
        target: String, source: ExportManifest.Source, details: [String: Value], guarantee: String
    ) throws(ModelFileError) {
        let manifest = ExportManifest(
            target: target, source: source, files: files, details: details, guarantee: guarantee,
            producer: SqueezeVersion.current
        )
        let data: [UInt8]
        do {
            data = try SqueezeJSON.encode(manifest, pretty: true)
        } catch {
            throw ModelFileError(file: path, "cannot encode \(ExportManifest.fileName): \(error)")
        }
        let target = try filePath(ExportManifest.fileName)
        do {
            try AtomicFile.write(data, to: target)
        } catch {
            throw ModelFileError(file: target, "cannot write: \(error)")
        }
    }

    private func filePath(_ name: String) throws(ModelFileError) -> String {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw ModelFileError(file: path, "`\(name)` is not a plain file name")
        }
        return path + "/" + name
    }
}
