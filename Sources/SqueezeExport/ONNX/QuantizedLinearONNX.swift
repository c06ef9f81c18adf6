import SqueezeCompress
import SqueezeModels
import SqueezeTensor

/// Emits the Linears of a W8A8 `QuantizedBertModel` (docs/export-onnx-int8.md):
///
/// - static int8 (fixed `s_x`, `z_x`): the QDQ form
///   `QuantizeLinear(x [· input_smoothing], s_x, z_x) → DequantizeLinear`, the
///   int8 weight `[in, out]` through a per-axis (per_channel) or per-tensor
///   `DequantizeLinear`, `MatMul`, `Add` bias — which ONNX Runtime fuses into
///   its integer kernels;
/// - dynamic int8 (ranges per row or per tensor at run time): squeeze's own
///   range, scale and zero-point formula from primitive ops (ONNX's
///   `DynamicQuantizeLinear` is per-tensor only, divides where squeeze
///   multiplies by the reciprocal, and knows only 0…255), the exact
///   `MatMulInteger` on the codes, the zero point taken out in int32
///   through the weight's row sums, then `s_x · s_w[n]` and the bias;
/// - skipped (f32) Linears: `MatMul` + `Add`.
///
/// Inputs read with the same quantization (a layer's query, key and value)
/// share one set of codes, as in squeeze.
/// How a static int8 Linear's input becomes u8 codes in ONNX.
public enum StaticQuantizeForm: String, Sendable, Hashable, CaseIterable {
    /// `Mul(x, 1/s_x)` (per column `(1/s_x) · m_j` with SmoothQuant) then
    /// `QuantizeLinear(·, 1, z_x)`: squeeze's own arithmetic, so equal f32
    /// inputs give equal codes. `DequantizeLinear` still carries `s_x`, `z_x`,
    /// and ONNX Runtime fuses the product as in the standard form.
    case exactCodes = "exact_codes"
    /// `QuantizeLinear(x [· m_j], s_x, z_x)`, the textbook Q/DQ pair other
    /// QDQ consumers pattern-match. ONNX divides by `s_x` where squeeze
    /// multiplies by its reciprocal: a code can differ by one next to a
    /// rounding tie (|x/s_x − (n + ½)| ≤ 2^-22·|x/s_x|).
    case division
}

struct QuantizedBertLinearEmitter: BertONNXLinearEmitter {
    typealias Parameter = InferenceValue

    let opset: Int
    /// One weight scale for the whole matrix (`per_tensor`) rather than one per output.
    let perTensorWeights: Bool
    /// How static activations are quantized.
    let staticForm: StaticQuantizeForm
    private var constants = ONNXConstants()
    private var staticCodes: [StaticKey: StaticCodes] = [:]
    private var dynamicCodes: [DynamicKey: DynamicCodes] = [:]
    /// How many Linears went each way: `static_qdq`, `dynamic_integer`, `float`.
    private(set) var counts: [String: Int] = [:]
    /// The u8 codes of the latest int8 Linear's input (tests read them as a graph output).
    private(set) var latestCodes: String?
    /// Each int8 Linear's module with the name of its input's codes, in
    /// graph order (a layer's query, key and value name the same codes).
    private(set) var codesByModule: [(module: String, codes: String)] = []

    init(opset: Int, perTensorWeights: Bool, staticForm: StaticQuantizeForm = .exactCodes) {
        self.opset = opset
        self.perTensorWeights = perTensorWeights
        self.staticForm = staticForm
    }

    private struct StaticKey: Hashable {
        var input: String
        var quantization: ActivationQuantization
    }

    private struct DynamicKey: Hashable {
        var input: String
        var perRow: Bool
        var low: Int32
        var high: Int32
    }

    /// A static quantization's outputs: the u8 codes and their f32 values.
    private struct StaticCodes {
        var codes: String
        var dequantized: String
    }

    /// A dynamic quantization's outputs: the u8 codes, the scale and the
    /// zero point (`[…, 1]` per row, scalars per tensor).
    private struct DynamicCodes {
        var codes: String
        var scale: String
        var zeroPoint: String
    }

