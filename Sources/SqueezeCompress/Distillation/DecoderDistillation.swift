import SqueezeModels
import SqueezeTensor

/// What a decoder teacher gives the student for one batch of token blocks,
/// computed without a tape (no dropout): constants of the loss.
public struct DecoderTeacherTargets: Sendable {
    /// `[B·(T−1), vocab]`: the logits of every position that predicts a next
    /// token (`DecoderModel.nextTokenLogits`).
    public var logits: Tensor
    /// The outputs `[B, T, hidden]` of the teacher blocks the hidden loss maps to.
    public var blockOutputs: [Int: Tensor]

    public init(logits: Tensor, blockOutputs: [Int: Tensor]) {
        self.logits = logits
        self.blockOutputs = blockOutputs
    }
}

/// The parts of a distillation loss, before weighting (the total after).
public struct DistillationLossParts<Value> {
    public var total: Value
    /// The logit loss (KL or MSE).
    public var distillation: Value
    /// The cross-entropy of the true next tokens (of the labels, for a classifier).
    public var task: Value
    /// The summed hidden-state MSEs; nil when the hidden loss is off.
    public var hidden: Value?
}

/// Knowledge distillation of a decoder language model into another, token by
/// token: over every position that predicts a next token,
/// `α·T²·KL(softmax(t/T) ‖ softmax(s/T))` (or logit MSE), averaged over the
/// predicted positions, plus `(1 − α)·` the next-token cross-entropy, plus
/// `w_h · Σ` over the layer map of the MSE between the projected student
/// block output and the teacher's (every position). Written against
/// `TensorOperations` so the loss a trainer differentiates is the one a
/// gradient check perturbs.
public enum DecoderDistillation {
    /// The teacher's logits at the predicting positions of `ids` `[B, T]`
    /// and the outputs of its blocks `layers`, without a tape.
    public static func teacherTargets(
        _ teacher: DecoderModel, ids: Tensor, layers: Set<Int>, backend: any Backend
    ) -> DecoderTeacherTargets {
        let eager = Eager(backend: backend)
        var cache: DecoderKVCache?
        let states = DecoderModel.layerStates(
            eager, teacher.weights, config: teacher.config, inverseFrequencies: teacher.inverseFrequencies, ids: ids, cache: &cache,
            keeping: layers)
        let logits = DecoderModel.nextTokenLogits(eager, states.hidden, teacher.weights, config: teacher.config)
        return DecoderTeacherTargets(logits: logits, blockOutputs: states.blockOutputs)
    }

    /// The student's losses on `ids` `[B, T]` (checked ids, T ≥ 2) against
    /// `targets`. `projection` maps the student's width to the teacher's for
    /// the hidden loss (nil: compared directly); `layerMap` is empty when the
    /// hidden loss is off.
    public static func losses<Ops: TensorOperations>(
        _ ops: Ops, student weights: DecoderWeights<Ops.Value>, config: DecoderConfig, inverseFrequencies: [Float],
        projection: Ops.Value?, targets: DecoderTeacherTargets, ids: Tensor, options: DistillationOptions, layerMap: [LayerPair],
        alpha: Float
    ) -> DistillationLossParts<Ops.Value> {
        var cache: DecoderKVCache?
        let hiddenLoss = options.usesHiddenLoss && !layerMap.isEmpty
        let states = DecoderModel.layerStates(
            ops, weights, config: config, inverseFrequencies: inverseFrequencies, ids: ids, cache: &cache,
            keeping: hiddenLoss ? Set(layerMap.map(\.student)) : [])
        let logits = DecoderModel.nextTokenLogits(ops, states.hidden, weights, config: config)
        let distillation: Ops.Value
        switch options.logitLoss {
        case .kl: distillation = DistillationLosses.kl(ops, student: logits, teacher: targets.logits, temperature: options.temperature)
        case .mse: distillation = DistillationLosses.logitMSE(ops, student: logits, teacher: targets.logits)
        }
        let task = ops.crossEntropy(logits, labels: DecoderModel.nextTokenLabels(ids))
        var total = DistillationLosses.combine(ops, distillation: distillation, task: task, alpha: alpha)
        var hidden: Ops.Value?
        if hiddenLoss {
            // Every position of a token block is real.
            let everyToken = Tensor(shape: ids.shape, int32s: [Int32](repeating: 1, count: ids.count))
            for pair in layerMap {
                guard let student = states.blockOutputs[pair.student], let teacher = targets.blockOutputs[pair.teacher] else {
                    preconditionFailure("no block output for layer map pair [\(pair.student), \(pair.teacher)]")
                }
                let term = DistillationLosses.hiddenMSE(
                    ops, student: student, teacher: teacher, projection: projection, attentionMask: everyToken)
                hidden = hidden.map { ops.add($0, term) } ?? term
            }
        }
        if let hidden {
            total = ops.add(total, ops.affine(hidden, scale: options.hiddenLossWeight, shift: 0))
        }
        return DistillationLossParts(total: total, distillation: distillation, task: task, hidden: hidden)
    }
}

