import ArgumentParser
import Foundation
import SqueezeSupport
import SqueezeCompress
import SqueezeModels
import SqueezeTensor

/// `squeeze bench quantized-bert`: the whole static W8A8 BERT forward pass
/// against the fp32 one, interleaved in one process, with a per-op breakdown.
struct BenchQuantizedBertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantized-bert",
        abstract: "Time the static int8 BERT forward pass against fp32, with a per-op breakdown.",
        discussion: """
            Builds a MiniLM-L6-H384-shaped BERT (6 layers, hidden 384, 12 heads, FFN 1536) with random \
            weights from a fixed seed, or loads --model, and quantizes it statically (int8 weights \
            within +-63, u8 per-tensor activations, the mse observer) on 2 random batches of 8 x 64 \
            tokens. Then times, on the CPU backend, the fp32 and the int8 classifier's logits at batch \
            32 x 64 and batch 1 x 32 tokens, alternating fp32 and int8 run by run; each ratio is the \
            median of the per-round ratios fp32 time / int8 time. The breakdown runs each model \
            --profile-rounds more times through a backend that times every op (medians per op \
            category; the profiled totals include its small overhead). "int8 op-by-op" is the same \
            int8 model without the fused int8 paths (InferenceOperations(fusing: false)): the same \
            logits, every quantisation a pass of its own, as before the fusions. The FFN line times \
            the feed-forward block's first half alone (int8 product 2048 x 1536 x 384, GELU, codes of \
            the next layer), op by op and fused, 3 x --rounds times interleaved, after checking that \
            both give the same codes.
            """)

    @Option(name: .customLong("model"), help: "A BERT checkpoint directory (config.json, model.safetensors); default: random weights.")
    var model: String?

    @Option(help: "Threads of the CPU backend.")
    var threads: Int = 2

    @Option(help: "Timed rounds at batch 32 (batch 1 runs 10x as many); each round runs fp32 then int8.")
    var rounds: Int = 10

    @Option(help: "Untimed rounds before the timed ones.")
    var warmup: Int = 2

    @Option(help: "Profiled runs of each model at batch 32 for the per-op breakdown (0: none).")
    var profileRounds: Int = 3

    @Option(help: "Int8 kernels: fastest (AVX-512 VNNI where the CPU has it) or avx2 (as on CPUs without VNNI).")
    var int8Kernels: CPUBackend.Int8Kernels = .fastest

    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if rounds < 1 || rounds > 10_000 { throw ValidationError("--rounds must be between 1 and 10000") }
        if warmup < 0 || warmup > 10_000 { throw ValidationError("--warmup must be between 0 and 10000") }
        if profileRounds < 0 || profileRounds > 10_000 { throw ValidationError("--profile-rounds must be between 0 and 10000") }
    }

    func run() throws {
        let floatModel: BertModel
        do {
            if let model {
                floatModel = try BertModel(directory: model)
            } else {
                floatModel = try BertModel(randomWithConfig: QuantizedBertBenchmark.miniLMConfig, seed: 0)
            }
        } catch {
            throw UserError("--model \(model ?? "<random>"): \(error)")
        }
        let benchmark = QuantizedBertBenchmark(
            model: floatModel, threads: threads, int8Kernels: int8Kernels, rounds: rounds, warmup: warmup,
            profileRounds: profileRounds)
        let report: QuantizedBertBenchReport
        do {
            report = try benchmark.run(source: model ?? "random MiniLM-L6-H384")
        } catch {
            throw UserError("cannot run the benchmark: \(error)")
        }
        print(json ? report.prettyJSON : report.table, terminator: json ? "" : "\n")
    }
}

/// The measurements of `squeeze bench quantized-bert`.
struct QuantizedBertBenchReport: Encodable {
    struct Timing: Encodable {
        var batch: Int
        var tokens: Int
        var fp32: Double
        var int8: Double
        var int8OpByOp: Double
        /// Median of the per-round ratios fp32 / int8.
        var speedup: Double
        var speedupOpByOp: Double

        enum CodingKeys: String, CodingKey {
            case batch, tokens, fp32, int8, speedup
            case int8OpByOp = "int8_op_by_op"
            case speedupOpByOp = "speedup_op_by_op"
        }
    }

