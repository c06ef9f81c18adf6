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
    func encode(with classifier: LoadedClassifier, maxLength: Int, context: StageContext) -> EncodedTrainingData {
        context.progress.report(StageProgress(message: "tokenizing \(train.count) examples"))
        return EncodedTrainingData(
            train: classifier.encode(train.map(\.text), maxLength: maxLength), trainLabels: train.map(\.label),
            eval: classifier.encode(eval.map(\.text), maxLength: maxLength), evalLabels: eval.map(\.label))
    }
}

extension LoadedClassifier {
    /// The teacher of a distilling stage (`task`: what the stage does with
    /// it): a classifier whose labels are the dataset's.
    init(teacher directory: String, of dataset: TextClassificationDataset, task: String) throws(StageFailure) {
        self = try LoadedClassifier(directory: directory, seed: 0)
        guard try DistillStage.hasClassifier(artifact) else {
            throw StageFailure("the teacher has no classifier head; fine-tune it on this dataset first (`train/finetune`)")
        }
        guard model.config.labels == dataset.labels else {
            throw StageFailure("""
                the teacher's labels \(model.config.labels) differ from the dataset's \(dataset.labels); \
                \(task) a teacher fine-tuned on this dataset
                """)
        }
    }
}

/// The training and evaluation splits tokenized, with their labels.
struct EncodedTrainingData {
    var train: TokenSequences
    var trainLabels: [Int]
    var eval: TokenSequences
    var evalLabels: [Int]
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
    func options(lr: Double, weightDecay: Double, warmupRatio: Double, gradClip: Double, seed: UInt64) -> TrainingHyperparameters {
        TrainingHyperparameters(
            learningRate: Float(lr), weightDecay: Float(weightDecay),
            warmupSteps: Int((warmupRatio * Double(totalSteps)).rounded(.up)), totalSteps: totalSteps,
            maxGradientNorm: gradClip > 0 ? Float(gradClip) : nil, seed: seed)
    }
}

/// The update loop shared by the training stages: epochs of shuffled
/// batches (`batching` `bucketed` or `random`, the order drawn from
/// `orderSeed`), a stop on a non-finite loss, the `log_every` window, the
/// progress line and a periodic hook (evaluation, early stop). What an
/// update does and records is the `TrainingAlgorithm`'s.
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

    /// Runs the updates of `algorithm`. `periodic` runs every `evalEvery`
    /// updates before the last, on the algorithm as trained so far (it may
    /// record an evaluation there), and returns whether to stop.
    func run<Algorithm: TrainingAlgorithm>(
        _ algorithm: inout Algorithm, _ context: StageContext,
        periodic: (_ algorithm: inout Algorithm, _ step: Int) throws -> Bool = { _, _ in false }
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
                let update = try algorithm.update(batch, labels: batchLabels)
                step += 1
                let value = algorithm.loss(of: update)
                guard value.isFinite else { throw StageFailure(divergence(value, step, epoch)) }
                windowSteps += 1
                let closesWindow = windowSteps == max(logEvery, 1) || step == totalSteps
                if closesWindow { windowSteps = 0 }
                algorithm.record(update, step: step, of: totalSteps, closesWindow: closesWindow, log: context.log)
                let elapsed = Self.seconds(ContinuousClock.now - started)
                let rate = Double(step) / max(elapsed, 1e-9)
                let eta = Double(totalSteps - step) / max(rate, 1e-9)
                context.progress.report(StageProgress(
                    fraction: Double(step) / Double(totalSteps),
                    message: progressPrefix + String(format: "step %d/%d ", step, totalSteps) + algorithm.progress(of: update)
                        + String(format: " %.2f it/s", rate) + " ETA " + Self.duration(eta)))
                if evalEvery > 0, step % evalEvery == 0, step < totalSteps, try periodic(&algorithm, step) {
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
