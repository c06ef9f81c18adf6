import ArgumentParser
import Foundation
import SqueezeSupport
import SqueezeEngine
import SqueezeModels
import SqueezeTensor

#if canImport(Glibc)
import Glibc
#endif

/// `squeeze bench`: measurements of this machine's numerics, made to be
/// compared with a peer run in the same session (Benchmarks/bert/run.sh).
public struct BenchCommand: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure training and inference speed on this machine.",
        subcommands: [
            BenchBertCommand.self, BenchInt8Command.self, BenchWeightOnlyCommand.self, BenchQuantizedBertCommand.self,
            BenchDecoderCommand.self,
        ])
}

/// What `Benchmarks/bert/pytorch_peer.py` measures, on the CPU backend.
struct BenchBertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bert",
        abstract: "Time BERT fine-tuning steps, inference and sgemm (the PyTorch peer's measurements).",
        discussion: """
            Loads a BERT checkpoint directory (config.json + model.safetensors) and measures, with \
            random token ids from a fixed seed and every attention mask 1:
              - inference (no tape, dropout off): batch 32 x 64 tokens and batch 1 x 32 tokens;
              - one fine-tuning step, batch 32 x 64 tokens: forward and backward with dropout on, \
            global-norm clipping at 1.0, AdamW on every parameter (weight decay 0.01 except biases \
            and LayerNorm weights);
              - sgemm GFLOP/s through the backend at the model's product shapes (M, N, K);
              - peak resident memory (ru_maxrss) before and after the training steps.
            Times are medians over --steps runs after --warmup runs (batch 1 runs 5x --steps).
            """)

    @Option(name: .customLong("model"), help: "A BERT checkpoint directory (config.json, model.safetensors).")
    var model: String

    @Option(help: "Threads of the CPU backend.")
    var threads: Int = 2

    @Option(help: "Timed runs per measurement (the median is reported).")
    var steps: Int = 10

    @Option(help: "Untimed runs before each measurement.")
    var warmup: Int = 3

    @Flag(help: "Print the results as JSON (the peer script's keys).")
    var json = false

    @Flag(help: "Measure only sgemm (run.sh adds such rounds: GEMM rates are the noisiest numbers on a shared machine).")
    var sgemmOnly = false

    func validate() throws {
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if steps < 1 || steps > 100_000 { throw ValidationError("--steps must be between 1 and 100000") }
        if warmup < 0 || warmup > 100_000 { throw ValidationError("--warmup must be between 0 and 100000") }
    }

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw UserError("--model \(model): not a directory")
        }
        let loaded: BertModel
        do {
            loaded = try BertModel(directory: model)
        } catch {
            throw UserError("--model \(model): \(error)")
        }
        let benchmark = BertBenchmark(model: loaded, threads: threads, steps: steps, warmup: warmup)
        if sgemmOnly {
            let report = SgemmBenchReport(
                runner: SqueezeVersion.current, threads: threads, machine: .current,
                sgemmGFLOPS: benchmark.sgemmRates(backend: CPUBackend(threads: threads)))
            print(json ? report.prettyJSON : report.table, terminator: json ? "" : "\n")
            return
        }
        let report: BertBenchReport
        do {
            report = try benchmark.run()
        } catch {
            throw UserError("cannot run the benchmark on \(model): \(error)")
        }
        print(json ? report.prettyJSON : report.table, terminator: json ? "" : "\n")
    }
}

/// The measurements of `squeeze bench bert`, keyed as the peer script's JSON.
struct BertBenchReport: Encodable {
    var runner: String
    var threads: Int
    var machine: MachineDescription
    var trainStep: Double
    var trainStepTimes: [Double]
    var inferBatch32: Double
    var inferBatch1: Double
    var sgemmGFLOPS: [String: Double]
    var peakRSSBeforeTraining: Double
    var peakRSS: Double

    enum CodingKeys: String, CodingKey {
        case runner = "squeeze"
        case threads
        case machine
        case trainStep = "train_step_b32_t64"
        case trainStepTimes = "train_step_times"
        case inferBatch32 = "infer_b32_t64"
        case inferBatch1 = "infer_b1_t32"
        case sgemmGFLOPS = "sgemm_gflops"
        case peakRSSBeforeTraining = "peak_rss_mib_before_training"
        case peakRSS = "peak_rss_mib"
    }

    var table: String {
        func seconds(_ value: Double) -> String {
            value < 0.1 ? String(format: "%.2f ms", value * 1000) : String(format: "%.3f s", value)
        }
        var lines = [
            "squeeze \(runner), CPU backend, \(threads) threads",
            machine.line,
            "train step  B=32 T=64   \(seconds(trainStep))",
            "inference   B=32 T=64   \(seconds(inferBatch32))",
            "inference   B=1  T=32   \(seconds(inferBatch1))",
        ]
        lines += SgemmBenchReport.lines(sgemmGFLOPS)
        lines.append(String(format: "peak RSS before training  %.0f MiB", peakRSSBeforeTraining))
        lines.append(String(format: "peak RSS after training   %.0f MiB", peakRSS))
        return lines.joined(separator: "\n")
    }
}