    func floatTensor(_ parameter: InferenceValue) -> Tensor { parameter.tensor }

    func linearShape(_ weight: InferenceValue) -> [Int] { weight.tensor.shape }

    mutating func emitLinear(
        _ input: String, weight: InferenceValue, bias: InferenceValue, module: String, graph: inout ONNXGraphBuilder
    ) throws(ModelFileError) -> String {
        guard case .linear(let linear) = weight else {
            throw ModelFileError(file: "<model>", "`\(module).weight` is not a Linear weight")
        }
        let biasTensor = bias.tensor.contiguous()
        let biasName = graph.addInitializer(module + ".bias", floats: biasTensor.floats, shape: biasTensor.shape)
        switch linear.kernel {
        case .float(let matrix):
            counts["float", default: 0] += 1
            return FloatBertLinearEmitter.floatLinear(input, weight: matrix, biasName: biasName, module: module, graph: &graph)
        case .int8(let int8):
            switch int8.activations {
            case .fixed(let quantization):
                counts["static_qdq", default: 0] += 1
                return staticLinear(input, int8, quantization, biasName: biasName, module: module, graph: &graph)
            case .dynamic(let perRow, let range):
                counts["dynamic_integer", default: 0] += 1
                return dynamicLinear(input, int8, perRow: perRow, range: range, biasName: biasName, module: module, graph: &graph)
            }
        case .weightOnly:
            throw ModelFileError(
                file: "<model>",
                "`\(module)` has weight-only (per-group) weights, which the W8A8 ONNX export does not express; export a static or dynamic W8A8 model")
        }
    }

    /// The int8 weight as `[in, out]` (what `MatMul` and `MatMulInteger` take).
    static func transposedCodes(_ weights: PackedInt8Weights) -> [Int8] {
        let (rows, columns) = (weights.outputCount, weights.inputCount)
        let values = weights.values.int8s
        var transposed = [Int8](repeating: 0, count: values.count)
        for row in 0..<rows {
            for column in 0..<columns { transposed[column * rows + row] = values[row * columns + column] }
        }
        return transposed
    }

    // MARK: Static

    private mutating func staticLinear(
        _ input: String, _ linear: Int8Linear, _ quantization: ActivationQuantization, biasName: String, module: String,
        graph: inout ONNXGraphBuilder
    ) -> String {
        let activations = staticActivations(input, quantization, module: module, graph: &graph)
        latestCodes = activations.codes
        codesByModule.append((module, activations.codes))
        let weights = linear.weights
        let codes = graph.addInitializer(
            module + ".weight_quantized", int8s: Self.transposedCodes(weights), shape: [weights.inputCount, weights.outputCount])
        let dequantizedWeight: String
        if perTensorWeights {
            let scale = graph.addInitializer(module + ".weight_scale", floats: [weights.scales[0]], shape: [])
            let zero = graph.addInitializer(module + ".weight_zero_point", int8s: [0], shape: [])
            dequantizedWeight = graph.add("DequantizeLinear", [codes, scale, zero], name: module + ".weight_dequantized")
        } else {
            let scale = graph.addInitializer(module + ".weight_scale", floats: weights.scales, shape: [weights.outputCount])
            let zero = graph.addInitializer(
                module + ".weight_zero_point", int8s: [Int8](repeating: 0, count: weights.outputCount), shape: [weights.outputCount])
            dequantizedWeight = graph.add(
                "DequantizeLinear", [codes, scale, zero], name: module + ".weight_dequantized", attributes: [.int("axis", 1)])
        }
        let product = graph.add("MatMul", [activations.dequantized, dequantizedWeight], name: module + ".matmul")
        return graph.add("Add", [product, biasName], name: module)
    }

