import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeTensor
import SqueezeYAML

/// The options every training stage takes (`train/finetune`, `distill/kd`,
/// `prune/cofi`): how long, how fast, on which splits, how often to evaluate
/// and log, and how batches are drawn.
public struct TrainingOptions: Sendable {
    public var epochs: Double?
    public var steps: Int?
    public var lr: Double
    public var batchSize: Int
    public var maxSeqLen: Int
    public var warmupRatio: Double
    public var weightDecay: Double
    public var gradClip: Double
    public var trainSplit: String
    public var evalSplit: String
    public var evalEvery: Int
    public var logEvery: Int
    public var batching: String
    public var checkpointEvery: CheckpointInterval

    /// The options' declarations. A stage lists each where it belongs in its
    /// own table, and may say more precisely what an option means for it
    /// (`documenting`) or start it elsewhere (`defaulting`).
    public struct Parameters: Sendable {
        public var epochs = Parameter(
            "epochs", .optional(.number),
            doc: "Passes over the training split (fractions allowed). Default 1 when `steps` is not given.")
        public var steps = Parameter("steps", .optional(.int), doc: "Number of updates instead of `epochs`.")
        public var lr = Parameter("lr", .number, default: 5e-5, doc: "Peak learning rate.")
        public var batchSize = Parameter("batch_size", .int, default: 32, doc: "Examples per update.")
        public var maxSeqLen = Parameter(
            "max_seq_len", .int, default: 128, doc: "Tokens per example, [CLS] and [SEP] included; longer texts are cut.")
        public var warmupRatio = Parameter(
            "warmup_ratio", .number, default: 0,
            doc: "Fraction of the updates over which the learning rate rises linearly from 0; it then decays linearly to 0.")
        public var weightDecay = Parameter(
            "weight_decay", .number, default: 0, doc: "Decoupled AdamW weight decay (never on biases and LayerNorm weights).")
        public var gradClip = Parameter(
            "grad_clip", .number, default: 1, doc: "Clip gradients to this global L2 norm; 0 turns clipping off.")
        public var trainSplit = Parameter("train_split", .string, default: "train", doc: "The split to train on.")
        public var evalSplit = Parameter(
            "eval_split", .string, default: "dev",
            doc: "The split to evaluate on during training (skipped when the dataset has no such split).")
        public var evalEvery = Parameter("eval_every", .int, default: 0, doc: "Evaluate every N updates (0: only at the end).")
        public var logEvery = Parameter(
            "log_every", .int, default: 50, doc: "Average and record the training loss over this many updates.")
        public var batching = Parameter(
            "batching", .enumeration(["bucketed", "random"]), default: "bucketed",
            doc: "`bucketed` groups examples of similar length; `random` draws batches uniformly. Both are shuffled by the stage seed each epoch.")
        public var checkpointEvery = Parameter(
            "checkpoint_every", ParameterType(.oneOf([.int, .string]), decodedAs: CheckpointInterval.self), default: .minutes(10),
            outsideKey: true,
            doc: "How often to write a checkpoint into the cache's resumable area, so a stage that is killed, preempted or times out continues from it when rerun, with the bits of an uninterrupted run: every N updates (`200`) or minutes (`10m`). Only the latest checkpoint is kept, and it is removed once the stage finishes. Not part of the cache key.")

        public init() {}

        /// These declarations with `option` documented as `doc`.
        public func documenting<Decoded>(_ option: WritableKeyPath<Self, Parameter<Decoded>>, _ doc: String) -> Self {
            var copy = self
            copy[keyPath: option] = self[keyPath: option].documented(doc)
            return copy
        }

        /// These declarations with `option` defaulting to `value`.
        public func defaulting<Decoded: ParameterValue>(
            _ option: WritableKeyPath<Self, Parameter<Decoded>>, to value: Decoded
        ) -> Self {
            var copy = self
            copy[keyPath: option] = self[keyPath: option].defaulting(to: value)
            return copy
        }
    }

    /// Reads every option through `parameters`, the declarations the stage lists.
    public init(_ arguments: StageArguments, _ parameters: Parameters) throws(ParameterDecodingError) {
        epochs = try arguments[parameters.epochs]
        steps = try arguments[parameters.steps]
        lr = try arguments[parameters.lr]
        batchSize = try arguments[parameters.batchSize]
        maxSeqLen = try arguments[ifDeclared: parameters.maxSeqLen]
        warmupRatio = try arguments[parameters.warmupRatio]
        weightDecay = try arguments[parameters.weightDecay]
        gradClip = try arguments[parameters.gradClip]
        trainSplit = try arguments[parameters.trainSplit]
        evalSplit = try arguments[parameters.evalSplit]
        evalEvery = try arguments[parameters.evalEvery]
        logEvery = try arguments[parameters.logEvery]
        batching = try arguments[ifDeclared: parameters.batching]
        checkpointEvery = try arguments[parameters.checkpointEvery]
    }

    /// Checks of the options' values beyond their types.
    static func check(_ with: YAMLNode) -> [Diagnostic] {
        let options = Parameters()
        return ParamChecks.eitherOr(with, options.epochs, options.steps)
            + ParamChecks.atLeast(with, [(options.batchSize, 1), (options.maxSeqLen, 3), (options.steps, 1), (options.logEvery, 1)])
            + ParamChecks.positive(with, [options.lr, options.epochs])
            + ParamChecks.nonNegative(with, [options.weightDecay, options.gradClip, options.evalEvery])
            + ParamChecks.unitInterval(with, [options.warmupRatio])
            + CheckpointInterval.check(with, options.checkpointEvery)
    }

    /// How many updates `examples` training examples take.
    func length(examples: Int) -> TrainingLength {
        TrainingLength(examples: examples, batchSize: batchSize, epochs: epochs, steps: steps)
    }
}

extension TrainingLength {
    /// The optimiser settings of `training` over this length.
    func options(_ training: TrainingOptions, seed: UInt64) -> TrainingHyperparameters {
        options(lr: training.lr, weightDecay: training.weightDecay, warmupRatio: training.warmupRatio, gradClip: training.gradClip, seed: seed)
    }
}
