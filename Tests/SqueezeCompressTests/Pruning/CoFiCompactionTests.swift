import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct CoFiCompactionTests {
    let backend = CPUBackend(threads: 2)

    /// A 3-layer model (hidden 12, heads of 4) with heterogeneous layers.
    static func model(pooling: BertPooling) throws -> BertModel {
        var config = BertConfig(
            vocabSize: 20, hiddenSize: 12, numHiddenLayers: 3, numAttentionHeads: 3, intermediateSize: 10,
            maxPositionEmbeddings: 12, initializerRange: 0.5, labels: ["a", "b", "c"])
        config.pooling = pooling
        let shapes = [
            BertLayerShape(heads: 3, intermediateSize: 10), BertLayerShape(heads: 2, intermediateSize: 7),
            BertLayerShape(heads: 3, intermediateSize: 4),
        ]
        return try BertModel(randomWithConfig: config, layerShapes: shapes, seed: 3)
    }

    static let batch = BertBatch(sequences: [[2, 5, 7, 11, 3, 4, 9], [2, 9, 3], [1, 17, 6, 6]])

    /// Hand-made patterns: a removed attention block, a removed FFN, a layer
    /// whose heads are all zero, pruned hidden dimensions, soft values.
    static func handMade(_ structure: CoFiStructure) -> [CoFiMaskValues] {
        var first = CoFiMaskValues(structure: structure, repeating: 1)
        first.attentionLayers[0] = 0
        first.ffnLayers[1] = 0
        first.heads[2] = [0, 0, 0]
        first.hidden = (0..<12).map { (dimension: Int) -> Double in [1, 4, 5, 10].contains(dimension) ? 0 : 1 }
        var second = CoFiMaskValues(structure: structure, repeating: 0.9)
        second.heads = [[0.5, 0, 0.8], [0, 0.7], [0.6, 0.9, 0]]
        second.intermediate[0] = (0..<10).map { (unit: Int) -> Double in unit % 3 == 0 ? 0 : 0.2 + 0.07 * Double(unit) }
        second.intermediate[2] = [0, 0, 0, 0]
        second.attentionLayers = [0.8, 0, 0.95]
        second.ffnLayers = [0.7, 0.6, 1]
        second.hidden = (0..<12).map { (dimension: Int) -> Double in dimension == 3 ? 0 : 0.5 + 0.04 * Double(dimension) }
        let third = CoFiMaskValues(structure: structure, repeating: 1)
        return [first, second, third]
    }

    /// Deterministic masks from random `log α` (every unit).
    static func random(_ structure: CoFiStructure, seed: UInt64) throws -> CoFiMaskValues {
        let count = try CoFiMasks(structure: structure, units: Set(CoFiUnit.allCases), seed: 0).logAlpha.count
        var generator = SeededGenerator(seed: seed)
        let masks = try CoFiMasks(
            structure: structure, units: Set(CoFiUnit.allCases),
            logAlpha: (0..<count).map { _ in Double(generator.uniform(in: -3..<5)) })
        return masks.deterministic()
    }

    /// The prunable weights the model really has (query, key, value, output, both FFN matrices).
    static func prunableCount(_ model: BertModel) -> Int {
        model.weights.layers.reduce(0) {
            $0 + $1.query.weight.count + $1.key.weight.count + $1.value.weight.count + $1.attentionOutput.weight.count
                + $1.intermediate.weight.count + $1.output.weight.count
        }
    }

    @Test(arguments: BertPooling.allCases)
    func compactedModelComputesTheMaskedModel(pooling: BertPooling) throws {
        let model = try Self.model(pooling: pooling)
        let structure = CoFiStructure(model: model)
        let masks = try CoFiMasks(structure: structure, units: Set(CoFiUnit.allCases), seed: 0)
        let patterns = try Self.handMade(structure) + (1...4).map { try Self.random(structure, seed: $0) }
        for (index, values) in patterns.enumerated() {
            let compacted = try CoFiCompaction.compact(model, masks: values)
            let masked = MaskedBert.forward(
                Eager(backend: backend), model.weights, config: model.config, pooling: pooling, batch: Self.batch,
                masks: masks.inputs(values) { $0 })
            let logits = try compacted.logits(Self.batch, backend: backend)
            #expect(logits.shape == masked.logits.shape)
            let worst = zip(logits.floats, masked.logits.floats).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            #expect(worst <= 1e-5, "pattern \(index): logits differ by \(worst)")

            // Hidden dimensions, heads and units are really gone.
            let kept = values.hidden.filter { $0 != 0 }.count
            #expect(compacted.config.hiddenSize == kept && compacted.weights.embeddings.word.shape == [20, kept])
            for (layer, shape) in compacted.layerShapes.enumerated() {
                let heads = values.attentionLayers[layer] == 0 ? 0 : values.heads[layer].filter { $0 != 0 }.count
                let units = values.ffnLayers[layer] == 0 ? 0 : values.intermediate[layer].filter { $0 != 0 }.count
                #expect(shape == BertLayerShape(heads: heads, intermediateSize: units), "pattern \(index) layer \(layer)")
            }
            #expect(compacted.config.layerShapes == compacted.layerShapes)

            // With P(z ≠ 0) in {0, 1} the expected size is the exact size.
            let indicator = values.map { $0 == 0 ? 0 : 1 }
            let expected = structure.expectedRemainingParameters(indicator).value
            #expect(expected == Double(Self.prunableCount(compacted)), "pattern \(index)")
        }
        #expect(Double(Self.prunableCount(model)) == Double(structure.fullPrunableParameterCount))
    }

    @Test func compactedModelSurvivesSaveAndLoad() throws {
        let model = try Self.model(pooling: .pooler)
        let values = Self.handMade(CoFiStructure(model: model))[1]
        let compacted = try CoFiCompaction.compact(model, masks: values)
        let dir = try TempDir()
        try compacted.save(toDirectory: dir.path)
        let loaded = try BertModel(directory: dir.path)
        #expect(loaded.config == compacted.config && loaded.layerShapes == compacted.layerShapes)
        #expect(loaded.pooling == .pooler)
        #expect(try loaded.logits(Self.batch, backend: backend).floats == (try compacted.logits(Self.batch, backend: backend)).floats)
        let json = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir.file("config.json"))), as: UTF8.self)
        #expect(json.contains("\"attention_head_size\" : 4"))
        #expect(json.contains("\"squeeze_layers\""))

        // A config whose recorded layers disagree with the weights is rejected.
        var wrong = compacted.config
        wrong.layerShapes?[0].heads += 1
        try wrong.jsonData().write(to: URL(fileURLWithPath: dir.file("config.json")))
        let error = #expect(throws: ModelFileError.self) { try BertModel(directory: dir.path) }
        #expect(error?.message.contains("squeeze_layers records") == true)
    }

    @Test func unprunedConfigsAreUnchanged() throws {
        let config = try Self.model(pooling: .mean).config
        let json = String(decoding: config.jsonData(), as: UTF8.self)
        #expect(!json.contains("attention_head_size") && !json.contains("squeeze_layers"))
        #expect(config.headDimension == 4)
        var explicit = config
        explicit.attentionHeadSize = 5
        #expect(explicit.headDimension == 5)
        #expect(try BertConfig(json: explicit.jsonData(), file: "c") == explicit)
        let bad = Data(#"{"vocab_size": 5, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 3, "squeeze_layers": [{"heads": 1}]}"#.utf8)
        #expect(throws: ModelFileError.self) { try BertConfig(json: bad, file: "c") }
        let mismatched = Data(#"{"vocab_size": 5, "hidden_size": 6, "num_hidden_layers": 2, "num_attention_heads": 4, "attention_head_size": 2, "intermediate_size": 3, "squeeze_layers": [{"heads": 1, "intermediate_size": 3}]}"#.utf8)
        #expect(throws: ModelFileError.self) { try BertConfig(json: mismatched, file: "c") }
    }

    @Test func rejectsMasksThatDoNotFit() throws {
        let model = try Self.model(pooling: .mean)
        let structure = CoFiStructure(model: model)
        var wrongShape = CoFiMaskValues(structure: structure, repeating: 1)
        wrongShape.heads[0] = [1, 1]
        #expect(throws: CoFiError.self) { try CoFiCompaction.compact(model, masks: wrongShape) }
        var noHidden = CoFiMaskValues(structure: structure, repeating: 1)
        noHidden.hidden = Array(repeating: 0, count: 12)
        #expect(throws: CoFiError.self) { try CoFiCompaction.compact(model, masks: noHidden) }
        var outOfRange = CoFiMaskValues(structure: structure, repeating: 1)
        outOfRange.ffnLayers[0] = 1.5
        #expect(throws: CoFiError.self) { try CoFiCompaction.compact(model, masks: outOfRange) }
    }
}
