// SHA-256 throughput of a 1 GiB file in the page cache: Squeeze's
// `Hashing.sha256(fileAt:)` against coreutils' `sha256sum` on the same bytes,
// both measured in this run. Goal: at least 1.5 GB/s.
import Benchmark
import BenchmarkSupport
import Foundation
import SqueezeEngine

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

    /// Reads the file once so every page is resident before timing starts.
    func warm() throws {
        _ = try Hashing.sha256(fileAt: path)
    }
}

struct PeerFailure: Error, CustomStringConvertible {
    let description: String
}

/// Runs `sha256sum FILE` and returns the hex digest it printed.
func sha256sum(_ path: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["sha256sum", path]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw PeerFailure(description: "sha256sum exited with status \(process.terminationStatus)")
    }
    guard let digest = String(decoding: data, as: UTF8.self).split(separator: " ").first else {
        throw PeerFailure(description: "sha256sum printed nothing")
    }
    return String(digest)
}

let throughputMetric = BenchmarkMetric.custom("throughput (MB/s)", polarity: .prefersLarger, useScalingFactor: false)

let configuration = Benchmark.Configuration(
    metrics: [.wallClock, .cpuTotal, throughputMetric],
    timeUnits: .milliseconds,
    warmupIterations: 1,
    scalingFactor: .one,
    maxDuration: .seconds(60),
    maxIterations: 5
)

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

let benchmarks: @Sendable () -> Void = {
    Benchmark(
        "sha256 1 GiB page-cached: Hashing.sha256(fileAt:)",
        configuration: configuration,
        closure: { (benchmark: Benchmark, file: HashedFile) throws in
            let (digest, seconds) = try secondsElapsed { try Hashing.sha256(fileAt: file.path) }
            blackHole(digest)
            try record(squeezeSamples, benchmark, seconds: seconds)
        },
        setup: {
            let file = try HashedFile.make()
            try file.warm()
            return file
        },
        teardown: { ScratchDirectory.removeAll() }
    )

    Benchmark(
        "sha256 1 GiB page-cached: sha256sum (peer)",
        configuration: configuration,
        closure: { (benchmark: Benchmark, file: HashedFile) throws in
            let (digest, seconds) = try secondsElapsed { try sha256sum(file.path) }
            // The peer must agree with Squeeze, or the comparison is meaningless.
            if benchmark.currentIteration == 0 {
                let ours = try Hashing.sha256(fileAt: file.path)
                guard ours.hex == digest else {
                    throw PeerFailure(description: "digests differ: squeeze \(ours.hex), sha256sum \(digest)")
                }
            }
            try record(peerSamples, benchmark, seconds: seconds)
        },
        setup: {
            let file = try HashedFile.make()
            try file.warm()
            return file
        },
        teardown: { ScratchDirectory.removeAll() }
    )
}
