import Foundation
import Synchronization
import SqueezeTensor

/// A backend that runs every op on `base` and adds each inference op's wall
/// time to a category (`squeeze bench quantized-bert`'s per-op breakdown).
/// Results are `base`'s, except that the f32-input `quantizedLinear` is
/// timed as its two parts, `quantize` then the product of the u8 codes, so
/// the product scans its activations for their largest value as the fused
/// call does not (a few microseconds a call).
final class ProfilingBackend: Backend {
    /// Where the time of an op goes.
    enum Category: String, CaseIterable, Sendable {
        case sgemmLinear = "f32 linear (sgemm)"
        case int8Linear = "int8 linear (GEMM)"
        case quantize = "quantize f32 -> u8"
        case geluQuantize = "gelu + quantize (fused)"
        case int8GeluLinear = "int8 GEMM + gelu + quantize (fused)"
        case layerNorm = "layer norm (+ residual)"
        case gelu = "gelu"
        case attention = "attention (QK^T, softmax, PV)"
        case other = "other (embeddings, pooling, ...)"
    }

    let base: any Backend
    private let totals = Mutex<[Category: Double]>([:])

    init(base: any Backend) {
        self.base = base
    }

    var id: String { base.id }

    /// The seconds spent per category since the last `reset`.
    var seconds: [Category: Double] { totals.withLock { $0 } }

    func reset() { totals.withLock { $0 = [:] } }

