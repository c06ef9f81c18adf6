import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeTensor
import SqueezeYAML

/// `uses: train/finetune` — fine-tunes a BERT model artifact as a sequence
/// classifier on a text-classification dataset: cross-entropy, AdamW without
/// decay on biases and LayerNorm, linear warmup and decay, global-norm
/// clipping, dropout and batch order seeded by the stage seed. Optionally
/// evaluates on a dev split every N steps, keeps the best model and stops
/// early. Outputs the fine-tuned model artifact.
public struct FinetuneStage: Stage {
    public struct Params: Decodable, Sendable {
        public var model: String
        public var data: String
        public var epochs: Double?
        public var steps: Int?
        public var lr: Double
        public var batch_size: Int
        public var max_seq_len: Int
        public var warmup_ratio: Double
        public var weight_decay: Double
        public var grad_clip: Double
        public var train_split: String
        public var eval_split: String
        public var eval_every: Int
        public var keep_best: Bool
        public var early_stop_patience: Int?
        public var pooling: String?
        public var batching: String
        public var log_every: Int
    }

    public static let descriptor = StageTypeDescriptor(
        type: "train/finetune",
        version: 1,
        summary: "Fine-tune a BERT model artifact as a sequence classifier (AdamW, linear warmup/decay, clipping, dev evaluation, keep-best, early stop).",
        parameters: [
            ParameterSpec("model", .artifact("model"), required: true, doc: "The model to start from (`${stage.model}`)."),
            ParameterSpec("data", .artifact("dataset"), required: true, doc: "The dataset (`${stage.dataset}` of `data/text-classification`); its labels become the classifier's classes."),
            ParameterSpec("epochs", .number, doc: "Passes over the training split (fractions allowed). Default 1 when `steps` is not given."),
            ParameterSpec("steps", .int, doc: "Number of updates instead of `epochs`."),
            ParameterSpec("lr", .number, default: .double(5e-5), doc: "Peak learning rate."),
            ParameterSpec("batch_size", .int, default: .int(32), doc: "Examples per update."),
            ParameterSpec("max_seq_len", .int, default: .int(128), doc: "Tokens per example, [CLS] and [SEP] included; longer texts are cut."),
            ParameterSpec("warmup_ratio", .number, default: .double(0), doc: "Fraction of the updates over which the learning rate rises linearly from 0; it then decays linearly to 0."),
            ParameterSpec("weight_decay", .number, default: .double(0), doc: "Decoupled AdamW weight decay (never on biases and LayerNorm weights)."),
            ParameterSpec("grad_clip", .number, default: .double(1), doc: "Clip gradients to this global L2 norm; 0 turns clipping off."),
            ParameterSpec("train_split", .string, default: .string("train"), doc: "The split to train on."),
            ParameterSpec("eval_split", .string, default: .string("dev"), doc: "The split to evaluate on during training (skipped when the dataset has no such split)."),
            ParameterSpec("eval_every", .int, default: .int(0), doc: "Evaluate every N updates (0: only at the end)."),
            ParameterSpec("keep_best", .bool, default: .bool(true), doc: "Output the model of the evaluation with the best accuracy (ties: the lower loss) rather than the last one."),
            ParameterSpec("early_stop_patience", .int, doc: "Stop after this many evaluations without a better model (higher accuracy, or equal accuracy at a lower loss)."),
            ParameterSpec("pooling", .enumeration(BertPooling.allCases.map(\.rawValue)), doc: "Sentence representation for the classifier: `pooler` ([CLS] through the pooler) or `mean`. Default: the model's, else pooler when it has one."),
            ParameterSpec("batching", .enumeration(["bucketed", "random"]), default: .string("bucketed"), doc: "`bucketed` groups examples of similar length (less padding, faster); `random` draws batches uniformly. Both are shuffled by the stage seed each epoch."),
            ParameterSpec("log_every", .int, default: .int(50), doc: "Average and record the training loss over this many updates."),
        ],
        outputs: [
            OutputSpec("model", kind: "model", doc: "The fine-tuned model artifact."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let epochs = with["epochs"], with["steps"] != nil {
            problems.append(Diagnostic("give either `epochs` or `steps`, not both", at: epochs.location, hint: "remove one of them"))
        }
        for (name, minimum) in [("batch_size", 1.0), ("max_seq_len", 3.0), ("steps", 1.0), ("log_every", 1.0)] {
            if let node = with[name], let text = node.scalar, let value = Double(text), value < minimum {
                problems.append(Diagnostic("`\(name)` must be at least \(Int(minimum)), got \(text)", at: node.location))
            }
        }
        for name in ["lr", "epochs"] {
            if let node = with[name], let text = node.scalar, let value = Double(text), !(value > 0) {
                problems.append(Diagnostic("`\(name)` must be positive, got \(text)", at: node.location))
            }
        }
        for name in ["weight_decay", "grad_clip", "eval_every"] {
            if let node = with[name], let text = node.scalar, let value = Double(text), value < 0 {
                problems.append(Diagnostic("`\(name)` must not be negative, got \(text)", at: node.location))
            }
        }
        if let node = with["warmup_ratio"], let text = node.scalar, let value = Double(text), !(0...1).contains(value) {
            problems.append(Diagnostic("`warmup_ratio` must be between 0 and 1, got \(text)", at: node.location))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try Backends.make(context.backend, threads: context.threads)
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: params.data)
        }
        let trainExamples = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(params.train_split) }
        guard !trainExamples.isEmpty else { throw StageFailure("the `\(params.train_split)` split is empty") }
        let evalExamples = dataset.splitNames.contains(params.eval_split)
            ? try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(params.eval_split) } : []

