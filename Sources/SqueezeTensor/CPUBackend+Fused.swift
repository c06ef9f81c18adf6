import CKernels

/// The fused ops of `Backend` as single passes over the data.
extension CPUBackend {
    public func geluWithDerivative(_ x: Tensor) -> (output: Tensor, derivative: Tensor) {
        x.requireFloat("geluWithDerivative")
        let derivativeStorage = TensorStorage(uninitializedByteCount: x.count * 4)
        let derivative = derivativeStorage.bytes.assumingMemoryBound(to: Float.self)
        let output = withFloats(x) { px in
            produce(x.shape) { po in
                runner.forEachRange(count: x.count, chunkSize: elementChunk) { r in
                    sq_gelu_with_derivative(px + r.lowerBound, po + r.lowerBound, derivative + r.lowerBound, r.count)
                }
            }
        }
        return (output, Tensor(storage: derivativeStorage, dtype: .f32, shape: x.shape))
    }

    /// Per chunk of rows: the dropped-out sum, then the layer norm of those
    /// rows while they are still in cache.
    public func residualLayerNorm(
        _ x: Tensor, residual: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float, dropout: DropoutParameters?
    ) -> ResidualLayerNormResult {
        for t in [x, residual, gamma, beta] { t.requireFloat("residualLayerNorm") }
        precondition(x.shape == residual.shape, "residualLayerNorm: x \(x.shape) vs residual \(residual.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns] && beta.shape == [columns], "residualLayerNorm: gamma/beta must be [\(columns)]")
        let mask = DropoutMask(dropout)
        let sumStorage = TensorStorage(uninitializedByteCount: x.count * 4)
        let meanStorage = TensorStorage(uninitializedByteCount: rows * 4)
        let inverseStorage = TensorStorage(uninitializedByteCount: rows * 4)
        let sums = sumStorage.bytes.assumingMemoryBound(to: Float.self)
        let means = meanStorage.bytes.assumingMemoryBound(to: Float.self)
        let inverses = inverseStorage.bytes.assumingMemoryBound(to: Float.self)
        let output = withFloats(x) { px in
            withFloats(residual) { pr in
                withFloats(gamma) { pg in
                    withFloats(beta) { pb in
                        produce(x.shape) { po in
                            runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                                let start = r.lowerBound * columns
                                sq_dropout_add(
                                    px + start, pr + start, sums + start, r.count * columns, UInt64(start), mask.key,
                                    mask.threshold, mask.scale, mask.enabled)
                                sq_layer_norm_rows(
                                    sums + start, pg, pb, epsilon, po + start, means + r.lowerBound,
                                    inverses + r.lowerBound, r.count, columns)
                            }
                        }
                    }
                }
            }
        }
        return ResidualLayerNormResult(
            output: output, sum: Tensor(storage: sumStorage, dtype: .f32, shape: x.shape),
            mean: Tensor(storage: meanStorage, dtype: .f32, shape: [rows]),
            inverseStd: Tensor(storage: inverseStorage, dtype: .f32, shape: [rows]))
    }

    public func residualLayerNormBackward(
        _ dy: Tensor, sum: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, dropout: DropoutParameters?
    ) -> ResidualLayerNormGradients {
        let mask = DropoutMask(dropout)
        guard mask.enabled != 0 else {
            let gradients = layerNormBackward(dy, sum, gamma: gamma, mean: mean, inverseStd: inverseStd)
            return ResidualLayerNormGradients(
                input: gradients.input, residual: gradients.input, gamma: gradients.gamma, beta: gradients.beta)
        }
        let (rows, columns) = Shapes.rowsAndColumns(sum.shape)
        let droppedStorage = TensorStorage(uninitializedByteCount: rows * columns * 4)
        let dropped = droppedStorage.bytes.assumingMemoryBound(to: Float.self)
        let gradients = layerNormBackward(dy, sum, gamma: gamma, mean: mean, inverseStd: inverseStd) { dx, range in
            let start = range.lowerBound * columns
            sq_dropout(dx + start, dropped + start, nil, range.count * columns, UInt64(start), mask.key, mask.threshold, mask.scale)
        }
        return ResidualLayerNormGradients(
            input: Tensor(storage: droppedStorage, dtype: .f32, shape: sum.shape), residual: gradients.input,
            gamma: gradients.gamma, beta: gradients.beta)
    }

