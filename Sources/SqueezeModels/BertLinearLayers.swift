import SqueezeTensor

/// What flows between BERT's encoder layers for one batch: the hidden state
/// `[B, T, hidden]` and the batch's attention mask `[B, T]` (i32, 1 for real
/// tokens), from which the additive attention bias is made.
public struct BertBlockState: Sendable {
    public var hidden: Tensor
    public var attentionMask: Tensor
    let attentionBias: Tensor

    public init(hidden: Tensor, attentionMask: Tensor) {
        self.hidden = hidden
        self.attentionMask = attentionMask
        self.attentionBias = BertModel.attentionBias(attentionMask)
    }
}

/// BERT's linear layers: one block per encoder layer (`encoder.layer.i`) with
/// `attention.self.query`, `.key`, `.value`, `attention.output.dense`,
/// `intermediate.dense` and `output.dense` (those a pruned layer still has:
/// a layer without heads has no attention projections, one without FFN
/// units no FFN), then `pooler.dense` (when present) and `classifier`
/// outside every block. Blocks run `encoderLayer`, the forward pass itself.
extension BertModel: LinearLayerModel {
    public typealias Batch = BertBatch
    public typealias BlockState = BertBlockState

    /// The module names of an encoder layer's linear layers, in forward order.
    static let blockLinearSuffixes = [
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense",
        "output.dense",
    ]

    public var linearBlocks: [LinearBlock] {
        weights.layers.indices.map { index in
            let prefix = "encoder.layer.\(index)"
            let layers = Self.blockLinearSuffixes.compactMap { suffix -> LinearLayer? in
                let name = prefix + "." + suffix
                guard let linear = linearSlot(name) else { return nil }
                return Self.describe(name, linear)
            }
            return LinearBlock(index: index, name: prefix, layers: layers)
        }
    }

    public var linearLayers: [LinearLayer] {
        var layers = linearBlocks.flatMap(\.layers)
        for name in ["pooler.dense", "classifier"] {
            if let linear = linearSlot(name), let layer = Self.describe(name, linear) { layers.append(layer) }
        }
        return layers
    }

    public func linearWeight(_ name: String) throws(LinearViewError) -> Tensor {
        try existingSlot(name).weight
    }

    public func linearBias(_ name: String) throws(LinearViewError) -> Tensor? {
        try existingSlot(name).bias
    }

    /// A masked weight keeps its mask: the new weight's pruned positions
    /// become +0.0 (`setMask(nil, …)` first to lift it).
    public mutating func setLinearWeight(_ name: String, to weight: Tensor) throws(LinearViewError) {
        var linear = try existingSlot(name)
        try LinearSlots.checkReplacement(weight, for: linear.weight, name: name + ".weight")
        linear.weight = weight
        masks[name + ".weight"]?.zeroPruned(in: &linear.weight)
        setLinearSlot(name, linear)
    }

    public mutating func setLinearBias(_ name: String, to bias: Tensor) throws(LinearViewError) {
        var linear = try existingSlot(name)
        try LinearSlots.checkReplacement(bias, for: linear.bias, name: name + ".bias")
        linear.bias = bias
        setLinearSlot(name, linear)
    }

    public var linearMasks: [String: WeightMask] { linearLayerMasks }

    public mutating func setLinearMask(_ name: String, to mask: WeightMask?) throws(LinearViewError) {
        _ = try existingSlot(name)
        try setLinearLayerMask(name, to: mask)
    }

    /// The embeddings' output for `batch`, with its mask.
    public func blockInput(for batch: BertBatch, backend: any Backend) throws(LinearViewError) -> BertBlockState {
        do {
            try check(batch)
        } catch {
            throw LinearViewError(error.message)
        }
        let hidden = Self.embed(Eager(backend: backend), weights, config: config, batch: batch)
        return BertBlockState(hidden: hidden, attentionMask: batch.attentionMask)
    }

    public func runBlock(
        _ index: Int, on input: BertBlockState, capturing: Set<String>, backend: any Backend
    ) throws(LinearViewError) -> (output: BertBlockState, inputs: [String: Tensor]) {
        guard weights.layers.indices.contains(index) else {
            throw LinearViewError("block \(index) does not exist: the model has \(weights.layers.count) encoder layers")
        }
        let shape = input.hidden.shape
        guard input.hidden.dtype == .f32, shape.count == 3, shape[2] == config.hiddenSize,
            input.attentionMask.dtype == .i32, input.attentionMask.shape == Array(shape.prefix(2))
        else {
            throw LinearViewError(
                "block input must be f32 [B, T, \(config.hiddenSize)] with an i32 [B, T] mask, got \(input.hidden.dtype) \(shape) "
                    + "and \(input.attentionMask.dtype) \(input.attentionMask.shape)")
        }
        let prefix = "encoder.layer.\(index)"
        let recorder = LinearInputRecorder(attentionMask: input.attentionMask)
        let ops = CapturingOperations(eager: Eager(backend: backend), recorder: recorder)
        let layer = weights.layers[index].map(prefix) { name, tensor in
            let module = String(name.dropLast(".weight".count))
            let captured = name.hasSuffix(".weight") && capturing.contains(module)
            return CapturingOperations.Value(tensor: tensor, capturedAs: captured ? module : nil)
        }
        let output = Self.encoderLayer(ops, ops.constant(input.hidden), layer, config: config, attentionBias: input.attentionBias).output
        var next = input
        next.hidden = output.tensor
        return (next, recorder.inputs)
    }

