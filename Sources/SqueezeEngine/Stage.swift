import Foundation
import SqueezeRecipe
import SqueezeSupport
import SqueezeYAML
import Synchronization

/// A stage type: one per `uses:` value, e.g. `command` or `prune/cofi`.
///
/// A stage never sees YAML, other stages' paths or the cache. It gets typed
/// parameters (every reference already resolved to a read-only path), an empty
/// output directory and a context, and returns metrics. The engine hashes and
/// stores whatever it left in its declared outputs.
public protocol Stage: Sendable {
    /// The typed parameters. A `StageParameters` type declares each parameter
    /// once (`Parameter`), and the descriptor's `parameters` are its `specs`,
    /// so what validation checks is what decoding reads.
    associatedtype Params: Decodable & Sendable
    /// Type name, version, parameters and outputs: the single declaration that
    /// validation, `squeeze stages` and the JSON Schema all read.
    static var descriptor: StageTypeDescriptor { get }
    func run(_ context: StageContext, _ params: Params) async throws -> StageResult
}

/// What a running stage may use.
public struct StageContext: Sendable {
    public var stageID: String
    /// The recipe's directory; relative paths in parameters were resolved against it.
    public var recipeDirectory: String
    /// An empty directory, private to this execution, where outputs go.
    /// Output `name` is read from `outputDirectory/name` unless the stage
    /// returns another location in `StageResult.outputs`.
    public var outputDirectory: String
    /// The backend id, part of the cache key.
    public var backend: String
    /// This stage's seed, derived from the recipe seed and the stage id.
    public var seed: UInt64
    /// Cores granted to this stage by the scheduler.
    public var threads: Int
    public var log: StageLog
    public var progress: ProgressReporter
    /// Absolute paths of the engine's own directories (the cache, the run
    /// records); writes there are the engine's, never a stage's stray output.
    public var engineDirectories: [String]
    /// Where the content that keyed an unpinned parameter was found when the
    /// key was made (see `StageTypeDescriptor.keyedContent`), by parameter
    /// name: the stage reads it from there instead of looking or fetching
    /// again, so it runs on exactly what its key names. Read-only.
    public var keyedContent: [String: String]
    /// The stage key's resumable area (`ContentStore.resumableDirectory`),
    /// not necessarily created yet: a long stage keeps checkpoints there and
    /// continues from them when rerun after being killed or timed out. It
    /// outlives failed attempts and is removed once the stage's entry is
    /// saved. Nil when the stage runs outside a store (then it cannot resume).
    public var resumeDirectory: String?
    /// The stage key the resumable area belongs to; a checkpoint records it.
    public var cacheKey: String?
    /// The store's download area (`<store>/downloads`), where pinned
    /// downloads are kept by their SHA-256 and resumed across runs; nil when
    /// the stage runs without a store (it then downloads into a temporary
    /// directory that is removed afterwards).
    public var downloadDirectory: String?
    /// The content digest (`sha256:…`, as the store names it) of every
    /// upstream output the parameters refer to, by the path they received:
    /// what a stage records to trace its result to its inputs (an export's
    /// `squeeze-export.json`). Empty outside a store.
    public var inputDigests: [String: String]

    public init(
        stageID: String, recipeDirectory: String, outputDirectory: String, backend: String,
        seed: UInt64, threads: Int, log: StageLog, progress: ProgressReporter, engineDirectories: [String] = [],
        keyedContent: [String: String] = [:], resumeDirectory: String? = nil, cacheKey: String? = nil,
        downloadDirectory: String? = nil, inputDigests: [String: String] = [:]
    ) {
        self.inputDigests = inputDigests
        self.resumeDirectory = resumeDirectory
        self.cacheKey = cacheKey
        self.downloadDirectory = downloadDirectory
        self.engineDirectories = engineDirectories
        self.keyedContent = keyedContent
        self.stageID = stageID
        self.recipeDirectory = recipeDirectory
        self.outputDirectory = outputDirectory
        self.backend = backend
        self.seed = seed
        self.threads = threads
        self.log = log
        self.progress = progress
    }
}

/// What a stage returns on success.
public struct StageResult: Sendable {
    /// Named metrics (accuracy, loss curves, counts), recorded in the cache
    /// entry and the run record. They pass through JSON, where a whole-number
    /// float (3.0) reads back as the integer 3; compare them numerically.
    public var metrics: [String: Value]
    /// Output name → path relative to the output directory, for outputs not at
    /// `outputDirectory/name`. `"."` means the whole output directory.
    public var outputs: [String: String]
    /// CPU seconds the stage used, when it can tell exactly (a child process's
    /// rusage); otherwise the engine measures the process's CPU time.
    public var cpuSeconds: Double?
    /// Things the user should know that do not make the stage fail; the
    /// engine writes them to the stage's log and shows them as warnings.
    public var warnings: [String]

