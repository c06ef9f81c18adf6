import Foundation
import SqueezeRecipe

#if canImport(Glibc)
import Glibc
import SqueezeStore
import SqueezeSupport
#endif

/// How `squeeze run` should run.
public struct RunOptions: Sendable {
    /// Stages executing at once.
    public var jobs: Int
    /// Cores the scheduler hands out; a stage asking for all of them runs alone.
    public var cores: Int
    /// Continue independent branches after a failure.
    public var keepGoing: Bool
    /// Stage ids to execute even when cached.
    public var force: Set<String>
    /// Run only these stages and what they need.
    public var only: Set<String>?
    public var squeezeVersion: String
    /// `--set` arguments as written, for the record.
    public var overrides: [String]
    /// Where each stage that must execute runs: this process (`LocalExecutor`)
    /// or a cluster job (`SlurmExecutor`).
    public var executor: any StageExecutor

    public init(
        jobs: Int, cores: Int, keepGoing: Bool = false, force: Set<String> = [], only: Set<String>? = nil,
        squeezeVersion: String, overrides: [String] = [], executor: any StageExecutor = LocalExecutor()
    ) {
        self.executor = executor
        self.jobs = max(1, jobs)
        self.cores = max(1, cores)
        self.keepGoing = keepGoing
        self.force = force
        self.only = only
        self.squeezeVersion = squeezeVersion
        self.overrides = overrides
    }
}

/// What a run tells whoever displays it.
public enum RunEvent: Sendable {
    case started(runID: String, directory: String, stages: [String])
    case stageStarted(id: String, cores: Int)
    case stageProgress(id: String, StageProgress)
    case stageFinished(StageRecord)
    case warning(String)
    case finished(RunRecord)
}

/// Receives run events; called from many tasks, so implementations synchronise.
public protocol RunObserver: Sendable {
    func handle(_ event: RunEvent)
}

extension Pipeline {
    /// Runs every stale stage, in parallel where the DAG and resources allow,
    /// records the run, and returns its record. Never throws for stage
    /// failures: they are in the record. Cancellation (Ctrl-C) stops running
    /// stages and marks the run interrupted.
    public func run(options: RunOptions, runs: RunStore, observer: any RunObserver) async throws -> RunRecord {
        let started = Date()
        let (runID, runDirectory) = try runs.makeRunDirectory(name: recipe.name, at: started)
        var record = RunRecord(
            id: runID, name: recipe.name, recipeFile: recipe.file, status: .running, startedAt: started,
            endedAt: nil, wallSeconds: 0, squeezeVersion: options.squeezeVersion, backend: recipe.backend,
            jobs: options.jobs, threads: options.cores, host: Provenance.host(),
            git: Provenance.git(at: recipe.directory), overrides: options.overrides,
            cacheDirectory: store.root, recipe: recipe.resolvedDescription, stages: [],
            process: RunProcess.current())
        record.remoteCache = remote?.displayURL
        do {
            try runs.save(record)
        } catch {
            // Nothing has run yet: leave no empty run folder behind for `runs` and `report` to trip over.
            try? FileManager.default.removeItem(atPath: runDirectory)
            throw error
        }
        observer.handle(.started(runID: runID, directory: runDirectory, stages: order))

        let results = await schedule(
            options: options, runID: runID, runDirectory: runDirectory, runsRoot: runs.root, observer: observer)
        record.stages = order.compactMap { results[$0] }
        for stage in record.stages {
            for (name, ref) in stage.outputs {
                if let path = try? store.path(for: ref) {
                    runs.exportOutput(runID: runID, stage: stage.id, output: name, target: path)
                }
            }
        }
        record.endedAt = Date()
        record.wallSeconds = Date().timeIntervalSince(started)
        if Task.isCancelled || record.stages.contains(where: { $0.status == .cancelled }) {
            record.status = .interrupted
        } else if record.stages.contains(where: { $0.status == .failed || $0.status == .skipped && $0.reason?.hasPrefix("dependency") == true }) {
            record.status = .failed
        } else {
            record.status = .succeeded
        }
        try? store.flush()
        try runs.save(record)
        observer.handle(.finished(record))
        return record
    }

    private struct Outcome: Sendable {
        var record: StageRecord
    }

