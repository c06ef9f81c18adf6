import Foundation
import SqueezeStore
import SqueezeSupport

/// What `squeeze stage-exec SPEC.json` reads on a cluster node: enough to
/// rebuild exactly the stage the driver planned (the recipe file with the
/// same `--set`/`--matrix` arguments, the outputs of its dependencies) and
/// the key the driver computed, which the node recomputes and must match.
public struct StageJobSpec: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    /// The recipe file, absolute.
    public var recipeFile: String
    public var overrides: [String]
    public var matrix: [String]
    /// The stage (or matrix instance) id.
    public var stageID: String
    /// The key the driver computed.
    public var key: String
    /// The outputs of the stage's dependencies, by (base) stage id.
    public var upstream: [String: [String: ArtifactRef]]
    /// The stage's backend id and seed (decimal: a JSON integer cannot hold
    /// every UInt64), as the driver resolved them; both are also in the key,
    /// kept here for people reading the spec.
    public var backend: String
    public var seed: String
    /// Cores the stage may use; nil: every core of the allocation.
    public var threads: Int?
    public var force: Bool
    /// The shared cache the node reads and writes.
    public var cacheDirectory: String
    /// The driver's runs directory (stages must not write there).
    public var runsDirectory: String
    /// The stage's log: the job's output file.
    public var logPath: String
    /// Where the node writes its stage record (JSON) when it is done.
    public var resultPath: String
    /// The driver reads and writes through a remote cache: the node does
    /// too, with `$SQUEEZE_REMOTE_CACHE` from the job's environment (the URL
    /// may hold credentials, so it is never written into the spec).
    public var useRemoteCache: Bool

    public init(
        recipeFile: String, overrides: [String], matrix: [String], stageID: String, key: String,
        upstream: [String: [String: ArtifactRef]], backend: String, seed: UInt64, threads: Int?, force: Bool,
        cacheDirectory: String, runsDirectory: String, logPath: String, resultPath: String, useRemoteCache: Bool = false
    ) {
        self.useRemoteCache = useRemoteCache
        self.formatVersion = Self.currentFormatVersion
        self.recipeFile = recipeFile
        self.overrides = overrides
        self.matrix = matrix
        self.stageID = stageID
        self.key = key
        self.upstream = upstream
        self.backend = backend
        self.seed = String(seed)
        self.threads = threads
        self.force = force
        self.cacheDirectory = cacheDirectory
        self.runsDirectory = runsDirectory
        self.logPath = logPath
        self.resultPath = resultPath
    }
}

/// `jobs/<key>.json` in the shared cache: the job last submitted for a key,
/// so that a driver started after another was killed adopts the job (waits
/// for it, or takes its result from the cache) instead of submitting again.
public struct SlurmJobRecord: Codable, Sendable, Equatable {
    public var jobID: String
    public var cluster: String?
    public var submittedAt: Date
    public var stageID: String
    /// The job's output file and the stage record it writes.
    public var logPath: String
    public var resultPath: String
    /// The host of the driver that submitted it.
    public var submittedFrom: String

    public init(jobID: String, cluster: String?, submittedAt: Date, stageID: String, logPath: String, resultPath: String, submittedFrom: String) {
        self.jobID = jobID
        self.cluster = cluster
        self.submittedAt = submittedAt
        self.stageID = stageID
        self.logPath = logPath
        self.resultPath = resultPath
        self.submittedFrom = submittedFrom
    }
}

/// The job area of a shared cache: `jobs/<key>.json` records, and per
/// submission the spec, the script, the output log and the result.
public struct SlurmJobArea: Sendable {
    public let root: String

    public init(cacheDirectory: String) {
        root = (cacheDirectory as NSString).appendingPathComponent("jobs")
    }

    public func recordPath(key: String) -> String { root + "/\(key).json" }

    /// A fresh set of paths for one submission of `key`.
    public func submission(key: String) -> (spec: String, script: String, log: String, result: String) {
        let name = "\(key.prefix(16))-\(UUID().uuidString.prefix(8).lowercased())"
        return (root + "/specs/\(name).json", root + "/specs/\(name).sh", root + "/logs/\(name).log", root + "/results/\(name).json")
    }

    public func readRecord(key: String) -> SlurmJobRecord? {
        guard let data = FileManager.default.contents(atPath: recordPath(key: key)) else { return nil }
        return try? SqueezeJSON.decode(SlurmJobRecord.self, from: data)
    }

    public func write(_ record: SlurmJobRecord, key: String) throws {
        try AtomicFile.write(Data(try SqueezeJSON.encode(record)), to: recordPath(key: key))
    }

    /// Removes the files of one finished submission (spec, script, log,
    /// result), once the driver has copied the log and read the result.
    public func removeSubmission(logPath: String, resultPath: String) {
        let name = ((logPath as NSString).lastPathComponent as NSString).deletingPathExtension
        for path in [root + "/specs/\(name).json", root + "/specs/\(name).sh", logPath, resultPath] {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    public func removeRecord(key: String, jobID: String) {
        guard readRecord(key: key)?.jobID == jobID else { return }
        try? FileManager.default.removeItem(atPath: recordPath(key: key))
    }
}
