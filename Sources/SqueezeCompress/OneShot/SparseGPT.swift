/// SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models
/// Can Be Accurately Pruned in One-Shot", Algorithm 1), following the
/// authors' `fasterprune`:
///
/// 1. dead inputs (H_jj = 0) get H_jj = 1 and a zero weight column;
///    `λ = dampening · mean(diag H)` is added to the diagonal;
/// 2. R = upper Cholesky factor of H⁻¹ (`HessianInverse`), in Double;
/// 3. columns in blocks of `blockSize`: an unstructured mask is chosen per
///    block from `w²/R_jj²` (the OBS saliency `w²/[H_F⁻¹]_jj` of §3.2, with
///    R_jj² = [H_F⁻¹]_jj), an N:M mask per row when a group of M columns
///    starts (§3.3), then column by column the OBS update (Eq. 3)
///    `δ = (w_j − q_j)/R_jj`, `W[:, j:block_end] −= δ · R[j, j:block_end]`;
/// 4. after each block the lazy batch update
///    `W[:, block_end:] −= Err · R[block, block_end:]` (§3.4).
///
/// Differences from the reference, on purpose: the unstructured count per
/// block is `⌊f·rows·i2⌋ − ⌊f·rows·i1⌋` (the reference prunes every score
/// ≤ the ⌊f·size⌋-th, so ties can prune more), so the layer reaches
/// ⌊f·rows·cols⌋ exactly; ties are broken by position; for N:M the block size
/// is rounded up to a multiple of M so no group straddles two blocks.
public enum SparseGPT {
    public static func prune(
        weight: [Float], rows: Int, cols: Int, hessian: [Double], target: SparsityTarget,
        options: OneShotPruningOptions = OneShotPruningOptions()
    ) throws(OneShotError) -> PrunedLayer {
        try OneShotValidation.checkWeight(weight, rows: rows, cols: cols)
        try OneShotValidation.checkMask(options.priorMask, rows: rows, cols: cols)
        try OneShotValidation.checkBlock(size: options.blockSize, dampening: options.dampening)
        try target.validate(cols: cols)
        guard hessian.count == cols * cols else { throw .widthMismatch(expected: cols, got: Self.width(ofSquare: hessian.count)) }
        let (r, dead) = try HessianInverse.upperCholeskyOfInverse(hessian: hessian, n: cols, dampening: options.dampening)
        var w = weight.map(Double.init)
        for row in 0..<rows { for j in 0..<cols where dead[j] { w[row * cols + j] = 0 } }
        var mask = [Bool](repeating: true, count: rows * cols)
        let prior = options.priorMask
        var blockSize = options.blockSize
        var groupSize = 0
        var keptPerGroup = 0
        if case .nOfM(let n, let m) = target {
            blockSize = (blockSize + m - 1) / m * m
            groupSize = m
            keptPerGroup = n
        }
        var errors = [Double](repeating: 0, count: rows * blockSize)
        for i1 in stride(from: 0, to: cols, by: blockSize) {
            let i2 = Swift.min(i1 + blockSize, cols)
            let count = i2 - i1
            if case .unstructured(let fraction) = target {
                let before = Int((fraction * Double(rows * i1)).rounded(.down))
                let after = Int((fraction * Double(rows * i2)).rounded(.down))
                var indices: [Int] = []
                indices.reserveCapacity(rows * count)
                for row in 0..<rows { for j in i1..<i2 { indices.append(row * cols + j) } }
                OneShotPruning.pruneLowest(
                    indices, count: after - before, score: { saliency(w, r, $0, cols: cols) }, prior: prior, mask: &mask)
            }
            for j in i1..<i2 {
                if groupSize > 0 && j % groupSize == 0 {
                    for row in 0..<rows {
                        let start = row * cols + j
                        OneShotPruning.pruneLowest(
                            Array(start..<(start + groupSize)), count: groupSize - keptPerGroup,
                            score: { saliency(w, r, $0, cols: cols) }, prior: prior, mask: &mask)
                    }
                }
                compensate(column: j, blockEnd: i2, blockStart: i1, rows: rows, cols: cols, r: r, w: &w, errors: &errors) {
                    mask[$0] ? $1 : 0
                }
            }
            lazyUpdate(blockStart: i1, blockEnd: i2, rows: rows, cols: cols, r: r, w: &w, errors: errors)
        }
        guard w.allSatisfy(\.isFinite) else { throw .nonFiniteResult(method: "SparseGPT", dampening: options.dampening) }
        var pruned = [Float](repeating: 0, count: rows * cols)
        for index in pruned.indices where mask[index] { pruned[index] = Float(w[index]) }
        return PrunedLayer(rows: rows, cols: cols, weights: pruned, mask: mask)
    }

    /// `w² / R_jj²` of flat index `index`.
    static func saliency(_ w: [Double], _ r: [Double], _ index: Int, cols: Int) -> Double {
        let j = index % cols
        let d = r[j * cols + j]
        return w[index] * w[index] / (d * d)
    }

    static func width(ofSquare count: Int) -> Int {
        var width = 0
        while (width + 1) * (width + 1) <= count { width += 1 }
        return width
    }

    /// Column `j` of every row replaced by `target(flatIndex, w)`, the error
    /// `(w − q)/R_jj` stored in `errors` and spread over the rest of the
    /// block: `W[:, j+1:blockEnd] −= δ · R[j, j+1:blockEnd]` (OBS, Eq. 3).
    static func compensate(
        column j: Int, blockEnd: Int, blockStart: Int, rows: Int, cols: Int, r: [Double], w: inout [Double],
        errors: inout [Double], target: (Int, Double) -> Double
    ) {
        let width = errors.count / Swift.max(rows, 1)
        let d = r[j * cols + j]
        r.withUnsafeBufferPointer { rb in
            w.withUnsafeMutableBufferPointer { wb in
                guard let rp = rb.baseAddress, let wp = wb.baseAddress else { return }
                let rowR = rp + j * cols
                for row in 0..<rows {
                    let index = row * cols + j
                    let value = wp[index]
                    let q = target(index, value)
                    let delta = (value - q) / d
                    errors[row * width + (j - blockStart)] = delta
                    wp[index] = q
                    guard delta != 0 else { continue }
                    let rowW = wp + row * cols
                    for t in (j + 1)..<blockEnd { rowW[t] -= delta * rowR[t] }
                }
            }
        }
    }

    /// The lazy batch update after a block: `W[:, blockEnd:] −= Err · R[block, blockEnd:]`,
    /// in tiles of rows so a tile of W stays in cache while R's rows stream.
    static func lazyUpdate(blockStart: Int, blockEnd: Int, rows: Int, cols: Int, r: [Double], w: inout [Double], errors: [Double]) {
        guard blockEnd < cols else { return }
        let width = errors.count / Swift.max(rows, 1)
        let tile = 16
        r.withUnsafeBufferPointer { rb in
            w.withUnsafeMutableBufferPointer { wb in
                errors.withUnsafeBufferPointer { eb in
                    guard let rp = rb.baseAddress, let wp = wb.baseAddress, let ep = eb.baseAddress else { return }
                    for tileStart in stride(from: 0, to: rows, by: tile) {
                        let tileEnd = Swift.min(tileStart + tile, rows)
                        for k in blockStart..<blockEnd {
                            let rowR = rp + k * cols
                            for row in tileStart..<tileEnd {
                                let delta = ep[row * width + (k - blockStart)]
                                guard delta != 0 else { continue }
                                let rowW = wp + row * cols
                                for t in blockEnd..<cols { rowW[t] -= delta * rowR[t] }
                            }
                        }
                    }
                }
            }
        }
    }
}
