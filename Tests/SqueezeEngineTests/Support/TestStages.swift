import Foundation
import SqueezeEngine
import SqueezeRecipe
import Synchronization

/// Counts executions and concurrency of test stages, per test `tag`.
final class ExecutionLog: Sendable {
    static let shared = ExecutionLog()

    private struct State {
        var executions: [String: Int] = [:]
        var running: [String: Int] = [:]
        var maxRunning: [String: Int] = [:]
    }

    private let state = Mutex(State())

    func begin(_ tag: String) {
        state.withLock {
            $0.executions[tag, default: 0] += 1
            $0.running[tag, default: 0] += 1
            $0.maxRunning[tag] = max($0.maxRunning[tag] ?? 0, $0.running[tag] ?? 0)
        }
    }

    func end(_ tag: String) {
        state.withLock { $0.running[tag, default: 1] -= 1 }
    }

    func executions(_ tag: String) -> Int { state.withLock { $0.executions[tag] ?? 0 } }
    func maxConcurrency(_ tag: String) -> Int { state.withLock { $0.maxRunning[tag] ?? 0 } }
}

/// Writes `text` (and its inputs' contents) to `value.txt`; optionally sleeps or fails.
struct WriteStage: Stage {
    struct Params: Decodable, Sendable {
        var tag: String
        var text: String
        var inputs: [String]
        var sleep_ms: Int
        var fail: Bool
    }

    static let descriptor = StageTypeDescriptor(
        type: "test/write", version: 1, summary: "Write text and the concatenation of inputs.",
        parameters: [
            ParameterSpec("tag", .string, required: true, doc: "Counts executions under this tag."),
            ParameterSpec("text", .string, default: .string(""), doc: "Text to write."),
            ParameterSpec("inputs", .array(.artifact("any")), default: .array([]), doc: "Upstream outputs to append."),
            ParameterSpec("sleep_ms", .int, default: .int(0), doc: "Sleep before writing."),
            ParameterSpec("fail", .bool, default: .bool(false), doc: "Fail instead of writing."),
        ],
        outputs: [OutputSpec("result", kind: "directory", doc: "value.txt")])

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        ExecutionLog.shared.begin(params.tag)
        defer { ExecutionLog.shared.end(params.tag) }
        if params.sleep_ms > 0 { try await Task.sleep(nanoseconds: UInt64(params.sleep_ms) * 1_000_000) }
        if params.fail { throw StageFailure("asked to fail") }
        var text = params.text
        for input in params.inputs {
            text += (try? String(contentsOfFile: (input as NSString).appendingPathComponent("value.txt"), encoding: .utf8)) ?? "?"
        }
        let directory = (context.outputDirectory as NSString).appendingPathComponent("result")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("value.txt")))
        context.progress.report(fraction: 1, "wrote \(text.count) bytes")
        return StageResult(metrics: ["length": .int(text.count), "seed": .string(String(context.seed))])
    }
}

/// Reads a workspace file (a `path` input) and writes its upper-cased copy.
struct UpperStage: Stage {
    struct Params: Decodable, Sendable {
        var tag: String
        var source: String
    }

    static let descriptor = StageTypeDescriptor(
        type: "test/upper", version: 1, summary: "Upper-case a file.",
        parameters: [
            ParameterSpec("tag", .string, required: true, doc: "Counts executions under this tag."),
            ParameterSpec("source", .path, required: true, doc: "File to read."),
        ],
        outputs: [OutputSpec("file", kind: "file", doc: "The upper-cased file.")])

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        ExecutionLog.shared.begin(params.tag)
        defer { ExecutionLog.shared.end(params.tag) }
        let text = try String(contentsOfFile: params.source, encoding: .utf8).uppercased()
        try Data(text.utf8).write(to: URL(fileURLWithPath: (context.outputDirectory as NSString).appendingPathComponent("file")))
        return StageResult()
    }
}

/// Writes the name of the backend it was given, as a tensor stage would compute on it.
struct BackendStage: Stage {
    struct Params: Decodable, Sendable {
        var tag: String
    }

    static let descriptor = StageTypeDescriptor(
        type: "test/backend", version: 1, summary: "Write the backend id.",
        parameters: [ParameterSpec("tag", .string, required: true, doc: "Counts executions under this tag.")],
        outputs: [OutputSpec("file", kind: "file", doc: "The backend id.")],
        usesTensorBackend: true)

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        ExecutionLog.shared.begin(params.tag)
        defer { ExecutionLog.shared.end(params.tag) }
        try Data(context.backend.utf8).write(to: URL(fileURLWithPath: (context.outputDirectory as NSString).appendingPathComponent("file")))
        return StageResult()
    }
}

/// The backend ids the engine tests' recipes may name; the engine only
/// passes them through to stages and cache keys.
let testBackends = RecipeBackends(descriptions: ["cpu": "test CPU", "reference": "test reference"], defaultID: "cpu")
let testRegistry = StageRegistry([StageType(WriteStage()), StageType(UpperStage()), StageType(BackendStage())])
