import Foundation
import Testing

/// A temporary directory for one test: the recipe and its files under
/// `recipe/`, and beside it a cache and a runs directory that every squeeze
/// invocation is pointed at, so tests never touch the repository or each other.
final class Project: Sendable {
    let root: URL

    init(_ label: String = "project") throws {
        root = FileManager.default.temporaryDirectory
            .appendingPathComponent("squeeze-cli-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: root)
    }

    func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }
    func path(_ relative: String) -> String { url(relative).path }

    var cacheDirectory: String { path("cache") }
    var runsDirectory: String { path("runs") }

    /// `--cache-dir` and `--runs-dir` of this project (or of another cache).
    func storage(cache: String? = nil, runs: String? = nil) -> [String] {
        ["--cache-dir", cache ?? cacheDirectory, "--runs-dir", runs ?? runsDirectory]
    }

    @discardableResult
    func write(_ relative: String, _ text: String) throws -> URL {
        let target = url(relative)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: target)
        return target
    }

    func read(_ relative: String) -> String? {
        FileManager.default.contents(atPath: path(relative)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Runs squeeze with the project as working directory.
    func squeeze(_ arguments: [String], environment: [String: String?] = [:], timeout: Double = 60) throws -> SqueezeCLI.Result {
        try SqueezeCLI.run(arguments, in: root, environment: environment, timeout: timeout)
    }

    /// `squeeze run RECIPE` on this project's storage; extra flags after the recipe.
    func run(_ recipe: String = "recipe/recipe.yaml", _ flags: [String] = [], environment: [String: String?] = [:], timeout: Double = 60) throws -> SqueezeCLI.Result {
        try squeeze(["run", recipe] + storage() + flags, environment: environment, timeout: timeout)
    }

    /// The record of the run that printed `result`.
    func record(of result: SqueezeCLI.Result, runs: String? = nil) throws -> RunJSON {
        let id = try #require(result.runID, "no run id in the output of squeeze: \(result)")
        return try runRecord(id, runs: runs)
    }

    func runRecord(_ id: String, runs: String? = nil) throws -> RunJSON {
        let result = try squeeze(["runs", "show", id, "--json"] + storage(runs: runs))
        try #require(result.status == 0 && result.exitedNormally, "\(result)")
        return try JSONDecoder().decode(RunJSON.self, from: Data(result.stdout.utf8))
    }

    /// Every cache entry, from `squeeze cache ls --json`.
    func cacheEntries(cache: String? = nil) throws -> [CacheEntryJSON] {
        let result = try squeeze(["cache", "ls", "--json"] + storage(cache: cache))
        try #require(result.status == 0 && result.exitedNormally, "\(result)")
        return try JSONDecoder().decode([CacheEntryJSON].self, from: Data(result.stdout.utf8))
    }

    /// `squeeze cache verify`; returns the result for the caller to judge.
    func verifyCache(cache: String? = nil) throws -> SqueezeCLI.Result {
        try squeeze(["cache", "verify"] + storage(cache: cache))
    }
}

/// The parts of `run.json` the tests read. Field names follow the file.
struct RunJSON: Decodable {
    struct Stage: Decodable {
        var id: String
        var status: String
        var key: String?
        var cache: String?
        var reason: String?
        var outputs: [String: ArtifactJSON]
        var log: String?
        var wallSeconds: Double?
        var start: String?
        var end: String?
    }

    var id: String
    var name: String
    var status: String
    var stages: [Stage]

    func stage(_ id: String) -> Stage? { stages.first { $0.id == id } }
}

/// An artifact reference as run records and cache entries write it. The
/// digest is kept as raw JSON text so tests do not depend on its encoding.
struct ArtifactJSON: Decodable, Equatable {
    var raw: String

    init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(JSONValue.self)
        raw = value.canonical
    }
}

/// `squeeze cache ls --json` entries.
struct CacheEntryJSON: Decodable {
    var key: String
    var stageID: String
    var recipeName: String
}

/// Any JSON, for comparing values whose shape the tests do not care about.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? container.decode(Double.self) {
            self = .number(n)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Key-sorted text, equal for equal values.
    var canonical: String {
        switch self {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let n): "\(n)"
        case .string(let s): "\"\(s)\""
        case .array(let items): "[" + items.map(\.canonical).joined(separator: ",") + "]"
        case .object(let fields):
            "{" + fields.keys.sorted().map { "\"\($0)\":\(fields[$0]?.canonical ?? "null")" }.joined(separator: ",") + "}"
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}
