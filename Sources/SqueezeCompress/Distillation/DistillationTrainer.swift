import SqueezeModels
import SqueezeTensor

/// What is distilled and how strongly.
public struct DistillationOptions: Sendable, Hashable {
    /// Softmax temperature of the KL loss (> 0).
    public var temperature: Float
    /// Weight of the logit loss against the task cross-entropy, in [0, 1].
    public var alpha: AlphaSchedule
    public var logitLoss: LogitLoss
    /// Weight of the summed hidden-state MSEs; 0 turns layer distillation off.
    public var hiddenLossWeight: Float
    /// Weight of the summed attention-score MSEs (TinyBERT,
    /// `DistillationLosses.attentionScoreMSE`); 0 turns them off. Each mapped
    /// pair of layers must have the same number of heads (at least one).
    public var attentionLossWeight: Float
    /// Student ↔ teacher layers for the hidden and attention losses; nil:
    /// `LayerPair.evenlySpaced`.
    public var layerMap: [LayerPair]?
    /// Learn a projection from the student's width to the teacher's for the
    /// hidden loss (identity at first when the widths are equal). When false
    /// the widths must be equal and the states are compared directly.
    public var learnProjection: Bool
    /// Seeds the projection when the widths differ (normal, σ = the student's initializer range).
    public var projectionSeed: UInt64

    public init(
        temperature: Float = 2, alpha: AlphaSchedule = .constant(0.5), logitLoss: LogitLoss = .kl,
        hiddenLossWeight: Float = 0, attentionLossWeight: Float = 0, layerMap: [LayerPair]? = nil, learnProjection: Bool = true,
        projectionSeed: UInt64 = 0
    ) {
        self.temperature = temperature
        self.alpha = alpha
        self.logitLoss = logitLoss
        self.hiddenLossWeight = hiddenLossWeight
        self.attentionLossWeight = attentionLossWeight
        self.layerMap = layerMap
        self.learnProjection = learnProjection
        self.projectionSeed = projectionSeed
    }

    public var usesHiddenLoss: Bool { hiddenLossWeight > 0 }
    public var usesAttentionLoss: Bool { attentionLossWeight > 0 }

    /// Checks the options against the two models and returns the layer map
    /// in use (empty without the hidden and attention losses).
    public func validate(student: BertModel, teacher: BertModel) throws(DistillationError) -> [LayerPair] {
        try validateSettings()
        guard student.config.labels == teacher.config.labels else {
            throw DistillationError(
                "the student's labels \(student.config.labels) differ from the teacher's \(teacher.config.labels)")
        }
        try Self.checkVocabularies(student: student.config.vocabSize, teacher: teacher.config.vocabSize)
        guard usesHiddenLoss || usesAttentionLoss else { return [] }
        let map = try resolvedLayerMap(studentLayers: student.weights.layers.count, teacherLayers: teacher.weights.layers.count)
        if usesAttentionLoss {
            try Self.checkHeads(map, student: student, teacher: teacher)
        }
        try checkWidths(student: student.config.hiddenSize, teacher: teacher.config.hiddenSize)
        return map
    }

    /// Checks the options against two decoders and returns the layer map of
    /// the hidden loss (empty when it is off). The attention-score loss is
    /// refused: it is TinyBERT's, for BERT students.
    public func validate(student: DecoderModel, teacher: DecoderModel) throws(DistillationError) -> [LayerPair] {
        try validateSettings()
        guard !usesAttentionLoss else {
            throw DistillationError(
                "`attention_loss_weight`: the attention-score loss is for BERT students; a decoder is distilled on its logits and, with `hidden_loss_weight`, its hidden states")
        }
        try Self.checkVocabularies(student: student.config.vocabSize, teacher: teacher.config.vocabSize)
        guard usesHiddenLoss else { return [] }
        let map = try resolvedLayerMap(studentLayers: student.weights.layers.count, teacherLayers: teacher.weights.layers.count)
        try checkWidths(student: student.config.hiddenSize, teacher: teacher.config.hiddenSize)
        return map
    }

    /// The temperature, α and loss weights in range.
    func validateSettings() throws(DistillationError) {
        guard temperature > 0, temperature.isFinite else {
            throw DistillationError("`temperature` must be a positive number, got \(temperature)")
        }
        for value in alpha.bounds where !(value >= 0 && value <= 1) {
            throw DistillationError("α must be between 0 and 1, got \(value)")
        }
        guard hiddenLossWeight >= 0, hiddenLossWeight.isFinite else {
            throw DistillationError("`hidden_loss_weight` must not be negative, got \(hiddenLossWeight)")
        }
        guard attentionLossWeight >= 0, attentionLossWeight.isFinite else {
            throw DistillationError("`attention_loss_weight` must not be negative, got \(attentionLossWeight)")
        }
    }