        let loaded = try LoadedClassifier(
            directory: params.model, labels: dataset.labels, pooling: params.pooling.flatMap(BertPooling.init(rawValue:)),
            seed: randomBits(seed: context.seed, stream: Streams.classifier, index: 0))
        context.progress.report(StageProgress(message: "tokenizing \(trainExamples.count) examples"))
        let trainSequences = loaded.encode(trainExamples.map(\.text), maxLength: params.max_seq_len)
        let trainLabels = trainExamples.map(\.label)
        let evalSequences = loaded.encode(evalExamples.map(\.text), maxLength: params.max_seq_len)
        let evalLabels = evalExamples.map(\.label)

        let batchSize = max(params.batch_size, 1)
        let stepsPerEpoch = (trainExamples.count + batchSize - 1) / batchSize
        let totalSteps = params.steps ?? max(1, Int(((params.epochs ?? 1) * Double(stepsPerEpoch)).rounded(.up)))
        let options = BertTrainingOptions(
            learningRate: Float(params.lr), weightDecay: Float(params.weight_decay),
            warmupSteps: Int((params.warmup_ratio * Double(totalSteps)).rounded(.up)), totalSteps: totalSteps,
            maxGradientNorm: params.grad_clip > 0 ? Float(params.grad_clip) : nil,
            seed: randomBits(seed: context.seed, stream: Streams.dropout, index: 0))
        var trainer = BertClassifierTrainer(model: loaded.model, options: options, backend: backend)
        context.log.line("""
            train/finetune: \(trainExamples.count) \(params.train_split) examples, \(evalExamples.count) \(params.eval_split) examples, \
            labels \(dataset.labels), \(totalSteps) updates (\(stepsPerEpoch) per epoch), batch \(batchSize), max_seq_len \(params.max_seq_len), \
            lr \(params.lr), warmup \(options.warmupSteps), weight decay \(params.weight_decay), clip \(params.grad_clip), \
            backend \(backend.id) with \(context.threads) threads
            """)

        var lossCurve: [Value] = []
        var evalCurve: [Value] = []
        var windowLoss = 0.0
        var windowSteps = 0
        var best: (step: Int, model: BertModel, scores: ClassificationScores)?
        var evaluationsWithoutImprovement = 0
        var stoppedEarly = false
        let started = ContinuousClock.now
        var epoch = 0
        var step = 0

        func evaluate() throws -> ClassificationScores? {
            guard !evalExamples.isEmpty else { return nil }
            let scores = try trainer.model.evaluate(
                evalSequences, labels: evalLabels, batchSize: batchSize, padID: loaded.padID, backend: backend)
            evalCurve.append(.array([.int(step), .double(scores.accuracy), .double(scores.loss)]))
            context.log.line(
                "step \(step): \(params.eval_split) "
                    + String(format: "accuracy %.4f macro-F1 %.4f loss %.4f", scores.accuracy, scores.macroF1, scores.loss))
            // Better: higher accuracy, or the same accuracy at a lower loss.
            if best.map({ scores.accuracy > $0.scores.accuracy || (scores.accuracy == $0.scores.accuracy && scores.loss < $0.scores.loss) }) ?? true {
                best = (step, trainer.model, scores)
                evaluationsWithoutImprovement = 0
            } else {
                evaluationsWithoutImprovement += 1
            }
            return scores
        }

