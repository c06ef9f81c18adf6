import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// `distill/kd` with a decoder teacher: a decoder student learns the
/// teacher's next-token distributions on the blocks of a `data/text`
/// dataset (`DecoderDistillation`), with `train/causal-lm`'s blocks, loop
/// and validation perplexity (lower is better) for keep-best and early stop.
extension DistillStage {
    func distilDecoder(_ context: StageContext, _ params: Params, backend: any Backend) throws -> StageResult {
        // Everything that can be wrong with the set-up is checked before training.
        if params.cache_teacher {
            throw StageFailure(
                "`cache_teacher` is for BERT teachers: a decoder teacher's logits are one vocabulary-sized row per token of the training split, too many to keep; remove `cache_teacher` (the teacher runs once per update)",
                parameter: "cache_teacher")
        }
        if params.attention_loss_weight > 0 {
            throw StageFailure(
                "the attention-score loss is for BERT students; a decoder is distilled on its logits and, with `hidden_loss_weight`, its block outputs: set `attention_loss_weight: 0`",
                parameter: "attention_loss_weight")
        }
        guard LanguageModelData.isTokenDataset(params.data) else {
            throw StageFailure(
                "the teacher is a decoder, which distils on a `data/text` token dataset (`${stage.dataset}` of `data/text`), but `data` is not one",
                parameter: "data")
        }
        let teacher = try LoadedDecoder.model(params.teacher, parameter: "teacher")
        let dataset = try LanguageModelData.dataset(params.data)
        try LanguageModelData.checkTokenizer(
            (params.teacher as NSString).appendingPathComponent(ModelArtifact.tokenizerFileName), dataset: dataset, parameter: "data")
        let student = try Self.decoderStudent(params, teacher: teacher, seed: context.seed)
        // A `data/text` dataset has no `dev` split: the shared default means its validation split.
        let evalSplit = params.training.evalSplit == "dev" ? "valid" : params.training.evalSplit
        let data = try LanguageModelData(dataset, model: teacher.config, trainSplit: params.training.trainSplit, evalSplit: evalSplit)
        guard data.blockSize <= student.config.maximumSequenceLength else {
            throw StageFailure(
                "the dataset's block_size \(data.blockSize) is longer than the student's context of \(student.config.maximumSequenceLength) tokens",
                parameter: params.student == nil ? "init" : "student")
        }
        let distillation = try Self.distillationOptions(params, seed: context.seed)

        let length = params.training.length(examples: data.blockCount)
        let options = length.options(params.training, seed: RandomStream.dropout.bits(of: context.seed))
        let trainer: DecoderDistillationTrainer
        do {
            trainer = try DecoderDistillationTrainer(
                student: student, teacher: teacher, options: options, distillation: distillation, backend: backend)
        } catch {
            throw StageFailure(error.message)
        }
        context.log.line("""
            distill/kd: \(data.blockCount) blocks of \(data.blockSize) tokens (\(params.training.trainSplit)); \
            teacher \(teacher.config.family.rawValue) \(teacher.config.numHiddenLayers) layers × \(teacher.config.hiddenSize) \
            (\(teacher.parameterCount) parameters), student \(student.config.numHiddenLayers) layers × \(student.config.hiddenSize) \
            (\(student.parameterCount) parameters\(student.masks.isEmpty ? "" : ", \(student.masks.count) masked weights kept sparse")); \
            loss \(params.loss) T=\(params.temperature) α \(Self.describe(distillation.alpha)), hidden loss weight \(params.hidden_loss_weight)\
            \(trainer.layerMap.isEmpty ? "" : " on \(trainer.layerMap.map { [$0.student, $0.teacher] })"); \
            \(length.totalSteps) updates (\(length.stepsPerEpoch) per epoch), batch \(length.batchSize), \
            lr \(params.training.lr), warmup \(options.warmupSteps), weight decay \(params.training.weightDecay), clip \(params.training.gradClip), \
            backend \(backend.id) with \(context.threads) threads
            """)

        var distilling = DecoderDistilling(trainer: trainer, curves: DistillationCurves(logitLoss: params.loss))
        let evaluation = data.evaluation(split: evalSplit, batchSize: length.batchSize, maxWindows: nil, backend: backend)
        let run = TrainingRun(
            loop: data.loop(
                length: length, orderSeed: context.seed, logEvery: params.training.logEvery, evalEvery: params.training.evalEvery,
                checkpointEvery: params.training.checkpointEvery),
            evaluation: evaluation, evaluationLabel: "student \(evalSplit)", keepBest: params.keep_best, patience: params.early_stop_patience)
        let result = try run.run(&distilling, context)
        // The projection is not part of the student: only the student is saved, with the teacher's tokenizer.
        try LoadedDecoder.save(result.model, tokenizerFrom: params.teacher, to: context.outputDirectory, source: "distill/kd")
        var metrics = result.metrics
        metrics["teacher_parameters"] = .int(teacher.parameterCount)
        metrics["student_layers"] = .int(result.model.config.numHiddenLayers)
        metrics["student_parameters"] = .int(result.model.parameterCount)
        if result.score != nil, let teacherScore = try evaluation.score(of: teacher) {
            for metric in teacherScore.metrics {
                metrics["teacher_\(evalSplit)_\(metric.name)"] = .double(metric.value)
            }
            context.log.line("teacher \(evalSplit) " + teacherScore.logText)
        }
        return StageResult(metrics: metrics, outputs: ["model": "."])
    }

