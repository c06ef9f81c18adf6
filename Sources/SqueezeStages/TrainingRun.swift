import SqueezeEngine
import SqueezeModels
import SqueezeSupport

/// The part of training that differs between the training stages: how one
/// batch updates the model, and what the `log_every` window records (curves,
/// log lines). `TrainingLoop` runs it; `TrainingRun` adds evaluation, model
/// selection and early stopping.
protocol TrainingAlgorithm {
    /// What is trained, as an evaluation scores it.
    associatedtype Model
    /// What one update trains on.
    associatedtype Batch
    /// What one update reports: its losses, learning rate, …
    associatedtype Update

    /// The model as trained so far.
    var model: Model { get }

    /// The algorithm's metrics, read once training is over: its curves, the
    /// last window's means, its own end state.
    var metrics: [String: Value] { get }

    /// Trains on one batch.
    mutating func update(_ batch: Batch) throws -> Update

    /// The update's loss, which must stay finite.
    func loss(of update: Update) -> Double

    /// The update as the progress line shows it after `step i/n`.
    func progress(of update: Update) -> String

    /// Adds the `step`th of `totalSteps` updates to the `log_every` window;
    /// when `closesWindow`, records and logs the window's means and starts a
    /// new window.
    mutating func record(_ update: Update, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog)

    /// Saves everything the remaining updates and the metrics depend on
    /// (the trainer's state, the curves, the open `log_every` window) for a
    /// resumable checkpoint.
    func saveState(into state: inout TrainingState)

    /// Continues from what `saveState` saved; throws, changing nothing, when it does not fit.
    mutating func restoreState(from state: TrainingState) throws(TrainingStateError)
}

/// A model's score on the evaluation split: what model selection compares,
/// logs and records.
struct EvaluationScore {
    /// What selection compares first: accuracy for classifiers, perplexity for language models.
    var primary: Double
    var higherIsBetter: Bool
    /// Ties on `primary` go to the lower loss.
    var loss: Double
    /// Written as `<split>_<name>` metrics of the output model.
    var metrics: [(name: String, value: Double)]
    /// The scores as the log shows them after `step N: <label> `.
    var logText: String

    /// Better: a better `primary`, or the same at a lower loss.
    func isBetter(than other: EvaluationScore) -> Bool {
        if primary == other.primary { return loss < other.loss }
        return higherIsBetter ? primary > other.primary : primary < other.primary
    }
}

/// How a training run scores a model on its evaluation split.
protocol ModelEvaluation {
    associatedtype Model
    /// The evaluation split's name, the prefix of the score metrics.
    var split: String { get }
    /// What a better model improves, as the early-stop line names it (`accuracy`).
    var primaryName: String { get }
    /// `model`'s score on the split; nil when the dataset has no such split.
    func score(of model: Model) throws -> EvaluationScore?
}

/// A training run with model selection: the loop's updates, an evaluation
/// every `eval_every` updates and at the end, the best model kept (a better
/// primary score, ties by the lower loss) with `keepBest`, and an early stop
/// after `patience` evaluations without a better one.
struct TrainingRun<Batch, Evaluation: ModelEvaluation> {
    var loop: TrainingLoop<Batch>
    var evaluation: Evaluation
    /// Names the evaluated model in the log: `step N: <label> accuracy …`.
    var evaluationLabel: String
    var keepBest: Bool
    var patience: Int?

    /// The model a run outputs and its metrics.
    struct Result {
        var model: Evaluation.Model
        /// The output model's score; `nil` without an evaluation split.
        var score: EvaluationScore?
        /// The algorithm's metrics, `steps`, `epochs`, `train_examples`,
        /// `stopped_early` and, with an evaluation split, the `<split>_…`
        /// scores, curve and `output_step`.
        var metrics: [String: Value]
    }

