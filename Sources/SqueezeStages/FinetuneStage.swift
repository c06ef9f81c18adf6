import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
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
        public static let keep_best = Parameter("keep_best", .bool, default: true, doc: "Output the model of the evaluation with the best accuracy (ties: the lower loss) rather than the last one.")
        public static let early_stop_patience = Parameter("early_stop_patience", .optional(.int), doc: "Stop after this many evaluations without a better model (higher accuracy, or equal accuracy at a lower loss).")
        public static let pooling = Parameter("pooling", .optional(.enumeration(BertPooling.allCases.map(\.rawValue))), doc: "Sentence representation for the classifier: `pooler` ([CLS] through the pooler) or `mean`. Default: the model's, else pooler when it has one.")

        /// The shared training options, as this stage documents them.
        public static let training = TrainingOptions.Parameters()
            .documenting(
                \.batching,
                "`bucketed` groups examples of similar length (less padding, faster); `random` draws batches uniformly. Both are shuffled by the stage seed each epoch.")

        public static let parameters: [any ParameterDeclaration] = [
            model, data, training.epochs, training.steps, training.lr, training.batchSize, training.maxSeqLen,
            training.warmupRatio, training.weightDecay, training.gradClip, training.trainSplit, training.evalSplit,
            training.evalEvery, keep_best, early_stop_patience, pooling, training.batching, training.logEvery, training.checkpointEvery,
        ]

        public var model: String
        public var data: String
        public var training: TrainingOptions
        public var keep_best: Bool
        public var early_stop_patience: Int?
        public var pooling: String?

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            data = try arguments[Self.data]
            training = try TrainingOptions(arguments, Self.training)
            keep_best = try arguments[Self.keep_best]
            early_stop_patience = try arguments[Self.early_stop_patience]
            pooling = try arguments[Self.pooling]
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
        check: TrainingOptions.check
    )

    /// The backends a recipe may name.
    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        let data = try params.training.data(in: params.data)
        let loaded = try LoadedClassifier(
            directory: params.model, labels: data.dataset.labels, pooling: params.pooling.flatMap(BertPooling.init(rawValue:)),
            seed: RandomStream.classifier.bits(of: context.seed))
        let encoded = data.encode(with: loaded, maxLength: params.training.maxSeqLen, context: context)

        let length = params.training.length(examples: data.train.count)
        let options = length.options(params.training, seed: RandomStream.dropout.bits(of: context.seed))
        var finetuning = Finetuning(trainer: BertClassifierTrainer(model: loaded.model, options: options, backend: backend))
        context.log.line("""
            train/finetune: \(data.train.count) \(params.training.trainSplit) examples, \(data.eval.count) \(params.training.evalSplit) examples, \
            labels \(data.dataset.labels), \(length.totalSteps) updates (\(length.stepsPerEpoch) per epoch), batch \(length.batchSize), \
            max_seq_len \(params.training.maxSeqLen), lr \(params.training.lr), warmup \(options.warmupSteps), weight decay \(params.training.weightDecay), \
            clip \(params.training.gradClip), backend \(backend.id) with \(context.threads) threads
            """)

        let run = TrainingRun(
            loop: params.training.loop(over: encoded, padID: loaded.padID, length: length, orderSeed: context.seed),
            evaluation: params.training.evaluation(of: encoded, padID: loaded.padID, length: length, backend: backend),
            evaluationLabel: params.training.evalSplit, keepBest: params.keep_best, patience: params.early_stop_patience)
        let result = try run.run(&finetuning, context)
        try LoadedClassifier.save(result.model, from: loaded.artifact, to: context.outputDirectory, source: "train/finetune")
        return StageResult(metrics: result.metrics, outputs: ["model": "."])
    }

    /// Plain fine-tuning: cross-entropy on the labels. Records the `log_every`
    /// mean loss as `loss_curve` rows `[step, loss]`.
    struct Finetuning: TrainingAlgorithm {
        var trainer: BertClassifierTrainer
        var lossCurve: [Value] = []
        var window = MeanLossWindow()

        var model: BertModel { trainer.model }

        var metrics: [String: Value] {
            ["train_loss": lossCurve.valueInLastRow(column: 1), "loss_curve": .array(lossCurve)]
        }

        mutating func update(_ batch: ClassificationBatch) throws -> TrainingStep {
            try trainer.step(batch: batch.bert, labels: batch.labels)
        }

        func loss(of update: TrainingStep) -> Double { Double(update.loss) }

        func progress(of update: TrainingStep) -> String { String(format: "loss %.4f", update.loss) }

        mutating func record(_ update: TrainingStep, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            window.add(Double(update.loss))
            guard closesWindow else { return }
            let mean = window.mean
            lossCurve.append(.array([.int(step), .double(mean)]))
            log.line(String(format: "step %d/%d: loss %.4f lr %.3g", step, totalSteps, mean, update.learningRate))
            window = MeanLossWindow()
        }

        func saveState(into state: inout TrainingState) {
            trainer.saveState(into: &state)
            state.values["loss_curve"] = .array(lossCurve)
            window.save(into: &state, as: "window.")
        }

        mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
            var restored = self
            try restored.trainer.restoreState(from: state)
            restored.lossCurve = try state.array("loss_curve")
            restored.window = try MeanLossWindow(state, as: "window.")
            self = restored
        }
    }
}