    private func timed<Result>(_ category: Category, _ body: () -> Result) -> Result {
        let start = ContinuousClock.now
        let result = body()
        let elapsed = BertBenchmark.seconds(since: start)
        totals.withLock { $0[category, default: 0] += elapsed }
        return result
    }

    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor {
        timed(.sgemmLinear) { base.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha) }
    }

    func add(_ a: Tensor, _ b: Tensor) -> Tensor { timed(.other) { base.add(a, b) } }
    func subtract(_ a: Tensor, _ b: Tensor) -> Tensor { timed(.other) { base.subtract(a, b) } }
    func multiply(_ a: Tensor, _ b: Tensor) -> Tensor { timed(.other) { base.multiply(a, b) } }
    func affine(_ a: Tensor, scale: Float, shift: Float) -> Tensor { timed(.other) { base.affine(a, scale: scale, shift: shift) } }
    func reduce(_ gradient: Tensor, toShape shape: [Int]) -> Tensor { base.reduce(gradient, toShape: shape) }
    func gelu(_ x: Tensor) -> Tensor { timed(.gelu) { base.gelu(x) } }
    func geluBackward(_ x: Tensor, _ dy: Tensor) -> Tensor { base.geluBackward(x, dy) }
    func tanh(_ x: Tensor) -> Tensor { timed(.other) { base.tanh(x) } }
    func tanhBackward(_ y: Tensor, _ dy: Tensor) -> Tensor { base.tanhBackward(y, dy) }
    func geluTanh(_ x: Tensor) -> Tensor { timed(.gelu) { base.geluTanh(x) } }
    func geluTanhBackward(_ x: Tensor, _ dy: Tensor) -> Tensor { base.geluTanhBackward(x, dy) }
    func gatedSiLU(gate: Tensor, up: Tensor) -> Tensor { timed(.other) { base.gatedSiLU(gate: gate, up: up) } }
    func gatedSiLUBackward(_ dy: Tensor, gate: Tensor, up: Tensor) -> (gate: Tensor, up: Tensor) {
        base.gatedSiLUBackward(dy, gate: gate, up: up)
    }
    func rotary(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) -> Tensor {
        timed(.other) { base.rotary(x, cos: cos, sin: sin, inverse: inverse) }
    }
    func rmsNorm(_ x: Tensor, gamma: Tensor, epsilon: Float) -> RMSNormResult {
        timed(.layerNorm) { base.rmsNorm(x, gamma: gamma, epsilon: epsilon) }
    }
    func rmsNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, inverseRMS: Tensor) -> RMSNormGradients {
        base.rmsNormBackward(dy, x, gamma: gamma, inverseRMS: inverseRMS)
    }
    func softmax(_ x: Tensor) -> Tensor { timed(.other) { base.softmax(x) } }
    func softmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor { base.softmaxBackward(y, dy) }
    func logSoftmax(_ x: Tensor) -> Tensor { timed(.other) { base.logSoftmax(x) } }
    func logSoftmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor { base.logSoftmaxBackward(y, dy) }

    func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        timed(.layerNorm) { base.layerNorm(x, gamma: gamma, beta: beta, epsilon: epsilon) }
    }

    func layerNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor) -> LayerNormGradients {
        base.layerNormBackward(dy, x, gamma: gamma, mean: mean, inverseStd: inverseStd)
    }

    func maskedLayerNorm(_ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        timed(.layerNorm) { base.maskedLayerNorm(x, columnMask: columnMask, gamma: gamma, beta: beta, epsilon: epsilon) }
    }

    func maskedLayerNormBackward(
        _ dy: Tensor, _ x: Tensor, columnMask: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        base.maskedLayerNormBackward(dy, x, columnMask: columnMask, gamma: gamma, mean: mean, inverseStd: inverseStd)
    }

    func gather(_ table: Tensor, _ ids: Tensor) -> Tensor { timed(.other) { base.gather(table, ids) } }
    func scatterAdd(_ dy: Tensor, _ ids: Tensor, rows: Int) -> Tensor { base.scatterAdd(dy, ids, rows: rows) }
    func maskedFill(_ x: Tensor, mask: Tensor, value: Float) -> Tensor { timed(.other) { base.maskedFill(x, mask: mask, value: value) } }

    func sum(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        timed(.other) { base.sum(x, axes: axes, keepDimensions: keepDimensions) }
    }

    func mean(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        timed(.other) { base.mean(x, axes: axes, keepDimensions: keepDimensions) }
    }

    func max(_ x: Tensor, axis: Int, keepDimensions: Bool) -> (values: Tensor, indices: Tensor) {
        timed(.other) { base.max(x, axis: axis, keepDimensions: keepDimensions) }
    }

    func sumOfSquares(_ x: Tensor) -> Double { base.sumOfSquares(x) }

    func dropout(_ x: Tensor, probability p: Float, seed: UInt64, stream: UInt64) -> (output: Tensor, mask: Tensor) {
        base.dropout(x, probability: p, seed: seed, stream: stream)
    }

    func crossEntropy(_ logits: Tensor, labels: Tensor) -> (loss: Tensor, probabilities: Tensor) {
        base.crossEntropy(logits, labels: labels)
    }

    func crossEntropyBackward(probabilities: Tensor, labels: Tensor, dLoss: Float) -> Tensor {
        base.crossEntropyBackward(probabilities: probabilities, labels: labels, dLoss: dLoss)
    }

    func adamWUpdate(
        parameter: inout Tensor, gradient: Tensor, firstMoment: inout Tensor, secondMoment: inout Tensor,
        hyperparameters: AdamWHyperparameters, step: Int
    ) {
        base.adamWUpdate(
            parameter: &parameter, gradient: gradient, firstMoment: &firstMoment, secondMoment: &secondMoment,
            hyperparameters: hyperparameters, step: step)
    }

    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        timed(.sgemmLinear) { base.linear(x, weight: weight, bias: bias) }
    }

    func geluWithDerivative(_ x: Tensor) -> (output: Tensor, derivative: Tensor) { base.geluWithDerivative(x) }

    func residualLayerNorm(
        _ x: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, dropout: DropoutParameters?
    ) -> ResidualLayerNormResult {
        timed(.layerNorm) { base.residualLayerNorm(x, residual: residual, gamma: gamma, beta: beta, epsilon: epsilon, dropout: dropout) }
    }

    func residualLayerNormBackward(
        _ dy: Tensor, sum: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, dropout: DropoutParameters?
    ) -> ResidualLayerNormGradients {
        base.residualLayerNormBackward(dy, sum: sum, gamma: gamma, mean: mean, inverseStd: inverseStd, dropout: dropout)
    }

    func attention(
        query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: DropoutParameters?
    ) -> AttentionResult {
        timed(.attention) { base.attention(query: query, key: key, value: value, bias: bias, scale: scale, dropout: dropout) }
    }

    func attentionBackward(
        _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, probabilities: Tensor, scale: Float,
        dropout: DropoutParameters?, wantQuery: Bool, wantKey: Bool, wantValue: Bool
    ) -> AttentionGradients {
        base.attentionBackward(
            gradient, query: query, key: key, value: value, probabilities: probabilities, scale: scale, dropout: dropout,
            wantQuery: wantQuery, wantKey: wantKey, wantValue: wantValue)
    }

    func activationRange(_ x: Tensor, perRow: Bool) -> ActivationRange {
        timed(.quantize) { base.activationRange(x, perRow: perRow) }
    }

    func quantize(_ x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        timed(.quantize) { base.quantize(x, quantization) }
    }

    func quantize(geluOf x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        timed(.geluQuantize) { base.quantize(geluOf: x, quantization) }
    }

    func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        output: QuantizedLinearOutput
    ) -> Tensor {
        timed(.int8Linear) {
            base.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: output)
        }
    }

    func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        geluCodes: ActivationQuantization
    ) -> Tensor {
        timed(.int8GeluLinear) {
            base.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, geluCodes: geluCodes)
        }
    }

    func quantizedLinear(_ x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?) -> Tensor {
        let codes = quantize(x, quantization)
        return quantizedLinear(quantized: codes, quantization: quantization, weights: weights, bias: bias, output: .float)
    }

    func weightOnlyLinear(_ x: Tensor, weights: PackedGroupWeights, bias: Tensor?) -> Tensor {
        timed(.sgemmLinear) { base.weightOnlyLinear(x, weights: weights, bias: bias) }
    }
}
