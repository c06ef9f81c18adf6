// Layer norm restricted to a set of columns (`Backend.maskedLayerNorm`).
//
// With `K` the columns whose mask entry is non-zero and `n = |K|`, each row
// gets `μ = Σ_K x / n`, `σ² = Σ_K (x − μ)² / n` and
// `y_j = (x_j − μ)/√(σ² + ε) · γ_j + β_j` for `j ∈ K`, `y_j = 0` otherwise.
// The backward is the usual layer-norm backward over `K` (with `n`), zero
// elsewhere, and `dγ`, `dβ` are zero outside `K`.

/// The selected columns of a `[D]` mask, checked against the row width.
private func selectedColumns(_ mask: Tensor, columns: Int, _ op: String) -> [Int] {
    precondition(mask.shape == [columns], "\(op): column mask must be [\(columns)], got \(mask.shape)")
    let flags = mask.nonZeroFlags
    return flags.indices.filter { flags[$0] }
}

extension ReferenceBackend {
    public func maskedLayerNorm(_ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        Self.maskedLayerNormLoops(x, columnMask: columnMask, gamma: gamma, beta: beta, epsilon: epsilon)
    }

    public func maskedLayerNormBackward(
        _ dy: Tensor, _ x: Tensor, columnMask: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        Self.maskedLayerNormBackwardLoops(dy, x, columnMask: columnMask, gamma: gamma, mean: mean, inverseStd: inverseStd)
    }

    /// The specification: plain loops, `Double` accumulation.
    static func maskedLayerNormLoops(
        _ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float
    ) -> LayerNormResult {
        x.requireFloat("maskedLayerNorm")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns] && beta.shape == [columns], "maskedLayerNorm: gamma/beta must be [\(columns)]")
        let selected = selectedColumns(columnMask, columns: columns, "maskedLayerNorm")
        let values = x.floats
        let g = gamma.floats
        let b = beta.floats
        var out = [Float](repeating: 0, count: values.count)
        var means = [Float](repeating: 0, count: rows)
        var inverseStds = [Float](repeating: 0, count: rows)
        if !selected.isEmpty {
            let count = Double(selected.count)
            for row in 0..<rows {
                let base = row * columns
                var total = 0.0
                for j in selected { total += Double(values[base + j]) }
                let mean = total / count
                var squares = 0.0
                for j in selected {
                    let d = Double(values[base + j]) - mean
                    squares += d * d
                }
                let inverseStd = 1 / (squares / count + Double(epsilon)).squareRoot()
                for j in selected {
                    out[base + j] = Float((Double(values[base + j]) - mean) * inverseStd * Double(g[j]) + Double(b[j]))
                }
                means[row] = Float(mean)
                inverseStds[row] = Float(inverseStd)
            }
        }
        return LayerNormResult(
            output: Tensor(shape: x.shape, floats: out),
            mean: Tensor(shape: [rows], floats: means),
            inverseStd: Tensor(shape: [rows], floats: inverseStds))
    }

    static func maskedLayerNormBackwardLoops(
        _ dy: Tensor, _ x: Tensor, columnMask: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        dy.requireFloat("maskedLayerNormBackward")
        x.requireFloat("maskedLayerNormBackward")
        precondition(dy.shape == x.shape, "maskedLayerNormBackward: dy \(dy.shape) vs x \(x.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "maskedLayerNormBackward: gamma must be [\(columns)]")
        precondition(mean.count == rows && inverseStd.count == rows, "maskedLayerNormBackward: statistics must be [\(rows)]")
        let selected = selectedColumns(columnMask, columns: columns, "maskedLayerNormBackward")
        let dyv = dy.floats
        let xv = x.floats
        let g = gamma.floats
        let means = mean.floats
        let inverses = inverseStd.floats
        var dx = [Float](repeating: 0, count: xv.count)
        var dGamma = [Double](repeating: 0, count: columns)
        var dBeta = [Double](repeating: 0, count: columns)
        let count = Double(Swift.max(selected.count, 1))
        for row in 0..<rows {
            let base = row * columns
            let mu = Double(means[row])
            let inv = Double(inverses[row])
            var meanDxHat = 0.0
            var meanDxHatXHat = 0.0
            for j in selected {
                let xHat = (Double(xv[base + j]) - mu) * inv
                let dxHat = Double(dyv[base + j]) * Double(g[j])
                meanDxHat += dxHat
                meanDxHatXHat += dxHat * xHat
                dGamma[j] += Double(dyv[base + j]) * xHat
                dBeta[j] += Double(dyv[base + j])
            }
            meanDxHat /= count
            meanDxHatXHat /= count
            for j in selected {
                let xHat = (Double(xv[base + j]) - mu) * inv
                let dxHat = Double(dyv[base + j]) * Double(g[j])
                dx[base + j] = Float(inv * (dxHat - meanDxHat - xHat * meanDxHatXHat))
            }
        }
        return LayerNormGradients(
            input: Tensor(shape: x.shape, floats: dx),
            gamma: Tensor(shape: [columns], floats: dGamma.map { Float($0) }),
            beta: Tensor(shape: [columns], floats: dBeta.map { Float($0) }))
    }
}

