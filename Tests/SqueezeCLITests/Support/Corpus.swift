import Foundation
import Testing

/// The recipe corpora under Tests/SqueezeCLITests/recipes.
enum Corpus {
    /// Tests/SqueezeCLITests/recipes, found from this source file.
    static var directory: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // Support
            .deletingLastPathComponent()  // SqueezeCLITests
            .appendingPathComponent("recipes")
    }

    /// The repository root.
    static var repository: URL {
        directory
            .deletingLastPathComponent()  // SqueezeCLITests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()
    }

    /// `*.yaml` files in `recipes/SUBDIRECTORY`, sorted by name.
    static func files(in subdirectory: String) -> [URL] {
        yamlFiles(in: directory.appendingPathComponent(subdirectory))
    }

    /// The example recipes in the repository's `pipelines/`.
    static var pipelines: [URL] {
        yamlFiles(in: repository.appendingPathComponent("pipelines"))
    }

    static func yamlFiles(in folder: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") }.sorted().map { folder.appendingPathComponent($0) }
    }

    /// Every bad case: the committed files, then the ones generated at test time.
    static var badCases: [BadCase] {
        files(in: "bad").map { BadCase(file: $0) } + BadCase.generated
    }
}

/// One expected error: a position (required for recipe errors) and a message fragment.
struct ExpectedError: Sendable, CustomStringConvertible {
    var line: Int?
    var column: Int?
    var fragment: String

    /// Parses `LINE:COL: fragment` or a bare `fragment`.
    init(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        if parts.count == 3, let line = Int(parts[0].trimmingCharacters(in: .whitespaces)),
           let column = Int(parts[1].trimmingCharacters(in: .whitespaces)) {
            self.line = line
            self.column = column
            fragment = parts[2].trimmingCharacters(in: .whitespaces)
        } else {
            fragment = text.trimmingCharacters(in: .whitespaces)
        }
    }

    var description: String {
        if let line, let column { return "\(line):\(column): \(fragment)" }
        return fragment
    }
}

/// A bad recipe and what squeeze must say about it.
struct BadCase: Sendable, CustomTestStringConvertible {
    enum Command: String, Sendable {
        case validate, run
    }

    enum SchemaVerdict: String, Sendable {
        /// The JSON Schema alone rejects the recipe.
        case invalid
        /// Only squeeze can tell (cycles, dangling references, YAML-level errors, …).
        case unknown
    }

    /// A file name such as `012-duplicate-top-key.yaml`.
    var name: String
    /// The committed file, or nil for a generated case.
    var file: URL?
    var expectedExit: Int32 = 2
    var errors: [ExpectedError] = []
    var command: Command = .validate
    var arguments: [String] = []
    var schema: SchemaVerdict = .unknown
    /// Environment variables to set (`# env: NAME=VALUE`) or unset (`# env: NAME`).
    var environment: [String: String?] = [:]
    /// The longest squeeze may take (`# max-seconds: 5`), for failures that must be quick.
    var maxSeconds: Double?
    /// Problems with the header itself; a case with any fails.
    var headerProblems: [String] = []

    var testDescription: String { name }

    init(file: URL) {
        self.file = file
        name = file.lastPathComponent
        var lines: [String] = []
        let sidecar = file.deletingPathExtension().appendingPathExtension("expect")
        if let data = FileManager.default.contents(atPath: file.path) {
            // A binary or invalid UTF-8 case keeps its header in the sidecar.
            if let text = String(data: data, encoding: .utf8) {
                lines += text.split(separator: "\n", omittingEmptySubsequences: false)
                    .map(String.init).prefix { $0.hasPrefix("#") }
            }
        } else {
            headerProblems.append("cannot read \(file.path)")
        }
        if let data = FileManager.default.contents(atPath: sidecar.path) {
            // The sidecar's lines come last, so they win over the file's own header.
            lines += String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        apply(headerLines: lines)
    }

    init(generatedName: String, header: [String]) {
        name = generatedName
        apply(headerLines: header)
    }

    private mutating func apply(headerLines: [String]) {
        var sawCommand = false, sawExit = false
        for raw in headerLines {
            var line = Substring(raw)
            if line.hasPrefix("#") { line = line.dropFirst() }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "expect-exit":
                sawExit = true
                if let code = Int32(value) { expectedExit = code } else { headerProblems.append("bad expect-exit `\(value)`") }
            case "expect-error":
                errors.append(ExpectedError(value))
            case "command":
                sawCommand = true
                if let command = Command(rawValue: value) { self.command = command } else { headerProblems.append("bad command `\(value)`") }
            case "args":
                arguments += Self.splitArguments(value)
            case "schema":
                if let verdict = SchemaVerdict(rawValue: value) { schema = verdict } else { headerProblems.append("bad schema `\(value)`") }
            case "max-seconds":
                if let seconds = Double(value) { maxSeconds = seconds } else { headerProblems.append("bad max-seconds `\(value)`") }
            case "env":
                if let equals = value.firstIndex(of: "=") {
                    environment[String(value[..<equals])] = String(value[value.index(after: equals)...])
                } else {
                    environment[value] = .some(nil)
                }
            default:
                continue
            }
        }
        if !sawCommand { command = expectedExit == 1 ? .run : .validate }
        if !sawExit { headerProblems.append("missing `expect-exit`") }
        if errors.isEmpty { headerProblems.append("missing `expect-error`") }
        if expectedExit == 2, arguments.isEmpty, errors.contains(where: { $0.line == nil }) {
            headerProblems.append("recipe errors (exit 2) need a LINE:COL position")
        }
        if schema == .invalid, expectedExit != 2 {
            headerProblems.append("`schema: invalid` is only meaningful for exit-2 cases")
        }
    }

    /// Splits on spaces; single or double quotes group words.
    static func splitArguments(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        var quote: Character?
        var inWord = false
        for character in text {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
            } else if character == "'" || character == "\"" {
                quote = character
                inWord = true
            } else if character == " " {
                if inWord { result.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if inWord { result.append(current) }
        return result
    }

    /// Cases too large or too odd to commit, written to a temporary directory
    /// by `materialize(into:)`.
    static var generated: [BadCase] {
        [
            BadCase(generatedName: "generated-2mib.yaml", header: [
                "expect-exit: 2",
                "expect-error: 1:1: limited to 1 MiB",
            ]),
        ]
    }

    /// Writes a generated case's content to `directory`; returns its file name.
    func materialize(into directory: URL) throws -> String {
        switch name {
        case "generated-2mib.yaml":
            // A valid-looking recipe padded with comments to 2 MiB: rejected
            // for its size before it is parsed.
            var text = "version: 1\nname: huge\nstages:\n  a:\n    uses: command\n    with: {run: [\"true\"]}\n"
            let pad = "# " + String(repeating: "x", count: 1021) + "\n"
            while text.utf8.count < 2 << 20 { text += pad }
            try Data(text.utf8).write(to: directory.appendingPathComponent(name))
        default:
            throw CorpusError(description: "no generator for \(name)")
        }
        return name
    }
}

struct CorpusError: Error, CustomStringConvertible {
    var description: String
}
