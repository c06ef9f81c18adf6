/// The tensor operations a transformer needs, forward and backward.
///
/// Conventions shared by every backend:
/// - Inputs may be any layout (views); implementations call `contiguous()`
///   where they need it. Outputs are new contiguous tensors.
/// - Float ops take and return `f32`. Token ids and labels are `i32`.
/// - "Rows" means all leading axes flattened; "last axis" ops (softmax,
///   layer norm, cross-entropy) work on each row of the last axis.
/// - Broadcasting follows NumPy: shapes are aligned from the right and an
///   axis of size 1 (or a missing one) repeats.
/// - Results depend only on inputs, never on thread scheduling: parallel
///   reductions use a fixed split of the work.
///
/// `ReferenceBackend` is the specification; every other backend is tested
/// against it op by op.
public protocol Backend: Sendable {
    /// Identifies the numerics; part of every cache key (`cpu`, `reference`).
    var id: String { get }

    // MARK: Matrix products

    /// `alpha · op(a) · op(b)` where `op` transposes the last two axes when asked.
    /// `a` is `[..., M, K]` (`[..., K, M]` transposed), `b` is `[..., K, N]`
    /// (`[..., N, K]` transposed). Leading (batch) axes must be equal, or `b` is
    /// rank 2 and shared by every batch (a linear layer's weight). Result `[..., M, N]`.
    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor

    // MARK: Element-wise (broadcasting)

    func add(_ a: Tensor, _ b: Tensor) -> Tensor
    func subtract(_ a: Tensor, _ b: Tensor) -> Tensor
    func multiply(_ a: Tensor, _ b: Tensor) -> Tensor
    /// `a · scale + shift` element-wise.
    func affine(_ a: Tensor, scale: Float, shift: Float) -> Tensor
    /// Sums `gradient` over the axes that broadcasting expanded so the result has `shape`
    /// (the backward of a broadcasting add/multiply).
    func reduce(_ gradient: Tensor, toShape shape: [Int]) -> Tensor

    // MARK: Activations

    /// GELU, exact erf form: `x · Φ(x)`.
    func gelu(_ x: Tensor) -> Tensor
    /// `dy · GELU'(x)`.
    func geluBackward(_ x: Tensor, _ dy: Tensor) -> Tensor
    func tanh(_ x: Tensor) -> Tensor
    /// `dy · (1 − y²)` given `y = tanh(x)`.
    func tanhBackward(_ y: Tensor, _ dy: Tensor) -> Tensor

    // MARK: Normalisation along the last axis

    func softmax(_ x: Tensor) -> Tensor
    /// `y ⊙ (dy − Σ dy ⊙ y)` per row, given `y = softmax(x)`.
    func softmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor
    func logSoftmax(_ x: Tensor) -> Tensor
    /// `dy − softmax(x) · Σ dy` per row, given `y = logSoftmax(x)`.
    func logSoftmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor
    /// Layer norm over the last axis with `gamma`, `beta` of shape `[D]`.
    /// Returns the output and, per row, the mean and 1/σ (`[rows]`) for the backward.
    func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult
    func layerNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor) -> LayerNormGradients

    // MARK: Indexing and masking

    /// Rows of `table` (`[V, D]`) picked by `ids` (i32, any shape): `ids.shape + [D]`.
    /// An id outside `0..<V` is a precondition failure; callers validate user ids first.
    func gather(_ table: Tensor, _ ids: Tensor) -> Tensor
    /// The backward of `gather`: a `[rows, D]` table of zeros with each `dy` row added at its id.
    func scatterAdd(_ dy: Tensor, _ ids: Tensor, rows: Int) -> Tensor
    /// `x` where `mask` (broadcast, any dtype) is zero, `value` where it is non-zero.
    func maskedFill(_ x: Tensor, mask: Tensor, value: Float) -> Tensor

    // MARK: Reductions

    /// Sum over `axes` (negative counts from the end).
    func sum(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor
    func mean(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor
    /// Maximum over one axis, with the (first) index of the maximum as i32.
    func max(_ x: Tensor, axis: Int, keepDimensions: Bool) -> (values: Tensor, indices: Tensor)
    /// `Σ x²` over every element, accumulated in `Double` (global-norm clipping).
    func sumOfSquares(_ x: Tensor) -> Double

    // MARK: Training

    /// Inverted dropout: zeroes each element with probability `p` and scales the
    /// rest by `1/(1−p)`. Randomness comes from `(seed, stream)` through a
    /// counter-based generator, so it is the same for any thread count.
    /// Returns the output and the mask of scales (0 or `1/(1−p)`) for the backward.
    func dropout(_ x: Tensor, probability p: Float, seed: UInt64, stream: UInt64) -> (output: Tensor, mask: Tensor)
    /// Mean cross-entropy of `logits` `[N, C]` against i32 `labels` `[N]`.
    /// Returns the loss (rank 0) and the softmax probabilities for the backward.
    func crossEntropy(_ logits: Tensor, labels: Tensor) -> (loss: Tensor, probabilities: Tensor)
    /// `(probabilities − onehot(labels)) · dLoss / N`.
    func crossEntropyBackward(probabilities: Tensor, labels: Tensor, dLoss: Float) -> Tensor
    /// One AdamW update in place (decoupled weight decay, bias-corrected moments).
    /// `step` counts from 1.
    func adamWUpdate(
        parameter: inout Tensor, gradient: Tensor, firstMoment: inout Tensor, secondMoment: inout Tensor,
        hyperparameters: AdamWHyperparameters, step: Int)
}

/// What `Backend.layerNorm` returns.
public struct LayerNormResult: Sendable {
    public var output: Tensor
    public var mean: Tensor
    public var inverseStd: Tensor
    public init(output: Tensor, mean: Tensor, inverseStd: Tensor) {
        self.output = output
        self.mean = mean
        self.inverseStd = inverseStd
    }
}

/// What `Backend.layerNormBackward` returns.
public struct LayerNormGradients: Sendable {
    public var input: Tensor
    public var gamma: Tensor
    public var beta: Tensor
    public init(input: Tensor, gamma: Tensor, beta: Tensor) {
        self.input = input
        self.gamma = gamma
        self.beta = beta
    }
}

/// One parameter group's AdamW settings at one step.
public struct AdamWHyperparameters: Sendable, Hashable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Decoupled: `p -= lr · weightDecay · p` before the Adam step (0 for biases and LayerNorm).
    public var weightDecay: Float

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}
