import SqueezeTensor

extension LayerInputStatistics {
    /// Adds a batch `inputs` (f32 `[tokens, columns]`, real tokens only) with
    /// `XᵀX` computed by `backend.matmul` in f32 (one product per batch, the
    /// fast path for wide layers) and folded into the Double statistics; the
    /// product is symmetrised (`(G + Gᵀ)/2`) so both triangles agree. `Σ x_j²`
    /// is summed in Double by plain loops. The same backend (fingerprint) and
    /// batches give the same bits.
    public mutating func accumulate(_ inputs: Tensor, backend: any Backend) throws(OneShotError) {
        guard inputs.dtype == .f32, inputs.rank == 2 else {
            throw .invalidCalibrationInputs(dtype: "\(inputs.dtype)", shape: inputs.shape)
        }
        guard inputs.shape[1] == columns else { throw .widthMismatch(expected: columns, got: inputs.shape[1]) }
        let tokens = inputs.shape[0]
        guard tokens > 0 else { return }
        let values = inputs.contiguous().floats
        try Self.checkFinite(values, columns: columns)
        let product = backend.matmul(inputs, inputs, transposeA: true, transposeB: false, alpha: 1).floats
        let width = columns
        var gram = [Double](repeating: 0, count: width * width)
        for i in 0..<width {
            for j in 0..<width { gram[i * width + j] = (Double(product[i * width + j]) + Double(product[j * width + i])) / 2 }
        }
        var squares = [Double](repeating: 0, count: width)
        for token in 0..<tokens {
            for j in 0..<width {
                let x = Double(values[token * width + j])
                squares[j] += x * x
            }
        }
        merge(gram: gram, squares: squares, tokens: tokens)
    }
}
