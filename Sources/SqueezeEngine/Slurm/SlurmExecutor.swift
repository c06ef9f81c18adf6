import Foundation
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport

/// The recipe as the driver loaded it, for a node to load it the same way.
public struct RecipeInvocation: Sendable, Equatable {
    /// The recipe file, absolute.
    public var file: String
    public var overrides: [String]
    public var matrix: [String]
    /// The driver's working directory, where the jobs start too.
    public var workingDirectory: String

    public init(file: String, overrides: [String], matrix: [String], workingDirectory: String) {
        self.file = file
        self.overrides = overrides
        self.matrix = matrix
        self.workingDirectory = workingDirectory
    }
}

/// A Slurm command could not be run or said no.
public struct SlurmCommandError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs each stage as one Slurm batch job (`--executor slurm`): the job runs
/// `squeeze stage-exec` on a node against the shared cache, and the driver
/// follows it, copies its log and reads its result from the cache.
public struct SlurmExecutor: StageExecutor {
    public var settings: SlurmSettings
    /// `ClusterName` of the cluster the jobs go to.
    public var cluster: String?
    public var invocation: RecipeInvocation
    /// The squeeze the jobs run.
    public var squeezeExecutable: String
    /// The environment of the Slurm commands (`PATH`, `SLURM_CONF`); the
    /// jobs inherit the driver's (`--export=ALL`).
    public var environment: [String: String]

    public init(
        settings: SlurmSettings, cluster: String?, invocation: RecipeInvocation, squeezeExecutable: String,
        environment: [String: String]
    ) {
        self.settings = settings
        self.cluster = cluster
        self.invocation = invocation
        self.squeezeExecutable = squeezeExecutable
        self.environment = environment
    }

    public var usesLocalCores: Bool { false }