/// Knowledge distillation of a decoder teacher into a decoder student
/// (`DecoderDistillation`'s loss), with the update every trainer shares
/// (`ParameterUpdater`: a masked student keeps its zeros, clipping, AdamW,
/// the schedule). The teacher runs without a tape once per step; a
/// hidden-loss projection is trained with the student and is not part of
/// it. Every step is a pure function of the models, the batch, the options
/// and the step number.
public struct DecoderDistillationTrainer: Sendable {
    public private(set) var student: DecoderModel
    public let teacher: DecoderModel
    public let distillation: DistillationOptions
    /// The pairs of the hidden loss (empty when it is off).
    public let layerMap: [LayerPair]
    /// `[teacher hidden, student hidden]`, updated with the student; nil when
    /// the hidden loss is off or compares the states directly.
    public private(set) var projection: Tensor?
    /// Updates the student's parameters, then the projection's (without weight decay).
    public private(set) var updater: ParameterUpdater

    public init(
        student: DecoderModel, teacher: DecoderModel, options: TrainingHyperparameters, distillation: DistillationOptions,
        backend: any Backend
    ) throws(DistillationError) {
        layerMap = try distillation.validate(student: student, teacher: teacher)
        self.student = student
        self.teacher = teacher
        self.distillation = distillation
        projection = distillation.initialProjection(
            studentWidth: student.config.hiddenSize, teacherWidth: teacher.config.hiddenSize,
            standardDeviation: Float(student.config.initializerRange))
        updater = ParameterUpdater(
            for: student, auxiliaryParameters: projection == nil ? 0 : 1, hyperparameters: options, backend: backend)
    }

    public var options: TrainingHyperparameters { updater.hyperparameters }
    public var backend: any Backend { updater.backend }
    public var completedSteps: Int { updater.completedSteps }

    /// One teacher forward, student forward and backward, and update on token blocks `ids` `[B, T]`.
    public mutating func step(ids: Tensor) throws(DecoderInputError) -> DistillationStep {
        try student.check(ids, past: 0)
        try teacher.check(ids, past: 0)
        guard ids.shape[1] >= 2 else { throw DecoderInputError("a training sequence needs at least 2 tokens, got \(ids.shape[1])") }
        let alpha = distillation.alpha.alpha(atStep: completedSteps, of: options.totalSteps)
        let (parts, gradients) = computeGradients(ids: ids, alpha: alpha, dropoutSeed: updater.dropoutSeed)
        // Moved out so the projection is uniquely referenced while AdamW writes it.
        var auxiliary = projection.map { [$0] } ?? []
        projection = nil
        let update = updater.apply(gradients, to: &student, auxiliary: &auxiliary)
        projection = auxiliary.first
        return DistillationStep(
            loss: parts.total, distillationLoss: parts.distillation, taskLoss: parts.task, hiddenLoss: parts.hidden,
            attentionLoss: nil, alpha: alpha, gradientNorm: update.gradientNorm, learningRate: update.learningRate)
    }

    /// The losses and the gradients (student parameters in `weights.elements`
    /// order, then the projection) on a tape that is gone when this returns.
    private func computeGradients(ids: Tensor, alpha: Float, dropoutSeed: UInt64) -> (DistillationLossParts<Float>, [Tensor?]) {
        let targets = DecoderDistillation.teacherTargets(teacher, ids: ids, layers: Set(layerMap.map(\.teacher)), backend: backend)
        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let parameters = student.weights.map { _, tensor in tape.parameter(tensor) }
        let projection = self.projection.map { tape.parameter($0) }
        let parts = DecoderDistillation.losses(
            tape, student: parameters, config: student.config, inverseFrequencies: student.inverseFrequencies, projection: projection,
            targets: targets, ids: ids, options: distillation, layerMap: layerMap, alpha: alpha)
        tape.backward(from: parts.total)
        var gradients = parameters.map { _, variable in tape.gradient(of: variable) }.elements
        if let projection { gradients.append(tape.gradient(of: projection)) }
        let values = DistillationLossParts(
            total: parts.total.value.scalarValue, distillation: parts.distillation.value.scalarValue,
            task: parts.task.value.scalarValue, hidden: parts.hidden?.value.scalarValue)
        return (values, gradients)
    }
}

extension DecoderDistillationTrainer: StudentTrainer {
    package mutating func replace(student: DecoderModel, projection: Tensor?, updater: ParameterUpdater) {
        (self.student, self.projection, self.updater) = (student, projection, updater)
    }
}
