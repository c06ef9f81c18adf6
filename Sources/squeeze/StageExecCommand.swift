import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport

/// `squeeze stage-exec SPEC.json`: what a cluster job runs on its node. It
/// loads the recipe as the driver did, recomputes the stage's key (and
/// refuses, exit 2, when it differs from the driver's), then does what the
/// local executor does for one stage against the shared cache. Its stage
/// record goes to the spec's result file; its log is the job's output file.
struct StageExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stage-exec",
        abstract: "Run one stage of a recipe from a job spec (used by cluster jobs).",
        discussion: "Exit codes: 0 the stage ran or was cached, 1 it failed, 2 bad spec or key mismatch, 130 interrupted.",
        shouldDisplay: false)

    @Argument(help: "The job spec (JSON) the driver wrote.")
    var spec: String

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: spec) else {
            throw UserError("cannot read the job spec \(spec)")
        }
        let job: StageJobSpec
        do {
            job = try SqueezeJSON.decode(StageJobSpec.self, from: data)
        } catch {
            throw UserError("\(spec) is not a job spec: \(error)")
        }
        guard job.formatVersion == StageJobSpec.currentFormatVersion else {
            throw UserError("\(spec) has job spec format \(job.formatVersion); this squeeze reads \(StageJobSpec.currentFormatVersion)")
        }
        let log = try StageLog(path: job.logPath)
        log.line("squeeze stage-exec: stage `\(job.stageID)`, key \(job.key.prefix(12)), on \(ProcessInfo.processInfo.hostName)")

        let record: StageRecord
        do {
            record = try await execute(job, log: log)
        } catch {
            // Refused before running (recipe, key): the driver reads why from the result file.
            var refused = StageRecord(id: job.stageID, uses: "", status: .failed, reason: "\(error)")
            refused.key = job.key
            writeResult(refused, to: job.resultPath, log: log)
            log.line("refused: \(error)")
            throw ExitStatus(code: 2)
        }
        writeResult(record, to: job.resultPath, log: log)
        log.line("stage `\(job.stageID)`: \(record.status.rawValue)" + (record.reason.map { ": \($0)" } ?? ""))
        if record.status == .failed, record.reason?.hasPrefix(StageKeyMismatch.reasonPrefix) == true { throw ExitStatus(code: 2) }
        switch record.status {
        case .ran, .cached: return
        case .cancelled: throw ExitStatus(code: 130)
        default: throw ExitStatus(code: 1)
        }
    }

    private func execute(_ job: StageJobSpec, log: StageLog) async throws -> StageRecord {
        let recipe = try RecipeOptions.load(file: job.recipeFile, overrides: job.overrides, matrix: job.matrix)
        guard let stage = recipe.stages[job.stageID] else {
            throw UserError("the recipe \(job.recipeFile) has no stage `\(job.stageID)` on this node")
        }
        let store: ContentStore
        do {
            store = try ContentStore(root: job.cacheDirectory)
        } catch {
            throw UserError("cannot open the shared cache at \(job.cacheDirectory): \(error)")
        }
        var pipeline = Pipeline(
            recipe: recipe, registry: Registered.stages, store: store, environment: ProcessInfo.processInfo.environment)
        if job.useRemoteCache {
            let site = try SiteConfiguration.forRecipe(directory: recipe.directory, environment: ProcessInfo.processInfo.environment)
            pipeline.remote = try RemoteOptions().remoteCache(site: site.remoteCache)
        }
        let threads = job.threads
            ?? ProcessInfo.processInfo.environment["SLURM_CPUS_ON_NODE"].flatMap { Int($0) }
            ?? ProcessInfo.processInfo.activeProcessorCount
        let task = Task {
            await pipeline.executeJobStage(
                stage, upstream: job.upstream, threads: max(1, threads), force: job.force, expectedKey: job.key,
                logPath: job.logPath, runsRoot: job.runsDirectory, observer: JobLogObserver(log: log))
        }
        // scancel sends SIGTERM first: stop the stage cleanly, keeping the cache valid.
        let interrupts = InterruptHandler { task.cancel() }
        defer { interrupts.stop() }
        let record = await task.value
        try? store.flush()
        return record
    }

    private func writeResult(_ record: StageRecord, to path: String, log: StageLog) {
        do {
            try AtomicFile.write(Data(try SqueezeJSON.encode(record)), to: path)
        } catch {
            log.line("cannot write the result file \(path): \(error)")
        }
    }
}

/// Writes a job's warnings to its log; progress is not kept (the driver
/// shows the job's Slurm state instead).
private struct JobLogObserver: RunObserver {
    let log: StageLog

    func handle(_ event: RunEvent) {
        if case .warning(let text) = event { log.line("warning: \(text)") }
    }
}
