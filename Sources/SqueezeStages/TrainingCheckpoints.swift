import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `checkpoint_every`: a number of updates (`200`) or of minutes (`10m`).
/// How often a checkpoint is written never changes a stage's bits, so the
/// parameter is declared `outsideKey`.
public enum CheckpointInterval: Sendable, Hashable, Decodable, ParameterValue {
    case updates(Int)
    case minutes(Int)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let updates = try? container.decode(Int.self) {
            self = .updates(updates)
            return
        }
        let text = try container.decode(String.self)
        guard let interval = Self(text: text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "`checkpoint_every` must be a number of updates (200) or minutes (10m), got \(text)")
        }
        self = interval
    }

    /// `200` or `10m`, each at least 1; nil for anything else.
    init?(text: String) {
        if text.hasSuffix("m"), let minutes = Int(text.dropLast()), minutes >= 1 {
            self = .minutes(minutes)
        } else if let updates = Int(text), updates >= 1 {
            self = .updates(updates)
        } else {
            return nil
        }
    }

    public var parameterValue: Value {
        switch self {
        case .updates(let count): .int(count)
        case .minutes(let minutes): .string("\(minutes)m")
        }
    }

    /// The recipe's `checkpoint_every` must be a positive count or `<N>m`
    /// (a `${…}` reference is checked once resolved, when it is decoded).
    static func check(_ with: YAMLNode, _ parameter: Parameter<CheckpointInterval>) -> [Diagnostic] {
        guard let node = with[parameter.spec.name], let text = node.scalar, !text.contains("${"), Self(text: text) == nil else {
            return []
        }
        return [Diagnostic(
            "`\(parameter.spec.name)` must be a number of updates or of minutes, got \(text)", at: node.location,
            hint: "e.g. `checkpoint_every: 200` (updates) or `checkpoint_every: 10m` (minutes)")]
    }
}

/// The checkpoints of one training loop (`phase`) in the stage's resumable
/// area (`StageContext.resumeDirectory`): `<area>/<phase>/checkpoint-<step>/`
/// with `tensors.safetensors` and `state.json` (format version, stage key,
/// phase, step and the exactly encoded values of the `TrainingState`).
/// Each is written atomically (`AtomicDirectory`) and only the latest is
/// kept. A checkpoint that does not load is discarded with a warning in the
/// stage log, and the loop starts from scratch.
struct TrainingCheckpoints {
    static let formatVersion = 1
    static let tensorsFile = "tensors.safetensors"
    static let stateFile = "state.json"
    static let prefix = "checkpoint-"

    let directory: String
    let key: String
    let phase: String
    let interval: CheckpointInterval
    let log: StageLog
    let stageID: String
    private var lastWrite = ContinuousClock.now

    /// The checkpoints of `phase` of the stage `context` runs; nil when the
    /// stage runs outside a store (nothing to resume into).
    init?(context: StageContext, interval: CheckpointInterval, phase: String) {
        guard let area = context.resumeDirectory, let key = context.cacheKey else { return nil }
        directory = (area as NSString).appendingPathComponent(phase)
        self.key = key
        self.phase = phase
        self.interval = interval
        log = context.log
        stageID = context.stageID
    }

    /// Whether a checkpoint is due after update `step`.
    func isDue(step: Int) -> Bool {
        switch interval {
        case .updates(let count): step % count == 0
        case .minutes(let minutes): ContinuousClock.now - lastWrite >= .seconds(minutes * 60)
        }
    }

