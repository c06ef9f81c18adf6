import Foundation
import Synchronization

/// The measurements of one benchmark case, as `summary.py` reads them.
///
/// ordo-one's harness runs every benchmark in its own process and keeps its
/// statistics to itself, so a summary that compares a case with its peer
/// needs the raw numbers somewhere both processes can reach: each case
/// rewrites `<results>/<suite>.<case>.json` after every measured iteration.
public struct SampleFile: Codable, Sendable {
    public var suite: String
    public var name: String
    /// What `samples` counts, e.g. `s` (seconds per iteration).
    public var unit: String
    public var samples: [Double]
    /// Facts about the case that the summary prints (sizes, counts).
    public var details: [String: String]
}

/// Collects one case's samples and keeps its results file current.
public final class Samples: Sendable {
    private let file: Mutex<SampleFile>
    private let path: String

    public init(suite: String, name: String, unit: String, details: [String: String] = [:]) {
        file = Mutex(SampleFile(suite: suite, name: name, unit: unit, samples: [], details: details))
        path = (Samples.resultsDirectory as NSString).appendingPathComponent("\(suite).\(name).json")
    }

    /// `$SQUEEZE_BENCH_RESULTS`, or `.results` in the working directory
    /// (the benchmark package's directory under `swift package benchmark`).
    public static var resultsDirectory: String {
        if let directory = ProcessInfo.processInfo.environment["SQUEEZE_BENCH_RESULTS"], !directory.isEmpty {
            return directory
        }
        return (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(".results")
    }

    public func setDetail(_ key: String, _ value: String) {
        file.withLock { $0.details[key] = value }
    }

    /// Records one measurement and rewrites the results file.
    public func add(_ value: Double) throws {
        let snapshot = file.withLock { file in
            file.samples.append(value)
            return file
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicWrite.write(try encoder.encode(snapshot), to: path)
    }
}

/// Measures `body` with the monotonic clock, in seconds.
public func secondsElapsed<T>(_ body: () throws -> T) rethrows -> (result: T, seconds: Double) {
    let clock = ContinuousClock()
    let start = clock.now
    let result = try body()
    let elapsed = start.duration(to: clock.now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    return (result, seconds)
}
