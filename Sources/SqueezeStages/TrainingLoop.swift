import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeYAML

/// How many updates a stage runs: `steps`, else `epochs` (default 1) passes
/// rounded up to whole batches.
struct TrainingLength {
    var batchSize: Int
    var stepsPerEpoch: Int
    var totalSteps: Int

    init(examples: Int, batchSize: Int, epochs: Double?, steps: Int?) {
        self.batchSize = max(batchSize, 1)
        stepsPerEpoch = (examples + self.batchSize - 1) / self.batchSize
        totalSteps = steps ?? max(1, Int(((epochs ?? 1) * Double(stepsPerEpoch)).rounded(.up)))
    }

    /// The optimiser settings every training stage derives from its parameters.
    func options(lr: Double, weightDecay: Double, warmupRatio: Double, gradClip: Double, seed: UInt64) -> TrainingHyperparameters {
        TrainingHyperparameters(
            learningRate: Float(lr), weightDecay: Float(weightDecay),
            warmupSteps: Int((warmupRatio * Double(totalSteps)).rounded(.up)), totalSteps: totalSteps,
            maxGradientNorm: gradClip > 0 ? Float(gradClip) : nil, seed: seed)
    }
}

/// The update loop shared by the training stages: epochs of batches (drawn
/// by the caller from the stage seed), a stop on a non-finite loss, the
/// `log_every` window, the progress line and a periodic hook (evaluation,
/// early stop). What an update does and records is the `TrainingAlgorithm`'s.
struct TrainingLoop<Batch> {
    /// The batches of epoch `epoch` (0-based), in order; the loop asks for an
    /// epoch only when it reaches it.
    var batches: (_ epoch: Int) -> [Batch]
    /// The training examples, reported as `train_examples`.
    var examples: Int
    var length: TrainingLength
    var logEvery: Int
    var evalEvery: Int
    /// Put before `step i/n` in the progress line.
    var progressPrefix = ""
    /// How often to write a resumable checkpoint (nil: never).
    var checkpointEvery: CheckpointInterval?
    /// The name of this loop's checkpoints in the stage's resumable area; a
    /// stage with two loops (pruning, then fine-tuning) names them apart.
    var phase = "train"
    /// Also checkpoint the last update, so a later phase that is interrupted
    /// resumes without redoing this one.
    var checkpointsTheEnd = false
    /// The error message for a non-finite `loss` at `step` of `epoch` (0-based).
    var divergence: (_ loss: Double, _ step: Int, _ epoch: Int) -> String = { loss, step, epoch in
        "the training loss became \(loss) at step \(step) (epoch \(epoch + 1)); lower `lr` or keep `grad_clip` on"
    }

    /// Runs the updates of `algorithm`. `periodic` runs every `evalEvery`
    /// updates before the last, on the algorithm as trained so far (it may
    /// record an evaluation there), and returns whether to stop. With
    /// `checkpointEvery`, the algorithm, the loop's position and `extra`
    /// (the caller's own state) are checkpointed, and a run that finds a
    /// checkpoint continues from it: same batches, same bits.
    func run<Algorithm: TrainingAlgorithm>(
        _ algorithm: inout Algorithm, _ context: StageContext, extra: CheckpointedState = .none,
        periodic: (_ algorithm: inout Algorithm, _ step: Int) throws -> Bool = { _, _ in false }
    ) throws -> TrainingOutcome where Algorithm.Batch == Batch {
        let totalSteps = length.totalSteps
        var checkpoints = checkpointEvery.flatMap { TrainingCheckpoints(context: context, interval: $0, phase: phase) }
        var position = LoopPosition()
        if let checkpoints, let saved = checkpoints.latest() {
            do {
                position = try resume(&algorithm, from: saved.state, extra: extra)
                context.log.line("resumed from the checkpoint at step \(position.step) of \(totalSteps)\(phase == "train" ? "" : " (\(phase))")")
            } catch {
                checkpoints.discardAll(because: "\(error)")
            }
        }
        let started = ContinuousClock.now
        let resumedAt = position.step
        training: while position.step < totalSteps && !position.stoppedEarly {
            for batch in batches(position.epoch).dropFirst(position.batchesInEpoch) {
                try Task.checkCancellation()
                let update = try algorithm.update(batch)
                position.step += 1
                position.batchesInEpoch += 1
                let step = position.step
                let value = algorithm.loss(of: update)
                guard value.isFinite else { throw StageFailure(divergence(value, step, position.epoch)) }
                position.windowSteps += 1
                let closesWindow = position.windowSteps == max(logEvery, 1) || step == totalSteps
                if closesWindow { position.windowSteps = 0 }
                algorithm.record(update, step: step, of: totalSteps, closesWindow: closesWindow, log: context.log)
                let elapsed = StageTiming.seconds(ContinuousClock.now - started)
                let rate = Double(step - resumedAt) / max(elapsed, 1e-9)
                let eta = Double(totalSteps - step) / max(rate, 1e-9)
                context.progress.report(StageProgress(
                    fraction: Double(step) / Double(totalSteps),
                    message: progressPrefix + String(format: "step %d/%d ", step, totalSteps) + algorithm.progress(of: update)
                        + String(format: " %.2f it/s", rate) + " ETA " + StageTiming.duration(eta)))
                if evalEvery > 0, step % evalEvery == 0, step < totalSteps, try periodic(&algorithm, step) {
                    position.stoppedEarly = true
                }
                let finished = position.stoppedEarly || step == totalSteps
                if let due = checkpoints, finished ? checkpointsTheEnd : due.isDue(step: step) {
                    var state = TrainingState()
                    algorithm.saveState(into: &state)
                    extra.save(&state)
                    position.save(into: &state)
                    try checkpoints?.write(state, step: step)
                }
                if finished { break training }
            }
            position.epoch += 1
            position.batchesInEpoch = 0
        }
        return TrainingOutcome(
            steps: position.step, stoppedEarly: position.stoppedEarly, seconds: StageTiming.seconds(ContinuousClock.now - started))
    }

