import ArgumentParser
import Foundation
import SqueezeSupport
import SqueezeTensor

/// `squeeze bench int8`: the int8 GEMM against fp32 sgemm at the model's
/// linear-layer shapes, timed alternately in one process.
struct BenchInt8Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "int8",
        abstract: "Compare the int8 GEMM with fp32 sgemm at MiniLM's linear-layer shapes.",
        discussion: """
            For M = 2048 (batch 32 x 64 tokens) and M = 32, (N, K) in (384, 384), (1536, 384), \
            (384, 1536), and 1 and 2 threads of the CPU backend, each round times in turn:
              - sgemm: `linear` of f32 [M, K] and an f32 weight [N, K] plus bias (OpenBLAS);
              - int8 a7: `quantizedLinear(quantized:)` of u8 activations in 0...127 and int8 \
            weights, f32 output with bias (AVX-512 VNNI where the CPU has it, else the vpmaddubsw kernel on AVX2);
              - int8 a8: the same with activations in 0...255 (VNNI, else the int16 kernel on AVX2, \
            as these 8-bit weights allow vpmaddubsw only up to their fastActivationLimit);
              - linear a7: `quantizedLinear` from f32 input: quantisation to 0...127 included.
            Rates count 2·M·N·K operations. Each time is the median over --rounds rounds; each \
            ratio (sgemm time / int8 time) is the median of the per-round ratios.
            """)

    @Option(help: "Rounds; every measurement is a median over them.")
    var rounds: Int = 7

    @Option(help: "Minimum multiply-adds per timed sample (small products repeat until they reach it).")
    var work: Int = 200_000_000

    @Option(help: "Int8 kernels: fastest (AVX-512 VNNI where the CPU has it) or avx2 (as on CPUs without VNNI).")
    var int8Kernels: CPUBackend.Int8Kernels = .fastest

    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        if rounds < 1 || rounds > 10_000 { throw ValidationError("--rounds must be between 1 and 10000") }
        if work < 1 || work > 1 << 40 { throw ValidationError("--work must be between 1 and 2^40") }
    }

    func run() throws {
        let report = Int8Benchmark(rounds: rounds, work: work, int8Kernels: int8Kernels).run()
        print(json ? report.prettyJSON : report.table, terminator: json ? "" : "\n")
    }
}

/// The measurements of `squeeze bench int8`.
struct Int8BenchReport: Encodable {
    struct Row: Encodable {
        var threads: Int
        var m: Int
        var n: Int
        var k: Int
        var sgemmGFLOPS: Double
        /// Keyed by variant ("int8_a7", "int8_a8", "linear_a7").
        var int8GOPS: [String: Double]
        /// sgemm time / variant time, median of the per-round ratios.
        var speedup: [String: Double]
        /// The kernel each int8 variant ran.
        var kernels: [String: String]

        enum CodingKeys: String, CodingKey {
            case threads, m, n, k, speedup, kernels
            case sgemmGFLOPS = "sgemm_gflops"
            case int8GOPS = "int8_gops"
        }
    }

    var runner: String
    var machine: MachineDescription
    var rounds: Int
    var rows: [Row]

    enum CodingKeys: String, CodingKey {
        case runner = "squeeze"
        case machine
        case rounds, rows
    }

    var table: String {
        var lines = [
            "squeeze \(runner), CPU backend, medians of \(rounds) rounds",
            machine.line,
            "threads     M     N     K   sgemm GFLOP/s |  int8 a7 GOP/s   ×     |  int8 a8 GOP/s   ×     |  linear a7 GOP/s  ×",
        ]
        for row in rows {
            var line = String(format: "%7d %5d %5d %5d   %13.1f", row.threads, row.m, row.n, row.k, row.sgemmGFLOPS)
            for variant in Int8Benchmark.variants {
                line += String(format: " | %14.1f %5.2fx", row.int8GOPS[variant] ?? 0, row.speedup[variant] ?? 0)
            }
            lines.append(line)
        }
        let kernels = rows.first.map { row in
            Int8Benchmark.variants.map { "\($0): \(row.kernels[$0] ?? "?")" }.joined(separator: ", ")
        }
        if let kernels { lines.append("kernels: \(kernels)") }
        return lines.joined(separator: "\n")
    }
}

