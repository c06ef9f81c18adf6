extension Tape {
    /// Scaled dot-product attention as one node (`Backend.attention`).
    ///
    /// Saves the queries, keys and values (views are fine: backends read
    /// strided operands) and the softmax probabilities; the dropout mask is
    /// not kept (the backward draws it again from its seed and stream). The
    /// result is a `[B, H, T, dv]` view of a `[B, T, H, dv]` tensor, so
    /// merging the heads back is free.
    public func attention(query: Variable, key: Variable, value: Variable, bias: Tensor?, scale: Float, dropout: Float) -> Variable {
        let backend = self.backend
        let q = query.value, k = key.value, v = value.value
        var parameters: DropoutParameters?
        if dropout > 0, let seed = dropoutSeed {
            parameters = DropoutParameters(probability: dropout, seed: seed, stream: takeDropoutStream())
        }
        let result = backend.attention(query: q, key: k, value: v, bias: bias, scale: scale, dropout: parameters)
        let probabilities = result.probabilities
        let needQuery = query.requiresGradient, needKey = key.requiresGradient, needValue = value.requiresGradient
        return record(result.output.transposed(1, 2), inputs: [query, key, value]) { gradient in
            let gradients = backend.attentionBackward(
                gradient, query: q, key: k, value: v, probabilities: probabilities, scale: scale, dropout: parameters,
                wantQuery: needQuery, wantKey: needKey, wantValue: needValue)
            return [gradients.query, gradients.key, gradients.value]
        }
    }

    /// `layerNorm(dropout(x) + residual)` as one node (`Backend.residualLayerNorm`);
    /// dropout only when the tape has a seed. Saves the sum and the statistics.
    public func residualLayerNorm(
        _ x: Variable, residual: Variable, gamma: Variable, beta: Variable, epsilon: Float, dropout: Float
    ) -> Variable {
        let backend = self.backend
        var parameters: DropoutParameters?
        if dropout > 0, let seed = dropoutSeed {
            parameters = DropoutParameters(probability: dropout, seed: seed, stream: takeDropoutStream())
        }
        let result = backend.residualLayerNorm(
            x.value, residual: residual.value, gamma: gamma.value, beta: beta.value, epsilon: epsilon, dropout: parameters)
        let sum = result.sum, mean = result.mean, inverseStd = result.inverseStd, gammaValue = gamma.value
        return record(result.output, inputs: [x, residual, gamma, beta]) { gradient in
            let gradients = backend.residualLayerNormBackward(
                gradient, sum: sum, gamma: gammaValue, mean: mean, inverseStd: inverseStd, dropout: parameters)
            return [gradients.input, gradients.residual, gradients.gamma, gradients.beta]
        }
    }
}