    /// Writes `state` as the checkpoint of update `step`, then removes the
    /// older ones. A checkpoint that cannot be written (a full disk) is a
    /// warning in the stage log, not a failure: training goes on, and a
    /// rerun would resume from the previous checkpoint.
    mutating func write(_ state: TrainingState, step: Int) throws {
        let started = ContinuousClock.now
        let path = (directory as NSString).appendingPathComponent(Self.name(step: step))
        let document = Value.object([
            "format": .int(Self.formatVersion), "key": .string(key), "phase": .string(phase), "step": .int(step),
            "values": .object(state.values.mapValues(ExactValue.encode)),
        ])
        do {
            try? AtomicDirectory.remove(path)
            try AtomicDirectory.create(path) { temporary in
                try SafetensorsWriter.write(
                    tensors: state.tensors.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) },
                    metadata: ["format": "squeeze-checkpoint"], to: (temporary as NSString).appendingPathComponent(Self.tensorsFile))
                try AtomicFile.write(Data(document.canonicalJSON.utf8), to: (temporary as NSString).appendingPathComponent(Self.stateFile))
            }
        } catch {
            lastWrite = ContinuousClock.now
            log.line("warning: cannot write the checkpoint at step \(step) to \(path): \(error); training goes on without it")
            return
        }
        for name in (try? FileSystem.listDirectory(directory)) ?? [] where name != Self.name(step: step) {
            try? AtomicDirectory.remove((directory as NSString).appendingPathComponent(name))
        }
        lastWrite = ContinuousClock.now
        let bytes = Self.size(of: path)
        log.line(String(
            format: "checkpoint at step %d: %d bytes in %.1f ms", step, bytes, StageTiming.seconds(lastWrite - started) * 1000))
        try TestHooks.afterCheckpoint(stage: stageID, phase: phase, step: step)
    }

    /// The latest checkpoint's state and step; nil when there is none, or
    /// when it does not load (then it is discarded with a warning).
    func latest() -> (state: TrainingState, step: Int)? {
        let names = ((try? FileSystem.listDirectory(directory)) ?? []).filter { $0.hasPrefix(Self.prefix) && !AtomicDirectory.isTemporary($0) }
        guard let name = names.max(by: { (Self.step(of: $0) ?? -1) < (Self.step(of: $1) ?? -1) }) else { return nil }
        let path = (directory as NSString).appendingPathComponent(name)
        do {
            return try load(path)
        } catch {
            discard(path, because: "\(error)")
            return nil
        }
    }

    /// Removes the checkpoint at `path` with a warning in the stage log.
    func discard(_ path: String, because reason: String) {
        log.line("warning: discarding the checkpoint \(path): \(reason); starting from scratch")
        try? AtomicDirectory.remove(path)
    }

    /// Removes every checkpoint of this phase with a warning (one that loaded but does not fit the run).
    func discardAll(because reason: String) {
        log.line("warning: discarding the checkpoints in \(directory): \(reason); starting from scratch")
        try? AtomicDirectory.remove(directory)
    }

    private func load(_ path: String) throws -> (state: TrainingState, step: Int) {
        let parsed: Value
        do {
            parsed = try Value(json: FileSystem.readFile((path as NSString).appendingPathComponent(Self.stateFile)))
        } catch {
            throw TrainingStateError("\(Self.stateFile): \(error)")
        }
        guard case .object(let document) = parsed else { throw TrainingStateError("\(Self.stateFile) is not an object") }
        guard document["format"] == .int(Self.formatVersion) else {
            throw TrainingStateError("checkpoint format \(document["format"]?.canonicalJSON ?? "none"), this squeeze reads \(Self.formatVersion)")
        }
        guard document["key"] == .string(key) else {
            throw TrainingStateError("it belongs to stage key \(document["key"]?.canonicalJSON ?? "none"), not \(key)")
        }
        guard document["phase"] == .string(phase), case .int(let step)? = document["step"], case .object(let values)? = document["values"] else {
            throw TrainingStateError("state.json lacks its phase, step or values")
        }
        var state = TrainingState(values: try values.mapValues(ExactValue.decode))
        let file: SafetensorsFile
        do {
            file = try SafetensorsFile(path: (path as NSString).appendingPathComponent(Self.tensorsFile))
        } catch {
            throw TrainingStateError("\(Self.tensorsFile): \(error)")
        }
        for name in file.names {
            let tensor = try file.tensor(name)
            guard tensor.dtype == .f32 else { throw TrainingStateError("tensor `\(name)` is \(tensor.dtype), checkpoints hold f32") }
            // Copied out of the mapped file, which the next checkpoint removes.
            state.tensors[name] = Tensor(shape: tensor.shape, floats: tensor.floats)
        }
        guard file.skipped.isEmpty else {
            throw TrainingStateError("the tensor file has entries this squeeze cannot read")
        }
        return (state, step)
    }

    static func name(step: Int) -> String { prefix + String(format: "%010d", step) }

    static func step(of name: String) -> Int? { Int(name.dropFirst(prefix.count)) }

    static func size(of path: String) -> Int {
        let names = (try? FileSystem.listDirectory(path)) ?? []
        return names.reduce(0) { total, name in
            total + Int((try? FileSystem.lstat((path as NSString).appendingPathComponent(name)).size) ?? 0)
        }
    }
}