    /// The logits are compared token for token: the vocabularies must be one.
    static func checkVocabularies(student: Int, teacher: Int) throws(DistillationError) {
        guard student == teacher else {
            throw DistillationError(
                "the student's vocabulary has \(student) tokens, the teacher's \(teacher): they must share a tokenizer")
        }
    }

    /// `layerMap` (or the evenly spaced default) checked against the layer counts.
    func resolvedLayerMap(studentLayers: Int, teacherLayers: Int) throws(DistillationError) -> [LayerPair] {
        let map = layerMap ?? LayerPair.evenlySpaced(studentLayers: studentLayers, teacherLayers: teacherLayers)
        guard !map.isEmpty else { throw DistillationError("the layer map is empty; give at least one [student, teacher] pair") }
        var seen = Set<Int>()
        for pair in map {
            guard pair.student >= 0, pair.student < studentLayers else {
                throw DistillationError("layer map pair [\(pair.student), \(pair.teacher)]: the student has \(studentLayers) layers (0…\(studentLayers - 1))")
            }
            guard pair.teacher >= 0, pair.teacher < teacherLayers else {
                throw DistillationError("layer map pair [\(pair.student), \(pair.teacher)]: the teacher has \(teacherLayers) layers (0…\(teacherLayers - 1))")
            }
            guard seen.insert(pair.student).inserted else {
                throw DistillationError("student layer \(pair.student) appears twice in the layer map")
            }
        }
        return map
    }

    /// Without a learned projection the hidden states are compared directly: equal widths only.
    func checkWidths(student studentWidth: Int, teacher teacherWidth: Int) throws(DistillationError) {
        if usesHiddenLoss, !learnProjection, studentWidth != teacherWidth {
            throw DistillationError(
                "the student's hidden size \(studentWidth) differs from the teacher's \(teacherWidth); hidden states can only be compared through a learned projection")
        }
    }

    /// The hidden-loss projection `[teacher width, student width]` before
    /// training: nil when the loss is off or compares the states directly,
    /// the identity when the widths are equal, else normal with σ =
    /// `standardDeviation` drawn from `projectionSeed`.
    func initialProjection(studentWidth: Int, teacherWidth: Int, standardDeviation: Float) -> Tensor? {
        guard usesHiddenLoss && learnProjection else { return nil }
        if studentWidth == teacherWidth {
            var identity = [Float](repeating: 0, count: studentWidth * studentWidth)
            for i in 0..<studentWidth { identity[i * studentWidth + i] = 1 }
            return Tensor(shape: [teacherWidth, studentWidth], floats: identity)
        }
        var generator = SeededGenerator(seed: projectionSeed)
        return Tensor.normal(shape: [teacherWidth, studentWidth], standardDeviation: standardDeviation, generator: &generator)
    }

    /// Attention scores are compared head for head: every mapped pair needs
    /// the same number of heads, at least one (pruning can remove them all).
    static func checkHeads(_ map: [LayerPair], student: BertModel, teacher: BertModel) throws(DistillationError) {
        let remedy = "pair it with another layer in `layer_map`, or set `attention_loss_weight: 0`"
        for pair in map {
            let studentHeads = student.layerShapes[pair.student].heads
            let teacherHeads = teacher.layerShapes[pair.teacher].heads
            if studentHeads == 0 || teacherHeads == 0 {
                let (who, layer) = studentHeads == 0 ? ("student", pair.student) : ("teacher", pair.teacher)
                throw DistillationError("""
                    `attention_loss_weight`: \(who) layer \(layer) (layer map pair [\(pair.student), \(pair.teacher)]) has no \
                    attention heads left, so it has no attention scores to compare; \(remedy)
                    """)
            }
            guard studentHeads == teacherHeads else {
                throw DistillationError("""
                    `attention_loss_weight`: student layer \(pair.student) has \(studentHeads) attention heads but teacher layer \
                    \(pair.teacher), its pair in the layer map, has \(teacherHeads); attention scores are compared head for head, \
                    so \(remedy)
                    """)
            }
        }
    }
}

/// What one distillation update did.
public struct DistillationStep: Sendable, Hashable {
    /// The optimised total.
    public var loss: Float
    /// The logit loss (KL or MSE), before weighting.
    public var distillationLoss: Float
    /// Cross-entropy against the labels, before weighting.
    public var taskLoss: Float
    /// The summed hidden-state MSEs, before weighting (nil when off).
    public var hiddenLoss: Float?
    /// The summed attention-score MSEs, before weighting (nil when off).
    public var attentionLoss: Float?
    public var alpha: Float
    /// Global gradient norm before clipping (nil when clipping is off).
    public var gradientNorm: Float?
    public var learningRate: Float
}

