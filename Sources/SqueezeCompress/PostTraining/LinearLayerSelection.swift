import SqueezeModels

/// Which linear layers a layer-wise compression covers: the layers of the
/// model's blocks matched by an `include` pattern (default: all of them) and
/// by no `skip` pattern, in model order. Patterns are `ModulePattern`s, as
/// `skip` in quantization. Layers outside every block (BERT's pooler and
/// classifier) are never candidates. A selection left empty is an error; a
/// pattern that matches nothing while others select layers is a warning (a
/// likely typo, but the compression still has work).
public struct LinearLayerSelection: Sendable, Hashable {
    /// The selected layers, in model order.
    public var layers: [LinearLayer]
    /// Every block layer, selected or not.
    public var candidates: [LinearLayer]
    /// One line per pattern that matched nothing.
    public var warnings: [String]

    public var names: [String] { layers.map(\.name) }

    public init<Model: LinearLayerModel>(model: Model, include: [String] = ["*"], skip: [String] = []) throws(LinearViewError) {
        let candidates = model.linearBlocks.flatMap(\.layers)
        let includes = include.map(ModulePattern.init)
        let skips = skip.map(ModulePattern.init)
        var warnings: [String] = []
        for pattern in includes where !candidates.contains(where: { pattern.matches($0.name) }) {
            warnings.append(
                "include pattern `\(pattern.text)` matches no linear layer of the model's blocks "
                    + "(names look like `\(candidates.first?.name ?? "encoder.layer.0.attention.self.query")`)")
        }
        let included = candidates.filter { layer in includes.contains { $0.matches(layer.name) } }
        for pattern in skips where !included.contains(where: { pattern.matches($0.name) }) {
            warnings.append("skip pattern `\(pattern.text)` matches none of the included layers")
        }
        let layers = included.filter { layer in !skips.contains { $0.matches(layer.name) } }
        guard !layers.isEmpty else {
            throw LinearViewError((warnings + ["the include and skip patterns leave no linear layer to compress"]).joined(separator: "; "))
        }
        self.layers = layers
        self.candidates = candidates
        self.warnings = warnings
    }
}
