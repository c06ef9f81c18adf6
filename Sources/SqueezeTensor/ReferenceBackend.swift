import Foundation

/// The specification backend: plain loops over `[Float]` copies, accumulating
/// in `Double`. Deliberately simple (no BLAS, no SIMD, no threads) and slow;
/// every other backend is tested against it op by op.
public struct ReferenceBackend: Backend {
    public init() {}

    public var id: String { "reference" }

    /// Bumped whenever a change to an op can change any result bit; stages put
    /// it in cache keys (plain loops in Swift: no per-machine variant).
    public static let numericsFingerprint = "reference/r1"

    // MARK: Matrix products

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor {
        a.requireFloat("matmul")
        b.requireFloat("matmul")
        let s = Shapes.matmul(a.shape, b.shape, transposeA: transposeA, transposeB: transposeB)
        let av = a.floats
        let bv = b.floats
        var out = [Float](repeating: 0, count: s.batch * s.m * s.n)
        for batch in 0..<s.batch {
            let aBase = batch * s.m * s.k
            let bBase = s.sharedB ? 0 : batch * s.k * s.n
            for i in 0..<s.m {
                for j in 0..<s.n {
                    var total = 0.0
                    for p in 0..<s.k {
                        let x = av[aBase + (transposeA ? p * s.m + i : i * s.k + p)]
                        let y = bv[bBase + (transposeB ? j * s.k + p : p * s.n + j)]
                        total += Double(x) * Double(y)
                    }
                    out[(batch * s.m + i) * s.n + j] = Float(Double(alpha) * total)
                }
            }
        }
        return Tensor(shape: s.resultShape, floats: out)
    }

    // MARK: Element-wise

