import Foundation
import SqueezeSupport
import SqueezeTensor

/// The tensors of a Hugging Face checkpoint directory: `model.safetensors`,
/// or the shards `model.safetensors.index.json` lists (each shard a file in
/// the directory; a missing shard or a listed tensor missing from its shard
/// is an error). Sparse tensors (`SparseStorage`) come back dense with
/// their masks.
struct CheckpointTensors {
    static let indexFileName = "model.safetensors.index.json"

    private var files: [String: SafetensorsFile] = [:]
    /// Tensor name → the file holding it.
    private var location: [String: String] = [:]
    private var masks: [String: WeightMask] = [:]
    /// The file the errors name.
    let source: String

    init(directory: String) throws(ModelFileError) {
        let single = directory + "/" + ModelArtifact.weightsFileName
        let index = directory + "/" + Self.indexFileName
        if FileManager.default.fileExists(atPath: single) {
            source = single
            try add(file: single)
            return
        }
        guard let data = FileManager.default.contents(atPath: index) else {
            throw ModelFileError(file: directory, "no \(ModelArtifact.weightsFileName) and no \(Self.indexFileName)")
        }
        source = index
        let map: [String: Value]
        do {
            guard case .object(let object) = try Value(json: data), case .object(let weights)? = object["weight_map"] else {
                throw ModelFileError(file: index, "has no `weight_map` object")
            }
            map = weights
        } catch let error as ModelFileError {
            throw error
        } catch {
            throw ModelFileError(file: index, "is not valid JSON: \(error)")
        }
        var shards: Set<String> = []
        for (name, value) in map {
            guard case .string(let shard) = value, !shard.isEmpty, !shard.contains("/"), shard != "..", shard != "." else {
                throw ModelFileError(file: index, "`weight_map` entry `\(name)` must name a shard file in the same directory")
            }
            shards.insert(shard)
        }
        for shard in shards.sorted() {
            let path = directory + "/" + shard
            guard FileManager.default.fileExists(atPath: path) else {
                throw ModelFileError(file: index, "shard `\(shard)` is missing")
            }
            try add(file: path)
        }
        for (name, value) in map.sorted(by: { $0.key < $1.key }) {
            guard case .string(let shard) = value else { continue }
            guard location[name] == directory + "/" + shard else {
                throw ModelFileError(file: index, "lists `\(name)` in `\(shard)`, which does not hold it")
            }
        }
    }

    private mutating func add(file path: String) throws(ModelFileError) {
        let file = try SafetensorsFile(path: path)
        if let mode = file.metadata[BertModel.quantizationMetadataKey] {
            throw ModelFileError(file: path, "is a quantized (\(mode)) checkpoint, not a float one")
        }
        files[path] = file
        let sparse = try file.sparseMasks()
        for name in Array(file.entries.keys) + Array(file.skipped.keys) + Array(sparse.keys) {
            if let other = location[name], other != path {
                throw ModelFileError(file: path, "tensor `\(name)` is also in \(other)")
            }
            location[name] = path
        }
        for (name, mask) in sparse { masks[name] = mask }
    }

    func contains(_ name: String) -> Bool { location[name] != nil }

    var names: [String] { location.keys.sorted() }

    /// The tensor `name` (f16/bf16 widened to f32) and its mask when stored sparse.
    func tensor(_ name: String) throws(ModelFileError) -> (tensor: Tensor, mask: WeightMask?) {
        guard let path = location[name], let file = files[path] else {
            throw ModelFileError(file: source, "missing tensor `\(name)`")
        }
        if let mask = masks[name] { return (try file.sparseTensor(name, mask: mask), mask) }
        return (try file.tensor(name), nil)
    }
}

extension DecoderModel {
    /// Loads `config.json` and the weights (single file or sharded) of a
    /// Hugging Face checkpoint directory.
    public init(directory: String) throws(ModelFileError) {
        let config = try DecoderConfig(contentsOfFile: directory + "/" + ModelArtifact.configFileName)
        let checkpoint = try CheckpointTensors(directory: directory)
        try self.init(config: config, checkpoint: checkpoint)
    }

