import Foundation
import SqueezeModels
import SqueezeTensor
@testable import SqueezeCompress

/// Tiny random BERTs and batches for the quantized-model tests.
enum TinyQuantBert {
    static let vocabulary = 40

    /// A dense BERT: hidden 32, 2 layers of 4 heads × 8 and FFN 64, pooler.
    static func dense(seed: UInt64 = 1) throws -> BertModel {
        let config = BertConfig(
            vocabSize: vocabulary, hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4, intermediateSize: 64,
            maxPositionEmbeddings: 24, initializerRange: 0.15, labels: ["negative", "positive", "neutral"])
        return try BertModel(randomWithConfig: config, seed: seed)
    }

    /// A CoFi-shaped BERT: hidden 20 (pruned, head size 8), three layers with
    /// 2 heads / no FFN, no heads / FFN 24, 3 heads / FFN 40; mean pooling
    /// with a pooler present (which the forward pass never runs).
    static func heterogeneous(seed: UInt64 = 2) throws -> BertModel {
        let shapes = [
            BertLayerShape(heads: 2, intermediateSize: 0), BertLayerShape(heads: 0, intermediateSize: 24),
            BertLayerShape(heads: 3, intermediateSize: 40),
        ]
        let config = BertConfig(
            vocabSize: vocabulary, hiddenSize: 20, numHiddenLayers: 3, numAttentionHeads: 4, intermediateSize: 64,
            maxPositionEmbeddings: 24, initializerRange: 0.15, pooling: .mean, attentionHeadSize: 8, layerShapes: shapes)
        return try BertModel(randomWithConfig: config, layerShapes: shapes, seed: seed)
    }

    /// `model` with BERT's outlier dimensions: every LayerNorm scales hidden
    /// dimensions 3 and 17 by 12, so a few channels of each layer's input
    /// are far larger than the rest (as in trained BERTs, where they set the
    /// per-tensor activation range).
    static func withOutlierDimensions(_ model: BertModel) throws -> BertModel {
        var weights = model.weights
        func widen(_ norm: inout LayerNormWeights<Tensor>) {
            var gamma = norm.weight.floats
            for dimension in [3, 17] where dimension < gamma.count { gamma[dimension] *= 12 }
            norm.weight = Tensor(shape: norm.weight.shape, floats: gamma)
        }
        widen(&weights.embeddings.layerNorm)
        for index in weights.layers.indices {
            widen(&weights.layers[index].attentionLayerNorm)
            widen(&weights.layers[index].outputLayerNorm)
        }
        return try BertModel(config: model.config, weights: weights, pooling: model.pooling)
    }

    /// `count` batches of `size` random sequences of 3 to 16 tokens
    /// (`[CLS] … [SEP]`, padded with 0).
    static func batches(_ count: Int, size: Int = 6, seed: UInt64) -> [BertBatch] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            let sequences = (0..<size).map { _ -> [Int32] in
                let length = 1 + Int(generator.next() % 14)
                return [2] + (0..<length).map { _ in Int32(5 + generator.next() % UInt64(vocabulary - 5)) } + [3]
            }
            return BertBatch(sequences: sequences)
        }
    }

    /// Static quantization calibrated on 4 batches, measured on 3 others.
    /// 256 histogram bins keep the mse and entropy searches fast in debug builds.
    static func calibrated(
        _ model: BertModel, observer: ObserverKind = .minMax, options: W8A8Options = W8A8Options(), backend: any Backend = CPUBackend(threads: 2)
    ) throws -> (model: QuantizedBertModel, report: QuantizationReport) {
        try W8A8Quantizer.quantizeStatic(
            model, calibration: batches(4, seed: 7), evaluation: batches(3, seed: 8), evaluatedOnHeldOut: true,
            settings: CalibrationSettings(observer: observer, bins: 256), options: options, backend: backend)
    }

    /// SQNR (dB) of `quantized`'s logits against `model`'s over `batches`.
    static func logitsSQNR(_ model: BertModel, _ quantized: QuantizedBertModel, _ batches: [BertBatch], backend: any Backend) throws -> Double {
        var accumulator = SQNRAccumulator()
        for batch in batches {
            let reference = try model.logits(batch, backend: backend)
            let approximation = try quantized.logits(batch, backend: backend)
            reference.withUnsafeFloats { y in approximation.withUnsafeFloats { accumulator.add(reference: y, approximation: $0) } }
        }
        return accumulator.decibels
    }

    /// A fresh temporary directory.
    static func temporaryDirectory(_ label: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }
}
