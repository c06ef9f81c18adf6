import ArgumentParser
import CKernels
import Foundation
import SqueezeSupport
import SqueezeTensor

/// `squeeze bench weight-only`: weight-only int4/int8 products against the
/// fp32 product they replace, at MiniLM-L6-H384's linear-layer shapes.
struct BenchWeightOnlyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weight-only",
        abstract: "Time weight-only int4/int8 products against fp32 sgemm at MiniLM's shapes.",
        discussion: """
            For each (N, K) of MiniLM-L6-H384's linear layers and each row count M, times on the CPU \
            backend, interleaved run by run in one process: the fp32 linear (OpenBLAS sgemm on the \
            backend's tiles), and weightOnlyLinear with int4 and int8 weights (symmetric, groups of \
            --group-size) on both of its kernels, fused and dequantise + sgemm; the automatic choice is \
            the fused kernel up to \(CPUBackend.weightOnlyFusedRows) rows. For M = 1 also cblas_sgemv \
            (one thread) as the best fp32 matrix-vector product. Random activations and N(0, 0.05) \
            weights from a fixed seed, bias on. Times are medians over --steps runs (10x for M = 1, 3x \
            for M <= 64) after --warmup runs; ratios are fp32 time / weight-only time.
            "streamed" repeats M = 1 with each product on the next of enough weight copies (64 MiB of \
            fp32) that the weights come from memory rather than cache, as a whole model's do at batch 1.
            """)

    @Option(help: "Threads of the CPU backend.")
    var threads: Int = 2

    @Option(help: "Timed runs per measurement (the median is reported).")
    var steps: Int = 20

    @Option(help: "Untimed runs before each measurement.")
    var warmup: Int = 3

    @Option(help: "Consecutive k sharing a scale (must divide 384).")
    var groupSize: Int = 32

    @Option(parsing: .upToNextOption, help: "Row counts M to measure.")
    var rows: [Int] = [1, 32, 2048]

    @Flag(help: "Skip the streamed (weights from memory) measurements.")
    var noStreamed = false

    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        if threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if steps < 1 || steps > 100_000 { throw ValidationError("--steps must be between 1 and 100000") }
        if warmup < 0 || warmup > 100_000 { throw ValidationError("--warmup must be between 0 and 100000") }
        if rows.isEmpty || rows.contains(where: { $0 < 1 || $0 > 65_536 }) {
            throw ValidationError("--rows must be between 1 and 65536")
        }
        do {
            try PackedGroupWeights.validate(bits: 4, groupSize: groupSize, inputCount: 384)
        } catch {
            throw ValidationError("--group-size: \(error)")
        }
    }

    func run() throws {
        let benchmark = WeightOnlyBenchmark(
            threads: threads, steps: steps, warmup: warmup, groupSize: groupSize, rows: rows, streamed: !noStreamed)
        let report = try benchmark.run()
        print(json ? report.prettyJSON : report.table, terminator: json ? "" : "\n")
    }
}

/// One row of `squeeze bench weight-only`: seconds per product (medians).
struct WeightOnlyBenchRow: Encodable {
    var m: Int
    var n: Int
    var k: Int
    /// Weights rotating through copies larger than the caches.
    var streamed: Bool
    var fp32: Double
    /// cblas_sgemv, one thread (M = 1 only).
    var sgemv: Double?
    var int4Fused: Double
    var int4Sgemm: Double?
    var int8Fused: Double
    var int8Sgemm: Double?
    /// The kernel `weightOnlyLinear` picks for M rows.
    var automatic: String

    enum CodingKeys: String, CodingKey {
        case m, n, k, streamed, fp32, sgemv, automatic
        case int4Fused = "int4_fused"
        case int4Sgemm = "int4_dequantized_sgemm"
        case int8Fused = "int8_fused"
        case int8Sgemm = "int8_dequantized_sgemm"
    }