    // MARK: Slots

    /// The linear layer `name` when the model has it and it is not empty.
    private func linearSlot(_ name: String) -> LinearWeights<Tensor>? {
        let linear: LinearWeights<Tensor>?
        switch name {
        case "pooler.dense": linear = weights.pooler
        case "classifier": linear = weights.classifier
        default:
            guard let (index, suffix) = LinearSlots.blockAddress(name, marker: "encoder.layer."), weights.layers.indices.contains(index) else { return nil }
            let layer = weights.layers[index]
            switch suffix {
            case "attention.self.query": linear = layer.query
            case "attention.self.key": linear = layer.key
            case "attention.self.value": linear = layer.value
            case "attention.output.dense": linear = layer.attentionOutput
            case "intermediate.dense": linear = layer.intermediate
            case "output.dense": linear = layer.output
            default: linear = nil
            }
        }
        guard let linear, linear.weight.rank == 2, !linear.weight.shape.contains(0) else { return nil }
        return linear
    }

    private func existingSlot(_ name: String) throws(LinearViewError) -> LinearWeights<Tensor> {
        guard let linear = linearSlot(name) else {
            throw LinearViewError("the model has no linear layer `\(name)` (names look like `encoder.layer.0.attention.self.query`)")
        }
        return linear
    }

    /// Stores `linear` at `name`, which `existingSlot` has resolved.
    private mutating func setLinearSlot(_ name: String, _ linear: LinearWeights<Tensor>) {
        switch name {
        case "pooler.dense": weights.pooler = linear
        case "classifier": weights.classifier = linear
        default:
            guard let (index, suffix) = LinearSlots.blockAddress(name, marker: "encoder.layer."), weights.layers.indices.contains(index) else { return }
            switch suffix {
            case "attention.self.query": weights.layers[index].query = linear
            case "attention.self.key": weights.layers[index].key = linear
            case "attention.self.value": weights.layers[index].value = linear
            case "attention.output.dense": weights.layers[index].attentionOutput = linear
            case "intermediate.dense": weights.layers[index].intermediate = linear
            case "output.dense": weights.layers[index].output = linear
            default: return
            }
        }
    }


    private static func describe(_ name: String, _ linear: LinearWeights<Tensor>) -> LinearLayer? {
        let shape = linear.weight.shape
        guard shape.count == 2 else { return nil }
        return LinearLayer(name: name, outFeatures: shape[0], inFeatures: shape[1], hasBias: true)
    }

}

/// The inputs of the captured linear layers of one block run, as
/// `[real tokens, in]` matrices; layers fed the same activation (query, key,
/// value) share one matrix.
final class LinearInputRecorder {
    let realRows: [Int]
    private(set) var inputs: [String: Tensor] = [:]
    private var converted: [(source: Tensor, rows: Tensor)] = []

    /// `realRows`: the flat `b·T + t` positions whose mask is non-zero.
    init(attentionMask: Tensor) {
        realRows = attentionMask.int32s.enumerated().compactMap { $0.element != 0 ? $0.offset : nil }
    }

    func record(_ module: String, input: Tensor) {
        if let shared = converted.first(where: { Self.same($0.source, input) }) {
            inputs[module] = shared.rows
            return
        }
        let width = input.shape.last ?? 0
        let contiguous = input.contiguous()
        var values = [Float](repeating: 0, count: realRows.count * width)
        contiguous.withUnsafeFloats { source in
            values.withUnsafeMutableBufferPointer { target in
                for (row, position) in realRows.enumerated() {
                    for column in 0..<width { target[row * width + column] = source[position * width + column] }
                }
            }
        }
        let rows = Tensor(shape: [realRows.count, width], floats: values)
        converted.append((input, rows))
        inputs[module] = rows
    }

    private static func same(_ a: Tensor, _ b: Tensor) -> Bool {
        a.storage === b.storage && a.offset == b.offset && a.shape == b.shape && a.strides == b.strides
    }
}

/// `Eager` with the weights of captured layers tagged by their module name:
/// every op runs exactly as in `Eager` (same backend calls, same order), and
/// `linear` first hands its input to the recorder when its weight is tagged.
struct CapturingOperations: TensorOperations {
    struct Value {
        var tensor: Tensor
        var capturedAs: String?
    }

    let eager: Eager
    let recorder: LinearInputRecorder

