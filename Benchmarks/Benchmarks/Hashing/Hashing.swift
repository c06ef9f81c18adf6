// SHA-256 throughput of a 1 GiB file in the page cache: Squeeze's
// `Hashing.sha256(fileAt:)` against coreutils' `sha256sum` (the peer) on the
// same bytes, measured in this run. `openssl dgst -sha256`, which uses the
// CPU's SHA instructions as Squeeze does, is timed too when installed, as the
// stronger reference. Goal: at least 1.5 GB/s.
import Benchmark
import BenchmarkSupport
import Foundation
import SqueezeSupport

#if canImport(Glibc)
import Glibc
#endif

/// 2^30 bytes; throughput is reported in decimal GB/s (10^9 bytes per second).
let fileSize = 1 << 30
let suite = "Hashing"

/// The file both cases hash; each benchmark process makes its own.
struct HashedFile {
    let directory: ScratchDirectory
    let path: String

    /// Writes `fileSize` bytes of deterministic pseudo-random content
    /// (xorshift64*, fixed seed) and fsyncs them, so the pages are clean
    /// and cached and no writeback competes with the measurement.
    static func make() throws -> HashedFile {
        let directory = try ScratchDirectory(label: "hashing")
        let path = directory.appending("data.bin")
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw SystemCallError("open", path) }
        defer { close(descriptor) }
        let chunkWords = (1 << 20) / 8
        var chunk = [UInt64](repeating: 0, count: chunkWords)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<(fileSize / (chunkWords * 8)) {
            for index in chunk.indices {
                state ^= state >> 12
                state ^= state << 25
                state ^= state >> 27
                chunk[index] = state &* 0x2545_F491_4F6C_DD1D
            }
            try chunk.withUnsafeBytes { try writeAll(descriptor, $0, path: path) }
        }
        guard fsync(descriptor) == 0 else { throw SystemCallError("fsync", path) }
        return HashedFile(directory: directory, path: path)
    }

    /// A new file, read once so every page is resident before timing starts.
    static func prepared() throws -> HashedFile {
        let file = try make()
        _ = try SqueezeSupport.Hashing.sha256(fileAt: file.path)
        return file
    }
}

struct PeerFailure: Error, CustomStringConvertible {
    let description: String
}

/// Runs `arguments` through `env` (a PATH lookup) and returns the first word
/// it printed: the hex digest, for both `sha256sum` and `openssl dgst -r`.
func externalDigest(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw PeerFailure(description: "`\(arguments.joined(separator: " "))` exited with status \(process.terminationStatus)")
    }
    guard let digest = String(decoding: data, as: UTF8.self).split(separator: " ").first else {
        throw PeerFailure(description: "`\(arguments.joined(separator: " "))` printed nothing")
    }
    return String(digest)
}

let throughputMetric = BenchmarkMetric.custom("throughput (MB/s)", polarity: .prefersLarger, useScalingFactor: false)

/// Short runs: one warm-up iteration, then a few measured ones.
func configuration() -> Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: [.wallClock, .cpuTotal, throughputMetric],
        timeUnits: .milliseconds,
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: .seconds(60),
        maxIterations: 5
    )
}

/// Records one hashing iteration (warm-up iterations excluded).
func record(_ samples: Samples, _ benchmark: Benchmark, seconds: Double) throws {
    benchmark.measurement(throughputMetric, Int((Double(fileSize) / seconds / 1e6).rounded()))
    if benchmark.currentIteration >= benchmark.configuration.warmupIterations {
        try samples.add(seconds)
    }
}

let details = ["bytes": String(fileSize)]
let squeezeSamples = Samples(suite: suite, name: "squeeze", unit: "s", details: details)
let peerSamples = Samples(suite: suite, name: "sha256sum", unit: "s", details: details)
let opensslSamples = Samples(suite: suite, name: "openssl", unit: "s", details: details)

func isInstalled(_ program: String) -> Bool {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(program)") }
}

/// Registers a benchmark timing an external program on the same kind of file.
func peer(_ name: String, _ title: String, samples: Samples, command: @escaping @Sendable (String) -> [String]) {
    Benchmark(
        "sha256 1 GiB page-cached: \(title)",
        configuration: configuration(),
        closure: { (benchmark: Benchmark, file: HashedFile) throws in
            let (digest, seconds) = try secondsElapsed { try externalDigest(command(file.path)) }
            // The peer must agree with Squeeze, or the comparison is meaningless.
            if benchmark.currentIteration == 0 {
                let ours = try SqueezeSupport.Hashing.sha256(fileAt: file.path)
                guard ours.hex == digest else {
                    throw PeerFailure(description: "digests differ: squeeze \(ours.hex), \(name) \(digest)")
                }
            }
            try record(samples, benchmark, seconds: seconds)
        },
        setup: { try HashedFile.prepared() },
        teardown: { ScratchDirectory.removeAll() }
    )
}

let benchmarks: @Sendable () -> Void = {
    Benchmark(
        "sha256 1 GiB page-cached: Hashing.sha256(fileAt:)",
        configuration: configuration(),
        closure: { (benchmark: Benchmark, file: HashedFile) throws in
            let (digest, seconds) = try secondsElapsed { try SqueezeSupport.Hashing.sha256(fileAt: file.path) }
            blackHole(digest)
            try record(squeezeSamples, benchmark, seconds: seconds)
        },
        setup: { try HashedFile.prepared() },
        teardown: { ScratchDirectory.removeAll() }
    )

    peer("sha256sum", "sha256sum (peer)", samples: peerSamples) { ["sha256sum", $0] }
    if isInstalled("openssl") {
        peer("openssl", "openssl dgst -sha256 (SHA-NI reference)", samples: opensslSamples) {
            ["openssl", "dgst", "-sha256", "-r", $0]
        }
    }
}
