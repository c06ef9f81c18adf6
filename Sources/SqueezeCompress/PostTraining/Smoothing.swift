import Foundation
import SqueezeModels
import SqueezeTensor

/// SmoothQuant (Xiao et al., 2023) for post-LN BERT: per input channel `j`
/// of a Linear's input `X`, `s_j = max|X_j|^α / max|W_j|^(1−α)` (the weight
/// maximum over every Linear that reads `X`), then `X' = X · diag(s)⁻¹` and
/// `W' = W · diag(s)`, so `X' · W'ᵀ = X · Wᵀ` while the activations' outlier
/// channels shrink and the weights' columns grow to meet them.
///
/// The paper folds `diag(s)⁻¹` into the preceding LayerNorm's γ and β. BERT
/// is post-LN: a LayerNorm's output is both the next sublayer's input and
/// the residual added after it, so dividing γ and β would change the
/// residual too. Two exact folds instead (docs/quantized-models.md):
///
/// - `activationQuantization`: `attention.self.{query,key,value}` (one
///   factor for the three: they read one input and share its codes) and
///   `intermediate.dense`. `1/s` joins the input's quantization
///   (`ActivationQuantization.channelMultipliers`: one multiply per element,
///   as before) and `W · diag(s)` the int8 weights; the f32 graph is untouched.
/// - `valueProjection`: `attention.output.dense` reads the attention
///   context, which is linear in `V` per channel (`Σ_t p_t · v_tj`), so
///   dividing the value projection's output row `j` and bias `j` by `s_j`
///   divides context channel `j` by `s_j` exactly; the f32 graph carries
///   the smoothed context.
///
/// Not smoothed: `output.dense` (its input is GELU's output: nothing before
/// it to fold into, and its int8 codes come fused from the GELU), the pooler
/// and the classifier; and any skipped (f32) Linear.
public enum SmoothQuant {
    /// `s_j = max|X_j|^α / max|W_j|^(1−α)` per channel; 1 where either
    /// maximum is 0 (a channel never seen, or no weight reads it) or the
    /// result is not a positive normal float.
    public static func factors(activationMaxima: [Float], weightMaxima: [Float], alpha: Double) -> [Float] {
        precondition(activationMaxima.count == weightMaxima.count, "SmoothQuant.factors: one weight maximum per channel")
        return zip(activationMaxima, weightMaxima).map { x, w in
            guard x > 0, w > 0, x.isFinite, w.isFinite else { return 1 }
            let s = Float(pow(Double(x), alpha) / pow(Double(w), 1 - alpha))
            return s.isNormal && s > 0 ? s : 1
        }
    }

    /// The smoothing groups of `model` among the `quantized` modules, in
    /// model order; `attentionOutput: false` leaves the attention output
    /// projections (the value-projection fold) out.
    public static func groups(of model: BertModel, quantized: Set<String>, attentionOutput: Bool = true) -> [SmoothingGroup] {
        var groups: [SmoothingGroup] = []
        for (index, layer) in model.weights.layers.enumerated() {
            let prefix = "encoder.layer.\(index)."
            let projections = ["attention.self.query", "attention.self.key", "attention.self.value"].map { prefix + $0 }
                .filter(quantized.contains)
            if !projections.isEmpty { groups.append(SmoothingGroup(modules: projections, fold: .activationQuantization)) }
            let output = prefix + "attention.output.dense"
            if attentionOutput, quantized.contains(output), layer.value.weight.shape[0] > 0 {
                groups.append(SmoothingGroup(modules: [output], fold: .valueProjection(prefix + "attention.self.value")))
            }
            let intermediate = prefix + "intermediate.dense"
            if quantized.contains(intermediate) { groups.append(SmoothingGroup(modules: [intermediate], fold: .activationQuantization)) }
        }
        return groups
    }

