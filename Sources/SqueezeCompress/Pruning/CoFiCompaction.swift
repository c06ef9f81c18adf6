import SqueezeModels
import SqueezeTensor

/// Turns a model and deterministic CoFi masks into a smaller dense model.
///
/// Soft mask values are folded into the weights (`z_head`, `z_MHA` into the
/// attention output projection, `z_int`, `z_FFN` into the FFN down
/// projection, `z_hidden` into every LayerNorm's γ and β) and the zeroed
/// structures are removed: heads (query, key and value rows, output
/// columns), FFN units, hidden dimensions (everywhere: embeddings,
/// LayerNorms, every projection, pooler, classifier input) and whole
/// sublayers (`z_MHA = 0`: no heads and a zero output bias; `z_FFN = 0`: no
/// units and a zero output bias). The result computes what `MaskedBert`
/// computes with the same masks, and its layers may differ in size, which
/// its config records (`attention_head_size`, `squeeze_layers`).
public enum CoFiCompaction {
    public static func compact(_ model: BertModel, masks: CoFiMaskValues) throws(CoFiError) -> BertModel {
        let structure = CoFiStructure(model: model)
        guard masks.fits(structure) else { throw CoFiError("the masks do not fit the model's layers and hidden size") }
        guard masks.entries.allSatisfy({ $0 >= 0 && $0 <= 1 }) else { throw CoFiError("mask values must be in [0, 1]") }
        let kept = masks.hidden.indices.filter { masks.hidden[$0] != 0 }
        guard !kept.isEmpty else { throw CoFiError("the masks remove every hidden dimension") }
        let hiddenScale = kept.map { masks.hidden[$0] }
        let headDimension = structure.headDimension
        let weights = model.weights

        func norm(_ weights: LayerNormWeights<Tensor>) -> LayerNormWeights<Tensor> {
            LayerNormWeights(
                weight: pick(weights.weight, kept, scale: hiddenScale), bias: pick(weights.bias, kept, scale: hiddenScale))
        }
        let embeddings = BertEmbeddingWeights(
            word: pick(weights.embeddings.word, rows: nil, columns: kept),
            position: pick(weights.embeddings.position, rows: nil, columns: kept),
            tokenType: pick(weights.embeddings.tokenType, rows: nil, columns: kept),
            layerNorm: norm(weights.embeddings.layerNorm))

        var layers: [BertLayerWeights<Tensor>] = []
        var shapes: [BertLayerShape] = []
        for (index, layer) in weights.layers.enumerated() {
            let attentionScale = masks.attentionLayers[index]
            let heads = attentionScale == 0 ? [] : masks.heads[index].indices.filter { masks.heads[index][$0] != 0 }
            let headRows = heads.flatMap { ($0 * headDimension)..<(($0 + 1) * headDimension) }
            let headScale = heads.flatMap { head in
                Array(repeating: masks.heads[index][head] * attentionScale, count: headDimension)
            }
            func projection(_ linear: LinearWeights<Tensor>) -> LinearWeights<Tensor> {
                LinearWeights(weight: pick(linear.weight, rows: headRows, columns: kept), bias: pick(linear.bias, headRows))
            }
            let ffnScale = masks.ffnLayers[index]
            let units = ffnScale == 0 ? [] : masks.intermediate[index].indices.filter { masks.intermediate[index][$0] != 0 }
            let unitScale = units.map { masks.intermediate[index][$0] * ffnScale }
            layers.append(
                BertLayerWeights(
                    query: projection(layer.query), key: projection(layer.key), value: projection(layer.value),
                    attentionOutput: LinearWeights(
                        weight: pick(layer.attentionOutput.weight, rows: kept, columns: headRows, columnScale: headScale),
                        bias: pick(layer.attentionOutput.bias, kept, scale: kept.map { _ in attentionScale })),
                    attentionLayerNorm: norm(layer.attentionLayerNorm),
                    intermediate: LinearWeights(
                        weight: pick(layer.intermediate.weight, rows: units, columns: kept), bias: pick(layer.intermediate.bias, units)),
                    output: LinearWeights(
                        weight: pick(layer.output.weight, rows: kept, columns: units, columnScale: unitScale),
                        bias: pick(layer.output.bias, kept, scale: kept.map { _ in ffnScale })),
                    outputLayerNorm: norm(layer.outputLayerNorm)))
            shapes.append(BertLayerShape(heads: heads.count, intermediateSize: units.count))
        }
        let pooler = weights.pooler.map {
            LinearWeights(weight: pick($0.weight, rows: kept, columns: kept), bias: pick($0.bias, kept))
        }
        let classifier = LinearWeights(weight: pick(weights.classifier.weight, rows: nil, columns: kept), bias: weights.classifier.bias)

        var config = model.config
        config.hiddenSize = kept.count
        config.attentionHeadSize = headDimension
        config.layerShapes = shapes
        do {
            return try BertModel(
                config: config, weights: BertWeights(embeddings: embeddings, layers: layers, pooler: pooler, classifier: classifier),
                pooling: model.pooling, file: "<compacted>")
        } catch {
            throw CoFiError("the compacted model is inconsistent: \(error.message)")
        }
    }

    /// Entries `indices` of a vector, each times `scale` when given.
    static func pick(_ vector: Tensor, _ indices: [Int], scale: [Double]? = nil) -> Tensor {
        let values = vector.floats
        let picked = indices.enumerated().map { position, index in
            scale.map { Float(Double(values[index]) * $0[position]) } ?? values[index]
        }
        return Tensor(shape: [indices.count], floats: picked)
    }

    /// The given rows and columns of a matrix (all when nil), column `j` of
    /// the result times `columnScale[j]` when given.
    static func pick(_ matrix: Tensor, rows: [Int]?, columns: [Int], columnScale: [Double]? = nil) -> Tensor {
        let width = matrix.shape[1]
        let values = matrix.floats
        let rowIndices = rows ?? Array(0..<matrix.shape[0])
        var picked: [Float] = []
        picked.reserveCapacity(rowIndices.count * columns.count)
        for row in rowIndices {
            for (position, column) in columns.enumerated() {
                let value = values[row * width + column]
                picked.append(columnScale.map { Float(Double(value) * $0[position]) } ?? value)
            }
        }
        return Tensor(shape: [rowIndices.count, columns.count], floats: picked)
    }
}
