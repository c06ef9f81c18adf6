import SqueezeTensor

/// What one update did.
public struct TrainingStep: Sendable, Hashable {
    public var loss: Float
    /// Global gradient norm before clipping (nil when clipping is off).
    public var gradientNorm: Float?
    public var learningRate: Float
}

/// Sequence-classification fine-tuning: cross-entropy on the tape, then the
/// `ParameterUpdater` step (global-norm clipping, AdamW with the decay split,
/// linear warmup and decay). Every step is a pure function of the model, the
/// batch, the options and the step number, so equal runs give bit-identical
/// weights.
public struct BertClassifierTrainer: Sendable {
    public private(set) var model: BertModel
    public private(set) var updater: ParameterUpdater

    public init(model: BertModel, options: TrainingHyperparameters, backend: any Backend) {
        self.model = model
        updater = ParameterUpdater(for: model, hyperparameters: options, backend: backend)
    }

    public var options: TrainingHyperparameters { updater.hyperparameters }
    public var backend: any Backend { updater.backend }
    public var optimizer: AdamW { updater.optimizer }
    public var completedSteps: Int { updater.completedSteps }
    public var schedule: LinearWarmupSchedule { updater.schedule }

    /// One forward, backward and update on `batch` with i32 `labels` `[B]`.
    public mutating func step(batch: BertBatch, labels: Tensor) throws(BertInputError) -> TrainingStep {
        let (loss, gradients) = try gradients(batch: batch, labels: labels, dropoutSeed: updater.dropoutSeed)
        let update = updater.apply(gradients, to: &model)
        return TrainingStep(loss: loss, gradientNorm: update.gradientNorm, learningRate: update.learningRate)
    }

    /// The loss and the gradients (in `weights.elements` order) on a tape that
    /// is gone when this returns, so no activation outlives the backward.
    private func gradients(batch: BertBatch, labels: Tensor, dropoutSeed: UInt64) throws(BertInputError) -> (Float, [Tensor?]) {
        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let (loss, parameters) = try model.trainingLoss(on: tape, batch: batch, labels: labels)
        tape.backward(from: loss)
        return (loss.value.scalarValue, parameters.map { _, variable in tape.gradient(of: variable) }.elements)
    }
}

extension BertClassifierTrainer: ModelAndUpdaterTrainer {
    package mutating func replace(model: BertModel, updater: ParameterUpdater) {
        (self.model, self.updater) = (model, updater)
    }
}
