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

extension BertModel {
    /// This model with an N:M mask on every linear weight of its encoder
    /// layers, keeping the `n` largest magnitudes of each group of `m`
    /// (the first on ties): a test fixture, not a pruning method.
    public func maskedNofM(n: Int = 2, m: Int = 4) throws -> BertModel {
        var model = self
        for layer in linearBlocks.flatMap(\.layers) {
            let weight = try linearWeight(layer.name).contiguous().floats
            var keep = [Bool](repeating: false, count: weight.count)
            for group in stride(from: 0, to: weight.count, by: m) {
                let order = (group..<(group + m)).sorted { abs(weight[$0]) > abs(weight[$1]) || (abs(weight[$0]) == abs(weight[$1]) && $0 < $1) }
                for index in order.prefix(n) { keep[index] = true }
            }
            let mask = try WeightMask(shape: [layer.outFeatures, layer.inFeatures], pattern: .nOfM(n: n, m: m), keep: keep)
            try model.setMask(mask, forParameter: layer.name + ".weight")
        }
        return model
    }

    /// Whether every masked weight is +0.0 exactly where its mask prunes and
    /// every N:M group holds at most N non-zeros.
    public var keepsItsMasks: Bool {
        let parameters = Dictionary(namedParameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { first, _ in first })
        return masks.allSatisfy { name, mask in
            guard let values = parameters[name]?.contiguous().floats, values.count == mask.elementCount else { return false }
            let prunedAreZero = values.indices.allSatisfy { mask.isKept($0) || values[$0].bitPattern == 0 }
            guard case .nOfM(let n, let m) = mask.pattern else { return prunedAreZero }
            let groupsHold = stride(from: 0, to: values.count, by: m).allSatisfy { start in
                values[start..<(start + m)].filter { $0 != 0 }.count <= n
            }
            return prunedAreZero && groupsHold
        }
    }
}
