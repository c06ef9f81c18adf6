import SqueezeTensor
import SqueezeSupport

/// Optimiser settings, defaulting to Hugging Face `TrainingArguments`.
public struct TrainingHyperparameters: Sendable, Hashable {
    public var learningRate: Float
    /// Decoupled weight decay for the parameters a model's `decayMask` marks (never biases or LayerNorm weights).
    public var weightDecay: Float
    public var warmupSteps: Int
    /// Updates over which the learning rate decays linearly to zero.
    public var totalSteps: Int
    /// Global-norm gradient clipping; nil turns it off.
    public var maxGradientNorm: Float?
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Seeds dropout; step `k` uses a seed derived from this and `k`.
    public var seed: UInt64

    public init(
        learningRate: Float = 5e-5, weightDecay: Float = 0, warmupSteps: Int = 0, totalSteps: Int,
        maxGradientNorm: Float? = 1, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, seed: UInt64
    ) {
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.maxGradientNorm = maxGradientNorm
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.seed = seed
    }
}

/// A model whose parameters an optimiser updates in place.
public protocol TrainableModel {
    /// Parameter names in optimiser order.
    var parameterNames: [String] { get }
    /// The parameters in optimiser order (what `updateParameters` changes).
    var parameterTensors: [Tensor] { get }
    /// Which parameters get weight decay, in optimiser order.
    var decayMask: [Bool] { get }
    /// Lets `body` change the parameters in place (optimiser order, same shapes).
    mutating func updateParameters(_ body: (inout [Tensor]) throws -> Void) rethrows
    /// Zeroes the gradients (optimiser order) the model must not follow, e.g. of pruned weights.
    func maskGradients(_ gradients: inout [Tensor?])
}

/// What one parameter update did.
public struct ParameterUpdate: Sendable, Hashable {
    /// Global gradient norm before clipping (nil when clipping is off).
    public var gradientNorm: Float?
    public var learningRate: Float
}

/// The update every trainer applies: the model's gradient mask, global-norm
/// clipping folded into AdamW's `gradientScale`, AdamW with the model's decay
/// split, the linear warmup/decay schedule and a dropout seed per step.
/// Auxiliary parameters (a distillation projection) are updated after the
/// model's, without weight decay. Each update is a pure function of the
/// state, the gradients and the step number.
public struct ParameterUpdater: Sendable {
    public let hyperparameters: TrainingHyperparameters
    public let schedule: LinearWarmupSchedule
    public let backend: any Backend
    public private(set) var optimizer: AdamW
    /// Updates applied so far.
    public private(set) var completedSteps = 0

    /// An updater for `decayMask.count` model parameters (true: with weight
    /// decay) followed by `auxiliaryParameters` without.
    public init(
        decayMask: [Bool], auxiliaryParameters: Int = 0, hyperparameters: TrainingHyperparameters, backend: any Backend
    ) {
        self.hyperparameters = hyperparameters
        self.backend = backend
        let decays = decayMask.map { $0 ? hyperparameters.weightDecay : 0 }
        optimizer = AdamW(
            weightDecays: decays + Array(repeating: 0, count: auxiliaryParameters), beta1: hyperparameters.beta1,
            beta2: hyperparameters.beta2, epsilon: hyperparameters.epsilon)
        schedule = LinearWarmupSchedule(
            peak: hyperparameters.learningRate, warmupSteps: hyperparameters.warmupSteps, totalSteps: hyperparameters.totalSteps)
    }

    /// An updater for `model`'s parameters followed by `auxiliaryParameters` without weight decay.
    public init<Model: TrainableModel>(
        for model: Model, auxiliaryParameters: Int = 0, hyperparameters: TrainingHyperparameters, backend: any Backend
    ) {
        self.init(
            decayMask: model.decayMask, auxiliaryParameters: auxiliaryParameters, hyperparameters: hyperparameters, backend: backend)
    }

    /// The dropout seed of the step about to run.
    public var dropoutSeed: UInt64 {
        randomBits(seed: hyperparameters.seed, stream: Self.dropoutSeedStream, index: UInt64(completedSteps))
    }

