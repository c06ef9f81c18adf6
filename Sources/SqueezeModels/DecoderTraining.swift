import SqueezeTensor

extension DecoderModel: TrainableModel {
    public var parameterNames: [String] { weights.names }
    public var decayMask: [Bool] { Self.decayMask(names: weights.names) }
}

/// Causal language-model training: next-token cross-entropy on the tape,
/// then the update every trainer shares (`ParameterUpdater`: masked
/// gradients, global-norm clipping, AdamW with the decay split, linear
/// warmup and decay). Every step is a pure function of the model, the
/// batch, the options and the step number, so equal runs give bit-identical
/// weights.
public struct DecoderTrainer: Sendable {
    public private(set) var model: DecoderModel
    public let backend: any Backend
    public private(set) var updater: ParameterUpdater

    public init(model: DecoderModel, hyperparameters: TrainingHyperparameters, backend: any Backend) {
        self.model = model
        self.backend = backend
        updater = ParameterUpdater(for: model, hyperparameters: hyperparameters, backend: backend)
    }

    /// One forward, backward and update on token blocks `ids` `[B, T]`.
    public mutating func step(ids: Tensor) throws(DecoderInputError) -> TrainingStep {
        let (loss, gradients) = try Self.gradients(model, ids: ids, dropoutSeed: updater.dropoutSeed, backend: backend)
        let applied = updater.apply(gradients, to: &model)
        return TrainingStep(loss: loss, gradientNorm: applied.gradientNorm, learningRate: applied.learningRate)
    }

    /// The loss and the gradients (in `weights.elements` order) on a tape
    /// that is gone when this returns, so no activation outlives the backward.
    static func gradients(
        _ model: DecoderModel, ids: Tensor, dropoutSeed: UInt64, backend: any Backend
    ) throws(DecoderInputError) -> (Float, [Tensor?]) {
        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let (loss, parameters) = try model.trainingLoss(on: tape, ids: ids)
        tape.backward(from: loss)
        return (loss.value.scalarValue, parameters.map { _, variable in tape.gradient(of: variable) }.elements)
    }
}

extension DecoderTrainer: ModelAndUpdaterTrainer {
    package mutating func replace(model: DecoderModel, updater: ParameterUpdater) {
        (self.model, self.updater) = (model, updater)
    }
}
