import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: distill/kd` — knowledge distillation of a fine-tuned teacher into a
/// student classifier: `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE`
/// (or logit MSE instead of KL), α constant or linear over the updates, and
/// optionally hidden-state MSE through a learned projection and attention-score
/// MSE (TinyBERT) on a layer map.
/// The student is a model artifact or is built from the teacher's layers
/// (`init: {from: teacher, layers: [0, 2, 4]}`) or from a smaller config
/// (`init: {from: config, hidden_size: …}`, random, seeded). Optimisation is
/// `train/finetune`'s (AdamW, warmup/decay, clipping, dev evaluation,
/// keep-best, early stop). Outputs the student as a model artifact. Each
/// `loss_parts_curve` row is `[step, logit loss, ce, hidden or null,
/// attention or null]`, means over the last `log_every` updates.
///
/// A decoder teacher distils a decoder student on a `data/text` dataset,
/// token by token (`DistillStage+Decoder.swift`): the same loss over every
/// position that predicts a next token, the hidden loss on block outputs, no
/// attention loss and no teacher cache; the score is validation perplexity.
public struct DistillStage: Stage {
    public struct StudentInit: Decodable, Sendable {
        /// Nil only when validation was bypassed: `init` is any mapping to the
        /// decoder, and `check` requires `from`.
        public var from: String?
        public var layers: [Int]?
        public var hidden_size: Int?
        public var num_hidden_layers: Int?
        public var num_attention_heads: Int?
        public var intermediate_size: Int?
        /// Decoders only.
        public var num_key_value_heads: Int?
    }

    public struct Params: StageParameters {
        public static let teacher = Parameter("teacher", .artifact("model"), doc: "The teacher: a fine-tuned BERT classifier (`${finetuned.model}`) whose labels are the dataset's, or a decoder language model (`${pretrain.model}` of `train/causal-lm`, or an imported Llama/Mistral/Qwen2/GPT-2), which distils a decoder student on a `data/text` dataset.")
        public static let student = Parameter("student", .optional(.artifact("model")), doc: "The student model to train. Its vocabulary must be the teacher's; a BERT student without a classifier gets a fresh one, seeded; a decoder student must have the teacher's `tokenizer.json` (a pruned one keeps its zeros). Give either `student` or `init`.")
        public static let initialization = Parameter("init", .optional(.mapping(StudentInit.self)), doc: "Build the student instead of giving one: `{from: teacher, layers: [0, 2, 4]}` copies the teacher's embeddings, those encoder layers (0-based, increasing), pooler and classifier (a decoder: its embeddings, those blocks, final norm and head); `{from: config, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024}` is a random model of the teacher's family (seeded by the stage seed) with the teacher's vocabulary (and, for a decoder, positions and rotary settings), other sizes defaulting to the teacher's; a decoder also takes `num_key_value_heads` (default: the teacher's when it divides `num_attention_heads`, else `num_attention_heads`). Give either `student` or `init`.")
        public static let data = Parameter("data", .classificationOrTextDataset, doc: "The dataset: `${stage.dataset}` of `data/text-classification` for a BERT teacher (its labels must be the teacher's), of `data/text` for a decoder teacher (made with the teacher's tokenizer; training blocks of its `block_size`).")
        public static let keep_best = Parameter("keep_best", .bool, default: true, doc: "Output the student of the evaluation with the best accuracy (decoders: the lowest perplexity; ties: the lower loss) rather than the last one.")
        public static let early_stop_patience = Parameter("early_stop_patience", .optional(.int), doc: "Stop after this many evaluations without a better student.")
        public static let temperature = Parameter("temperature", .number, default: 2, doc: "Softmax temperature T of the KL loss (> 0); the loss is scaled by T².")
        public static let alpha = Parameter("alpha", .number, default: 0.5, doc: "Weight α of the distillation loss; the labels' cross-entropy gets 1 − α. In [0, 1].")
        public static let alpha_start = Parameter("alpha_start", .optional(.number), doc: "Schedule α linearly from this value at the first update to `alpha_end` at the last (instead of `alpha`).")
        public static let alpha_end = Parameter("alpha_end", .optional(.number), doc: "α at the last update, with `alpha_start`.")
        public static let loss = Parameter("loss", .enumeration(LogitLoss.allCases.map(\.rawValue)), default: "kl", doc: "`kl`: temperature-scaled KL divergence of the softened distributions; `mse`: mean squared error of the raw logits.")
        public static let hidden_loss_weight = Parameter("hidden_loss_weight", .number, default: 0, doc: "Weight of the hidden-state loss: Σ over `layer_map` of the MSE between the projected student layer output and the teacher's (real tokens only; for decoders the block outputs before the final norm, every position). 0 turns it off.")
        public static let attention_loss_weight = Parameter("attention_loss_weight", .number, default: 0, keyedOnlyWhenChanged: true, doc: "Weight of the attention-score loss (TinyBERT): Σ over `layer_map` of the squared difference between the student's and the teacher's pre-softmax attention scores q·kᵀ/√d_head, averaged over the heads and over the (query, key) pairs of real tokens (padding excluded as query and as key). Mapped layers must have the same number of heads, at least one. 0 turns it off. BERT only: an error with a decoder teacher.")
        public static let layer_map = Parameter("layer_map", .optional(.array(.array(.int))), doc: "`[student, teacher]` pairs of 0-based encoder layers (decoder blocks) for the hidden and attention losses. Default: evenly spaced, the last student layer on the last teacher layer (3 of 6: [[0, 1], [1, 3], [2, 5]]).")
        public static let hidden_projection = Parameter("hidden_projection", .enumeration(["learned", "none"]), default: "learned", doc: "`learned`: a linear map from the student's width to the teacher's (identity at first when equal, else random), trained with the student and dropped at the end; `none`: compare directly (equal widths only).")
        public static let cache_teacher = Parameter("cache_teacher", .bool, default: false, doc: "Compute the teacher's logits for the whole training split once (no dropout) and reuse them every epoch, instead of one teacher forward per update. Logits only: not with `hidden_loss_weight` or `attention_loss_weight`. BERT only: a decoder's logits (blocks × block_size × vocabulary) are too many to keep, so it is an error with a decoder teacher.")

        /// The shared training options, as this stage documents them.
        public static let training = TrainingOptions.Parameters()
            .documenting(\.weightDecay, "Decoupled AdamW weight decay (never on biases, LayerNorm weights or the projection).")
            .documenting(
                \.gradClip,
                "Clip gradients (student and projection together) to this global L2 norm; 0 turns clipping off.")
            .documenting(
                \.evalSplit,
                "The split to evaluate the student (and once the teacher) on (skipped when the dataset has no such split). With a decoder teacher, the `data/text` split whose perplexity is measured; `dev`, which a `data/text` dataset never has, reads as `valid`.")
            .documenting(
                \.maxSeqLen,
                "Tokens per example, [CLS] and [SEP] included; longer texts are cut. BERT only: a decoder trains on blocks of the dataset's `block_size`.")
            .documenting(\.batchSize, "Examples (decoders: token blocks) per update.")
            .documenting(
                \.batching,
                "`bucketed` groups examples of similar length; `random` draws batches uniformly. Both are shuffled by the stage seed each epoch. BERT only: a decoder's blocks are all one length, shuffled each epoch.")
            .documenting(\.logEvery, "Average and record the training losses over this many updates.")

        public static let parameters: [any ParameterDeclaration] = [
            teacher, student, initialization, data, training.epochs, training.steps, training.lr, training.batchSize,
            training.maxSeqLen, training.warmupRatio, training.weightDecay, training.gradClip, training.trainSplit,
            training.evalSplit, training.evalEvery, keep_best, early_stop_patience, training.batching, training.logEvery,
            temperature, alpha, alpha_start, alpha_end, loss, hidden_loss_weight, attention_loss_weight, layer_map,
            hidden_projection, cache_teacher, training.checkpointEvery,
        ]

        public var teacher: String
        public var student: String?
        public var initialization: StudentInit?
        public var data: String
        public var training: TrainingOptions
        public var keep_best: Bool
        public var early_stop_patience: Int?
        public var temperature: Double
        public var alpha: Double
        public var alpha_start: Double?
        public var alpha_end: Double?
        public var loss: String
        public var hidden_loss_weight: Double
        public var attention_loss_weight: Double
        public var layer_map: [[Int]]?
        public var hidden_projection: String
        public var cache_teacher: Bool

        public init(_ arguments: StageArguments) throws {
            teacher = try arguments[Self.teacher]
            student = try arguments[Self.student]
            initialization = try arguments[Self.initialization]
            data = try arguments[Self.data]
            training = try TrainingOptions(arguments, Self.training)
            keep_best = try arguments[Self.keep_best]
            early_stop_patience = try arguments[Self.early_stop_patience]
            temperature = try arguments[Self.temperature]
            alpha = try arguments[Self.alpha]
            alpha_start = try arguments[Self.alpha_start]
            alpha_end = try arguments[Self.alpha_end]
            loss = try arguments[Self.loss]
            hidden_loss_weight = try arguments[Self.hidden_loss_weight]
            attention_loss_weight = try arguments[Self.attention_loss_weight]
            layer_map = try arguments[Self.layer_map]
            hidden_projection = try arguments[Self.hidden_projection]
            cache_teacher = try arguments[Self.cache_teacher]
        }
    }

    static let initKeys = ["from", "layers"] + initConfigKeys
    /// The sizes `init: {from: config}` takes (`num_key_value_heads`: decoders only).
    static let initConfigKeys = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_key_value_heads"]

    public static let descriptor = StageTypeDescriptor(
        type: "distill/kd",
        version: 1,
        summary: "Distil a fine-tuned teacher classifier into a student (KL at a temperature or logit MSE, mixed with cross-entropy by α; optional hidden-state MSE through a learned projection and attention-score MSE on a layer map), or a decoder language model into a smaller decoder (token-level KL on the next-token logits on data/text blocks, optional hidden-state MSE; validation perplexity).",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The distilled student model artifact (the teacher's vocabulary and tokenizer)."),
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
        switch (with["student"], with["init"]) {
        case (nil, nil):
            problems.append(Diagnostic(
                "`distill/kd` needs `student` or `init`", at: with.location,
                hint: "for example `init: {from: teacher, layers: [0, 2, 4]}`"))
        case (.some(let node), .some):
            problems.append(Diagnostic("give either `student` or `init`, not both", at: node.location))
        case (nil, .some(let node)):
            problems += checkInit(node)
        case (.some, nil):
            break
        }
        problems += ParamChecks.positive(with, [Params.temperature])
        problems += ParamChecks.unitInterval(with, [Params.alpha, Params.alpha_start, Params.alpha_end])
        if let node = with["alpha"], with["alpha_start"] != nil || with["alpha_end"] != nil {
            problems.append(Diagnostic(
                "give either `alpha` or `alpha_start`/`alpha_end`, not both", at: node.location, hint: "remove `alpha` to schedule α"))
        }
        if (with["alpha_start"] == nil) != (with["alpha_end"] == nil), let node = with["alpha_start"] ?? with["alpha_end"] {
            problems.append(Diagnostic("`alpha_start` and `alpha_end` go together", at: node.location))
        }
        problems += ParamChecks.nonNegative(with, [Params.hidden_loss_weight, Params.attention_loss_weight])
        if let node = with["cache_teacher"], node.scalar == "true" {
            if let weight = with["hidden_loss_weight"], (ParamChecks.number(weight) ?? 1) > 0 {
                problems.append(Diagnostic(
                    "`cache_teacher` keeps only the teacher's logits, but the hidden loss needs its hidden states every step",
                    at: node.location, hint: "remove `cache_teacher`, or set `hidden_loss_weight: 0`"))
            }
            if let weight = with["attention_loss_weight"], (ParamChecks.number(weight) ?? 1) > 0 {
                problems.append(Diagnostic(
                    "`cache_teacher` keeps only the teacher's logits, but the attention loss needs its attention scores every step",
                    at: node.location, hint: "remove `cache_teacher`, or set `attention_loss_weight: 0`"))
            }
        }
        if let node = with["layer_map"], let pairs = node.items {
            var students: Set<Int> = []
            for pair in pairs {
                guard let items = pair.items, items.count == 2 else {
                    problems.append(Diagnostic("each `layer_map` entry is a `[student, teacher]` pair of layer numbers", at: pair.location))
                    continue
                }
                guard let student = items[0].scalar.flatMap(Int.init), let teacher = items[1].scalar.flatMap(Int.init) else { continue }
                if student < 0 || teacher < 0 {
                    problems.append(Diagnostic("layer numbers start at 0, got [\(student), \(teacher)]", at: pair.location))
                } else if !students.insert(student).inserted {
                    problems.append(Diagnostic("student layer \(student) appears twice in `layer_map`", at: pair.location))
                }
            }
            if pairs.isEmpty {
                problems.append(Diagnostic("`layer_map` is empty", at: node.location, hint: "remove it for the evenly spaced default"))
            }
        }
        return problems
    }

    static func checkInit(_ node: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        for entry in node.entries ?? [] {
            guard let key = entry.key.scalar, !initKeys.contains(key) else { continue }
            problems.append(Diagnostic(
                "unknown key `\(key)` in `init`", at: entry.key.location,
                hint: Suggestion.hint(for: key, in: initKeys) ?? "`init` takes \(initKeys.map { "`\($0)`" }.joined(separator: ", "))"))
        }
        guard let from = node["from"] else {
            problems.append(Diagnostic(
                "`init` needs `from: teacher` (with `layers`) or `from: config`", at: node.location,
                hint: "for example `init: {from: teacher, layers: [0, 2, 4]}`"))
            return problems
        }
        let configKeys = initConfigKeys
        switch from.scalar {
        case "teacher":
            for key in configKeys {
                if let value = node[key] {
                    problems.append(Diagnostic("`\(key)` is for `from: config`; `from: teacher` keeps the teacher's sizes", at: value.location))
                }
            }
            guard let layers = node["layers"] else {
                problems.append(Diagnostic(
                    "`init: {from: teacher}` needs `layers`, the teacher layers to keep", at: from.location,
                    hint: "for example `layers: [0, 2, 4]`"))
                return problems
            }
            guard let items = layers.items, !items.isEmpty else {
                problems.append(Diagnostic("`layers` must be a non-empty list of layer numbers, e.g. [0, 2, 4]", at: layers.location))
                return problems
            }
            var previous: Int?
            for item in items {
                guard let text = item.scalar, !text.contains("${") else { continue }
                guard let index = Int(text), index >= 0 else {
                    problems.append(Diagnostic("`layers` holds layer numbers from 0, got `\(text)`", at: item.location))
                    continue
                }
                if let previous, index == previous {
                    problems.append(Diagnostic("layer \(index) is listed twice in `layers`", at: item.location))
                } else if let previous, index < previous {
                    problems.append(Diagnostic("`layers` must be in increasing order: \(index) after \(previous)", at: item.location))
                }
                previous = index
            }
        case "config":
            if let layers = node["layers"] {
                problems.append(Diagnostic("`layers` is for `from: teacher`", at: layers.location, hint: "use `num_hidden_layers`"))
            }
            for key in configKeys {
                if let value = node[key], let text = value.scalar, !text.contains("${"), (Int(text) ?? 0) < 1 {
                    problems.append(Diagnostic("`\(key)` must be a positive integer, got `\(text)`", at: value.location))
                }
            }
        default:
            let text = from.scalar ?? from.kindDescription
            problems.append(Diagnostic(
                "`from` must be `teacher` or `config`, got `\(text)`", at: from.location,
                hint: Suggestion.hint(for: text, in: ["teacher", "config"])))
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        if try OneShotStages.isDecoder(params.teacher, parameter: "teacher") {
            return try distilDecoder(context, params, backend: backend)
        }
        if LanguageModelData.isTokenDataset(params.data) {
            throw StageFailure(
                "the teacher is a BERT classifier, which distils on a `data/text-classification` dataset, but `data` is a `data/text` token dataset (for decoder teachers)",
                parameter: "data")
        }
        if params.initialization?.num_key_value_heads != nil {
            throw StageFailure("`num_key_value_heads` is for decoder students; a BERT student has one key and value head per query head", parameter: "init")
        }
        if let directory = params.student, try OneShotStages.isDecoder(directory, parameter: "student") {
            throw StageFailure("the student is a decoder, but the teacher is a BERT classifier; a decoder student needs a decoder teacher", parameter: "student")
        }
        let data = try params.training.data(in: params.data)
        let dataset = data.dataset

        // Everything that can be wrong with the set-up is checked before training.
        let teacher = try LoadedClassifier(teacher: params.teacher, of: dataset, task: "distil")
        let student = try Self.makeStudent(params, teacher: teacher, labels: dataset.labels, seed: context.seed)
        let distillation = try Self.distillationOptions(params, seed: context.seed)
        if params.cache_teacher && distillation.usesHiddenLoss {
            throw StageFailure("`cache_teacher` keeps only the teacher's logits, but the hidden loss needs its hidden states every step")
        }
        if params.cache_teacher && distillation.usesAttentionLoss {
            throw StageFailure("`cache_teacher` keeps only the teacher's logits, but the attention loss needs its attention scores every step")
        }

        let maxLength = min(params.training.maxSeqLen, student.config.maxPositionEmbeddings)
        let encoded = data.encode(with: teacher, maxLength: maxLength, context: context)

        let length = params.training.length(examples: data.train.count)
        let options = length.options(params.training, seed: RandomStream.dropout.bits(of: context.seed))
        let trainer: DistillationTrainer
        do {
            trainer = try DistillationTrainer(
                student: student, teacher: teacher.model, options: options, distillation: distillation, backend: backend)
        } catch {
            throw StageFailure(error.message)
        }
        context.log.line("""
            distill/kd: \(data.train.count) \(params.training.trainSplit) examples, \(data.eval.count) \(params.training.evalSplit) examples, \
            labels \(dataset.labels); teacher \(teacher.model.config.numHiddenLayers) layers × \(teacher.model.config.hiddenSize) \
            (\(teacher.model.parameterCount) parameters), student \(student.config.numHiddenLayers) layers × \(student.config.hiddenSize) \
            (\(student.parameterCount) parameters); loss \(params.loss) T=\(params.temperature) α \(Self.describe(distillation.alpha)), \
            hidden loss weight \(params.hidden_loss_weight), attention loss weight \(params.attention_loss_weight)\
            \(trainer.layerMap.isEmpty ? "" : " on \(trainer.layerMap.map { [$0.student, $0.teacher] })"); \
            \(length.totalSteps) updates (\(length.stepsPerEpoch) per epoch), batch \(length.batchSize), max_seq_len \(maxLength), \
            lr \(params.training.lr), warmup \(options.warmupSteps), weight decay \(params.training.weightDecay), clip \(params.training.gradClip), \
            backend \(backend.id) with \(context.threads) threads
            """)

        let cachedLogits = params.cache_teacher
            ? try Self.teacherLogits(trainer, encoded.train, batchSize: length.batchSize, padID: teacher.padID, context: context) : nil
        var distilling = Distillation(trainer: trainer, cachedTeacherLogits: cachedLogits, curves: DistillationCurves(logitLoss: params.loss))
        let evaluation = params.training.evaluation(of: encoded, padID: teacher.padID, length: length, backend: backend)
        let run = TrainingRun(
            loop: params.training.loop(over: encoded, padID: teacher.padID, length: length, orderSeed: context.seed),
            evaluation: evaluation,
            evaluationLabel: "student \(params.training.evalSplit)", keepBest: params.keep_best, patience: params.early_stop_patience)
        let result = try run.run(&distilling, context)
        // The projection is not part of the student: only the student is saved.
        try LoadedClassifier.save(result.model, from: teacher.artifact, to: context.outputDirectory, source: "distill/kd")
        var metrics = result.metrics
        metrics["teacher_parameters"] = .int(teacher.model.parameterCount)
        metrics["student_layers"] = .int(result.model.config.numHiddenLayers)
        metrics["student_parameters"] = .int(result.model.parameterCount)
        if result.score != nil, let teacherScores = try evaluation.scores(of: teacher.model) {
            metrics["teacher_\(params.training.evalSplit)_accuracy"] = .double(teacherScores.accuracy)
            context.log.line("teacher \(params.training.evalSplit) " + String(format: "accuracy %.4f", teacherScores.accuracy))
        }
        return StageResult(metrics: metrics, outputs: ["model": "."])
    }

    /// Distillation of the teacher into the student, the teacher's logits
    /// computed per batch or read from `cachedTeacherLogits`.
    struct Distillation: TrainingAlgorithm {
        var trainer: DistillationTrainer
        /// `[N · classes]` by training example, with `cache_teacher`.
        var cachedTeacherLogits: [Float]?
        var curves: DistillationCurves

        var model: BertModel { trainer.student }

        var metrics: [String: Value] { curves.metrics }

        mutating func update(_ batch: ClassificationBatch) throws -> DistillationStep {
            let teacherLogits = cachedTeacherLogits.map { rows($0, batch.tokens.indices, classes: trainer.teacher.config.labels.count) }
            return try trainer.step(batch: batch.bert, labels: batch.labels, teacherLogits: teacherLogits)
        }

        func loss(of update: DistillationStep) -> Double { Double(update.loss) }

        func progress(of update: DistillationStep) -> String { curves.progress(of: update) }

        mutating func record(_ update: DistillationStep, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            curves.record(update, step: step, of: totalSteps, closesWindow: closesWindow, log: log)
        }

        func saveState(into state: inout TrainingState) {
            trainer.saveState(into: &state)
            curves.saveState(into: &state)
        }

        mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
            var restored = self
            try restored.trainer.restoreState(from: state)
            try restored.curves.restoreState(from: state)
            self = restored
        }

        /// The rows of `logits` (`classes` per example) of the examples at `indices`.
        private func rows(_ logits: [Float], _ indices: [Int], classes: Int) -> Tensor {
            var values: [Float] = []
            values.reserveCapacity(indices.count * classes)
            for index in indices { values += logits[(index * classes)..<((index + 1) * classes)] }
            return Tensor(shape: [indices.count, classes], floats: values)
        }
    }

    /// What every distillation run records: the `log_every` means as
    /// `loss_curve` rows `[step, loss]` and `loss_parts_curve` rows `[step,
    /// logit loss, ce, hidden or null, attention or null]`, their log lines
    /// and the progress line of an update.
    struct DistillationCurves {
        /// `kl` or `mse`, as the log names the logit loss.
        var logitLoss: String
        var lossCurve: [Value] = []
        var partsCurve: [Value] = []
        var window = LossWindow()

        init(logitLoss: String) { self.logitLoss = logitLoss }

        var metrics: [String: Value] {
            [
                "train_loss": lossCurve.valueInLastRow(column: 1),
                "train_distillation_loss": partsCurve.valueInLastRow(column: 1),
                "train_ce_loss": partsCurve.valueInLastRow(column: 2),
                "train_hidden_loss": partsCurve.valueInLastRow(column: 3),
                "train_attention_loss": partsCurve.valueInLastRow(column: 4),
                "loss_curve": .array(lossCurve),
                "loss_parts_curve": .array(partsCurve),
            ]
        }

        func progress(of update: DistillationStep) -> String {
            let hidden: String = update.hiddenLoss.map { String(format: " hidden %.4f", $0) } ?? ""
            let attention: String = update.attentionLoss.map { String(format: " attention %.4f", $0) } ?? ""
            return String(format: "loss %.4f (", update.loss) + logitLoss
                + String(format: " %.4f ce %.4f", update.distillationLoss, update.taskLoss) + hidden + attention + ")"
        }

        mutating func record(_ update: DistillationStep, step: Int, of totalSteps: Int, closesWindow: Bool, log: StageLog) {
            window.add(update)
            guard closesWindow else { return }
            let mean = window.mean
            lossCurve.append(.array([.int(step), .double(mean.total)]))
            partsCurve.append(.array([
                .int(step), .double(mean.distillation), .double(mean.task), mean.hidden.map(Value.double) ?? .null,
                mean.attention.map(Value.double) ?? .null,
            ]))
            log.line(
                String(format: "step %d/%d: loss %.4f (", step, totalSteps, mean.total) + logitLoss
                    + String(format: " %.4f, ce %.4f", mean.distillation, mean.task)
                    + (mean.hidden.map { String(format: ", hidden %.4f", $0) } ?? "")
                    + (mean.attention.map { String(format: ", attention %.4f", $0) } ?? "")
                    + String(format: ") α %.3f lr %.3g", update.alpha, update.learningRate))
            window = LossWindow()
        }

        func saveState(into state: inout TrainingState) {
            state.values["loss_curve"] = .array(lossCurve)
            state.values["loss_parts_curve"] = .array(partsCurve)
            window.saveState(into: &state)
        }

        mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
            let (loss, parts, window) = (try state.array("loss_curve"), try state.array("loss_parts_curve"), try LossWindow(state))
            (lossCurve, partsCurve, self.window) = (loss, parts, window)
        }
    }

    // MARK: Set-up

    /// Whether the artifact's checkpoint has a trained classifier.
    static func hasClassifier(_ artifact: ModelArtifact) throws(StageFailure) -> Bool {
        try StageFailure.wrapping("cannot load the model: ") { () throws(ModelFileError) in
            let file = try artifact.weights()
            if file.entries["classifier.weight"] != nil { return true }
            return try file.sparseMasks()["classifier.weight"] != nil
        }
    }

    /// The student: the given artifact, or built from the teacher's layers or a config.
    static func makeStudent(_ params: Params, teacher: LoadedClassifier, labels: [String], seed: UInt64) throws(StageFailure) -> BertModel {
        let headSeed = RandomStream.classifier.bits(of: seed)
        if let directory = params.student {
            let artifact = try StageFailure.wrapping("cannot load the student: ") { () throws(ModelFileError) in
                try ModelArtifact(directory: directory)
            }
            guard artifact.manifest.files[ModelArtifact.vocabularyFileName] == teacher.artifact.manifest.files[ModelArtifact.vocabularyFileName] else {
                throw StageFailure("the student's vocab.txt differs from the teacher's; a student must use the teacher's tokenizer")
            }
            let withHead = try hasClassifier(artifact)
            let student = try LoadedClassifier(directory: directory, labels: withHead ? nil : labels, seed: headSeed)
            if withHead, student.model.config.labels != labels {
                throw StageFailure("""
                    the student's labels \(student.model.config.labels) differ from the dataset's \(labels); \
                    give a student without a classifier head, or one trained on this dataset
                    """)
            }
            return student.model
        }
        guard let initialization = params.initialization else {
            throw StageFailure("`distill/kd` needs `student` or `init`")
        }
        switch initialization.from {
        case "teacher"?:
            do {
                return try teacher.model.selectingLayers(initialization.layers ?? [])
            } catch {
                throw StageFailure("`init`: \(error.message)")
            }
        case "config"?:
            var config = teacher.model.config
            config.hiddenSize = initialization.hidden_size ?? config.hiddenSize
            config.numHiddenLayers = initialization.num_hidden_layers ?? config.numHiddenLayers
            config.numAttentionHeads = initialization.num_attention_heads ?? config.numAttentionHeads
            config.intermediateSize = initialization.intermediate_size ?? config.intermediateSize
            config.pooling = teacher.model.pooling
            return try StageFailure.wrapping("`init: {from: config}`: ") { () throws(ModelFileError) in
                try BertModel(randomWithConfig: config, hasPooler: teacher.model.weights.pooler != nil, seed: RandomStream.studentInit.bits(of: seed))
            }
        default:
            throw StageFailure("`init`: `from` must be `teacher` or `config`, got \(initialization.from.map { "`\($0)`" } ?? "nothing")")
        }
    }

    static func distillationOptions(_ params: Params, seed: UInt64) throws(StageFailure) -> DistillationOptions {
        let alpha: AlphaSchedule
        switch (params.alpha_start, params.alpha_end) {
        case (let start?, let end?): alpha = .linear(start: Float(start), end: Float(end))
        case (nil, nil): alpha = .constant(Float(params.alpha))
        default: throw StageFailure("`alpha_start` and `alpha_end` go together")
        }
        guard let loss = LogitLoss(rawValue: params.loss) else {
            throw StageFailure("`loss` must be `kl` or `mse`, got `\(params.loss)`")
        }
        var layerMap: [LayerPair]?
        if let pairs = params.layer_map {
            layerMap = try pairs.map { (pair) throws(StageFailure) -> LayerPair in
                guard pair.count == 2 else { throw StageFailure("each `layer_map` entry is a `[student, teacher]` pair, got \(pair)") }
                return LayerPair(student: pair[0], teacher: pair[1])
            }
        }
        return DistillationOptions(
            temperature: Float(params.temperature), alpha: alpha, logitLoss: loss, hiddenLossWeight: Float(params.hidden_loss_weight),
            attentionLossWeight: Float(params.attention_loss_weight), layerMap: layerMap, learnProjection: params.hidden_projection != "none",
            projectionSeed: RandomStream.projection.bits(of: seed))
    }

    /// The teacher's logits for every training example, `[N · classes]` by example index.
    static func teacherLogits(
        _ trainer: DistillationTrainer, _ sequences: TokenSequences, batchSize: Int, padID: Int32, context: StageContext
    ) throws -> [Float] {
        let classes = trainer.teacher.config.labels.count
        var logits = [Float](repeating: 0, count: sequences.count * classes)
        var done = 0
        for batch in LengthBucketing.batches(sequences, batchSize: batchSize, padID: padID, shuffle: false, seed: 0) {
            try Task.checkCancellation()
            let values = try trainer.teacherLogits(BertBatch(inputIDs: batch.ids, attentionMask: batch.attentionMask)).floats
            for (row, index) in batch.indices.enumerated() {
                for c in 0..<classes { logits[index * classes + c] = values[row * classes + c] }
            }
            done += batch.size
            context.progress.report(StageProgress(message: "caching teacher logits \(done)/\(sequences.count)"))
        }
        context.log.line("cached the teacher's logits for \(sequences.count) examples")
        return logits
    }

    static func describe(_ alpha: AlphaSchedule) -> String {
        switch alpha {
        case .constant(let value): "\(value)"
        case .linear(let start, let end): "\(start)→\(end)"
        }
    }

    /// Means of the loss parts over the last `log_every` updates.
    struct LossWindow {
        var steps = 0
        var total = 0.0
        var distillation = 0.0
        var task = 0.0
        var hidden: Double?
        var attention: Double?

        mutating func add(_ step: DistillationStep) {
            steps += 1
            total += Double(step.loss)
            distillation += Double(step.distillationLoss)
            task += Double(step.taskLoss)
            if let value = step.hiddenLoss { hidden = (hidden ?? 0) + Double(value) }
            if let value = step.attentionLoss { attention = (attention ?? 0) + Double(value) }
        }

        var mean: (total: Double, distillation: Double, task: Double, hidden: Double?, attention: Double?) {
            let n = Double(max(steps, 1))
            return (total / n, distillation / n, task / n, hidden.map { $0 / n }, attention.map { $0 / n })
        }

        init() {}

        func saveState(into state: inout TrainingState) {
            state.values["window.steps"] = .int(steps)
            state.set("window.sums", doubles: [total, distillation, task])
            state.values["window.hidden"] = hidden.map(Value.double) ?? .null
            state.values["window.attention"] = attention.map(Value.double) ?? .null
        }

        init(_ state: TrainingState) throws(TrainingStateError) {
            steps = try state.int("window.steps")
            let sums = try state.doubles("window.sums")
            guard sums.count == 3 else { throw TrainingStateError("`window.sums` must hold 3 sums") }
            (total, distillation, task) = (sums[0], sums[1], sums[2])
            hidden = try state.value("window.hidden") == .null ? nil : try state.double("window.hidden")
            attention = try state.value("window.attention") == .null ? nil : try state.double("window.attention")
        }
    }
}
