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
///
/// The requirements come in three protocols: `CoreBackend` (the ops every
/// backend needs), `FusedBackend` (one-pass versions of compositions of core
/// ops) and `QuantizedBackend` (int8 and weight-only products). None has a
/// default implementation: a backend (a forwarding one included) that does
/// not implement an op does not compile, instead of silently running another
/// backend's host loops. `ReferenceBackend` states each fused op as the
/// composition of core ops it stands for.
public protocol Backend: FusedBackend, QuantizedBackend {}

/// The ops every backend implements itself.
public protocol CoreBackend: Sendable {
    /// The id of the provider that makes it (`cpu`, `reference`), for logs; cache keys use the provider's numerics fingerprint.
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
    /// GPT-2's `gelu_new`, the tanh approximation of GELU:
    /// `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    func geluTanh(_ x: Tensor) -> Tensor
    /// `dy · geluTanh'(x)`.
    func geluTanhBackward(_ x: Tensor, _ dy: Tensor) -> Tensor
    /// SwiGLU's gate (Llama's MLP): `silu(gate) ⊙ up`, `silu(g) = g·σ(g)`;
    /// `gate` and `up` have one shape.
    func gatedSiLU(gate: Tensor, up: Tensor) -> Tensor
    /// `(dy ⊙ up ⊙ silu'(gate), dy ⊙ silu(gate))`.
    func gatedSiLUBackward(_ dy: Tensor, gate: Tensor, up: Tensor) -> (gate: Tensor, up: Tensor)

    // MARK: Position embeddings

    /// Rotary position embedding, Hugging Face's "rotate half" convention
    /// (Llama, Mistral, Qwen2), of `x` `[B, T, H, d]` (d even) with angle
    /// tables `cos`, `sin` `[T, d/2]` (row t for the token at index t of axis
    /// 1; `Rotary.rotaryTables` builds them): for i < d/2,
    /// `out[…, i] = x[…, i]·cos[t, i] − x[…, i + d/2]·sin[t, i]` and
    /// `out[…, i + d/2] = x[…, i + d/2]·cos[t, i] + x[…, i]·sin[t, i]`.
    /// `inverse` rotates by the negative angles, which is also the backward
    /// (the rotation is orthogonal).
    func rotary(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) -> Tensor

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
    /// Layer norm over the columns where `columnMask` (`[D]`, any dtype) is
    /// non-zero: the mean and variance cover those columns only and every
    /// other column of the output is 0. Structured pruning of hidden
    /// dimensions uses it so that the zeroed columns can later be removed
    /// from the model without changing any result. A row with no selected
    /// column gives zeros (and mean and 1/σ of 0).
    func maskedLayerNorm(_ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult
    /// Gradients of `maskedLayerNorm`; 0 on the unselected columns.
    func maskedLayerNormBackward(
        _ dy: Tensor, _ x: Tensor, columnMask: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients

    /// RMS norm over the last axis with `gamma` `[D]` (Llama's RMSNorm):
    /// `x · (mean(x²) + ε)^−½ · gamma`, the statistics in double. Returns the
    /// output and, per row, the `(mean(x²) + ε)^−½` (`[rows]`) for the backward.
    func rmsNorm(_ x: Tensor, gamma: Tensor, epsilon: Float) -> RMSNormResult
    func rmsNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, inverseRMS: Tensor) -> RMSNormGradients

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

/// Fused ops: one pass where a transformer would otherwise make several.
/// `ReferenceBackend` implements each as the composition of core ops it
/// stands for (the specification); the CPU backend has kernels that agree
/// with it to rounding.
public protocol FusedBackend: CoreBackend {
    /// `x · weightᵀ + bias` over the last axis of `x` (`[..., in]`); `weight`
    /// is `[out, in]`, `bias` `[out]` (or none).
    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor
    /// GELU and its derivative `GELU'(x)`, so the backward is one multiply.
    func geluWithDerivative(_ x: Tensor) -> (output: Tensor, derivative: Tensor)
    /// `layerNorm(dropout(x) + residual)` (the residual branch of a post-LN
    /// block); `x` and `residual` have one shape. Also returns the sum, the
    /// layer norm's input, for the backward.
    func residualLayerNorm(
        _ x: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, dropout: DropoutParameters?
    ) -> ResidualLayerNormResult
    /// Gradients of `residualLayerNorm` from the saved sum and statistics.
    func residualLayerNormBackward(
        _ dy: Tensor, sum: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, dropout: DropoutParameters?
    ) -> ResidualLayerNormGradients
    /// Scaled dot-product attention of `[B, H, T, d]` queries against
    /// `[B, H, S, d]` keys and `[B, H, S, dv]` values:
    /// `dropout(softmax(q·kᵀ·scale + bias)) · v`, `bias` broadcasting to
    /// `[B, H, T, S]`. The dropout numbers the probabilities as a contiguous
    /// `[B, H, T, S]` tensor (as `dropout` would).
    func attention(
        query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: DropoutParameters?
    ) -> AttentionResult
    /// Gradients of `attention` with respect to the inputs asked for, given the
    /// output's gradient (`[B, H, T, dv]`, any layout) and the saved probabilities.
    func attentionBackward(
        _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, probabilities: Tensor, scale: Float,
        dropout: DropoutParameters?, wantQuery: Bool, wantKey: Bool, wantValue: Bool
    ) -> AttentionGradients
}

/// Quantised inference products.
public protocol QuantizedBackend: CoreBackend {
    // MARK: Int8 inference
    //
    // Quantised linear layers computed in integers (u8 activations × s8
    // weights, exact i32 sums). `ReferenceBackend` states them as plain loops
    // (the specification); the CPU backend's kernels give bit-identical
    // results. See Quantization.swift.

    /// The range of f32 `x` (`[..., K]`) for dynamic quantisation: over the
    /// whole tensor, or per row (all leading axes flattened).
    func activationRange(_ x: Tensor, perRow: Bool) -> ActivationRange
    /// f32 `x` quantised to u8 (same shape) with per-tensor or per-row parameters.
    func quantize(_ x: Tensor, _ quantization: ActivationQuantization) -> Tensor
    /// `quantize(gelu(x), quantization)`: the input of a feed-forward
    /// block's int8 output projection, without the f32 GELU values.
    func quantize(geluOf x: Tensor, _ quantization: ActivationQuantization) -> Tensor
    /// The int8 product of already-quantised u8 activations `x` (`[..., K]`,
    /// parameters per tensor or per row) and `weights` (`[N, K]`) with `bias`
    /// (f32 `[N]`, or none; ignored for `.accumulators`): `[..., N]` as i32
    /// sums, f32, or u8 by `output`.
    func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        output: QuantizedLinearOutput
    ) -> Tensor
    /// The u8 codes (`geluCodes`, per tensor) of the GELU of the f32 int8
    /// product: `quantize(geluOf: quantizedLinear(quantized: x, …, output: .float), geluCodes)`,
    /// a feed-forward block's first layer feeding its int8 second.
    func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        geluCodes: ActivationQuantization
    ) -> Tensor
    /// f32 `x` quantised with `quantization`, then the int8 product as f32:
    /// `quantizedLinear(quantized: quantize(x, quantization), …, output: .float)`.
    func quantizedLinear(_ x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?) -> Tensor

