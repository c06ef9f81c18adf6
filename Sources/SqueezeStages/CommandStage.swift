import Foundation
import SqueezeEngine
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `uses: command` — runs an executable with an argument list, like a Makefile
/// rule whose outputs live in the content-addressed store.
///
/// The argument list is passed to the program as is (no shell) unless the recipe
/// says `shell: true`; then every reference and variable in the script reaches
/// the shell as an environment variable that the script expands (see
/// `ShellScript`), so a parameter can never become shell syntax.
public struct CommandStage: Stage {
    public struct Params: StageParameters {
        public static let run = Parameter("run", .runSpec, quoting: .shell, doc: "The program and its arguments as a list (no shell), or a shell script when `shell: true`. The first element is looked up on PATH unless it contains a slash.")
        public static let shell = Parameter("shell", .bool, default: false, doc: "Run `run` (a string) with /bin/sh -c. Each reference in it reaches the script as an environment variable, never as script text; one inside single quotes, backquotes or shell arithmetic is an error.")
        public static let inputs = Parameter("inputs", .array(.path), default: [], doc: "Files and directories the command reads; their content is part of the cache key.")
        public static let outputs = Parameter("outputs", .array(.string), default: [], doc: "Paths, relative to ${out}, that the command must create. A missing one fails the stage.")
        public static let env = Parameter("env", .map(.string), default: [:], doc: "Extra environment variables for the command.")
        public static let timeout = Parameter("timeout", .optional(.number), doc: "Seconds after which the command (and every process it started) is killed and the stage fails.")

        public static let parameters: [any ParameterDeclaration] = [
            run, shell, inputs, outputs, env, timeout,
        ]

        /// argv, or a script when `shell` is true.
        public var run: RunSpec
        public var shell: Bool
        public var inputs: [String]
        public var outputs: [String]
        public var env: [String: String]
        public var timeout: Double?

        public init(_ arguments: StageArguments) throws {
            run = try arguments[Self.run]
            shell = try arguments[Self.shell]
            inputs = try arguments[Self.inputs]
            outputs = try arguments[Self.outputs]
            env = try arguments[Self.env]
            timeout = try arguments[Self.timeout]
        }
    }

