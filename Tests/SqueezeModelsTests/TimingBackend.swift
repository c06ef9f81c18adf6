import Foundation
import SqueezeTensor

/// A backend that forwards to another and adds up wall time per operation
/// (matrix products split into shared-weight, batched and plain), for
/// profiling the benchmark. Ops run one at a time, so the totals add up.
final class TimingBackend: Backend, @unchecked Sendable {
    let base: any Backend
    private let lock = NSLock()
    private var totals: [String: (seconds: Double, calls: Int)] = [:]

    init(_ base: any Backend) { self.base = base }

    var id: String { base.id }

    private func time<R>(_ name: String, _ body: () -> R) -> R {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        lock.withLock {
            let entry = totals[name] ?? (0, 0)
            totals[name] = (entry.seconds + elapsed, entry.calls + 1)
        }
        return result
    }

    func reset() { lock.withLock { totals = [:] } }

    /// One line per operation, slowest first.
    func report(steps: Int) -> String {
        let rows = lock.withLock { totals.sorted { $0.value.seconds > $1.value.seconds } }
        let total = rows.reduce(0) { $0 + $1.value.seconds }
        return (["ops total \(String(format: "%.3f", total / Double(steps))) s/step"] + rows.map {
            "  \($0.key): \(String(format: "%.1f", $0.value.seconds / Double(steps) * 1000)) ms/step, \($0.value.calls / steps) calls"
        }).joined(separator: "\n")
    }

    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor {
        let kind = a.rank > 2 && b.rank == 2 ? "shared" : a.rank > 2 ? "batched" : "plain"
        return time("matmul \(kind) \(transposeA ? "T" : "N")\(transposeB ? "T" : "N")") {
            base.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha)
        }
    }
    func add(_ a: Tensor, _ b: Tensor) -> Tensor { time("add") { base.add(a, b) } }
    func subtract(_ a: Tensor, _ b: Tensor) -> Tensor { time("subtract") { base.subtract(a, b) } }
    func multiply(_ a: Tensor, _ b: Tensor) -> Tensor { time("multiply") { base.multiply(a, b) } }
    func affine(_ a: Tensor, scale: Float, shift: Float) -> Tensor { time("affine") { base.affine(a, scale: scale, shift: shift) } }
    func reduce(_ gradient: Tensor, toShape shape: [Int]) -> Tensor { time("reduce") { base.reduce(gradient, toShape: shape) } }
    func gelu(_ x: Tensor) -> Tensor { time("gelu") { base.gelu(x) } }
    func geluBackward(_ x: Tensor, _ dy: Tensor) -> Tensor { time("geluBackward") { base.geluBackward(x, dy) } }
    func tanh(_ x: Tensor) -> Tensor { time("tanh") { base.tanh(x) } }
    func tanhBackward(_ y: Tensor, _ dy: Tensor) -> Tensor { time("tanhBackward") { base.tanhBackward(y, dy) } }
    func geluTanh(_ x: Tensor) -> Tensor { time("geluTanh") { base.geluTanh(x) } }
    func geluTanhBackward(_ x: Tensor, _ dy: Tensor) -> Tensor { time("geluTanhBackward") { base.geluTanhBackward(x, dy) } }
    func gatedSiLU(gate: Tensor, up: Tensor) -> Tensor { time("gatedSiLU") { base.gatedSiLU(gate: gate, up: up) } }
    func gatedSiLUBackward(_ dy: Tensor, gate: Tensor, up: Tensor) -> (gate: Tensor, up: Tensor) {
        time("gatedSiLUBackward") { base.gatedSiLUBackward(dy, gate: gate, up: up) }
    }
    func rotary(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) -> Tensor {
        time(inverse ? "rotaryInverse" : "rotary") { base.rotary(x, cos: cos, sin: sin, inverse: inverse) }
    }
    func rmsNorm(_ x: Tensor, gamma: Tensor, epsilon: Float) -> RMSNormResult {
        time("rmsNorm") { base.rmsNorm(x, gamma: gamma, epsilon: epsilon) }
    }
    func rmsNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, inverseRMS: Tensor) -> RMSNormGradients {
        time("rmsNormBackward") { base.rmsNormBackward(dy, x, gamma: gamma, inverseRMS: inverseRMS) }
    }
    func softmax(_ x: Tensor) -> Tensor { time("softmax") { base.softmax(x) } }
    func softmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor { time("softmaxBackward") { base.softmaxBackward(y, dy) } }
    func logSoftmax(_ x: Tensor) -> Tensor { time("logSoftmax") { base.logSoftmax(x) } }
    func logSoftmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor { time("logSoftmaxBackward") { base.logSoftmaxBackward(y, dy) } }
    func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        time("layerNorm") { base.layerNorm(x, gamma: gamma, beta: beta, epsilon: epsilon) }
    }
    func layerNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor) -> LayerNormGradients {
        time("layerNormBackward") { base.layerNormBackward(dy, x, gamma: gamma, mean: mean, inverseStd: inverseStd) }
    }
    func maskedLayerNorm(_ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        time("maskedLayerNorm") { base.maskedLayerNorm(x, columnMask: columnMask, gamma: gamma, beta: beta, epsilon: epsilon) }
    }
    func maskedLayerNormBackward(
        _ dy: Tensor, _ x: Tensor, columnMask: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        time("maskedLayerNormBackward") {
            base.maskedLayerNormBackward(dy, x, columnMask: columnMask, gamma: gamma, mean: mean, inverseStd: inverseStd)
        }
    }
    func gather(_ table: Tensor, _ ids: Tensor) -> Tensor { time("gather") { base.gather(table, ids) } }
    func scatterAdd(_ dy: Tensor, _ ids: Tensor, rows: Int) -> Tensor { time("scatterAdd") { base.scatterAdd(dy, ids, rows: rows) } }
    func maskedFill(_ x: Tensor, mask: Tensor, value: Float) -> Tensor { time("maskedFill") { base.maskedFill(x, mask: mask, value: value) } }
    func sum(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor { time("sum") { base.sum(x, axes: axes, keepDimensions: keepDimensions) } }
    func mean(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor { time("mean") { base.mean(x, axes: axes, keepDimensions: keepDimensions) } }
    func max(_ x: Tensor, axis: Int, keepDimensions: Bool) -> (values: Tensor, indices: Tensor) {
        time("max") { base.max(x, axis: axis, keepDimensions: keepDimensions) }
    }
    func sumOfSquares(_ x: Tensor) -> Double { time("sumOfSquares") { base.sumOfSquares(x) } }
    func dropout(_ x: Tensor, probability p: Float, seed: UInt64, stream: UInt64) -> (output: Tensor, mask: Tensor) {
        time("dropout") { base.dropout(x, probability: p, seed: seed, stream: stream) }
    }
    func crossEntropy(_ logits: Tensor, labels: Tensor) -> (loss: Tensor, probabilities: Tensor) {
        time("crossEntropy") { base.crossEntropy(logits, labels: labels) }
    }
    func crossEntropyBackward(probabilities: Tensor, labels: Tensor, dLoss: Float) -> Tensor {
        time("crossEntropyBackward") { base.crossEntropyBackward(probabilities: probabilities, labels: labels, dLoss: dLoss) }
    }
    func adamWUpdate(
        parameter: inout Tensor, gradient: Tensor, firstMoment: inout Tensor, secondMoment: inout Tensor,
        hyperparameters: AdamWHyperparameters, step: Int
    ) {
        time("adamWUpdate") {
            base.adamWUpdate(
                parameter: &parameter, gradient: gradient, firstMoment: &firstMoment, secondMoment: &secondMoment,
                hyperparameters: hyperparameters, step: step)
        }
    }
    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        time("linear") { base.linear(x, weight: weight, bias: bias) }
    }
    func geluWithDerivative(_ x: Tensor) -> (output: Tensor, derivative: Tensor) {
        time("geluWithDerivative") { base.geluWithDerivative(x) }
    }
    func residualLayerNorm(
        _ x: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, dropout: DropoutParameters?
    ) -> ResidualLayerNormResult {
        time("residualLayerNorm") {
            base.residualLayerNorm(x, residual: residual, gamma: gamma, beta: beta, epsilon: epsilon, dropout: dropout)
        }
    }
    func residualLayerNormBackward(
        _ dy: Tensor, sum: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, dropout: DropoutParameters?
    ) -> ResidualLayerNormGradients {
        time("residualLayerNormBackward") {
            base.residualLayerNormBackward(dy, sum: sum, gamma: gamma, mean: mean, inverseStd: inverseStd, dropout: dropout)
        }
    }
    func attention(
        query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: DropoutParameters?
    ) -> AttentionResult {
        time("attention") { base.attention(query: query, key: key, value: value, bias: bias, scale: scale, dropout: dropout) }
    }
    func attentionBackward(
        _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, probabilities: Tensor, scale: Float,
        dropout: DropoutParameters?, wantQuery: Bool, wantKey: Bool, wantValue: Bool
    ) -> AttentionGradients {
        time("attentionBackward") {
            base.attentionBackward(
                gradient, query: query, key: key, value: value, probabilities: probabilities, scale: scale,
                dropout: dropout, wantQuery: wantQuery, wantKey: wantKey, wantValue: wantValue)
        }
    }
    func activationRange(_ x: Tensor, perRow: Bool) -> ActivationRange {
        time("activationRange") { base.activationRange(x, perRow: perRow) }
    }
    func quantize(_ x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        time("quantize") { base.quantize(x, quantization) }
    }
    func quantize(geluOf x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        time("quantizeGelu") { base.quantize(geluOf: x, quantization) }
    }
    func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        output: QuantizedLinearOutput
    ) -> Tensor {
        time("quantizedLinear") {
            base.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: output)
        }
    }
    func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        geluCodes: ActivationQuantization
    ) -> Tensor {
        time("quantizedLinearGelu") {
            base.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, geluCodes: geluCodes)
        }
    }
    func quantizedLinear(_ x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?) -> Tensor {
        time("quantizedLinearFloat") { base.quantizedLinear(x, quantization: quantization, weights: weights, bias: bias) }
    }
    func weightOnlyLinear(_ x: Tensor, weights: PackedGroupWeights, bias: Tensor?) -> Tensor {
        time("weightOnlyLinear") { base.weightOnlyLinear(x, weights: weights, bias: bias) }
    }
}
