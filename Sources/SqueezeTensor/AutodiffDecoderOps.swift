/// The decoder ops (Llama, GPT-2) on the tape: each runs the forward kernel
/// and records a node whose closure captures only what its backward reads.
extension Tape {
    /// Saves the input, `gamma` and the per-row `(mean(x²) + ε)^−½`.
    public func rmsNorm(_ x: Variable, gamma: Variable, epsilon: Float) -> Variable {
        let backend = self.backend
        let result = backend.rmsNorm(x.value, gamma: gamma.value, epsilon: epsilon)
        let input = x.value, gammaValue = gamma.value, inverseRMS = result.inverseRMS
        return record(result.output, inputs: [x, gamma]) { gradient in
            let gradients = backend.rmsNormBackward(gradient, input, gamma: gammaValue, inverseRMS: inverseRMS)
            return [gradients.input, gradients.gamma]
        }
    }

    /// Saves both inputs; the backward computes both gradients in one pass.
    public func gatedSiLU(gate: Variable, up: Variable) -> Variable {
        let backend = self.backend
        let gateValue = gate.value, upValue = up.value
        return record(backend.gatedSiLU(gate: gateValue, up: upValue), inputs: [gate, up]) { gradient in
            let gradients = backend.gatedSiLUBackward(gradient, gate: gateValue, up: upValue)
            return [gradients.gate, gradients.up]
        }
    }

    public func geluTanh(_ x: Variable) -> Variable {
        let backend = self.backend
        let input = x.value
        return record(backend.geluTanh(input), inputs: [x]) { gradient in
            [backend.geluTanhBackward(input, gradient)]
        }
    }

    /// The backward rotates the gradient back (`inverse: true`): the rotation
    /// is orthogonal, so its transpose is its inverse. Saves only the tables.
    public func rotary(_ x: Variable, cos: Tensor, sin: Tensor) -> Variable {
        let backend = self.backend
        return record(backend.rotary(x.value, cos: cos, sin: sin, inverse: false), inputs: [x]) { gradient in
            [backend.rotary(gradient, cos: cos, sin: sin, inverse: true)]
        }
    }
}
