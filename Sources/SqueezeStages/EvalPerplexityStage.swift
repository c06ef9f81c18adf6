import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: eval/perplexity` — the perplexity of one or more decoder language
/// models on a split of a `data/text` dataset: by default the GPTQ/SparseGPT
/// protocol (the split as one stream, cut into non-overlapping `seq_len`
/// windows), or Hugging Face's sliding window with `stride`. Also the
/// parameter count, sparsity and evaluation tokens/s.
///
/// Perplexity, NLL, token counts and sizes go to the `report` output (JSON);
/// tokens/s and seconds are measurements of this machine and stay metrics.
public struct EvalPerplexityStage: Stage {
    public struct Params: StageParameters {
        public static let models = Parameter("models", .map(.artifact("model")), doc: "Decoder models by the name their metrics are reported under, e.g. `{dense: ${pretrain.model}, wanda: ${wanda.model}}`.")
        public static let data = Parameter("data", .artifact("text-dataset"), doc: "The token dataset (`${stage.dataset}` of `data/text`); its vocabulary must fit every model's.")
        public static let split = Parameter("split", .string, default: "test", doc: "The split to score.")
        public static let seq_len = Parameter("seq_len", .optional(.int), doc: "Tokens per window. Default: the dataset's `block_size`. At most every model's context (`max_position_embeddings`).")
        public static let stride = Parameter("stride", .optional(.int), doc: "Sliding-window evaluation: windows start every `stride` tokens and each predicts only the tokens the previous one did not (Hugging Face's protocol). Default: non-overlapping windows (GPTQ/SparseGPT's protocol, the tail shorter than a window dropped).")
        public static let batch_size = Parameter("batch_size", .int, default: 8, doc: "Windows per forward pass (non-overlapping protocol).")
        public static let max_windows = Parameter("max_windows", .optional(.int), doc: "Score only the first N windows (a quick estimate; the report says how many were scored).")

        public static let parameters: [any ParameterDeclaration] = [models, data, split, seq_len, stride, batch_size, max_windows]

        public var models: [String: String]
        public var data: String
        public var split: String
        public var seq_len: Int?
        public var stride: Int?
        public var batch_size: Int
        public var max_windows: Int?

        public init(_ arguments: StageArguments) throws {
            models = try arguments[Self.models]
            data = try arguments[Self.data]
            split = try arguments[Self.split]
            seq_len = try arguments[Self.seq_len]
            stride = try arguments[Self.stride]
            batch_size = try arguments[Self.batch_size]
            max_windows = try arguments[Self.max_windows]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "eval/perplexity",
        version: 2,
        summary: "Perplexity of decoder language models on a data/text split (non-overlapping or sliding windows), with size, sparsity and tokens/s.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("report", kind: "file", doc: "report.json: per model the perplexity, mean NLL, tokens scored, windows, parameters and the fraction of zero linear weights — `sparsity` for a float model, `zero_fraction` for a quantized one, whose zeros include weights rounded to zero (no timings)."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let models = with["models"], case .mapping(let entries) = models.kind, entries.isEmpty {
            problems.append(Diagnostic("`models` is empty", at: models.location, hint: "name at least one model, e.g. `models: {dense: ${pretrain.model}}`"))
        }
        for (name, minimum) in [("seq_len", 2), ("stride", 1), ("batch_size", 1), ("max_windows", 1)] {
            if let node = with[name], let text = node.scalar, let value = Int(text), value < minimum {
                problems.append(Diagnostic("`\(name)` must be at least \(minimum), got \(text)", at: node.location))
            }
        }
        if let stride = with["stride"]?.scalar.flatMap(Int.init), let length = with["seq_len"]?.scalar.flatMap(Int.init), stride > length,
           let node = with["stride"]
        {
            problems.append(Diagnostic("`stride` \(stride) is longer than `seq_len` \(length)", at: node.location, hint: "use a stride ≤ seq_len"))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        let dataset = try LanguageModelData.dataset(params.data)
        guard dataset.splits.contains(params.split) else {
            throw StageFailure("the dataset has no `\(params.split)` split (it has \(dataset.splits.joined(separator: ", ")))", parameter: "split")
        }
        let tokens = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.tokens(params.split) }
        let length = params.seq_len ?? dataset.blockSize
        let settings = PerplexityProtocol(sequenceLength: length, stride: params.stride, batchSize: params.batch_size, maxWindows: params.max_windows)

        // Every model is loaded and checked before any is scored.
        var models: [(name: String, model: LoadedDecoder.Inference)] = []
        for (name, directory) in params.models.sorted(by: { $0.key < $1.key }) {
            let model = try LoadedDecoder.inference(directory, parameter: "models")
            guard dataset.vocabularySize <= model.config.vocabSize else {
                throw StageFailure(
                    "model `\(name)` has a vocabulary of \(model.config.vocabSize), smaller than the dataset's tokenizer (\(dataset.vocabularySize)); tokenize with the model's tokenizer",
                    parameter: "models")
            }
            guard length <= model.config.maximumSequenceLength else {
                throw StageFailure(
                    "\(params.seq_len == nil ? "the dataset's block_size" : "") \(length) is longer than model `\(name)`'s context of \(model.config.maximumSequenceLength) tokens"
                        .trimmingCharacters(in: .whitespaces),
                    parameter: params.seq_len == nil ? "data" : "seq_len")
            }
            models.append((name, model))
        }
        var metrics: [String: Value] = ["split_tokens": .int(tokens.count), "seq_len": .int(length)]
        if let stride = params.stride { metrics["stride"] = .int(stride) }
        var report: [String: Value] = [:]
        for (name, model) in models {
            try Task.checkCancellation()
            let result = try StageFailure.wrapping { () throws(DecoderInputError) in
                try DecoderInference.perplexity(
                    config: model.config, of: tokens, protocol: settings, forward: model.forward(backend)
                ) { done, total in
                    context.progress.report(fraction: Double(done) / Double(total), "\(name): window \(done)/\(total)")
                }
            }
            // A quantized model's zeros include weights rounded to zero: not a sparsity.
            let zeroKey = model.quantization == nil ? "sparsity" : "zero_fraction"
            var entry: [String: Value] = [
                "perplexity": .double(result.perplexity),
                "mean_nll": .double(result.meanNLL),
                "predicted_tokens": .int(result.predictedTokens),
                "windows": .int(result.windows),
                "parameters": .int(model.parameters),
                zeroKey: .double(model.zeroFraction),
            ]
            if let quantization = model.quantization { entry["quantization"] = .string(quantization) }
            report[name] = .object(entry)
            for (key, value) in ["perplexity": result.perplexity, "mean_nll": result.meanNLL, zeroKey: model.zeroFraction] {
                metrics["\(name).\(key)"] = .double(value)
            }
            metrics["\(name).parameters"] = .int(model.parameters)
            metrics["\(name).tokens_per_s"] = .double(Double(result.processedTokens) / max(result.seconds, 1e-9))
            context.log.line(String(
                format: "%@: perplexity %.3f (mean NLL %.4f) over %d tokens in %d windows of %d, %.0f tokens/s, %@ %.4f",
                name, result.perplexity, result.meanNLL, result.predictedTokens, result.windows, length,
                Double(result.processedTokens) / max(result.seconds, 1e-9), zeroKey.replacingOccurrences(of: "_", with: " "),
                model.zeroFraction))
        }
        let reportPath = (context.outputDirectory as NSString).appendingPathComponent("report.json")
        do {
            try AtomicFile.write(Data(Value.object(report).canonicalJSON.utf8), to: reportPath)
        } catch {
            throw StageFailure("cannot write \(reportPath): \(error)")
        }
        return StageResult(metrics: metrics, outputs: ["report": "report.json"])
    }
}

/// A decoder model artifact opened for training, compression or evaluation.
enum LoadedDecoder {
    /// A float or weight-only quantized decoder, as inference sees it.
    struct Inference {
        var config: DecoderConfig
        var parameters: Int
        /// Fraction of zero weights in the linear layers (quantized: of the dequantized weights).
        /// Fraction of exactly-zero weights in the linear layers: the
        /// pruned fraction of a float model; for a quantized one it also
        /// counts weights rounded to zero, so it is not called sparsity.
        var zeroFraction: Double
        /// `int4 g128 weight-only, 28 modules` for a quantized model.
        var quantization: String?
        var forward: (any Backend) -> DecoderInference.Forward
    }

    /// The float decoder model in the artifact `directory`; failures (a
    /// BERT or quantized model among them) are reported at `parameter`.
    static func model(_ directory: String, parameter: String) throws(StageFailure) -> DecoderModel {
        let artifact = try decoderArtifact(directory, parameter: parameter)
        if let quantization = try quantization(of: artifact, parameter: parameter) {
            throw StageFailure("""
                the model is already quantized (\(LoadedClassifier.describe(quantization))): it can only be evaluated; training, \
                pruning or quantizing needs the float model it was quantized from
                """, parameter: parameter)
        }
        return try StageFailure.wrapping("cannot load the model: ", parameter: parameter) { () throws(ModelFileError) in
            try artifact.decoderModel()
        }
    }

    /// The decoder in `directory`, float or quantized, for inference.
    static func inference(_ directory: String, parameter: String) throws(StageFailure) -> Inference {
        let artifact = try decoderArtifact(directory, parameter: parameter)
        if let section = try quantization(of: artifact, parameter: parameter) {
            let model = try StageFailure.wrapping("cannot load the model: ", parameter: parameter) { () throws(ModelFileError) in
                try QuantizedDecoderModel(directory: directory)
            }
            let linearWeights = model.weights.elements.compactMap { value -> Tensor? in
                guard case .linear(let linear) = value else { return nil }
                switch linear.kernel {
                case .weightOnly(let quantized): return quantized.weights.dequantized()
                case .float(let tensor): return tensor
                case .int8: return nil
                }
            }
            return Inference(
                config: model.config, parameters: model.parameterCount, zeroFraction: zeroFraction(of: linearWeights),
                quantization: LoadedClassifier.describe(section), forward: model.forward(backend:))
        }
        let model = try StageFailure.wrapping("cannot load the model: ", parameter: parameter) { () throws(ModelFileError) in
            try artifact.decoderModel()
        }
        let size = size(model)
        return Inference(
            config: model.config, parameters: size.parameters, zeroFraction: size.sparsity, quantization: nil, forward: model.forward(backend:))
    }

    private static func decoderArtifact(_ directory: String, parameter: String) throws(StageFailure) -> ModelArtifact {
        let artifact = try StageFailure.wrapping("cannot load the model: ", parameter: parameter) { () throws(ModelFileError) in
            try ModelArtifact(directory: directory)
        }
        guard artifact.isDecoder else {
            throw StageFailure(
                "the model is a \(artifact.manifest.architecture) model; this stage needs a decoder (\(DecoderFamily.supportedList))",
                parameter: parameter)
        }
        return artifact
    }

    private static func quantization(of artifact: ModelArtifact, parameter: String) throws(StageFailure) -> ModelQuantization? {
        try StageFailure.wrapping("cannot load the model: ", parameter: parameter) { () throws(ModelFileError) in
            try ModelQuantization.read(configFile: artifact.configPath)
        }
    }

    /// Writes `model` as an artifact in `target` with the `tokenizer.json`
    /// found in the directory `tokenizerDirectory` (a model artifact or a
    /// `tokenizer/train-bpe` output); `stage` is the artifact's source.
    static func save(_ model: DecoderModel, tokenizerFrom tokenizerDirectory: String, to target: String, source stage: String) throws(StageFailure) {
        try StageFailure.wrapping("cannot write the model: ") { () throws(ModelFileError) in
            try model.save(toDirectory: target)
            _ = try ModelFiles.copy(
                (tokenizerDirectory as NSString).appendingPathComponent(ModelArtifact.tokenizerFileName),
                to: (target as NSString).appendingPathComponent(ModelArtifact.tokenizerFileName))
            _ = try ModelArtifact.seal(directory: target, architecture: model.config.family.rawValue, source: stage)
        }
    }

    /// Parameters (a tied head counted once) and the fraction of zero weights in the linear layers.
    static func size(_ model: DecoderModel) -> (parameters: Int, sparsity: Double) {
        (model.parameterCount, zeroFraction(of: model.linearLayers.compactMap { try? model.linearWeight($0.name) }))
    }

    /// The fraction of exactly-zero elements over the f32 `weights`.
    static func zeroFraction(of weights: [Tensor]) -> Double {
        var zeros = 0
        var total = 0
        for weight in weights where weight.dtype == .f32 {
            total += weight.count
            zeros += weight.withUnsafeFloats { values in values.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
        }
        return total == 0 ? 0 : Double(zeros) / Double(total)
    }
}
