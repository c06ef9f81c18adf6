import Foundation
import SqueezeModels
import SqueezeONNXProto
import SqueezeSupport

/// An ONNX model an exporter built, with what `squeeze-export.json` says of it.
public struct ONNXExportedModel: Sendable {
    public var model: Onnx_ModelProto
    public var nodeCount: Int
    /// The manifest's `details`: opset, inputs and outputs, shapes, ….
    public var details: [String: Value]
    /// The exactness against squeeze's own forward, in words.
    public var guarantee: String

    public init(model: Onnx_ModelProto, nodeCount: Int, details: [String: Value], guarantee: String) {
        self.model = model
        self.nodeCount = nodeCount
        self.details = details
        self.guarantee = guarantee
    }
}

/// `export/onnx`'s work: opens a model artifact, picks the exporter for its
/// kind, and writes an export directory — `model.onnx`, the tokenizer files,
/// `config.json` and `squeeze-export.json` — atomically, file by file.
/// Everything that can be refused (opset, kind, tokenizer, a non-empty
/// output directory) is refused before the graph is built.
public enum ONNXExport {
    public static let modelFileName = "model.onnx"
    public static let target = "onnx"

    public struct Options: Sendable, Hashable {
        /// The default-domain opset, one of `ONNXOpset.supported`.
        public var opset: Int
        /// Decoders: whether the graph takes and returns the KV cache
        /// (`past_key_values` / `present`). Encoders have none; ignored there.
        public var kvCache: Bool
        /// The content digest of the artifact as the store names it
        /// (`sha256:…`), recorded in `squeeze-export.json`.
        public var sourceDigest: String

        public init(opset: Int = ONNXOpset.default, kvCache: Bool = true, sourceDigest: String) {
            self.opset = opset
            self.kvCache = kvCache
            self.sourceDigest = sourceDigest
        }
    }

    /// What an export wrote.
    public struct Summary: Sendable, Hashable {
        public var kind: ArtifactKind
        public var opset: Int
        public var onnxBytes: Int
        public var nodeCount: Int
        /// Every file but `squeeze-export.json`, by name → SHA-256 (hex).
        public var files: [String: String]
    }

    /// Exports the artifact in `artifactDirectory` into `directory` (created
    /// when missing; refused when it holds anything).
    @discardableResult
    public static func export(artifactDirectory: String, to directory: String, options: Options) throws(ModelFileError) -> Summary {
        try checkOpset(options.opset, file: artifactDirectory)
        let artifact = try ModelArtifact(directory: artifactDirectory)
        let kind = try ArtifactKind.of(artifact)
        let tokenizerFiles = kind == .decoder ? [ModelArtifact.tokenizerFileName] : [ModelArtifact.vocabularyFileName]
        try ExportDirectory.requireTokenizer(of: artifact, tokenizerFiles)
        // One line per exporter: each builds the graph of the kinds it handles.
        let exporter: (ModelArtifact, ArtifactKind, Options) throws(ModelFileError) -> ONNXExportedModel
        switch kind {
        case .dense, .sparse, .cofi: exporter = BertONNXExport.export(artifact:kind:options:)
        case .staticInt8, .dynamicInt8: exporter = QuantizedBertONNXExport.export(artifact:kind:options:)
        case .decoder: exporter = DecoderONNXExport.export(artifact:kind:options:)
        case .weightOnly: throw unsupported(kind, artifactDirectory)
        }
        var output = try ExportDirectory(path: directory)
        let exported = try exporter(artifact, kind, options)
        let bytes: Data
        do {
            bytes = try exported.model.serializedBytes()
        } catch {
            throw ModelFileError(file: directory + "/" + modelFileName, "cannot serialize the ONNX model: \(error)")
        }
        try output.write(modelFileName, bytes)
        try output.copyTokenizer(from: artifact, required: tokenizerFiles)
        try output.copy(artifact.configPath, as: ModelArtifact.configFileName)
        let source = ExportManifest.Source(
            digest: options.sourceDigest, format: artifact.manifest.format, architecture: artifact.manifest.architecture,
            kind: kind.rawValue)
        try output.finish(target: target, source: source, details: exported.details, guarantee: exported.guarantee)
        return Summary(kind: kind, opset: options.opset, onnxBytes: bytes.count, nodeCount: exported.nodeCount, files: output.files)
    }

    /// Refuses an opset outside `ONNXOpset.supported`; `file` names the source.
    static func checkOpset(_ opset: Int, file: String) throws(ModelFileError) {
        guard ONNXOpset.supported.contains(opset) else {
            throw ModelFileError(
                file: file,
                "cannot be exported at opset \(opset): the export needs opset \(ONNXOpset.minimum) (LayerNormalization) "
                    + "and is written for \(ONNXOpset.minimum)…\(ONNXOpset.maximum)")
        }
    }

    /// The refusal for a kind no ONNX exporter handles (yet), naming it.
    static func unsupported(_ kind: ArtifactKind, _ artifactDirectory: String) -> ModelFileError {
        let reason: String = switch kind {
        case .weightOnly:
            "ONNX has no standard operator for squeeze's per-group int4/int8 weights below opset 21's blocked "
                + "DequantizeLinear, which this export does not write; export the float model it was quantized from"
        case .dense, .sparse, .cofi, .staticInt8, .dynamicInt8, .decoder:
            "it is not supported"
        }
        return ModelFileError(file: artifactDirectory, "is \(kind.phrase) (kind `\(kind.rawValue)`), which export/onnx cannot export: \(reason)")
    }
}