/// Where a training loop stands: the updates done, the epoch and how many of
/// its batches were used, the open `log_every` window and whether it stopped
/// early. Batch order is a function of (seed, epoch), so this is all the
/// loop needs to draw the same remaining batches.
struct LoopPosition: Equatable {
    var step = 0
    var epoch = 0
    var batchesInEpoch = 0
    var windowSteps = 0
    var stoppedEarly = false

    func save(into state: inout TrainingState) {
        state.values["loop.step"] = .int(step)
        state.values["loop.epoch"] = .int(epoch)
        state.values["loop.batches_in_epoch"] = .int(batchesInEpoch)
        state.values["loop.window_steps"] = .int(windowSteps)
        state.values["loop.stopped_early"] = .bool(stoppedEarly)
    }

    init() {}

    init(_ state: TrainingState, totalSteps: Int) throws(TrainingStateError) {
        step = try state.int("loop.step")
        epoch = try state.int("loop.epoch")
        batchesInEpoch = try state.int("loop.batches_in_epoch")
        windowSteps = try state.int("loop.window_steps")
        stoppedEarly = try state.bool("loop.stopped_early")
        guard (0...totalSteps).contains(step), epoch >= 0, batchesInEpoch >= 0, windowSteps >= 0 else {
            throw TrainingStateError("position step \(step) epoch \(epoch) does not fit a run of \(totalSteps) updates")
        }
    }
}

/// State a loop's caller keeps beside the algorithm (model selection),
/// saved into and restored from the same checkpoint.
struct CheckpointedState {
    var save: (inout TrainingState) -> Void
    /// Restores everything or nothing.
    var restore: (TrainingState) throws -> Void

    static var none: CheckpointedState { CheckpointedState(save: { _ in }, restore: { _ in }) }
}

/// Values with doubles kept bit for bit: JSON text would lose NaN, the
/// infinities and the sign of zero. A double becomes `"f64:<bits in hex>"`
/// and a string `"s:<text>"`.
enum ExactValue {
    static func encode(_ value: Value) -> Value {
        switch value {
        case .double(let number): .string("f64:" + String(number.bitPattern, radix: 16))
        case .string(let text): .string("s:" + text)
        case .array(let items): .array(items.map(encode))
        case .object(let fields): .object(fields.mapValues(encode))
        case .null, .bool, .int: value
        }
    }

    static func decode(_ value: Value) throws(TrainingStateError) -> Value {
        switch value {
        case .string(let text):
            if text.hasPrefix("s:") { return .string(String(text.dropFirst(2))) }
            guard text.hasPrefix("f64:"), let bits = UInt64(text.dropFirst(4), radix: 16) else {
                throw TrainingStateError("unreadable value \(text.debugDescription)")
            }
            return .double(Double(bitPattern: bits))
        case .array(let items): return .array(try items.map { item throws(TrainingStateError) in try decode(item) })
        case .object(let fields):
            var decoded: [String: Value] = [:]
            for (name, field) in fields { decoded[name] = try decode(field) }
            return .object(decoded)
        case .double: throw TrainingStateError("a double not written by the checkpoint encoder")
        case .null, .bool, .int: return value
        }
    }
}

/// Test-only hooks (environment variables) that stop a stage at an exact
/// point, so the resumption tests need no lucky timing. Each names the point
/// as `<stage id>:<phase>:<step>` (`tuned:train:6`):
/// - `SQUEEZE_TEST_EXIT_AFTER_CHECKPOINT`: the process exits (`_exit(86)`,
///   as abruptly as a SIGKILL: nothing flushed, no record saved) right after
///   writing that checkpoint;
/// - `SQUEEZE_TEST_PAUSE_AFTER_CHECKPOINT`: the stage waits there until it
///   is cancelled (a `resources.time` limit) or the process is killed.
/// Not for users; nothing else reads them.
enum TestHooks {
    static let exitStatus: Int32 = 86

