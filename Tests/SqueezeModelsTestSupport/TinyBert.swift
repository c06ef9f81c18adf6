import SqueezeModels
import SqueezeTensor

/// A tiny BERT with heterogeneous layers (2 heads / FFN 16, then 1 head / FFN 12).
public enum TinyBert {
    public static func config(initializerRange: Double = 0.02, labels: Int = 3) -> BertConfig {
        BertConfig(
            vocabSize: 20, hiddenSize: 8, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 16,
            maxPositionEmbeddings: 12, typeVocabSize: 2, initializerRange: initializerRange,
            labels: (0..<labels).map { "class\($0)" })
    }

    public static let layerShapes = [BertLayerShape(heads: 2, intermediateSize: 16), BertLayerShape(heads: 1, intermediateSize: 12)]

    public static func model(
        seed: UInt64 = 1, initializerRange: Double = 0.02, layerShapes: [BertLayerShape] = layerShapes, pooling: BertPooling = .pooler
    ) throws -> BertModel {
        var config = config(initializerRange: initializerRange)
        config.pooling = pooling
        return try BertModel(randomWithConfig: config, layerShapes: layerShapes, seed: seed)
    }

    /// Two sequences, the second padded by two.
    public static let batch = BertBatch(sequences: [[2, 5, 7, 11, 3], [2, 9, 3]])
    public static let labels = Tensor(shape: [2], int32s: [1, 2])
}
