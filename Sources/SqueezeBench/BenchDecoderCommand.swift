import ArgumentParser
import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

#if canImport(Glibc)
import Glibc
#endif

/// `squeeze bench decoder`: what `Benchmarks/decoder/torch_peer.py` measures,
/// on the CPU backend: a training step, prefill and KV-cached greedy decode of
/// a random decoder, and decode again with its block layers weight-only
/// int4 and int8.
struct BenchDecoderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decoder",
        abstract: "Time a decoder's training step, prefill and decode (fp32, weight-only int4 and int8).",
        discussion: """
            CONFIG is a model directory (its config.json; the weights are not read), a JSON file or a \
            JSON object: Hugging Face config fields, read as `llama` when `model_type` is absent (as \
            the PyTorch peer reads LlamaConfig fields). The model has random weights from --seed \
            (transformers' initialisation), float32. Token ids are uniform in [0, vocab) from the \
            same seed. Measures on the CPU backend, each the median of --repeats timed runs after \
            --warmup untimed ones:
              - train_step: forward + next-token cross-entropy + backward + AdamW (lr --lr, weight \
            decay 0.01 as torch.optim.AdamW's default, but not on norms, as the decay mask says; no \
            clipping) on --batch x --seq-len tokens;
              - prefill: the forward over --prompt-len tokens at batch 1 filling a new KV cache, \
            logits for every prompt position;
              - decode: DecoderInference.generate at batch 1, greedy, --decode-tokens + 1 new \
            tokens; only the --decode-tokens one-token steps after the prefill's first token are \
            timed. The same for the model with every block Linear (attention and MLP projections; \
            not lm_head or the embeddings) rounded to nearest to int4 and to int8 weight-only codes \
            in symmetric groups of --group-size inputs. The three models run in turn within each \
            round; speedup_over_fp32 is the median of the per-round ratios fp32 time / int time.
            The kernel tier is the CPU's unless SQUEEZE_KERNELS lowers it (e.g. avx2).
            """)

    @Argument(help: "A model directory, a JSON file or a JSON object (config.json fields).")
    var config: String

    @Option(help: "Threads of the CPU backend.")
    var threads: Int = 2

    @Option(help: "Sequences in the training batch.")
    var batch: Int = 8

    @Option(help: "Tokens per training sequence.")
    var seqLen: Int = 128

    @Option(help: "Prompt tokens (prefill and decode, batch 1).")
    var promptLen: Int = 128

    @Option(help: "Timed one-token decode steps after the prefill.")
    var decodeTokens: Int = 64

    @Option(help: "Timed runs per measurement (the median is reported).")
    var repeats: Int = 5

    @Option(help: "Untimed runs before each measurement.")
    var warmup: Int = 2

    @Option(help: "Seeds the weights and the token ids.")
    var seed: UInt64 = 0

    @Option(help: "AdamW learning rate of the training step.")
    var lr: Float = 1e-4

    @Option(
        help: """
            Consecutive inputs sharing a scale in the weight-only models; must divide every block layer's input width. \
            Default: 128, or the largest divisor of every width below it (e.g. 16 for FFN 688).
            """)
    var groupSize: Int?

    @Flag(help: "Print the results as JSON (the peer script's keys).")
    var json = false

    func validate() throws {
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        for (name, value) in [("--batch", batch), ("--seq-len", seqLen), ("--prompt-len", promptLen), ("--decode-tokens", decodeTokens)]
        where value < 1 || value > 1_000_000 {
            throw ValidationError("\(name) must be between 1 and 1000000")
        }
        if seqLen < 2 { throw ValidationError("--seq-len must be at least 2 (a training sequence predicts its next tokens)") }
        if repeats < 1 || repeats > 100_000 { throw ValidationError("--repeats must be between 1 and 100000") }
        if warmup < 0 || warmup > 100_000 { throw ValidationError("--warmup must be between 0 and 100000") }
        if let groupSize, groupSize < 1 { throw ValidationError("--group-size must be at least 1") }
        if !(lr.isFinite && lr >= 0) { throw ValidationError("--lr must be a finite number ≥ 0") }
    }

    func run() throws {
        let decoderConfig = try Self.readConfig(config)
        let context = decoderConfig.maximumSequenceLength
        guard seqLen <= context else {
            throw UserError("--seq-len \(seqLen) is longer than the config's context of \(context) (max_position_embeddings)")
        }
        // generate() sizes its cache for the prompt and every new token, the last included.
        let decodePositions = promptLen + decodeTokens + 1
        guard decodePositions <= context else {
            throw UserError(
                "\(decodePositions) positions are needed (--prompt-len \(promptLen) + --decode-tokens \(decodeTokens) + 1), "
                    + "the config's context is \(context) (max_position_embeddings); raise it or shorten the prompt")
        }
        let model: DecoderModel
        do {
            model = try DecoderModel(randomWithConfig: decoderConfig, seed: seed)
        } catch {
            throw UserError("\(config): \(error)")
        }
        let benchmark = DecoderBenchmark(
            model: model, threads: threads, batch: batch, seqLen: seqLen, promptLen: promptLen, decodeTokens: decodeTokens,
            repeats: repeats, warmup: warmup, seed: seed, learningRate: lr, groupSize: groupSize ?? Self.defaultGroupSize(model))
        let report: DecoderBenchReport
        do {
            report = try benchmark.run()
        } catch {
            throw UserError("cannot run the benchmark on \(config): \(error)")
        }
        print(json ? report.prettyJSON : report.table, terminator: json ? "" : "\n")
    }

    /// 128 where it divides every block layer's input width, else the largest divisor of them all below it.
    static func defaultGroupSize(_ model: DecoderModel) -> Int {
        let widths = model.linearBlocks.flatMap(\.layers).map(\.inFeatures)
        return WeightOnlyQuantizer.largestDivisor(
            of: widths.reduce(0, WeightOnlyQuantizer.greatestCommonDivisor), atMost: WeightOnlyOptions.defaultGroupSize)
    }

    /// A directory's `config.json`, a JSON file or JSON text, with
    /// `"model_type": "llama"` added when absent.
    static func readConfig(_ source: String) throws -> DecoderConfig {
        let trimmed = source.drop { $0.isWhitespace }
        var file = source
        let data: Data
        if trimmed.hasPrefix("{") {
            file = "<config argument>"
            data = Data(source.utf8)
        } else {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
                throw UserError("\(source): no such file or directory (expected a model directory, a JSON file or a JSON object)")
            }
            if isDirectory.boolValue { file = (source as NSString).appendingPathComponent(ModelArtifact.configFileName) }
            guard let contents = FileManager.default.contents(atPath: file) else { throw UserError("\(file): cannot read the config") }
            data = contents
        }
        let value: Value
        do {
            value = try Value(json: data)
        } catch {
            throw UserError("\(file): not valid JSON: \(error)")
        }
        guard case .object(var fields) = value else { throw UserError("\(file): a config must be a JSON object") }
        if fields["model_type"] == nil { fields["model_type"] = .string(DecoderFamily.llama.rawValue) }
        do {
            return try DecoderConfig(object: fields, file: file)
        } catch {
            throw UserError("\(error)")
        }
    }
}