    /// A decoder student learning from the teacher token by token, with the
    /// curves and log lines of every distillation run.
    struct DecoderDistilling: TrainingAlgorithm {
        var trainer: DecoderDistillationTrainer
        var curves: DistillationCurves

        var model: DecoderModel { trainer.student }

        var metrics: [String: Value] { curves.metrics }

        mutating func update(_ batch: Tensor) throws -> DistillationStep {
            try trainer.step(ids: batch)
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
    }

    /// The decoder student: the given artifact (the teacher's vocabulary and
    /// tokenizer), or built from the teacher's blocks or a config.
    static func decoderStudent(_ params: Params, teacher: DecoderModel, seed: UInt64) throws(StageFailure) -> DecoderModel {
        if let directory = params.student {
            let student = try LoadedDecoder.model(directory, parameter: "student")
            guard student.config.vocabSize == teacher.config.vocabSize else {
                throw StageFailure(
                    "the student's vocabulary has \(student.config.vocabSize) tokens, the teacher's \(teacher.config.vocabSize); the logits are compared token for token, so a student must have the teacher's vocabulary",
                    parameter: "student")
            }
            let studentTokenizer = try StageFailure.wrapping("cannot load the student: ", parameter: "student") { () throws(ModelFileError) in
                try ModelArtifact(directory: directory).manifest.files[ModelArtifact.tokenizerFileName]
            }
            let teacherTokenizer = try StageFailure.wrapping("cannot load the teacher: ", parameter: "teacher") { () throws(ModelFileError) in
                try ModelArtifact(directory: params.teacher).manifest.files[ModelArtifact.tokenizerFileName]
            }
            guard studentTokenizer == teacherTokenizer else {
                throw StageFailure("the student's tokenizer.json differs from the teacher's; a student must use the teacher's tokenizer", parameter: "student")
            }
            return student
        }
        guard let initialization = params.initialization else {
            throw StageFailure("`distill/kd` needs `student` or `init`")
        }
        switch initialization.from {
        case "teacher"?:
            do {
                return try teacher.selectingLayers(initialization.layers ?? [])
            } catch {
                throw StageFailure("`init`: \(error.message)", parameter: "init")
            }
        case "config"?:
            let config = try studentConfig(initialization, teacher: teacher.config)
            return try StageFailure.wrapping("`init: {from: config}`: ", parameter: "init") { () throws(ModelFileError) in
                try DecoderModel(randomWithConfig: config, seed: RandomStream.studentInit.bits(of: seed))
            }
        default:
            throw StageFailure(
                "`init`: `from` must be `teacher` or `config`, got \(initialization.from.map { "`\($0)`" } ?? "nothing")", parameter: "init")
        }
    }

    /// The teacher's config with the sizes `init: {from: config}` gives: the
    /// family, vocabulary, positions, rotary settings, norms and dropout stay
    /// the teacher's. The head dimension is `hidden_size / num_attention_heads`
    /// when either is given (else the teacher's).
    static func studentConfig(_ initialization: StudentInit, teacher: DecoderConfig) throws(StageFailure) -> DecoderConfig {
        var config = teacher
        config.hiddenSize = initialization.hidden_size ?? teacher.hiddenSize
        config.numHiddenLayers = initialization.num_hidden_layers ?? teacher.numHiddenLayers
        config.numAttentionHeads = initialization.num_attention_heads ?? teacher.numAttentionHeads
        config.intermediateSize = initialization.intermediate_size ?? teacher.intermediateSize
        if initialization.hidden_size != nil || initialization.num_attention_heads != nil {
            guard config.numAttentionHeads > 0, config.hiddenSize % config.numAttentionHeads == 0 else {
                throw StageFailure(
                    "`init: {from: config}`: hidden_size \(config.hiddenSize) is not divisible by num_attention_heads \(config.numAttentionHeads)",
                    parameter: "init")
            }
            config.headDimension = config.hiddenSize / config.numAttentionHeads
        }
        if config.family == .gpt2 {
            guard initialization.num_key_value_heads ?? config.numAttentionHeads == config.numAttentionHeads else {
                throw StageFailure(
                    "`init: {from: config}`: GPT-2 has no grouped-query attention; remove `num_key_value_heads`", parameter: "init")
            }
            config.numKeyValueHeads = config.numAttentionHeads
        } else if let keyValueHeads = initialization.num_key_value_heads {
            config.numKeyValueHeads = keyValueHeads
        } else {
            let teacherHeads = teacher.numKeyValueHeads
            config.numKeyValueHeads = teacherHeads > 0 && config.numAttentionHeads % teacherHeads == 0 ? teacherHeads : config.numAttentionHeads
        }
        return config
    }
}
