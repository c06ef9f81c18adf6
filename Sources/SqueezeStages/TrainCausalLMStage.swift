import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: train/causal-lm` — trains a decoder language model on the token
/// blocks of a `data/text` dataset: pre-training from a `config` (seeded
/// random initialisation, `transformers`' scheme) or fine-tuning an imported
/// or compressed `model` (a sparse model keeps its masks). Next-token
/// cross-entropy, and the optimiser, schedule, clipping, evaluation,
/// keep-best (lowest validation perplexity), early stop, progress and NaN
/// handling every training stage shares. Outputs the model artifact.
public struct TrainCausalLMStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .optional(.artifact("model")), doc: "The decoder to fine-tune (`${stage.model}`). Give either `model` or `config`.")
        public static let config = Parameter("config", .optional(.mapping([String: Value].self)), doc: "Pre-train a new model: its Hugging Face config fields, e.g. `{model_type: llama, hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256, tie_word_embeddings: true}`; `vocab_size` defaults to the tokenizer's size and `eos_token_id` to the dataset's end token. Weights are drawn from the stage seed. Give either `model` or `config`.")
        public static let tokenizer = Parameter("tokenizer", .optional(.artifact("tokenizer")), doc: "With `config`: the tokenizer the dataset was made with (`${bpe.tokenizer}`), copied into the model artifact; its digest must be the one the dataset records.")
        public static let data = Parameter("data", .artifact("text-dataset"), doc: "The token dataset (`${stage.dataset}` of `data/text`): training blocks of its `block_size` come from `train_split`, validation perplexity from `eval_split`.")
        public static let keep_best = Parameter("keep_best", .bool, default: true, doc: "Output the model of the evaluation with the lowest validation perplexity rather than the last one.")
        public static let early_stop_patience = Parameter("early_stop_patience", .optional(.int), doc: "Stop after this many evaluations without a lower validation perplexity.")
        public static let eval_windows = Parameter("eval_windows", .optional(.int), doc: "Score at most this many `block_size` windows of the evaluation split per evaluation (default: all).")

        /// The shared training options, as this stage documents them.
        public static let training = TrainingOptions.Parameters()
            .documenting(\.batchSize, "Blocks of `block_size` tokens per update.")
            .documenting(\.evalSplit, "The split whose perplexity is measured during training (skipped when the dataset has no such split).")
            .defaulting(\.evalSplit, to: "valid")
            .defaulting(\.lr, to: 3e-4)
            .defaulting(\.batchSize, to: 8)

        public static let parameters: [any ParameterDeclaration] = [
            model, config, tokenizer, data, training.epochs, training.steps, training.lr, training.batchSize, training.warmupRatio,
            training.weightDecay, training.gradClip, training.trainSplit, training.evalSplit, training.evalEvery, eval_windows, keep_best,
            early_stop_patience, training.logEvery, training.checkpointEvery,
        ]

        public var model: String?
        public var config: [String: Value]?
        public var tokenizer: String?
        public var data: String
        public var training: TrainingOptions
        public var keep_best: Bool
        public var early_stop_patience: Int?
        public var eval_windows: Int?

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            config = try arguments[Self.config]
            tokenizer = try arguments[Self.tokenizer]
            data = try arguments[Self.data]
            training = try TrainingOptions(arguments, Self.training)
            keep_best = try arguments[Self.keep_best]
            early_stop_patience = try arguments[Self.early_stop_patience]
            eval_windows = try arguments[Self.eval_windows]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "train/causal-lm",
        version: 1,
        summary: "Pre-train (from a config) or fine-tune a decoder language model on data/text blocks: next-token cross-entropy, AdamW, warmup/decay, clipping, validation perplexity, keep-best, early stop.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The trained decoder model artifact (with the tokenizer)."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems = TrainingOptions.check(with)
        switch (with["model"], with["config"]) {
        case (nil, nil):
            problems.append(Diagnostic(
                "give `model` (fine-tune) or `config` (pre-train)", at: with.location,
                hint: "e.g. `config: {model_type: llama, hidden_size: 256, …}` with `tokenizer: ${bpe.tokenizer}`"))
        case (.some(let node), .some):
            problems.append(Diagnostic("give either `model` or `config`, not both", at: node.location, hint: "remove one of them"))
        case (nil, .some(let node)):
            if with["tokenizer"] == nil {
                problems.append(Diagnostic(
                    "pre-training from `config` needs `tokenizer` (the tokenizer the dataset was made with)", at: node.location,
                    hint: "e.g. `tokenizer: ${bpe.tokenizer}`"))
            }
        case (.some, nil):
            if let node = with["tokenizer"] {
                problems.append(Diagnostic("`tokenizer` is for `config`; a `model` brings its own", at: node.location, hint: "remove `tokenizer`"))
            }
        }
        problems += ParamChecks.atLeast(with, [(Params.eval_windows, 1)])
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        let dataset = try LanguageModelData.dataset(params.data)
        let (model, tokenizerDirectory) = try Self.startingModel(params, dataset: dataset, seed: context.seed)
        let data = try LanguageModelData(
            dataset, model: model.config, trainSplit: params.training.trainSplit, evalSplit: params.training.evalSplit)
        let (blockCount, blockSize) = (data.blockCount, data.blockSize)

        let length = params.training.length(examples: blockCount)
        let options = length.options(params.training, seed: RandomStream.dropout.bits(of: context.seed))
        var training = CausalLMTraining(trainer: DecoderTrainer(model: model, hyperparameters: options, backend: backend))
        context.log.line("""
            train/causal-lm: \(params.model == nil ? "pre-training" : "fine-tuning") a \(model.config.family.rawValue) model of \
            \(model.parameterCount) parameters on \(blockCount) blocks of \(blockSize) tokens (\(params.training.trainSplit)), \
            \(length.totalSteps) updates (\(length.stepsPerEpoch) per epoch), batch \(length.batchSize), lr \(params.training.lr), \
            warmup \(options.warmupSteps), weight decay \(params.training.weightDecay), clip \(params.training.gradClip)\
            \(model.masks.isEmpty ? "" : ", \(model.masks.count) masked weights kept sparse"), backend \(backend.id) with \(context.threads) threads
            """)

        let loop = data.loop(
            length: length, orderSeed: context.seed, logEvery: params.training.logEvery, evalEvery: params.training.evalEvery,
            checkpointEvery: params.training.checkpointEvery)
        let dev = data.evaluation(split: params.training.evalSplit, batchSize: length.batchSize, maxWindows: params.eval_windows, backend: backend)
        let run = TrainingRun(
            loop: loop, evaluation: dev, evaluationLabel: params.training.evalSplit, keepBest: params.keep_best, patience: params.early_stop_patience)
        let result = try run.run(&training, context)
        try LoadedDecoder.save(result.model, tokenizerFrom: tokenizerDirectory, to: context.outputDirectory, source: "train/causal-lm")
        var metrics = result.metrics
        metrics["parameters"] = .int(result.model.parameterCount)
        return StageResult(metrics: metrics, outputs: ["model": "."])
    }

    /// The model to train and the directory whose `tokenizer.json` ships with it.
    static func startingModel(_ params: Params, dataset: TextTokenDataset, seed: UInt64) throws(StageFailure) -> (DecoderModel, String) {
        if let directory = params.model {
            let model = try LoadedDecoder.model(directory, parameter: "model")
            let tokenizer = (directory as NSString).appendingPathComponent(ModelArtifact.tokenizerFileName)
            try LanguageModelData.checkTokenizer(tokenizer, dataset: dataset, parameter: "model")
            return (model, directory)
        }
        guard var fields = params.config, let tokenizerDirectory = params.tokenizer else {
            throw StageFailure("give `model` (fine-tune) or `config` with `tokenizer` (pre-train)", parameter: "config")
        }
        let tokenizer = (tokenizerDirectory as NSString).appendingPathComponent(ModelArtifact.tokenizerFileName)
        try LanguageModelData.checkTokenizer(tokenizer, dataset: dataset, parameter: "tokenizer")
        if fields["vocab_size"] == nil { fields["vocab_size"] = .int(dataset.vocabularySize) }
        if fields["eos_token_id"] == nil { fields["eos_token_id"] = .int(dataset.eosID) }
        let config = try StageFailure.wrapping("`config`: ", parameter: "config") { () throws(ModelFileError) in
            try DecoderConfig(object: fields, file: "config")
        }
        let model = try StageFailure.wrapping("`config`: ", parameter: "config") { () throws(ModelFileError) in
            try DecoderModel(randomWithConfig: config, seed: RandomStream.modelInit.bits(of: seed))
        }
        return (model, tokenizerDirectory)
    }

    /// Causal-LM training: next-token cross-entropy. Records the `log_every`
    /// mean loss as `loss_curve` rows `[step, loss]`.
    struct CausalLMTraining: TrainingAlgorithm {
        var trainer: DecoderTrainer
        var lossCurve: [Value] = []
        var window = MeanLossWindow()

        var model: DecoderModel { trainer.model }

        var metrics: [String: Value] {
            ["train_loss": lossCurve.valueInLastRow(column: 1), "loss_curve": .array(lossCurve)]
        }

        mutating func update(_ batch: Tensor) throws -> TrainingStep {
            try trainer.step(ids: batch)
        }

        func loss(of update: TrainingStep) -> Double { Double(update.loss) }

        func progress(of update: TrainingStep) -> String { String(format: "loss %.4f", update.loss) }

        mutating func record(_ update: TrainingStep, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            window.add(Double(update.loss))
            guard closesWindow else { return }
            let mean = window.mean
            lossCurve.append(.array([.int(step), .double(mean)]))
            log.line(String(format: "step %d/%d: loss %.4f (perplexity %.2f) lr %.3g", step, totalSteps, mean, exp(mean), update.learningRate))
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
