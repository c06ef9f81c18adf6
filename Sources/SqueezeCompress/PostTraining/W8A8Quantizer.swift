import SqueezeModels
import SqueezeTensor

/// Why a model cannot be quantized; never a crash.
public struct BertQuantizationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// W8A8 settings shared by static and dynamic quantization.
public struct W8A8Options: Sendable, Hashable {
    /// `perChannel` (one scale per output row) or `perTensor`.
    public var weightGranularity: ModelQuantization.Granularity
    /// Static: `perTensor`. Dynamic: `perTensor` or `perRow` (one range per token).
    public var activationGranularity: ModelQuantization.Granularity
    /// Make each activation range symmetric around 0 before deriving its
    /// scale and zero point.
    public var activationSymmetric: Bool
    /// Skip patterns (`ModulePattern`).
    public var skip: [String]
    /// The activations' integers. The fast int8 kernel adds two u8·s8
    /// products in int16, so it needs `a · (w₀ + w₁) ≤ 32767`: activations in
    /// 0…255 with weights in ±63, or activations in 0…127 with any int8
    /// weights. The default is chosen by measurement (docs/quantized-models.md).
    public var activationCodes: ClosedRange<Int32>
    /// The weights use `−weightLimit…weightLimit`.
    public var weightLimit: Int32

    /// 8-bit activations (0…255) with weights in ±63: on the tiny-model
    /// measurement and on the SST-2 teacher this loses less than 7-bit
    /// activations with full int8 weights, and both run the fast kernel.
    public static let defaultActivationCodes: ClosedRange<Int32> = 0...255
    public static let defaultWeightLimit: Int32 = 63

    public init(
        weightGranularity: ModelQuantization.Granularity = .perChannel, activationGranularity: ModelQuantization.Granularity = .perTensor,
        activationSymmetric: Bool = false, skip: [String] = [], activationCodes: ClosedRange<Int32> = Self.defaultActivationCodes,
        weightLimit: Int32 = Self.defaultWeightLimit
    ) {
        self.weightGranularity = weightGranularity
        self.activationGranularity = activationGranularity
        self.activationSymmetric = activationSymmetric
        self.skip = skip
        self.activationCodes = activationCodes
        self.weightLimit = weightLimit
    }

    /// The `quantization` section's schemes for these options.
    var schemes: (weights: ModelQuantization.WeightScheme, activations: ModelQuantization.ActivationScheme) {
        (
            ModelQuantization.WeightScheme(
                granularity: weightGranularity, codeRange: [-Int(weightLimit), Int(weightLimit)]),
            ModelQuantization.ActivationScheme(
                granularity: activationGranularity, symmetric: activationSymmetric,
                codeRange: [Int(activationCodes.lowerBound), Int(activationCodes.upperBound)])
        )
    }

    func validate(mode: ModelQuantization.Mode) throws(BertQuantizationError) {
        guard [.perChannel, .perTensor].contains(weightGranularity) else {
            throw BertQuantizationError("weights are quantized per_channel or per_tensor, not \(weightGranularity.rawValue)")
        }
        let allowed: [ModelQuantization.Granularity] = mode == .static ? [.perTensor] : [.perTensor, .perRow]
        guard allowed.contains(activationGranularity) else {
            throw BertQuantizationError(
                "\(mode.rawValue) activations are quantized \(allowed.map(\.rawValue).joined(separator: " or ")), not \(activationGranularity.rawValue)")
        }
        guard activationCodes.lowerBound >= 0, activationCodes.upperBound <= 255, activationCodes.count > 1 else {
            throw BertQuantizationError("activation codes \(activationCodes) must lie in 0...255")
        }
        guard (1...127).contains(weightLimit) else { throw BertQuantizationError("weight limit \(weightLimit) must be in 1...127") }
    }
}

/// Post-training W8A8 quantization of a float BERT classifier.
public enum W8A8Quantizer {
    /// Dynamic quantization: int8 weights, each batch's activation range
    /// measured at run time. No data needed.
    public static func quantizeDynamic(_ model: BertModel, options: W8A8Options = W8A8Options()) throws(BertQuantizationError) -> QuantizedBertModel {
        try options.validate(mode: .dynamic)
        let selection = ModuleSelection(model: model, skip: options.skip)
        let activations = ActivationParameters.dynamic(perRow: options.activationGranularity == .perRow, range: options.activationCodes)
        var linears: [String: Int8Linear] = [:]
        for module in selection.quantized {
            linears[module] = Int8Linear(weights: try weights(of: model, module: module, options: options), activations: activations)
        }
        let schemes = options.schemes
        let section = ModelQuantization(
            mode: .dynamic, weights: schemes.weights, activations: schemes.activations, modules: selection.quantized,
            skipped: selection.skipped)
        return try assemble(model, linears: linears, quantization: section)
    }

