import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: prune/cofi` — CoFi structured pruning with layer distillation
/// (Xia et al. 2022; shared/design/cofi.md): hard-concrete masks over heads,
/// FFN units, hidden dimensions and whole sublayers, learned jointly with
/// the weights under a Lagrangian that drives the expected sparsity to a
/// target ramped up over a warm-up, while the student (a copy of the
/// teacher) distils the teacher's layers (order-keeping dynamic mapping
/// through a learned d×d map) and predictions. At the end the masks are made
/// deterministic, folded into the weights and the pruned structures removed:
/// the output is a dense model whose layers may differ in size. An optional
/// fine-tune with prediction-layer distillation follows, masks frozen.
public struct CoFiPruneStage: Stage {
    public struct Params: StageParameters {
        public static let teacher = Parameter("teacher", .artifact("model"), doc: "The fine-tuned model to prune (`${finetuned.model}`); it is also the distillation teacher. Its labels must be the dataset's.")
        public static let student = Parameter("student", .optional(.artifact("model")), doc: "Start the pruned model from this model instead of a copy of the teacher: same labels, vocabulary and hidden size as the teacher.")
        public static let data = Parameter("data", .artifact("dataset"), doc: "The dataset (`${stage.dataset}` of `data/text-classification`).")
        public static let target_sparsity = Parameter("target_sparsity", .number, doc: "Fraction of the prunable encoder parameters (query, key, value, attention output and both FFN matrices) to remove, in [0, 1).")
        public static let units = Parameter("units", .array(.string), default: CoFiUnit.allCases.map(\.rawValue), doc: "What may be pruned: any of `heads`, `ffn_units`, `hidden` (hidden dimensions, shared by all layers) and `layers` (whole attention and FFN sublayers).")
        public static let lagrangian_warmup_steps = Parameter("lagrangian_warmup_steps", .optional(.int), doc: "Updates over which the target sparsity rises linearly from 0 (instead of `lagrangian_warmup_ratio`).")
        public static let lagrangian_warmup_ratio = Parameter("lagrangian_warmup_ratio", .optional(.number), doc: "Fraction of the pruning updates over which the target sparsity rises linearly from 0; default 0.1 (the reference: 2 of 20 epochs).")
        public static let mask_lr = Parameter("mask_lr", .number, default: 0.01, doc: "Adam learning rate of the masks' log α (the reference's `reg_learning_rate`).")
        public static let lambda_lr = Parameter("lambda_lr", .number, default: 0.01, doc: "Adam learning rate of the Lagrange multipliers λ1, λ2, applied as gradient ascent.")
        public static let layer_distill_weight = Parameter("layer_distill_weight", .number, default: 0.9, doc: "Weight of the layer distillation loss: Σ MSE(W·h_student, h_teacher) over the teacher layers, each matched to the closest remaining student layer with the order kept.")
        public static let pred_distill_weight = Parameter("pred_distill_weight", .number, default: 0.1, doc: "Weight of the prediction-layer loss T²·KL(softmax(t/T) ‖ softmax(s/T)).")
        public static let ce_weight = Parameter("ce_weight", .number, default: 0, doc: "Weight of the task cross-entropy on the labels (0 in the reference).")
        public static let temperature = Parameter("temperature", .number, default: 2, doc: "Softmax temperature T of the prediction-layer loss (> 0).")
        public static let teacher_layers = Parameter("teacher_layers", .optional(.array(.int)), doc: "Teacher layers (0-based, increasing) of the layer loss. Default: at most four, every ⌈L/4⌉-th ending at the last (6 layers: [1, 3, 5]; 12 layers: [2, 5, 8, 11], the paper's).")
        public static let freeze_embeddings = Parameter("freeze_embeddings", .bool, default: true, doc: "Keep the embeddings (tables and LayerNorm) fixed while pruning, as the reference does.")
        public static let finetune_epochs = Parameter("finetune_epochs", .number, default: 0, doc: "After pruning, fine-tune the pruned model (its structure fixed) for this many epochs with prediction-layer distillation from the teacher (plus cross-entropy when `ce_weight` > 0). 0: none.")
        public static let finetune_lr = Parameter("finetune_lr", .optional(.number), doc: "Peak learning rate of the post-pruning fine-tune; default `lr`.")

        /// The shared training options, as this stage documents them.
        public static let training = TrainingOptions.Parameters()
            .documenting(
                \.epochs,
                "Passes over the training split while pruning (fractions allowed). Default 1 when `steps` is not given.")
            .documenting(\.steps, "Number of pruning updates instead of `epochs`.")
            .defaulting(\.lr, to: 2e-5)
            .documenting(\.lr, "Peak learning rate of the weights and the layer map (linear warmup and decay).")
            .documenting(
                \.warmupRatio,
                "Fraction of the updates over which the weights' learning rate rises linearly from 0; it then decays linearly to 0.")
            .documenting(
                \.weightDecay,
                "Decoupled AdamW weight decay of the weights (never on biases, LayerNorm weights, the layer map or the masks).")
            .documenting(\.gradClip, "Clip the weights' and layer map's gradients to this global L2 norm; 0 turns clipping off.")
            .documenting(\.evalSplit, "The split the pruned model is evaluated on (skipped when the dataset has no such split).")
            .documenting(
                \.evalEvery,
                "Evaluate the model the current masks would give every N pruning updates (0: only at the end).")
            .documenting(\.logEvery, "Average and record the losses, expected sparsity, target and λ over this many updates.")

        public static let parameters: [any ParameterDeclaration] = [
            teacher, student, data, target_sparsity, units, training.epochs, training.steps, lagrangian_warmup_steps,
            lagrangian_warmup_ratio, training.lr, mask_lr, lambda_lr, training.batchSize, training.maxSeqLen,
            training.warmupRatio, training.weightDecay, training.gradClip, layer_distill_weight, pred_distill_weight,
            ce_weight, temperature, teacher_layers, freeze_embeddings, finetune_epochs, finetune_lr, training.trainSplit,
            training.evalSplit, training.evalEvery, training.logEvery, training.batching, training.checkpointEvery,
        ]

        public var teacher: String
        public var student: String?
        public var data: String
        public var training: TrainingOptions
        public var target_sparsity: Double
        public var units: [String]
        public var lagrangian_warmup_steps: Int?
        public var lagrangian_warmup_ratio: Double?
        public var mask_lr: Double
        public var lambda_lr: Double
        public var layer_distill_weight: Double
        public var pred_distill_weight: Double
        public var ce_weight: Double
        public var temperature: Double
        public var teacher_layers: [Int]?
        public var freeze_embeddings: Bool
        public var finetune_epochs: Double
        public var finetune_lr: Double?

        public init(_ arguments: StageArguments) throws {
            teacher = try arguments[Self.teacher]
            student = try arguments[Self.student]
            data = try arguments[Self.data]
            training = try TrainingOptions(arguments, Self.training)
            target_sparsity = try arguments[Self.target_sparsity]
            units = try arguments[Self.units]
            lagrangian_warmup_steps = try arguments[Self.lagrangian_warmup_steps]
            lagrangian_warmup_ratio = try arguments[Self.lagrangian_warmup_ratio]
            mask_lr = try arguments[Self.mask_lr]
            lambda_lr = try arguments[Self.lambda_lr]
            layer_distill_weight = try arguments[Self.layer_distill_weight]
            pred_distill_weight = try arguments[Self.pred_distill_weight]
            ce_weight = try arguments[Self.ce_weight]
            temperature = try arguments[Self.temperature]
            teacher_layers = try arguments[Self.teacher_layers]
            freeze_embeddings = try arguments[Self.freeze_embeddings]
            finetune_epochs = try arguments[Self.finetune_epochs]
            finetune_lr = try arguments[Self.finetune_lr]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "prune/cofi",
        version: 1,
        summary: "Structured pruning with CoFi: learned hard-concrete masks over heads, FFN units, hidden dimensions and sublayers, a Lagrangian sparsity target and layer + prediction distillation; outputs a smaller dense model.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The pruned model artifact: dense, smaller, its config recording each layer's heads and FFN width (`squeeze_layers`) and the head size."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    /// The backends a recipe may name.
    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems = TrainingOptions.check(with)
        if let node = with["target_sparsity"], let value = ParamChecks.number(node), !(value >= 0 && value < 1) {
            problems.append(Diagnostic(
                "`target_sparsity` must be in [0, 1), got \(node.scalar ?? "")", at: node.location,
                hint: "the fraction of prunable encoder parameters to remove, e.g. 0.6"))
        }
        if let node = with["units"], let items = node.items {
            if items.isEmpty {
                problems.append(Diagnostic("`units` is empty", at: node.location, hint: "remove it to prune heads, FFN units, hidden dimensions and layers"))
            }
            let known = CoFiUnit.allCases.map(\.rawValue)
            for item in items {
                guard let name = item.scalar, !name.contains("${"), CoFiUnit(rawValue: name) == nil else { continue }
                problems.append(Diagnostic(
                    "unknown pruning unit `\(name)`; expected one of \(known.map { "`\($0)`" }.joined(separator: ", "))", at: item.location,
                    hint: Suggestion.hint(for: name, in: known)))
            }
        }
        problems += ParamChecks.eitherOr(with, Params.lagrangian_warmup_steps, Params.lagrangian_warmup_ratio)
        problems += ParamChecks.unitInterval(with, [Params.lagrangian_warmup_ratio])
        problems += ParamChecks.positive(with, [Params.mask_lr, Params.temperature, Params.finetune_lr])
        problems += ParamChecks.nonNegative(
            with,
            [
                Params.lambda_lr, Params.layer_distill_weight, Params.pred_distill_weight, Params.ce_weight, Params.finetune_epochs,
                Params.lagrangian_warmup_steps,
            ])
        let weights = ["layer_distill_weight", "pred_distill_weight", "ce_weight"].map { name in
            with[name].map { ParamChecks.number($0) } ?? (name == "ce_weight" ? 0 : 1)
        }
        if weights.allSatisfy({ $0 == 0 }), let node = with["layer_distill_weight"] ?? with["pred_distill_weight"] {
            problems.append(Diagnostic("every loss weight is 0: the weights would learn nothing while the masks are pruned", at: node.location))
        }
        if let node = with["teacher_layers"], let items = node.items {
            if items.isEmpty {
                problems.append(Diagnostic("`teacher_layers` is empty", at: node.location, hint: "remove it for the default, or set `layer_distill_weight: 0`"))
            }
            var previous: Int?
            for item in items {
                guard let text = item.scalar, let layer = Int(text) else { continue }
                if layer < 0 {
                    problems.append(Diagnostic("layer numbers start at 0, got \(layer)", at: item.location))
                } else if let previous, layer <= previous {
                    problems.append(Diagnostic("`teacher_layers` must be strictly increasing: \(layer) after \(previous)", at: item.location))
                }
                previous = layer
            }
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        let data = try params.training.data(in: params.data)

        // Everything that can be wrong with the set-up is checked before training.
        let units: Set<CoFiUnit>
        do {
            units = try CoFiUnit.parse(params.units)
        } catch {
            throw StageFailure(error.description)
        }
        let teacher = try LoadedClassifier(teacher: params.teacher, of: data.dataset, task: "prune")
        let student = try Self.loadStudent(params, teacher: teacher)

        let maxLength = min(params.training.maxSeqLen, student.config.maxPositionEmbeddings)
        let encoded = data.encode(with: teacher, maxLength: maxLength, context: context)
        let length = params.training.length(examples: data.train.count)
        let lagrangianWarmup = params.lagrangian_warmup_steps
            ?? Int(((params.lagrangian_warmup_ratio ?? 0.1) * Double(length.totalSteps)).rounded(.up))
        let trainer = try Self.makeTrainer(
            params, student: student, teacher: teacher.model, units: units, lagrangianWarmup: lagrangianWarmup, length: length,
            seed: context.seed, backend: backend)
        let startPrunable = Self.prunableParameters(student)
        context.log.line("""
            prune/cofi: \(data.train.count) \(params.training.trainSplit) examples, \(data.eval.count) \(params.training.evalSplit) examples, \
            labels \(data.dataset.labels); \(student.config.numHiddenLayers) layers × \(student.config.hiddenSize), \(startPrunable) prunable \
            parameters; target sparsity \(params.target_sparsity) over \(lagrangianWarmup) warm-up updates, units \
            \(units.sorted().map(\.rawValue)); loss \(params.layer_distill_weight)·layer (teacher layers \(trainer.teacherLayers)) + \
            \(params.pred_distill_weight)·pred (T=\(params.temperature)) + \(params.ce_weight)·ce; \(length.totalSteps) updates \
            (\(length.stepsPerEpoch) per epoch), batch \(length.batchSize), max_seq_len \(maxLength), lr \(params.training.lr), \
            mask lr \(params.mask_lr), λ lr \(params.lambda_lr), backend \(backend.id) with \(context.threads) threads
            """)

        var loop = params.training.loop(over: encoded, padID: teacher.padID, length: length, orderSeed: context.seed)
        loop.phase = "prune"
        // The fine-tune that follows resumes from the end of pruning instead of pruning again.
        loop.checkpointsTheEnd = params.finetune_epochs > 0
        loop.divergence = { loss, step, epoch in "the loss became \(loss) at step \(step) (epoch \(epoch + 1)); lower `lr` or `lambda_lr`" }
        let dev = params.training.evaluation(of: encoded, padID: teacher.padID, length: length, backend: backend)
        let pruning = try Self.prune(Pruning(trainer: trainer, startPrunable: startPrunable), loop: loop, dev: dev, context: context)

        var model = try Self.compact(pruning.trainer)
        let prunedScores = try dev.scores(of: model)
        if let prunedScores {
            context.log.line("pruned model \(dev.split) " + String(format: "accuracy %.4f", prunedScores.accuracy))
        }
        var metrics = pruning.metrics
        if params.finetune_epochs > 0 {
            let result = try Self.finetune(
                model, teacher: teacher, params, sequences: encoded.train, labels: encoded.trainLabels, context: context, backend: backend)
            model = result.model
            metrics.merge(result.metrics) { _, finetune in finetune }
        }
        let finalScores = params.finetune_epochs > 0 ? try dev.scores(of: model) : prunedScores
        try LoadedClassifier.save(model, from: teacher.artifact, to: context.outputDirectory, source: "prune/cofi")

        metrics.merge(pruning.sizeMetrics(of: model, original: student, target: params.target_sparsity, log: context.log)) { _, size in size }
        metrics["epochs"] = .double(Double(pruning.steps) / Double(length.stepsPerEpoch))
        metrics["train_examples"] = .int(data.train.count)
        if let prunedScores {
            metrics["pruned_\(dev.split)_accuracy"] = .double(prunedScores.accuracy)
            metrics["\(dev.split)_curve"] = .array(pruning.evalCurve)
        }
        if let finalScores, let teacherScores = try dev.scores(of: teacher.model) {
            metrics["\(dev.split)_accuracy"] = .double(finalScores.accuracy)
            metrics["\(dev.split)_macro_f1"] = .double(finalScores.macroF1)
            metrics["\(dev.split)_loss"] = .double(finalScores.loss)
            metrics["teacher_\(dev.split)_accuracy"] = .double(teacherScores.accuracy)
        }
        return StageResult(metrics: metrics, outputs: ["model": "."])
    }

    /// Runs `pruning`'s updates, evaluating the model the current masks
    /// would give every `eval_every` updates (accuracy and realised sparsity
    /// in `evalCurve`).
    static func prune(
        _ pruning: Pruning, loop: TrainingLoop<ClassificationBatch>, dev: ClassificationEvaluation, context: StageContext
    ) throws -> Pruning {
        var pruning = pruning
        let outcome = try loop.run(&pruning, context) { pruning, step in
            let pruned = try compact(pruning.trainer)
            if let scores = try dev.scores(of: pruned) {
                pruning.evalCurve.append(.array([.int(step), .double(scores.accuracy), .double(pruning.sparsity(of: pruned))]))
                context.log.line("step \(step): pruned model \(dev.split) " + String(format: "accuracy %.4f", scores.accuracy))
            }
            return false
        }
        context.log.line(outcome.summary(verb: "pruned for"))
        pruning.steps = outcome.steps
        return pruning
    }

    /// CoFi's updates: the weights, masks and Lagrange multipliers together.
    /// Records the `log_every` means as `loss_curve` rows `[step, loss, layer,
    /// prediction, ce, lagrangian]`, `sparsity_curve` rows `[step, expected,
    /// target, λ1, λ2]` and the masks' expected sizes as `mask_history`.
    struct Pruning: TrainingAlgorithm {
        var trainer: CoFiTrainer
        /// The prunable parameters before pruning.
        var startPrunable: Int
        var lossCurve: [Value] = []
        var sparsityCurve: [Value] = []
        var maskHistory: [Value] = []
        /// `[step, accuracy, realised sparsity]` of the periodic evaluations.
        var evalCurve: [Value] = []
        /// The updates run, once pruning is over.
        var steps = 0
        var window = Window()

        /// The fraction of the prunable parameters `model` no longer has.
        func sparsity(of model: BertModel) -> Double {
            1 - Double(CoFiPruneStage.prunableParameters(model)) / Double(max(startPrunable, 1))
        }

        /// The pruned `model`'s size against `original`'s, logged as the realised sparsity.
        func sizeMetrics(of model: BertModel, original: BertModel, target: Double, log: StageLog) -> [String: Value] {
            let remaining = CoFiPruneStage.prunableParameters(model)
            let realised = sparsity(of: model)
            log.line(
                String(format: "realised sparsity %.4f (expected %.4f, target %.4f): ", realised, trainer.expectedSparsity, target)
                    + "\(remaining) of \(startPrunable) prunable parameters, hidden \(model.config.hiddenSize), heads \(model.layerShapes.map(\.heads)), "
                    + "FFN \(model.layerShapes.map(\.intermediateSize))")
            return [
                "target_sparsity": .double(target),
                "realised_sparsity": .double(realised),
                "prunable_parameters": .int(remaining),
                "original_prunable_parameters": .int(startPrunable),
                "parameters": .int(model.parameterCount),
                "original_parameters": .int(original.parameterCount),
                "hidden_size": .int(model.config.hiddenSize),
                "layer_heads": .array(model.layerShapes.map { .int($0.heads) }),
                "layer_ffn_units": .array(model.layerShapes.map { .int($0.intermediateSize) }),
            ]
        }

        var model: BertModel { trainer.student }

        var metrics: [String: Value] {
            [
                "steps": .int(steps),
                "final_masks": CoFiPruneStage.maskSummary(step: steps, trainer.finalMasks.map { $0 == 0 ? 0 : 1 }),
                "expected_sparsity": .double(trainer.expectedSparsity),
                "lambda1": .double(trainer.lambda1),
                "lambda2": .double(trainer.lambda2),
                "loss_curve": .array(lossCurve),
                "sparsity_curve": .array(sparsityCurve),
                "mask_history": .array(maskHistory),
            ]
        }

        mutating func update(_ batch: ClassificationBatch) throws -> CoFiStep {
            try trainer.step(batch: batch.bert, labels: batch.labels)
        }

        func loss(of update: CoFiStep) -> Double { update.loss }

        func progress(of update: CoFiStep) -> String {
            String(
                format: "loss %.4f (layer %.4f pred %.4f ce %.4f) sparsity %.3f/%.3f λ %.3f,%.3f",
                update.loss, update.layerLoss, update.predictionLoss, update.taskLoss, update.expectedSparsity,
                update.targetSparsity, update.lambda1, update.lambda2)
        }

        mutating func record(_ update: CoFiStep, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            window.add(update)
            guard closesWindow else { return }
            let mean = window.mean
            lossCurve.append(.array(
                [.int(step)] + [mean.total, mean.layer, mean.prediction, mean.task, mean.lagrangian].map(Value.double)))
            sparsityCurve.append(.array([
                .int(step), .double(update.expectedSparsity), .double(update.targetSparsity), .double(trainer.lambda1), .double(trainer.lambda2),
            ]))
            maskHistory.append(CoFiPruneStage.maskSummary(step: step, trainer.masks.probabilities))
            log.line(
                String(
                    format: "step %d/%d: loss %.4f (layer %.4f, pred %.4f, ce %.4f, lagrangian %.4f) sparsity %.4f/%.4f λ1 %.4f λ2 %.4f lr %.3g",
                    step, totalSteps, mean.total, mean.layer, mean.prediction, mean.task, mean.lagrangian, update.expectedSparsity,
                    update.targetSparsity, trainer.lambda1, trainer.lambda2, update.learningRate))
            window = Window()
        }

        func saveState(into state: inout TrainingState) {
            trainer.saveState(into: &state)
            state.values["loss_curve"] = .array(lossCurve)
            state.values["sparsity_curve"] = .array(sparsityCurve)
            state.values["mask_history"] = .array(maskHistory)
            state.values["eval_curve"] = .array(evalCurve)
            window.saveState(into: &state)
        }

        mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
            var restored = self
            try restored.trainer.restoreState(from: state)
            restored.lossCurve = try state.array("loss_curve")
            restored.sparsityCurve = try state.array("sparsity_curve")
            restored.maskHistory = try state.array("mask_history")
            restored.evalCurve = try state.array("eval_curve")
            restored.window = try Window(state)
            self = restored
        }
    }

    // MARK: Pieces

    /// The CoFi trainer of `student`, its sparsity target reached after `lagrangianWarmup` updates.
    static func makeTrainer(
        _ params: Params, student: BertModel, teacher: BertModel, units: Set<CoFiUnit>, lagrangianWarmup: Int, length: TrainingLength,
        seed: UInt64, backend: any Backend
    ) throws(StageFailure) -> CoFiTrainer {
        do {
            let schedule = try CoFiSparsitySchedule(target: params.target_sparsity, warmupSteps: lagrangianWarmup)
            let cofi = CoFiOptions(
                units: units, schedule: schedule, maskLearningRate: params.mask_lr, lambdaLearningRate: params.lambda_lr,
                layerDistillWeight: Float(params.layer_distill_weight), predictionDistillWeight: Float(params.pred_distill_weight),
                ceWeight: Float(params.ce_weight), temperature: Float(params.temperature), teacherLayers: params.teacher_layers,
                freezeEmbeddings: params.freeze_embeddings, seed: RandomStream.masks.bits(of: seed))
            let options = length.options(params.training, seed: RandomStream.dropout.bits(of: seed))
            return try CoFiTrainer(student: student, teacher: teacher, options: options, cofi: cofi, backend: backend)
        } catch {
            throw StageFailure(error.description)
        }
    }

    /// The model pruning starts from: the teacher, or `student` (the teacher's
    /// vocabulary and the dataset's labels; the trainer checks its width).
    static func loadStudent(_ params: Params, teacher: LoadedClassifier) throws(StageFailure) -> BertModel {
        guard let directory = params.student else { return teacher.model }
        let student = try LoadedClassifier(directory: directory, seed: 0)
        guard student.artifact.manifest.files[ModelArtifact.vocabularyFileName] == teacher.artifact.manifest.files[ModelArtifact.vocabularyFileName] else {
            throw StageFailure("the student's vocab.txt differs from the teacher's; the student must use the teacher's tokenizer")
        }
        guard try DistillStage.hasClassifier(student.artifact), student.model.config.labels == teacher.model.config.labels else {
            throw StageFailure("""
                the student's labels \(student.model.config.labels) differ from the teacher's \(teacher.model.config.labels) \
                (or it has no classifier head); prune a student fine-tuned on this dataset
                """)
        }
        return student.model
    }

    static func compact(_ trainer: CoFiTrainer) throws(StageFailure) -> BertModel {
        do {
            return try trainer.prunedModel()
        } catch {
            throw StageFailure("cannot compact the pruned model: \(error.description)")
        }
    }

    /// The prunable encoder parameters as cofi.md counts them: every layer's
    /// query, key, value, attention output and two FFN weight matrices.
    static func prunableParameters(_ model: BertModel) -> Int {
        model.weights.layers.reduce(0) { total, layer in
            total + layer.query.weight.count + layer.key.weight.count + layer.value.weight.count + layer.attentionOutput.weight.count
                + layer.intermediate.weight.count + layer.output.weight.count
        }
    }

    /// `[step, heads per layer, FFN units per layer, hidden dims, z_MHA per layer, z_FFN per layer]`,
    /// each count the sum of `values` (probabilities: expected counts).
    static func maskSummary(step: Int, _ values: CoFiMaskValues) -> Value {
        func rounded(_ x: Double) -> Value { .double((x * 1000).rounded() / 1000) }
        return .array([
            .int(step),
            .array(values.heads.map { rounded($0.reduce(0, +)) }),
            .array(values.intermediate.map { rounded($0.reduce(0, +)) }),
            rounded(values.hidden.reduce(0, +)),
            .array(values.attentionLayers.map(rounded)),
            .array(values.ffnLayers.map(rounded)),
        ])
    }

    /// The post-pruning fine-tune: prediction-layer distillation (plus
    /// cross-entropy when `ce_weight` > 0) of the pruned model, its structure
    /// fixed; its metrics are `finetune_steps` and `finetune_loss_curve`.
    static func finetune(
        _ model: BertModel, teacher: LoadedClassifier, _ params: Params, sequences: TokenSequences, labels: [Int], context: StageContext,
        backend: any Backend
    ) throws -> (model: BertModel, metrics: [String: Value]) {
        let length = TrainingLength(examples: sequences.count, batchSize: params.training.batchSize, epochs: params.finetune_epochs, steps: nil)
        var training = params.training
        training.lr = params.finetune_lr ?? params.training.lr
        let options = length.options(training, seed: RandomStream.finetuneDropout.bits(of: context.seed))
        let (prediction, ce) = (params.pred_distill_weight, params.ce_weight)
        let alpha = prediction + ce > 0 ? prediction / (prediction + ce) : 1
        let trainer: DistillationTrainer
        do {
            trainer = try DistillationTrainer(
                student: model, teacher: teacher.model, options: options,
                distillation: DistillationOptions(temperature: Float(params.temperature), alpha: .constant(Float(alpha))), backend: backend)
        } catch {
            throw StageFailure("cannot fine-tune the pruned model: \(error.message)")
        }
        context.log.line("fine-tuning the pruned model: \(length.totalSteps) updates, α \(alpha), lr \(options.learningRate)")
        var finetuning = PrunedModelFinetuning(trainer: trainer)
        var loop = TrainingLoop(
            sequences: sequences, labels: labels, padID: teacher.padID, length: length,
            orderSeed: RandomStream.finetuneBatchOrder.bits(of: context.seed),
            batching: params.training.batching, logEvery: params.training.logEvery, evalEvery: 0)
        loop.progressPrefix = "fine-tune "
        loop.checkpointEvery = params.training.checkpointEvery
        loop.phase = "finetune"
        loop.divergence = { loss, step, _ in "the fine-tune loss became \(loss) at step \(step); lower `finetune_lr`" }
        let outcome = try loop.run(&finetuning, context)
        return (finetuning.model, finetuning.metrics.merging(["finetune_steps": .int(outcome.steps)]) { _, steps in steps })
    }

    /// The post-pruning fine-tune's updates: prediction-layer distillation.
    /// Records the `log_every` mean loss as rows `[step, loss]`.
    struct PrunedModelFinetuning: TrainingAlgorithm {
        var trainer: DistillationTrainer
        var lossCurve: [Value] = []
        var window = MeanLossWindow()

        var model: BertModel { trainer.student }

        var metrics: [String: Value] { ["finetune_loss_curve": .array(lossCurve)] }

        mutating func update(_ batch: ClassificationBatch) throws -> DistillationStep {
            try trainer.step(batch: batch.bert, labels: batch.labels)
        }

        func loss(of update: DistillationStep) -> Double { Double(update.loss) }

        func progress(of update: DistillationStep) -> String { String(format: "loss %.4f", update.loss) }

        mutating func record(_ update: DistillationStep, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            window.add(Double(update.loss))
            guard closesWindow else { return }
            lossCurve.append(.array([.int(step), .double(window.mean)]))
            log.line(String(format: "fine-tune step %d/%d: loss %.4f", step, totalSteps, window.mean))
            window = MeanLossWindow()
        }

        func saveState(into state: inout TrainingState) {
            trainer.saveState(into: &state)
            state.values["finetune_loss_curve"] = .array(lossCurve)
            window.save(into: &state, as: "window.")
        }

        mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
            var restored = self
            try restored.trainer.restoreState(from: state)
            restored.lossCurve = try state.array("finetune_loss_curve")
            restored.window = try MeanLossWindow(state, as: "window.")
            self = restored
        }
    }

    /// Means of the loss parts over the last `log_every` updates.
    struct Window {
        var steps = 0
        var total = 0.0
        var layer = 0.0
        var prediction = 0.0
        var task = 0.0
        var lagrangian = 0.0

        mutating func add(_ step: CoFiStep) {
            steps += 1
            total += step.loss
            layer += step.layerLoss
            prediction += step.predictionLoss
            task += step.taskLoss
            lagrangian += step.lagrangian
        }

        var mean: (total: Double, layer: Double, prediction: Double, task: Double, lagrangian: Double) {
            let n = Double(max(steps, 1))
            return (total / n, layer / n, prediction / n, task / n, lagrangian / n)
        }

        init() {}

        func saveState(into state: inout TrainingState) {
            state.values["window.steps"] = .int(steps)
            state.set("window.sums", doubles: [total, layer, prediction, task, lagrangian])
        }

        init(_ state: TrainingState) throws(TrainingStateError) {
            steps = try state.int("window.steps")
            let sums = try state.doubles("window.sums")
            guard sums.count == 5 else { throw TrainingStateError("`window.sums` must hold 5 sums") }
            (total, layer, prediction, task, lagrangian) = (sums[0], sums[1], sums[2], sums[3], sums[4])
        }
    }
}
