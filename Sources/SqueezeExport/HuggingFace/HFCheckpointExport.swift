import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// Why an artifact cannot become a Hugging Face checkpoint, or a file it
/// needs is unreadable. A refusal says why the target cannot express the
/// artifact and what to use instead; it comes before anything is written.
public enum HFExportError: Error, Sendable, CustomStringConvertible {
    case refused(String)
    case file(ModelFileError)

    public var description: String {
        switch self {
        case .refused(let message): message
        case .file(let error): error.description
        }
    }
}

/// Writes a model artifact as a Hugging Face checkpoint directory that
/// `transformers` loads with `AutoModelForSequenceClassification` (BERT) or
/// `AutoModelForCausalLM` (decoders) and that computes what Squeeze computes:
///
/// - dense BERT classifiers as `BertForSequenceClassification`, dense
///   decoders as `LlamaForCausalLM`, `MistralForCausalLM`,
///   `Qwen2ForCausalLM` or `GPT2LMHeadModel`;
/// - sparse models with their pruned positions as stored zeros;
/// - CoFi-pruned BERT with its heads and FFN units zero-padded back to one
///   shape per layer (exact: a zero head and a zero unit contribute nothing),
///   when its hidden size is a whole number of heads;
/// - weight-only models (`quantize/weight-only` BERT, `quantize/gptq`
///   decoders) in the `compressed-tensors` format (`CompressedTensorsExport`).
///
/// Refused, with the reason: W8A8 models (no int8-activation format that
/// `transformers` runs), BERT with mean pooling, a pruned hidden size that is
/// not a whole number of heads, weight-only CoFi BERT and weight-only GPT-2.
public enum HFCheckpointExport {
    public static let target = "hf"

    /// What the export needs to know about an artifact, read from its config
    /// and manifest before anything is loaded or written.
    public enum Kind: Sendable, Hashable {
        case bert
        case weightOnlyBert(ModelQuantization)
        case decoder(DecoderFamily)
        case weightOnlyDecoder(DecoderFamily, ModelQuantization)

        var name: String {
            switch self {
            case .bert, .weightOnlyBert: "bert"
            case .decoder(let family), .weightOnlyDecoder(let family, _): family.rawValue
            }
        }
    }

    /// Classifies `artifact`, refusing what the target cannot express (the
    /// checks that need only the config; the CoFi shape check runs on load).
    public static func classify(_ artifact: ModelArtifact) throws(HFExportError) -> Kind {
        let quantization: ModelQuantization?
        do {
            quantization = try ModelQuantization.read(configFile: artifact.configPath)
        } catch {
            throw .file(error)
        }
        guard let family = DecoderFamily(rawValue: artifact.manifest.architecture) else {
            guard artifact.manifest.architecture == "bert" else {
                throw .refused("the model's architecture `\(artifact.manifest.architecture)` has no Hugging Face export")
            }
            if let quantization {
                switch quantization.mode {
                case .static, .dynamic:
                    throw .refused("""
                        the model is \(quantization.mode.rawValue) W8A8 (int8 weights and activations), which this export does not \
                        write: the only Hugging Face form of it is compressed-tensors `int-quantized`, which `transformers` runs by \
                        simulating int8 activations in float and which cannot carry Squeeze's SmoothQuant factors, so it is not \
                        verified to compute what Squeeze computes. Export it with `export/onnx` (QDQ, run by ONNX Runtime's \
                        integer kernels), or export the float model it was quantized from
                        """)
                case .weightOnly:
                    return .weightOnlyBert(quantization)
                }
            }
            return .bert
        }
        guard let quantization else { return .decoder(family) }
        guard quantization.mode == .weightOnly else {
            throw .refused("a \(quantization.mode.rawValue) W8A8 decoder has no Hugging Face format that `transformers` runs")
        }
        if family == .gpt2 {
            throw .refused("""
                a weight-only GPT-2 cannot be written as compressed-tensors: GPT-2's projections are `Conv1D` modules, not \
                `nn.Linear`, and compressed-tensors quantizes Linear modules only. Export the float model, or use a Llama-layout decoder
                """)
        }
        return .weightOnlyDecoder(family, quantization)
    }

