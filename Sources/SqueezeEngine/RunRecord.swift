import Foundation
import SqueezeStore
import SqueezeSupport

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
    /// "hit" (local cache), "remote" (fetched from the remote cache) or
    /// "miss", when the cache was consulted.
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
    /// Where the stage executed: `local` or `slurm` (absent for cache hits
    /// decided before any executor ran, and in records of older versions).
    public var executor: String?
    /// The cluster job that executed the stage (cluster executors only).
    public var job: ClusterJob?

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

/// What a cluster executor records about the job that executed a stage.
public struct ClusterJob: Sendable, Codable, Equatable {
    /// The scheduler's job id of the last attempt.
    public var id: String
    public var cluster: String?
    /// The node the last attempt ran on.
    public var node: String?
    /// The scheduler's final state of the last attempt (`COMPLETED`, `FAILED`,
    /// `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`, `PREEMPTED`, `CANCELLED`, …).
    public var state: String?
    /// Seconds the last attempt waited in the queue (start minus submit time).
    public var queueWaitSeconds: Double?
    /// Jobs submitted for the stage by this run (0 when it adopted a job a
    /// previous driver submitted); retries make it more than 1.
    public var attempts: Int
    /// The job ids and final states of every attempt, oldest first (`123:TIMEOUT`).
    public var history: [String]
    /// The job was submitted by an earlier driver and adopted by this run.
    public var adopted: Bool

    public init(
        id: String, cluster: String? = nil, node: String? = nil, state: String? = nil, queueWaitSeconds: Double? = nil,
        attempts: Int, history: [String] = [], adopted: Bool = false
    ) {
        self.id = id
        self.cluster = cluster
        self.node = node
        self.state = state
        self.queueWaitSeconds = queueWaitSeconds
        self.attempts = attempts
        self.history = history
        self.adopted = adopted
    }
}

/// One `squeeze run`: `runs/<UTC>-<name>-<id>/run.json`.
public struct RunRecord: Sendable, Codable {
    public enum Status: String, Sendable, Codable {
        case running, succeeded, failed, interrupted
        /// Never written: a record that says `running` reads as abandoned once
        /// the squeeze process that wrote it is gone (killed, crashed, rebooted).
        case abandoned
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
    /// The squeeze process running it (absent in records of older versions).
    public var process: RunProcess? = nil
    /// The remote cache the run read and wrote, without credentials (nil: none).
    public var remoteCache: String? = nil

    public var failedStages: [StageRecord] { stages.filter { $0.status == .failed } }

    /// `abandoned` instead of `running` when the recorded process is gone.
    func checkingLiveness() -> RunRecord {
        guard status == .running, let process, process.isAlive(recordedOnHost: host) == false else { return self }
        var checked = self
        checked.status = .abandoned
        return checked
    }
}

/// A run directory whose run.json cannot be read: missing, cut short, edited
/// by hand. Listed rather than skipped, so that `latest` never silently means
/// an older run and garbage collection keeps what the run may reference.
public struct UnreadableRun: Sendable {
    public var id: String
    /// The run directory.
    public var path: String
    public var reason: String
    /// From the id (`<UTC>-<name>-<hex>`), or the directory's modification time.
    public var startedAt: Date

    /// Every 64-hex-digit name the run may refer to: the stage keys and
    /// digests left in its damaged run.json, and the digests of the stored
    /// artifacts its `outputs/` links point at.
    public func referencedDigests() -> Set<String> {
        var digests = Set<String>()
        if let bytes = try? FileSystem.readFileIfPresent(path + "/run.json") {
            digests.formUnion(Self.hexDigests(in: bytes))
        }
        let outputs = path + "/outputs"
        for stage in (try? FileSystem.listDirectory(outputs)) ?? [] {
            for output in (try? FileSystem.listDirectory(outputs + "/" + stage)) ?? [] {
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: outputs + "/" + stage + "/" + output) {
                    digests.formUnion(Self.hexDigests(in: Array(target.utf8)))
                }
            }
        }
        return digests
    }

    /// Maximal runs of exactly 64 lowercase hexadecimal digits.
    static func hexDigests(in bytes: [UInt8]) -> Set<String> {
        Set(bytes.split { !Digest.isHexDigit($0) }.filter { $0.count == 64 }.map { String(decoding: $0, as: UTF8.self) })
    }
}

/// The runs in a runs directory: the readable records and the unreadable ones.
public struct RunListing: Sendable {
    /// Oldest first.
    public var records: [RunRecord]
    /// Oldest first.
    public var unreadable: [UnreadableRun]

    /// The newest run, failing when a run at least as new is unreadable: a
    /// corrupt newest record must not make `latest` mean the run before it.
    public func latest(in root: String) throws -> RunRecord {
        guard let newest = records.last else {
            if let damaged = unreadable.last { throw RunStore.Failure.unreadable(damaged, asked: "latest") }
            throw RunStore.NotFound(description: "no runs in \(root) yet; `squeeze run RECIPE` records one")
        }
        // Ids carry whole seconds only, so a run of the same second may be newer.
        let newestSecond = newest.startedAt.timeIntervalSince1970.rounded(.down)
        if let damaged = unreadable.last(where: { $0.startedAt.timeIntervalSince1970 >= newestSecond }) {
            throw RunStore.Failure.unreadable(damaged, asked: "latest")
        }
        return newest
    }
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

    /// The runs directory or a run in it cannot be used.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// The runs directory itself is unusable (not a directory, unreadable),
        /// rather than one run in it.
        public var concernsRunsDirectory = false