    init(config: DecoderConfig, checkpoint: CheckpointTensors) throws(ModelFileError) {
        let file = checkpoint.source
        try Self.checkLayerCount(checkpoint, config: config)
        var masks: [String: WeightMask] = [:]
        let weights: DecoderWeights<Tensor>
        switch config.family {
        case .llama, .mistral, .qwen2:
            weights = try DecoderWeights<Bool>(repeating: true, config: config).map { (name, _) throws(ModelFileError) -> Tensor in
                let loaded = try checkpoint.tensor(name)
                if let mask = loaded.mask { masks[name] = mask }
                return loaded.tensor
            }
        case .gpt2:
            weights = try GPT2Layout.load(checkpoint, config: config, masks: &masks)
        }
        try self.init(config: config, weights: weights, masks: masks, file: file)
    }

    /// A randomly initialised model as `transformers` initialises these
    /// families: matrices and embeddings normal with σ = `initializerRange`,
    /// biases zero, norm weights one (and GPT-2's residual projections
    /// scaled by 1/√(2·layers)).
    public init(randomWithConfig config: DecoderConfig, seed: UInt64) throws(ModelFileError) {
        try config.validate(file: "<config>")
        var generator = SeededGenerator(seed: seed)
        let residualScale = config.family == .gpt2 ? 1 / Float(2 * config.numHiddenLayers).squareRoot() : 1
        let weights = Self.expectedShapes(config).map { name, shape -> Tensor in
            if name.contains("norm") && name.hasSuffix(".weight") {
                return Tensor(shape: shape, floats: [Float](repeating: 1, count: shape.reduce(1, *)))
            }
            if name.hasSuffix(".bias") { return Tensor(zeros: shape) }
            let scaled = name.hasSuffix("o_proj.weight") || name.hasSuffix("down_proj.weight")
            let deviation = Float(config.initializerRange) * (scaled ? residualScale : 1)
            return Tensor.normal(shape: shape, standardDeviation: deviation, generator: &generator)
        }
        try self.init(config: config, weights: weights, file: "<random>")
    }

    /// Writes `config.json` and `model.safetensors` in the family's Hugging
    /// Face layout (`AutoModelForCausalLM` loads it) into `directory`,
    /// creating it; masked weights are stored sparsely. Equal models give
    /// byte-identical files.
    public func save(toDirectory directory: String) throws(ModelFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create directory: \(error.localizedDescription)")
        }
        let stored: (tensors: [(name: String, tensor: Tensor)], masks: [String: WeightMask])
        switch config.family {
        case .llama, .mistral, .qwen2:
            stored = (weights.map { name, tensor in (name: name, tensor: tensor) }.elements, masks)
        case .gpt2:
            stored = try GPT2Layout.stored(weights, masks: masks)
        }
        try SafetensorsWriter.write(
            tensors: stored.tensors, masks: stored.masks, metadata: ["format": "pt"],
            to: directory + "/" + ModelArtifact.weightsFileName)
        let writer = try AtomicFileWriter(path: directory + "/" + ModelArtifact.configFileName)
        try writer.write(Array(config.jsonData()))
        try writer.commit()
    }

    /// Rejects checkpoints with more layers than the config declares.
    static func checkLayerCount(_ checkpoint: CheckpointTensors, config: DecoderConfig) throws(ModelFileError) {
        for name in checkpoint.names {
            for marker in ["model.layers.", "transformer.h.", "h."] where name.hasPrefix(marker) {
                let index = name.dropFirst(marker.count).prefix { $0 != "." }
                if let number = Int(index), number >= config.numHiddenLayers {
                    throw ModelFileError(
                        file: checkpoint.source, "tensor `\(name)` belongs to layer \(number), but the config has \(config.numHiddenLayers) layers")
                }
            }
        }
    }
}