    /// Exports `artifact` into the empty (or new) directory `path`;
    /// `sourceDigest` is the artifact's content digest for the manifest.
    /// Everything the target cannot express is refused before the
    /// directory is touched.
    @discardableResult
    public static func export(_ artifact: ModelArtifact, to path: String, sourceDigest: String) throws(HFExportError) -> ExportManifest {
        let kind = try classify(artifact)
        switch kind {
        case .bert:
            let prepared = try BertHFExport.prepare(artifact)
            var directory = try open(path)
            try wrapping { () throws(ModelFileError) in
                try directory.copyTokenizer(from: artifact, required: [ModelArtifact.vocabularyFileName])
            }
            let written = try BertHFExport.write(prepared, into: &directory, artifact: artifact)
            return try finish(&directory, written, artifact: artifact, kind: kind, sourceDigest: sourceDigest)
        case .weightOnlyBert:
            let (model, lowercase) = try BertHFExport.prepareWeightOnly(artifact)
            var directory = try open(path)
            try wrapping { () throws(ModelFileError) in
                try directory.copyTokenizer(from: artifact, required: [ModelArtifact.vocabularyFileName])
            }
            let written = try BertHFExport.writeWeightOnly(model, lowercase: lowercase, into: &directory)
            return try finish(&directory, written, artifact: artifact, kind: kind, sourceDigest: sourceDigest)
        case .decoder:
            let model = try wrapping { () throws(ModelFileError) in try artifact.decoderModel() }
            var directory = try open(path)
            try copyDecoderTokenizer(artifact, model.config, into: &directory)
            let written = try DecoderHFExport.write(model, into: &directory)
            return try finish(&directory, written, artifact: artifact, kind: kind, sourceDigest: sourceDigest)
        case .weightOnlyDecoder:
            let model = try wrapping { () throws(ModelFileError) in try QuantizedDecoderModel(directory: artifact.directory) }
            var directory = try open(path)
            try copyDecoderTokenizer(artifact, model.config, into: &directory)
            let written = try CompressedTensorsExport.write(model, into: &directory)
            return try finish(&directory, written, artifact: artifact, kind: kind, sourceDigest: sourceDigest)
        }
    }

    /// What a writer produced: the manifest's kind, details and guarantee.
    struct Written {
        var sourceKind: String
        var details: [String: Value]
        var guarantee: String
    }

    private static func open(_ path: String) throws(HFExportError) -> ExportDirectory {
        try wrapping { () throws(ModelFileError) in try ExportDirectory(path: path) }
    }

    private static func finish(
        _ directory: inout ExportDirectory, _ written: Written, artifact: ModelArtifact, kind: Kind, sourceDigest: String
    ) throws(HFExportError) -> ExportManifest {
        let source = ExportManifest.Source(
            digest: sourceDigest, format: artifactFormat(artifact), architecture: kind.name, kind: written.sourceKind)
        try wrapping { () throws(ModelFileError) in
            try directory.finish(target: target, source: source, details: written.details, guarantee: written.guarantee)
        }
        return ExportManifest(
            target: target, source: source, files: directory.files, details: written.details, guarantee: written.guarantee,
            producer: SqueezeVersion.current)
    }

    /// `squeeze.quantized/1` for quantized artifacts, else the model format.
    private static func artifactFormat(_ artifact: ModelArtifact) -> String {
        (try? ModelQuantization.read(configFile: artifact.configPath))??.format ?? artifact.manifest.format
    }

    /// `tokenizer.json` and a `tokenizer_config.json` naming the generic
    /// fast tokenizer, so `AutoTokenizer` uses `tokenizer.json` as it is (its
    /// normalizer, pre-tokenizer and post-processor: the ids Squeeze's BPE
    /// tokenizer gives) instead of a family class that rebuilds parts of it.
    private static func copyDecoderTokenizer(
        _ artifact: ModelArtifact, _ config: DecoderConfig, into directory: inout ExportDirectory
    ) throws(HFExportError) {
        try wrapping { () throws(ModelFileError) in
            try directory.copyTokenizer(from: artifact, required: [ModelArtifact.tokenizerFileName])
            let settings: [String: Value] = [
                "tokenizer_class": .string("PreTrainedTokenizerFast"),
                "model_max_length": .int(config.maximumSequenceLength),
            ]
            try directory.write(tokenizerConfigFileName, Data(Value.object(settings).prettyJSON.utf8))
        }
    }

    static let tokenizerConfigFileName = "tokenizer_config.json"

    /// Runs `body`, turning a file error into `HFExportError.file`.
    @discardableResult
    static func wrapping<T>(_ body: () throws(ModelFileError) -> T) throws(HFExportError) -> T {
        do {
            return try body()
        } catch {
            throw .file(error)
        }
    }

    /// `model.safetensors` from named f32/i32/i64 tensors, written through
    /// the export directory (so its digest is listed) with `format: pt`.
    static func writeWeights(_ tensors: [SafetensorsWriter.RawTensor], into directory: inout ExportDirectory) throws(HFExportError) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-hf-\(UUID().uuidString)").path
        try wrapping { () throws(ModelFileError) in
            do {
                try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            } catch {
                throw ModelFileError(file: scratch, "cannot create a scratch directory: \(error)")
            }
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let temporary = scratch + "/" + ModelArtifact.weightsFileName
            try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: temporary)
            try directory.copy(temporary, as: ModelArtifact.weightsFileName)
        }
    }

    /// The little-endian bytes of an f32 tensor.
    static func raw(_ name: String, _ tensor: Tensor) -> SafetensorsWriter.RawTensor {
        (name, .f32, tensor.shape, Float.littleEndianBytes(tensor.contiguous().floats))
    }

    /// The size in bytes of the file at `path` (0 when it cannot be read), for the details.
    static func size(of path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}

extension Float {
    /// Little-endian bytes of a float array (safetensors' byte order).
    static func littleEndianBytes(_ values: [Float]) -> [UInt8] {
        #if _endian(little)
        return values.withUnsafeBytes { Array($0) }
        #else
        return values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
        #endif
    }
}
