import Foundation

/// The decoder ops (RMS norm, SwiGLU, GELU-tanh, rotary embeddings) as plain
/// loops in `Double`: the specification the CPU kernels are tested against.
extension ReferenceBackend {
    public func geluTanh(_ x: Tensor) -> Tensor {
        x.requireFloat("geluTanh")
        return Tensor(shape: x.shape, floats: x.floats.map { Float(Self.geluTanh(Double($0)).value) })
    }

    public func geluTanhBackward(_ x: Tensor, _ dy: Tensor) -> Tensor {
        x.requireFloat("geluTanhBackward")
        dy.requireFloat("geluTanhBackward")
        precondition(x.shape == dy.shape, "geluTanhBackward: shapes \(x.shape) and \(dy.shape) differ")
        return Tensor(
            shape: x.shape,
            floats: zip(x.floats, dy.floats).map { Float(Double($1) * Self.geluTanh(Double($0)).derivative) })
    }

    public func gatedSiLU(gate: Tensor, up: Tensor) -> Tensor {
        gate.requireFloat("gatedSiLU")
        up.requireFloat("gatedSiLU")
        precondition(gate.shape == up.shape, "gatedSiLU: shapes \(gate.shape) and \(up.shape) differ")
        return Tensor(
            shape: gate.shape,
            floats: zip(gate.floats, up.floats).map { g, u in
                let v = Double(g)
                return Float(v * Self.sigmoid(v).value * Double(u))
            })
    }

    public func gatedSiLUBackward(_ dy: Tensor, gate: Tensor, up: Tensor) -> (gate: Tensor, up: Tensor) {
        for t in [dy, gate, up] { t.requireFloat("gatedSiLUBackward") }
        precondition(
            dy.shape == gate.shape && up.shape == gate.shape,
            "gatedSiLUBackward: dy \(dy.shape), gate \(gate.shape) and up \(up.shape) differ")
        let d = dy.floats, g = gate.floats, u = up.floats
        var dGate = [Float](repeating: 0, count: g.count)
        var dUp = [Float](repeating: 0, count: g.count)
        for i in g.indices {
            let v = Double(g[i])
            let (s, complement) = Self.sigmoid(v)
            dGate[i] = Float(Double(d[i]) * Double(u[i]) * s * (1 + v * complement))
            dUp[i] = Float(Double(d[i]) * v * s)
        }
        return (Tensor(shape: gate.shape, floats: dGate), Tensor(shape: gate.shape, floats: dUp))
    }

    public func rotary(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) -> Tensor {
        let shape = Rotary.checkedShape(x, cos: cos, sin: sin)
        let half = shape.half
        let values = x.floats, cosines = cos.floats, sines = sin.floats
        let sign: Double = inverse ? -1 : 1
        var out = [Float](repeating: 0, count: values.count)
        for row in 0..<(shape.batch * shape.tokens * shape.heads) {
            let token = row / shape.heads % shape.tokens
            let base = row * 2 * half
            for i in 0..<half {
                let c = Double(cosines[token * half + i])
                let s = sign * Double(sines[token * half + i])
                let first = Double(values[base + i])
                let second = Double(values[base + half + i])
                out[base + i] = Float(first * c - second * s)
                out[base + half + i] = Float(second * c + first * s)
            }
        }
        return Tensor(shape: x.shape, floats: out)
    }

    public func rmsNorm(_ x: Tensor, gamma: Tensor, epsilon: Float) -> RMSNormResult {
        x.requireFloat("rmsNorm")
        gamma.requireFloat("rmsNorm")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "rmsNorm: gamma must be [\(columns)], got \(gamma.shape)")
        let values = x.floats
        let g = gamma.floats
        var out = [Float](repeating: 0, count: values.count)
        var inverses = [Float](repeating: 0, count: rows)
        for row in 0..<rows {
            let base = row * columns
            var squares = 0.0
            for j in 0..<columns { squares += Double(values[base + j]) * Double(values[base + j]) }
            let inverse = 1 / (squares / Double(columns) + Double(epsilon)).squareRoot()
            for j in 0..<columns { out[base + j] = Float(Double(values[base + j]) * inverse * Double(g[j])) }
            inverses[row] = Float(inverse)
        }
        return RMSNormResult(output: Tensor(shape: x.shape, floats: out), inverseRMS: Tensor(shape: [rows], floats: inverses))
    }

    /// With `r` the saved `(mean(x²) + ε)^−½` and `x̂ = x·r`:
    /// `dx = r·(γ⊙dy − x̂·mean(γ⊙dy⊙x̂))`, `dγ = Σ_rows dy⊙x̂`.
    public func rmsNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, inverseRMS: Tensor) -> RMSNormGradients {
        for t in [dy, x, gamma, inverseRMS] { t.requireFloat("rmsNormBackward") }
        precondition(dy.shape == x.shape, "rmsNormBackward: dy \(dy.shape) vs x \(x.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "rmsNormBackward: gamma must be [\(columns)], got \(gamma.shape)")
        precondition(inverseRMS.count == rows, "rmsNormBackward: inverseRMS must be [\(rows)], got \(inverseRMS.shape)")
        let dyv = dy.floats, xv = x.floats, g = gamma.floats, inverses = inverseRMS.floats
        var dx = [Float](repeating: 0, count: xv.count)
        var dGamma = [Double](repeating: 0, count: columns)
        for row in 0..<rows {
            let base = row * columns
            let inverse = Double(inverses[row])
            var meanProduct = 0.0
            for j in 0..<columns {
                let xHat = Double(xv[base + j]) * inverse
                meanProduct += Double(dyv[base + j]) * Double(g[j]) * xHat
                dGamma[j] += Double(dyv[base + j]) * xHat
            }
            meanProduct /= Double(columns)
            for j in 0..<columns {
                let xHat = Double(xv[base + j]) * inverse
                dx[base + j] = Float(inverse * (Double(dyv[base + j]) * Double(g[j]) - xHat * meanProduct))
            }
        }
        return RMSNormGradients(
            input: Tensor(shape: x.shape, floats: dx), gamma: Tensor(shape: [columns], floats: dGamma.map { Float($0) }))
    }

    /// σ(v) and 1 − σ(v) from e = e^−|v|, so neither overflows nor cancels.
    static func sigmoid(_ v: Double) -> (value: Double, complement: Double) {
        let e = Foundation.exp(-abs(v))
        let r = 1 / (1 + e)
        return v >= 0 ? (r, e * r) : (e * r, r)
    }

    /// GELU-tanh as `x·σ(2u)`, `u = √(2/π)·(x + 0.044715·x³)` (equal to
    /// `½·x·(1 + tanh u)`), and its derivative.
    static func geluTanh(_ x: Double) -> (value: Double, derivative: Double) {
        let k = (2 / Double.pi).squareRoot()
        let c = 0.044715
        let (s, complement) = sigmoid(2 * k * (x + c * x * x * x))
        return (x * s, s + x * s * complement * 2 * k * (1 + 3 * c * x * x))
    }
}
