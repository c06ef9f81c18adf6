import SqueezeModels
import SqueezeTensor

extension BertModel {
    /// A shallower model made of this model's encoder layers `layers`
    /// (0-based, strictly increasing, each in range), with its embeddings,
    /// pooler, classifier and pooling: the "every k-th layer" student of
    /// PKD / DistilBERT (`[0, 2, 4]` of 6). Tensors are shared, not copied;
    /// the kept layers keep their masks.
    public func selectingLayers(_ layers: [Int]) throws(DistillationError) -> BertModel {
        try LayerSelection.check(layers, of: weights.layers.count)
        var config = self.config
        config.numHiddenLayers = layers.count
        var selected = weights
        selected.layers = layers.map { weights.layers[$0] }
        var selectedMasks: [String: WeightMask] = [:]
        for (name, mask) in masks {
            guard name.hasPrefix("encoder.layer.") else {
                selectedMasks[name] = mask
                continue
            }
            for (position, index) in layers.enumerated() where name.hasPrefix("encoder.layer.\(index).") {
                selectedMasks["encoder.layer.\(position)." + name.dropFirst("encoder.layer.\(index).".count)] = mask
            }
        }
        do {
            return try BertModel(config: config, weights: selected, pooling: pooling, masks: selectedMasks, file: "<student>")
        } catch {
            throw DistillationError("cannot build the student: \(error.message)")
        }
    }
}

extension DecoderModel {
    /// A shallower decoder made of this model's blocks `layers` (0-based,
    /// strictly increasing, each in range), with its embeddings, final norm
    /// and head: the "every k-th layer" student. Tensors are shared, not
    /// copied; the kept blocks keep their masks.
    public func selectingLayers(_ layers: [Int]) throws(DistillationError) -> DecoderModel {
        try LayerSelection.check(layers, of: weights.layers.count)
        var config = self.config
        config.numHiddenLayers = layers.count
        var selected = weights
        selected.layers = layers.map { weights.layers[$0] }
        var selectedMasks: [String: WeightMask] = [:]
        for (name, mask) in masks {
            guard name.hasPrefix("model.layers.") else {
                selectedMasks[name] = mask
                continue
            }
            for (position, index) in layers.enumerated() where name.hasPrefix("model.layers.\(index).") {
                selectedMasks["model.layers.\(position)." + name.dropFirst("model.layers.\(index).".count)] = mask
            }
        }
        do {
            return try DecoderModel(config: config, weights: selected, masks: selectedMasks, file: "<student>")
        } catch {
            throw DistillationError("cannot build the student: \(error.message)")
        }
    }
}

/// A student's layers picked from a teacher's.
enum LayerSelection {
    /// `layers` picks existing layers of `count`, in increasing order, at least one.
    static func check(_ layers: [Int], of count: Int) throws(DistillationError) {
        guard !layers.isEmpty else { throw DistillationError("the student needs at least one layer; `layers` is empty") }
        for (position, index) in layers.enumerated() {
            guard index >= 0, index < count else {
                throw DistillationError("layer \(index) does not exist: the teacher has \(count) layers (0…\(count - 1))")
            }
            if position > 0, index <= layers[position - 1] {
                throw DistillationError(
                    index == layers[position - 1]
                        ? "layer \(index) is listed twice in \(layers)"
                        : "layers must be in increasing order, got \(layers)")
            }
        }
    }
}
