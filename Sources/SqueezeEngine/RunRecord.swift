import Foundation
import SqueezeRecipe

/// What happened to one stage in one run (`run.json`).
public struct StageRecord: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        /// Outputs came from the cache.
        case cached
        /// Executed and stored its outputs.
        case ran
        case failed
        /// Not run because a dependency failed or was not selected.
        case skipped
        /// Stopped by Ctrl-C.
        case cancelled
        /// Never started because the run stopped after a failure.
        case notStarted = "not_started"
    }

    public var id: String
    public var uses: String
    public var status: Status
    public var key: String?
    /// "hit" or "miss", when the cache was consulted.
    public var cache: String?
    /// Why the stage ran, failed or was skipped.
    public var reason: String?
    public var start: Date?
    public var end: Date?
    public var wallSeconds: Double
    public var cpuSeconds: Double
    public var metrics: [String: Value]
    public var outputs: [String: ArtifactRef]
    /// Log file, relative to the run directory.
    public var log: String?

    public init(id: String, uses: String, status: Status, reason: String? = nil) {
        self.id = id
        self.uses = uses
        self.status = status
        self.reason = reason
        self.wallSeconds = 0
        self.cpuSeconds = 0
        self.metrics = [:]
        self.outputs = [:]
    }
}

/// One `squeeze run`: `runs/<UTC>-<name>-<id>/run.json`.
public struct RunRecord: Sendable, Codable {
    public enum Status: String, Sendable, Codable {
        case running, succeeded, failed, interrupted
    }

    public struct GitState: Sendable, Codable, Equatable {
        public var commit: String
        public var dirty: Bool
    }

    public var id: String
    public var name: String
    public var recipeFile: String
    public var status: Status
    public var startedAt: Date
    public var endedAt: Date?
    public var wallSeconds: Double
    public var squeezeVersion: String
    public var backend: String
    public var jobs: Int
    public var threads: Int
    public var host: String
    public var git: GitState?
    public var overrides: [String]
    public var cacheDirectory: String
    /// The validated recipe after vars and overrides.
    public var recipe: Value
    public var stages: [StageRecord]

    public var failedStages: [StageRecord] { stages.filter { $0.status == .failed } }
}

/// The `runs/` directory: creating, listing and reading run records.
public struct RunStore: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root
    }

    public struct NotFound: Error, CustomStringConvertible {
        public var description: String
    }

    /// A fresh run directory named `<UTC>-<recipe name>-<8 hex>`.
    public func makeRunDirectory(name: String, at date: Date) throws -> (id: String, path: String) {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let suffix = String(format: "%08x", UInt32.random(in: 0...UInt32.max))
        let id = "\(formatter.string(from: date))-\(name)-\(suffix)"
        let path = (root as NSString).appendingPathComponent(id)
        try FileManager.default.createDirectory(atPath: (path as NSString).appendingPathComponent("logs"), withIntermediateDirectories: true)
        return (id, path)
    }

    public func save(_ record: RunRecord) throws {
        let path = (root as NSString).appendingPathComponent("\(record.id)/run.json")
        try AtomicFile.write(try SqueezeJSON.encoder().encode(record), to: path)
    }

    /// Every readable run record, oldest first; unreadable ones are skipped.
    public func list() -> [RunRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { try? load(id: $0) }.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
    }

    public func load(id: String) throws -> RunRecord {
        guard !id.contains("/"), !id.hasPrefix(".") else { throw NotFound(description: "no run `\(id)`") }
        let path = (root as NSString).appendingPathComponent("\(id)/run.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NotFound(description: "no run `\(id)` in \(root)")
        }
        return try Self.decode(data, from: "run `\(id)`")
    }

    /// Finds a run by full id, unique prefix, unique suffix (the short id),
    /// `latest`, or a path (anything with a `/`) to a run directory or its
    /// `run.json`, relative to the working directory.
    public func resolve(_ query: String) throws -> RunRecord {
        if query.contains("/") { return try Self.load(path: query) }
        let runs = list()
        if query == "latest", let last = runs.last { return last }
        if let exact = runs.first(where: { $0.id == query }) { return exact }
        let matches = runs.filter { $0.id.hasPrefix(query) || $0.id.hasSuffix(query) }
        if matches.count == 1, let only = matches.first { return only }
        if matches.isEmpty { throw NotFound(description: "no run matches `\(query)` in \(root)") }
        throw NotFound(description: "`\(query)` matches \(matches.count) runs; give more of the id")
    }

    /// The run record at `path`: a run directory or a `run.json` file.
    public static func load(path: String) throws -> RunRecord {
        let file = path.hasSuffix(".json") ? path : (path as NSString).appendingPathComponent("run.json")
        guard let data = FileManager.default.contents(atPath: file) else {
            throw NotFound(description: "no run record at \(file)")
        }
        return try decode(data, from: file)
    }

    private static func decode(_ data: Data, from source: String) throws -> RunRecord {
        do {
            return try SqueezeJSON.decoder().decode(RunRecord.self, from: data)
        } catch {
            throw NotFound(description: "\(source) has an unreadable run.json: \(error)")
        }
    }

    /// Links `runs/<id>/outputs/<stage>/<output>` to the stored artifact.
    func exportOutput(runID: String, stage: String, output: String, target: String) {
        let directory = (root as NSString).appendingPathComponent("\(runID)/outputs/\(Pipeline.fileName(for: stage))")
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let link = (directory as NSString).appendingPathComponent(Pipeline.fileName(for: output))
        try? FileManager.default.removeItem(atPath: link)
        try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
    }
}

/// Facts about where a run happened.
enum Provenance {
    static func host() -> String {
        ProcessInfo.processInfo.hostName
    }

    /// The commit and dirty flag of the git repository holding `directory`, if any.
    static func git(at directory: String) -> RunRecord.GitState? {
        guard let commit = runGit(["rev-parse", "HEAD"], in: directory)?.trimmingCharacters(in: .whitespacesAndNewlines),
              commit.count >= 40 else { return nil }
        let status = runGit(["status", "--porcelain"], in: directory) ?? ""
        return .init(commit: commit, dirty: !status.isEmpty)
    }

    private static func runGit(_ arguments: [String], in directory: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", directory] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
