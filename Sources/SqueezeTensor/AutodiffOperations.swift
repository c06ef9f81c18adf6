/// The operations a model's forward pass is written against, so one
/// implementation serves inference (`Eager`: plain tensors, nothing recorded,
/// dropout off) and training (`Tape`: variables with backward nodes).
public protocol TensorOperations {
    associatedtype Value

    var backend: any Backend { get }
    /// The forward value.
    func tensor(_ value: Value) -> Tensor
    /// A value that needs no gradient.
    func constant(_ tensor: Tensor) -> Value

    /// `alpha · op(a) · op(b)` as `Backend.matmul` (batched, or `b` shared when rank 2).
    func matmul(_ a: Value, _ b: Value, transposeA: Bool, transposeB: Bool, alpha: Float) -> Value
    /// `x · weightᵀ + bias` over the last axis of `x`; `weight` is `[out, in]`.
    func linear(_ x: Value, weight: Value, bias: Value?) -> Value
    func add(_ a: Value, _ b: Value) -> Value
    func subtract(_ a: Value, _ b: Value) -> Value
    func multiply(_ a: Value, _ b: Value) -> Value
    /// `x · scale + shift`.
    func affine(_ x: Value, scale: Float, shift: Float) -> Value
    func gelu(_ x: Value) -> Value
    /// A feed-forward block, `linear(gelu(linear(x, intermediate)), output)`,
    /// which an implementation may compute without storing the inner values
    /// (`InferenceOperations`: int8 GELU codes straight from the first product).
    func feedForward(_ x: Value, intermediateWeight: Value, intermediateBias: Value?, outputWeight: Value, outputBias: Value?) -> Value
    func tanh(_ x: Value) -> Value
    func softmax(_ x: Value) -> Value
    func logSoftmax(_ x: Value) -> Value
    func layerNorm(_ x: Value, gamma: Value, beta: Value, epsilon: Float) -> Value
    /// Layer norm over the columns where `columnMask` (`[D]`) is non-zero, 0 on
    /// the others (`Backend.maskedLayerNorm`).
    func maskedLayerNorm(_ x: Value, columnMask: Tensor, gamma: Value, beta: Value, epsilon: Float) -> Value
    /// `layerNorm(dropout(x) + residual)`: dropout as `dropout(_:probability:)`.
    func residualLayerNorm(_ x: Value, residual: Value, gamma: Value, beta: Value, epsilon: Float, dropout: Float) -> Value
    /// Rows of `table` picked by i32 `ids`.
    func gather(_ table: Value, ids: Tensor) -> Value
    /// `value` where `mask` is non-zero.
    func maskedFill(_ x: Value, mask: Tensor, value: Float) -> Value
    /// Inverted dropout when training with a seed; the identity otherwise.
    func dropout(_ x: Value, probability: Float) -> Value
    func reshape(_ x: Value, _ shape: [Int]) -> Value
    func transpose(_ x: Value, _ first: Int, _ second: Int) -> Value
    func slice(_ x: Value, axis: Int, _ range: Range<Int>) -> Value
    func sum(_ x: Value, axes: [Int], keepDimensions: Bool) -> Value
    func mean(_ x: Value, axes: [Int], keepDimensions: Bool) -> Value
    /// Scaled dot-product attention over `[B, heads, T, d]` queries, keys and
    /// values: `dropout(softmax(q·kᵀ·scale + bias)) · v`. `bias` broadcasts to
    /// the `[B, heads, T, T]` scores (e.g. `[B, 1, 1, T]`, large negative on padding).
    func attention(query: Value, key: Value, value: Value, bias: Tensor?, scale: Float, dropout: Float) -> Value
    /// Mean cross-entropy of `[N, C]` logits against i32 labels `[N]` (rank 0).
    func crossEntropy(_ logits: Value, labels: Tensor) -> Value

    // MARK: Decoder ops (Llama, GPT-2)

    /// RMS norm over the last axis with `gamma` `[D]` (`Backend.rmsNorm`).
    func rmsNorm(_ x: Value, gamma: Value, epsilon: Float) -> Value
    /// `silu(gate) ⊙ up` (SwiGLU, `Backend.gatedSiLU`).
    func gatedSiLU(gate: Value, up: Value) -> Value
    /// GPT-2's `gelu_new`, the tanh approximation (`Backend.geluTanh`).
    func geluTanh(_ x: Value) -> Value
    /// Rotary position embedding of `[B, T, H, d]` `x` with `[T, d/2]` angle
    /// tables (`Backend.rotary`, forward rotation).
    func rotary(_ x: Value, cos: Tensor, sin: Tensor) -> Value
}

