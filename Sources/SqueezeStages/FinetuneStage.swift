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

    /// The backends a recipe may name.
    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        ParamChecks.eitherOr(with, "epochs", "steps")
            + ParamChecks.atLeast(with, [("batch_size", 1), ("max_seq_len", 3), ("steps", 1), ("log_every", 1)])
            + ParamChecks.positive(with, ["lr", "epochs"])
            + ParamChecks.nonNegative(with, ["weight_decay", "grad_clip", "eval_every"])
            + ParamChecks.unitInterval(with, ["warmup_ratio"])
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
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
