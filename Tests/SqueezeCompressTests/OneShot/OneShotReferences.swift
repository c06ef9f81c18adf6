import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// A random layer and its calibration inputs for the one-shot tests.
struct OneShotCase {
    let rows: Int
    let cols: Int
    let tokens: Int
    /// `[rows, cols]`, row-major.
    let weight: [Float]
    /// `[tokens, cols]`, row-major.
    let inputs: [Float]
    let statistics: LayerInputStatistics

    /// W standard normal; X = Z·A (Z standard normal, A a random mixing with
    /// entries N(0, 1/cols)), then `outliers` columns scaled by 8 (outlier
    /// features as in LLM activations). Statistics by plain Double loops.
    init(rows: Int, cols: Int, tokens: Int, outliers: Int = 3, seed: UInt64) throws {
        self.rows = rows
        self.cols = cols
        self.tokens = tokens
        weight = normalValues(rows * cols, seed: seed)
        let z = normalValues(tokens * cols, seed: seed + 1)
        let mixing = normalValues(cols * cols, seed: seed + 2).map { $0 / Float(cols).squareRoot() }
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            for j in 0..<cols {
                var sum: Float = 0
                for k in 0..<cols { sum += z[t * cols + k] * mixing[k * cols + j] }
                x[t * cols + j] = sum
            }
        }
        for outlier in 0..<outliers {
            let column = (outlier * 7 + 3) % cols
            for t in 0..<tokens { x[t * cols + column] *= 8 }
        }
        inputs = x
        var statistics = try LayerInputStatistics(columns: cols)
        try statistics.accumulate(rows: x, tokens: tokens)
        self.statistics = statistics
    }

    /// ‖W Xᵀ − Ŵ Xᵀ‖_F over the calibration inputs.
    func reconstructionError(_ approximation: [Float]) -> Double {
        var total = 0.0
        for row in 0..<rows {
            for t in 0..<tokens {
                var sum = 0.0
                for j in 0..<cols {
                    sum += (Double(weight[row * cols + j]) - Double(approximation[row * cols + j])) * Double(inputs[t * cols + j])
                }
                total += sum * sum
            }
        }
        return total.squareRoot()
    }
}

