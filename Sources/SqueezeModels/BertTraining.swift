import SqueezeTensor

/// Fine-tuning settings, defaulting to Hugging Face `TrainingArguments`.
public struct BertTrainingOptions: Sendable, Hashable {
    public var learningRate: Float
    /// Decoupled weight decay for weights (never biases or LayerNorm weights).
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

/// What one update did.
public struct BertTrainingStep: Sendable, Hashable {
    public var loss: Float
    /// Global gradient norm before clipping (nil when clipping is off).
    public var gradientNorm: Float?
    public var learningRate: Float
}

/// Sequence-classification fine-tuning: cross-entropy on the tape, global-norm
/// clipping, AdamW with the decay split, linear warmup and decay. Every step
/// is a pure function of the model, the batch, the options and the step
/// number, so equal runs give bit-identical weights.
public struct BertClassifierTrainer: Sendable {
    public private(set) var model: BertModel
    public let options: BertTrainingOptions
    public let backend: any Backend
    public private(set) var optimizer: AdamW
    public private(set) var completedSteps = 0
    public let schedule: LinearWarmupSchedule

    public init(model: BertModel, options: BertTrainingOptions, backend: any Backend) {
        self.model = model
        self.options = options
        self.backend = backend
        optimizer = AdamW(
            decayMask: BertModel.decayMask(names: model.weights.names), weightDecay: options.weightDecay,
            beta1: options.beta1, beta2: options.beta2, epsilon: options.epsilon)
        schedule = LinearWarmupSchedule(peak: options.learningRate, warmupSteps: options.warmupSteps, totalSteps: options.totalSteps)
    }

    /// One forward, backward and update on `batch` with i32 `labels` `[B]`.
    public mutating func step(batch: BertBatch, labels: Tensor) throws(BertInputError) -> BertTrainingStep {
        let dropoutSeed = randomBits(seed: options.seed, stream: Self.dropoutSeedStream, index: UInt64(completedSteps))
        let (loss, computed) = try gradients(batch: batch, labels: labels, dropoutSeed: dropoutSeed)
        var gradients = computed
        // A masked model's pruned weights get no gradient; `updateParameters` keeps them at zero.
        model.maskGradients(&gradients)
        var norm: Float?
        var scale: Float = 1
        if let maxNorm = options.maxGradientNorm {
            // Clipping is folded into the update: AdamW reads each gradient times `scale`.
            let clipping = clippingScale(gradients, maxNorm: maxNorm, backend: backend)
            norm = clipping.norm
            scale = clipping.scale
        }
        let learningRate = schedule.learningRate(forUpdate: completedSteps)
        let backend = self.backend
        model.updateParameters { parameters in
            optimizer.update(
                &parameters, gradients: gradients, learningRate: learningRate, gradientScale: scale, backend: backend)
        }
        completedSteps += 1
        return BertTrainingStep(loss: loss, gradientNorm: norm, learningRate: learningRate)
    }

    /// The loss and the gradients (in `weights.elements` order) on a tape that
    /// is gone when this returns, so no activation outlives the backward.
    private func gradients(batch: BertBatch, labels: Tensor, dropoutSeed: UInt64) throws(BertInputError) -> (Float, [Tensor?]) {
        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let (loss, parameters) = try model.trainingLoss(on: tape, batch: batch, labels: labels)
        tape.backward(from: loss)
        return (loss.value.scalarValue, parameters.map { _, variable in tape.gradient(of: variable) }.elements)
    }

    /// The `randomBits` stream that turns `(seed, step)` into a step's dropout seed.
    package static let dropoutSeedStream: UInt64 = 0xD80F
}