    var backend: any Backend { eager.backend }

    private func plain(_ tensor: Tensor) -> Value { Value(tensor: tensor, capturedAs: nil) }

    func tensor(_ value: Value) -> Tensor { value.tensor }
    func constant(_ tensor: Tensor) -> Value { plain(tensor) }

    func matmul(_ a: Value, _ b: Value, transposeA: Bool, transposeB: Bool, alpha: Float) -> Value {
        plain(eager.matmul(a.tensor, b.tensor, transposeA: transposeA, transposeB: transposeB, alpha: alpha))
    }

    func linear(_ x: Value, weight: Value, bias: Value?) -> Value {
        if let module = weight.capturedAs { recorder.record(module, input: x.tensor) }
        return plain(eager.linear(x.tensor, weight: weight.tensor, bias: bias?.tensor))
    }

    func add(_ a: Value, _ b: Value) -> Value { plain(eager.add(a.tensor, b.tensor)) }
    func subtract(_ a: Value, _ b: Value) -> Value { plain(eager.subtract(a.tensor, b.tensor)) }
    func multiply(_ a: Value, _ b: Value) -> Value { plain(eager.multiply(a.tensor, b.tensor)) }
    func affine(_ x: Value, scale: Float, shift: Float) -> Value { plain(eager.affine(x.tensor, scale: scale, shift: shift)) }
    func gelu(_ x: Value) -> Value { plain(eager.gelu(x.tensor)) }
    func tanh(_ x: Value) -> Value { plain(eager.tanh(x.tensor)) }
    func softmax(_ x: Value) -> Value { plain(eager.softmax(x.tensor)) }
    func logSoftmax(_ x: Value) -> Value { plain(eager.logSoftmax(x.tensor)) }

    func layerNorm(_ x: Value, gamma: Value, beta: Value, epsilon: Float) -> Value {
        plain(eager.layerNorm(x.tensor, gamma: gamma.tensor, beta: beta.tensor, epsilon: epsilon))
    }

    func maskedLayerNorm(_ x: Value, columnMask: Tensor, gamma: Value, beta: Value, epsilon: Float) -> Value {
        plain(eager.maskedLayerNorm(x.tensor, columnMask: columnMask, gamma: gamma.tensor, beta: beta.tensor, epsilon: epsilon))
    }

    func residualLayerNorm(_ x: Value, residual: Value, gamma: Value, beta: Value, epsilon: Float, dropout: Float) -> Value {
        plain(eager.residualLayerNorm(
            x.tensor, residual: residual.tensor, gamma: gamma.tensor, beta: beta.tensor, epsilon: epsilon, dropout: dropout))
    }

    func gather(_ table: Value, ids: Tensor) -> Value { plain(eager.gather(table.tensor, ids: ids)) }
    func maskedFill(_ x: Value, mask: Tensor, value: Float) -> Value { plain(eager.maskedFill(x.tensor, mask: mask, value: value)) }
    func dropout(_ x: Value, probability: Float) -> Value { plain(eager.dropout(x.tensor, probability: probability)) }
    func reshape(_ x: Value, _ shape: [Int]) -> Value { plain(eager.reshape(x.tensor, shape)) }
    func transpose(_ x: Value, _ first: Int, _ second: Int) -> Value { plain(eager.transpose(x.tensor, first, second)) }
    func slice(_ x: Value, axis: Int, _ range: Range<Int>) -> Value { plain(eager.slice(x.tensor, axis: axis, range)) }

    func sum(_ x: Value, axes: [Int], keepDimensions: Bool) -> Value {
        plain(eager.sum(x.tensor, axes: axes, keepDimensions: keepDimensions))
    }

    func mean(_ x: Value, axes: [Int], keepDimensions: Bool) -> Value {
        plain(eager.mean(x.tensor, axes: axes, keepDimensions: keepDimensions))
    }

    func attention(query: Value, key: Value, value: Value, bias: Tensor?, scale: Float, dropout: Float) -> Value {
        plain(eager.attention(query: query.tensor, key: key.tensor, value: value.tensor, bias: bias, scale: scale, dropout: dropout))
    }

    func crossEntropy(_ logits: Value, labels: Tensor) -> Value { plain(eager.crossEntropy(logits.tensor, labels: labels)) }
    func rmsNorm(_ x: Value, gamma: Value, epsilon: Float) -> Value { plain(eager.rmsNorm(x.tensor, gamma: gamma.tensor, epsilon: epsilon)) }
    func gatedSiLU(gate: Value, up: Value) -> Value { plain(eager.gatedSiLU(gate: gate.tensor, up: up.tensor)) }
    func geluTanh(_ x: Value) -> Value { plain(eager.geluTanh(x.tensor)) }
    func rotary(_ x: Value, cos: Tensor, sin: Tensor) -> Value { plain(eager.rotary(x.tensor, cos: cos, sin: sin)) }
}
