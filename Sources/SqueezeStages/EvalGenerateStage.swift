import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

#if canImport(Glibc)
import Glibc
#endif

/// `uses: eval/generate` — generation at batch 1 with a KV cache, for one or
/// more decoder models (float, or weight-only quantized: int4/int8 kernels
/// on every step): the continuation of each prompt, recorded in the report
/// for a person to read, and the speed of the prefill (the prompt's forward
/// pass) and of decoding (one token per forward pass), median over
/// `repeats`, with the KV cache and weight sizes and the process's peak
/// resident memory.
///
/// The continuations (deterministic: greedy, or sampled from the stage
/// seed) go to the `report` output; speeds and memory stay metrics.
public struct EvalGenerateStage: Stage {
    public struct Params: StageParameters {
        public static let models = Parameter("models", .map(.artifact("model")), doc: "Decoder models by the name their metrics are reported under, e.g. `{fp32: ${pretrain.model}, int4: ${gptq.model}}`; every model needs a tokenizer.json.")
        public static let prompts = Parameter("prompts", .array(.string), doc: "The prompts, tokenized by each model's tokenizer (its special tokens added as its post-processor says).")
        public static let max_new_tokens = Parameter("max_new_tokens", .int, default: 64, doc: "Tokens generated per prompt (fewer when an end token comes first and `stop_at_eos` is on).")
        public static let temperature = Parameter("temperature", .number, default: 0, doc: "0: greedy (arg-max). Otherwise sample from softmax(logits / temperature), seeded by the stage seed.")
        public static let top_k = Parameter("top_k", .int, default: 0, doc: "Sample among the K most likely tokens only (0: all).")
        public static let top_p = Parameter("top_p", .number, default: 1, doc: "Sample among the smallest set of most likely tokens whose probability reaches P (1: all).")
        public static let stop_at_eos = Parameter("stop_at_eos", .bool, default: false, doc: "Stop a continuation at the model's `eos_token_id`. Off by default so every run times the same number of tokens.")
        public static let repeats = Parameter("repeats", .int, default: 3, doc: "Timed generations per prompt and model, after one warm-up; speeds are the medians.")

        public static let parameters: [any ParameterDeclaration] = [
            models, prompts, max_new_tokens, temperature, top_k, top_p, stop_at_eos, repeats,
        ]

        public var models: [String: String]
        public var prompts: [String]
        public var max_new_tokens: Int
        public var temperature: Double
        public var top_k: Int
        public var top_p: Double
        public var stop_at_eos: Bool
        public var repeats: Int