    var int4: Double { automatic == WeightOnlyKernel.dequantizedSgemm.rawValue ? int4Sgemm ?? int4Fused : int4Fused }
    var int8: Double { automatic == WeightOnlyKernel.dequantizedSgemm.rawValue ? int8Sgemm ?? int8Fused : int8Fused }
}

/// Bytes of one layer's weights, fp32 and packed.
struct WeightOnlyBenchSize: Encodable {
    var n: Int
    var k: Int
    var fp32: Int
    var int4: Int
    var int8: Int
}

struct WeightOnlyBenchReport: Encodable {
    var runner: String
    var threads: Int
    var machine: MachineDescription
    var groupSize: Int
    var fusedRows: Int
    var sizes: [WeightOnlyBenchSize]
    var results: [WeightOnlyBenchRow]

    enum CodingKeys: String, CodingKey {
        case runner = "squeeze"
        case threads
        case machine
        case groupSize = "group_size"
        case fusedRows = "fused_rows"
        case sizes, results
    }

    var table: String {
        func time(_ seconds: Double) -> String {
            seconds < 1e-3 ? String(format: "%7.1f us", seconds * 1e6) : String(format: "%7.2f ms", seconds * 1e3)
        }
        func ratio(_ fp32: Double, _ other: Double) -> String { String(format: "%5.2fx", fp32 / other) }
        var lines = [
            "squeeze \(runner), CPU backend, \(threads) threads, groups of \(groupSize), "
                + "fused up to \(fusedRows) rows; ratio = fp32 time / weight-only time",
            machine.line,
        ]
        for size in sizes {
            let bits = { (bytes: Int) in String(format: "%.2f", Double(bytes * 8) / Double(size.n * size.k)) }
            lines.append(
                "weights \(size.n)x\(size.k): fp32 \(size.fp32) B, int4 \(size.int4) B (\(bits(size.int4)) bits/weight), "
                    + "int8 \(size.int8) B (\(bits(size.int8)) bits/weight)")
        }
        for row in results {
            let shape = "\(row.m)x\(row.n)x\(row.k)\(row.streamed ? " streamed" : "")"
            var line = shape.padding(toLength: 24, withPad: " ", startingAt: 0) + "fp32 \(time(row.fp32))"
            line += " | int4 \(time(row.int4)) \(ratio(row.fp32, row.int4))"
            line += " | int8 \(time(row.int8)) \(ratio(row.fp32, row.int8))"
            line += " | \(row.automatic)"
            if let int4Sgemm = row.int4Sgemm, let int8Sgemm = row.int8Sgemm {
                line += "; fused int4 \(time(row.int4Fused)) int8 \(time(row.int8Fused)),"
                line += " dequantize+sgemm int4 \(time(int4Sgemm)) int8 \(time(int8Sgemm))"
            }
            if let sgemv = row.sgemv { line += "; fp32 sgemv (1 thread) \(time(sgemv))" }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

/// The measurements of `squeeze bench weight-only`.
struct WeightOnlyBenchmark {
    let threads: Int
    let steps: Int
    let warmup: Int
    let groupSize: Int
    let rows: [Int]
    let streamed: Bool

    /// (N, K) of MiniLM-L6-H384's linear layers: attention projections, FFN up, FFN down.
    static let shapes = [(384, 384), (1536, 384), (384, 1536)]

    /// fp32 weights the streamed measurements rotate through.
    static let streamedBytes = 64 << 20

    /// One layer's weights: fp32, int4, int8.
    struct Layer {
        let weight: Tensor
        let int4: PackedGroupWeights
        let int8: PackedGroupWeights
    }

    func run() throws -> WeightOnlyBenchReport {
        let backend = CPUBackend(threads: threads)
        var generator = SeededGenerator(seed: 0)
        var sizes: [WeightOnlyBenchSize] = []
        var results: [WeightOnlyBenchRow] = []
        for (n, k) in Self.shapes {
            let layer = try Self.layer(n: n, k: k, groupSize: groupSize, &generator)
            sizes.append(
                WeightOnlyBenchSize(n: n, k: k, fp32: n * k * 4, int4: layer.int4.byteCount, int8: layer.int8.byteCount))
            let bias = Tensor.uniform(shape: [n], generator: &generator)
            for m in rows {
                let x = Tensor.uniform(shape: [m, k], generator: &generator)
                results.append(measure(backend, [layer], x: x, bias: bias, streamed: false))
            }
            if streamed {
                let copies = Swift.max(2, Self.streamedBytes / (n * k * 4))
                var layers = [layer]
                for _ in 1..<copies { layers.append(try Self.layer(n: n, k: k, groupSize: groupSize, &generator)) }
                let x = Tensor.uniform(shape: [1, k], generator: &generator)
                results.append(measure(backend, layers, x: x, bias: bias, streamed: true))
            }
        }
        return WeightOnlyBenchReport(
            runner: SqueezeVersion.current, threads: threads, machine: .current, groupSize: groupSize,
            fusedRows: CPUBackend.weightOnlyFusedRows, sizes: sizes, results: results)
    }

    static func layer(n: Int, k: Int, groupSize: Int, _ generator: inout SeededGenerator) throws -> Layer {
        let weight = Tensor.normal(shape: [n, k], standardDeviation: 0.05, generator: &generator)
        return Layer(
            weight: weight, int4: try PackedGroupWeights(quantizing: weight, bits: 4, groupSize: groupSize),
            int8: try PackedGroupWeights(quantizing: weight, bits: 8, groupSize: groupSize))
    }

    /// Medians of every candidate, run in turn within each step; each run
    /// takes the next of `layers` (one layer: always the same weights).
    private func measure(_ backend: CPUBackend, _ layers: [Layer], x: Tensor, bias: Tensor, streamed: Bool) -> WeightOnlyBenchRow {
        let (m, k) = (x.shape[0], x.shape[1])
        let n = layers[0].weight.shape[0]
        var candidates: [(Int) -> Void] = [
            { _ = backend.linear(x, weight: layers[$0].weight, bias: bias) },
            { _ = backend.weightOnlyLinear(x, weights: layers[$0].int4, bias: bias, kernel: .fused) },
            { _ = backend.weightOnlyLinear(x, weights: layers[$0].int8, bias: bias, kernel: .fused) },
        ]
        if !streamed {
            candidates.append { _ = backend.weightOnlyLinear(x, weights: layers[$0].int4, bias: bias, kernel: .dequantizedSgemm) }
            candidates.append { _ = backend.weightOnlyLinear(x, weights: layers[$0].int8, bias: bias, kernel: .dequantizedSgemm) }
        }
        let sgemvIndex = candidates.count
        if m == 1 {
            var y = [Float](repeating: 0, count: n)
            let input = x.floats
            candidates.append { index in
                layers[index].weight.withUnsafeFloats { w in
                    y.withUnsafeMutableBufferPointer { out in
                        sq_sgemv(0, Int32(n), Int32(k), 1, w.baseAddress, Int32(k), input, 1, 0, out.baseAddress, 1)
                    }
                }
            }
        }
        let runs = steps * (m == 1 ? 10 : m <= 64 ? 3 : 1)
        var times = [[Double]](repeating: [], count: candidates.count)
        var next = 0
        for run in 0..<(warmup + runs) {
            for (index, candidate) in candidates.enumerated() {
                let start = ContinuousClock.now
                candidate(next)
                if run >= warmup { times[index].append(BertBenchmark.seconds(since: start)) }
            }
            next = (next + 1) % layers.count
        }
        let medians = times.map { BertBenchmark.median($0) }
        let automatic: WeightOnlyKernel = m <= CPUBackend.weightOnlyFusedRows ? .fused : .dequantizedSgemm
        return WeightOnlyBenchRow(
            m: m, n: n, k: k, streamed: streamed, fp32: medians[0], sgemv: m == 1 ? medians[sgemvIndex] : nil,
            int4Fused: medians[1], int4Sgemm: streamed ? nil : medians[3], int8Fused: medians[2],
            int8Sgemm: streamed ? nil : medians[4], automatic: automatic.rawValue)
    }
}
