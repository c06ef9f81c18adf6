import SqueezeModels
import SqueezeTensor

/// How one Linear layer's activations are quantised for the int8 product.
public enum ActivationParameters: Sendable, Hashable {
    /// Fixed per-tensor parameters, chosen by calibration (static W8A8).
    case fixed(ActivationQuantization)
    /// The range of each batch, measured at run time (`Backend.activationRange`)
    /// per tensor or per row, mapped asymmetrically onto `range` (dynamic W8A8).
    case dynamic(perRow: Bool, range: ClosedRange<Int32>)

    /// The integers the activations are quantised to.
    public var range: ClosedRange<Int32> {
        switch self {
        case .fixed(let quantization): quantization.range
        case .dynamic(_, let range): range
        }
    }
}

/// A Linear layer run as u8 activations × s8 weights → exact s32 → f32:
/// the weight quantised symmetrically per output row and packed once, the
/// activations quantised per `activations`.
public struct Int8Linear: Sendable {
    public let weights: PackedInt8Weights
    public let activations: ActivationParameters

    public init(weights: PackedInt8Weights, activations: ActivationParameters) {
        self.weights = weights
        self.activations = activations
    }

    /// The quantisation `apply` uses for the f32 input `x` (`[…, in]`).
    public func activationQuantization(for x: Tensor, backend: any Backend) -> ActivationQuantization {
        switch activations {
        case .fixed(let quantization):
            return quantization
        case .dynamic(let perRow, let range):
            return ActivationQuantization(ranges: backend.activationRange(x, perRow: perRow), range: range)
        }
    }

    /// `x · Wᵀ + bias` through the int8 product: `[…, in]` f32 → `[…, out]` f32.
    public func apply(_ x: Tensor, bias: Tensor?, backend: any Backend) -> Tensor {
        backend.quantizedLinear(x, quantization: activationQuantization(for: x, backend: backend), weights: weights, bias: bias)
    }

    /// The int8 product of already quantised activations (u8 `[…, in]`,
    /// quantised with `quantization`): `[…, out]` f32, the same values as
    /// `apply` of the f32 input they came from.
    public func apply(codes: Tensor, quantization: ActivationQuantization, bias: Tensor?, backend: any Backend) -> Tensor {
        backend.quantizedLinear(quantized: codes, quantization: quantization, weights: weights, bias: bias, output: .float)
    }
}

/// A Linear layer run with int4/int8 per-group weights and f32 activations:
/// `Backend.weightOnlyLinear` dequantizes the codes on the fly.
public struct WeightOnlyLinear: Sendable {
    public let weights: PackedGroupWeights
    /// The signed codes, i8 `[out, in]`, unpacked once: the forward pass reads
    /// a weight's shape every call, which must not unpack the panels.
    public let codes: Tensor

    public init(weights: PackedGroupWeights) {
        self.weights = weights
        self.codes = weights.codes
    }

    /// `x · Ŵᵀ + bias`: `[…, in]` f32 → `[…, out]` f32.
    public func apply(_ x: Tensor, bias: Tensor?, backend: any Backend) -> Tensor {
        backend.weightOnlyLinear(x, weights: weights, bias: bias)
    }
}

/// One Linear weight as inference runs it, with the module's name
/// (`encoder.layer.0.attention.self.query`, `pooler.dense`, `classifier`).
public struct InferenceLinear: Sendable {
    /// What computes the product.
    public enum Kernel: Sendable {
        /// The f32 weight `[out, in]`, through `Backend.linear`.
        case float(Tensor)
        /// W8A8 through `Backend.quantizedLinear`.
        case int8(Int8Linear)
        /// Int4/int8 per-group weights, f32 activations, through `Backend.weightOnlyLinear`.
        case weightOnly(WeightOnlyLinear)
    }

    public let module: String
    public let kernel: Kernel

    public init(module: String, kernel: Kernel) {
        self.module = module
        self.kernel = kernel
    }

    /// The stored weight `[out, in]`: f32, the int8 values, or the weight-only codes.
    public var weight: Tensor {
        switch kernel {
        case .float(let weight): weight
        case .int8(let linear): linear.weights.values
        case .weightOnly(let linear): linear.codes
        }
    }

    /// True when the weight is stored quantized (int8 or weight-only).
    public var isQuantized: Bool {
        if case .float = kernel { return false }
        return true
    }
}

