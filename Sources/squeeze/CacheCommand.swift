import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeStore
import SqueezeSupport

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Inspect and maintain the content-addressed cache.",
        subcommands: [List.self, Verify.self, GC.self, Push.self, Pull.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List cached stage entries.")
        @OptionGroup var storage: StorageOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let entries = try storage.openStore().allEntries().sorted { $0.createdAt < $1.createdAt }
            if json {
                print(entries.prettyJSON, terminator: "")
                return
            }
            for entry in entries {
                let bytes = entry.outputs.values.reduce(Int64(0)) { $0 + $1.size }
                print("\(entry.key.prefix(12))  \(entry.recipeName)/\(entry.stageID)  \(entry.stageType)@\(entry.stageVersion)"
                    + "  \(ByteCount.format(bytes))  \(String(format: "%.2fs", entry.wallSeconds))")
            }
            print("\(entries.count) entries")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-hash every object and check every entry (exit 1 if anything is wrong).")
        @OptionGroup var storage: StorageOptions
        @Flag(help: "Remove corrupt objects and the entries that use them, and stale lock files.") var repair = false

        func run() throws {
            let report = try storage.openStore().verifyAll(repair: repair)
            for problem in report.problems { print("problem: \(problem)") }
            for lock in report.staleLocks { print("\(repair ? "removed " : "")stale lock file: \(lock)") }
            print("checked \(report.checkedObjects) objects, \(report.checkedTrees) trees, \(report.checkedEntries) entries: "
                + (report.isClean ? "ok" : "\(report.problems.count) problems\(repair ? " (repaired)" : "")"))
            if !report.isClean { throw ExitStatus(code: 1) }
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc", abstract: "Delete cache entries and objects no kept run references.",
            discussion: """
                Refuses to run when the runs directory holds no readable run record (every entry would look \
                unused): run it where your runs are, or pass --runs-dir; `--keep-runs 0` empties the cache on purpose. \
                A run whose run.json cannot be read keeps every entry it may reference, with a warning. \
                The checkpoints of unfinished stages (`resumable/<key>/`) are removed when their stage has an entry \
                or nothing was written there for --keep-checkpoints-days days.
                """)
        @OptionGroup var storage: StorageOptions
        @Option(parsing: .unconditional, help: "Keep what the newest N runs reference (default: every recorded run).")
        var keepRuns: Int?
        @Option(
            parsing: .unconditional,
            help: "Remove the checkpoints of unfinished stages not written for this many days (0: all of them).")
        var keepCheckpointsDays: Double = 7

        func validate() throws {
            if let keepRuns, keepRuns < 0 { throw ValidationError("--keep-runs must be 0 or more; got \(keepRuns)") }
            if !(keepCheckpointsDays >= 0) {
                throw ValidationError("--keep-checkpoints-days must be 0 or more; got \(keepCheckpointsDays)")
            }
        }

        func run() throws {
            let listing = try storage.runListing()
            if listing.records.isEmpty, keepRuns != 0 {
                let damaged = listing.unreadable.isEmpty ? "" : " (\(listing.unreadable.count) unreadable)"
                throw UserError(
                    "no readable run records in \(storage.resolvedRunsDirectory)\(damaged), so every cache entry looks unused; "
                    + "run gc where your runs are (or pass --runs-dir), or pass --keep-runs 0 to empty the cache on purpose")
            }
            let store = try storage.openStore()
            var runs = listing.records
            if let keepRuns { runs = Array(runs.suffix(keepRuns)) }
            var keys = Set(runs.flatMap { $0.stages.compactMap { stage in
                stage.status == .ran || stage.status == .cached ? stage.key : nil
            } })
            if keepRuns != 0, !listing.unreadable.isEmpty {
                keys.formUnion(keysPossiblyReferenced(by: listing.unreadable, in: store))
            }
            let report: GCReport
            do {
                report = try store.collectGarbage(keepingKeys: keys, resumableMaximumAge: keepCheckpointsDays * 86_400)
            } catch let error as StoreError where error.kind == .busy {
                throw UserError("\(error); wait for it to finish, then run gc again")
            }
            print("removed \(report.removedEntries) entries and \(report.removedObjects) objects "
                + "(\(ByteCount.format(report.removedBytes))); kept \(report.keptEntries) entries referenced by \(runs.count) runs"
                + (report.removedLocks > 0 ? "; removed \(report.removedLocks) stale lock files" : "")
                + (report.removedResumableAreas > 0 ? "; removed \(report.removedResumableAreas) checkpoint areas" : ""))
        }

        /// The keys of entries that unreadable runs may use (their keys or
        /// output digests appear in what is left of the run), with a warning each.
        private func keysPossiblyReferenced(by damaged: [UnreadableRun], in store: ContentStore) -> Set<String> {
            let entries = store.allEntries()
            var keys = Set<String>()
            for run in damaged {
                let digests = run.referencedDigests()
                let kept = entries.filter { entry in
                    digests.contains(entry.key) || entry.outputs.values.contains { digests.contains($0.digest.hex) }
                }.map(\.key)
                keys.formUnion(kept)
                Console.error("warning: run \(run.id) is unreadable (\(run.reason)); keeping \(kept.count) cache entries it may use")
            }
            return keys
        }
    }
}