        training: while step < totalSteps {
            let batches = LengthBucketing.batches(
                trainSequences, batchSize: batchSize, padID: loaded.padID, shuffle: true,
                seed: randomBits(seed: context.seed, stream: Streams.batchOrder, index: UInt64(epoch)),
                poolBatches: params.batching == "random" ? 1 : LengthBucketing.defaultPoolBatches)
            for batch in batches {
                try Task.checkCancellation()
                let labels = Tensor(shape: [batch.size], int32s: batch.indices.map { Int32(trainLabels[$0]) })
                let result = try trainer.step(batch: BertBatch(inputIDs: batch.ids, attentionMask: batch.attentionMask), labels: labels)
                step += 1
                guard result.loss.isFinite else {
                    throw StageFailure("the training loss became \(result.loss) at step \(step) (epoch \(epoch + 1)); lower `lr` or keep `grad_clip` on")
                }
                windowLoss += Double(result.loss)
                windowSteps += 1
                if windowSteps == max(params.log_every, 1) || step == totalSteps {
                    let mean = windowLoss / Double(windowSteps)
                    lossCurve.append(.array([.int(step), .double(mean)]))
                    context.log.line(String(format: "step %d/%d: loss %.4f lr %.3g", step, totalSteps, mean, result.learningRate))
                    windowLoss = 0
                    windowSteps = 0
                }
                let elapsed = Self.seconds(ContinuousClock.now - started)
                let rate = Double(step) / max(elapsed, 1e-9)
                let eta = Double(totalSteps - step) / max(rate, 1e-9)
                context.progress.report(StageProgress(
                    fraction: Double(step) / Double(totalSteps),
                    message: String(format: "step %d/%d loss %.4f %.2f it/s", step, totalSteps, result.loss, rate) + " ETA " + Self.duration(eta)))
                if params.eval_every > 0, step % params.eval_every == 0, step < totalSteps {
                    _ = try evaluate()
                    if let patience = params.early_stop_patience, evaluationsWithoutImprovement >= patience {
                        context.log.line("early stop at step \(step): \(patience) evaluations without a better accuracy")
                        stoppedEarly = true
                        break training
                    }
                }
                if step == totalSteps { break training }
            }
            epoch += 1
        }
        let seconds = Self.seconds(ContinuousClock.now - started)
        context.log.line(String(format: "trained %d updates in %.1f s (%.2f it/s)", step, seconds, Double(step) / max(seconds, 1e-9)))

        let last = stoppedEarly ? nil : try evaluate()
        let chosen = params.keep_best ? best : nil
        let finalModel = chosen?.model ?? trainer.model
        try LoadedClassifier.save(finalModel, from: loaded.artifact, to: context.outputDirectory, source: "train/finetune")

        var metrics: [String: Value] = [
            "steps": .int(step),
            "epochs": .double(Double(step) / Double(stepsPerEpoch)),
            "train_examples": .int(trainExamples.count),
            "train_loss": lossCurve.last.flatMap { if case .array(let pair) = $0 { pair.last } else { nil } } ?? .null,
            "loss_curve": .array(lossCurve),
            "stopped_early": .bool(stoppedEarly),
        ]
        if let scores = chosen?.scores ?? last ?? best?.scores {
            metrics["\(params.eval_split)_accuracy"] = .double(scores.accuracy)
            metrics["\(params.eval_split)_macro_f1"] = .double(scores.macroF1)
            metrics["\(params.eval_split)_loss"] = .double(scores.loss)
            metrics["\(params.eval_split)_curve"] = .array(evalCurve)
            metrics["output_step"] = .int(chosen?.step ?? step)
        }
        return StageResult(metrics: metrics, outputs: ["model": "."])
    }

    /// `randomBits` streams, one per use of the stage seed.
    enum Streams {
        static let classifier: UInt64 = 1
        static let dropout: UInt64 = 2
        static let batchOrder: UInt64 = 3
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
}