/// Knowledge distillation of a teacher into a student classifier:
/// `α·logit loss + (1 − α)·CE (+ w_h · Σ hidden MSE + w_a · Σ attention MSE)`, with the update
/// of every trainer (`ParameterUpdater`: clipping, AdamW, the learning-rate schedule). The
/// teacher runs without a tape (no dropout) once per step unless its logits
/// are given; a hidden-loss projection is trained with the student and is
/// not part of it. Every step is a pure function of the models, the batch,
/// the options and the step number.
public struct DistillationTrainer: Sendable {
    public private(set) var student: BertModel
    public let teacher: BertModel
    public let distillation: DistillationOptions
    /// The pairs of the hidden and attention losses (empty when both are off).
    public let layerMap: [LayerPair]
    /// `[teacher hidden, student hidden]`, updated with the student; nil when
    /// the hidden loss is off or compares the states directly.
    public private(set) var projection: Tensor?
    /// Updates the student's parameters, then the projection's (without weight decay).
    public private(set) var updater: ParameterUpdater

    public init(
        student: BertModel, teacher: BertModel, options: TrainingHyperparameters, distillation: DistillationOptions, backend: any Backend
    ) throws(DistillationError) {
        layerMap = try distillation.validate(student: student, teacher: teacher)
        self.student = student
        self.teacher = teacher
        self.distillation = distillation
        projection = distillation.initialProjection(
            studentWidth: student.config.hiddenSize, teacherWidth: teacher.config.hiddenSize,
            standardDeviation: Float(student.config.initializerRange))
        // The projection is not decayed: it only serves the auxiliary loss.
        updater = ParameterUpdater(
            for: student, auxiliaryParameters: projection == nil ? 0 : 1, hyperparameters: options, backend: backend)
    }

    public var options: TrainingHyperparameters { updater.hyperparameters }
    public var backend: any Backend { updater.backend }
    public var optimizer: AdamW { updater.optimizer }
    public var completedSteps: Int { updater.completedSteps }
    public var schedule: LinearWarmupSchedule { updater.schedule }

    /// The teacher's logits `[B, labels]` for `batch`, without dropout.
    public func teacherLogits(_ batch: BertBatch) throws(BertInputError) -> Tensor {
        try teacher.logits(batch, backend: backend)
    }

    /// One forward (teacher and student), backward and update. `teacherLogits`
    /// (e.g. cached for the data set) replaces the teacher's logit forward.
    public mutating func step(batch: BertBatch, labels: Tensor, teacherLogits: Tensor? = nil) throws(BertInputError) -> DistillationStep {
        try student.check(batch)
        try student.check(labels: labels, batchSize: batch.inputIDs.shape[0])
        try teacher.check(batch)
        let classes = student.config.labels.count
        if let teacherLogits, teacherLogits.shape != [batch.inputIDs.shape[0], classes] {
            throw BertInputError("teacher logits must be [\(batch.inputIDs.shape[0]), \(classes)], got \(teacherLogits.shape)")
        }
        let alpha = distillation.alpha.alpha(atStep: completedSteps, of: options.totalSteps)
        let (parts, gradients) = computeGradients(
            batch: batch, labels: labels, teacherLogits: teacherLogits, alpha: alpha, dropoutSeed: updater.dropoutSeed)
        // Moved out so the projection is uniquely referenced while AdamW writes it.
        var auxiliary = projection.map { [$0] } ?? []
        projection = nil
        let update = updater.apply(gradients, to: &student, auxiliary: &auxiliary)
        projection = auxiliary.first
        return DistillationStep(
            loss: parts.total, distillationLoss: parts.distillation, taskLoss: parts.task, hiddenLoss: parts.hidden,
            attentionLoss: parts.attention, alpha: alpha, gradientNorm: update.gradientNorm, learningRate: update.learningRate)
    }

    private struct LossParts {
        var total: Float
        var distillation: Float
        var task: Float
        var hidden: Float?
        var attention: Float?
    }