    var runner: String
    var model: String
    var threads: Int
    var machine: MachineDescription
    /// The kernel of the int8 products (their activations are 8-bit, weights within ±63).
    var int8Kernel: String
    var rounds: Int
    var timings: [Timing]
    /// The feed-forward block's first half alone (int8 product, GELU, codes of
    /// the second layer) at 2048 x 1536 x 384: median seconds op by op
    /// (product to f32, GELU, quantize) and fused, and the median ratio.
    var feedForwardOpByOp: Double
    var feedForwardFused: Double
    var feedForwardSpeedup: Double
    /// Median seconds per op category over the profiled runs, per model ("fp32", "int8 op-by-op", "int8").
    var breakdown: [String: [String: Double]]

    enum CodingKeys: String, CodingKey {
        case runner = "squeeze"
        case machine
        case int8Kernel = "int8_kernel"
        case model, threads, rounds, timings, breakdown
        case feedForwardOpByOp = "ffn_gelu_codes_op_by_op"
        case feedForwardFused = "ffn_gelu_codes_fused"
        case feedForwardSpeedup = "ffn_gelu_codes_speedup"
    }

    var table: String {
        func milliseconds(_ seconds: Double) -> String { String(format: "%8.2f ms", seconds * 1e3) }
        var lines = [
            "squeeze \(runner), CPU backend, \(threads) threads, int8 \(int8Kernel), \(model), medians of \(rounds) rounds",
            machine.line,
        ]
        for timing in timings {
            lines.append(
                "B=\(timing.batch) T=\(timing.tokens)".padding(toLength: 12, withPad: " ", startingAt: 0)
                    + "fp32 \(milliseconds(timing.fp32))  int8 op-by-op \(milliseconds(timing.int8OpByOp)) "
                    + String(format: "(%.2fx)", timing.speedupOpByOp)
                    + "  int8 \(milliseconds(timing.int8)) " + String(format: "(%.2fx)", timing.speedup))
        }
        lines.append(
            "FFN int8 GEMM 2048x1536x384 -> GELU -> codes: op-by-op \(milliseconds(feedForwardOpByOp))  fused "
                + "\(milliseconds(feedForwardFused)) " + String(format: "(%.2fx)", feedForwardSpeedup))
        if !breakdown.isEmpty {
            let models = QuantizedBertBenchmark.variants
            lines.append("per-op breakdown at B=32 T=64 (profiled):")
            lines.append(
                "category".padding(toLength: 34, withPad: " ", startingAt: 0)
                    + models.map { $0.padding(toLength: 15, withPad: " ", startingAt: 0) }.joined())
            for category in ProfilingBackend.Category.allCases.map(\.rawValue) + ["total"] {
                guard models.contains(where: { breakdown[$0]?[category] != nil }) else { continue }
                lines.append(
                    category.padding(toLength: 34, withPad: " ", startingAt: 0)
                        + models.map { "\(milliseconds(breakdown[$0]?[category] ?? 0))    " }.joined())
            }
        }
        return lines.joined(separator: "\n")
    }
}

struct QuantizedBertBenchmark {
    let model: BertModel
    let threads: Int
    let int8Kernels: CPUBackend.Int8Kernels
    let rounds: Int
    let warmup: Int
    let profileRounds: Int

    /// MiniLM-L6-H384 (all-MiniLM-L6-v2's encoder) with a two-label classifier.
    /// The forward passes compared, in the order each round runs them.
    static let variants = ["fp32", "int8 op-by-op", "int8"]

    static let miniLMConfig = BertConfig(
        vocabSize: 30_522, hiddenSize: 384, numHiddenLayers: 6, numAttentionHeads: 12, intermediateSize: 1536)