    /// `run:` is a list of arguments, or one string for `shell: true` (with
    /// the values it reads, when it has references).
    public enum RunSpec: Decodable, Sendable {
        case arguments([String])
        case script(ShellScript)

        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let list = try? container.decode([String].self) {
                self = .arguments(list)
            } else if let text = try? container.decode(String.self) {
                self = .script(ShellScript(text: text, environment: [:]))
            } else {
                self = .script(try container.decode(ShellScript.self))
            }
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "command",
        version: 1,
        summary: "Run a program with an argument list; its outputs are files it writes under ${out}.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("out", kind: "directory", doc: "The directory the command wrote (${out} while it ran)."),
        ],
        check: checkParams
    )

    public init() {}

    /// Checks beyond types: shell/run agreement, output paths that stay inside ${out}.
    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        let shell = with["shell"]?.scalar == "true"
        if let run = with["run"] {
            if shell, run.items != nil {
                problems.append(Diagnostic(
                    "`run` must be a single string when `shell: true`", at: run.location,
                    hint: "write the script as one string, or drop `shell: true` to pass a list of arguments"))
            } else if !shell, run.scalar != nil {
                problems.append(Diagnostic(
                    "`run` is a string, but no shell is used", at: run.location,
                    hint: "write the arguments as a list (`run: [prog, arg1, arg2]`), or add `shell: true` to run it with /bin/sh"))
            } else if let items = run.items, items.isEmpty {
                problems.append(Diagnostic("`run` is an empty list", at: run.location, hint: "name the program to run"))
            } else if let items = run.items, let script = ShellCommandString.script(in: items),
                      let text = script.scalar, ShellCommandString.hasReference(text) {
                let program = items.first?.scalar ?? "sh"
                problems.append(Diagnostic(
                    "a reference inside the script of `\(program) -c` would be pasted into shell code", at: script.location,
                    hint: "pass values as arguments after the script and read them as \"$1\", \"$2\" (`[\(program), -c, 'echo \"$1\"', \(program), \"${vars.x}\"]`), "
                        + "or write the script as a string with `shell: true`, which substitutes values safely"))
            }
        }
        for output in with["outputs"]?.items ?? [] {
            guard let path = output.scalar else { continue }
            if let reason = OutputPath.escapeReason(path) {
                problems.append(Diagnostic(
                    "output `\(path)` \(reason)", at: output.location,
                    hint: "outputs are paths inside ${out}, such as `model.bin` or `shards/`"))
            }
        }
        if let timeout = with["timeout"]?.scalar, let seconds = Double(timeout), seconds <= 0 {
            problems.append(Diagnostic("`timeout` must be positive", at: with["timeout"]?.location))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let arguments: [String]
        var scriptValues: [String: String] = [:]
        switch params.run {
        case .arguments(let list):
            guard !list.isEmpty else { throw StageFailure("`run` is an empty list") }
            arguments = list
        case .script(let script):
            arguments = ["/bin/sh", "-c", script.text]
            scriptValues = script.environment
        }
        guard let executable = ExecutableLookup.find(arguments[0], workingDirectory: context.recipeDirectory) else {
            throw StageFailure("command not found: `\(arguments[0])` (searched PATH and the recipe's directory)")
        }
        var environment = ProcessInfo.processInfo.environment
        for (name, value) in params.env { environment[name] = value }
        environment["SQUEEZE_OUT"] = context.outputDirectory
        environment["SQUEEZE_SEED"] = String(context.seed)
        environment["SQUEEZE_STAGE"] = context.stageID
        environment["SQUEEZE_THREADS"] = String(context.threads)
        environment.merge(scriptValues) { _, value in value }

        context.log.line("$ " + arguments.map(ShellQuote.quote).joined(separator: " "))
        for name in scriptValues.keys.sorted(by: { ($0.count, $0) < ($1.count, $1) }) {
            context.log.line("  with \(name)=\(ShellQuote.quote(scriptValues[name] ?? ""))")
        }
        let started = Date()
        let before = WorkspaceSnapshot(root: context.recipeDirectory, ignoring: context.engineDirectories)
        let outcome = try await ChildProcess.run(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: context.recipeDirectory, logPath: context.log.path,
            timeout: params.timeout)
        let elapsed = Date().timeIntervalSince(started)
        switch outcome.status {
        case .exited(0):
            break
        case .exited(let code):
            throw StageFailure("command exited with status \(code)\(logHint(context))")
        case .signaled(let signal):
            throw StageFailure("command was killed by signal \(signal)\(logHint(context))")
        case .timedOut:
            throw StageFailure("command timed out after \(formatSeconds(params.timeout ?? 0)) and was killed")
        }
        let appeared = WorkspaceSnapshot(root: context.recipeDirectory, ignoring: context.engineDirectories)
            .added(since: before)
        for output in params.outputs {
            let path = (context.outputDirectory as NSString).appendingPathComponent(output)
            guard FileManager.default.fileExists(atPath: path) else {
                let misplaced = appeared.contains(output)
                    ? "; `\(output)` appeared in the recipe's directory instead: write it to ${out}/\(output) ($SQUEEZE_OUT/\(output))" : ""
                throw StageFailure("command did not create declared output `\(output)` in ${out}\(misplaced)")
            }
        }
        return StageResult(
            metrics: ["command_seconds": .double(elapsed)], outputs: ["out": "."], cpuSeconds: outcome.cpuSeconds,
            warnings: Self.appearedWarning(appeared).map { [$0] } ?? [])
    }

    /// Files that appeared in the recipe's directory while the command ran
    /// are a warning, never a failure: the snapshot cannot tell the command's
    /// writes from an editor's, git's, Python's `__pycache__` or a second
    /// `squeeze run`'s, and failing would throw away a finished output (hours
    /// of training) for something another program may have done. What the
    /// stage produces is only ever what is under `${out}`, so a stray file is
    /// never cached or handed to later stages either way.
    static func appearedWarning(_ appeared: [String]) -> String? {
        guard !appeared.isEmpty else { return nil }
        let shown = appeared.prefix(3).map { "`\($0)`" }.joined(separator: ", ")
        let more = appeared.count > 3 ? " and \(appeared.count - 3) more" : ""
        return "\(shown)\(more) appeared in the recipe's directory while the command ran; they are not part of its output. "
            + "If the command wrote them, write them under ${out} ($SQUEEZE_OUT) so they are cached"
    }

    private func logHint(_ context: StageContext) -> String {
        context.log.path.map { " (see \($0))" } ?? ""
    }

    private func formatSeconds(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}

