import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeReport
import SqueezeStore
import SqueezeSupport

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarise a run: evaluated models (classifiers, language models), Pareto fronts, generated texts, training curves, provenance.",
        discussion: """
            The run is a run id, a unique prefix or suffix of one, `latest`, or a path to a run directory or its run.json. \
            Prints a text summary (or JSON with --json); --html also writes a self-contained HTML page.
            """)

    @OptionGroup var storage: StorageOptions
    @Argument(help: "The run (id, unique prefix or suffix, `latest`, or a path).") var runReference: String
    @Option(help: ArgumentHelp(
        "Also write the report as a self-contained HTML page. A symbolic link is followed (the link stays); "
            + "a FIFO or device is written through; the file's folder must exist.",
        valueName: "file")) var html: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        let record = try RunsCommand.load(storage, runReference)
        let outputs = StoredOutputs(stores: [record.cacheDirectory, storage.resolvedCacheDirectory])
        let report = RunReport(record, readOutput: outputs.read)
        if let html {
            do {
                try OutputFile.write(Data(HTMLReport.render(report).utf8), to: html)
            } catch {
                throw UserError("--html: \(error)")
            }
            Console.error("wrote \(html)")
        }
        if json {
            print(report.prettyJSON, terminator: "")
        } else {
            print(TextReport.render(report), terminator: "")
        }
    }
}

/// Reads a stage's output file the way the run record names it: by content
/// digest from the store the run wrote to (the record's cache directory,
/// then `--cache-dir` if that differs). `ContentStore.path(for:)` re-hashes
/// a file whose stat changed, so the report shows exactly the bytes the
/// record names; the run folder's `outputs/` links point at the same
/// objects but may dangle after `cache gc` and are named by the engine. A
/// store that does not exist is not created.
final class StoredOutputs {
    private let directories: [String]
    private var opened: [String: Result<ContentStore, any Error>] = [:]

    init(stores: [String]) {
        var seen: Set<String> = []
        directories = stores.map(absolutePath).filter { seen.insert($0).inserted }
    }

    struct Unavailable: Error, CustomStringConvertible {
        var description: String
    }

    func read(_ stage: StageRecord, _ output: String) throws -> Data {
        guard let reference = stage.outputs[output] else {
            throw Unavailable(description: "stage `\(stage.id)` recorded no `\(output)` output")
        }
        guard reference.type == .file else { throw Unavailable(description: "`\(output)` of stage `\(stage.id)` is a directory") }
        var problems: [String] = []
        for directory in directories {
            do {
                guard let store = try store(at: directory) else {
                    problems.append("no cache at \(directory)")
                    continue
                }
                return try Data(contentsOf: URL(fileURLWithPath: try store.path(for: reference)))
            } catch {
                problems.append("\(directory): \(error)")
            }
        }
        throw Unavailable(description: "\(reference.digest.short) is not readable (\(problems.joined(separator: "; ")))")
    }

    private func store(at directory: String) throws -> ContentStore? {
        if let result = opened[directory] { return try result.get() }
        guard try FileSystem.statIfPresent(directory)?.isDirectory == true else { return nil }
        let result = Result { try ContentStore(root: directory) }
        opened[directory] = result
        return try result.get()
    }
}
