import SqueezeTensor

/// One linear layer of a model as layer-wise compression sees it: a weight
/// `[outFeatures, inFeatures]` (f32, row-major) and maybe a bias `[outFeatures]`,
/// named stably within its model family (BERT: the Hugging Face module name
/// without the `bert.` prefix, `encoder.layer.3.attention.self.query`, as
/// `skip` patterns and `namedParameters` name it).
public struct LinearLayer: Sendable, Hashable {
    public var name: String
    public var outFeatures: Int
    public var inFeatures: Int
    public var hasBias: Bool

    public init(name: String, outFeatures: Int, inFeatures: Int, hasBias: Bool) {
        self.name = name
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.hasBias = hasBias
    }
}

/// A block the model runs in sequence (BERT: an encoder layer): the unit
/// sequential calibration moves through, with its non-empty linear layers in
/// forward order.
public struct LinearBlock: Sendable, Hashable {
    /// Position among the blocks, 0 first.
    public var index: Int
    /// `encoder.layer.3` for BERT.
    public var name: String
    public var layers: [LinearLayer]

    public init(index: Int, name: String, layers: [LinearLayer]) {
        self.index = index
        self.name = name
        self.layers = layers
    }
}

/// A request the linear-layer view cannot serve: an unknown layer name, a
/// weight of the wrong shape or dtype, input the model cannot run on.
public struct LinearViewError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// A model seen as a sequence of blocks of linear layers, independent of its
/// family: what one-shot layer-wise compression (magnitude, Wanda, SparseGPT,
/// GPTQ) needs. Layers outside every block (BERT's pooler and classifier)
/// are in `linearLayers` only.
public protocol LinearLayerModel: Sendable {
    /// What one forward pass reads (BERT: `BertBatch`).
    associatedtype Batch
    /// What flows from one block to the next for one batch, with whatever
    /// the blocks need beside the hidden state (BERT: the attention mask).
    associatedtype BlockState

    /// The blocks in forward order.
    var linearBlocks: [LinearBlock] { get }
    /// Every non-empty linear layer, in model order, inside blocks or not.
    var linearLayers: [LinearLayer] { get }

    /// The weight `[out, in]` of the layer `name`.
    func linearWeight(_ name: String) throws(LinearViewError) -> Tensor
    /// The bias `[out]` of the layer `name`, nil when it has none.
    func linearBias(_ name: String) throws(LinearViewError) -> Tensor?
    /// Replaces the weight of `name`: f32 of the same shape.
    mutating func setLinearWeight(_ name: String, to weight: Tensor) throws(LinearViewError)
    /// Replaces the bias of `name`: f32 of the same shape.
    mutating func setLinearBias(_ name: String, to bias: Tensor) throws(LinearViewError)
    /// The pruning masks of the linear weights that have one, by layer name.
    var linearMasks: [String: WeightMask] { get }
    /// Masks the weight of `name` (its pruned positions become +0.0 and stay
    /// so through training, and the artifact stores it sparse); nil lifts
    /// the mask and leaves the values.
    mutating func setLinearMask(_ name: String, to mask: WeightMask?) throws(LinearViewError)

    /// The input of block 0 for `batch` (BERT: the embeddings' output).
    func blockInput(for batch: Batch, backend: any Backend) throws(LinearViewError) -> BlockState
    /// Runs block `index` forward on `input` (inference, no dropout) with the
    /// block's current weights. For every layer of the block named in
    /// `capturing`, `inputs[name]` is the activation the layer multiplies:
    /// `[tokens, in]` f32, the real (unpadded) tokens only, batch-major.
    func runBlock(
        _ index: Int, on input: BlockState, capturing: Set<String>, backend: any Backend
    ) throws(LinearViewError) -> (output: BlockState, inputs: [String: Tensor])
}