/// Inference: every operation runs at once on the backend and nothing is kept.
public struct Eager: TensorOperations, Sendable {
    public let backend: any Backend

    public init(backend: any Backend) {
        self.backend = backend
    }

    public func tensor(_ value: Tensor) -> Tensor { value }
    public func constant(_ tensor: Tensor) -> Tensor { tensor }

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor {
        backend.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha)
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        backend.linear(x, weight: weight, bias: bias)
    }

    public func add(_ a: Tensor, _ b: Tensor) -> Tensor { backend.add(a, b) }
    public func subtract(_ a: Tensor, _ b: Tensor) -> Tensor { backend.subtract(a, b) }
    public func multiply(_ a: Tensor, _ b: Tensor) -> Tensor { backend.multiply(a, b) }
    public func affine(_ x: Tensor, scale: Float, shift: Float) -> Tensor { backend.affine(x, scale: scale, shift: shift) }
    public func gelu(_ x: Tensor) -> Tensor { backend.gelu(x) }
    public func tanh(_ x: Tensor) -> Tensor { backend.tanh(x) }
    public func softmax(_ x: Tensor) -> Tensor { backend.softmax(x) }
    public func logSoftmax(_ x: Tensor) -> Tensor { backend.logSoftmax(x) }

    public func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> Tensor {
        backend.layerNorm(x, gamma: gamma, beta: beta, epsilon: epsilon).output
    }

    public func maskedLayerNorm(_ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> Tensor {
        backend.maskedLayerNorm(x, columnMask: columnMask, gamma: gamma, beta: beta, epsilon: epsilon).output
    }

    public func residualLayerNorm(
        _ x: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, dropout: Float
    ) -> Tensor {
        backend.residualLayerNorm(x, residual: residual, gamma: gamma, beta: beta, epsilon: epsilon, dropout: nil).output
    }

    public func gather(_ table: Tensor, ids: Tensor) -> Tensor { backend.gather(table, ids) }
    public func maskedFill(_ x: Tensor, mask: Tensor, value: Float) -> Tensor { backend.maskedFill(x, mask: mask, value: value) }
    public func dropout(_ x: Tensor, probability: Float) -> Tensor { x }
    public func reshape(_ x: Tensor, _ shape: [Int]) -> Tensor { x.reshaped(shape) }
    public func transpose(_ x: Tensor, _ first: Int, _ second: Int) -> Tensor { x.transposed(first, second) }
    public func slice(_ x: Tensor, axis: Int, _ range: Range<Int>) -> Tensor { x.sliced(axis: axis, range) }

    public func sum(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        backend.sum(x, axes: axes, keepDimensions: keepDimensions)
    }

    public func mean(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        backend.mean(x, axes: axes, keepDimensions: keepDimensions)
    }

    public func attention(query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: Float) -> Tensor {
        backend.attention(query: query, key: key, value: value, bias: bias, scale: scale, dropout: nil).output.transposed(1, 2)
    }

    public func crossEntropy(_ logits: Tensor, labels: Tensor) -> Tensor {
        backend.crossEntropy(logits, labels: labels).loss
    }

    public func rmsNorm(_ x: Tensor, gamma: Tensor, epsilon: Float) -> Tensor {
        backend.rmsNorm(x, gamma: gamma, epsilon: epsilon).output
    }

    public func gatedSiLU(gate: Tensor, up: Tensor) -> Tensor { backend.gatedSiLU(gate: gate, up: up) }
    public func geluTanh(_ x: Tensor) -> Tensor { backend.geluTanh(x) }

    public func rotary(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        backend.rotary(x, cos: cos, sin: sin, inverse: false)
    }
}

extension TensorOperations {
    public func feedForward(
        _ x: Value, intermediateWeight: Value, intermediateBias: Value?, outputWeight: Value, outputBias: Value?
    ) -> Value {
        linear(gelu(linear(x, weight: intermediateWeight, bias: intermediateBias)), weight: outputWeight, bias: outputBias)
    }

    /// The pre-softmax attention scores `q·kᵀ·scale`, `[B, heads, T, S]`, of
    /// `[B, heads, T, d]` queries and `[B, heads, S, d]` keys (any layout):
    /// what `attention` puts through the softmax, before its bias. `attention`
    /// never exposes them, so a loss on the scores (TinyBERT's attention
    /// distillation) asks for them here: one batched product, differentiable
    /// through `matmul`, computed only where it is called.
    public func attentionScores(query: Value, key: Value, scale: Float) -> Value {
        matmul(query, key, transposeA: false, transposeB: true, alpha: scale)
    }
}