extension CacheCommand {
    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload the stage entries and outputs of a run to the remote cache.",
            discussion: """
                Every stage the run executed or took from a cache is uploaded from the local cache (objects first, \
                the entry last; what the server has is skipped). Exit 1 when something could not be pushed.
                """)
        @Argument(help: "The run: an id, a unique prefix or suffix, `latest`, or a run directory.")
        var runID = "latest"
        @OptionGroup var storage: StorageOptions
        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            guard let cache = try remote.remoteCache() else {
                throw UserError("no remote cache to push to: pass --remote URL or set $SQUEEZE_REMOTE_CACHE")
            }
            let record = try RunsCommand.load(storage, runID)
            let report = await Pipeline.pushToRemote(record, store: try storage.openStore(), remote: cache)
            for warning in report.warnings { Console.error("warning: \(warning)") }
            print("pushed \(report.entries) entries of run \(record.id) to \(cache.displayURL): \(report.transfer.objects) objects, "
                + "\(ByteCount.format(report.transfer.bytes)) (\(report.transfer.present) objects and \(report.alreadyThere) entries were there already)")
            if !report.unavailable.isEmpty {
                Console.error("not pushed: " + report.unavailable.map { "`\($0)`" }.joined(separator: ", ")
                    + (cache.uploadsDisabledReason == nil ? " (not in the local cache any more)" : ""))
                throw ExitStatus(code: 1)
            }
        }
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch every stage of a recipe that the remote cache has into the local cache.",
            discussion: """
                Plans the recipe as `squeeze plan --remote` does and fetches each `remote` stage's entry and outputs, \
                every object verified by its digest. Stages the remote cache lacks are listed; they run on the next \
                `squeeze run`. Exit 1 when the remote cache could not be used.
                """)
        @OptionGroup var recipe: RecipeOptions
        @OptionGroup var storage: StorageOptions
        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            let loaded = try recipe.load()
            let environment = ProcessInfo.processInfo.environment
            let site = try SiteConfiguration.forRecipe(directory: loaded.directory, environment: environment)
            guard let cache = try remote.remoteCache(site: site.remoteCache) else {
                throw UserError("no remote cache to pull from: pass --remote URL, set $SQUEEZE_REMOTE_CACHE or give `cache.remote` in the site file")
            }
            var pipeline = Pipeline(
                recipe: loaded, registry: Registered.stages, store: try storage.openStore(site: site.cacheDirectory),
                environment: environment)
            pipeline.remote = cache
            let report: RemoteTransferReport
            do {
                report = try await pipeline.pullFromRemote()
            } catch {
                throw UserError("\(error)")
            }
            try? pipeline.store.flush()
            for warning in report.warnings { Console.error("warning: \(warning)") }
            print("pulled \(report.entries) entries from \(cache.displayURL): \(report.transfer.objects) objects, "
                + "\(ByteCount.format(report.transfer.bytes)) (\(report.transfer.present) objects were local already); "
                + "\(report.alreadyThere) stages were cached locally")
            if !report.unavailable.isEmpty {
                print("not in the remote cache (they run on the next `squeeze run`): "
                    + report.unavailable.map { "`\($0)`" }.joined(separator: ", "))
            }
            if cache.disabledReason != nil { throw ExitStatus(code: 1) }
        }
    }
}

enum ByteCount {
    static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes), unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