    /// The scheduler: launches ready stages up to `jobs` and the core budget,
    /// in topological order, backfilling smaller stages when a big one waits.
    private func schedule(
        options: RunOptions, runID: String, runDirectory: String, runsRoot: String, observer: any RunObserver
    ) async -> [String: StageRecord] {
        let selected = options.only.map { closure(of: $0) }
        var results: [String: StageRecord] = [:]
        var pending = order
        var runningCores: [String: Int] = [:]
        var stopLaunching = false

        return await withTaskGroup(of: Outcome.self) { group in
            func settleBlocked() {
                // Mark stages that can no longer run; topological order makes one pass enough.
                for id in pending {
                    guard let spec = recipe.stages[id] else { continue }
                    if let selected, !selected.contains(id) {
                        results[id] = StageRecord(id: id, uses: spec.uses, status: .skipped, reason: "not selected by --only")
                        continue
                    }
                    if let bad = spec.dependencies.first(where: { dep in
                        guard let status = results[dep]?.status else { return false }
                        return status != .ran && status != .cached
                    }) {
                        let why = results[bad]?.status == .failed ? "failed" : "did not run"
                        let record = StageRecord(id: id, uses: spec.uses, status: .skipped, reason: "dependency `\(bad)` \(why)")
                        results[id] = record
                        observer.handle(.stageFinished(record))
                    }
                }
                pending.removeAll { results[$0] != nil }
            }

            func launchReady() {
                settleBlocked()
                guard !stopLaunching, !Task.isCancelled else { return }
                let usedCores = runningCores.values.reduce(0, +)
                var freeCores = options.cores - usedCores
                for id in pending where runningCores[id] == nil {
                    guard runningCores.count < options.jobs, let spec = recipe.stages[id] else { break }
                    let ready = spec.dependencies.allSatisfy { results[$0]?.status == .ran || results[$0]?.status == .cached }
                    guard ready else { continue }
                    // A cluster executor's stages use the cluster's cores, not ours: only `--jobs` limits them.
                    let wanted = !options.executor.usesLocalCores ? 0
                        : spec.resources.allCores ? options.cores : min(options.cores, max(1, spec.resources.cores ?? 1))
                    guard wanted <= freeCores || runningCores.isEmpty else { continue }
                    freeCores -= wanted
                    runningCores[id] = wanted
                    let request = StageRequest(
                        spec: spec, upstream: upstreamOutputs(of: spec, in: { results[$0]?.outputs }), cores: wanted,
                        force: options.force.contains(id), runDirectory: runDirectory, runsRoot: runsRoot)
                    let executor = options.executor
                    group.addTask {
                        Outcome(record: await execute(request, executor: executor, observer: observer))
                    }
                }
            }

            launchReady()
            while let outcome = await group.next() {
                var record = outcome.record
                do {
                    try publish(record, runID: runID)
                } catch {
                    record.status = .failed
                    record.reason = "could not publish its output: \(error)"
                }
                runningCores[record.id] = nil
                pending.removeAll { $0 == record.id }
                results[record.id] = record
                observer.handle(.stageFinished(record))
                if record.status == .failed, !options.keepGoing { stopLaunching = true }
                if record.status == .cancelled { stopLaunching = true }
                launchReady()
            }
            let reason = Task.isCancelled ? "run interrupted" : "run stopped after a failure (use --keep-going to continue independent stages)"
            for id in pending {
                guard let spec = recipe.stages[id] else { continue }
                results[id] = StageRecord(
                    id: id, uses: spec.uses, status: Task.isCancelled ? .cancelled : .notStarted, reason: reason)
            }
            return results
        }
    }

    /// One stage on `executor`, timed.
    private func execute(_ request: StageRequest, executor: any StageExecutor, observer: any RunObserver) async -> StageRecord {
        let started = Date()
        var record = await executor.execute(request, in: self, started: started, observer: observer)
        record.start = started
        record.end = Date()
        record.wallSeconds = Date().timeIntervalSince(started)
        return record
    }