    /// Per group, the per-channel `max|X_j|` of its input over `batches`
    /// (real tokens, finite values; the float model's activations).
    public static func activationMaxima(
        _ model: BertModel, groups: [SmoothingGroup], batches: [BertBatch], backend: any Backend
    ) throws(BertQuantizationError) -> [[Float]] {
        var groupOf: [String: Int] = [:]
        for (index, group) in groups.enumerated() {
            for module in group.modules { groupOf[module] = index }
        }
        let state = MaximaState(count: groups.count)
        let weights = model.inferenceWeights
        for batch in batches {
            try W8A8Quantizer.checked(batch, model)
            let ops = InferenceOperations(backend: backend) { module, input in
                guard let group = groupOf[module] else { return }
                let width = input.shape.last ?? 0
                RealTokens.withRows(of: input, batch: batch) { rows in state.observe(group: group, rows: rows, width: width) }
            }
            _ = BertModel.logits(ops, weights, config: model.config, pooling: model.pooling, batch: batch)
        }
        return state.maxima
    }

    /// Per input column, the largest `|W[n, j]|` over the rows of every weight of `modules`.
    static func weightMaxima(_ model: BertModel, modules: [String]) throws(BertQuantizationError) -> [Float] {
        var maxima: [Float] = []
        for module in modules {
            let weight = try W8A8Quantizer.floatWeight(of: model, module: module).contiguous()
            let (rows, columns) = (weight.shape[0], weight.shape[1])
            if maxima.isEmpty { maxima = [Float](repeating: 0, count: columns) }
            guard maxima.count == columns else {
                throw BertQuantizationError("`\(module)` has \(columns) inputs, other Linears reading its input \(maxima.count)")
            }
            weight.withUnsafeFloats { w in
                for row in 0..<rows {
                    for column in 0..<columns where w[row * columns + column].isFinite {
                        maxima[column] = Swift.max(maxima[column], abs(w[row * columns + column]))
                    }
                }
            }
        }
        return maxima
    }

    /// `model` smoothed with strength `alpha` from the activation maxima
    /// `activationMaxima` (one per group, `activationMaxima(…)`'s): the f32
    /// weights with every fold applied, and the input multipliers (`1/s`) of
    /// the groups folded into the activation quantization. Its float
    /// outputs equal `model`'s up to rounding when run with those multipliers.
    public static func smooth(
        _ model: BertModel, groups: [SmoothingGroup], activationMaxima: [[Float]], alpha: Double
    ) throws(BertQuantizationError) -> SmoothedModel {
        guard groups.count == activationMaxima.count else {
            throw BertQuantizationError("smoothing: \(activationMaxima.count) activation maxima for \(groups.count) groups")
        }
        var columnScales: [String: [Float]] = [:]
        var rowDivisors: [String: [Float]] = [:]
        var factorsByModule: [String: [Float]] = [:]
        var multipliers: [String: [Float]] = [:]
        for (group, observed) in zip(groups, activationMaxima) {
            let weightMaxima = try weightMaxima(model, modules: group.modules)
            // A group calibration never reached keeps factor 1.
            let maxima = observed.isEmpty ? [Float](repeating: 0, count: weightMaxima.count) : observed
            guard weightMaxima.count == maxima.count else {
                throw BertQuantizationError("smoothing `\(group.modules[0])`: \(maxima.count) activation channels for \(weightMaxima.count) weight columns")
            }
            let s = factors(activationMaxima: maxima, weightMaxima: weightMaxima, alpha: alpha)
            for module in group.modules {
                columnScales[module] = s
                factorsByModule[module] = s
            }
            switch group.fold {
            case .activationQuantization:
                let inverse = s.map { 1 / $0 }
                for module in group.modules { multipliers[module] = inverse }
            case .valueProjection(let value):
                rowDivisors[value] = s
            }
        }
        let weights = model.weights.map { name, tensor -> Tensor in
            if let module = BertWeights<Tensor>.linearModule(ofParameter: name) {
                var result = tensor
                if let divisors = rowDivisors[module] { result = scaledRows(result, dividedBy: divisors) }
                if let scales = columnScales[module] { result = scaledColumns(result, by: scales) }
                return result
            }
            if name.hasSuffix(".bias"), let divisors = rowDivisors[String(name.dropLast(".bias".count))] {
                return Tensor(shape: tensor.shape, floats: zip(tensor.floats, divisors).map { $0 / $1 })
            }
            return tensor
        }
        let smoothed: BertModel
        do {
            smoothed = try BertModel(config: model.config, weights: weights, pooling: model.pooling)
        } catch {
            throw BertQuantizationError("the smoothed model is inconsistent: \(error.message)")
        }
        return SmoothedModel(model: smoothed, alpha: alpha, factors: factorsByModule, inputMultipliers: multipliers)
    }