/// A parameter or activation of an inference forward pass: a tensor, or a
/// Linear weight (whose product `InferenceOperations.linear` dispatches).
public enum InferenceValue: Sendable {
    case tensor(Tensor)
    case linear(InferenceLinear)

    /// The tensor; a Linear weight gives its stored weight (f32 or int8
    /// values), whose shape is all the forward pass reads outside `linear`.
    public var tensor: Tensor {
        switch self {
        case .tensor(let tensor): tensor
        case .linear(let linear): linear.weight
        }
    }
}

/// Eager inference over `InferenceValue`s: the same operations as `Eager`,
/// except that `linear` runs each weight's own kernel (f32 or int8), so the
/// one BERT forward pass (`BertModel.logits`) serves quantised models too.
/// There is no tape: a model with int8 layers cannot be trained.
public struct InferenceOperations: TensorOperations {
    public typealias Value = InferenceValue

    private let eager: Eager
    /// Called with each named Linear's module name and f32 input before the
    /// layer runs (calibration watches the inputs through it); the input as
    /// the graph has it, before any `inputMultipliers`.
    public var linearInputs: ((String, Tensor) -> Void)?
    /// Per-input-channel multipliers (f32 `[in]`) by module, applied to the
    /// input of the named f32 Linears before their product: the float form
    /// of SmoothQuant's `X · diag(s)⁻¹` (the weights hold `W · diag(s)`).
    /// Int8 Linears carry theirs in their activation quantization.
    public var inputMultipliers: [String: Tensor]
    /// The latest int8 Linear input's codes, which the next int8 Linear
    /// reuses when it reads the same tensor with the same parameters (a
    /// layer's query, key and value projections share one quantisation).
    private let latestCodes: LatestCodes?
    /// Whether int8 Linears share codes and take GELU codes straight from
    /// the pre-activation; false runs every op on its own (the same results).
    public let fusing: Bool

    /// `fusing: false` is for tests and benchmarks that compare the fused
    /// int8 path with the op-by-op one.
    public init(
        backend: any Backend, fusing: Bool = true, inputMultipliers: [String: Tensor] = [:], linearInputs: ((String, Tensor) -> Void)? = nil
    ) {
        self.eager = Eager(backend: backend)
        self.linearInputs = linearInputs
        self.inputMultipliers = inputMultipliers
        self.fusing = fusing
        self.latestCodes = fusing ? LatestCodes() : nil
    }

    public var backend: any Backend { eager.backend }

    public func tensor(_ value: InferenceValue) -> Tensor { value.tensor }

    public func constant(_ tensor: Tensor) -> InferenceValue { .tensor(tensor) }

    public func linear(_ x: InferenceValue, weight: InferenceValue, bias: InferenceValue?) -> InferenceValue {
        let input = tensor(x)
        let biasTensor = bias.map(tensor)
        guard case .linear(let linear) = weight else {
            return .tensor(eager.linear(input, weight: tensor(weight), bias: biasTensor))
        }
        linearInputs?(linear.module, input)
        switch linear.kernel {
        case .float(let matrix):
            let scaled = inputMultipliers[linear.module].map { eager.multiply(input, $0) } ?? input
            return .tensor(eager.linear(scaled, weight: matrix, bias: biasTensor))
        case .int8(let quantized):
            let parameters = quantized.activationQuantization(for: input, backend: backend)
            guard let latestCodes else { return .tensor(quantized.apply(input, bias: biasTensor, backend: backend)) }
            let codes = latestCodes.codes(of: input, parameters) { backend.quantize(input, parameters) }
            return .tensor(quantized.apply(codes: codes, quantization: parameters, bias: biasTensor, backend: backend))
        case .weightOnly(let quantized): return .tensor(quantized.apply(input, bias: biasTensor, backend: backend))
        }
    }

