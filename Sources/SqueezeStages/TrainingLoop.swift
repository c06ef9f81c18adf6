import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeTensor
import SqueezeYAML

/// The splits a training stage reads from a `data/text-classification`
/// artifact: the training split (never empty) and the evaluation split
/// (empty when the dataset has no such split).
struct TrainingData {
    var dataset: TextClassificationDataset
    var train: [TextClassificationDataset.Example]
    var eval: [TextClassificationDataset.Example]

    init(directory: String, trainSplit: String, evalSplit: String) throws(StageFailure) {
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: directory)
        }
        let train = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(trainSplit) }
        guard !train.isEmpty else { throw StageFailure("the `\(trainSplit)` split is empty") }
        self.dataset = dataset
        self.train = train
        eval = dataset.splitNames.contains(evalSplit)
            ? try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(evalSplit) } : []
    }

    /// Both splits tokenized, with their labels.
    func encode(with classifier: LoadedClassifier, maxLength: Int, context: StageContext)
        -> (train: TokenSequences, trainLabels: [Int], eval: TokenSequences, evalLabels: [Int])
    {
        context.progress.report(StageProgress(message: "tokenizing \(train.count) examples"))
        return (
            classifier.encode(train.map(\.text), maxLength: maxLength), train.map(\.label),
            classifier.encode(eval.map(\.text), maxLength: maxLength), eval.map(\.label)
        )
    }
}

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
    func options(lr: Double, weightDecay: Double, warmupRatio: Double, gradClip: Double, seed: UInt64) -> BertTrainingOptions {
        BertTrainingOptions(
            learningRate: Float(lr), weightDecay: Float(weightDecay),
            warmupSteps: Int((warmupRatio * Double(totalSteps)).rounded(.up)), totalSteps: totalSteps,
            maxGradientNorm: gradClip > 0 ? Float(gradClip) : nil, seed: seed)
    }
}

/// The update loop shared by the training stages: epochs of shuffled
/// batches (`batching` `bucketed` or `random`, the order drawn from
/// `orderSeed`), a stop on a non-finite loss, the `log_every` window, the
/// progress line and a periodic hook (evaluation, early stop).
struct TrainingLoop {
    var sequences: TokenSequences
    var labels: [Int]
    var padID: Int32
    var length: TrainingLength
    var orderSeed: UInt64
    var batching: String
    var logEvery: Int
    var evalEvery: Int
    /// Put before `step i/n` in the progress line.
    var progressPrefix = ""
    /// The error message for a non-finite `loss` at `step` of `epoch` (0-based).
    var divergence: (_ loss: Double, _ step: Int, _ epoch: Int) -> String = { loss, step, epoch in
        "the training loss became \(loss) at step \(step) (epoch \(epoch + 1)); lower `lr` or keep `grad_clip` on"
    }

    struct Outcome {
        var steps: Int
        var stoppedEarly: Bool
        var seconds: Double
    }

    /// Runs the updates. `update` trains on one batch with its labels tensor;
    /// `loss` reads the update's loss; `record` adds the update to the
    /// stage's loss window, which `closesWindow` tells it to log and reset;
    /// `progress` describes the update after `step i/n`; `periodic` runs every
    /// `evalEvery` updates before the last and returns whether to stop.
    func run<Update>(
        _ context: StageContext,
        update: (TokenBatch, Tensor) throws -> Update,
        loss: (Update) -> Double,
        record: (_ update: Update, _ step: Int, _ closesWindow: Bool) -> Void,
        progress: (Update) -> String,
        periodic: (_ step: Int) throws -> Bool = { _ in false }
    ) throws -> Outcome {
        let totalSteps = length.totalSteps
        var windowSteps = 0
        var stoppedEarly = false
        let started = ContinuousClock.now
        var epoch = 0
        var step = 0
        training: while step < totalSteps {
            let batches = LengthBucketing.batches(
                sequences, batchSize: length.batchSize, padID: padID, shuffle: true,
                seed: RandomStream.batchOrder.bits(of: orderSeed, index: UInt64(epoch)),
                poolBatches: batching == "random" ? 1 : LengthBucketing.defaultPoolBatches)
            for batch in batches {
                try Task.checkCancellation()
                let batchLabels = Tensor(shape: [batch.size], int32s: batch.indices.map { Int32(labels[$0]) })
                let result = try update(batch, batchLabels)
                step += 1
                let value = loss(result)
                guard value.isFinite else { throw StageFailure(divergence(value, step, epoch)) }
                windowSteps += 1
                let closesWindow = windowSteps == max(logEvery, 1) || step == totalSteps
                if closesWindow { windowSteps = 0 }
                record(result, step, closesWindow)
                let elapsed = Self.seconds(ContinuousClock.now - started)
                let rate = Double(step) / max(elapsed, 1e-9)
                let eta = Double(totalSteps - step) / max(rate, 1e-9)
                context.progress.report(StageProgress(
                    fraction: Double(step) / Double(totalSteps),
                    message: progressPrefix + String(format: "step %d/%d ", step, totalSteps) + progress(result)
                        + String(format: " %.2f it/s", rate) + " ETA " + Self.duration(eta)))
                if evalEvery > 0, step % evalEvery == 0, step < totalSteps, try periodic(step) {
                    stoppedEarly = true
                    break training
                }
                if step == totalSteps { break training }
            }
            epoch += 1
        }
        return Outcome(steps: step, stoppedEarly: stoppedEarly, seconds: Self.seconds(ContinuousClock.now - started))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let total = Int(seconds.rounded())
        return total >= 3600
            ? String(format: "%dh%02dm", total / 3600, total % 3600 / 60)
            : String(format: "%dm%02ds", total / 60, total % 60)
    }

    /// `trained N updates in S s (R it/s)`, with another verb for pruning.
    static func summary(_ outcome: Outcome, verb: String = "trained") -> String {
        verb + String(format: " %d updates in %.1f s (%.2f it/s)", outcome.steps, outcome.seconds, Double(outcome.steps) / max(outcome.seconds, 1e-9))
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