    /// The learning rate of the step about to run.
    public var learningRate: Float { schedule.learningRate(forUpdate: completedSteps) }

    /// One update of `model` (and `auxiliary`, after it) with `gradients` in
    /// optimiser order (the model's, then the auxiliary parameters'; nil:
    /// left alone): masks them with the model's mask, clips their global
    /// norm, steps AdamW at the scheduled learning rate and counts the step.
    public mutating func apply<Model: TrainableModel>(
        _ gradients: consuming [Tensor?], to model: inout Model, auxiliary: inout [Tensor]
    ) -> ParameterUpdate {
        // A masked model's pruned weights get no gradient; `updateParameters` keeps them at zero.
        model.maskGradients(&gradients)
        var norm: Float?
        var scale: Float = 1
        if let maxNorm = hyperparameters.maxGradientNorm {
            // Clipping is folded into the update: AdamW reads each gradient times `scale`.
            let clipping = clippingScale(gradients, maxNorm: maxNorm, backend: backend)
            norm = clipping.norm
            scale = clipping.scale
        }
        let learningRate = self.learningRate
        let backend = self.backend
        model.updateParameters { parameters in
            let count = parameters.count
            // Moved over so each tensor is uniquely referenced while AdamW writes it.
            parameters += auxiliary
            auxiliary = []
            optimizer.update(&parameters, gradients: gradients, learningRate: learningRate, gradientScale: scale, backend: backend)
            auxiliary = Array(parameters[count...])
            parameters.removeSubrange(count...)
        }
        completedSteps += 1
        return ParameterUpdate(gradientNorm: norm, learningRate: learningRate)
    }

    /// `apply` for a model without auxiliary parameters.
    public mutating func apply<Model: TrainableModel>(_ gradients: consuming [Tensor?], to model: inout Model) -> ParameterUpdate {
        var none: [Tensor] = []
        return apply(gradients, to: &model, auxiliary: &none)
    }

    /// The `randomBits` stream that turns `(seed, step)` into a step's dropout seed.
    package static let dropoutSeedStream: UInt64 = 0xD80F
}

extension BertModel: TrainableModel {
    public var parameterNames: [String] { weights.names }
    public var decayMask: [Bool] { Self.decayMask(names: weights.names) }
}

extension ParameterUpdater {
    /// Saves the step count and AdamW's moments and per-parameter steps
    /// under `prefix`; the schedule and dropout seeds follow from the step.
    public func saveState(into state: inout TrainingState, as prefix: String) {
        state.values[prefix + "completed_steps"] = .int(completedSteps)
        state.values[prefix + "total_steps"] = .int(hyperparameters.totalSteps)
        state.values[prefix + "adam_steps"] = .array(optimizer.steps.map(Value.int))
        for (index, (first, second)) in zip(optimizer.firstMoments, optimizer.secondMoments).enumerated() {
            if let first, let second {
                state.tensors[prefix + "m.\(index)"] = first
                state.tensors[prefix + "v.\(index)"] = second
            }
        }
    }

    /// Restores what `saveState` saved for an updater of the same parameters.
    public mutating func restoreState(from state: TrainingState, as prefix: String) throws(TrainingStateError) {
        let totalSteps = try state.int(prefix + "total_steps")
        guard totalSteps == hyperparameters.totalSteps else {
            throw TrainingStateError("saved for \(totalSteps) updates, this run has \(hyperparameters.totalSteps)")
        }
        let completed = try state.int(prefix + "completed_steps")
        let steps = try state.ints(prefix + "adam_steps")
        let first = steps.indices.map { state.tensors[prefix + "m.\($0)"] }
        let second = steps.indices.map { state.tensors[prefix + "v.\($0)"] }
        var optimizer = self.optimizer
        guard completed >= 0, optimizer.restore(steps: steps, firstMoments: first, secondMoments: second) else {
            throw TrainingStateError("the optimizer state does not fit \(self.optimizer.steps.count) parameters")
        }
        self.optimizer = optimizer
        completedSteps = completed
    }
}