    /// With a static int8 output layer (and no `linearInputs` to feed), its
    /// codes come without f32 GELU values: from the int8 intermediate
    /// product block by block (`Backend.quantizedLinear(quantized:…geluCodes:)`),
    /// or from an f32 one through `Backend.quantize(geluOf:)`. The same codes
    /// as quantising the GELU values. A smoothed output layer (channel
    /// multipliers) runs op by op.
    public func feedForward(
        _ x: InferenceValue, intermediateWeight: InferenceValue, intermediateBias: InferenceValue?,
        outputWeight: InferenceValue, outputBias: InferenceValue?
    ) -> InferenceValue {
        guard let latestCodes, linearInputs == nil, case .linear(let second) = outputWeight,
            case .int8(let output) = second.kernel, case .fixed(let outputParameters) = output.activations,
            outputParameters.channelMultipliers == nil
        else {
            let inner = linear(x, weight: intermediateWeight, bias: intermediateBias)
            return linear(gelu(inner), weight: outputWeight, bias: outputBias)
        }
        let codes: Tensor
        if case .linear(let first) = intermediateWeight, case .int8(let intermediate) = first.kernel {
            let input = tensor(x)
            let parameters = intermediate.activationQuantization(for: input, backend: backend)
            let inputCodes = latestCodes.codes(of: input, parameters) { backend.quantize(input, parameters) }
            codes = backend.quantizedLinear(
                quantized: inputCodes, quantization: parameters, weights: intermediate.weights,
                bias: intermediateBias.map(tensor), geluCodes: outputParameters)
        } else {
            codes = backend.quantize(geluOf: tensor(linear(x, weight: intermediateWeight, bias: intermediateBias)), outputParameters)
        }
        return .tensor(output.apply(codes: codes, quantization: outputParameters, bias: outputBias.map(tensor), backend: backend))
    }

    public func matmul(_ a: InferenceValue, _ b: InferenceValue, transposeA: Bool, transposeB: Bool, alpha: Float) -> InferenceValue {
        .tensor(eager.matmul(tensor(a), tensor(b), transposeA: transposeA, transposeB: transposeB, alpha: alpha))
    }

    public func add(_ a: InferenceValue, _ b: InferenceValue) -> InferenceValue { .tensor(eager.add(tensor(a), tensor(b))) }
    public func subtract(_ a: InferenceValue, _ b: InferenceValue) -> InferenceValue { .tensor(eager.subtract(tensor(a), tensor(b))) }
    public func multiply(_ a: InferenceValue, _ b: InferenceValue) -> InferenceValue { .tensor(eager.multiply(tensor(a), tensor(b))) }

    public func affine(_ x: InferenceValue, scale: Float, shift: Float) -> InferenceValue {
        .tensor(eager.affine(tensor(x), scale: scale, shift: shift))
    }

    public func gelu(_ x: InferenceValue) -> InferenceValue { .tensor(eager.gelu(tensor(x))) }
    public func tanh(_ x: InferenceValue) -> InferenceValue { .tensor(eager.tanh(tensor(x))) }
    public func softmax(_ x: InferenceValue) -> InferenceValue { .tensor(eager.softmax(tensor(x))) }
    public func logSoftmax(_ x: InferenceValue) -> InferenceValue { .tensor(eager.logSoftmax(tensor(x))) }

    public func layerNorm(_ x: InferenceValue, gamma: InferenceValue, beta: InferenceValue, epsilon: Float) -> InferenceValue {
        .tensor(eager.layerNorm(tensor(x), gamma: tensor(gamma), beta: tensor(beta), epsilon: epsilon))
    }

    public func maskedLayerNorm(
        _ x: InferenceValue, columnMask: Tensor, gamma: InferenceValue, beta: InferenceValue, epsilon: Float
    ) -> InferenceValue {
        .tensor(eager.maskedLayerNorm(tensor(x), columnMask: columnMask, gamma: tensor(gamma), beta: tensor(beta), epsilon: epsilon))
    }

    public func residualLayerNorm(
        _ x: InferenceValue, residual: InferenceValue, gamma: InferenceValue, beta: InferenceValue, epsilon: Float, dropout: Float
    ) -> InferenceValue {
        .tensor(eager.residualLayerNorm(
            tensor(x), residual: tensor(residual), gamma: tensor(gamma), beta: tensor(beta), epsilon: epsilon, dropout: dropout))
    }

    public func gather(_ table: InferenceValue, ids: Tensor) -> InferenceValue { .tensor(eager.gather(tensor(table), ids: ids)) }

    public func rmsNorm(_ x: InferenceValue, gamma: InferenceValue, epsilon: Float) -> InferenceValue {
        .tensor(eager.rmsNorm(tensor(x), gamma: tensor(gamma), epsilon: epsilon))
    }