/// One measurement: the median and every sample, in milliseconds.
struct DecoderBenchTiming: Encodable {
    var ms: Double
    var tokensPerSecond: Double
    var samplesMS: [Double]

    enum CodingKeys: String, CodingKey {
        case ms
        case tokensPerSecond = "tokens_per_s"
        case samplesMS = "samples_ms"
    }

    /// `seconds` samples of runs that each handle `tokens` tokens.
    init(seconds: [Double], tokens: Int) {
        let median = BertBenchmark.median(seconds)
        ms = median * 1e3
        tokensPerSecond = median > 0 ? Double(tokens) / median : 0
        samplesMS = seconds.map { $0 * 1e3 }
    }
}

/// Greedy decode of one model: the timed one-token steps.
struct DecoderBenchDecode: Encodable {
    var ms: Double
    var msPerToken: Double
    var tokensPerSecond: Double
    var samplesMS: [Double]
    /// Median seconds of generate()'s prefill (the prompt's forward and the first token), in ms.
    var prefillMS: Double
    /// Bytes of the block Linear weights (packed codes, scales and zero points when weight-only).
    var blockLinearBytes: Int
    /// Median over rounds of fp32 decode time / this model's (nil for fp32).
    var speedupOverFP32: Double?
    /// Leading generated tokens equal to the fp32 model's (nil for fp32).
    var sameTokensAsFP32: Int?

    enum CodingKeys: String, CodingKey {
        case ms
        case msPerToken = "ms_per_token"
        case tokensPerSecond = "tokens_per_s"
        case samplesMS = "samples_ms"
        case prefillMS = "prefill_ms"
        case blockLinearBytes = "block_linear_bytes"
        case speedupOverFP32 = "speedup_over_fp32"
        case sameTokensAsFP32 = "same_tokens_as_fp32"
    }
}

struct DecoderBenchModel: Encodable {
    var modelType: String
    var hiddenSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int
    var intermediateSize: Int
    var vocabSize: Int
    var tieWordEmbeddings: Bool
    var parameters: Int
    var dtype = "float32"

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case intermediateSize = "intermediate_size"
        case vocabSize = "vocab_size"
        case tieWordEmbeddings = "tie_word_embeddings"
        case parameters, dtype
    }
}