    /// `model` with the Linears in `linears` replaced by their int8 versions.
    static func assemble(
        _ model: BertModel, linears: [String: Int8Linear], quantization: ModelQuantization
    ) throws(BertQuantizationError) -> QuantizedBertModel {
        let weights = model.inferenceWeights.map { _, value -> InferenceValue in
            guard case .linear(let linear) = value, let int8 = linears[linear.module] else { return value }
            return .linear(InferenceLinear(module: linear.module, kernel: .int8(int8)))
        }
        do {
            return try QuantizedBertModel(config: model.config, weights: weights, pooling: model.pooling, quantization: quantization)
        } catch {
            throw BertQuantizationError("the quantized model is inconsistent: \(error.message)")
        }
    }

    /// The f32 weight `[out, in]` of `module`.
    static func floatWeight(of model: BertModel, module: String) throws(BertQuantizationError) -> Tensor {
        guard let weight = model.namedParameters.first(where: { $0.name == module + ".weight" })?.tensor else {
            throw BertQuantizationError("the model has no Linear `\(module)`")
        }
        return weight
    }

    /// `module`'s weight quantized symmetrically to `±options.weightLimit`
    /// and packed: `scale = max|w| / q` per row (`perChannel`) or over the
    /// whole matrix (`perTensor`); an all-zero row or matrix gets scale 1;
    /// `q = clamp(round_half_even(w / scale), −q, q)`.
    static func weights(of model: BertModel, module: String, options: W8A8Options) throws(BertQuantizationError) -> PackedInt8Weights {
        let weight = try floatWeight(of: model, module: module)
        return try quantizeWeight(weight, module: module, limit: options.weightLimit, perTensor: options.weightGranularity == .perTensor)
    }

    static func quantizeWeight(_ weight: Tensor, module: String, limit: Int32, perTensor: Bool) throws(BertQuantizationError) -> PackedInt8Weights {
        guard weight.dtype == .f32, weight.rank == 2 else {
            throw BertQuantizationError("`\(module).weight` is \(weight.dtype) \(weight.shape), expected f32 [out, in]")
        }
        let (rows, columns) = (weight.shape[0], weight.shape[1])
        guard columns <= PackedInt8Weights.maxInputCount else {
            throw BertQuantizationError("`\(module)` has \(columns) inputs; the int8 product takes at most \(PackedInt8Weights.maxInputCount)")
        }
        let q = Float(limit)
        var codes = [Int8](repeating: 0, count: rows * columns)
        var scales = [Float](repeating: 1, count: rows)
        let nonFinite: Int? = weight.withUnsafeFloats { w in
            if let bad = w.firstIndex(where: { !$0.isFinite }) { return bad }
            func scale(of largest: Float) -> Float {
                let scale = largest > 0 ? largest / q : 1
                return scale.isNormal ? scale : Float.leastNormalMagnitude
            }
            var largest = [Float](repeating: 0, count: rows)
            for row in 0..<rows {
                for column in 0..<columns { largest[row] = Swift.max(largest[row], abs(w[row * columns + column])) }
            }
            if perTensor {
                let shared = scale(of: largest.max() ?? 0)
                scales = [Float](repeating: shared, count: rows)
            } else {
                scales = largest.map(scale(of:))
            }
            for row in 0..<rows {
                let s = scales[row]
                for column in 0..<columns {
                    let value = (w[row * columns + column] / s).rounded(.toNearestOrEven)
                    codes[row * columns + column] = Int8(Swift.min(Swift.max(value, -q), q))
                }
            }
            return nil
        }
        if let nonFinite {
            throw BertQuantizationError("`\(module).weight` has a non-finite value at row \(nonFinite / Swift.max(columns, 1)); quantize a model with finite weights")
        }
        return PackedInt8Weights(values: Tensor(shape: [rows, columns], int8s: codes), scales: scales)
    }
}