extension CPUBackend {
    /// Rows split into fixed chunks on the runner; per row a gather over the
    /// selected columns (pruning runs, so correctness over speed).
    public func maskedLayerNorm(_ x: Tensor, columnMask: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        for t in [x, gamma, beta] { t.requireFloat("maskedLayerNorm") }
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns] && beta.shape == [columns], "maskedLayerNorm: gamma/beta must be [\(columns)]")
        let selected = selectedColumns(columnMask, columns: columns, "maskedLayerNorm")
        let count = Float(selected.count)
        var means = [Float](repeating: 0, count: rows)
        var inverses = [Float](repeating: 0, count: rows)
        let output = withFloats(x) { px in
            withFloats(gamma) { pg in
                withFloats(beta) { pb in
                    selected.withUnsafeBufferPointer { columnsK in
                        means.withUnsafeMutableBufferPointer { pm in
                            inverses.withUnsafeMutableBufferPointer { pi in
                                produce(x.shape) { po in
                                    runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                                        for row in r {
                                            let input = px + row * columns
                                            let out = po + row * columns
                                            out.initialize(repeating: 0, count: columns)
                                            guard !columnsK.isEmpty else { continue }
                                            var total: Float = 0
                                            for j in columnsK { total += input[j] }
                                            let mu = total / count
                                            var squares: Float = 0
                                            for j in columnsK {
                                                let d = input[j] - mu
                                                squares += d * d
                                            }
                                            let inv = 1 / (squares / count + epsilon).squareRoot()
                                            for j in columnsK { out[j] = (input[j] - mu) * inv * pg[j] + pb[j] }
                                            pm[row] = mu
                                            pi[row] = inv
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return LayerNormResult(
            output: output, mean: Tensor(shape: [rows], floats: means), inverseStd: Tensor(shape: [rows], floats: inverses))
    }

    public func maskedLayerNormBackward(
        _ dy: Tensor, _ x: Tensor, columnMask: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        for t in [dy, x, gamma, mean, inverseStd] { t.requireFloat("maskedLayerNormBackward") }
        precondition(dy.shape == x.shape, "maskedLayerNormBackward: dy \(dy.shape) vs x \(x.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "maskedLayerNormBackward: gamma must be [\(columns)]")
        precondition(mean.count == rows && inverseStd.count == rows, "maskedLayerNormBackward: statistics must be [\(rows)]")
        let selected = selectedColumns(columnMask, columns: columns, "maskedLayerNormBackward")
        let count = Float(Swift.max(selected.count, 1))
        let perChunk = rowChunk(columns: columns)
        let chunks = (rows + perChunk - 1) / perChunk
        // Per-chunk partial sums of dγ and dβ, combined in chunk order below.
        var gammaPartials = [Float](repeating: 0, count: chunks * columns)
        var betaPartials = [Float](repeating: 0, count: chunks * columns)
        let dx = withFloats(dy) { pdy in
            withFloats(x) { px in
                withFloats(gamma) { pg in
                    withFloats(mean) { pm in
                        withFloats(inverseStd) { pi in
                            selected.withUnsafeBufferPointer { columnsK in
                                gammaPartials.withUnsafeMutableBufferPointer { gp in
                                    betaPartials.withUnsafeMutableBufferPointer { bp in
                                        produce(x.shape) { po in
                                            runner.run(chunks: chunks) { chunk in
                                                let gammaSums = gp.baseAddress.map { $0 + chunk * columns }
                                                let betaSums = bp.baseAddress.map { $0 + chunk * columns }
                                                for row in (chunk * perChunk)..<Swift.min(rows, (chunk + 1) * perChunk) {
                                                    let base = row * columns
                                                    let out = po + base
                                                    out.initialize(repeating: 0, count: columns)
                                                    let mu = pm[row], inv = pi[row]
                                                    var meanDxHat: Float = 0
                                                    var meanDxHatXHat: Float = 0
                                                    for j in columnsK {
                                                        let xHat = (px[base + j] - mu) * inv
                                                        let dxHat = pdy[base + j] * pg[j]
                                                        meanDxHat += dxHat
                                                        meanDxHatXHat += dxHat * xHat
                                                        gammaSums?[j] += pdy[base + j] * xHat
                                                        betaSums?[j] += pdy[base + j]
                                                    }
                                                    meanDxHat /= count
                                                    meanDxHatXHat /= count
                                                    for j in columnsK {
                                                        let xHat = (px[base + j] - mu) * inv
                                                        out[j] = inv * (pdy[base + j] * pg[j] - meanDxHat - xHat * meanDxHatXHat)
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Self.layerNormGradients(
            input: dx, gammaPartials: gammaPartials, betaPartials: betaPartials, chunks: chunks, columns: columns)
    }
}