    /// `weight[n, j] · scales[j]`.
    static func scaledColumns(_ weight: Tensor, by scales: [Float]) -> Tensor {
        let columns = weight.shape[1]
        let values = weight.floats
        return Tensor(shape: weight.shape, floats: values.indices.map { values[$0] * scales[$0 % columns] })
    }

    /// `weight[n, j] / divisors[n]`.
    static func scaledRows(_ weight: Tensor, dividedBy divisors: [Float]) -> Tensor {
        let columns = Swift.max(weight.shape[1], 1)
        let values = weight.floats
        return Tensor(shape: weight.shape, floats: values.indices.map { values[$0] / divisors[$0 / columns] })
    }
}

/// Linears smoothed with one factor vector, and how the factor is folded.
public struct SmoothingGroup: Sendable, Hashable {
    public enum Fold: Sendable, Hashable {
        /// `1/s` in the input's activation quantization (the f32 input is unchanged).
        case activationQuantization
        /// `1/s` in the output rows and bias of this value projection.
        case valueProjection(String)
    }

    /// The Linears reading the smoothed input.
    public var modules: [String]
    public var fold: Fold

    public init(modules: [String], fold: Fold) {
        self.modules = modules
        self.fold = fold
    }
}

/// A float model with SmoothQuant's factors applied (`SmoothQuant.smooth`).
public struct SmoothedModel: Sendable {
    /// The f32 weights: `W · diag(s)` for each smoothed Linear, the value
    /// projections' rows and biases divided by their attention output's `s`.
    public var model: BertModel
    public var alpha: Double
    /// `s` by smoothed module.
    public var factors: [String: [Float]]
    /// `1/s` by module, for the modules whose factor is folded into their
    /// input's activation quantization.
    public var inputMultipliers: [String: [Float]]

    /// No smoothing.
    public init(unsmoothed model: BertModel) {
        self.init(model: model, alpha: 0, factors: [:], inputMultipliers: [:])
    }

    init(model: BertModel, alpha: Double, factors: [String: [Float]], inputMultipliers: [String: [Float]]) {
        self.model = model
        self.alpha = alpha
        self.factors = factors
        self.inputMultipliers = inputMultipliers
    }

    /// The multipliers as f32 `[in]` tensors, for `InferenceOperations(inputMultipliers:)`.
    public var multiplierTensors: [String: Tensor] {
        inputMultipliers.mapValues { Tensor(shape: [$0.count], floats: $0) }
    }

    /// Float logits `[B, labels]` of the smoothed model (multipliers applied
    /// to the f32 inputs): equal to the unsmoothed model's up to rounding.
    public func logits(_ batch: BertBatch, backend: any Backend) throws(BertInputError) -> Tensor {
        try model.check(batch)
        let ops = InferenceOperations(backend: backend, inputMultipliers: multiplierTensors)
        return ops.tensor(BertModel.logits(ops, model.inferenceWeights, config: model.config, pooling: model.pooling, batch: batch))
    }
}

/// Per-channel maxima by group, mutated by the forward pass's Linear hook.
private final class MaximaState {
    var maxima: [[Float]]

    init(count: Int) { maxima = Array(repeating: [], count: count) }

    func observe(group: Int, rows: UnsafeBufferPointer<Float>, width: Int) {
        guard width > 0 else { return }
        if maxima[group].isEmpty { maxima[group] = [Float](repeating: 0, count: width) }
        guard maxima[group].count == width else { return }
        for index in 0..<rows.count where rows[index].isFinite {
            let column = index % width
            maxima[group][column] = Swift.max(maxima[group][column], abs(rows[index]))
        }
    }
}