        static func unreadable(_ run: UnreadableRun, asked query: String) -> Failure {
            let what = query == "latest" ? "the newest run, \(run.id)," : "run \(run.id)"
            return Failure(description: "\(what) has an unreadable record: \(run.reason); "
                + "repair or remove \(run.path), or name another run by its id")
        }
    }

    /// A fresh run directory named `<UTC>-<recipe name>-<8 hex>`.
    public func makeRunDirectory(name: String, at date: Date) throws -> (id: String, path: String) {
        let suffix = String(format: "%08x", UInt32.random(in: 0...UInt32.max))
        let id = "\(Self.idTimeFormatter().string(from: date))-\(name)-\(suffix)"
        let path = (root as NSString).appendingPathComponent(id)
        try checkRootIsDirectory()
        do {
            try FileSystem.makeDirectories(path + "/logs")
        } catch {
            throw Failure(description: "cannot create the run directory \(path): \(error)")
        }
        return (id, path)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC, the start of every run id.
    private static func idTimeFormatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter
    }

    /// A runs directory that exists but is not a directory is an error.
    private func checkRootIsDirectory() throws {
        let status: FileSystem.Status?
        do {
            status = try FileSystem.statIfPresent(root)
        } catch {
            throw Failure(description: "cannot read the runs directory: \(error)", concernsRunsDirectory: true)
        }
        if let status, !status.isDirectory {
            throw Failure(
                description: "the runs directory \(root) is \(status.kindDescription), not a directory",
                concernsRunsDirectory: true)
        }
    }

    public func save(_ record: RunRecord) throws {
        let path = (root as NSString).appendingPathComponent("\(record.id)/run.json")
        try AtomicFile.write(Data(try SqueezeJSON.encode(record)), to: path)
    }

    /// Every run directory, readable or not, each list oldest first. A runs
    /// directory that does not exist holds no runs; one that cannot be read
    /// is an error. Hidden names and plain files are not runs.
    public func listing() throws -> RunListing {
        try checkRootIsDirectory()
        let names: [String]
        do {
            names = try FileSystem.statIfPresent(root) == nil ? [] : FileSystem.listDirectory(root)
        } catch {
            throw Failure(description: "cannot read the runs directory: \(error)", concernsRunsDirectory: true)
        }
        var listing = RunListing(records: [], unreadable: [])
        for name in names where !name.hasPrefix(".") {
            let directory = root + "/" + name
            guard let status = try? FileSystem.stat(directory), status.isDirectory else { continue }
            do {
                guard let bytes = try FileSystem.readFileIfPresent(directory + "/run.json") else {
                    throw NotFound(description: "it has no run.json")
                }
                listing.records.append(try Self.decode(Data(bytes)))
            } catch {
                let started = Self.startDate(ofID: name)
                    ?? Date(timeIntervalSince1970: Double(status.mtimeNanoseconds) / 1e9)
                listing.unreadable.append(UnreadableRun(id: name, path: directory, reason: "\(error)", startedAt: started))
            }
        }
        listing.records.sort { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
        listing.unreadable.sort { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
        return listing
    }

    /// The start time a run id begins with, if it does.
    static func startDate(ofID id: String) -> Date? {
        idTimeFormatter().date(from: String(id.prefix(16)))
    }

    /// Finds a run by full id, unique prefix, unique suffix (the short id),
    /// `latest`, or a path (anything with a `/`) to a run directory or its
    /// `run.json`, relative to the working directory. A run whose record is
    /// unreadable is an error naming it, never skipped for another run.
    public func resolve(_ query: String) throws -> RunRecord {
        if query.contains("/") { return try Self.load(path: query) }
        let listing = try listing()
        if query == "latest" { return try listing.latest(in: root) }
        if let exact = listing.records.first(where: { $0.id == query }) { return exact }
        if let damaged = listing.unreadable.first(where: { $0.id == query }) {
            throw Failure.unreadable(damaged, asked: query)
        }
        func matches(_ id: String) -> Bool { id.hasPrefix(query) || id.hasSuffix(query) }
        let records = listing.records.filter { matches($0.id) }
        let damaged = listing.unreadable.filter { matches($0.id) }
        if records.count == 1, damaged.isEmpty, let only = records.first { return only }
        if records.isEmpty, damaged.count == 1, let only = damaged.first { throw Failure.unreadable(only, asked: query) }
        if records.isEmpty && damaged.isEmpty { throw NotFound(description: "no run matches `\(query)` in \(root)") }
        throw NotFound(description: "`\(query)` matches \(records.count + damaged.count) runs; give more of the id")
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
            return try decode(data)
        } catch {
            throw NotFound(description: "\(source) has an unreadable run.json: \(error)")
        }
    }

    /// A record, with `running` turned into `abandoned` when its process is gone.
    private static func decode(_ data: Data) throws -> RunRecord {
        do {
            return try SqueezeJSON.decode(RunRecord.self, from: data).checkingLiveness()
        } catch let error as JSONSyntaxError {
            throw NotFound(description: "run.json is not a valid run record (not valid JSON: \(error))")
        } catch let error as DecodingError {
            throw NotFound(description: "run.json is not a valid run record (\(Self.describe(error)))")
        }
    }

    /// A decoding error in a sentence, without Swift's debug dump.
    private static func describe(_ error: DecodingError) -> String {
        func at(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return path.isEmpty ? "" : " at `\(path.hasPrefix(".") ? String(path.dropFirst()) : path)`"
        }
        switch error {
        case .dataCorrupted(let context):
            let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return "not valid JSON\(at(context))" + (underlying.map { ": \($0)" } ?? "")
        case .keyNotFound(let key, let context):
            return "`\(key.stringValue)` is missing\(at(context))"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "expected \(type)\(at(context))"
        @unknown default:
            return "\(error)"
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