    public init(
        metrics: [String: Value] = [:], outputs: [String: String] = [:], cpuSeconds: Double? = nil, warnings: [String] = []
    ) {
        self.metrics = metrics
        self.outputs = outputs
        self.cpuSeconds = cpuSeconds
        self.warnings = warnings
    }
}

/// A stage failed for a reason the user should read (exit code 1).
///
/// A failure caused by one parameter's value — one that could only be judged
/// once the stage saw its inputs, e.g. a group size that does not divide a
/// model's layer width — names that `parameter`; the runner then reports it
/// at the parameter's position in the recipe (`file:line:column: …`), as
/// validation does.
public struct StageFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The parameter (`with:` key) whose value the failure is about.
    public var parameter: String?
    public init(_ message: String, parameter: String? = nil) {
        self.message = message
        self.parameter = parameter
    }
    public var description: String { message }
}

/// Progress a stage reports while it runs; shown live on a terminal.
public struct StageProgress: Sendable, Hashable {
    /// Completed fraction in 0...1, when known; enables an ETA.
    public var fraction: Double?
    /// A short status such as "step 120/1000 loss 0.31".
    public var message: String?

    public init(fraction: Double? = nil, message: String? = nil) {
        self.fraction = fraction
        self.message = message
    }
}

/// Forwards a stage's progress to whoever displays it.
public struct ProgressReporter: Sendable {
    private let sink: @Sendable (StageProgress) -> Void

    public init(_ sink: @escaping @Sendable (StageProgress) -> Void) { self.sink = sink }

    public static let silent = ProgressReporter { _ in }

    public func report(_ progress: StageProgress) { sink(progress) }

    public func report(fraction: Double? = nil, _ message: String? = nil) {
        sink(StageProgress(fraction: fraction, message: message))
    }
}

/// The stage's log file (`runs/<id>/logs/<stage>.log`); safe to write from any thread.
public final class StageLog: Sendable {
    private let handle: Mutex<FileHandle?>
    public let path: String?

    /// A log appending to `path`, created if missing. It is opened in append
    /// mode because a child process writes the same file: every line, ours or
    /// the child's, lands at the end instead of overwriting the other's.
    public init(path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [
                NSFilePathErrorKey: path, NSUnderlyingErrorKey: POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO),
            ])
        }
        self.handle = Mutex(FileHandle(fileDescriptor: descriptor, closeOnDealloc: true))
        self.path = path
    }

    /// A log that discards everything.
    public init() {
        self.handle = Mutex(nil)
        self.path = nil
    }

    public func write(_ data: Data) {
        handle.withLock { try? $0?.write(contentsOf: data) }
    }

    public func line(_ text: String) {
        write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    deinit {
        handle.withLock { try? $0?.close() }
    }
}

/// A stage type with its parameter type erased, as the registry holds it.
public struct StageType: Sendable {
    public let descriptor: StageTypeDescriptor
    private let runner: @Sendable (StageContext, Value) async throws -> StageResult
    private let decoder: @Sendable (Value) throws(StageFailure) -> Void

    /// `stage` runs every execution of its type; what it holds (the
    /// backends it may make, say) the program gave it when it registered it.
    public init<S: Stage>(_ stage: S) {
        self.descriptor = S.descriptor
        self.runner = { context, params in try await stage.run(context, try Self.decode(S.self, params)) }
        self.decoder = { params throws(StageFailure) in _ = try Self.decode(S.self, params) }
    }

    private static func decode<S: Stage>(_ stage: S.Type, _ params: Value) throws(StageFailure) -> S.Params {
        do {
            return try params.decode(S.Params.self)
        } catch {
            throw StageFailure("parameters of `\(S.descriptor.type)` could not be decoded: \(error)")
        }
    }

    /// Decodes resolved parameters exactly as a run would, without running.
    public func decodeParameters(_ params: Value) throws(StageFailure) {
        try decoder(params)
    }

    /// Runs the stage with resolved parameters (a JSON object of the declared params).
    public func run(_ context: StageContext, params: Value) async throws -> StageResult {
        try await runner(context, params)
    }
}

/// All stage types the engine can run, by `uses:` name.
public struct StageRegistry: Sendable {
    public let types: [String: StageType]
    /// Maps a recipe's backend id to what enters the cache keys of stages
    /// that use a tensor backend: the id plus whatever decides its numerics
    /// (kernel revision, instruction-set variant), so a kernel change or a
    /// different CPU is a miss, never a result computed by other arithmetic.
    public let backendFingerprint: @Sendable (String) -> String

    public init(_ types: [StageType], backendFingerprint: @escaping @Sendable (String) -> String = { $0 }) {
        var byName: [String: StageType] = [:]
        for type in types { byName[type.descriptor.type] = type }
        self.types = byName
        self.backendFingerprint = backendFingerprint
    }

    public subscript(type: String) -> StageType? { types[type] }

    public var descriptors: [String: StageTypeDescriptor] { types.mapValues(\.descriptor) }

    /// Type names, sorted.
    public var names: [String] { types.keys.sorted() }
}
