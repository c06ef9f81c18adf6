extension Tape {
    /// Scaled dot-product attention as one node.
    ///
    /// Saves the queries, keys, values (views are fine: backends read strided
    /// operands), the softmax probabilities and their dropped-out version; the
    /// scores and the dropout mask are not kept (the backward draws the mask
    /// again from its seed and stream).
    public func attention(query: Variable, key: Variable, value: Variable, bias: Tensor?, scale: Float, dropout: Float) -> Variable {
        let backend = self.backend
        let q = query.value, k = key.value, v = value.value
        var scores = backend.matmul(q, k, transposeA: false, transposeB: true, alpha: scale)
        if let bias { scores = backend.add(scores, bias) }
        let probabilities = backend.softmax(scores)
        let dropoutSeed = dropout > 0 ? self.dropoutSeed : nil
        let stream = dropoutSeed == nil ? 0 : takeDropoutStream()
        func dropped(_ x: Tensor) -> Tensor {
            guard let seed = dropoutSeed else { return x }
            return backend.dropout(x, probability: dropout, seed: seed, stream: stream).output
        }
        let droppedProbabilities = dropped(probabilities)
        let output = backend.matmul(droppedProbabilities, v, transposeA: false, transposeB: false, alpha: 1)
        let needQuery = query.requiresGradient, needKey = key.requiresGradient, needValue = value.requiresGradient
        return record(output, inputs: [query, key, value]) { gradient in
            let gradValue = needValue
                ? backend.matmul(droppedProbabilities, gradient, transposeA: true, transposeB: false, alpha: 1) : nil
            guard needQuery || needKey else { return [nil, nil, gradValue] }
            let gradDropped = backend.matmul(gradient, v, transposeA: false, transposeB: true, alpha: 1)
            let gradScores = backend.softmaxBackward(probabilities, dropped(gradDropped))
            let gradQuery = needQuery
                ? backend.matmul(gradScores, k, transposeA: false, transposeB: false, alpha: scale) : nil
            let gradKey = needKey
                ? backend.matmul(gradScores, q, transposeA: true, transposeB: false, alpha: scale) : nil
            return [gradQuery, gradKey, gradValue]
        }
    }
}
