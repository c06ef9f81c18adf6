/// The damped inverse Hessian in the form SparseGPT and GPTQ use: the upper
/// Cholesky factor R of H⁻¹ (`RᵀR = H⁻¹`, R upper triangular with a positive
/// diagonal). Row j of R, scaled by 1/R_jj, is row j of the inverse Hessian
/// of the columns not yet processed (j…n−1) once columns 0…j−1 have been
/// eliminated (GPTQ §3 "Cholesky reformulation"), so one factor gives every
/// step of the sequential OBS updates.
///
/// All in Double. Instead of the reference's Cholesky → inverse → Cholesky,
/// R comes from one Cholesky and one triangular inverse: with J the
/// order-reversing permutation and `JHJ = UᵀU`, `R = J U⁻ᵀ J`.
enum HessianInverse {
    /// Prepares `hessian` (`n × n`, row-major) as the references do: a dead
    /// input (H_jj = 0, never non-zero in calibration) gets H_jj = 1 and is
    /// reported so its weight column can be zeroed; then `λ = dampening ·
    /// mean(diag H)` is added to the diagonal. Returns R and the dead columns.
    static func upperCholeskyOfInverse(
        hessian: [Double], n: Int, dampening: Double
    ) throws(OneShotError) -> (factor: [Double], dead: [Bool]) {
        var h = hessian
        var dead = [Bool](repeating: false, count: n)
        for j in 0..<n where h[j * n + j] == 0 {
            dead[j] = true
            h[j * n + j] = 1
        }
        let factor = try upperCholeskyOfInverse(preparedHessian: h, n: n, dampening: dampening)
        return (factor, dead)
    }

    /// R for a Hessian whose dead columns are already handled; adds the dampening.
    static func upperCholeskyOfInverse(preparedHessian h: [Double], n: Int, dampening: Double) throws(OneShotError) -> [Double] {
        var meanDiagonal = 0.0
        for j in 0..<n { meanDiagonal += h[j * n + j] }
        meanDiagonal /= Double(n)
        let damp = dampening * meanDiagonal
        // B = J (H + λI) J: reversed rows and columns.
        var b = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n { b[(n - 1 - i) * n + (n - 1 - j)] = h[i * n + j] }
            b[(n - 1 - i) * n + (n - 1 - i)] += damp
        }
        if let failed = choleskyUpperInPlace(&b, n: n) {
            throw .hessianNotPositiveDefinite(column: n - 1 - failed, dampening: dampening)
        }
        let inverse = upperTriangularInverse(b, n: n)
        var r = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n { r[i * n + j] = inverse[(n - 1 - j) * n + (n - 1 - i)] }
        }
        return r
    }

    /// Rows handled together by the blocked loops below: a panel of U (or a
    /// tile of accumulators) stays in cache while the matrix streams past once.
    static let panel = 32

    /// Overwrites the upper triangle of the symmetric `a` with U (`UᵀU = a`)
    /// and zeroes the lower triangle; returns the column whose pivot was not
    /// positive, or nil. Right-looking by panels of rows, with contiguous
    /// row updates (they vectorise); every entry receives its updates in
    /// increasing k, as in the unblocked algorithm, so the bits are the same.
    static func choleskyUpperInPlace(_ a: inout [Double], n: Int) -> Int? {
        a.withUnsafeMutableBufferPointer { buffer -> Int? in
            guard let p = buffer.baseAddress else { return nil }
            for k0 in stride(from: 0, to: n, by: panel) {
                let k1 = Swift.min(k0 + panel, n)
                for k in k0..<k1 {
                    let pivot = p[k * n + k]
                    guard pivot > 0, pivot.isFinite else { return k }
                    let d = pivot.squareRoot()
                    p[k * n + k] = d
                    let rowK = p + k * n
                    for j in (k + 1)..<n { rowK[j] /= d }
                    for i in (k + 1)..<k1 {
                        let s = rowK[i]
                        let rowI = p + i * n
                        for j in i..<n { rowI[j] -= s * rowK[j] }
                    }
                }
                for i in k1..<n {
                    let rowI = p + i * n
                    var k = k0
                    // Four rows of the panel per pass over row i; the
                    // subtractions stay in increasing k (same bits).
                    while k + 4 <= k1 {
                        let (r0, r1, r2, r3) = (p + k * n, p + (k + 1) * n, p + (k + 2) * n, p + (k + 3) * n)
                        let (s0, s1, s2, s3) = (r0[i], r1[i], r2[i], r3[i])
                        for j in i..<n { rowI[j] = rowI[j] - s0 * r0[j] - s1 * r1[j] - s2 * r2[j] - s3 * r3[j] }
                        k += 4
                    }
                    while k < k1 {
                        let rowK = p + k * n
                        let s = rowK[i]
                        for j in i..<n { rowI[j] -= s * rowK[j] }
                        k += 1
                    }
                }
            }
            for i in 0..<n { for j in 0..<i { p[i * n + j] = 0 } }
            return nil
        }
    }

    /// The inverse of an upper triangular `u` with a positive diagonal (upper
    /// triangular too), by tiles of rows: `(XU)[i, j] = δ_ij` gives
    /// `X[i, k] = (δ_ik − Σ_{i≤l<k} X[i, l] U[l, k]) / U[k, k]`, the sums
    /// accumulated in increasing l while each row of U is read once per tile.
    static func upperTriangularInverse(_ u: [Double], n: Int) -> [Double] {
        var x = [Double](repeating: 0, count: n * n)
        var accumulator = [Double](repeating: 0, count: panel * n)
        u.withUnsafeBufferPointer { ub in
            x.withUnsafeMutableBufferPointer { xb in
                accumulator.withUnsafeMutableBufferPointer { acc in
                    guard let up = ub.baseAddress, let xp = xb.baseAddress, let ap = acc.baseAddress else { return }
                    for i0 in stride(from: 0, to: n, by: panel) {
                        let i1 = Swift.min(i0 + panel, n)
                        for t in 0..<(i1 - i0) { for j in 0..<n { ap[t * n + j] = 0 } }
                        for k in i0..<n {
                            let rowU = up + k * n
                            let diagonal = rowU[k]
                            let last = Swift.min(i1, k + 1)
                            func value(_ i: Int) -> Double {
                                let v = ((k == i ? 1 : 0) - ap[(i - i0) * n + k]) / diagonal
                                xp[i * n + k] = v
                                return v
                            }
                            var i = i0
                            // Four accumulator rows per pass over row k of U; each
                            // entry still gets one update per k (same bits).
                            while i + 4 <= last {
                                let (a0, a1, a2, a3) = (ap + (i - i0) * n, ap + (i + 1 - i0) * n, ap + (i + 2 - i0) * n, ap + (i + 3 - i0) * n)
                                let (v0, v1, v2, v3) = (value(i), value(i + 1), value(i + 2), value(i + 3))
                                for j in (k + 1)..<n {
                                    let u = rowU[j]
                                    a0[j] += v0 * u
                                    a1[j] += v1 * u
                                    a2[j] += v2 * u
                                    a3[j] += v3 * u
                                }
                                i += 4
                            }
                            while i < last {
                                let rowA = ap + (i - i0) * n
                                let v = value(i)
                                for j in (k + 1)..<n { rowA[j] += v * rowU[j] }
                                i += 1
                            }
                        }
                    }
                }
            }
        }
        return x
    }
}