    func run(source: String) throws -> QuantizedBertBenchReport {
        let backend = CPUBackend(threads: threads, int8Kernels: int8Kernels)
        var generator = SeededGenerator(seed: 0)
        func batch(_ size: Int, _ length: Int) -> BertBatch {
            let vocabulary = model.config.vocabSize
            let low = vocabulary > 1000 ? 1000 : 0
            let ids = (0..<(size * length)).map { _ in Int32(low + Int(generator.next() % UInt64(vocabulary - low))) }
            return BertBatch(inputIDs: Tensor(shape: [size, length], int32s: ids))
        }
        let calibration = [batch(8, 64), batch(8, 64)]
        let quantized = try W8A8Quantizer.quantizeStatic(
            model, calibration: calibration, evaluation: calibration, evaluatedOnHeldOut: false,
            settings: CalibrationSettings(observer: .mse), backend: backend
        ).model

        let forwards: [(BertBatch, any Backend) throws -> Void] = [
            { _ = try model.logits($0, backend: $1) },
            { _ = try quantized.logits($0, backend: $1, fusing: false) },
            { _ = try quantized.logits($0, backend: $1) },
        ]

        var timings: [QuantizedBertBenchReport.Timing] = []
        for (size, length, runs) in [(32, 64, rounds), (1, 32, rounds * 10)] {
            let input = batch(size, length)
            var times = [[Double]](repeating: [], count: forwards.count)
            for round in 0..<(warmup + runs) {
                for (index, forward) in forwards.enumerated() {
                    let start = ContinuousClock.now
                    try forward(input, backend)
                    if round >= warmup { times[index].append(BertBenchmark.seconds(since: start)) }
                }
            }
            func ratio(_ index: Int) -> Double { BertBenchmark.median(zip(times[0], times[index]).map { $0 / $1 }) }
            timings.append(
                QuantizedBertBenchReport.Timing(
                    batch: size, tokens: length, fp32: BertBenchmark.median(times[0]), int8: BertBenchmark.median(times[2]),
                    int8OpByOp: BertBenchmark.median(times[1]), speedup: ratio(2), speedupOpByOp: ratio(1)))
        }

        let feedForward = try feedForwardTimes(backend: backend, &generator)

        var breakdown: [String: [String: Double]] = [:]
        if profileRounds > 0 {
            let profiler = ProfilingBackend(base: backend)
            let input = batch(32, 64)
            var samples: [String: [String: [Double]]] = [:]
            for _ in 0..<profileRounds {
                for (name, forward) in zip(Self.variants, forwards) {
                    profiler.reset()
                    let start = ContinuousClock.now
                    try forward(input, profiler)
                    samples[name, default: [:]]["total", default: []].append(BertBenchmark.seconds(since: start))
                    for (category, seconds) in profiler.seconds {
                        samples[name, default: [:]][category.rawValue, default: []].append(seconds)
                    }
                }
            }
            breakdown = samples.mapValues { $0.mapValues(BertBenchmark.median) }
        }
        return QuantizedBertBenchReport(
            runner: SqueezeVersion.current, model: source, threads: threads, machine: .current,
            int8Kernel: backend.int8KernelName(activationMax: 255, fastActivationLimit: 255), rounds: rounds,
            timings: timings, feedForwardOpByOp: feedForward.opByOp, feedForwardFused: feedForward.fused,
            feedForwardSpeedup: feedForward.speedup, breakdown: breakdown)
    }

    /// The first half of a MiniLM feed-forward block at batch 32 x 64 tokens,
    /// interleaved 3 x --rounds times: random u8 codes times int8 weights
    /// within +-63, then GELU and the codes of the next layer.
    func feedForwardTimes(backend: CPUBackend, _ generator: inout SeededGenerator) throws -> (opByOp: Double, fused: Double, speedup: Double) {
        let (m, n, k) = (2048, 1536, 384)
        let codes = Tensor(shape: [m, k], uint8s: (0..<(m * k)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        let weights = PackedInt8Weights(quantizing: Tensor.normal(shape: [n, k], standardDeviation: 0.05, generator: &generator), bits: 7)
        let bias = Tensor.normal(shape: [n], standardDeviation: 0.1, generator: &generator)
        let input = ActivationQuantization(scale: 0.02, zeroPoint: 128)
        let output = ActivationQuantization(scale: 0.01, zeroPoint: 20)
        let candidates: [() -> Tensor] = [
            {
                let product = backend.quantizedLinear(quantized: codes, quantization: input, weights: weights, bias: bias, output: .float)
                return backend.quantize(backend.gelu(product), output)
            },
            { backend.quantizedLinear(quantized: codes, quantization: input, weights: weights, bias: bias, geluCodes: output) },
        ]
        guard candidates[0]().uint8s == candidates[1]().uint8s else {
            throw UserError("the fused feed-forward codes differ from the op-by-op ones")
        }
        var times: [[Double]] = [[], []]
        for _ in 0..<(rounds * 3) {
            for (index, candidate) in candidates.enumerated() {
                let start = ContinuousClock.now
                _ = candidate()
                times[index].append(BertBenchmark.seconds(since: start))
            }
        }
        return (
            BertBenchmark.median(times[0]), BertBenchmark.median(times[1]),
            BertBenchmark.median(zip(times[0], times[1]).map { $0 / $1 })
        )
    }
}