    public func attention(
        query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: DropoutParameters?
    ) -> AttentionResult {
        let heads = AttentionHeads(query: query, key: key, value: value, bias: bias, scale: scale, dropout: dropout)
        let (batch, headCount, queries, keys) = (heads.batch, heads.heads, heads.queries, heads.keys)
        let probabilitiesStorage = TensorStorage(uninitializedByteCount: batch * headCount * queries * keys * 4)
        let probabilities = probabilitiesStorage.bytes.assumingMemoryBound(to: Float.self)
        let output = produce([batch, queries, headCount, heads.valueDepth]) { out in
            heads.run(runner) { problem, range, scratch in
                sq_attention_forward(problem, range.lowerBound, range.count, probabilities, out, scratch)
            }
        }
        return AttentionResult(
            output: output,
            probabilities: Tensor(storage: probabilitiesStorage, dtype: .f32, shape: [batch, headCount, queries, keys]))
    }

    public func attentionBackward(
        _ gradient: Tensor, query: Tensor, key: Tensor, value: Tensor, probabilities: Tensor, scale: Float,
        dropout: DropoutParameters?, wantQuery: Bool, wantKey: Bool, wantValue: Bool
    ) -> AttentionGradients {
        let heads = AttentionHeads(query: query, key: key, value: value, bias: nil, scale: scale, dropout: dropout)
        let (batch, headCount, queries, keys) = (heads.batch, heads.heads, heads.queries, heads.keys)
        let (depth, valueDepth) = (heads.depth, heads.valueDepth)
        precondition(
            gradient.shape == [batch, headCount, queries, valueDepth] && probabilities.shape == [batch, headCount, queries, keys],
            "attentionBackward: gradient \(gradient.shape), probabilities \(probabilities.shape)")
        gradient.requireFloat("attentionBackward")
        probabilities.requireFloat("attentionBackward")
        let outputGradient = gradient.strides[3] == 1 ? gradient : gradient.contiguous()
        func storage(_ wanted: Bool, _ count: Int) -> TensorStorage? {
            wanted ? TensorStorage(uninitializedByteCount: count * 4) : nil
        }
        let dq = storage(wantQuery, batch * queries * headCount * depth)
        let dk = storage(wantKey, batch * keys * headCount * depth)
        let dv = storage(wantValue, batch * keys * headCount * valueDepth)
        func floats(_ storage: TensorStorage?) -> UnsafeMutablePointer<Float>? {
            storage?.bytes.assumingMemoryBound(to: Float.self)
        }
        let (pq, pk, pv) = (floats(dq), floats(dk), floats(dv))
        withExtendedLifetime(outputGradient) {
            let go = UnsafePointer(outputGradient.storage.bytes.assumingMemoryBound(to: Float.self) + outputGradient.offset)
            let strides = outputGradient.strides
            withFloats(probabilities) { pp in
                heads.run(runner) { problem, range, scratch in
                    sq_attention_backward(
                        problem, range.lowerBound, range.count, pp, go, strides[0], strides[1], strides[2], pq, pk, pv,
                        scratch)
                }
            }
        }
        /// `[B, rows, H, d]` storage seen as `[B, H, rows, d]`.
        func headsView(_ storage: TensorStorage?, rows: Int, depth: Int) -> Tensor? {
            storage.map {
                Tensor(
                    storage: $0, dtype: .f32, shape: [batch, headCount, rows, depth],
                    strides: [rows * headCount * depth, depth, headCount * depth, 1])
            }
        }
        return AttentionGradients(
            query: headsView(dq, rows: queries, depth: depth), key: headsView(dk, rows: keys, depth: depth),
            value: headsView(dv, rows: keys, depth: valueDepth))
    }
}

/// A dropout's kernel arguments (`enabled` 0 when there is none).
struct DropoutMask {
    let enabled: Int32
    let key: UInt64
    let threshold: UInt64
    let scale: Float

    init(_ parameters: DropoutParameters?) {
        guard let parameters, parameters.probability > 0 else {
            (enabled, key, threshold, scale) = (0, 0, 0, 1)
            return
        }
        enabled = 1
        key = randomStreamKey(seed: parameters.seed, stream: parameters.stream)
        threshold = dropoutThreshold(parameters.probability)
        scale = 1 / (1 - parameters.probability)
    }
}