/// `run: [sh, -c, SCRIPT, …]`: a shell started explicitly with a command
/// string. A reference written inside SCRIPT would be pasted into shell code
/// unquoted, so it is refused; values belong in the arguments after it.
enum ShellCommandString {
    static let shells: Set<String> = ["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"]

    /// The command string of `items` when they start a shell with `-c`
    /// (`[sh, -c, S]`, `[bash, -euc, S]`, `[bash, -o, pipefail, -c, S]`).
    static func script(in items: [YAMLNode]) -> YAMLNode? {
        guard let program = items.first?.scalar, shells.contains((program as NSString).lastPathComponent) else { return nil }
        var sawCommandOption = false
        var takesArgument = false
        for item in items.dropFirst() {
            guard let word = item.scalar else { return nil }
            if takesArgument {
                takesArgument = false
            } else if word.hasPrefix("-") || word.hasPrefix("+") {
                guard !word.hasPrefix("--") else { continue }  // `--`, or a long option such as `--norc`
                takesArgument = word.hasSuffix("o") || word.hasSuffix("O")  // `-o pipefail`, `+o errexit`
                if word.hasPrefix("-"), word.dropFirst().contains("c") { sawCommandOption = true }
            } else {
                // The first operand: the command string after `-c`, otherwise a script file.
                return sawCommandOption ? item : nil
            }
        }
        return nil
    }

    /// Whether `text` holds a `${…}` reference (`$${` is a literal `${`).
    static func hasReference(_ text: String) -> Bool {
        text.replacingOccurrences(of: "$${", with: "").contains("${")
    }
}

extension ParameterType where Decoded == CommandStage.RunSpec {
    static var runSpec: Self { Self(.oneOf([.array(.string), .string])) }
}

/// Rules for paths a stage declares inside its output directory.
enum OutputPath {
    /// Why `path` would leave the output directory, or nil when it stays inside.
    static func escapeReason(_ path: String) -> String? {
        if path.isEmpty { return "is empty" }
        if path.hasPrefix("/") { return "is absolute; it would be written outside the stage's output directory" }
        if path.split(separator: "/").contains("..") { return "contains `..`; it would be written outside the stage's output directory" }
        return nil
    }
}

/// The names of files under a recipe's directory, to point out files that
/// appeared while a command ran (see `CommandStage.appearedWarning`). Hidden entries, `runs/`,
/// build folders and the engine's own directories (cache, run records) are not
/// looked at; a very large tree is not checked at all.
struct WorkspaceSnapshot {
    static let limit = 20_000
    private(set) var paths: Set<String> = []
    private(set) var complete = true

    init(root: String, ignoring ignored: [String] = []) {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else {
            complete = false
            return
        }
        let rootPrefix = (root as NSString).standardizingPath + "/"
        let ignoredRelative = Set(ignored.compactMap { path -> String? in
            let standardized = (path as NSString).standardizingPath
            return standardized.hasPrefix(rootPrefix) ? String(standardized.dropFirst(rootPrefix.count)) : nil
        })
        while let path = enumerator.nextObject() as? String {
            let name = (path as NSString).lastPathComponent
            if name.hasPrefix(".") || path == "runs" || ignoredRelative.contains(path) {
                enumerator.skipDescendants()
                continue
            }
            paths.insert(path)
            if paths.count > Self.limit {
                complete = false
                return
            }
        }
    }

    /// Paths present now but not in `earlier`, sorted.
    func added(since earlier: WorkspaceSnapshot) -> [String] {
        guard complete, earlier.complete else { return [] }
        return paths.subtracting(earlier.paths).sorted()
    }
}

/// PATH lookup with the rules of execvp, done up front for a clear error.
enum ExecutableLookup {
    static func find(_ name: String, workingDirectory: String) -> String? {
        let fm = FileManager.default
        if name.contains("/") {
            let path = name.hasPrefix("/") ? name : (workingDirectory as NSString).appendingPathComponent(name)
            return fm.isExecutableFile(atPath: path) ? path : nil
        }
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in searchPath.split(separator: ":") where !directory.isEmpty {
            let candidate = (String(directory) as NSString).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
               fm.isExecutableFile(atPath: candidate) {
                return candidate
            }
        }
        return nil
    }
}
