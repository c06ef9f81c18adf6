import Foundation
import SqueezeTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension BertModel {
    /// The Hugging Face file names inside a model directory.
    public static let configFileName = "config.json"
    public static let weightsFileName = "model.safetensors"
    /// The `__metadata__` key of `model.safetensors` marking a quantized
    /// checkpoint (value: the mode), so the float loader refuses it by name.
    package static let quantizationMetadataKey = "squeeze.quantization"

    /// Loads `config.json` and `model.safetensors` from a Hugging Face model directory.
    public init(directory: String, pooling: BertPooling? = nil, classifierSeed: UInt64 = 0) throws(ModelFileError) {
        let config = try BertConfig(contentsOfFile: directory + "/" + Self.configFileName)
        let file = try SafetensorsFile(path: directory + "/" + Self.weightsFileName)
        try self.init(config: config, file: file, pooling: pooling, classifierSeed: classifierSeed)
    }

    /// Loads the weights named as Hugging Face names them (with or without a
    /// `bert.` prefix; `classifier.*` without), checking every shape. A missing
    /// classifier is initialised from `classifierSeed` (normal, σ = initializer
    /// range; zero bias), as `BertForSequenceClassification` does; the pooler
    /// is optional. F16 and BF16 weights are widened to f32; f32 weights are
    /// used in place from the file's mapping until first written.
    public init(config: BertConfig, file: SafetensorsFile, pooling: BertPooling? = nil, classifierSeed: UInt64 = 0) throws(ModelFileError) {
        if let mode = file.metadata[Self.quantizationMetadataKey] {
            throw ModelFileError(
                file: file.path, "is an int8-quantized (\(mode)) checkpoint, not a float one; only inference (QuantizedBertModel) reads it")
        }
        try config.validate(file: file.path)
        let prefix = file.entries["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        try Self.checkLayerCount(file, prefix: prefix, expected: config.numHiddenLayers)
        let hasPooler = file.entries[prefix + "pooler.dense.weight"] != nil || file.entries[prefix + "pooler.dense.bias"] != nil
        let sparse = try file.sparseMasks()
        let hasClassifier = ["classifier.weight", "classifier.bias"].contains { file.entries[$0] != nil || sparse[$0] != nil }

        let skeleton = BertWeights<Bool>(repeating: true, layerCount: config.numHiddenLayers, hasPooler: hasPooler)
        func stored(_ name: String) -> String? {
            guard name.hasPrefix("classifier.") else { return prefix + name }
            return hasClassifier ? name : nil
        }
        let missing = skeleton.names.compactMap(stored).filter { file.entries[$0] == nil && file.skipped[$0] == nil && sparse[$0] == nil }
        if !missing.isEmpty {
            let shown = missing.prefix(5).map { "`\($0)`" }.joined(separator: ", ")
            let more = missing.count > 5 ? " and \(missing.count - 5) more" : ""
            throw ModelFileError(file: file.path, "missing tensors: \(shown)\(more)")
        }
        var masks: [String: WeightMask] = [:]
        var weights = try skeleton.map { (name, _) throws(ModelFileError) -> Tensor in
            guard let storedName = stored(name) else { return Tensor(zeros: [0]) }
            if let mask = sparse[storedName] {
                masks[name] = mask
                return try file.sparseTensor(storedName, mask: mask)
            }
            return try file.tensor(storedName)
        }
        if !hasClassifier {
            var generator = SeededGenerator(seed: classifierSeed)
            weights.classifier = LinearWeights(
                weight: Tensor.normal(
                    shape: [config.labels.count, config.hiddenSize], standardDeviation: Float(config.initializerRange),
                    generator: &generator),
                bias: Tensor(zeros: [config.labels.count]))
        }
        try self.init(config: config, weights: weights, pooling: pooling, masks: masks, file: file.path)
    }

    /// A randomly initialised model as Hugging Face initialises BERT: linear
    /// and embedding weights normal with σ = `initializerRange` (the padding
    /// token's embedding zero), biases zero, LayerNorm weights one. Layers
    /// default to the config's heads and FFN width.
    public init(randomWithConfig config: BertConfig, layerShapes: [BertLayerShape]? = nil, hasPooler: Bool = true, seed: UInt64) throws(ModelFileError) {
        try config.validate(file: "<config>")
        let shapes = layerShapes ?? config.layerShapes
            ?? Array(repeating: BertLayerShape(heads: config.numAttentionHeads, intermediateSize: config.intermediateSize), count: config.numHiddenLayers)
        guard shapes.count == config.numHiddenLayers, shapes.allSatisfy({ $0.heads >= 0 && $0.intermediateSize >= 0 }) else {
            throw ModelFileError(file: "<config>", "\(shapes.count) layer shapes for \(config.numHiddenLayers) layers, or a negative size")
        }
        var generator = SeededGenerator(seed: seed)
        let padID = config.padTokenID
        let weights = Self.expectedShapes(config: config, layerShapes: shapes, hasPooler: hasPooler).map { name, shape -> Tensor in
            if name.hasSuffix(".bias") { return Tensor(zeros: shape) }
            if name.contains("LayerNorm") { return Tensor(shape: shape, floats: [Float](repeating: 1, count: shape.reduce(1, *))) }
            var tensor = Tensor.normal(shape: shape, standardDeviation: Float(config.initializerRange), generator: &generator)
            if name == "embeddings.word_embeddings.weight" {
                let width = shape[1]
                tensor.withUnsafeMutableFloats { values in
                    for column in 0..<width { values[padID * width + column] = 0 }
                }
            }
            return tensor
        }
        try self.init(config: config, weights: weights, file: "<random>")
    }

    /// Writes `model.safetensors` (encoder tensors prefixed `bert.`, as
    /// `BertForSequenceClassification` names them) and `config.json` (with
    /// `num_labels`, `id2label` and the pooling) into `directory`, creating it.
    /// Masked weights are stored sparsely (`SparseStorage`). Equal models
    /// give byte-identical files.
    public func save(toDirectory directory: String) throws(ModelFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create directory: \(error.localizedDescription)")
        }
        func stored(_ name: String) -> String { name.hasPrefix("classifier.") ? name : "bert." + name }
        let tensors = weights.map { name, tensor in (name: stored(name), tensor: tensor) }.elements
        let storedMasks = Dictionary(uniqueKeysWithValues: masks.map { (stored($0.key), $0.value) })
        try SafetensorsWriter.write(
            tensors: tensors, masks: storedMasks, metadata: ["format": "pt"], to: directory + "/" + Self.weightsFileName)
        var saved = config
        saved.pooling = pooling
        let writer = try AtomicFileWriter(path: directory + "/" + Self.configFileName)
        try writer.write(Array(saved.jsonData()))
        try writer.commit()
    }

    // MARK: Shapes

    /// The shape of every parameter for the given layer shapes.
    package static func expectedShapes(config: BertConfig, layerShapes: [BertLayerShape], hasPooler: Bool) -> BertWeights<[Int]> {
        let hidden = config.hiddenSize
        func linear(_ out: Int, _ input: Int) -> LinearWeights<[Int]> { LinearWeights(weight: [out, input], bias: [out]) }
        let norm = LayerNormWeights(weight: [hidden], bias: [hidden])
        return BertWeights(
            embeddings: BertEmbeddingWeights(
                word: [config.vocabSize, hidden], position: [config.maxPositionEmbeddings, hidden],
                tokenType: [config.typeVocabSize, hidden], layerNorm: norm),
            layers: layerShapes.map { shape in
                let attention = shape.heads * config.headDimension
                return BertLayerWeights(
                    query: linear(attention, hidden), key: linear(attention, hidden), value: linear(attention, hidden),
                    attentionOutput: linear(hidden, attention), attentionLayerNorm: norm,
                    intermediate: linear(shape.intermediateSize, hidden), output: linear(hidden, shape.intermediateSize),
                    outputLayerNorm: norm)
            },
            pooler: hasPooler ? linear(hidden, hidden) : nil,
            classifier: linear(config.labels.count, hidden))
    }

    /// Infers each layer's heads and FFN width and checks every tensor's dtype and shape.
    static func checkShapes(_ weights: BertWeights<Tensor>, config: BertConfig, file: String) throws(ModelFileError) -> [BertLayerShape] {
        guard weights.layers.count == config.numHiddenLayers else {
            throw ModelFileError(file: file, "\(weights.layers.count) encoder layers, but num_hidden_layers is \(config.numHiddenLayers)")
        }
        let headDimension = config.headDimension
        var layerShapes: [BertLayerShape] = []
        for (index, layer) in weights.layers.enumerated() {
            let query = layer.query.weight.shape
            let intermediate = layer.intermediate.weight.shape
            guard query.count == 2, query[0] % headDimension == 0 else {
                throw ModelFileError(
                    file: file, "encoder.layer.\(index).attention.self.query.weight has shape \(query); expected [heads·\(headDimension), \(config.hiddenSize)]")
            }
            guard intermediate.count == 2 else {
                throw ModelFileError(file: file, "encoder.layer.\(index).intermediate.dense.weight has shape \(intermediate); expected [width, \(config.hiddenSize)]")
            }
            layerShapes.append(BertLayerShape(heads: query[0] / headDimension, intermediateSize: intermediate[0]))
        }
        if let recorded = config.layerShapes, recorded != layerShapes {
            let describe = { (shapes: [BertLayerShape]) in shapes.map { "\($0.heads)/\($0.intermediateSize)" }.joined(separator: ", ") }
            throw ModelFileError(
                file: file, "the weights have layers (heads/FFN width) \(describe(layerShapes)), but squeeze_layers records \(describe(recorded))")
        }
        let expected = expectedShapes(config: config, layerShapes: layerShapes, hasPooler: weights.pooler != nil)
        var problems: [String] = []
        for (name, (tensor, shape)) in zip(weights.names, zip(weights.elements, expected.elements)) {
            if tensor.dtype != .f32 {
                problems.append("`\(name)` is \(tensor.dtype), expected f32")
            } else if tensor.shape != shape {
                problems.append("`\(name)` has shape \(tensor.shape), expected \(shape)")
            }
        }
        if !problems.isEmpty {
            let more = problems.count > 5 ? "; and \(problems.count - 5) more" : ""
            throw ModelFileError(file: file, "shape mismatch: " + problems.prefix(5).joined(separator: "; ") + more)
        }
        return layerShapes
    }

    /// Rejects checkpoints with more encoder layers than the config declares
    /// (a wrong config would otherwise silently drop layers).
    package static func checkLayerCount(_ file: SafetensorsFile, prefix: String, expected: Int) throws(ModelFileError) {
        let marker = prefix + "encoder.layer."
        for name in file.entries.keys where name.hasPrefix(marker) {
            let index = name.dropFirst(marker.count).prefix { $0 != "." }
            if let number = Int(index), number >= expected {
                throw ModelFileError(file: file.path, "tensor `\(name)` belongs to layer \(number), but num_hidden_layers is \(expected)")
            }
        }
    }
}