struct DecoderBenchSettings: Encodable {
    var batch: Int
    var seqLen: Int
    var promptLen: Int
    var decodeTokens: Int
    var repeats: Int
    var warmup: Int
    var seed: UInt64
    var learningRate: Float
    var groupSize: Int

    enum CodingKeys: String, CodingKey {
        case batch
        case seqLen = "seq_len"
        case promptLen = "prompt_len"
        case decodeTokens = "decode_tokens"
        case repeats, warmup, seed
        case learningRate = "lr"
        case groupSize = "group_size"
    }
}

/// The measurements of `squeeze bench decoder`, keyed as the peer's JSON where they match.
struct DecoderBenchReport: Encodable {
    var runner: String
    var threads: Int
    var machine: MachineDescription
    var loadAverageBefore: [Double]
    var loadAverageAfter: [Double]
    var model: DecoderBenchModel
    var settings: DecoderBenchSettings
    var trainStep: DecoderBenchTiming
    var prefill: DecoderBenchTiming
    var decode: DecoderBenchDecode
    var decodeInt4: DecoderBenchDecode
    var decodeInt8: DecoderBenchDecode

    enum CodingKeys: String, CodingKey {
        case runner = "squeeze"
        case threads, machine
        case loadAverageBefore = "load_average_before"
        case loadAverageAfter = "load_average_after"
        case model, settings
        case trainStep = "train_step"
        case prefill, decode
        case decodeInt4 = "decode_int4"
        case decodeInt8 = "decode_int8"
    }

    var table: String {
        func load(_ values: [Double]) -> String { values.map { String(format: "%.2f", $0) }.joined(separator: " ") }
        func decodeLine(_ name: String, _ decode: DecoderBenchDecode) -> String {
            var line = name.padding(toLength: 17, withPad: " ", startingAt: 0)
                + String(format: "%8.1f tokens/s  %7.2f ms/token", decode.tokensPerSecond, decode.msPerToken)
            if let speedup = decode.speedupOverFP32 { line += String(format: "  %.2fx fp32", speedup) }
            line += String(format: "  (block linears %.2f MB", Double(decode.blockLinearBytes) / 1e6)
            if let same = decode.sameTokensAsFP32 { line += ", first \(same) tokens as fp32" }
            return line + ")"
        }
        let s = settings
        return [
            "squeeze \(runner), CPU backend, \(threads) threads, \(model.modelType) hidden \(model.hiddenSize), "
                + "\(model.numHiddenLayers) layers, \(model.numAttentionHeads)/\(model.numKeyValueHeads) heads, "
                + "FFN \(model.intermediateSize), vocab \(model.vocabSize), \(model.parameters) parameters; medians of \(s.repeats)",
            machine.line,
            "load average before \(load(loadAverageBefore)), after \(load(loadAverageAfter))",
            String(
                format: "train step B=%d T=%d     %8.2f ms  %8.0f tokens/s", s.batch, s.seqLen, trainStep.ms,
                trainStep.tokensPerSecond),
            String(format: "prefill       T=%d      %8.2f ms  %8.0f tokens/s", s.promptLen, prefill.ms, prefill.tokensPerSecond),
            decodeLine("decode fp32", decode),
            decodeLine("decode int4 g\(s.groupSize)", decodeInt4),
            decodeLine("decode int8 g\(s.groupSize)", decodeInt8),
        ].joined(separator: "\n")
    }
}

/// Runs the measurements in the peer's order: training, prefill, decode.
struct DecoderBenchmark {
    let model: DecoderModel
    let threads: Int
    let batch: Int
    let seqLen: Int
    let promptLen: Int
    let decodeTokens: Int
    let repeats: Int
    let warmup: Int
    let seed: UInt64
    let learningRate: Float
    let groupSize: Int