    public func gatedSiLU(gate: InferenceValue, up: InferenceValue) -> InferenceValue {
        .tensor(eager.gatedSiLU(gate: tensor(gate), up: tensor(up)))
    }

    public func geluTanh(_ x: InferenceValue) -> InferenceValue { .tensor(eager.geluTanh(tensor(x))) }

    public func rotary(_ x: InferenceValue, cos: Tensor, sin: Tensor) -> InferenceValue {
        .tensor(eager.rotary(tensor(x), cos: cos, sin: sin))
    }

    public func maskedFill(_ x: InferenceValue, mask: Tensor, value: Float) -> InferenceValue {
        .tensor(eager.maskedFill(tensor(x), mask: mask, value: value))
    }

    public func dropout(_ x: InferenceValue, probability: Float) -> InferenceValue { x }
    public func reshape(_ x: InferenceValue, _ shape: [Int]) -> InferenceValue { .tensor(eager.reshape(tensor(x), shape)) }

    public func transpose(_ x: InferenceValue, _ first: Int, _ second: Int) -> InferenceValue {
        .tensor(eager.transpose(tensor(x), first, second))
    }

    public func slice(_ x: InferenceValue, axis: Int, _ range: Range<Int>) -> InferenceValue {
        .tensor(eager.slice(tensor(x), axis: axis, range))
    }

    public func sum(_ x: InferenceValue, axes: [Int], keepDimensions: Bool) -> InferenceValue {
        .tensor(eager.sum(tensor(x), axes: axes, keepDimensions: keepDimensions))
    }

    public func mean(_ x: InferenceValue, axes: [Int], keepDimensions: Bool) -> InferenceValue {
        .tensor(eager.mean(tensor(x), axes: axes, keepDimensions: keepDimensions))
    }

    public func attention(
        query: InferenceValue, key: InferenceValue, value: InferenceValue, bias: Tensor?, scale: Float, dropout: Float
    ) -> InferenceValue {
        .tensor(eager.attention(query: tensor(query), key: tensor(key), value: tensor(value), bias: bias, scale: scale, dropout: dropout))
    }

    public func crossEntropy(_ logits: InferenceValue, labels: Tensor) -> InferenceValue {
        .tensor(eager.crossEntropy(tensor(logits), labels: labels))
    }
}

/// One remembered quantisation: an f32 tensor (kept alive, so its storage
/// cannot be reused while remembered), its parameters and its codes.
private final class LatestCodes {
    private var latest: (input: Tensor, quantization: ActivationQuantization, codes: Tensor)?

    /// The codes of `input` under `quantization`: the remembered ones when
    /// `input` is the same view of the same storage, else `quantize()`'s,
    /// which are remembered instead.
    func codes(of input: Tensor, _ quantization: ActivationQuantization, quantize: () -> Tensor) -> Tensor {
        if let latest, latest.quantization == quantization, latest.input.storage === input.storage,
            latest.input.offset == input.offset, latest.input.shape == input.shape, latest.input.strides == input.strides
        {
            return latest.codes
        }
        let codes = quantize()
        latest = (input, quantization, codes)
        return codes
    }
}

extension BertWeights {
    /// The Linear module a parameter name belongs to when it is a Linear's
    /// weight (`encoder.layer.0.attention.self.query.weight` →
    /// `encoder.layer.0.attention.self.query`); nil for biases, embeddings
    /// and LayerNorms.
    public static func linearModule(ofParameter name: String) -> String? {
        guard name.hasSuffix(".weight"), !name.hasPrefix("embeddings."), !name.contains("LayerNorm") else { return nil }
        return String(name.dropLast(".weight".count))
    }

    /// The Linear modules in parameter order: per layer query, key, value,
    /// attention output, intermediate, output; then the pooler (when present)
    /// and the classifier.
    public var linearModules: [String] { names.compactMap(Self.linearModule(ofParameter:)) }
}

extension BertModel {
    /// The weights for `InferenceOperations`, every Linear f32.
    public var inferenceWeights: BertWeights<InferenceValue> {
        weights.map { name, tensor in
            guard let module = BertWeights<Tensor>.linearModule(ofParameter: name) else { return .tensor(tensor) }
            return .linear(InferenceLinear(module: module, kernel: .float(tensor)))
        }
    }
}
