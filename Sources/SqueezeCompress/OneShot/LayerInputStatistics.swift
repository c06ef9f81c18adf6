/// Calibration statistics of one linear layer's input X (tokens × cols),
/// accumulated batch by batch: the Hessian of the layer-wise reconstruction
/// loss ‖WXᵀ − ŴXᵀ‖², `H = (2/n) Σ x xᵀ` over the n token rows seen
/// (SparseGPT §3 / GPTQ §3: `H = 2XXᵀ`, kept as the running average
/// `H ← H · n/(n+k) + (2/(n+k)) · XₖᵀXₖ` of the reference `add_batch`), and
/// each input column's `Σ x_j²`, whose square root is Wanda's `‖X_j‖₂`.
///
/// Everything is Double and summed in a fixed order, so the same batches in
/// the same order give the same bits. Only real token rows may be passed:
/// the caller drops padding before accumulating.
public struct LayerInputStatistics: Sendable, Hashable {
    /// The layer's input width.
    public let columns: Int
    /// Token rows accumulated so far.
    public private(set) var tokenCount: Int
    /// `(2/n) Σ x xᵀ`, `columns × columns`, row-major, symmetric.
    public private(set) var hessian: [Double]
    /// `Σ x_j²` per input column over all tokens.
    public private(set) var sumOfSquares: [Double]

    /// Empty statistics for a layer with `columns` inputs.
    public init(columns: Int) throws(OneShotError) {
        guard columns >= 1 else { throw .invalidShape(name: "the statistics", count: 0, rows: 1, cols: columns) }
        self.columns = columns
        self.tokenCount = 0
        self.hessian = [Double](repeating: 0, count: columns * columns)
        self.sumOfSquares = [Double](repeating: 0, count: columns)
    }

    /// Wanda's `‖X_j‖₂` per input column.
    public var columnNorms: [Double] { sumOfSquares.map { $0.squareRoot() } }

    /// Adds `tokens` rows of `columns` inputs (row-major), with `XᵀX` summed
    /// in Double by plain loops (token order, then column order).
    public mutating func accumulate(rows inputs: [Float], tokens: Int) throws(OneShotError) {
        guard tokens >= 0, inputs.count == tokens * columns else {
            throw .invalidShape(name: "the calibration inputs", count: inputs.count, rows: tokens, cols: columns)
        }
        try Self.checkFinite(inputs, columns: columns)
        guard tokens > 0 else { return }
        let width = columns
        var gram = [Double](repeating: 0, count: width * width)
        var squares = [Double](repeating: 0, count: width)
        var row = [Double](repeating: 0, count: width)
        inputs.withUnsafeBufferPointer { xb in
            gram.withUnsafeMutableBufferPointer { gb in
                row.withUnsafeMutableBufferPointer { rb in
                    guard let x = xb.baseAddress, let g = gb.baseAddress, let r = rb.baseAddress else { return }
                    for token in 0..<tokens {
                        for j in 0..<width { r[j] = Double(x[token * width + j]) }
                        for i in 0..<width {
                            let xi = r[i]
                            squares[i] += xi * xi
                            let gramRow = g + i * width
                            for j in i..<width { gramRow[j] += xi * r[j] }
                        }
                    }
                    for i in 0..<width { for j in 0..<i { g[i * width + j] = g[j * width + i] } }
                }
            }
        }
        merge(gram: gram, squares: squares, tokens: tokens)
    }

    /// Folds in one batch's `XᵀX` (symmetric, `columns × columns`) and `Σ x_j²`
    /// over `tokens` rows: the running-average update of the reference.
    mutating func merge(gram: [Double], squares: [Double], tokens: Int) {
        let total = tokenCount + tokens
        let keep = Double(tokenCount) / Double(total)
        let add = 2 / Double(total)
        for index in hessian.indices { hessian[index] = hessian[index] * keep + add * gram[index] }
        for j in 0..<columns { sumOfSquares[j] += squares[j] }
        tokenCount = total
    }

    static func checkFinite(_ inputs: [Float], columns: Int) throws(OneShotError) {
        if let index = inputs.firstIndex(where: { !$0.isFinite }) {
            throw .nonFiniteInput(row: index / columns, column: index % columns)
        }
    }
}