    /// `DequantizeLinear(QuantizeLinear(x · multipliers, s_x, z_x), s_x, z_x)`,
    /// with a `Clip` of the codes when the code range is narrower than 0…255.
    private mutating func staticActivations(
        _ input: String, _ quantization: ActivationQuantization, module: String, graph: inout ONNXGraphBuilder
    ) -> StaticCodes {
        let key = StaticKey(input: input, quantization: quantization)
        if let known = staticCodes[key] { return known }
        let scale = graph.addInitializer(module + ".input_scale", floats: [quantization.scales[0]], shape: [])
        let zero = graph.addInitializer(module + ".input_zero_point", uint8s: [UInt8(quantization.zeroPoints[0])], shape: [])
        var codes: String
        switch staticForm {
        case .exactCodes:
            // squeeze's own product: x · (1/s_x), or x · ((1/s_x) · m_j) per column with SmoothQuant.
            let inverse = 1 / quantization.scales[0]
            let multiplier = quantization.channelMultipliers.map { multipliers in
                graph.addInitializer(
                    module + ".input_inverse_scales", floats: multipliers.map { inverse * $0 }, shape: [multipliers.count])
            } ?? graph.addInitializer(module + ".input_inverse_scale", floats: [inverse], shape: [])
            let scaled = graph.add("Mul", [input, multiplier], name: module + ".input_scaled")
            codes = graph.add(
                "QuantizeLinear", [scaled, constants.float(1, name: "float_one", graph: &graph), zero], name: module + ".input_quantized")
        case .division:
            var source = input
            if let multipliers = quantization.channelMultipliers {
                let factors = graph.addInitializer(module + ".input_smoothing", floats: multipliers, shape: [multipliers.count])
                source = graph.add("Mul", [input, factors], name: module + ".input_smoothed")
            }
            codes = graph.add("QuantizeLinear", [source, scale, zero], name: module + ".input_quantized")
        }
        if quantization.range != 0...255 {
            codes = graph.add(
                "Clip",
                [codes, constants.uint8(UInt8(quantization.range.lowerBound), name: "u8_low", graph: &graph),
                 constants.uint8(UInt8(quantization.range.upperBound), name: "u8_high", graph: &graph)],
                name: module + ".input_codes")
        }
        let dequantized = graph.add("DequantizeLinear", [codes, scale, zero], name: module + ".input_dequantized")
        let result = StaticCodes(codes: codes, dequantized: dequantized)
        staticCodes[key] = result
        return result
    }

    // MARK: Dynamic

    private mutating func dynamicLinear(
        _ input: String, _ linear: Int8Linear, perRow: Bool, range: ClosedRange<Int32>, biasName: String, module: String,
        graph: inout ONNXGraphBuilder
    ) -> String {
        let activations = dynamicActivations(input, perRow: perRow, range: range, module: module, graph: &graph)
        latestCodes = activations.codes
        codesByModule.append((module, activations.codes))
        let weights = linear.weights
        let codes = graph.addInitializer(
            module + ".weight_quantized", int8s: Self.transposedCodes(weights), shape: [weights.inputCount, weights.outputCount])
        let sums = graph.add("MatMulInteger", [activations.codes, codes], name: module + ".integer_sums")
        // Σ_k (q_x − z_x)·q_w = Σ_k q_x·q_w − z_x·Σ_k q_w, exactly in int32.
        let rowSums = graph.addInitializer(module + ".weight_row_sums", int32s: weights.columnSums, shape: [weights.outputCount])
        let zero = graph.add(
            "Cast", [activations.zeroPoint], name: module + ".input_zero_point_i32", attributes: [.int("to", Int(ONNXElementType.int32.rawValue))])
        let correction = graph.add("Mul", [zero, rowSums], name: module + ".zero_point_correction")
        let corrected = graph.add("Sub", [sums, correction], name: module + ".centered_sums")
        let asFloat = graph.add(
            "Cast", [corrected], name: module + ".centered_sums_f32", attributes: [.int("to", Int(ONNXElementType.float.rawValue))])
        let weightScales = graph.addInitializer(module + ".weight_scale", floats: weights.scales, shape: [weights.outputCount])
        let multiplier = graph.add("Mul", [activations.scale, weightScales], name: module + ".output_scale")
        let product = graph.add("Mul", [asFloat, multiplier], name: module + ".matmul")
        return graph.add("Add", [product, biasName], name: module)
    }

