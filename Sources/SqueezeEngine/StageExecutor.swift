import Foundation
import SqueezeRecipe
import SqueezeStore

/// One ready stage, as the scheduler hands it to an executor.
public struct StageRequest: Sendable {
    public var spec: StageSpec
    /// The outputs of its dependencies, by (base) stage id.
    public var upstream: [String: [String: ArtifactRef]]
    /// Cores the scheduler granted (0 when the executor does not use local cores).
    public var cores: Int
    /// `--force`: execute even when cached.
    public var force: Bool
    public var runDirectory: String
    /// The runs directory (an engine directory stages must not write into).
    public var runsRoot: String

    public init(
        spec: StageSpec, upstream: [String: [String: ArtifactRef]], cores: Int, force: Bool,
        runDirectory: String, runsRoot: String
    ) {
        self.spec = spec
        self.upstream = upstream
        self.cores = cores
        self.force = force
        self.runDirectory = runDirectory
        self.runsRoot = runsRoot
    }

    /// The stage's log, relative to the run directory.
    public var logRelative: String { "logs/\(Pipeline.fileName(for: spec.id)).log" }

    /// The stage's log in the run directory.
    public var logPath: String { (runDirectory as NSString).appendingPathComponent(logRelative) }
}

/// Where a stage's log goes: a file, and how the run record names it (nil
/// when the log is not part of a run directory, e.g. a cluster job's output).
public struct StageLogDestination: Sendable {
    public var path: String
    public var recorded: String?

    public init(path: String, recorded: String?) {
        self.path = path
        self.recorded = recorded
    }
}

/// Runs one ready stage and says what happened. The scheduler decides when a
/// stage is ready and how many run at once; the executor decides where it
/// runs. Implementations never throw: failures are in the record.
public protocol StageExecutor: Sendable {
    /// Whether stages run on this machine's cores, so the scheduler packs them
    /// into the core budget; a cluster executor's stages only count against `--jobs`.
    var usesLocalCores: Bool { get }

    func execute(_ request: StageRequest, in pipeline: Pipeline, started: Date, observer: any RunObserver) async -> StageRecord
}

/// Runs stages in this process (`--executor local`, the default).
public struct LocalExecutor: StageExecutor {
    public init() {}

    public var usesLocalCores: Bool { true }

    public func execute(_ request: StageRequest, in pipeline: Pipeline, started: Date, observer: any RunObserver) async -> StageRecord {
        var record = await pipeline.executeTimed(
            request.spec, upstream: request.upstream, cores: request.cores, force: request.force, started: started,
            log: StageLogDestination(path: request.logPath, recorded: request.logRelative), runsRoot: request.runsRoot,
            observer: observer)
        record.executor = "local"
        return record
    }
}

extension Pipeline {
    /// One stage in this process, for `squeeze stage-exec` on a cluster node:
    /// what the local executor does, refusing to run when the key differs
    /// from `expectedKey`, without the local time limit (the scheduler
    /// enforces it), logging to `logPath`.
    public func executeJobStage(
        _ spec: StageSpec, upstream: [String: [String: ArtifactRef]], threads: Int, force: Bool,
        expectedKey: String, logPath: String, runsRoot: String, observer: any RunObserver
    ) async -> StageRecord {
        let started = Date()
        var record = await executeTimed(
            spec, upstream: upstream, cores: threads, force: force, started: started,
            log: StageLogDestination(path: logPath, recorded: nil), runsRoot: runsRoot, observer: observer,
            expectedKey: expectedKey, enforceTimeLimit: false)
        record.start = started
        record.end = Date()
        record.wallSeconds = Date().timeIntervalSince(started)
        return record
    }

    /// A stage's key material from its dependencies' outputs (what `plan`
    /// and `run` compute); content fetched to key it is dropped again.
    public func keyMaterial(of spec: StageSpec, upstream: [String: [String: ArtifactRef]]) throws -> KeyMaterial {
        let scratch = KeyedContentScratch(store: store)
        defer { scratch.removeAll() }
        return try stageKey(for: spec, upstream: upstream, scratch: scratch).material
    }
}