/// The measurements of `squeeze bench bert --sgemm-only`.
struct SgemmBenchReport: Encodable {
    var runner: String
    var threads: Int
    var machine: MachineDescription
    var sgemmGFLOPS: [String: Double]

    enum CodingKeys: String, CodingKey {
        case runner = "squeeze"
        case threads
        case machine
        case sgemmGFLOPS = "sgemm_gflops"
    }

    var table: String {
        (["squeeze \(runner), CPU backend, \(threads) threads", machine.line] + Self.lines(sgemmGFLOPS))
            .joined(separator: "\n")
    }

    static func lines(_ rates: [String: Double]) -> [String] {
        rates.sorted(by: { $0.key < $1.key }).map { shape, rate in
            "sgemm \(shape.padding(toLength: 16, withPad: " ", startingAt: 0)) \(String(format: "%.1f", rate)) GFLOP/s"
        }
    }
}

/// Runs the measurements in the peer's order: inference, sgemm, then training
/// (so the first peak-memory reading has seen no optimiser state).
struct BertBenchmark {
    let model: BertModel
    let threads: Int
    let steps: Int
    let warmup: Int

    /// `(M, N, K)` of the model's products at batch 32 × 64 tokens, as the peer's.
    static let gemmShapes = [(2048, 384, 384), (2048, 1536, 384), (2048, 384, 1536)]

    func run() throws -> BertBenchReport {
        let backend = CPUBackend(threads: threads)
        var generator = SeededGenerator(seed: 0)
        let labelCount = model.config.labels.count
        func batch(_ size: Int, _ length: Int) -> (BertBatch, Tensor) {
            let vocabulary = model.config.vocabSize
            let low = vocabulary > 1000 ? 1000 : 0
            let ids = (0..<(size * length)).map { _ in Int32(low + Int(generator.next() % UInt64(vocabulary - low))) }
            let labels = (0..<size).map { _ in Int32(generator.next() % UInt64(labelCount)) }
            return (
                BertBatch(inputIDs: Tensor(shape: [size, length], int32s: ids)),
                Tensor(shape: [size], int32s: labels))
        }

        let (large, _) = batch(32, 64)
        let (single, _) = batch(1, 32)
        var failure: BertInputError?
        func infer(_ input: BertBatch) {
            do { _ = try model.logits(input, backend: backend) } catch { failure = error }
        }
        let inferBatch32 = Self.median(steps: steps, warmup: warmup) { infer(large) }
        let inferBatch1 = Self.median(steps: steps * 5, warmup: warmup) { infer(single) }
        if let failure { throw failure }

        let rates = sgemmRates(backend: backend)
        let rssBeforeTraining = Self.peakRSSMiB()

        let options = TrainingHyperparameters(
            learningRate: 5e-5, weightDecay: 0.01, totalSteps: 1_000_000, maxGradientNorm: 1, seed: 0)
        var trainer = BertClassifierTrainer(model: model, options: options, backend: backend)
        let (trainingBatch, labels) = batch(32, 64)
        var times: [Double] = []
        for index in 0..<(warmup + steps) {
            let start = ContinuousClock.now
            _ = try trainer.step(batch: trainingBatch, labels: labels)
            if index >= warmup { times.append(Self.seconds(since: start)) }
        }
        return BertBenchReport(
            runner: SqueezeVersion.current, threads: threads, machine: .current,
            trainStep: Self.median(times), trainStepTimes: times, inferBatch32: inferBatch32, inferBatch1: inferBatch1,
            sgemmGFLOPS: rates, peakRSSBeforeTraining: rssBeforeTraining, peakRSS: Self.peakRSSMiB())
    }

    /// GFLOP/s of `backend.matmul` at `gemmShapes`, keyed "MxNxK" (median of 5 × `steps` products).
    func sgemmRates(backend: CPUBackend) -> [String: Double] {
        var rates: [String: Double] = [:]
        for (m, n, k) in Self.gemmShapes {
            var values = SeededGenerator(seed: 1)
            let a = Tensor.normal(shape: [m, k], generator: &values)
            let b = Tensor.normal(shape: [k, n], generator: &values)
            let seconds = Self.median(steps: steps * 5, warmup: 3) {
                _ = backend.matmul(a, b, transposeA: false, transposeB: false, alpha: 1)
            }
            rates["\(m)x\(n)x\(k)"] = 2 * Double(m * n * k) / seconds / 1e9
        }
        return rates
    }

    /// Median wall time of `body` over `steps` runs after `warmup` untimed ones.
    static func median(steps: Int, warmup: Int, _ body: () -> Void) -> Double {
        for _ in 0..<warmup { body() }
        var times: [Double] = []
        times.reserveCapacity(steps)
        for _ in 0..<steps {
            let start = ContinuousClock.now
            body()
            times.append(seconds(since: start))
        }
        return median(times)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    /// The process's peak resident set so far, in MiB (Linux reports KiB).
    static func peakRSSMiB() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
        #else
        getrusage(RUSAGE_SELF, &usage)
        return Double(usage.ru_maxrss) / 1_048_576
        #endif
    }
}