    public func add(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, "add") { $0 + $1 } }
    public func subtract(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, "subtract") { $0 - $1 } }
    public func multiply(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, "multiply") { $0 * $1 } }

    public func affine(_ a: Tensor, scale: Float, shift: Float) -> Tensor {
        unary(a, "affine") { Float(Double($0) * Double(scale) + Double(shift)) }
    }

    public func reduce(_ gradient: Tensor, toShape shape: [Int]) -> Tensor {
        gradient.requireFloat("reduce")
        let targetStrides = Shapes.broadcastStrides(shape, to: gradient.shape)
        let values = gradient.floats
        var totals = [Double](repeating: 0, count: shape.reduce(1, *))
        for linear in 0..<values.count {
            totals[Self.index(linear, shape: gradient.shape, strides: targetStrides)] += Double(values[linear])
        }
        return Tensor(shape: shape, floats: totals.map { Float($0) })
    }

    // MARK: Activations

    public func gelu(_ x: Tensor) -> Tensor {
        unary(x, "gelu") { Float(Double($0) * Self.normalCDF(Double($0))) }
    }

    public func geluBackward(_ x: Tensor, _ dy: Tensor) -> Tensor {
        paired(x, dy, "geluBackward") { value, gradient in
            let v = Double(value)
            let derivative = Self.normalCDF(v) + v * Foundation.exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
            return Float(Double(gradient) * derivative)
        }
    }

    public func tanh(_ x: Tensor) -> Tensor {
        unary(x, "tanh") { Float(Foundation.tanh(Double($0))) }
    }

    public func tanhBackward(_ y: Tensor, _ dy: Tensor) -> Tensor {
        paired(y, dy, "tanhBackward") { value, gradient in
            Float(Double(gradient) * (1 - Double(value) * Double(value)))
        }
    }

    // MARK: Normalisation

    public func softmax(_ x: Tensor) -> Tensor {
        rowwise(x, "softmax") { row in
            let top = Double(row.max() ?? 0)
            let exps = row.map { Foundation.exp(Double($0) - top) }
            let total = exps.reduce(0, +)
            return exps.map { Float($0 / total) }
        }
    }

    public func softmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor {
        rowwisePaired(y, dy, "softmaxBackward") { yRow, dyRow in
            var dot = 0.0
            for j in yRow.indices { dot += Double(yRow[j]) * Double(dyRow[j]) }
            return yRow.indices.map { Float(Double(yRow[$0]) * (Double(dyRow[$0]) - dot)) }
        }
    }

    public func logSoftmax(_ x: Tensor) -> Tensor {
        rowwise(x, "logSoftmax") { row in
            let top = Double(row.max() ?? 0)
            let logTotal = Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - top) })
            return row.map { Float(Double($0) - top - logTotal) }
        }
    }

    public func logSoftmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor {
        rowwisePaired(y, dy, "logSoftmaxBackward") { yRow, dyRow in
            let total = dyRow.reduce(0.0) { $0 + Double($1) }
            return yRow.indices.map { Float(Double(dyRow[$0]) - Foundation.exp(Double(yRow[$0])) * total) }
        }
    }

    public func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        x.requireFloat("layerNorm")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns] && beta.shape == [columns], "layerNorm: gamma/beta must be [\(columns)]")
        let values = x.floats
        let g = gamma.floats
        let b = beta.floats
        var out = [Float](repeating: 0, count: values.count)
        var means = [Float](repeating: 0, count: rows)
        var inverseStds = [Float](repeating: 0, count: rows)
        for row in 0..<rows {
            let base = row * columns
            var total = 0.0
            for j in 0..<columns { total += Double(values[base + j]) }
            let mean = total / Double(columns)
            var squares = 0.0
            for j in 0..<columns {
                let d = Double(values[base + j]) - mean
                squares += d * d
            }
            let inverseStd = 1 / (squares / Double(columns) + Double(epsilon)).squareRoot()
            for j in 0..<columns {
                let normalised = (Double(values[base + j]) - mean) * inverseStd
                out[base + j] = Float(normalised * Double(g[j]) + Double(b[j]))
            }
            means[row] = Float(mean)
            inverseStds[row] = Float(inverseStd)
        }
        return LayerNormResult(
            output: Tensor(shape: x.shape, floats: out),
            mean: Tensor(shape: [rows], floats: means),
            inverseStd: Tensor(shape: [rows], floats: inverseStds))
    }

    public func layerNormBackward(
        _ dy: Tensor, _ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        dy.requireFloat("layerNormBackward")
        x.requireFloat("layerNormBackward")
        precondition(dy.shape == x.shape, "layerNormBackward: dy \(dy.shape) vs x \(x.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "layerNormBackward: gamma must be [\(columns)]")
        precondition(mean.count == rows && inverseStd.count == rows, "layerNormBackward: statistics must be [\(rows)]")
        let dyv = dy.floats
        let xv = x.floats
        let g = gamma.floats
        let means = mean.floats
        let inverses = inverseStd.floats
        var dx = [Float](repeating: 0, count: xv.count)
        var dGamma = [Double](repeating: 0, count: columns)
        var dBeta = [Double](repeating: 0, count: columns)
        for row in 0..<rows {
            let base = row * columns
            let mu = Double(means[row])
            let inv = Double(inverses[row])
            var meanDxHat = 0.0
            var meanDxHatXHat = 0.0
            for j in 0..<columns {
                let xHat = (Double(xv[base + j]) - mu) * inv
                let dxHat = Double(dyv[base + j]) * Double(g[j])
                meanDxHat += dxHat
                meanDxHatXHat += dxHat * xHat
                dGamma[j] += Double(dyv[base + j]) * xHat
                dBeta[j] += Double(dyv[base + j])
            }
            meanDxHat /= Double(columns)
            meanDxHatXHat /= Double(columns)
            for j in 0..<columns {
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

    // MARK: Indexing and masking

    public func gather(_ table: Tensor, _ ids: Tensor) -> Tensor {
        table.requireFloat("gather")
        ids.requireInt32("gather")
        precondition(table.rank == 2, "gather: table must be [V, D], got \(table.shape)")
        let (vocabulary, width) = (table.shape[0], table.shape[1])
        let values = table.floats
        var out: [Float] = []
        out.reserveCapacity(ids.count * width)
        for id in ids.int32s {
            precondition(id >= 0 && Int(id) < vocabulary, "gather: id \(id) outside 0..<\(vocabulary)")
            out.append(contentsOf: values[Int(id) * width..<(Int(id) + 1) * width])
        }
        return Tensor(shape: ids.shape + [width], floats: out)
    }

    public func scatterAdd(_ dy: Tensor, _ ids: Tensor, rows: Int) -> Tensor {
        dy.requireFloat("scatterAdd")
        ids.requireInt32("scatterAdd")
        precondition(
            dy.rank == ids.rank + 1 && Array(dy.shape.dropLast()) == ids.shape,
            "scatterAdd: dy \(dy.shape) must be ids \(ids.shape) + [D]")
        let width = dy.shape[dy.rank - 1]
        let values = dy.floats
        var totals = [Double](repeating: 0, count: rows * width)
        for (position, id) in ids.int32s.enumerated() {
            precondition(id >= 0 && Int(id) < rows, "scatterAdd: id \(id) outside 0..<\(rows)")
            for j in 0..<width { totals[Int(id) * width + j] += Double(values[position * width + j]) }
        }
        return Tensor(shape: [rows, width], floats: totals.map { Float($0) })
    }

    public func maskedFill(_ x: Tensor, mask: Tensor, value: Float) -> Tensor {
        x.requireFloat("maskedFill")
        let maskStrides = Shapes.broadcastStrides(mask.shape, to: x.shape)
        let flags = mask.nonZeroFlags
        var out = x.floats
        for linear in 0..<out.count where flags[Self.index(linear, shape: x.shape, strides: maskStrides)] {
            out[linear] = value
        }
        return Tensor(shape: x.shape, floats: out)
    }

    // MARK: Reductions

    public func sum(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        x.requireFloat("sum")
        let (totals, shape) = sums(x, axes: axes, keepDimensions: keepDimensions)
        return Tensor(shape: shape, floats: totals.map { Float($0) })
    }

    public func mean(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        x.requireFloat("mean")
        let (totals, shape) = sums(x, axes: axes, keepDimensions: keepDimensions)
        let counted = Swift.max(1, x.count) / Swift.max(1, totals.count)
        return Tensor(shape: shape, floats: totals.map { Float($0 / Double(counted)) })
    }

    public func max(_ x: Tensor, axis: Int, keepDimensions: Bool) -> (values: Tensor, indices: Tensor) {
        x.requireFloat("max")
        let resolved = Shapes.normalize(axis: axis, rank: x.rank)
        let length = x.shape[resolved]
        precondition(length > 0, "max over an empty axis")
        let inner = x.shape[(resolved + 1)...].reduce(1, *)
        let outer = x.shape[..<resolved].reduce(1, *)
        let values = x.floats
        var best = [Float](repeating: 0, count: outer * inner)
        var positions = [Int32](repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                var top = values[o * length * inner + i]
                var at = 0
                for r in 1..<Swift.max(length, 1) {
                    let v = values[(o * length + r) * inner + i]
                    if v > top {
                        top = v
                        at = r
                    }
                }
                best[o * inner + i] = top
                positions[o * inner + i] = Int32(at)
            }
        }
        let shape = Shapes.reducedShape(x.shape, axes: [resolved], keepDimensions: keepDimensions)
        return (Tensor(shape: shape, floats: best), Tensor(shape: shape, int32s: positions))
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        x.requireFloat("sumOfSquares")
        return x.floats.reduce(0.0) { $0 + Double($1) * Double($1) }
    }

    // MARK: Training

    public func dropout(_ x: Tensor, probability p: Float, seed: UInt64, stream: UInt64) -> (output: Tensor, mask: Tensor) {
        x.requireFloat("dropout")
        let threshold = dropoutThreshold(p)
        let scale = 1 / (1 - p)
        let values = x.floats
        var mask = [Float](repeating: 0, count: values.count)
        var out = [Float](repeating: 0, count: values.count)
        for index in 0..<values.count {
            let bits = randomBits(seed: seed, stream: stream, index: UInt64(index))
            mask[index] = dropoutKeeps(bits, threshold: threshold) ? scale : 0
            out[index] = values[index] * mask[index]
        }
        return (Tensor(shape: x.shape, floats: out), Tensor(shape: x.shape, floats: mask))
    }

    public func crossEntropy(_ logits: Tensor, labels: Tensor) -> (loss: Tensor, probabilities: Tensor) {
        logits.requireFloat("crossEntropy")
        labels.requireInt32("crossEntropy")
        precondition(logits.rank == 2 && labels.shape == [logits.shape[0]], "crossEntropy: logits [N, C], labels [N]")
        let (rows, classes) = (logits.shape[0], logits.shape[1])
        let values = logits.floats
        let targets = labels.int32s
        var probabilities = [Float](repeating: 0, count: values.count)
        var total = 0.0
        for row in 0..<rows {
            let label = Int(targets[row])
            precondition(label >= 0 && label < classes, "crossEntropy: label \(label) outside 0..<\(classes)")
            let slice = values[row * classes..<(row + 1) * classes]
            let top = Double(slice.max() ?? 0)
            let sumExp = slice.reduce(0.0) { $0 + Foundation.exp(Double($1) - top) }
            for j in 0..<classes {
                probabilities[row * classes + j] = Float(Foundation.exp(Double(values[row * classes + j]) - top) / sumExp)
            }
            total += Foundation.log(sumExp) + top - Double(values[row * classes + label])
        }
        let loss = rows == 0 ? 0 : Float(total / Double(rows))
        return (Tensor(scalar: loss), Tensor(shape: logits.shape, floats: probabilities))
    }

    public func crossEntropyBackward(probabilities: Tensor, labels: Tensor, dLoss: Float) -> Tensor {
        probabilities.requireFloat("crossEntropyBackward")
        labels.requireInt32("crossEntropyBackward")
        precondition(probabilities.rank == 2 && labels.shape == [probabilities.shape[0]], "crossEntropyBackward: [N, C], [N]")
        let (rows, classes) = (probabilities.shape[0], probabilities.shape[1])
        let p = probabilities.floats
        let targets = labels.int32s
        let scale = Double(dLoss) / Double(Swift.max(rows, 1))
        var out = [Float](repeating: 0, count: p.count)
        for row in 0..<rows {
            for j in 0..<classes {
                let onehot: Double = j == Int(targets[row]) ? 1 : 0
                out[row * classes + j] = Float((Double(p[row * classes + j]) - onehot) * scale)
            }
        }
        return Tensor(shape: probabilities.shape, floats: out)
    }

    public func adamWUpdate(
        parameter: inout Tensor, gradient: Tensor, firstMoment: inout Tensor, secondMoment: inout Tensor,
        hyperparameters h: AdamWHyperparameters, step: Int
    ) {
        precondition(step >= 1, "adamWUpdate: step counts from 1")
        precondition(
            parameter.shape == gradient.shape && parameter.shape == firstMoment.shape
                && parameter.shape == secondMoment.shape,
            "adamWUpdate: parameter, gradient and moments must have one shape")
        let g = h.gradientScale == 1 ? gradient.floats : gradient.floats.map { $0 * h.gradientScale }
        var p = parameter.floats
        var m = firstMoment.floats
        var v = secondMoment.floats
        let lr = Double(h.learningRate)
        let b1 = Double(h.beta1)
        let b2 = Double(h.beta2)
        let correction1 = 1 - Foundation.pow(b1, Double(step))
        let correction2 = 1 - Foundation.pow(b2, Double(step))
        for i in 0..<p.count {
            var value = Double(p[i])
            value -= lr * Double(h.weightDecay) * value
            let first = b1 * Double(m[i]) + (1 - b1) * Double(g[i])
            let second = b2 * Double(v[i]) + (1 - b2) * Double(g[i]) * Double(g[i])
            value -= lr * (first / correction1) / ((second / correction2).squareRoot() + Double(h.epsilon))
            p[i] = Float(value)
            m[i] = Float(first)
            v[i] = Float(second)
        }
        parameter = Tensor(shape: parameter.shape, floats: p)
        firstMoment = Tensor(shape: parameter.shape, floats: m)
        secondMoment = Tensor(shape: parameter.shape, floats: v)
    }

    // MARK: Helpers

    /// Φ(x), the standard normal CDF.
    static func normalCDF(_ x: Double) -> Double {
        0.5 * (1 + Foundation.erf(x / 2.0.squareRoot()))
    }

    /// The element offset, under `strides`, of row-major position `linear` in `shape`.
    static func index(_ linear: Int, shape: [Int], strides: [Int]) -> Int {
        var remaining = linear
        var offset = 0
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            offset += remaining % shape[axis] * strides[axis]
            remaining /= shape[axis]
        }
        return offset
    }

    private func unary(_ x: Tensor, _ op: String, _ f: (Float) -> Float) -> Tensor {
        x.requireFloat(op)
        return Tensor(shape: x.shape, floats: x.floats.map(f))
    }

    /// Two same-shape inputs, element by element.
    private func paired(_ x: Tensor, _ y: Tensor, _ op: String, _ f: (Float, Float) -> Float) -> Tensor {
        x.requireFloat(op)
        y.requireFloat(op)
        precondition(x.shape == y.shape, "\(op): shapes \(x.shape) and \(y.shape) differ")
        return Tensor(shape: x.shape, floats: zip(x.floats, y.floats).map(f))
    }

    private func binary(_ a: Tensor, _ b: Tensor, _ op: String, _ f: (Double, Double) -> Double) -> Tensor {
        a.requireFloat(op)
        b.requireFloat(op)
        let shape = Shapes.broadcast(a.shape, b.shape)
        let aStrides = Shapes.broadcastStrides(a.shape, to: shape)
        let bStrides = Shapes.broadcastStrides(b.shape, to: shape)
        let av = a.floats
        let bv = b.floats
        var out = [Float](repeating: 0, count: shape.reduce(1, *))
        for linear in 0..<out.count {
            let x = av[Self.index(linear, shape: shape, strides: aStrides)]
            let y = bv[Self.index(linear, shape: shape, strides: bStrides)]
            out[linear] = Float(f(Double(x), Double(y)))
        }
        return Tensor(shape: shape, floats: out)
    }

    private func rowwise(_ x: Tensor, _ op: String, _ f: (ArraySlice<Float>) -> [Float]) -> Tensor {
        x.requireFloat(op)
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        let values = x.floats
        var out: [Float] = []
        out.reserveCapacity(values.count)
        for row in 0..<rows { out.append(contentsOf: f(values[row * columns..<(row + 1) * columns])) }
        return Tensor(shape: x.shape, floats: out)
    }

    private func rowwisePaired(
        _ x: Tensor, _ y: Tensor, _ op: String, _ f: ([Float], [Float]) -> [Float]
    ) -> Tensor {
        x.requireFloat(op)
        y.requireFloat(op)
        precondition(x.shape == y.shape, "\(op): shapes \(x.shape) and \(y.shape) differ")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        let xv = x.floats
        let yv = y.floats
        var out: [Float] = []
        out.reserveCapacity(xv.count)
        for row in 0..<rows {
            let range = row * columns..<(row + 1) * columns
            out.append(contentsOf: f(Array(xv[range]), Array(yv[range])))
        }
        return Tensor(shape: x.shape, floats: out)
    }

    /// Sums over `axes` in `Double`, with the result shape.
    private func sums(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> (totals: [Double], shape: [Int]) {
        let resolved = Shapes.normalize(axes: axes, rank: x.rank)
        let kept = Shapes.reducedShape(x.shape, axes: resolved, keepDimensions: true)
        let keptStrides = Shapes.broadcastStrides(kept, to: x.shape)
        let values = x.floats
        var totals = [Double](repeating: 0, count: kept.reduce(1, *))
        for linear in 0..<values.count {
            totals[Self.index(linear, shape: x.shape, strides: keptStrides)] += Double(values[linear])
        }
        return (totals, Shapes.reducedShape(x.shape, axes: resolved, keepDimensions: keepDimensions))
    }
}