    /// Squeeze's dynamic quantization (`Backend.activationRange`,
    /// `ActivationQuantization(ranges:range:)`, `Backend.quantize`) per row
    /// (the last axis) or per tensor: the range widened to include 0,
    /// `scale = (high − low) / (q_max − q_min)` (1 for an empty range, at
    /// least the smallest normal float), `zero = clamp(q_min − round(low / scale))`,
    /// `q = clamp(round(x · (1 / scale)) + zero, q_min, q_max)`, rounding half to even.
    private mutating func dynamicActivations(
        _ input: String, perRow: Bool, range: ClosedRange<Int32>, module: String, graph: inout ONNXGraphBuilder
    ) -> DynamicCodes {
        let key = DynamicKey(input: input, perRow: perRow, low: range.lowerBound, high: range.upperBound)
        if let known = dynamicCodes[key] { return known }
        let name = module + ".input"
        let minimum = reduce("ReduceMin", input, perRow: perRow, name: name + "_minimum", graph: &graph)
        let maximum = reduce("ReduceMax", input, perRow: perRow, name: name + "_maximum", graph: &graph)
        let zeroFloat = constants.float(0, name: "float_zero", graph: &graph)
        let low = graph.add("Min", [minimum, zeroFloat], name: name + "_low")
        let high = graph.add("Max", [maximum, zeroFloat], name: name + "_high")
        let width = graph.add("Sub", [high, low], name: name + "_width")
        let levels = constants.float(Float(range.upperBound - range.lowerBound), name: "code_levels", graph: &graph)
        let divided = graph.add("Div", [width, levels], name: name + "_width_per_level")
        let nonEmpty = graph.add("Greater", [width, zeroFloat], name: name + "_non_empty")
        let one = constants.float(1, name: "float_one", graph: &graph)
        let chosen = graph.add("Where", [nonEmpty, divided, one], name: name + "_chosen_scale")
        let scale = graph.add(
            "Max", [chosen, constants.float(Float.leastNormalMagnitude, name: "least_normal", graph: &graph)], name: name + "_scale")
        let qLow = constants.float(Float(range.lowerBound), name: "code_low", graph: &graph)
        let qHigh = constants.float(Float(range.upperBound), name: "code_high", graph: &graph)
        let lowCodes = graph.add("Round", [graph.add("Div", [low, scale], name: name + "_low_over_scale")], name: name + "_low_rounded")
        let zero = graph.add(
            "Clip", [graph.add("Sub", [qLow, lowCodes], name: name + "_zero_unclamped"), qLow, qHigh], name: name + "_zero_point")
        let inverse = graph.add("Div", [one, scale], name: name + "_inverse_scale")
        let rounded = graph.add("Round", [graph.add("Mul", [input, inverse], name: name + "_scaled")], name: name + "_rounded")
        let shifted = graph.add("Add", [rounded, zero], name: name + "_shifted")
        let clamped = graph.add("Clip", [shifted, qLow, qHigh], name: name + "_clamped")
        let codes = graph.add("Cast", [clamped], name: name + "_codes", attributes: [.int("to", Int(ONNXElementType.uint8.rawValue))])
        let result = DynamicCodes(codes: codes, scale: scale, zeroPoint: zero)
        dynamicCodes[key] = result
        return result
    }

    /// `ReduceMin`/`ReduceMax` over the last axis (kept) or every axis (a
    /// scalar); the axes are an attribute before opset 18 and an input from it.
    private mutating func reduce(_ op: String, _ input: String, perRow: Bool, name: String, graph: inout ONNXGraphBuilder) -> String {
        guard perRow else { return graph.add(op, [input], name: name, attributes: [.int("keepdims", 0)]) }
        if opset >= 18 {
            let axes = constants.int64s([-1], name: "last_axis", graph: &graph)
            return graph.add(op, [input, axes], name: name, attributes: [.int("keepdims", 1)])
        }
        return graph.add(op, [input], name: name, attributes: [.ints("axes", [-1]), .int("keepdims", 1)])
    }
}