struct Int8Benchmark {
    let rounds: Int
    let work: Int
    let int8Kernels: CPUBackend.Int8Kernels

    /// `(M, N, K)`: MiniLM's linear layers at batch 32 × 64 tokens, and at 32 tokens.
    static let shapes = [2048, 32].flatMap { m in [(m, 384, 384), (m, 1536, 384), (m, 384, 1536)] }
    static let variants = ["int8_a7", "int8_a8", "linear_a7"]

    func run() -> Int8BenchReport {
        var rows: [Int8BenchReport.Row] = []
        for threads in [1, 2] {
            let backend = CPUBackend(threads: threads, int8Kernels: int8Kernels)
            for (m, n, k) in Self.shapes { rows.append(measure(backend: backend, m: m, n: n, k: k)) }
        }
        return Int8BenchReport(runner: SqueezeVersion.current, machine: .current, rounds: rounds, rows: rows)
    }

    private func measure(backend: CPUBackend, m: Int, n: Int, k: Int) -> Int8BenchReport.Row {
        var generator = SeededGenerator(seed: UInt64(m * 1_000_003 + n * 1009 + k))
        let x = Tensor.normal(shape: [m, k], generator: &generator)
        let weight = Tensor.normal(shape: [n, k], generator: &generator)
        let bias = Tensor.normal(shape: [n], generator: &generator)
        let weights = PackedInt8Weights(quantizing: weight)
        let sevenBit = ActivationQuantization(ranges: backend.activationRange(x, perRow: false), range: 0...127)
        let eightBit = ActivationQuantization(ranges: backend.activationRange(x, perRow: false), range: 0...255)
        let a7 = backend.quantize(x, sevenBit)
        let a8 = backend.quantize(x, eightBit)
        let operations: [String: () -> Void] = [
            "sgemm": { _ = backend.linear(x, weight: weight, bias: bias) },
            "int8_a7": {
                _ = backend.quantizedLinear(quantized: a7, quantization: sevenBit, weights: weights, bias: bias, output: .float)
            },
            "int8_a8": {
                _ = backend.quantizedLinear(quantized: a8, quantization: eightBit, weights: weights, bias: bias, output: .float)
            },
            "linear_a7": { _ = backend.quantizedLinear(x, quantization: sevenBit, weights: weights, bias: bias) },
        ]
        let repeats = Swift.max(1, work / (m * n * k))
        let order = ["sgemm"] + Self.variants
        var times: [String: [Double]] = [:]
        for name in order { operations[name]?() }  // warm-up: pages, pools, caches
        for _ in 0..<rounds {
            for name in order {
                guard let operation = operations[name] else { continue }
                let start = ContinuousClock.now
                for _ in 0..<repeats { operation() }
                times[name, default: []].append(BertBenchmark.seconds(since: start) / Double(repeats))
            }
        }
        let operationCount = 2 * Double(m * n * k)
        let sgemm = times["sgemm"] ?? []
        var rates: [String: Double] = [:]
        var speedups: [String: Double] = [:]
        for variant in Self.variants {
            let variantTimes = times[variant] ?? []
            rates[variant] = operationCount / BertBenchmark.median(variantTimes) / 1e9
            speedups[variant] = BertBenchmark.median(zip(sgemm, variantTimes).map { $0 / $1 })
        }
        func kernel(activationMax: Int32) -> String {
            backend.int8KernelName(activationMax: activationMax, fastActivationLimit: weights.fastActivationLimit)
        }
        return Int8BenchReport.Row(
            threads: backend.threads, m: m, n: n, k: k, sgemmGFLOPS: operationCount / BertBenchmark.median(sgemm) / 1e9,
            int8GOPS: rates, speedup: speedups,
            kernels: ["int8_a7": kernel(activationMax: 127), "int8_a8": kernel(activationMax: 255), "linear_a7": kernel(activationMax: 127)])
    }
}

extension CPUBackend.Int8Kernels: ExpressibleByArgument {}