    static func afterCheckpoint(stage: String, phase: String, step: Int) throws {
        let environment = ProcessInfo.processInfo.environment
        let point = "\(stage):\(phase):\(step)"
        if environment["SQUEEZE_TEST_EXIT_AFTER_CHECKPOINT"] == point {
            _exit(exitStatus)
        }
        if environment["SQUEEZE_TEST_PAUSE_AFTER_CHECKPOINT"] == point {
            while true {
                try Task.checkCancellation()
                usleep(20_000)
            }
        }
    }
}

/// Saving and restoring the pieces every training algorithm records.
extension MeanLossWindow {
    func save(into state: inout TrainingState, as prefix: String) {
        state.values[prefix + "steps"] = .int(steps)
        state.values[prefix + "total"] = .double(total)
    }

    init(_ state: TrainingState, as prefix: String) throws(TrainingStateError) {
        steps = try state.int(prefix + "steps")
        total = try state.double(prefix + "total")
    }
}

extension EvaluationScore {
    /// The score as a checkpoint keeps it.
    var stateValue: Value {
        .object([
            "primary": .double(primary), "higher_is_better": .bool(higherIsBetter), "loss": .double(loss),
            "metrics": .array(metrics.map { .array([.string($0.name), .double($0.value)]) }), "log": .string(logText),
        ])
    }

    init(stateValue value: Value) throws(TrainingStateError) {
        guard case .object(let fields) = value, case .double(let primary)? = fields["primary"],
              case .bool(let higher)? = fields["higher_is_better"], case .double(let loss)? = fields["loss"],
              case .array(let rows)? = fields["metrics"], case .string(let log)? = fields["log"]
        else { throw TrainingStateError("unreadable evaluation score") }
        var metrics: [(name: String, value: Double)] = []
        for row in rows {
            guard case .array(let pair) = row, pair.count == 2, case .string(let name) = pair[0], case .double(let metric) = pair[1] else {
                throw TrainingStateError("unreadable evaluation metric")
            }
            metrics.append((name, metric))
        }
        self.init(primary: primary, higherIsBetter: higher, loss: loss, metrics: metrics, logText: log)
    }
}

/// A model a checkpoint can hold: the best model so far of a training run.
protocol CheckpointableModel {
    /// Stores the model's parameters under `prefix`.
    func save(into state: inout TrainingState, as prefix: String)
    /// This model with the parameters `save` stored under `prefix`.
    func restored(from state: TrainingState, as prefix: String) throws(TrainingStateError) -> Self
}

extension CheckpointableModel where Self: TrainableModel {
    func save(into state: inout TrainingState, as prefix: String) {
        state.save(parameters: self, as: prefix)
    }

    func restored(from state: TrainingState, as prefix: String) throws(TrainingStateError) -> Self {
        var model = self
        try state.restore(parameters: &model, from: prefix)
        return model
    }
}

extension BertModel: CheckpointableModel {}
extension DecoderModel: CheckpointableModel {}

extension ModelSelection where Model: CheckpointableModel {
    /// The eval curve, the early-stop count and the best model so far with its step and score.
    func saveState(into state: inout TrainingState) {
        state.values["selection.curve"] = .array(curve)
        state.values["selection.without_improvement"] = .int(evaluationsWithoutImprovement)
        if let best {
            state.values["selection.best_step"] = .int(best.step)
            state.values["selection.best_score"] = best.score.stateValue
            best.model.save(into: &state, as: "best.")
        }
    }

    /// The selection `saveState` saved; the best model's parameters go into a copy of `template`.
    init(_ state: TrainingState, template: Model) throws(TrainingStateError) {
        curve = try state.array("selection.curve")
        evaluationsWithoutImprovement = try state.int("selection.without_improvement")
        if state.values["selection.best_step"] != nil {
            best = (
                try state.int("selection.best_step"), try template.restored(from: state, as: "best."),
                try EvaluationScore(stateValue: state.value("selection.best_score"))
            )
        }
    }
}
