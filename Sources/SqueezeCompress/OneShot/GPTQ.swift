/// GPTQ settings (Frantar et al. 2022) beyond the grid.
public struct GPTQOptions: Sendable, Hashable {
    public var grid: WeightGrid
    /// Process columns in order of decreasing H_jj ("act order", the
    /// reference's `actorder`; ties by column). With groups, the group
    /// parameters are then always static (see `staticGroups`).
    public var actOrder: Bool
    /// Compute every group's scale (and zero point) from the original
    /// weights before the pass (the reference's `static_groups`). Without it
    /// (and without act order) a group's parameters come from the weights as
    /// updated by the error compensation when its first column is reached, as
    /// in the reference. Either way the groups are the original consecutive
    /// columns, so the result fits the plain group-wise format. Per-row grids
    /// (`groupSize` −1) always take their parameters from the original row.
    public var staticGroups: Bool
    /// `λ = dampening · mean(diag H)` is added to the Hessian's diagonal.
    public var dampening: Double
    /// Columns per block of lazy batch updates; without static groups it is
    /// rounded up to a multiple of the group size, so that each group's
    /// parameters see all earlier updates.
    public var blockSize: Int
    /// Weights that are exactly zero in the input stay exactly zero (the zero
    /// is a code of every grid: 0 symmetric, the zero point asymmetric) and
    /// count as 0 in their group's range: SparseGPT's joint sparsity +
    /// quantization. Their drift from the compensation is itself compensated.
    public var keepZeros: Bool

    public init(
        grid: WeightGrid, actOrder: Bool = false, staticGroups: Bool = false, dampening: Double = 0.01,
        blockSize: Int = 128, keepZeros: Bool = false
    ) {
        self.grid = grid
        self.actOrder = actOrder
        self.staticGroups = staticGroups
        self.dampening = dampening
        self.blockSize = blockSize
        self.keepZeros = keepZeros
    }

    /// Whether group parameters are fixed before the pass.
    var usesStaticGroups: Bool { staticGroups || actOrder || grid.groupSize == -1 }
}

/// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
/// Generative Pre-trained Transformers", Algorithm 1), weight-only, following
/// the authors' `fasterquant`: dead inputs zeroed, dampening, R = upper
/// Cholesky factor of H⁻¹ (Double), then column by column (in act order if
/// asked) `q = quant(w)`, `δ = (w − q)/R_jj`, `W[:, j+1:block_end] −= δ ·
/// R[j, j+1:block_end]` (Eq. 2 with the Cholesky form of §3 step 3), and
/// after each block of `blockSize` columns the lazy batch update
/// `W[:, block_end:] −= Err · R[block, block_end:]` (§3 step 2).
///
/// Differs from the reference where it must: parameters of a dynamic group
/// are taken from the current (compensated) weights of the group, which the
/// reference only sees when groups align with blocks (it reads the matrix
/// outside the block buffer); here blocks are aligned to groups instead, so
/// blocked and unblocked runs agree. The grid is the stored weight-only
/// format's (`WeightGrid`), not the reference's unsigned one.
public enum GPTQ {
    public static func quantize(
        weight: [Float], rows: Int, cols: Int, statistics: LayerInputStatistics?, options: GPTQOptions
    ) throws(OneShotError) -> QuantizedLayer {
        let statistics = try OneShotPruning.calibrated(statistics, cols: cols, method: "GPTQ")
        return try quantize(weight: weight, rows: rows, cols: cols, hessian: statistics.hessian, options: options)
    }

    public static func quantize(
        weight: [Float], rows: Int, cols: Int, hessian: [Double], options: GPTQOptions
    ) throws(OneShotError) -> QuantizedLayer {
        try OneShotValidation.checkWeight(weight, rows: rows, cols: cols)
        try OneShotValidation.checkBlock(size: options.blockSize, dampening: options.dampening)
        let grid = options.grid
        try grid.validate(cols: cols)
        guard hessian.count == cols * cols else { throw .widthMismatch(expected: cols, got: SparseGPT.width(ofSquare: hessian.count)) }

        var h = hessian
        var dead = [Bool](repeating: false, count: cols)
        for j in 0..<cols where h[j * cols + j] == 0 {
            dead[j] = true
            h[j * cols + j] = 1
        }
        var original = weight
        for row in 0..<rows { for j in 0..<cols where dead[j] { original[row * cols + j] = 0 } }
        let zeros = options.keepZeros ? original.map { $0 == 0 } : nil

        // Column order: decreasing H_jj (stable), or as given.
        var order = Array(0..<cols)
        if options.actOrder { order.sort { (-h[$0 * cols + $0], $0) < (-h[$1 * cols + $1], $1) } }
        var permuted = [Double](repeating: 0, count: cols * cols)
        for i in 0..<cols { for j in 0..<cols { permuted[i * cols + j] = h[order[i] * cols + order[j]] } }
        let r = try HessianInverse.upperCholeskyOfInverse(preparedHessian: permuted, n: cols, dampening: options.dampening)

        // W in processing order, Double.
        var w = [Double](repeating: 0, count: rows * cols)
        for row in 0..<rows { for p in 0..<cols { w[row * cols + p] = Double(original[row * cols + order[p]]) } }

        let size = grid.columnsPerGroup(cols: cols)
        let groups = cols / size
        var result = QuantizedLayer(rows: rows, cols: cols, grid: grid)
        var parameters = [WeightGrid.Parameters](repeating: .init(scale: 1, zero: 0), count: rows * groups)
        func rangeValue(_ value: Float, row: Int, column: Int) -> Float {
            zeros?[row * cols + column] == true ? 0 : value
        }
        if options.usesStaticGroups {
            for row in 0..<rows {
                for group in 0..<groups {
                    let start = group * size
                    let values = (start..<(start + size)).map { rangeValue(original[row * cols + $0], row: row, column: $0) }
                    parameters[row * groups + group] = grid.parameters(of: values)
                }
            }
        }

        var blockSize = options.blockSize
        if !options.usesStaticGroups { blockSize = (blockSize + size - 1) / size * size }
        var errors = [Double](repeating: 0, count: rows * blockSize)
        var diverged = false
        for i1 in stride(from: 0, to: cols, by: blockSize) {
            let i2 = Swift.min(i1 + blockSize, cols)
            for p in i1..<i2 {
                let column = order[p]
                if !options.usesStaticGroups && column % size == 0 {
                    let group = column / size
                    for row in 0..<rows {
                        let values = (column..<(column + size)).map { rangeValue(Float(w[row * cols + $0]), row: row, column: $0) }
                        parameters[row * groups + group] = grid.parameters(of: values)
                    }
                }
                let group = column / size
                SparseGPT.compensate(column: p, blockEnd: i2, blockStart: i1, rows: rows, cols: cols, r: r, w: &w, errors: &errors) {
                    index, value in
                    if !value.isFinite { diverged = true }
                    let row = index / cols
                    let p = parameters[row * groups + group]
                    let code = zeros?[row * cols + column] == true ? p.zero : grid.code(Float(value), p)
                    result.set(index: row * cols + column, code: code, p)
                    return Double(grid.dequantize(code, p))
                }
            }
            SparseGPT.lazyUpdate(blockStart: i1, blockEnd: i2, rows: rows, cols: cols, r: r, w: &w, errors: errors)
        }
        guard !diverged else { throw .nonFiniteResult(method: "GPTQ", dampening: options.dampening) }
        for row in 0..<rows { for group in 0..<groups { result.setParameters(parameters[row * groups + group], row: row, group: group) } }
        return result
    }
}