    /// Puts `algorithm` and `extra` in the state `saved` holds and returns
    /// the loop's position there; changes nothing when it does not fit.
    private func resume<Algorithm: TrainingAlgorithm>(
        _ algorithm: inout Algorithm, from saved: TrainingState, extra: CheckpointedState
    ) throws -> LoopPosition {
        let position = try LoopPosition(saved, totalSteps: length.totalSteps)
        var restored = algorithm
        try restored.restoreState(from: saved)
        try extra.restore(saved)
        algorithm = restored
        return position
    }
}

/// What a training loop did.
struct TrainingOutcome {
    var steps: Int
    var stoppedEarly: Bool
    var seconds: Double

    /// `trained N updates in S s (R it/s)`, with another verb for pruning.
    func summary(verb: String = "trained") -> String {
        verb + String(format: " %d updates in %.1f s (%.2f it/s)", steps, seconds, Double(steps) / max(seconds, 1e-9))
    }
}

/// Wall-clock time as the stages log and record it.
enum StageTiming {
    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }

    /// `1h02m` or `3m07s`; `?` when not finite.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let total = Int(seconds.rounded())
        return total >= 3600
            ? String(format: "%dh%02dm", total / 3600, total % 3600 / 60)
            : String(format: "%dm%02ds", total / 60, total % 60)
    }
}

/// The mean training loss over the updates since the last `log_every` line.
struct MeanLossWindow {
    var steps = 0
    var total = 0.0

    mutating func add(_ loss: Double) {
        steps += 1
        total += loss
    }

    var mean: Double { total / Double(steps) }
}

/// Checks of numeric stage parameters beyond their types, by declaration;
/// each names the parameter and echoes the recipe's text.
enum ParamChecks {
    static func number(_ node: YAMLNode?) -> Double? { node?.scalar.flatMap(Double.init) }

    static func atLeast(_ with: YAMLNode, _ minimums: [(any ParameterDeclaration, Double)]) -> [Diagnostic] {
        minimums.compactMap { parameter, minimum in
            let name = parameter.spec.name
            guard let node = with[name], let value = number(node), value < minimum else { return nil }
            return Diagnostic("`\(name)` must be at least \(Int(minimum)), got \(node.scalar ?? "")", at: node.location)
        }
    }

    static func positive(_ with: YAMLNode, _ parameters: [any ParameterDeclaration]) -> [Diagnostic] {
        parameters.compactMap { parameter in
            let name = parameter.spec.name
            guard let node = with[name], let value = number(node), !(value > 0) else { return nil }
            return Diagnostic("`\(name)` must be positive, got \(node.scalar ?? "")", at: node.location)
        }
    }

    static func nonNegative(_ with: YAMLNode, _ parameters: [any ParameterDeclaration]) -> [Diagnostic] {
        parameters.compactMap { parameter in
            let name = parameter.spec.name
            guard let node = with[name], let value = number(node), value < 0 else { return nil }
            return Diagnostic("`\(name)` must not be negative, got \(node.scalar ?? "")", at: node.location)
        }
    }

    static func unitInterval(_ with: YAMLNode, _ parameters: [any ParameterDeclaration]) -> [Diagnostic] {
        parameters.compactMap { parameter in
            let name = parameter.spec.name
            guard let node = with[name], let value = number(node), !(0...1).contains(value) else { return nil }
            return Diagnostic("`\(name)` must be between 0 and 1, got \(node.scalar ?? "")", at: node.location)
        }
    }

    /// `first` and `second` are alternatives.
    static func eitherOr(_ with: YAMLNode, _ first: any ParameterDeclaration, _ second: any ParameterDeclaration) -> [Diagnostic] {
        guard let node = with[first.spec.name], with[second.spec.name] != nil else { return [] }
        return [Diagnostic(
            "give either `\(first.spec.name)` or `\(second.spec.name)`, not both", at: node.location, hint: "remove one of them")]
    }
}
