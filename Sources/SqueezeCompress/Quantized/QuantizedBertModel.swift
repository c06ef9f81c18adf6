import SqueezeModels
import SqueezeTensor

/// A BERT classifier for inference whose Linear layers run in int8 (W8A8:
/// static or dynamic activations), with int4/int8 per-group weights and f32
/// activations (weight-only), or, where skipped, in f32. Embeddings,
/// LayerNorm, softmax, GELU and tanh stay f32. The forward pass is
/// `BertModel`'s, over `InferenceOperations`; there is no training path.
public struct QuantizedBertModel: Sendable {
    public let config: BertConfig
    public let weights: BertWeights<InferenceValue>
    public let pooling: BertPooling
    public let layerShapes: [BertLayerShape]
    /// How it was quantized; `modules` are exactly its int8 layers.
    public let quantization: ModelQuantization

    /// A model from its parts, checked for consistency: every tensor has the
    /// shape `config` and the layer shapes give it, the int8 Linears are
    /// exactly `quantization.modules` (non-empty, weights inside the code
    /// range, activation parameters of the section's mode and range), every
    /// other Linear is f32 and listed in `quantization.skipped`. `file` names
    /// the source in errors.
    public init(
        config: BertConfig, weights: BertWeights<InferenceValue>, pooling: BertPooling, quantization: ModelQuantization,
        file: String = "<quantized model>"
    ) throws(ModelFileError) {
        try config.validate(file: file)
        try quantization.validate(file: file)
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file, message) }
        guard weights.layers.count == config.numHiddenLayers else {
            throw fail("\(weights.layers.count) encoder layers, but num_hidden_layers is \(config.numHiddenLayers)")
        }
        let headDimension = config.headDimension
        var layerShapes: [BertLayerShape] = []
        for (index, layer) in weights.layers.enumerated() {
            let query = layer.query.weight.tensor.shape
            let intermediate = layer.intermediate.weight.tensor.shape
            guard query.count == 2, query[0] % headDimension == 0, intermediate.count == 2 else {
                throw fail("encoder layer \(index): query weight \(query) or intermediate weight \(intermediate) is not [heads·\(headDimension), hidden] / [width, hidden]")
            }
            layerShapes.append(BertLayerShape(heads: query[0] / headDimension, intermediateSize: intermediate[0]))
        }
        if let recorded = config.layerShapes, recorded != layerShapes {
            throw fail("the weights' layer shapes (heads/FFN width) differ from `squeeze_layers`")
        }
        if pooling == .pooler && weights.pooler == nil {
            throw fail("pooling `pooler` needs `pooler.dense` weights, which are missing")
        }
        let expected = BertModel.expectedShapes(config: config, layerShapes: layerShapes, hasPooler: weights.pooler != nil)
        let quantized = Set(quantization.modules)
        let skipped = Set(quantization.skipped.map(\.module))
        var present: Set<String> = []
        var problems: [String] = []
        for (name, (value, shape)) in zip(weights.names, zip(weights.elements, expected.elements)) {
            let tensor = value.tensor
            guard tensor.shape == shape else {
                problems.append("`\(name)` has shape \(tensor.shape), expected \(shape)")
                continue
            }
            guard let module = BertWeights<InferenceValue>.linearModule(ofParameter: name) else {
                if case .linear = value { problems.append("`\(name)` is not a Linear weight") }
                if tensor.dtype != .f32 { problems.append("`\(name)` is \(tensor.dtype), expected f32") }
                continue
            }
            present.insert(module)
            guard case .linear(let linear) = value, linear.module == module else {
                problems.append("`\(name)` is not marked as the Linear `\(module)`")
                continue
            }
            switch linear.kernel {
            case .float(let weight):
                if weight.dtype != .f32 { problems.append("`\(name)` is \(weight.dtype), expected f32") }
                if quantized.contains(module) { problems.append("`\(module)` is listed as quantized but is f32") }
                if !skipped.contains(module) { problems.append("the f32 Linear `\(module)` is not listed in `quantization.skipped`") }
            case .int8(let int8):
                if !quantized.contains(module) { problems.append("the int8 Linear `\(module)` is not listed in `quantization.modules`") }
                if shape.contains(0) { problems.append("`\(module)` is empty (\(shape)); empty Linears stay f32") }
                if let problem = Self.check(int8, module: module, quantization: quantization) { problems.append(problem) }
            case .weightOnly(let linear):
                if !quantized.contains(module) { problems.append("the weight-only Linear `\(module)` is not listed in `quantization.modules`") }
                if shape.contains(0) { problems.append("`\(module)` is empty (\(shape)); empty Linears stay f32") }
                if let problem = Self.check(linear, module: module, quantization: quantization) { problems.append(problem) }
            }
        }
        for module in quantization.modules + quantization.skipped.map(\.module) where !present.contains(module) {
            problems.append("`quantization` lists `\(module)`, which this model does not have")
        }
        if !problems.isEmpty {
            let more = problems.count > 5 ? "; and \(problems.count - 5) more" : ""
            throw fail(problems.prefix(5).joined(separator: "; ") + more)
        }
        self.config = config
        self.weights = weights
        self.pooling = pooling
        self.layerShapes = layerShapes
        self.quantization = quantization
    }

    /// What is wrong with a weight-only Linear under `quantization`, if anything.
    static func check(_ linear: WeightOnlyLinear, module: String, quantization: ModelQuantization) -> String? {
        guard quantization.mode == .weightOnly else {
            return "`\(module)` is weight-only in a `\(quantization.mode.rawValue)` model"
        }
        let scheme = quantization.weights
        let weights = linear.weights
        if weights.bits != scheme.bits || weights.groupSize != scheme.groupSize {
            return "`\(module)` has \(weights.bits)-bit weights in groups of \(weights.groupSize), the section says \(scheme.bits) bits, groups of \(scheme.groupSize ?? 0)"
        }
        if scheme.symmetric && !weights.isSymmetric { return "`\(module)` has zero points, but the section says symmetric" }
        let codes = quantization.weightCodes
        let outside = linear.codes.withUnsafeElements(Int8.self) { values in values.first { !codes.contains(Int32($0)) } }
        if let outside { return "`\(module).weight` holds \(outside), outside the code range \(codes)" }
        return nil
    }

    /// What is wrong with an int8 Linear under `quantization`, if anything.
    static func check(_ linear: Int8Linear, module: String, quantization: ModelQuantization) -> String? {
        guard let activationScheme = quantization.activations else {
            return "`\(module)` is int8 W8A8 in a `\(quantization.mode.rawValue)` model"
        }
        let codes = quantization.weightCodes
        let outside = linear.weights.values.withUnsafeElements(Int8.self) { values in
            values.first { !codes.contains(Int32($0)) }
        }
        if let outside { return "`\(module).weight` holds \(outside), outside the code range \(codes)" }
        if quantization.weights.granularity == .perTensor, Set(linear.weights.scales).count > 1 {
            return "`\(module).weight_scale` differs between rows of a per_tensor weight"
        }
        switch (quantization.mode, linear.activations) {
        case (.static, .fixed(let parameters)):
            if parameters.isPerRow { return "`\(module)` has per-row static activation parameters" }
            if parameters.range != quantization.activationCodes {
                return "`\(module)` quantizes activations to \(parameters.range), the section says \(quantization.activationCodes)"
            }
            let listed = quantization.smoothing?.modules.contains(module) ?? false
            if let multipliers = parameters.channelMultipliers {
                if !listed { return "`\(module)` has smoothing multipliers but is not listed in `smoothing.modules`" }
                if multipliers.count != linear.weights.inputCount {
                    return "`\(module)` has \(multipliers.count) smoothing multipliers for \(linear.weights.inputCount) inputs"
                }
            } else if listed {
                return "`\(module)` is listed in `smoothing.modules` but has no smoothing multipliers"
            }
        case (.dynamic, .dynamic(let perRow, let range)):
            if perRow != (activationScheme.granularity == .perRow) || range != quantization.activationCodes {
                return "`\(module)` has dynamic activations other than the section's \(activationScheme.granularity.rawValue) \(quantization.activationCodes)"
            }
        default:
            return "`\(module)` has activation parameters of another mode than `\(quantization.mode.rawValue)`"
        }
        return nil
    }

    /// Classification logits `[B, labels]`.
    public func logits(_ batch: BertBatch, backend: any Backend) throws(BertInputError) -> Tensor {
        try logits(batch, backend: backend, fusing: true)
    }

    /// Classification logits `[B, labels]`; `fusing` as `InferenceOperations`'
    /// (false: the op-by-op forward, the same logits, for comparisons).
    public func logits(_ batch: BertBatch, backend: any Backend, fusing: Bool) throws(BertInputError) -> Tensor {
        try BertModel.check(batch, config: config)
        let ops = InferenceOperations(backend: backend, fusing: fusing)
        return ops.tensor(BertModel.logits(ops, weights, config: config, pooling: pooling, batch: batch))
    }

    /// The int8 Linears by module name.
    public var int8Linears: [String: Int8Linear] {
        var result: [String: Int8Linear] = [:]
        _ = weights.map { _, value in
            if case .linear(let linear) = value, case .int8(let int8) = linear.kernel { result[linear.module] = int8 }
        }
        return result
    }

    /// The weight-only Linears by module name.
    public var weightOnlyLinears: [String: WeightOnlyLinear] {
        var result: [String: WeightOnlyLinear] = [:]
        _ = weights.map { _, value in
            if case .linear(let linear) = value, case .weightOnly(let quantized) = linear.kernel { result[linear.module] = quantized }
        }
        return result
    }
}

extension QuantizedBertModel: SequenceClassifier {
    public var namedParameters: [(name: String, tensor: Tensor)] {
        Array(zip(weights.names, weights.elements.map(\.tensor)))
    }
}
