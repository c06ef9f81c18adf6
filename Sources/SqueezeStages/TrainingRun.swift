import SqueezeEngine
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// The part of training that differs between the training stages: how one
/// batch updates the model, and what the `log_every` window records (curves,
/// log lines). `TrainingLoop` runs it; `TrainingRun` adds dev evaluation,
/// model selection and early stopping.
protocol TrainingAlgorithm {
    /// What one update reports: its losses, learning rate, …
    associatedtype Update

    /// The model as trained so far.
    var model: BertModel { get }

    /// The algorithm's metrics, read once training is over: its curves, the
    /// last window's means, its own end state.
    var metrics: [String: Value] { get }

    /// Trains on one batch; `labels` holds its examples' labels.
    mutating func update(_ batch: TokenBatch, labels: Tensor) throws -> Update

    /// The update's loss, which must stay finite.
    func loss(of update: Update) -> Double

    /// The update as the progress line shows it after `step i/n`.
    func progress(of update: Update) -> String

    /// Adds the `step`th of `totalSteps` updates to the `log_every` window;
    /// when `closesWindow`, records and logs the window's means and starts a
    /// new window.
    mutating func record(_ update: Update, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog)
}

/// The evaluation split, tokenized, and the batches a model is scored in.
struct DevEvaluation {
    var split: String
    var sequences: TokenSequences
    var labels: [Int]
    var batchSize: Int
    var padID: Int32
    var backend: any Backend

    /// `model`'s scores on the split; `nil` when the dataset has no such split.
    func scores(of model: BertModel) throws -> ClassificationScores? {
        guard sequences.count > 0 else { return nil }
        return try model.evaluate(sequences, labels: labels, batchSize: batchSize, padID: padID, backend: backend)
    }
}

/// A training run with model selection: the loop's updates, a dev evaluation
/// every `eval_every` updates and at the end, the best model kept (higher
/// accuracy, ties by the lower loss) with `keepBest`, and an early stop after
/// `patience` evaluations without a better one.
struct TrainingRun {
    var loop: TrainingLoop
    var dev: DevEvaluation
    /// Names the evaluated model in the log: `step N: <label> accuracy …`.
    var evaluationLabel: String
    var keepBest: Bool
    var patience: Int?

    /// The model a run outputs and its metrics.
    struct Result {
        var model: BertModel
        /// The output model's dev scores; `nil` without an evaluation split.
        var scores: ClassificationScores?
        /// The algorithm's metrics, `steps`, `epochs`, `train_examples`,
        /// `stopped_early` and, with an evaluation split, the `<split>_…`
        /// scores, curve and `output_step`.
        var metrics: [String: Value]
    }

    func run<Algorithm: TrainingAlgorithm>(_ algorithm: inout Algorithm, _ context: StageContext) throws -> Result {
        var selection = ModelSelection()
        func evaluate(_ model: BertModel, step: Int) throws -> ClassificationScores? {
            guard let scores = try dev.scores(of: model) else { return nil }
            selection.record(scores, model: model, step: step, label: evaluationLabel, context: context)
            return scores
        }

        let outcome = try loop.run(&algorithm, context) { algorithm, step in
            _ = try evaluate(algorithm.model, step: step)
            return selection.shouldStop(patience: patience, step: step, context: context)
        }
        context.log.line(TrainingLoop.summary(outcome))

        let last = outcome.stoppedEarly ? nil : try evaluate(algorithm.model, step: outcome.steps)
        var metrics = algorithm.metrics.merging([
            "steps": .int(outcome.steps),
            "epochs": .double(Double(outcome.steps) / Double(loop.length.stepsPerEpoch)),
            "train_examples": .int(loop.sequences.count),
            "stopped_early": .bool(outcome.stoppedEarly),
        ]) { _, run in run }
        let output = selection.finish(
            keepBest: keepBest, last: algorithm.model, lastScores: last, steps: outcome.steps, split: dev.split, into: &metrics)
        return Result(model: output.model, scores: output.scores, metrics: metrics)
    }

    /// The value at `column` of a curve's last row; `null` for an empty curve or a shorter row.
    static func lastRow(of curve: [Value], column: Int) -> Value {
        if case .array(let row)? = curve.last, row.count > column { return row[column] }
        return .null
    }
}

/// Dev evaluations during training: the eval curve, the best model so far
/// (higher accuracy, ties by the lower loss) and the early-stop count.
struct ModelSelection {
    var curve: [Value] = []
    var best: (step: Int, model: BertModel, scores: ClassificationScores)?
    var evaluationsWithoutImprovement = 0

    /// Records the evaluation of `model` at `step` and logs it as `step N: <label> accuracy …`.
    mutating func record(_ scores: ClassificationScores, model: BertModel, step: Int, label: String, context: StageContext) {
        curve.append(.array([.int(step), .double(scores.accuracy), .double(scores.loss)]))
        context.log.line(
            "step \(step): \(label) "
                + String(format: "accuracy %.4f macro-F1 %.4f loss %.4f", scores.accuracy, scores.macroF1, scores.loss))
        // Better: higher accuracy, or the same accuracy at a lower loss.
        if best.map({ scores.accuracy > $0.scores.accuracy || (scores.accuracy == $0.scores.accuracy && scores.loss < $0.scores.loss) }) ?? true {
            best = (step, model, scores)
            evaluationsWithoutImprovement = 0
        } else {
            evaluationsWithoutImprovement += 1
        }
    }

    /// Whether `patience` evaluations passed without a better model; logs the stop.
    func shouldStop(patience: Int?, step: Int, context: StageContext) -> Bool {
        guard let patience, evaluationsWithoutImprovement >= patience else { return false }
        context.log.line("early stop at step \(step): \(patience) evaluations without a better accuracy")
        return true
    }

    /// The output model (the best with `keepBest`, else `last`) and the
    /// `<split>_…` and `output_step` metrics; the scores are `nil` without an
    /// evaluation split.
    func finish(
        keepBest: Bool, last model: BertModel, lastScores: ClassificationScores?, steps: Int, split: String,
        into metrics: inout [String: Value]
    ) -> (model: BertModel, scores: ClassificationScores?) {
        let chosen = keepBest ? best : nil
        let scores = chosen?.scores ?? lastScores ?? best?.scores
        if let scores {
            metrics["\(split)_accuracy"] = .double(scores.accuracy)
            metrics["\(split)_macro_f1"] = .double(scores.macroF1)
            metrics["\(split)_loss"] = .double(scores.loss)
            metrics["\(split)_curve"] = .array(curve)
            metrics["output_step"] = .int(chosen?.step ?? steps)
        }
        return (chosen?.model ?? model, scores)
    }
}

