import SqueezeModels
import SqueezeTensor

extension WeightOnlyQuantizer {
    /// Every block Linear of `model` (the attention and MLP projections of
    /// `model.layers.i`; never `lm_head` or the embeddings, as GPTQ leaves
    /// them) rounded to nearest to `options.bits` codes per group of
    /// `options.groupSize` inputs: the round-to-nearest baseline of a
    /// weight-only decoder. Modules matching a `skip` pattern stay f32.
    ///
    /// - Throws: unsupported bits, a group size that does not divide a
    ///   selected layer's input width (naming the layer), a non-finite
    ///   weight; errors name `<weight-only decoder>` as their file.
    public static func quantize(_ model: DecoderModel, options: WeightOnlyOptions) throws(ModelFileError) -> QuantizedDecoderModel {
        let file = "<weight-only decoder>"
        guard PackedGroupWeights.supportedBits.contains(options.bits) else {
            throw ModelFileError(file: file, "weight-only bits must be 4 or 8, got \(options.bits)")
        }
        let patterns = options.skip.map(ModulePattern.init)
        var linears: [String: WeightOnlyLinear] = [:]
        var modules: [String] = []
        var skipped: [ModelQuantization.SkippedModule] = []
        for layer in model.linearBlocks.flatMap(\.layers) {
            if let pattern = patterns.first(where: { $0.matches(layer.name) }) {
                skipped.append(.init(module: layer.name, reason: "skip pattern `\(pattern.text)`"))
                continue
            }
            do {
                let weight = try model.linearWeight(layer.name)
                let packed = try PackedGroupWeights(
                    quantizing: weight, bits: options.bits, groupSize: options.groupSize,
                    mapping: options.symmetric ? .symmetric : .asymmetric)
                linears[layer.name] = WeightOnlyLinear(weights: packed)
                modules.append(layer.name)
            } catch {
                throw ModelFileError(file: file, "`\(layer.name)`: \(error)")
            }
        }
        for layer in model.linearLayers where !layer.name.hasPrefix("model.layers.") {
            skipped.append(.init(module: layer.name, reason: "outside the decoder blocks"))
        }
        let section = ModelQuantization(
            mode: .weightOnly, weights: options.scheme, activations: nil, modules: modules, skipped: skipped)
        return try QuantizedDecoderModel(model, linears: linears, quantization: section)
    }
}
