/// AdamW (decoupled weight decay, bias-corrected moments) over a flat list of
/// parameters, as `torch.optim.AdamW`: moments start at zero on a parameter's
/// first update, each parameter counts its own steps, and a parameter without
/// a gradient is left alone.
///
/// Weight decay is per parameter group; the usual split is
/// `decayMask` true for weights and false for biases and LayerNorm weights.
public struct AdamW: Sendable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Weight decay of each parameter (its group's).
    public let weightDecays: [Float]
    /// Updates applied to each parameter so far.
    public private(set) var steps: [Int]
    public private(set) var firstMoments: [Tensor?]
    public private(set) var secondMoments: [Tensor?]

    /// One optimizer for `parameterCount` parameters; `weightDecays[i]` is parameter `i`'s decay.
    public init(weightDecays: [Float], beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.weightDecays = weightDecays
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        steps = Array(repeating: 0, count: weightDecays.count)
        firstMoments = Array(repeating: nil, count: weightDecays.count)
        secondMoments = Array(repeating: nil, count: weightDecays.count)
    }

    /// Two groups: `weightDecay` where `decayMask` is true, none elsewhere.
    public init(decayMask: [Bool], weightDecay: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.init(weightDecays: decayMask.map { $0 ? weightDecay : 0 }, beta1: beta1, beta2: beta2, epsilon: epsilon)
    }

    /// Puts back a state saved from an optimizer over the same parameters
    /// (`steps`, `firstMoments`, `secondMoments` as read from it), so the
    /// next update is the one the saved optimizer would have made. Returns
    /// false, changing nothing, when the counts do not match this optimizer's
    /// parameters or a parameter has one moment without the other.
    public mutating func restore(steps: [Int], firstMoments: [Tensor?], secondMoments: [Tensor?]) -> Bool {
        let count = weightDecays.count
        guard steps.count == count, firstMoments.count == count, secondMoments.count == count else { return false }
        for index in 0..<count {
            guard steps[index] >= 0, (firstMoments[index] == nil) == (secondMoments[index] == nil),
                  (steps[index] == 0) == (firstMoments[index] == nil),
                  firstMoments[index]?.shape == secondMoments[index]?.shape
            else { return false }
        }
        self.steps = steps
        self.firstMoments = firstMoments
        self.secondMoments = secondMoments
        return true
    }

    /// Applies one update to every parameter that has a gradient, each
    /// gradient used as `gradient · gradientScale` (see `clippingScale`).
    public mutating func update(
        _ parameters: inout [Tensor], gradients: [Tensor?], learningRate: Float, gradientScale: Float = 1,
        backend: any Backend
    ) {
        precondition(parameters.count == weightDecays.count && gradients.count == weightDecays.count,
                     "AdamW over \(weightDecays.count) parameters given \(parameters.count) parameters, \(gradients.count) gradients")
        for index in parameters.indices {
            guard let gradient = gradients[index] else { continue }
            precondition(gradient.shape == parameters[index].shape,
                         "gradient \(gradient.shape) for parameter \(index) of shape \(parameters[index].shape)")
            var first = firstMoments[index] ?? Tensor(zeros: parameters[index].shape)
            var second = secondMoments[index] ?? Tensor(zeros: parameters[index].shape)
            // Out of the arrays while updating, so the moments are uniquely referenced (no copy).
            firstMoments[index] = nil
            secondMoments[index] = nil
            steps[index] += 1
            let hyperparameters = AdamWHyperparameters(
                learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecays[index],
                gradientScale: gradientScale)
            backend.adamWUpdate(
                parameter: &parameters[index], gradient: gradient, firstMoment: &first, secondMoment: &second,
                hyperparameters: hyperparameters, step: steps[index])
            firstMoments[index] = first
            secondMoments[index] = second
        }
    }
}

/// Scales gradients in place so their global L2 norm is at most `maxNorm`,
/// as `torch.nn.utils.clip_grad_norm_`: the factor is
/// `min(1, maxNorm / (norm + 1e-6))`. Returns the norm before clipping.
/// Missing gradients are skipped.
@discardableResult
public func clipGradientNorm(_ gradients: inout [Tensor?], maxNorm: Float, backend: any Backend) -> Float {
    let (norm, factor) = clippingScale(gradients, maxNorm: maxNorm, backend: backend)
    if factor < 1 {
        for index in gradients.indices {
            if let gradient = gradients[index] {
                gradients[index] = backend.affine(gradient, scale: factor, shift: 0)
            }
        }
    }
    return norm
}

/// The global L2 norm of `gradients` and the factor `clipGradientNorm` would
/// scale them by (1 when the norm is within `maxNorm`), for optimisers that
/// apply the factor as they read the gradients (`AdamW.update(gradientScale:)`).
public func clippingScale(_ gradients: [Tensor?], maxNorm: Float, backend: any Backend) -> (norm: Float, scale: Float) {
    var total = 0.0
    for gradient in gradients {
        if let gradient { total += backend.sumOfSquares(gradient) }
    }
    let norm = Float(total.squareRoot())
    let factor = maxNorm / (norm + 1e-6)
    return (norm, factor < 1 ? factor : 1)
}
