import Testing
@testable import SqueezeTensor

/// `attentionScores`: the pre-softmax scores the fused attention never
/// exposes, on both backends, with heads split as the BERT forward splits
/// them (`[B, T, H·d]` reshaped to `[B, T, H, d]` and viewed as `[B, H, T, d]`).
@Suite struct AttentionScoresTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]
    static let (batch, tokens, heads, width) = (2, 3, 2, 4)

    static func projected(seed: UInt64) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        return Tensor.uniform(shape: [batch, tokens, heads * width], in: -1..<1, generator: &generator)
    }

    static func splitHeads<Ops: TensorOperations>(_ ops: Ops, _ x: Ops.Value) -> Ops.Value {
        ops.transpose(ops.reshape(x, [batch, tokens, heads, width]), 1, 2)
    }

    @Test(arguments: [0, 1])
    func gradientsMatchFiniteDifferences(backendIndex: Int) {
        let backend = Self.backends[backendIndex]
        let worst = checkGradients(inputs: [Self.projected(seed: 1), Self.projected(seed: 2)], backend: backend) { tape, x in
            tape.attentionScores(query: Self.splitHeads(tape, x[0]), key: Self.splitHeads(tape, x[1]), scale: 0.5)
        }
        #expect(worst.input >= 0, "nothing compared")
        #expect(worst.ratio <= 1, "\(backend.id): input \(worst.input)[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    /// The scores are `q·kᵀ·scale` head by head, and the fused attention's
    /// probabilities are their softmax after the bias; the CPU agrees with
    /// the reference.
    @Test func scoresAreWhatTheFusedAttentionSoftmaxes() {
        let (q, k, v) = (Self.projected(seed: 3), Self.projected(seed: 4), Self.projected(seed: 5))
        let bias = Tensor(shape: [2, 1, 1, 3], floats: [0, 0, 0, 0, -1e9, -1e9])
        var results: [Tensor] = []
        for backend in Self.backends {
            let eager = Eager(backend: backend)
            let (query, key) = (Self.splitHeads(eager, q), Self.splitHeads(eager, k))
            let scores = eager.attentionScores(query: query, key: key, scale: 0.5)
            #expect(scores.shape == [2, 2, 3, 3])
            let probabilities = backend.attention(
                query: query, key: key, value: Self.splitHeads(eager, v), bias: bias, scale: 0.5, dropout: nil
            ).probabilities
            expectClose(backend.softmax(backend.add(scores, bias)), probabilities, relative: 1e-5, "\(backend.id) softmax")
            results.append(scores)
        }
        let (query, key, scores) = (q.floats, k.floats, results[0].floats)
        for b in 0..<2 {
            for h in 0..<2 {
                for i in 0..<3 {
                    for j in 0..<3 {
                        var dot: Float = 0
                        for d in 0..<4 { dot += query[(b * 3 + i) * 8 + h * 4 + d] * key[(b * 3 + j) * 8 + h * 4 + d] }
                        #expect(abs(scores[((b * 2 + h) * 3 + i) * 3 + j] - 0.5 * dot) <= 1e-5)
                    }
                }
            }
        }
        expectClose(results[1], results[0], relative: 1e-5, "cpu vs reference")
    }
}