    func run() throws -> DecoderBenchReport {
        let loadBefore = Self.loadAverage()
        let backend = CPUBackend(threads: threads)
        let config = model.config
        var generator = SeededGenerator(seed: seed)
        func ids(_ count: Int) -> [Int32] {
            (0..<count).map { _ in Int32(truncatingIfNeeded: generator.next() % UInt64(config.vocabSize)) }
        }
        let trainIDs = Tensor(shape: [batch, seqLen], int32s: ids(batch * seqLen))
        let prompt = ids(promptLen).map(Int.init)

        // The quantized models first, so a bad group size fails before any timing.
        let int4 = try quantized(bits: 4)
        let int8 = try quantized(bits: 8)

        let hyperparameters = TrainingHyperparameters(
            learningRate: learningRate, weightDecay: 0.01, totalSteps: 1_000_000, maxGradientNorm: nil, seed: seed)
        var trainer = DecoderTrainer(model: model, hyperparameters: hyperparameters, backend: backend)
        var trainTimes: [Double] = []
        for index in 0..<(warmup + repeats) {
            let start = ContinuousClock.now
            _ = try trainer.step(ids: trainIDs)
            if index >= warmup { trainTimes.append(BertBenchmark.seconds(since: start)) }
        }

        let forward = model.forward(backend: backend)
        let promptIDs = Tensor(shape: [1, promptLen], int32s: prompt.map { Int32(truncatingIfNeeded: $0) })
        try model.check(promptIDs, past: 0)
        var prefillTimes: [Double] = []
        for index in 0..<(warmup + repeats) {
            let start = ContinuousClock.now
            var cache: DecoderKVCache? = DecoderKVCache(config: config, batch: 1, capacity: promptLen)
            _ = forward(promptIDs, &cache)
            if index >= warmup { prefillTimes.append(BertBenchmark.seconds(since: start)) }
        }

        let forwards = [forward, int4.model.forward(backend: backend), int8.model.forward(backend: backend)]
        var generations = [[Generation]](repeating: [], count: forwards.count)
        for index in 0..<(warmup + repeats) {
            for (variant, step) in forwards.enumerated() {
                let generation = try DecoderInference.generate(
                    config: config, prompt: prompt, maxNewTokens: decodeTokens + 1, sampling: .greedy, stopTokens: [],
                    forward: step)
                if index >= warmup { generations[variant].append(generation) }
            }
        }
        let floatBytes = model.linearBlocks.flatMap(\.layers).reduce(0) { $0 + $1.outFeatures * $1.inFeatures * 4 }
        let decodes = zip(generations, [floatBytes, int4.bytes, int8.bytes]).enumerated().map { variant, pair in
            let (runs, bytes) = pair
            let seconds = runs.map(\.decodeSeconds)
            let median = BertBenchmark.median(seconds)
            let ratios = variant == 0 ? [] : zip(generations[0], runs).map { $0.decodeSeconds / Swift.max($1.decodeSeconds, 1e-12) }
            let reference = generations[0].first?.tokens ?? []
            let tokens = runs.first?.tokens ?? []
            return DecoderBenchDecode(
                ms: median * 1e3, msPerToken: median * 1e3 / Double(decodeTokens),
                tokensPerSecond: median > 0 ? Double(decodeTokens) / median : 0, samplesMS: seconds.map { $0 * 1e3 },
                prefillMS: BertBenchmark.median(runs.map(\.prefillSeconds)) * 1e3, blockLinearBytes: bytes,
                speedupOverFP32: variant == 0 ? nil : BertBenchmark.median(ratios),
                sameTokensAsFP32: variant == 0 ? nil : zip(reference, tokens).prefix { $0 == $1 }.count)
        }

        return DecoderBenchReport(
            runner: SqueezeVersion.current, threads: threads, machine: .current, loadAverageBefore: loadBefore,
            loadAverageAfter: Self.loadAverage(),
            model: DecoderBenchModel(
                modelType: config.family.rawValue, hiddenSize: config.hiddenSize, numHiddenLayers: config.numHiddenLayers,
                numAttentionHeads: config.numAttentionHeads, numKeyValueHeads: config.numKeyValueHeads,
                intermediateSize: config.intermediateSize, vocabSize: config.vocabSize, tieWordEmbeddings: config.tieWordEmbeddings,
                parameters: model.parameterCount),
            settings: DecoderBenchSettings(
                batch: batch, seqLen: seqLen, promptLen: promptLen, decodeTokens: decodeTokens, repeats: repeats, warmup: warmup,
                seed: seed, learningRate: learningRate, groupSize: groupSize),
            trainStep: DecoderBenchTiming(seconds: trainTimes, tokens: batch * seqLen),
            prefill: DecoderBenchTiming(seconds: prefillTimes, tokens: promptLen),
            decode: decodes[0], decodeInt4: decodes[1], decodeInt8: decodes[2])
    }

    /// The model with every block Linear weight-only at `bits`, and the bytes of those layers.
    private func quantized(bits: Int) throws -> (model: QuantizedDecoderModel, bytes: Int) {
        let quantized = try WeightOnlyQuantizer.quantize(model, options: WeightOnlyOptions(bits: bits, groupSize: groupSize))
        let bytes = quantized.weights.elements.reduce(0) { total, value in
            guard case .linear(let linear) = value, case .weightOnly(let weightOnly) = linear.kernel else { return total }
            return total + weightOnly.weights.byteCount
        }
        return (quantized, bytes)
    }

    /// The 1, 5 and 15 minute load averages (empty where the system has none).
    static func loadAverage() -> [Double] {
        var values = [Double](repeating: 0, count: 3)
        let count = values.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return 0 }
            return getloadavg(base, 3)
        }
        return count > 0 ? values.prefix(Int(count)).map { ($0 * 100).rounded() / 100 } : []
    }
}