/// Attention inputs as the C kernels read them: `[B, H, rows, d]` operands
/// whose last axis is contiguous (anything else is copied), and a bias
/// broadcast to `[B, H, T, S]` by strides.
struct AttentionHeads {
    let batch: Int
    let heads: Int
    let queries: Int
    let keys: Int
    let depth: Int
    let valueDepth: Int
    private let query: Tensor
    private let key: Tensor
    private let value: Tensor
    private let bias: Tensor?
    private let biasStrides: [Int]
    private let scale: Float
    private let mask: DropoutMask

    init(query: Tensor, key: Tensor, value: Tensor, bias: Tensor?, scale: Float, dropout: DropoutParameters?) {
        for t in [query, key, value] { t.requireFloat("attention") }
        precondition(query.rank == 4 && key.rank == 4 && value.rank == 4, "attention: q, k, v must be [B, H, T, d]")
        (batch, heads, queries, depth) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        keys = key.shape[2]
        valueDepth = value.shape[3]
        precondition(
            key.shape == [batch, heads, keys, depth] && value.shape == [batch, heads, keys, valueDepth],
            "attention: q \(query.shape), k \(key.shape), v \(value.shape)")
        func rowMajor(_ t: Tensor) -> Tensor { t.strides[3] == 1 || t.shape[3] == 1 ? t : t.contiguous() }
        self.query = rowMajor(query)
        self.key = rowMajor(key)
        self.value = rowMajor(value)
        if let bias {
            bias.requireFloat("attention")
            let packed = bias.contiguous()
            self.bias = packed
            biasStrides = Shapes.broadcastStrides(packed.shape, to: [batch, heads, queries, keys])
        } else {
            self.bias = nil
            biasStrides = [0, 0, 0, 0]
        }
        self.scale = scale
        mask = DropoutMask(dropout)
    }

    /// Runs `body` on fixed ranges of (batch, head) pairs with per-chunk scratch.
    func run(
        _ runner: ChunkRunner,
        _ body: (UnsafePointer<sq_attention_problem>, Range<Int>, UnsafeMutablePointer<Float>) -> Void
    ) {
        func base(_ t: Tensor) -> UnsafePointer<Float> {
            UnsafePointer(t.storage.bytes.assumingMemoryBound(to: Float.self) + t.offset)
        }
        withExtendedLifetime((query, key, value, bias)) {
            var problem = sq_attention_problem()
            problem.heads = heads
            problem.queries = queries
            problem.keys = keys
            problem.depth = depth
            problem.value_depth = valueDepth
            (problem.q, problem.q_batch, problem.q_head, problem.q_row) = (base(query), query.strides[0], query.strides[1], query.strides[2])
            (problem.k, problem.k_batch, problem.k_head, problem.k_row) = (base(key), key.strides[0], key.strides[1], key.strides[2])
            (problem.v, problem.v_batch, problem.v_head, problem.v_row) = (base(value), value.strides[0], value.strides[1], value.strides[2])
            problem.bias = bias.map(base)
            (problem.bias_batch, problem.bias_head, problem.bias_row, problem.bias_column) =
                (biasStrides[0], biasStrides[1], biasStrides[2], biasStrides[3])
            problem.scale = scale
            problem.dropout = mask.enabled
            problem.dropout_key = mask.key
            problem.dropout_threshold = mask.threshold
            problem.dropout_scale = mask.scale
            let scratchCount = Swift.max(sq_attention_forward_scratch(&problem), sq_attention_backward_scratch(&problem))
            let pairs = batch * heads
            // About 16K scores per chunk, and at least 8 chunks when there are
            // enough pairs (pairs are independent: chunking never changes results).
            let perChunk = Swift.max(1, Swift.min(16_384 / Swift.max(1, queries * keys), (pairs + 7) / 8))
            withUnsafePointer(to: &problem) { problemPointer in
                runner.forEachRange(count: pairs, chunkSize: perChunk) { range in
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(scratchCount, 1))
                    defer { scratch.deallocate() }
                    body(problemPointer, range, scratch)
                }
            }
        }
    }
}