    /// One stage in this process: compute its key, use the cache if it can,
    /// otherwise run it under the key's lock and store what it produced. The
    /// local executor and `squeeze stage-exec` (a cluster job) both run this.
    /// `expectedKey`, when given, is the key the driver computed: a different
    /// key here fails with `StageKeyMismatch` before anything runs.
    /// `enforceTimeLimit` is off under a cluster scheduler, which enforces
    /// `resources.time` itself and reports TIMEOUT by name.
    func executeTimed(
        _ spec: StageSpec, upstream: [String: [String: ArtifactRef]], cores: Int, force: Bool, started: Date,
        log logDestination: StageLogDestination, runsRoot: String, observer: any RunObserver,
        expectedKey: String? = nil, enforceTimeLimit: Bool = true
    ) async -> StageRecord {
        var record = StageRecord(id: spec.id, uses: spec.uses, status: .failed)
        let scratch = KeyedContentScratch(store: store)
        defer { scratch.removeAll() }
        do {
            let type = try stageType(of: spec)
            let stageKey = try stageKey(for: spec, upstream: upstream, scratch: scratch)
            let material = stageKey.material
            let key = material.key
            record.key = key
            if let expectedKey, expectedKey != key {
                throw StageKeyMismatch(expected: expectedKey, computed: key)
            }
            if !force, let hit = cachedEntry(key: key, spec: spec) {
                return hitRecord(record, entry: hit, material: material)
            }
            let lock = try await store.lock(key: key)
            defer { lock.release() }
            if !force, let hit = cachedEntry(key: key, spec: spec) {
                return hitRecord(record, entry: hit, material: material)
            }
            var remoteLookup: (entry: StageEntry?, note: String?) = (nil, nil)
            if !force { remoteLookup = await readThroughRemote(key: key, spec: spec, material: material, observer: observer) }
            if let hit = remoteLookup.entry {
                return hitRecord(record, entry: hit, material: material, cache: "remote")
            }
            record.cache = "miss"
            record.reason = force ? "forced" : explanation(for: spec.id, material: material)
            if let note = remoteLookup.note { record.reason = (record.reason ?? "") + "; " + note }
            if let shortfall = LocalMachine.current.shortfall(spec.resources) {
                throw ResourceShortfall(resource: shortfall.resource, message: shortfall.message)
            }
            observer.handle(.stageStarted(id: spec.id, cores: cores))

            let staging = try store.makeStagingDirectory(name: Pipeline.fileName(for: spec.id))
            defer { try? FileManager.default.removeItem(atPath: staging) }
            let outputDirectory = (staging as NSString).appendingPathComponent("out")
            try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)

            var upstreamOutputs: [Reference: ParameterResolver.UpstreamOutput] = [:]
            var inputDigests: [String: String] = [:]
            for reference in upstreamReferences(of: spec) {
                guard case .stageOutput(let stage, let output) = reference, let ref = upstream[stage]?[output] else { continue }
                let path = try store.path(for: ref)
                upstreamOutputs[reference] = .init(ref: ref, path: path)
                inputDigests[path] = ref.digest.description
            }
            let params: Value
            do {
                params = try resolver(for: spec, upstream: upstreamOutputs, outputDirectory: outputDirectory, scratch: scratch)
                    .resolve(spec, descriptor: type.descriptor, mode: .run)
            } catch let error as ParameterResolver.ResolutionError {
                throw StageFailure(error.description)
            }
            let log = try StageLog(path: logDestination.path)
            record.log = logDestination.recorded
            let id = spec.id
            let context = StageContext(
                stageID: id, recipeDirectory: recipe.directory, outputDirectory: outputDirectory,
                backend: spec.backend, seed: seed(for: id), threads: cores, log: log,
                progress: ProgressReporter { observer.handle(.stageProgress(id: id, $0)) },
                engineDirectories: [store.root, runsRoot], keyedContent: stageKey.keyedContent,
                resumeDirectory: try store.resumableDirectory(forKey: key), cacheKey: key,
                downloadDirectory: (store.root as NSString).appendingPathComponent("downloads"), inputDigests: inputDigests)
            // A forced rerun recomputes from scratch instead of resuming: it checks determinism.
            if force { try store.removeResumableArea(forKey: key) }

            let cpuBefore = Self.processCPUSeconds()
            let result = try await Self.withTimeLimit(enforceTimeLimit ? spec.resources.timeLimitSeconds : nil) {
                try await type.run(context, params: params)
            }
            try Task.checkCancellation()
            for warning in result.warnings {
                log.line("warning: \(warning)")
                observer.handle(.warning("`\(id)`: \(warning)"))
            }
            record.cpuSeconds = result.cpuSeconds ?? (Self.processCPUSeconds() - cpuBefore)

            try checkNothingEscaped(staging: staging)
            var outputs: [String: ArtifactRef] = [:]
            for output in type.descriptor.outputs {
                let relative = result.outputs[output.name] ?? output.name
                let path = relative == "." ? outputDirectory : (outputDirectory as NSString).appendingPathComponent(relative)
                guard FileManager.default.fileExists(atPath: path) else {
                    throw StageFailure("stage did not produce its output `\(output.name)`")
                }
                outputs[output.name] = try store.ingest(path)
            }
            if force, let previous = store.entry(forKey: key), previous.outputs != outputs {
                observer.handle(.warning(
                    "forced rerun of `\(spec.id)` produced different outputs than its cache entry: the stage is not deterministic"))
            }
            // Metrics as the cache will hand them back (NaN and the infinities
            // are stored as strings), so a later hit reports exactly what this run reports.
            let metrics = try SqueezeJSON.decode([String: Value].self, from: SqueezeJSON.encode(result.metrics, pretty: false))
            let entry = StageEntry(
                key: key, stageType: spec.uses, stageVersion: type.descriptor.version, outputs: outputs,
                metrics: metrics, createdAt: Date(), wallSeconds: Date().timeIntervalSince(started),
                cpuSeconds: record.cpuSeconds, recipeName: recipe.name, stageID: spec.id,
                formatVersion: KeyMaterial.currentFormatVersion)
            try store.save(entry)
            // The checkpoints of an unfinished attempt are not needed once the entry exists (gc removes a leftover).
            try? store.removeResumableArea(forKey: key)
            await writeThroughRemote(entry, material: material, observer: observer)
            recordMaterial(material, for: spec.id)
            record.status = .ran
            record.outputs = outputs
            record.metrics = metrics
            log.line("stage `\(spec.id)` finished in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        } catch is CancellationError {
            record.status = .cancelled
            record.reason = "interrupted"
        } catch {
            if Task.isCancelled {
                record.status = .cancelled
                record.reason = "interrupted"
            } else {
                record.status = .failed
                if let failure = error as? StageFailure, let parameter = failure.parameter {
                    let location = spec.with[parameter]?.location ?? spec.location
                    record.reason = "\(location): `\(parameter)`: \(failure.message)"
                } else if let shortfall = error as? ResourceShortfall {
                    let location = spec.resources.locations[shortfall.resource] ?? spec.location
                    record.reason = "\(location): `resources.\(shortfall.resource)`: \(shortfall.message)"
                } else if let mismatch = error as? StageKeyMismatch {
                    record.reason = "\(mismatch)"
                } else if let limit = error as? TimeLimitExceeded {
                    let location = spec.resources.locations["time"] ?? spec.location
                    record.reason = "\(location): TIMEOUT: \(limit)"
                } else {
                    record.reason = "\(error)"
                }
            }
        }
        return record
    }