/// GPT-2's checkpoint layout: `Conv1D` weights stored `[in, out]` and the
/// query, key and value fused into `attn.c_attn`, under `transformer.` (or no
/// prefix). Loading transposes and splits into the decoder layout; saving
/// fuses and transposes back. A mask on a fused or transposed weight is
/// stored unstructured (an N:M pattern runs along the other axis there).
enum GPT2Layout {
    static func load(_ checkpoint: CheckpointTensors, config: DecoderConfig, masks: inout [String: WeightMask]) throws(ModelFileError)
        -> DecoderWeights<Tensor>
    {
        let prefix = checkpoint.contains("transformer.wte.weight") ? "transformer." : ""
        let hidden = config.hiddenSize
        func plain(_ name: String) throws(ModelFileError) -> Tensor { try checkpoint.tensor(prefix + name).tensor }
        /// A `Conv1D` weight `[in, out]` as `[out, in]`, with its mask transposed likewise.
        func conv(_ name: String) throws(ModelFileError) -> (weight: Tensor, keep: [Bool]?) {
            let loaded = try checkpoint.tensor(prefix + name)
            guard loaded.tensor.rank == 2 else {
                throw ModelFileError(file: checkpoint.source, "`\(prefix + name)` has shape \(loaded.tensor.shape), expected a matrix")
            }
            let transposed = loaded.tensor.transposed(0, 1).contiguous()
            let keep = loaded.mask.map { mask in
                let (rows, columns) = (mask.shape[0], mask.shape[1])
                return (0..<(rows * columns)).map { index in mask.isKept((index % rows) * columns + index / rows) }
            }
            return (transposed, keep)
        }
        func record(_ name: String, _ weight: Tensor, _ keep: ArraySlice<Bool>?) throws(ModelFileError) {
            guard let keep else { return }
            masks[name] = try WeightMask(shape: weight.shape, pattern: .unstructured, keep: Array(keep))
        }
        var layers: [DecoderLayerWeights<Tensor>] = []
        for index in 0..<config.numHiddenLayers {
            let base = "h.\(index)."
            let names = "model.layers.\(index)."
            let fused = try conv(base + "attn.c_attn.weight")
            guard fused.weight.shape == [3 * hidden, hidden] else {
                throw ModelFileError(
                    file: checkpoint.source, "`\(prefix)\(base)attn.c_attn.weight` has shape \(fused.weight.shape.reversed()), expected [\(hidden), \(3 * hidden)]")
            }
            let fusedBias = try plain(base + "attn.c_attn.bias")
            guard fusedBias.shape == [3 * hidden] else {
                throw ModelFileError(file: checkpoint.source, "`\(prefix)\(base)attn.c_attn.bias` has shape \(fusedBias.shape), expected [\(3 * hidden)]")
            }
            var parts: [OptionalBiasLinear<Tensor>] = []
            for (part, module) in ["q_proj", "k_proj", "v_proj"].enumerated() {
                let rows = (part * hidden)..<((part + 1) * hidden)
                let weight = fused.weight.sliced(axis: 0, rows).contiguous()
                try record(names + "self_attn.\(module).weight", weight, fused.keep?[(rows.lowerBound * hidden)..<(rows.upperBound * hidden)])
                parts.append(OptionalBiasLinear(weight: weight, bias: fusedBias.sliced(axis: 0, rows).contiguous()))
            }
            func projection(_ name: String, _ canonical: String) throws(ModelFileError) -> OptionalBiasLinear<Tensor> {
                let loaded = try conv(base + name + ".weight")
                try record(names + canonical + ".weight", loaded.weight, loaded.keep.map { $0[...] })
                return OptionalBiasLinear(weight: loaded.weight, bias: try plain(base + name + ".bias"))
            }
            layers.append(DecoderLayerWeights(
                attentionNorm: NormWeights(weight: try plain(base + "ln_1.weight"), bias: try plain(base + "ln_1.bias")),
                query: parts[0], key: parts[1], value: parts[2],
                output: try projection("attn.c_proj", "self_attn.o_proj"),
                mlpNorm: NormWeights(weight: try plain(base + "ln_2.weight"), bias: try plain(base + "ln_2.bias")),
                gate: nil, up: try projection("mlp.c_fc", "mlp.up_proj"), down: try projection("mlp.c_proj", "mlp.down_proj")))
        }
        let head: Tensor? = config.tieWordEmbeddings ? nil : try checkpoint.tensor("lm_head.weight").tensor
        return DecoderWeights(
            tokenEmbedding: try plain("wte.weight"), positionEmbedding: try plain("wpe.weight"), layers: layers,
            finalNorm: NormWeights(weight: try plain("ln_f.weight"), bias: try plain("ln_f.bias")), head: head)
    }

