import SqueezeTensor

/// The pruning-mask machinery every model family shares: a model holds its
/// parameters in one structure visited in a fixed order (names and tensors)
/// and the masks of its sparse weights by parameter name. Pruned positions
/// are +0.0 and stay so: masks are applied when set, to gradients before
/// clipping and the optimiser, and again after every update.
protocol MaskedParameters {
    /// Parameter names in structure order.
    var parameterNames: [String] { get }
    /// Parameter tensors in structure order.
    var parameterTensors: [Tensor] { get }
    var masks: [String: WeightMask] { get set }
    /// Replaces every parameter, in structure order (same shapes).
    mutating func replaceParameters(_ tensors: [Tensor])
    /// Hands the tensors over (in structure order), leaving placeholders, so
    /// uniquely held tensors can be updated without copies; `replaceParameters` puts them back.
    mutating func takeParameters() -> [Tensor]
}

extension MaskedParameters {
    /// Masks the weight `name` (a 2-D parameter): its pruned positions become
    /// +0.0. `nil` removes the mask, leaving the values.
    mutating func applyMask(_ mask: WeightMask?, forParameter name: String, file: String) throws(ModelFileError) {
        guard let mask else {
            masks[name] = nil
            return
        }
        guard let index = parameterNames.firstIndex(of: name), mask.shape.count == 2 else {
            throw ModelFileError(file: file, "a mask is given for `\(name)`, which is not a weight matrix of the model")
        }
        var tensors = parameterTensors
        guard tensors[index].shape == mask.shape else {
            throw ModelFileError(file: file, "the mask of `\(name)` is \(mask.shape), but the weight is \(tensors[index].shape)")
        }
        mask.zeroPruned(in: &tensors[index])
        replaceParameters(tensors)
        masks[name] = mask
    }

    /// Zeroes the gradients (in structure order) of pruned weights, so
    /// clipping and the optimiser's moments never see them.
    func zeroMaskedGradients(_ gradients: inout [Tensor?]) {
        guard !masks.isEmpty else { return }
        for (index, name) in parameterNames.enumerated() where index < gradients.count {
            guard let mask = masks[name], var gradient = gradients[index], gradient.shape == mask.shape else { continue }
            gradients[index] = nil
            mask.zeroPruned(in: &gradient)
            gradients[index] = gradient
        }
    }

    /// Lets `body` change the parameters in place (structure order, same
    /// shapes); the masks are applied afterwards, so pruned weights stay +0.0
    /// whatever `body` (momentum, weight decay) did to them.
    mutating func updateMaskedParameters(_ body: (inout [Tensor]) throws -> Void) rethrows {
        let names = parameterNames
        var tensors = takeParameters()
        let shapes = tensors.map(\.shape)
        defer { replaceParameters(tensors) }
        try body(&tensors)
        precondition(tensors.map(\.shape) == shapes, "updateParameters changed parameter shapes")
        if !masks.isEmpty {
            for (index, name) in names.enumerated() {
                masks[name]?.zeroPruned(in: &tensors[index])
            }
        }
    }
}