    /// Asks the controller for its cluster name; fails when Slurm cannot be reached.
    public static func clusterName(environment: [String: String]) async throws -> String? {
        let result = try await SlurmShell(environment: environment, scratch: FileManager.default.temporaryDirectory.path)
            .run("scontrol", ["show", "config"])
        guard result.status == 0 else {
            throw SlurmCommandError("`scontrol show config` failed (is slurmctld running, SLURM_CONF right?): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return SlurmCommands.parseClusterName(result.output)
    }

    public func execute(_ request: StageRequest, in pipeline: Pipeline, started: Date, observer: any RunObserver) async -> StageRecord {
        let spec = request.spec
        var record = StageRecord(id: spec.id, uses: spec.uses, status: .failed)
        record.executor = "slurm"
        let material: KeyMaterial
        do {
            material = try pipeline.keyMaterial(of: spec, upstream: request.upstream)
        } catch {
            record.reason = "\(error)"
            return record
        }
        let key = material.key
        record.key = key
        if !request.force, let hit = pipeline.cachedEntry(key: key, spec: spec) {
            return pipeline.hitRecord(record, entry: hit, material: material)
        }
        record.cache = "miss"
        record.reason = request.force ? "forced" : pipeline.explanation(for: spec.id, material: material)
        record.log = request.logRelative

        var follower = JobFollower(
            executor: self, pipeline: pipeline, request: request, key: key, observer: observer,
            area: SlurmJobArea(cacheDirectory: pipeline.store.root))
        do {
            let outcome = try await follower.run()
            switch outcome {
            case .hit(let entry, let how):
                record.status = how.status
                record.cache = how.cache
                record.cpuSeconds = how.cpuSeconds
                record.outputs = entry.outputs
                record.metrics = entry.metrics
                pipeline.recordMaterial(material, for: spec.id)
            case .failed(let reason):
                record.status = .failed
                record.reason = reason
            }
        } catch {
            if error is CancellationError || Task.isCancelled {
                record.status = .cancelled
                record.reason = "interrupted"
            } else {
                record.status = .failed
                record.reason = "\(error)"
            }
        }
        record.job = follower.jobRecord
        return record
    }
}

/// One stage's jobs: adopt a live job of an earlier driver or submit one,
/// follow it, retry infrastructure failures, cancel on interruption.
private struct JobFollower {
    enum Outcome {
        case hit(StageEntry, How)
        case failed(String)
    }

    /// How the entry came to be: computed by our job, or found cached.
    struct How {
        var status: StageRecord.Status
        var cache: String
        var cpuSeconds: Double
    }

    let executor: SlurmExecutor
    let pipeline: Pipeline
    let request: StageRequest
    let key: String
    let observer: any RunObserver
    let area: SlurmJobArea
    var jobRecord: ClusterJob?
    private var history: [String] = []
    private var submitted = 0

    init(executor: SlurmExecutor, pipeline: Pipeline, request: StageRequest, key: String, observer: any RunObserver, area: SlurmJobArea) {
        self.executor = executor
        self.pipeline = pipeline
        self.request = request
        self.key = key
        self.observer = observer
        self.area = area
    }

    private var settings: SlurmSettings { executor.settings }
    private var spec: StageSpec { request.spec }
    private var shell: SlurmShell { SlurmShell(environment: executor.environment, scratch: area.root + "/tmp") }

    mutating func run() async throws -> Outcome {
        let retries = spec.retries ?? settings.retries
        var infrastructureFailures = 0
        var announced = false
        while true {
            guard let (job, adopted) = try await adoptOrSubmit() else {
                // Another driver's job (or an earlier run) finished it meanwhile.
                guard let entry = pipeline.cachedEntry(key: key, spec: spec) else {
                    return .failed("the cache entry of key \(key.prefix(12)) vanished after it was found")
                }
                return .hit(entry, How(status: .cached, cache: "hit", cpuSeconds: 0))
            }
            if !announced {
                observer.handle(.stageStarted(id: spec.id, cores: spec.resources.cores ?? 1))
                announced = true
            }
            let status: SlurmJobStatus?
            do {
                status = try await follow(job)
            } catch {
                if !adopted { await cancel(job) }
                throw error
            }
            copyLog(of: job, status: status)
            let state = status?.state ?? "UNKNOWN"
            history.append("\(job.jobID):\(state)")
            jobRecord = ClusterJob(
                id: job.jobID, cluster: job.cluster, node: status?.node, state: state,
                queueWaitSeconds: status?.queueWaitSeconds, attempts: submitted, history: history, adopted: adopted && submitted == 0)
            let result = readResult(job)
            if status.map(\.isTerminal) ?? true { area.removeSubmission(logPath: job.logPath, resultPath: job.resultPath) }

            if state == "COMPLETED" || status == nil && (result?.status == .ran || result?.status == .cached) {
                area.removeRecord(key: key, jobID: job.jobID)
                guard let entry = pipeline.cachedEntry(key: key, spec: spec) else {
                    return .failed("slurm job \(job.jobID) completed but key \(key.prefix(12)) has no cache entry in \(pipeline.store.root): is the cache directory shared with the nodes?")
                }
                let computed = result?.status == .ran
                // `ran` when the job computed it (ours or adopted), `cached` when the node found the entry.
                return .hit(entry, How(
                    status: computed ? .ran : .cached, cache: computed ? "miss" : "hit", cpuSeconds: result?.cpuSeconds ?? 0))
            }
            let onNode = status?.node.map { " on \($0)" } ?? ""
            if let status, SlurmJobStatus.infrastructureStates.contains(state) {
                let why = "slurm job \(job.jobID) ended \(state)\(onNode)" + (status.reason.map { " (\($0))" } ?? "")
                area.removeRecord(key: key, jobID: job.jobID)
                guard infrastructureFailures < retries else {
                    let tried = infrastructureFailures == 0 ? "" : " after \(infrastructureFailures + 1) attempts"
                    let hint = retries == 0 ? "; set `retries:` on the stage or in the site file to resubmit" : ""
                    return .failed("\(why)\(tried)\(hint)")
                }
                infrastructureFailures += 1
                let wait = settings.backoffSeconds * pow(2, Double(infrastructureFailures - 1))
                observer.handle(.warning("`\(spec.id)`: \(why); resubmitting in \(String(format: "%.0f", wait)) s (retry \(infrastructureFailures) of \(retries))"))
                if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
                continue
            }
            area.removeRecord(key: key, jobID: job.jobID)
            if let result, result.status == .failed, let reason = result.reason {
                let refused = status?.exitCode == 2 ? "the node refused the job: " : ""
                return .failed("\(refused)\(reason) (slurm job \(job.jobID)\(onNode))")
            }
            let exit = status?.exitCode.map { " with exit code \($0)" } ?? ""
            let signal = (status?.exitSignal ?? 0) != 0 ? ", signal \(status?.exitSignal ?? 0)" : ""
            return .failed("slurm job \(job.jobID) ended \(state)\(exit)\(signal)\(onNode); see \(request.logRelative)")
        }
    }

    /// A live job an earlier driver submitted for this key, or a new one;
    /// nil when the key has an entry by now. Submission happens under the
    /// key's lock, so two drivers never submit the same key at once.
    private mutating func adoptOrSubmit() async throws -> (SlurmJobRecord, adopted: Bool)? {
        if !request.force, let live = try await liveRecord() { return (live, true) }
        let lock = try await pipeline.store.lock(key: key)
        defer { lock.release() }
        if !request.force {
            if pipeline.cachedEntry(key: key, spec: spec) != nil { return nil }
            if let live = try await liveRecord() { return (live, true) }
        }
        return (try await submit(), false)
    }

    /// The job record of this key if its job is still queued or running.
    private func liveRecord() async throws -> SlurmJobRecord? {
        guard let existing = area.readRecord(key: key),
              existing.cluster == nil || executor.cluster == nil || existing.cluster == executor.cluster,
              let status = try await query(existing.jobID), !status.isTerminal
        else { return nil }
        return existing
    }

    private mutating func submit() async throws -> SlurmJobRecord {
        let paths = area.submission(key: key)
        let threads = spec.resources.allCores ? nil : max(1, spec.resources.cores ?? 1)
        let jobSpec = StageJobSpec(
            recipeFile: executor.invocation.file, overrides: executor.invocation.overrides,
            matrix: executor.invocation.matrix, stageID: spec.id, key: key, upstream: request.upstream,
            backend: spec.backend, seed: pipeline.seed(for: spec.id), threads: threads, force: request.force,
            cacheDirectory: pipeline.store.root, runsDirectory: request.runsRoot, logPath: paths.log,
            resultPath: paths.result, useRemoteCache: pipeline.remote != nil)
        try AtomicFile.write(Data(try SqueezeJSON.encode(jobSpec)), to: paths.spec)
        try AtomicFile.write(Data(SlurmCommands.jobScript(squeeze: executor.squeezeExecutable, specPath: paths.spec).utf8), to: paths.script)
        try FileSystem.makeDirectories(area.root + "/logs")
        try FileSystem.makeDirectories(area.root + "/results")
        let arguments = SlurmCommands.sbatchArguments(
            resources: spec.resources, settings: settings, jobName: SlurmCommands.jobName(stageID: spec.id, key: key),
            outputPath: paths.log, workingDirectory: executor.invocation.workingDirectory, scriptPath: paths.script)
        // Not cancellable: a submission that went through must leave its id
        // with us, so that an interruption can cancel the job.
        let shell = self.shell
        let result = try await Task.detached { try await shell.run("sbatch", arguments) }.value
        guard result.status == 0, let submission = SlurmCommands.parseSubmission(result.output) else {
            throw SlurmCommandError("sbatch refused the job: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        submitted += 1
        let job = SlurmJobRecord(
            jobID: submission.id, cluster: submission.cluster ?? executor.cluster, submittedAt: Date(), stageID: spec.id,
            logPath: paths.log, resultPath: paths.result, submittedFrom: ProcessInfo.processInfo.hostName)
        try area.write(job, key: key)
        if Task.isCancelled {
            await cancel(job)
            throw CancellationError()
        }
        return job
    }

    /// Looks at the job until it ends, waiting longer between looks the
    /// longer it takes (from `poll.min` up to `poll.max`). Nil when the
    /// controller no longer knows the job.
    private func follow(_ job: SlurmJobRecord) async throws -> SlurmJobStatus? {
        var delay = settings.pollMinimumSeconds
        var lastState = ""
        var failures = 0
        while true {
            try Task.checkCancellation()
            do {
                guard let status = try await query(job.jobID) else { return nil }
                failures = 0
                if status.isTerminal { return status }
                if status.state != lastState {
                    lastState = status.state
                    delay = settings.pollMinimumSeconds
                    let detail = status.state == "PENDING" ? status.reason.map { " (\($0))" } ?? "" : status.node.map { " on \($0)" } ?? ""
                    observer.handle(.stageProgress(id: spec.id, StageProgress(message: "slurm job \(job.jobID) \(status.state)\(detail)")))
                }
            } catch let error as SlurmCommandError {
                // The controller may be restarting: keep asking, for a while.
                failures += 1
                if failures >= 20 { throw error }
            }
            try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            delay = min(delay * 1.5, settings.pollMaximumSeconds)
        }
    }

    private func query(_ jobID: String) async throws -> SlurmJobStatus? {
        let result = try await shell.run("scontrol", ["show", "job", "-o", jobID])
        if result.status != 0 {
            if result.output.contains("Invalid job id") { return nil }
            throw SlurmCommandError("`scontrol show job \(jobID)` failed: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return SlurmJobStatus(fields: SlurmCommands.parseJobFields(result.output), id: jobID)
    }

    /// `scancel` the job (the driver was interrupted) and wait a little for
    /// the controller to end it; runs even though the task is cancelled.
    private func cancel(_ job: SlurmJobRecord) async {
        let shell = self.shell
        let area = self.area
        let key = self.key
        await Task.detached {
            _ = try? await shell.run("scancel", [job.jobID])
            for _ in 0..<50 {
                let result = try? await shell.run("scontrol", ["show", "job", "-o", job.jobID])
                guard let result, result.status == 0 else { break }
                if SlurmJobStatus(fields: SlurmCommands.parseJobFields(result.output), id: job.jobID).isTerminal { break }
                try? await Task.sleep(nanoseconds: 200_000_000)
            }
            area.removeRecord(key: key, jobID: job.jobID)
        }.value
    }

    /// Appends the job's output to the stage's log in the run directory.
    private func copyLog(of job: SlurmJobRecord, status: SlurmJobStatus?) {
        guard let log = try? StageLog(path: request.logPath) else { return }
        let node = status?.node.map { " on \($0)" } ?? ""
        log.line("== slurm job \(job.jobID)\(node): \(status?.state ?? "UNKNOWN") ==")
        if let bytes = FileManager.default.contents(atPath: job.logPath) { log.write(bytes) }
    }

    private func readResult(_ job: SlurmJobRecord) -> StageRecord? {
        guard let data = FileManager.default.contents(atPath: job.resultPath) else { return nil }
        return try? SqueezeJSON.decode(StageRecord.self, from: data)
    }
}

/// Runs Slurm's commands with an argument vector and captures what they print.
struct SlurmShell: Sendable {
    var environment: [String: String]
    /// Where the captured output goes while a command runs.
    var scratch: String

    struct Result {
        var status: Int32
        var output: String
    }

    func run(_ command: String, _ arguments: [String]) async throws -> Result {
        guard let executable = Self.find(command, path: environment["PATH"] ?? "/usr/bin:/bin") else {
            throw SlurmCommandError("`\(command)` is not on PATH; install Slurm's client commands (Debian: slurm-client)")
        }
        try FileSystem.makeDirectories(scratch)
        let capture = (scratch as NSString).appendingPathComponent("\(command)-\(UUID().uuidString).out")
        defer { try? FileManager.default.removeItem(atPath: capture) }
        let outcome: ChildProcess.Outcome
        do {
            outcome = try await ChildProcess.run(
                executable: executable, arguments: [command] + arguments, environment: environment,
                workingDirectory: FileManager.default.currentDirectoryPath, logPath: capture, timeout: 120)
        } catch let error as ChildProcess.SpawnError {
            throw SlurmCommandError("could not run `\(command)`: \(error)")
        }
        let output = FileManager.default.contents(atPath: capture).map { String(decoding: $0, as: UTF8.self) } ?? ""
        switch outcome.status {
        case .exited(let code): return Result(status: code, output: output)
        case .signaled(let signal): throw SlurmCommandError("`\(command)` was killed by signal \(signal)")
        case .timedOut: throw SlurmCommandError("`\(command)` did not answer within 120 s")
        }
    }

    static func find(_ command: String, path: String) -> String? {
        if command.contains("/") { return command }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(command)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
