import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeSupport

struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "Read run records.",
        subcommands: [List.self, Show.self, Diff.self],
        defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List runs, oldest first.",
            discussion: "A run whose run.json cannot be read is listed as `unreadable`, with the reason.")
        @OptionGroup var storage: StorageOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let listing = try storage.runListing()
            let summaries = (listing.records.map(RunSummary.init) + listing.unreadable.map(RunSummary.init))
                .sorted(by: RunSummary.isOlder)
            if json {
                print(summaries.prettyJSON, terminator: "")
                return
            }
            for run in summaries {
                let status = run.status.padding(toLength: 11, withPad: " ", startingAt: 0)
                if let error = run.error {
                    print("\(run.id)  \(status)  \(error)")
                    continue
                }
                let counts = Dictionary(grouping: run.stages.values, by: { $0 }).mapValues(\.count)
                print("\(run.id)  \(status)"
                    + "  \(String(format: "%8.2fs", run.wallSeconds))"
                    + "  ran \(counts["ran"] ?? 0), cached \(counts["cached"] ?? 0), failed \(counts["failed"] ?? 0)")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one run (id, unique prefix or suffix, or `latest`).")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "Run id.") var id: String
        @Flag(help: "Print the whole run.json.") var json = false

        func run() throws {
            let run = try load(storage, id)
            if json {
                print(run.prettyJSON, terminator: "")
                return
            }
            print("run \(run.id): \(run.status.rawValue) in \(String(format: "%.2f", run.wallSeconds))s")
            print("recipe \(run.recipeFile)  backend \(run.backend)  jobs \(run.jobs)  host \(run.host)")
            if let git = run.git { print("git \(git.commit)\(git.dirty ? " (dirty)" : "")") }
            if !run.overrides.isEmpty { print("overrides: \(run.overrides.joined(separator: " "))") }
            if case .object(let recipe) = run.recipe {
                if case .string(let profile)? = recipe["profile"] { print("profile \(profile)") }
                if case .object(let matrix)? = recipe["matrix"], case .array(let variables)? = matrix["variables"],
                   case .array(let combinations)? = matrix["combinations"] {
                    let names = variables.map { if case .string(let name) = $0 { name } else { $0.canonicalJSON } }
                    print("matrix over \(names.joined(separator: ", ")): \(combinations.count) combinations")
                }
            }
            for stage in run.stages {
                var line = "  \(stage.id)  \(stage.status.rawValue)  \(String(format: "%.2fs", stage.wallSeconds))"
                if let key = stage.key { line += "  key \(key.prefix(12))" }
                if let reason = stage.reason { line += "  (\(reason))" }
                print(line)
                for (name, value) in stage.metrics.sorted(by: { $0.key < $1.key }) {
                    print("      \(name) = \(value.canonicalJSON)")
                }
            }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what differs between two runs.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "First run.") var first: String
        @Argument(help: "Second run.") var second: String

        func run() throws {
            let a = try load(storage, first), b = try load(storage, second)
            let lines = RunDiff.lines(a, b)
            print("--- \(a.id)\n+++ \(b.id)")
            print(lines.isEmpty ? "no differences in recipe, keys, outputs or metrics" : lines.joined(separator: "\n"))
        }
    }

    static func load(_ storage: StorageOptions, _ id: String) throws -> RunRecord {
        do {
            return try storage.runStore.resolve(id)
        } catch let failure as RunStore.Failure {
            throw UserError(storage.runsDirectoryProblem(failure))
        } catch {
            throw UserError("\(error)")
        }
    }
}

/// A compact line per run for `runs list --json`; an unreadable run has
/// status `unreadable`, the reason in `error`, and no stages.
struct RunSummary: Encodable {
    var id: String
    var status: String
    var startedAt: Date
    var wallSeconds: Double
    var stages: [String: String]
    var error: String?

    init(_ run: RunRecord) {
        id = run.id
        status = run.status.rawValue
        startedAt = run.startedAt
        wallSeconds = run.wallSeconds
        stages = Dictionary(run.stages.map { ($0.id, $0.status.rawValue) }, uniquingKeysWith: { first, _ in first })
    }

    init(_ run: UnreadableRun) {
        id = run.id
        status = "unreadable"
        startedAt = run.startedAt
        wallSeconds = 0
        stages = [:]
        error = run.reason
    }

    /// Oldest first. An unreadable run's time comes from its id, in whole
    /// seconds, so it goes after the readable runs of its second, as `latest` assumes.
    static func isOlder(_ a: RunSummary, than b: RunSummary) -> Bool {
        func second(_ run: RunSummary) -> Double { run.startedAt.timeIntervalSince1970.rounded(.down) }
        func isUnreadable(_ run: RunSummary) -> Int { run.error == nil ? 0 : 1 }
        return (second(a), isUnreadable(a), a.startedAt, a.id) < (second(b), isUnreadable(b), b.startedAt, b.id)
    }
}

/// The differences between two runs: recipe values, then per stage its
/// status, key, outputs and metrics.
enum RunDiff {
    static func lines(_ a: RunRecord, _ b: RunRecord) -> [String] {
        var lines: [String] = []
        for path in differing(a.recipe, b.recipe, prefix: "recipe") {
            lines.append("\(path.path): \(path.left) → \(path.right)")
        }
        // Run records are files anyone can edit: a repeated stage id must not crash.
        let stagesA = Dictionary(a.stages.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let stagesB = Dictionary(b.stages.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let ids = a.stages.map(\.id) + b.stages.map(\.id).filter { stagesA[$0] == nil }
        for id in ids {
            guard let x = stagesA[id] else { lines.append("stage \(id): only in second run"); continue }
            guard let y = stagesB[id] else { lines.append("stage \(id): only in first run"); continue }
            if x.status != y.status { lines.append("stage \(id) status: \(x.status.rawValue) → \(y.status.rawValue)") }
            if x.key != y.key { lines.append("stage \(id) key: \(x.key?.prefix(12) ?? "-") → \(y.key?.prefix(12) ?? "-")") }
            for name in Set(x.outputs.keys).union(y.outputs.keys).sorted() where x.outputs[name] != y.outputs[name] {
                lines.append("stage \(id) output \(name): \(x.outputs[name]?.digest.short ?? "-") → \(y.outputs[name]?.digest.short ?? "-")")
            }
            for name in Set(x.metrics.keys).union(y.metrics.keys).sorted() where x.metrics[name] != y.metrics[name] {
                lines.append("stage \(id) metric \(name): \(describe(x.metrics[name])) → \(describe(y.metrics[name]))\(delta(x.metrics[name], y.metrics[name]))")
            }
        }
        return lines
    }

    private static func describe(_ value: Value?) -> String {
        value?.canonicalJSON ?? "-"
    }

    private static func delta(_ a: Value?, _ b: Value?) -> String {
        guard let x = a?.number, let y = b?.number else { return "" }
        let change = y - x
        let relative = x != 0 ? String(format: ", %+.1f%%", change / abs(x) * 100) : ""
        return String(format: "  (%+g%@)", change, relative)
    }

    private static func differing(_ a: Value, _ b: Value, prefix: String) -> [(path: String, left: String, right: String)] {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            return Set(x.keys).union(y.keys).sorted().flatMap { key in
                differing(x[key] ?? .null, y[key] ?? .null, prefix: "\(prefix).\(key)")
            }
        default:
            return a == b ? [] : [(prefix, a.canonicalJSON, b.canonicalJSON)]
        }
    }
}
