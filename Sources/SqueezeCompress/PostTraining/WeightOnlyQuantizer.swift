import SqueezeModels
import SqueezeTensor

/// Weight-only settings: int4 or int8 codes per group of `groupSize` inputs,
/// round to nearest (even), f32 activations.
public struct WeightOnlyOptions: Sendable, Hashable {
    /// 4 or 8.
    public var bits: Int
    /// Consecutive inputs of a row sharing a scale; must divide every
    /// quantized module's input width.
    public var groupSize: Int
    /// Zero point 0 and codes `[−q, q]` (int4 ±7, int8 ±127); otherwise each
    /// group's range (widened to include 0) maps onto the whole signed range
    /// with a zero point.
    public var symmetric: Bool
    /// Skip patterns (`ModulePattern`).
    public var skip: [String]

    public static let defaultGroupSize = 128

    public init(bits: Int, groupSize: Int = Self.defaultGroupSize, symmetric: Bool = true, skip: [String] = []) {
        self.bits = bits
        self.groupSize = groupSize
        self.symmetric = symmetric
        self.skip = skip
    }

    /// The `quantization` section's weight scheme for these options.
    public var scheme: ModelQuantization.WeightScheme {
        let high = (1 << (bits - 1)) - 1
        return ModelQuantization.WeightScheme(
            bits: bits, granularity: .perGroup, symmetric: symmetric, codeRange: symmetric ? [-high, high] : [-high - 1, high],
            groupSize: groupSize)
    }
}

/// Post-training weight-only quantization (RTN) of a float BERT classifier.
public enum WeightOnlyQuantizer {
    /// Checks `options` against `model` before any work: the bits, and that
    /// the group size divides the input width of every module to quantize
    /// (naming the first that it does not, with a group size that fits all).
    public static func validate(_ model: BertModel, options: WeightOnlyOptions) throws(BertQuantizationError) {
        guard PackedGroupWeights.supportedBits.contains(options.bits) else {
            throw BertQuantizationError("weight-only bits must be 4 or 8, got \(options.bits)")
        }
        guard options.groupSize >= 1 else { throw BertQuantizationError("group_size must be positive, got \(options.groupSize)") }
        let selection = ModuleSelection(model: model, skip: options.skip)
        let widths = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.tensor.shape.last ?? 0) })
        let quantizedWidths = selection.quantized.map { (module: $0, width: widths[$0 + ".weight"] ?? 0) }
        guard let bad = quantizedWidths.first(where: { $0.width % options.groupSize != 0 }) else { return }
        let common = quantizedWidths.reduce(0) { greatestCommonDivisor($0, $1.width) }
        let fitting = largestDivisor(of: common, atMost: options.groupSize)
        let own = largestDivisor(of: bad.width, atMost: options.groupSize)
        var hint = "use a group_size dividing every quantized width, e.g. \(fitting)"
        if own != fitting { hint += " (\(own) divides this module's width)" }
        throw BertQuantizationError(
            "group_size \(options.groupSize) does not divide the input width \(bad.width) of `\(bad.module)`; \(hint), or skip the module")
    }

    /// Every selected Linear's weight rounded to `options.bits` codes per group.
    public static func quantize(_ model: BertModel, options: WeightOnlyOptions) throws(BertQuantizationError) -> QuantizedBertModel {
        try validate(model, options: options)
        let selection = ModuleSelection(model: model, skip: options.skip)
        var linears: [String: WeightOnlyLinear] = [:]
        for module in selection.quantized {
            let weight = try W8A8Quantizer.floatWeight(of: model, module: module)
            do {
                let packed = try PackedGroupWeights(
                    quantizing: weight, bits: options.bits, groupSize: options.groupSize,
                    mapping: options.symmetric ? .symmetric : .asymmetric)
                linears[module] = WeightOnlyLinear(weights: packed)
            } catch {
                throw BertQuantizationError("`\(module)`: \(error.description)")
            }
        }
        let section = ModelQuantization(
            mode: .weightOnly, weights: options.scheme, activations: nil, modules: selection.quantized, skipped: selection.skipped)
        let weights = model.inferenceWeights.map { _, value -> InferenceValue in
            guard case .linear(let linear) = value, let quantized = linears[linear.module] else { return value }
            return .linear(InferenceLinear(module: linear.module, kernel: .weightOnly(quantized)))
        }
        do {
            return try QuantizedBertModel(config: model.config, weights: weights, pooling: model.pooling, quantization: section)
        } catch {
            throw BertQuantizationError("the quantized model is inconsistent: \(error.message)")
        }
    }

    /// Each weight-only layer's weight SQNR against the f32 weight.
    public static func weightReport(_ model: BertModel, _ quantized: QuantizedBertModel, skip: [String]) -> QuantizationReport {
        let selection = ModuleSelection(model: model, skip: skip)
        let linears = quantized.weightOnlyLinears
        let layers = selection.quantized.compactMap { module -> LayerQuantizationReport? in
            guard let linear = linears[module], let weight = try? W8A8Quantizer.floatWeight(of: model, module: module) else { return nil }
            return LayerQuantizationReport(
                module: module, shape: weight.shape, nonFiniteInputs: 0,
                weightSQNR: signalToQuantizationNoiseRatio(reference: weight, approximation: linear.weights.dequantized()))
        }
        return QuantizationReport(
            layers: layers, skipped: selection.skipped, unmatchedPatterns: selection.unmatchedPatterns, calibrationExamples: 0,
            evaluationExamples: 0, evaluatedOnHeldOut: false)
    }

    /// Group-size hints (`quantize/weight-only` and `quantize/gptq` use these).
    public static func greatestCommonDivisor(_ a: Int, _ b: Int) -> Int {
        var (x, y) = (abs(a), abs(b))
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }

    /// The largest divisor of `value` not above `limit` (1 when `value` is 0).
    public static func largestDivisor(of value: Int, atMost limit: Int) -> Int {
        guard value > 0 else { return 1 }
        var candidate = Swift.min(limit, value)
        while candidate > 1 && value % candidate != 0 { candidate -= 1 }
        return Swift.max(candidate, 1)
    }
}
