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
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The model to start from (`${stage.model}`).")
        public static let data = Parameter("data", .artifact("dataset"), doc: "The dataset (`${stage.dataset}` of `data/text-classification`); its labels become the classifier's classes.")
        public static let epochs = Parameter("epochs", .optional(.number), doc: "Passes over the training split (fractions allowed). Default 1 when `steps` is not given.")
        public static let steps = Parameter("steps", .optional(.int), doc: "Number of updates instead of `epochs`.")
        public static let lr = Parameter("lr", .number, default: 5e-5, doc: "Peak learning rate.")
        public static let batch_size = Parameter("batch_size", .int, default: 32, doc: "Examples per update.")
        public static let max_seq_len = Parameter("max_seq_len", .int, default: 128, doc: "Tokens per example, [CLS] and [SEP] included; longer texts are cut.")
        public static let warmup_ratio = Parameter("warmup_ratio", .number, default: 0, doc: "Fraction of the updates over which the learning rate rises linearly from 0; it then decays linearly to 0.")
        public static let weight_decay = Parameter("weight_decay", .number, default: 0, doc: "Decoupled AdamW weight decay (never on biases and LayerNorm weights).")
        public static let grad_clip = Parameter("grad_clip", .number, default: 1, doc: "Clip gradients to this global L2 norm; 0 turns clipping off.")
        public static let train_split = Parameter("train_split", .string, default: "train", doc: "The split to train on.")
        public static let eval_split = Parameter("eval_split", .string, default: "dev", doc: "The split to evaluate on during training (skipped when the dataset has no such split).")
        public static let eval_every = Parameter("eval_every", .int, default: 0, doc: "Evaluate every N updates (0: only at the end).")
        public static let keep_best = Parameter("keep_best", .bool, default: true, doc: "Output the model of the evaluation with the best accuracy (ties: the lower loss) rather than the last one.")
        public static let early_stop_patience = Parameter("early_stop_patience", .optional(.int), doc: "Stop after this many evaluations without a better model (higher accuracy, or equal accuracy at a lower loss).")
        public static let pooling = Parameter("pooling", .optional(.enumeration(BertPooling.allCases.map(\.rawValue))), doc: "Sentence representation for the classifier: `pooler` ([CLS] through the pooler) or `mean`. Default: the model's, else pooler when it has one.")
        public static let batching = Parameter("batching", .enumeration(["bucketed", "random"]), default: "bucketed", doc: "`bucketed` groups examples of similar length (less padding, faster); `random` draws batches uniformly. Both are shuffled by the stage seed each epoch.")
        public static let log_every = Parameter("log_every", .int, default: 50, doc: "Average and record the training loss over this many updates.")

        public static let parameters: [any ParameterDeclaration] = [
            model, data, epochs, steps, lr, batch_size, max_seq_len, warmup_ratio, weight_decay, grad_clip, train_split,
            eval_split, eval_every, keep_best, early_stop_patience, pooling, batching, log_every,
        ]

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

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            data = try arguments[Self.data]
            epochs = try arguments[Self.epochs]
            steps = try arguments[Self.steps]
            lr = try arguments[Self.lr]
            batch_size = try arguments[Self.batch_size]
            max_seq_len = try arguments[Self.max_seq_len]
            warmup_ratio = try arguments[Self.warmup_ratio]
            weight_decay = try arguments[Self.weight_decay]
            grad_clip = try arguments[Self.grad_clip]
            train_split = try arguments[Self.train_split]
            eval_split = try arguments[Self.eval_split]
            eval_every = try arguments[Self.eval_every]
            keep_best = try arguments[Self.keep_best]
            early_stop_patience = try arguments[Self.early_stop_patience]
            pooling = try arguments[Self.pooling]
            batching = try arguments[Self.batching]
            log_every = try arguments[Self.log_every]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "train/finetune",
        version: 1,
        summary: "Fine-tune a BERT model artifact as a sequence classifier (AdamW, linear warmup/decay, clipping, dev evaluation, keep-best, early stop).",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The fine-tuned model artifact."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        ParamChecks.eitherOr(with, "epochs", "steps")
            + ParamChecks.atLeast(with, [("batch_size", 1), ("max_seq_len", 3), ("steps", 1), ("log_every", 1)])
            + ParamChecks.positive(with, ["lr", "epochs"])
            + ParamChecks.nonNegative(with, ["weight_decay", "grad_clip", "eval_every"])
            + ParamChecks.unitInterval(with, ["warmup_ratio"])
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try Backends.make(context.backend, threads: context.threads)
        let data = try TrainingData(directory: params.data, trainSplit: params.train_split, evalSplit: params.eval_split)
        let dataset = data.dataset

        let loaded = try LoadedClassifier(
            directory: params.model, labels: dataset.labels, pooling: params.pooling.flatMap(BertPooling.init(rawValue:)),
            seed: randomBits(seed: context.seed, stream: Streams.classifier, index: 0))
        let encoded = data.encode(with: loaded, maxLength: params.max_seq_len, context: context)

        let length = TrainingLength(examples: data.train.count, batchSize: params.batch_size, epochs: params.epochs, steps: params.steps)
        let (batchSize, totalSteps) = (length.batchSize, length.totalSteps)
        let options = length.options(
            lr: params.lr, weightDecay: params.weight_decay, warmupRatio: params.warmup_ratio, gradClip: params.grad_clip,
            seed: randomBits(seed: context.seed, stream: Streams.dropout, index: 0))
        var trainer = BertClassifierTrainer(model: loaded.model, options: options, backend: backend)
        context.log.line("""
            train/finetune: \(data.train.count) \(params.train_split) examples, \(data.eval.count) \(params.eval_split) examples, \
            labels \(dataset.labels), \(totalSteps) updates (\(length.stepsPerEpoch) per epoch), batch \(batchSize), max_seq_len \(params.max_seq_len), \
            lr \(params.lr), warmup \(options.warmupSteps), weight decay \(params.weight_decay), clip \(params.grad_clip), \
            backend \(backend.id) with \(context.threads) threads
            """)

        var lossCurve: [Value] = []
        var window = MeanLossWindow()
        var selection = ModelSelection()

        func evaluate(step: Int) throws -> ClassificationScores? {
            guard !data.eval.isEmpty else { return nil }
            let scores = try trainer.model.evaluate(
                encoded.eval, labels: encoded.evalLabels, batchSize: batchSize, padID: loaded.padID, backend: backend)
            selection.record(scores, model: trainer.model, step: step, label: params.eval_split, context: context)
            return scores
        }

        let loop = TrainingLoop(
            sequences: encoded.train, labels: encoded.trainLabels, padID: loaded.padID, length: length, orderSeed: context.seed,
            batching: params.batching, logEvery: params.log_every, evalEvery: params.eval_every)
        let outcome = try loop.run(
            context,
            update: { batch, labels in
                try trainer.step(batch: BertBatch(inputIDs: batch.ids, attentionMask: batch.attentionMask), labels: labels)
            },
            loss: { Double($0.loss) },
            record: { result, step, closesWindow in
                window.add(Double(result.loss))
                guard closesWindow else { return }
                let mean = window.mean
                lossCurve.append(.array([.int(step), .double(mean)]))
                context.log.line(String(format: "step %d/%d: loss %.4f lr %.3g", step, totalSteps, mean, result.learningRate))
                window = MeanLossWindow()
            },
            progress: { String(format: "loss %.4f", $0.loss) },
            periodic: { step in
                _ = try evaluate(step: step)
                return selection.shouldStop(patience: params.early_stop_patience, step: step, context: context)
            })
        let step = outcome.steps
        context.log.line(TrainingLoop.summary(outcome))

        let last = outcome.stoppedEarly ? nil : try evaluate(step: step)
        var metrics: [String: Value] = [
            "steps": .int(step),
            "epochs": .double(Double(step) / Double(length.stepsPerEpoch)),
            "train_examples": .int(data.train.count),
            "train_loss": lossCurve.last.flatMap { if case .array(let pair) = $0 { pair.last } else { nil } } ?? .null,
            "loss_curve": .array(lossCurve),
            "stopped_early": .bool(outcome.stoppedEarly),
        ]
        let output = selection.finish(
            keepBest: params.keep_best, last: trainer.model, lastScores: last, steps: step, split: params.eval_split, into: &metrics)
        try LoadedClassifier.save(output.model, from: loaded.artifact, to: context.outputDirectory, source: "train/finetune")
        return StageResult(metrics: metrics, outputs: ["model": "."])
    }

    /// `randomBits` streams, one per use of the stage seed.
    enum Streams {
        static let classifier: UInt64 = 1
        static let dropout: UInt64 = 2
        // 3: the batch order (`TrainingLoop.batchOrderStream`).
    }
}