/// Plain, unblocked implementations written from the papers, to check the
/// blocked library code against: an explicit inverse Hessian updated by
/// Gaussian elimination after every column (OBS, SparseGPT Eq. 3 / GPTQ
/// Eq. 2–3), no Cholesky factor, no blocks, no lazy updates.
enum OneShotReference {
    /// Gauss–Jordan inverse with partial pivoting.
    static func inverse(_ matrix: [Double], n: Int) -> [Double] {
        var a = matrix
        var inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inv[i * n + i] = 1 }
        for column in 0..<n {
            var pivot = column
            for row in column..<n where abs(a[row * n + column]) > abs(a[pivot * n + column]) { pivot = row }
            if pivot != column {
                for k in 0..<n {
                    a.swapAt(pivot * n + k, column * n + k)
                    inv.swapAt(pivot * n + k, column * n + k)
                }
            }
            let d = a[column * n + column]
            for k in 0..<n {
                a[column * n + k] /= d
                inv[column * n + k] /= d
            }
            for row in 0..<n where row != column {
                let factor = a[row * n + column]
                guard factor != 0 else { continue }
                for k in 0..<n {
                    a[row * n + k] -= factor * a[column * n + k]
                    inv[row * n + k] -= factor * inv[column * n + k]
                }
            }
        }
        return inv
    }

    /// Dead columns handled and dampening added, as the papers' code does.
    static func dampedInverse(_ hessian: [Double], n: Int, dampening: Double) -> (inverse: [Double], dead: [Bool]) {
        var h = hessian
        var dead = [Bool](repeating: false, count: n)
        for j in 0..<n where h[j * n + j] == 0 {
            dead[j] = true
            h[j * n + j] = 1
        }
        let mean = (0..<n).reduce(0.0) { $0 + h[$1 * n + $1] } / Double(n)
        for j in 0..<n { h[j * n + j] += dampening * mean }
        return (inverse(h, n: n), dead)
    }

    /// Removes column/row `j` from the inverse Hessian of the remaining columns.
    static func eliminate(_ inv: inout [Double], n: Int, _ j: Int) {
        let d = inv[j * n + j]
        let pivotRow = Array(inv[(j * n)..<(j * n + n)])
        for a in 0..<n where a != j {
            let factor = inv[a * n + j] / d
            guard factor != 0 else { continue }
            for b in 0..<n { inv[a * n + b] -= factor * pivotRow[b] }
        }
        for b in 0..<n {
            inv[j * n + b] = 0
            inv[b * n + j] = 0
        }
    }

    /// `[H_F⁻¹]_jj` at the step of each column j (F = columns j…n−1).
    static func stepDiagonals(_ inv: [Double], n: Int) -> [Double] {
        var current = inv
        var diagonals: [Double] = []
        for j in 0..<n {
            diagonals.append(current[j * n + j])
            eliminate(&current, n: n, j)
        }
        return diagonals
    }

    /// One OBS step on every row: column j set to `q(row, w)`, the error
    /// `(w − q)/[H_F⁻¹]_jj · [H_F⁻¹]_{j,:}` subtracted from the later columns.
    static func obsStep(_ w: inout [Double], rows: Int, cols: Int, inv: [Double], j: Int, q: (Int, Double) -> Double) {
        let d = inv[j * cols + j]
        for row in 0..<rows {
            let value = w[row * cols + j]
            let target = q(row, value)
            let delta = (value - target) / d
            for t in (j + 1)..<cols { w[row * cols + t] -= delta * inv[j * cols + t] }
            w[row * cols + j] = target
        }
    }

    /// SparseGPT with the selection rules of the library (per block of
    /// `blockSize` columns: ⌊f·rows·i2⌋ − ⌊f·rows·i1⌋ lowest `w²/[H_F⁻¹]_jj`;
    /// N:M per row at each group start; ties by position; prior zeros first).
    static func sparseGPT(
        _ layer: OneShotCase, target: SparsityTarget, blockSize: Int, dampening: Double = 0.01, prior: [Bool]? = nil,
        weight: [Float]? = nil
    ) -> PrunedLayer {
        let (rows, cols) = (layer.rows, layer.cols)
        var (inv, dead) = dampedInverse(layer.statistics.hessian, n: cols, dampening: dampening)
        let diagonals = stepDiagonals(inv, n: cols)
        var w = (weight ?? layer.weight).map(Double.init)
        for row in 0..<rows { for j in 0..<cols where dead[j] { w[row * cols + j] = 0 } }
        var mask = [Bool](repeating: true, count: rows * cols)
        func score(_ index: Int) -> Double {
            let d = diagonals[index % cols]
            return w[index] * w[index] / d
        }
        func prune(_ indices: [Int], count: Int) {
            let forced = indices.filter { prior?[$0] == false }
            for index in forced { mask[index] = false }
            let free = indices.filter { prior?[$0] != false }.sorted { (score($0), $0) < (score($1), $1) }
            for index in free.prefix(max(0, count - forced.count)) { mask[index] = false }
        }
        var effectiveBlock = blockSize
        if case .nOfM(_, let m) = target { effectiveBlock = (blockSize + m - 1) / m * m }
        for j in 0..<cols {
            switch target {
            case .unstructured(let fraction):
                if j % effectiveBlock == 0 {
                    let end = min(j + effectiveBlock, cols)
                    let count = Int((fraction * Double(rows * end)).rounded(.down)) - Int((fraction * Double(rows * j)).rounded(.down))
                    prune((0..<rows).flatMap { row in (j..<end).map { row * cols + $0 } }, count: count)
                }
            case .nOfM(let n, let m):
                if j % m == 0 { for row in 0..<rows { prune(Array((row * cols + j)..<(row * cols + j + m)), count: m - n) } }
            }
            obsStep(&w, rows: rows, cols: cols, inv: inv, j: j) { row, value in mask[row * cols + j] ? value : 0 }
            eliminate(&inv, n: cols, j)
        }
        let weights = (0..<(rows * cols)).map { mask[$0] ? Float(w[$0]) : 0 }
        return PrunedLayer(rows: rows, cols: cols, weights: weights, mask: mask)
    }

    /// GPTQ column by column with the library's grid and group rules.
    static func gptq(_ layer: OneShotCase, options: GPTQOptions, weight: [Float]? = nil) -> [Float] {
        let (rows, cols) = (layer.rows, layer.cols)
        let grid = options.grid
        let size = grid.columnsPerGroup(cols: cols)
        var h = layer.statistics.hessian
        var dead = [Bool](repeating: false, count: cols)
        for j in 0..<cols where h[j * cols + j] == 0 {
            dead[j] = true
            h[j * cols + j] = 1
        }
        var original = weight ?? layer.weight
        for row in 0..<rows { for j in 0..<cols where dead[j] { original[row * cols + j] = 0 } }
        let zeros = options.keepZeros ? original.map { $0 == 0 } : [Bool](repeating: false, count: rows * cols)
        let order = options.actOrder
            ? (0..<cols).sorted { (-h[$0 * cols + $0], $0) < (-h[$1 * cols + $1], $1) } : Array(0..<cols)
        var permuted = [Double](repeating: 0, count: cols * cols)
        for i in 0..<cols { for j in 0..<cols { permuted[i * cols + j] = h[order[i] * cols + order[j]] } }
        var (inv, _) = dampedInverse(permuted, n: cols, dampening: options.dampening)
        var w = [Double](repeating: 0, count: rows * cols)
        for row in 0..<rows { for p in 0..<cols { w[row * cols + p] = Double(original[row * cols + order[p]]) } }
        let isStatic = options.staticGroups || options.actOrder || grid.groupSize == -1
        var parameters: [Int: WeightGrid.Parameters] = [:]
        func groupParameters(row: Int, group: Int, value: (Int) -> Float) -> WeightGrid.Parameters {
            grid.parameters(of: (group * size..<(group * size + size)).map { zeros[row * cols + $0] ? 0 : value($0) })
        }
        if isStatic {
            for row in 0..<rows {
                for group in 0..<(cols / size) {
                    parameters[row * cols + group] = groupParameters(row: row, group: group) { original[row * cols + $0] }
                }
            }
        }
        var result = [Float](repeating: 0, count: rows * cols)
        for p in 0..<cols {
            let column = order[p]
            if !isStatic && column % size == 0 {
                for row in 0..<rows {
                    parameters[row * cols + column / size] = groupParameters(row: row, group: column / size) { Float(w[row * cols + $0]) }
                }
            }
            obsStep(&w, rows: rows, cols: cols, inv: inv, j: p) { row, value in
                guard let parameter = parameters[row * cols + column / size] else { return .nan }
                let code = zeros[row * cols + column] ? parameter.zero : grid.code(Float(value), parameter)
                let dequantized = grid.dequantize(code, parameter)
                result[row * cols + column] = dequantized
                return Double(dequantized)
            }
            eliminate(&inv, n: cols, p)
        }
        return result
    }
}

/// The largest `|a − b| / max(1, |b|)`.
func worstRelativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { max($0, Double(abs($1.0 - $1.1)) / max(1, Double(abs($1.1)))) }
}
