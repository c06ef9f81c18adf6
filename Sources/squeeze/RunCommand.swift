import ArgumentParser
import Dispatch
import Foundation
import SqueezeBench
import SqueezeEngine
import SqueezeRecipe
import SqueezeStages
import SqueezeTensor

#if canImport(Glibc)
import Glibc
import SqueezeSupport
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run every stale stage of a recipe; cached stages are reused.",
        discussion: "Exit codes: 0 all stages ok, 1 a stage failed, 2 bad recipe or flags, 130 interrupted.")

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var storage: StorageOptions
    @OptionGroup var remote: RemoteOptions

    // `.unconditional`, so that `--jobs -1` is read as a number (and refused by
    // `validate`) rather than as a missing value followed by a flag `-1`.
    @Option(name: [.short, .long], parsing: .unconditional, help: "Stages running at once (default: number of cores).")
    var jobs: Int?

    @Flag(help: "After a failure, keep running stages that do not depend on it.")
    var keepGoing = false

    @Option(help: ArgumentHelp("Run these stages even if cached (repeatable or comma-separated; `all` for every stage).", valueName: "stage"))
    var force: [String] = []

    @Option(help: ArgumentHelp("Run only these stages and what they need (repeatable or comma-separated).", valueName: "stage"))
    var only: [String] = []

    @Flag(help: "Print events and the run record as JSON lines.")
    var json = false

    @Option(help: ArgumentHelp(
        "Where stages execute: `local` (this process) or `slurm` (one batch job per stage; see docs/cluster.md).",
        valueName: "local|slurm"))
    var executor: ExecutorChoice = .local

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1 (how many stages run at once); got \(jobs)") }
    }

    func run() async throws {
        let loaded = try recipe.load()
        let environment = ProcessInfo.processInfo.environment
        let site = try SiteConfiguration.forRecipe(directory: loaded.directory, environment: environment)
        let forced = stageList(force) == ["all"]
            ? Array(loaded.stages.keys) : try selectStages(stageList(force), in: loaded, flag: "--force")
        let selected = try selectStages(stageList(only), in: loaded, flag: "--only")
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let stageExecutor: any StageExecutor
        switch executor {
        case .local:
            stageExecutor = LocalExecutor()
        case .slurm:
            let cluster: String?
            do {
                cluster = try await SlurmExecutor.clusterName(environment: environment)
            } catch {
                throw UserError("--executor slurm: \(error)")
            }
            stageExecutor = SlurmExecutor(
                settings: site.slurm, cluster: cluster,
                invocation: RecipeInvocation(
                    file: absolutePath(recipe.recipe), overrides: recipe.overrides, matrix: recipe.matrix,
                    workingDirectory: FileManager.default.currentDirectoryPath),
                squeezeExecutable: site.slurm.squeezeExecutable ?? Self.ownExecutable(), environment: environment)
        }
        let options = RunOptions(
            jobs: jobs ?? (executor == .slurm ? 64 : cores), cores: cores, keepGoing: keepGoing, force: Set(forced),
            only: selected.isEmpty ? nil : Set(selected), squeezeVersion: Squeeze.version,
            overrides: recipe.overrides, executor: stageExecutor)
        var pipeline = Pipeline(
            recipe: loaded, registry: Registered.stages, store: try storage.openStore(site: site.cacheDirectory),
            environment: environment)
        pipeline.remote = try remote.remoteCache(site: site.remoteCache)
        announceCPUBackend(loaded)
        let console = ConsoleDisplay(live: Console.stderrIsTerminal)
        let display: any RunObserver & Sendable = json ? JSONLinesDisplay() : console
        let ticker = Task {
            guard !json, Console.stderrIsTerminal else { return }
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 250_000_000)
                console.tick()
            }
        }
        defer { ticker.cancel() }

        let runs = storage.runStore
        try pipeline.checkPublications(only: options.only, runsRoot: runs.root)
        let task = Task { try await pipeline.run(options: options, runs: runs, observer: display) }
        let interrupts = InterruptHandler { task.cancel() }
        defer { interrupts.stop() }
        let record: RunRecord
        do {
            record = try await task.value
        } catch let failure as RunStore.Failure {
            throw UserError(storage.runsDirectoryProblem(failure))
        } catch {
            throw UserError("\(error)")
        }
        switch record.status {
        case .succeeded, .running, .abandoned: return
        case .failed: throw ExitStatus(code: 1)
        case .interrupted: throw ExitStatus(code: 130)
        }
    }
}

/// `--executor`.
enum ExecutorChoice: String, ExpressibleByArgument, CaseIterable {
    case local, slurm
}

extension RunCommand {
    /// This squeeze's executable, for jobs to run (`/proc/self/exe`).
    static func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? absolutePath(CommandLine.arguments.first ?? "squeeze")
    }
}

/// Names the fp32 GEMM and kernels when a stage runs tensors on the CPU
/// backend, and warns (once) when the BLAS runs slow kernels for this CPU.
private func announceCPUBackend(_ recipe: Recipe) {
    let usesCPU = recipe.stages.values.contains { stage in
        stage.backend == BackendProvider.cpu.id && Registered.stages[stage.uses]?.descriptor.usesTensorBackend == true
    }
    guard usesCPU else { return }
    FileHandle.standardError.write(Data("squeeze: cpu backend: \(CPUKernels.gemmDescription)\n".utf8))
    CPUWarnings.emitOnce()
}

/// Turns SIGINT and SIGTERM into task cancellation, so stages stop, the cache
/// stays valid and the run record says `interrupted`.
final class InterruptHandler {
    private let sources: [any DispatchSourceSignal]

    init(_ onInterrupt: @escaping @Sendable () -> Void) {
        sources = [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler(handler: onInterrupt)
            source.resume()
            return source
        }
    }

    func stop() {
        sources.forEach { $0.cancel() }
    }
}