    /// Runs the loop; its checkpoints hold the model selection too.
    func run<Algorithm: TrainingAlgorithm>(
        _ algorithm: inout Algorithm, _ context: StageContext
    ) throws -> Result where Algorithm.Model == Evaluation.Model, Algorithm.Batch == Batch, Evaluation.Model: CheckpointableModel {
        var selection = ModelSelection<Evaluation.Model>()
        func evaluate(_ model: Evaluation.Model, step: Int) throws -> EvaluationScore? {
            guard let score = try evaluation.score(of: model) else { return nil }
            selection.record(score, model: model, step: step, label: evaluationLabel, context: context)
            return score
        }

        let template = algorithm.model
        let checkpointed = CheckpointedState(
            save: { state in selection.saveState(into: &state) },
            restore: { state in selection = try ModelSelection(state, template: template) })
        let outcome = try loop.run(&algorithm, context, extra: checkpointed) { algorithm, step in
            _ = try evaluate(algorithm.model, step: step)
            return selection.shouldStop(patience: patience, step: step, primaryName: evaluation.primaryName, context: context)
        }
        context.log.line(outcome.summary())

        let last = outcome.stoppedEarly ? nil : try evaluate(algorithm.model, step: outcome.steps)
        var metrics = algorithm.metrics.merging([
            "steps": .int(outcome.steps),
            "epochs": .double(Double(outcome.steps) / Double(loop.length.stepsPerEpoch)),
            "train_examples": .int(loop.examples),
            "stopped_early": .bool(outcome.stoppedEarly),
        ]) { _, run in run }
        let output = selection.finish(
            keepBest: keepBest, last: algorithm.model, lastScore: last, steps: outcome.steps, split: evaluation.split, into: &metrics)
        return Result(model: output.model, score: output.score, metrics: metrics)
    }
}

extension [Value] {
    /// The value at `column` of a curve's last row; `null` for an empty curve or a shorter row.
    func valueInLastRow(column: Int) -> Value {
        if case .array(let row)? = last, row.count > column { return row[column] }
        return .null
    }
}

/// Evaluations during training: the eval curve (rows `[step, primary,
/// loss]`), the best model so far (`EvaluationScore.isBetter`) and the
/// early-stop count.
struct ModelSelection<Model> {
    var curve: [Value] = []
    var best: (step: Int, model: Model, score: EvaluationScore)?
    var evaluationsWithoutImprovement = 0

    /// Records the evaluation of `model` at `step` and logs it as `step N: <label> <score>`.
    mutating func record(_ score: EvaluationScore, model: Model, step: Int, label: String, context: StageContext) {
        curve.append(.array([.int(step), .double(score.primary), .double(score.loss)]))
        context.log.line("step \(step): \(label) " + score.logText)
        if best.map({ score.isBetter(than: $0.score) }) ?? true {
            best = (step, model, score)
            evaluationsWithoutImprovement = 0
        } else {
            evaluationsWithoutImprovement += 1
        }
    }

    /// Whether `patience` evaluations passed without a better model; logs the stop.
    func shouldStop(patience: Int?, step: Int, primaryName: String, context: StageContext) -> Bool {
        guard let patience, evaluationsWithoutImprovement >= patience else { return false }
        context.log.line("early stop at step \(step): \(patience) evaluations without a better \(primaryName)")
        return true
    }

    /// The output model (the best with `keepBest`, else `last`) and the
    /// `<split>_…` and `output_step` metrics; the score is `nil` without an
    /// evaluation split.
    func finish(
        keepBest: Bool, last model: Model, lastScore: EvaluationScore?, steps: Int, split: String,
        into metrics: inout [String: Value]
    ) -> (model: Model, score: EvaluationScore?) {
        let chosen = keepBest ? best : nil
        let score = chosen?.score ?? lastScore ?? best?.score
        if let score {
            for metric in score.metrics {
                metrics["\(split)_\(metric.name)"] = .double(metric.value)
            }
            metrics["\(split)_curve"] = .array(curve)
            metrics["output_step"] = .int(chosen?.step ?? steps)
        }
        return (chosen?.model ?? model, score)
    }
}