/// The sequential protocol of SparseGPT and GPTQ: block k is calibrated on
/// the outputs of blocks 0…k−1 as already compressed. For each block with
/// selected layers, every batch runs through it once capturing the selected
/// layers' inputs, the caller compresses the block's layers, and the batches
/// run through the block again with the new weights; those outputs are the
/// next block's inputs. Only one block's activations (per batch) are held.
public enum SequentialCalibration {
    /// Runs the protocol over `select` (layer names; each must be in a
    /// block). `observe(block, inputs)` sees each batch's captured inputs of
    /// the block's selected layers (accumulate statistics there);
    /// `compressBlock(block, selected)` then returns new weights by layer
    /// name, for selected layers of that block only. Blocks after the last
    /// selected one do not run. Returns each batch's output of the last block
    /// that ran (with every block selected: the model's last hidden state).
    @discardableResult
    public static func run<Model: LinearLayerModel>(
        _ model: inout Model, batches: [Model.Batch], select: [String], backend: any Backend,
        observe: (_ block: LinearBlock, _ inputs: [String: Tensor]) throws -> Void,
        compressBlock: (_ block: LinearBlock, _ selected: [LinearLayer]) throws -> [String: Tensor]
    ) throws -> [Model.BlockState] {
        let blocks = model.linearBlocks
        let wanted = Set(select)
        let known = Set(blocks.flatMap { $0.layers.map(\.name) })
        if let unknown = select.first(where: { !known.contains($0) }) {
            throw LinearViewError("`\(unknown)` is not a linear layer of any block")
        }
        guard let last = blocks.lastIndex(where: { $0.layers.contains { wanted.contains($0.name) } }) else { return [] }
        var states: [Model.BlockState] = []
        states.reserveCapacity(batches.count)
        for batch in batches {
            states.append(try model.blockInput(for: batch, backend: backend))
        }
        for block in blocks[...last] {
            let selected = block.layers.filter { wanted.contains($0.name) }
            guard !selected.isEmpty else {
                states = try states.map { state throws(LinearViewError) in
                    try model.runBlock(block.index, on: state, capturing: [], backend: backend).output
                }
                continue
            }
            let capturing = Set(selected.map(\.name))
            var outputs: [Model.BlockState] = []
            outputs.reserveCapacity(states.count)
            for state in states {
                let result = try model.runBlock(block.index, on: state, capturing: capturing, backend: backend)
                try observe(block, result.inputs)
                outputs.append(result.output)
            }
            let updates = try compressBlock(block, selected)
            for name in updates.keys.sorted() where !capturing.contains(name) {
                throw LinearViewError("`\(name)` is not a selected layer of block \(block.name)")
            }
            guard !updates.isEmpty else {
                states = outputs
                continue
            }
            outputs = []
            for (name, weight) in updates.sorted(by: { $0.key < $1.key }) {
                try model.setLinearWeight(name, to: weight)
            }
            states = try states.map { state throws(LinearViewError) in
                try model.runBlock(block.index, on: state, capturing: [], backend: backend).output
            }
        }
        return states
    }

    /// The protocol with every batch's captured inputs of a block's selected
    /// layers concatenated (`[all tokens, in]`), handed to `compressBlock`
    /// with the block; simple, but holds all the block's captured inputs.
    @discardableResult
    public static func run<Model: LinearLayerModel>(
        _ model: inout Model, batches: [Model.Batch], select: [String], backend: any Backend,
        compressBlock: (_ block: LinearBlock, _ inputs: [String: Tensor]) throws -> [String: Tensor]
    ) throws -> [Model.BlockState] {
        var collected: [String: [Tensor]] = [:]
        return try run(
            &model, batches: batches, select: select, backend: backend,
            observe: { _, inputs in
                for (name, tensor) in inputs { collected[name, default: []].append(tensor) }
            },
            compressBlock: { block, selected in
                var inputs: [String: Tensor] = [:]
                for layer in selected {
                    inputs[layer.name] = concatenateRows(collected[layer.name] ?? [], width: layer.inFeatures)
                }
                collected = [:]
                return try compressBlock(block, inputs)
            })
    }

    /// `[Σ rows, width]` from `[rows_i, width]` matrices.
    static func concatenateRows(_ parts: [Tensor], width: Int) -> Tensor {
        var values: [Float] = []
        values.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for part in parts {
            part.contiguous().withUnsafeFloats { values.append(contentsOf: $0) }
        }
        return Tensor(shape: [width == 0 ? 0 : values.count / width, width], floats: values)
    }
}

/// What every model family's linear-layer view shares: masks by layer name,
/// the replacement check, and block addresses in layer names.
extension MaskedParameters {
    /// The masks of linear weights by layer name (`…q_proj` for `…q_proj.weight`).
    var linearLayerMasks: [String: WeightMask] {
        var result: [String: WeightMask] = [:]
        for (name, mask) in masks where name.hasSuffix(".weight") { result[String(name.dropLast(".weight".count))] = mask }
        return result
    }

    /// Masks the weight of the linear layer `name`, which the caller has found.
    mutating func setLinearLayerMask(_ name: String, to mask: WeightMask?) throws(LinearViewError) {
        do {
            try applyMask(mask, forParameter: name + ".weight", file: "<weights>")
        } catch {
            throw LinearViewError(error.message)
        }
    }
}

enum LinearSlots {
    /// `<marker>3.mlp.up_proj` → (3, `mlp.up_proj`).
    static func blockAddress(_ name: String, marker: String) -> (Int, String)? {
        guard name.hasPrefix(marker) else { return nil }
        let rest = name.dropFirst(marker.count)
        guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]), index >= 0 else { return nil }
        return (index, String(rest[rest.index(after: dot)...]))
    }

    /// A replacement weight or bias must be f32 of the current one's shape.
    static func checkReplacement(_ tensor: Tensor, for current: Tensor, name: String) throws(LinearViewError) {
        guard tensor.dtype == .f32, tensor.shape == current.shape else {
            throw LinearViewError("`\(name)` must be f32 \(current.shape), got \(tensor.dtype) \(tensor.shape)")
        }
    }
}