    /// `body`, stopped (cancelled) when it runs longer than `seconds`.
    static func withTimeLimit<T: Sendable>(_ seconds: Int?, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let seconds else { return try await body() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(seconds) * 1_000_000_000)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw TimeLimitExceeded(seconds: seconds)
            }
            return value
        }
    }

    func cachedEntry(key: String, spec: StageSpec) -> StageEntry? {
        guard let entry = store.entry(forKey: key), validOutputs(of: entry, for: spec, verify: true) != nil else { return nil }
        return entry
    }

    /// A stage served from the cache: `cache` is "hit" (local) or "remote".
    func hitRecord(_ record: StageRecord, entry: StageEntry, material: KeyMaterial, cache: String = "hit") -> StageRecord {
        var record = record
        record.status = .cached
        record.cache = cache
        record.outputs = entry.outputs
        record.metrics = entry.metrics
        recordMaterial(material, for: record.id)
        return record
    }

    /// A stage may write only inside its output directory; anything it left
    /// beside it (for example through `${out}/../x`) fails the stage.
    private func checkNothingEscaped(staging: String) throws {
        let stray = ((try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? []).filter { $0 != "out" }
        if let first = stray.sorted().first {
            throw StageFailure("stage wrote outside its output directory: `${out}/../\(first)`")
        }
    }

    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

/// The key a node computed for a stage differs from the one the driver
/// submitted the job for: the node sees other inputs, another recipe or
/// another squeeze, and must not store a result under either key.
public struct StageKeyMismatch: Error, CustomStringConvertible {
    public var expected: String
    public var computed: String
    /// How the reason of a stage record refused for a key mismatch begins.
    public static let reasonPrefix = "key mismatch"

    public var description: String {
        "\(Self.reasonPrefix): the driver submitted key \(expected.prefix(12)) but this node computes \(computed.prefix(12)); "
            + "the recipe, its inputs or squeeze differ between the driver and the node"
    }
}

/// A stage asked for more of a resource than the local machine has.
struct ResourceShortfall: Error {
    var resource: String
    var message: String
}

/// A stage ran longer than its `resources.time`.
struct TimeLimitExceeded: Error, CustomStringConvertible {
    var seconds: Int
    var description: String { "the stage ran longer than its time limit of \(Self.duration(seconds)) and was stopped" }

    static func duration(_ seconds: Int) -> String {
        seconds % 3600 == 0 ? "\(seconds / 3600)h" : seconds % 60 == 0 ? "\(seconds / 60)m" : "\(seconds)s"
    }
}