        public init(_ arguments: StageArguments) throws {
            models = try arguments[Self.models]
            prompts = try arguments[Self.prompts]
            max_new_tokens = try arguments[Self.max_new_tokens]
            temperature = try arguments[Self.temperature]
            top_k = try arguments[Self.top_k]
            top_p = try arguments[Self.top_p]
            stop_at_eos = try arguments[Self.stop_at_eos]
            repeats = try arguments[Self.repeats]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "eval/generate",
        version: 1,
        summary: "Generate continuations of fixed prompts at batch 1 with a KV cache: the texts, prefill and decode tokens/s, KV-cache and weight sizes, peak memory.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("report", kind: "file", doc: "report.json: per model and prompt the prompt and continuation (text and ids), and the sampling settings (no timings)."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        seedUse: .always,
        check: checkParams
    )

    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let models = with["models"], case .mapping(let entries) = models.kind, entries.isEmpty {
            problems.append(Diagnostic("`models` is empty", at: models.location, hint: "name at least one model"))
        }
        if let prompts = with["prompts"], let items = prompts.items, items.isEmpty {
            problems.append(Diagnostic("`prompts` is empty", at: prompts.location, hint: "give at least one prompt"))
        }
        problems += ParamChecks.atLeast(with, [(Params.max_new_tokens, 1), (Params.repeats, 1)])
        problems += ParamChecks.nonNegative(with, [Params.temperature, Params.top_k])
        if let node = with["top_p"], let value = ParamChecks.number(node), !(value > 0 && value <= 1) {
            problems.append(Diagnostic("`top_p` must be in (0, 1], got \(node.scalar ?? "")", at: node.location))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        let sampling = SamplingOptions(temperature: params.temperature, topK: params.top_k, topP: params.top_p, seed: context.seed)
        try StageFailure.wrapping(parameter: "temperature") { () throws(DecoderInputError) in try sampling.validate() }

        // Every model is loaded and every prompt checked against it before anything runs.
        struct Prepared {
            var name: String
            var model: LoadedDecoder.Inference
            var tokenizer: BPETokenizer
            var prompts: [[Int]]
            var weightBytes: Int
        }
        var prepared: [Prepared] = []
        for (name, directory) in params.models.sorted(by: { $0.key < $1.key }) {
            let model = try LoadedDecoder.inference(directory, parameter: "models")
            let tokenizer = try StageFailure.wrapping("model `\(name)`: ", parameter: "models") { () throws(ModelFileError) in
                try ModelArtifact(directory: directory).bpeTokenizer()
            }
            var prompts: [[Int]] = []
            for (index, text) in params.prompts.enumerated() {
                let ids = tokenizer.encode(text, addSpecialTokens: true)
                guard !ids.isEmpty else { throw StageFailure("prompt \(index + 1) is empty after tokenization", parameter: "prompts") }
                guard ids.count + params.max_new_tokens <= model.config.maximumSequenceLength else {
                    throw StageFailure("""
                        prompt \(index + 1) has \(ids.count) tokens; with max_new_tokens \(params.max_new_tokens) it exceeds model `\(name)`'s \
                        context of \(model.config.maximumSequenceLength) tokens: shorten the prompt or lower max_new_tokens
                        """, parameter: "prompts")
                }
                prompts.append(ids)
            }
            prepared.append(Prepared(
                name: name, model: model, tokenizer: tokenizer, prompts: prompts, weightBytes: OneShotStages.fileSize(directory)))
        }

        var metrics: [String: Value] = ["prompts": .int(params.prompts.count), "max_new_tokens": .int(params.max_new_tokens)]
        var report: [String: Value] = [:]
        for entry in prepared {
            try Task.checkCancellation()
            let forward = entry.model.forward(backend)
            let stops: Set<Int> = params.stop_at_eos ? Set(entry.model.config.eosTokenID.map { [$0] } ?? []) : []
            var prefillRates: [Double] = []
            var decodeRates: [Double] = []
            var samples: [Value] = []
            var cacheBytes = 0
            for (index, prompt) in entry.prompts.enumerated() {
                var first: Generation?
                for round in 0...params.repeats {
                    context.progress.report(StageProgress(message: "\(entry.name): prompt \(index + 1)/\(entry.prompts.count), run \(round)/\(params.repeats)"))
                    let generation = try StageFailure.wrapping { () throws(DecoderInputError) in
                        try DecoderInference.generate(
                            config: entry.model.config, prompt: prompt, maxNewTokens: params.max_new_tokens, sampling: sampling,
                            stopTokens: stops, forward: forward)
                    }
                    if let first, first.tokens != generation.tokens {
                        throw StageFailure("model `\(entry.name)` generated different tokens for the same prompt and seed: the backend is not deterministic")
                    }
                    if first == nil { first = generation }
                    guard round > 0 else { continue }
                    prefillRates.append(Double(prompt.count) / max(generation.prefillSeconds, 1e-9))
                    if generation.tokens.count > 1 {
                        decodeRates.append(Double(generation.tokens.count - 1) / max(generation.decodeSeconds, 1e-9))
                    }
                    cacheBytes = max(cacheBytes, generation.cacheBytes)
                }
                guard let generation = first else { continue }
                let text = entry.tokenizer.decode(generation.tokens)
                samples.append(.object([
                    "prompt": .string(params.prompts[index]),
                    "prompt_tokens": .int(prompt.count),
                    "continuation": .string(text),
                    "tokens": .array(generation.tokens.map(Value.int)),
                    "stopped_at_eos": .bool(generation.stoppedAtEnd),
                ]))
                context.log.line("\(entry.name) #\(index + 1): \(params.prompts[index]) ⟶ \(text)")
            }
            report[entry.name] = .object([
                "samples": .array(samples),
                "quantization": entry.model.quantization.map(Value.string) ?? .null,
            ])
            let prefill = Self.median(prefillRates)
            let decode = Self.median(decodeRates)
            metrics["\(entry.name).prefill_tokens_per_s"] = .double(prefill)
            metrics["\(entry.name).decode_tokens_per_s"] = .double(decode)
            metrics["\(entry.name).kv_cache_bytes"] = .int(cacheBytes)
            metrics["\(entry.name).weights_bytes"] = .int(entry.weightBytes)
            context.log.line(String(
                format: "%@: prefill %.1f tokens/s, decode %.1f tokens/s (median of %d runs per prompt), KV cache %d bytes, weights %d bytes",
                entry.name, prefill, decode, params.repeats, cacheBytes, entry.weightBytes))
        }
        metrics["peak_rss_bytes"] = .int(Self.peakResidentBytes())
        report["sampling"] = .object([
            "temperature": .double(params.temperature), "top_k": .int(params.top_k), "top_p": .double(params.top_p),
            "max_new_tokens": .int(params.max_new_tokens), "stop_at_eos": .bool(params.stop_at_eos),
        ])
        let reportPath = (context.outputDirectory as NSString).appendingPathComponent("report.json")
        do {
            try AtomicFile.write(Data(Value.object(report).prettyJSON.utf8), to: reportPath)
        } catch {
            throw StageFailure("cannot write \(reportPath): \(error)")
        }
        return StageResult(metrics: metrics, outputs: ["report": "report.json"])
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// The peak resident set of this process so far (`getrusage`), in bytes:
    /// every model this process has held counts, not only the one timed.
    static func peakResidentBytes() -> Int {
        var usage = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
        return Int(usage.ru_maxrss) * 1024
    }
}
