import ArgumentParser
import Foundation
import SqueezeEngine
import SqueezeReport
import SqueezeSupport

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarise a run: evaluated models, Pareto fronts, training curves, provenance.",
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
        let report = RunReport(try RunsCommand.load(storage, runReference))
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