    /// The losses and the gradients (student parameters in `weights.elements`
    /// order, then the projection) on a tape that is gone when this returns.
    private func computeGradients(
        batch: BertBatch, labels: Tensor, teacherLogits cached: Tensor?, alpha: Float, dropoutSeed: UInt64
    ) -> (LossParts, [Tensor?]) {
        let eager = Eager(backend: backend)
        let hidden = distillation.usesHiddenLoss
        let attention = distillation.usesAttentionLoss
        let layered = hidden || attention
        // Scores only for the mapped layers: the others keep the fused attention alone.
        let teacherEncoded = layered
            ? BertModel.encodeLayers(
                eager, teacher.weights, config: teacher.config, batch: batch,
                attentionScoresOf: attention ? Set(layerMap.map(\.teacher)) : [])
            : nil
        let teacherLayers = teacherEncoded?.outputs ?? []
        let teacherLogits = cached
            ?? teacherLayers.last.map { BertModel.classify(eager, $0, weights: teacher.weights, config: teacher.config, pooling: teacher.pooling, batch: batch) }
            ?? BertModel.logits(eager, teacher.weights, config: teacher.config, pooling: teacher.pooling, batch: batch)

        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let parameters = student.weights.map { _, tensor in tape.parameter(tensor) }
        let projection = self.projection.map { tape.parameter($0) }
        let config = student.config
        let studentEncoded = layered
            ? BertModel.encodeLayers(
                tape, parameters, config: config, batch: batch, attentionScoresOf: attention ? Set(layerMap.map(\.student)) : [])
            : nil
        let studentLayers = studentEncoded?.outputs ?? []
        let logits = studentLayers.last.map { BertModel.classify(tape, $0, weights: parameters, config: config, pooling: student.pooling, batch: batch) }
            ?? BertModel.logits(tape, parameters, config: config, pooling: student.pooling, batch: batch)

        let distillationLoss: Variable
        switch distillation.logitLoss {
        case .kl: distillationLoss = DistillationLosses.kl(tape, student: logits, teacher: teacherLogits, temperature: distillation.temperature)
        case .mse: distillationLoss = DistillationLosses.logitMSE(tape, student: logits, teacher: teacherLogits)
        }
        let taskLoss = tape.crossEntropy(logits, labels: labels)
        var total = DistillationLosses.combine(tape, distillation: distillationLoss, task: taskLoss, alpha: alpha)
        var hiddenLoss: Variable?
        for pair in layerMap where hidden {
            let term = DistillationLosses.hiddenMSE(
                tape, student: studentLayers[pair.student], teacher: teacherLayers[pair.teacher], projection: projection,
                attentionMask: batch.attentionMask)
            hiddenLoss = hiddenLoss.map { tape.add($0, term) } ?? term
        }
        if let hiddenLoss {
            total = tape.add(total, tape.affine(hiddenLoss, scale: distillation.hiddenLossWeight, shift: 0))
        }
        var attentionLoss: Variable?
        for pair in layerMap where attention {
            // `validate` made sure every mapped layer has heads, hence scores.
            guard let studentScores = studentEncoded?.scores[pair.student], let teacherScores = teacherEncoded?.scores[pair.teacher] else {
                preconditionFailure("no attention scores for layer map pair [\(pair.student), \(pair.teacher)]")
            }
            let term = DistillationLosses.attentionScoreMSE(
                tape, student: studentScores, teacher: teacherScores, attentionMask: batch.attentionMask)
            attentionLoss = attentionLoss.map { tape.add($0, term) } ?? term
        }
        if let attentionLoss {
            total = tape.add(total, tape.affine(attentionLoss, scale: distillation.attentionLossWeight, shift: 0))
        }
        tape.backward(from: total)
        var gradients = parameters.map { _, variable in tape.gradient(of: variable) }.elements
        if let projection { gradients.append(tape.gradient(of: projection)) }
        let parts = LossParts(
            total: total.value.scalarValue, distillation: distillationLoss.value.scalarValue, task: taskLoss.value.scalarValue,
            hidden: hiddenLoss?.value.scalarValue, attention: attentionLoss?.value.scalarValue)
        return (parts, gradients)
    }
}

/// A distillation trainer whose state is its student's parameters, the
/// optional hidden-state projection and the updater's state (the teacher is
/// an input, not state): checkpointed the same way for every model family.
package protocol StudentTrainer {
    associatedtype Student: TrainableModel
    var student: Student { get }
    var projection: Tensor? { get }
    var updater: ParameterUpdater { get }
    /// Puts a restored student, projection and updater in place.
    mutating func replace(student: Student, projection: Tensor?, updater: ParameterUpdater)
}

extension StudentTrainer {
    /// The student's parameters (`student.`), the projection and the
    /// updater's state (`updater.`).
    package func saveState(into state: inout TrainingState) {
        state.save(parameters: student, as: "student.")
        if let projection { state.tensors["projection"] = projection }
        updater.saveState(into: &state, as: "updater.")
    }

    /// Continues from a state `saveState` saved for these models and options.
    package mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
        var student = self.student
        var updater = self.updater
        try state.restore(parameters: &student, from: "student.")
        let projection = try self.projection.map { current throws(TrainingStateError) in try state.tensor("projection", like: current) }
        try updater.restoreState(from: state, as: "updater.")
        replace(student: student, projection: projection, updater: updater)
    }
}

extension DistillationTrainer: StudentTrainer {
    package mutating func replace(student: BertModel, projection: Tensor?, updater: ParameterUpdater) {
        (self.student, self.projection, self.updater) = (student, projection, updater)
    }
}