    // MARK: Weight-only inference
    //
    // f32 activations times int4/int8 weights with per-group scales
    // (`PackedGroupWeights`, see WeightOnly.swift), dequantised on the fly.
    // `ReferenceBackend` dequantises, then loops (the specification); the CPU
    // backend has fused kernels.

    /// `x · ŵᵀ + bias` over the last axis of f32 `x` (`[..., K]`) with the
    /// dequantised weights `ŵ` (`[N, K]`) and `bias` (f32 `[N]`, or none): f32 `[..., N]`.
    func weightOnlyLinear(_ x: Tensor, weights: PackedGroupWeights, bias: Tensor?) -> Tensor
}

/// Inverted dropout inside a fused op: drop probability and the
/// counter-based stream, as `Backend.dropout` takes them.
public struct DropoutParameters: Sendable, Hashable {
    public var probability: Float
    public var seed: UInt64
    public var stream: UInt64

    public init(probability: Float, seed: UInt64, stream: UInt64) {
        self.probability = probability
        self.seed = seed
        self.stream = stream
    }
}

/// What `Backend.residualLayerNorm` returns.
public struct ResidualLayerNormResult: Sendable {
    public var output: Tensor
    /// `dropout(x) + residual`.
    public var sum: Tensor
    public var mean: Tensor
    public var inverseStd: Tensor

    public init(output: Tensor, sum: Tensor, mean: Tensor, inverseStd: Tensor) {
        self.output = output
        self.sum = sum
        self.mean = mean
        self.inverseStd = inverseStd
    }
}

/// What `Backend.residualLayerNormBackward` returns.
public struct ResidualLayerNormGradients: Sendable {
    /// Through the dropout.
    public var input: Tensor
    public var residual: Tensor
    public var gamma: Tensor
    public var beta: Tensor

    public init(input: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor) {
        self.input = input
        self.residual = residual
        self.gamma = gamma
        self.beta = beta
    }
}

/// What `Backend.attention` returns.
public struct AttentionResult: Sendable {
    /// The context as `[B, T, H, dv]`: heads after tokens, so merging the
    /// heads into `[B, T, H·dv]` is a reshape.
    public var output: Tensor
    /// `softmax(q·kᵀ·scale + bias)`, `[B, H, T, S]`, before dropout.
    public var probabilities: Tensor

    public init(output: Tensor, probabilities: Tensor) {
        self.output = output
        self.probabilities = probabilities
    }
}

/// What `Backend.attentionBackward` returns: gradients shaped like the inputs
/// (possibly strided views), nil where not asked for.
public struct AttentionGradients: Sendable {
    public var query: Tensor?
    public var key: Tensor?
    public var value: Tensor?

    public init(query: Tensor?, key: Tensor?, value: Tensor?) {
        self.query = query
        self.key = key
        self.value = value
    }
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

/// What `Backend.rmsNorm` returns.
public struct RMSNormResult: Sendable {
    public var output: Tensor
    /// `(mean(x²) + ε)^−½` per row: `[rows]`, all leading axes of `x` flattened.
    public var inverseRMS: Tensor
    public init(output: Tensor, inverseRMS: Tensor) {
        self.output = output
        self.inverseRMS = inverseRMS
    }
}

/// What `Backend.rmsNormBackward` returns.
public struct RMSNormGradients: Sendable {
    public var input: Tensor
    public var gamma: Tensor
    public init(input: Tensor, gamma: Tensor) {
        self.input = input
        self.gamma = gamma
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
    /// The gradient is used as `Float(gradient · gradientScale)`: global-norm
    /// clipping folded into the update instead of a pass of its own.
    public var gradientScale: Float

    public init(
        learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0,
        gradientScale: Float = 1
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.gradientScale = gradientScale
    }
}
