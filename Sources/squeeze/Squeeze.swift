import ArgumentParser
import Foundation
import SqueezeBench
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

#if canImport(Glibc)
import Glibc
#endif

/// The `squeeze` command. Exit codes: 0 ok, 1 a stage failed, 2 bad input or
/// usage, 130 interrupted.
@main
struct Squeeze: AsyncParsableCommand {
    static let version = SqueezeVersion.current

    static let configuration = CommandConfiguration(
        commandName: "squeeze",
        abstract: "Run declarative model-compression pipelines.",
        discussion: """
            A recipe (YAML) is a DAG of stages. `squeeze run` executes only the stages whose \
            inputs changed, in parallel where the DAG allows, caching every output by content.
            Exit codes: 0 ok, 1 a stage failed, 2 bad input or usage, 130 interrupted.
            """,
        version: version,
        subcommands: [
            ValidateCommand.self, PlanCommand.self, RunCommand.self, RunsCommand.self,
            CacheCommand.self, ReportCommand.self, CompareCommand.self, StagesCommand.self, SchemaCommand.self,
            BenchCommand.self, StageExecCommand.self,
        ]
    )

    static func main() async {
        if let problem = CPUKernels.kernelRequestError {
            Console.error("error: \(problem)")
            Foundation.exit(2)
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitStatus {
            Foundation.exit(exit.code)
        } catch let diagnostics as Diagnostics {
            Console.error(diagnostics.description)
            Foundation.exit(2)
        } catch let diagnostic as Diagnostic {
            Console.error(diagnostic.description)
            Foundation.exit(2)
        } catch let failure as UserError {
            Console.error("error: \(failure.message)")
            Foundation.exit(2)
        } catch {
            let code = exitCode(for: error)
            let message = lowercasingErrorPrefix(fullMessage(for: error))
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            if !message.isEmpty { Console.error(message) }
            // ArgumentParser uses 64 for usage errors; Squeeze promises 2.
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// ArgumentParser starts its messages with `Error:`; squeeze's say `error:`.
private func lowercasingErrorPrefix(_ message: String) -> String {
    message.hasPrefix("Error: ") ? "error: " + message.dropFirst("Error: ".count) : message
}

/// A finished command's exit code, thrown to leave `main` cleanly.
struct ExitStatus: Error {
    var code: Int32
}

enum Console {
    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}
