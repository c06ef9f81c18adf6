import ArgumentParser
import Foundation
import SqueezeEngine

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Inspect and maintain the content-addressed cache.",
        subcommands: [List.self, Verify.self, GC.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List cached stage entries.")
        @OptionGroup var storage: StorageOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let entries = try storage.openStore().allEntries().sorted { $0.createdAt < $1.createdAt }
            if json {
                print(entries.prettyJSON)
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
        @Flag(help: "Remove corrupt objects and the entries that use them.") var repair = false

        func run() throws {
            let report = try storage.openStore().verifyAll(repair: repair)
            for problem in report.problems { print("problem: \(problem)") }
            print("checked \(report.checkedObjects) objects, \(report.checkedTrees) trees, \(report.checkedEntries) entries: "
                + (report.isClean ? "ok" : "\(report.problems.count) problems\(repair ? " (repaired)" : "")"))
            if !report.isClean { throw ExitStatus(code: 1) }
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc", abstract: "Delete cache entries and objects no kept run references.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Keep what the newest N runs reference (default: every recorded run).") var keepRuns: Int?

        func validate() throws {
            if let keepRuns, keepRuns < 0 { throw ValidationError("--keep-runs must be 0 or more") }
        }

        func run() throws {
            var runs = storage.runStore.list()
            if let keepRuns { runs = Array(runs.suffix(keepRuns)) }
            let keys = Set(runs.flatMap { $0.stages.compactMap { stage in
                stage.status == .ran || stage.status == .cached ? stage.key : nil
            } })
            let report = try storage.openStore().collectGarbage(keepingKeys: keys)
            print("removed \(report.removedEntries) entries and \(report.removedObjects) objects "
                + "(\(ByteCount.format(report.removedBytes))); kept \(report.keptEntries) entries referenced by \(runs.count) runs")
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