    /// The tensors and masks of `weights` as `GPT2LMHeadModel` names and lays them out.
    static func stored(_ weights: DecoderWeights<Tensor>, masks: [String: WeightMask]) throws(ModelFileError)
        -> (tensors: [(name: String, tensor: Tensor)], masks: [String: WeightMask])
    {
        var tensors: [(name: String, tensor: Tensor)] = []
        var stored: [String: WeightMask] = [:]
        func add(_ name: String, _ tensor: Tensor) { tensors.append((name: "transformer." + name, tensor: tensor)) }
        /// `[out, in]` weights stacked by rows, stored transposed `[in, Σ out]`, with their masks (all or none kept when unmasked).
        func conv(_ name: String, _ parts: [(canonical: String, weight: Tensor)]) throws(ModelFileError) {
            let columns = parts[0].weight.shape[1]
            let rows = parts.reduce(0) { $0 + $1.weight.shape[0] }
            var values: [Float] = []
            values.reserveCapacity(rows * columns)
            var keep: [Bool] = []
            let masked = parts.contains { masks[$0.canonical] != nil }
            for part in parts {
                values.append(contentsOf: part.weight.contiguous().floats)
                if masked {
                    let count = part.weight.count
                    keep.append(contentsOf: masks[part.canonical].map { mask in (0..<count).map(mask.isKept) } ?? Array(repeating: true, count: count))
                }
            }
            let stacked = Tensor(shape: [rows, columns], floats: values)
            add(name, stacked.transposed(0, 1).contiguous())
            if masked {
                let transposedKeep = (0..<(rows * columns)).map { index in keep[(index % rows) * columns + index / rows] }
                stored["transformer." + name] = try WeightMask(shape: [columns, rows], pattern: .unstructured, keep: transposedKeep)
            }
        }
        add("wte.weight", weights.tokenEmbedding)
        if let positions = weights.positionEmbedding { add("wpe.weight", positions) }
        for (index, layer) in weights.layers.enumerated() {
            let base = "h.\(index)."
            let names = "model.layers.\(index)."
            add(base + "ln_1.weight", layer.attentionNorm.weight)
            if let bias = layer.attentionNorm.bias { add(base + "ln_1.bias", bias) }
            try conv(base + "attn.c_attn.weight", [
                (names + "self_attn.q_proj.weight", layer.query.weight), (names + "self_attn.k_proj.weight", layer.key.weight),
                (names + "self_attn.v_proj.weight", layer.value.weight),
            ])
            let biases = [layer.query.bias, layer.key.bias, layer.value.bias].compactMap { $0 }
            add(base + "attn.c_attn.bias", Tensor(shape: [biases.reduce(0) { $0 + $1.count }], floats: biases.flatMap(\.floats)))
            try conv(base + "attn.c_proj.weight", [(names + "self_attn.o_proj.weight", layer.output.weight)])
            if let bias = layer.output.bias { add(base + "attn.c_proj.bias", bias) }
            add(base + "ln_2.weight", layer.mlpNorm.weight)
            if let bias = layer.mlpNorm.bias { add(base + "ln_2.bias", bias) }
            try conv(base + "mlp.c_fc.weight", [(names + "mlp.up_proj.weight", layer.up.weight)])
            if let bias = layer.up.bias { add(base + "mlp.c_fc.bias", bias) }
            try conv(base + "mlp.c_proj.weight", [(names + "mlp.down_proj.weight", layer.down.weight)])
            if let bias = layer.down.bias { add(base + "mlp.c_proj.bias", bias) }
        }
        add("ln_f.weight", weights.finalNorm.weight)
        if let bias = weights.finalNorm.bias { add("ln_f.bias", bias) }
        if let head = weights.head { tensors.append((name: "lm_head.weight", tensor: head)) }
        return (tensors, stored)
    }
}
