import CKernels

/// The ops a Llama / GPT-2 decoder adds (RMS norm, SwiGLU, GELU-tanh, rotary
/// embeddings), as C kernels (`sq_rms_norm_rows`, the `gelu_tanh` and
/// `gated_silu` maps, `sq_rotary_rows`) on fixed chunks of rows or elements.
extension CPUBackend {
    public func geluTanh(_ x: Tensor) -> Tensor { map(x, "geluTanh") { sq_gelu_tanh($0, $1, $2) } }

    public func geluTanhBackward(_ x: Tensor, _ dy: Tensor) -> Tensor {
        paired(x, dy, "geluTanhBackward") { sq_gelu_tanh_backward($0, $1, $2, $3) }
    }

    public func gatedSiLU(gate: Tensor, up: Tensor) -> Tensor {
        paired(gate, up, "gatedSiLU") { sq_gated_silu($0, $1, $2, $3) }
    }

    public func gatedSiLUBackward(_ dy: Tensor, gate: Tensor, up: Tensor) -> (gate: Tensor, up: Tensor) {
        for t in [dy, gate, up] { t.requireFloat("gatedSiLUBackward") }
        precondition(
            dy.shape == gate.shape && up.shape == gate.shape,
            "gatedSiLUBackward: dy \(dy.shape), gate \(gate.shape) and up \(up.shape) differ")
        let upStorage = TensorStorage(uninitializedByteCount: gate.count * 4)
        let dUp = upStorage.bytes.assumingMemoryBound(to: Float.self)
        let dGate = withFloats(dy) { pdy in
            withFloats(gate) { pg in
                withFloats(up) { pu in
                    produce(gate.shape) { po in
                        runner.forEachRange(count: gate.count, chunkSize: elementChunk) { r in
                            let s = r.lowerBound
                            sq_gated_silu_backward(pdy + s, pg + s, pu + s, po + s, dUp + s, r.count)
                        }
                    }
                }
            }
        }
        return (dGate, Tensor(storage: upStorage, dtype: .f32, shape: gate.shape))
    }

    public func rotary(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) -> Tensor {
        let shape = Rotary.checkedShape(x, cos: cos, sin: sin)
        let rows = shape.batch * shape.tokens * shape.heads
        return withFloats(x) { px in
            withFloats(cos) { pc in
                withFloats(sin) { ps in
                    produce(x.shape) { po in
                        runner.forEachRange(count: rows, chunkSize: rowChunk(columns: 2 * shape.half)) { r in
                            sq_rotary_rows(
                                px, pc, ps, inverse ? -1 : 1, po, r.lowerBound, r.count, shape.heads, shape.tokens,
                                shape.half)
                        }
                    }
                }
            }
        }
    }

    public func rmsNorm(_ x: Tensor, gamma: Tensor, epsilon: Float) -> RMSNormResult {
        x.requireFloat("rmsNorm")
        gamma.requireFloat("rmsNorm")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "rmsNorm: gamma must be [\(columns)], got \(gamma.shape)")
        let inverseStorage = TensorStorage(uninitializedByteCount: rows * 4)
        let inverses = inverseStorage.bytes.assumingMemoryBound(to: Float.self)
        let output = withFloats(x) { px in
            withFloats(gamma) { pg in
                produce(x.shape) { po in
                    runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                        let start = r.lowerBound * columns
                        sq_rms_norm_rows(px + start, pg, epsilon, po + start, inverses + r.lowerBound, r.count, columns)
                    }
                }
            }
        }
        return RMSNormResult(output: output, inverseRMS: Tensor(storage: inverseStorage, dtype: .f32, shape: [rows]))
    }

    public func rmsNormBackward(_ dy: Tensor, _ x: Tensor, gamma: Tensor, inverseRMS: Tensor) -> RMSNormGradients {
        for t in [dy, x, gamma, inverseRMS] { t.requireFloat("rmsNormBackward") }
        precondition(dy.shape == x.shape, "rmsNormBackward: dy \(dy.shape) vs x \(x.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "rmsNormBackward: gamma must be [\(columns)], got \(gamma.shape)")
        precondition(inverseRMS.count == rows, "rmsNormBackward: inverseRMS must be [\(rows)], got \(inverseRMS.shape)")
        let perChunk = rowChunk(columns: columns)
        let chunks = (rows + perChunk - 1) / perChunk
        // Per-chunk partial sums of dγ, combined in chunk order below.
        var gammaPartials = [Float](repeating: 0, count: chunks * columns)
        let dx = withFloats(dy) { pdy in
            withFloats(x) { px in
                withFloats(gamma) { pg in
                    withFloats(inverseRMS) { pi in
                        gammaPartials.withUnsafeMutableBufferPointer { gp in
                            produce(x.shape) { po in
                                let gBase = gp.baseAddress
                                runner.run(chunks: chunks) { chunk in
                                    let first = chunk * perChunk
                                    let count = Swift.min(rows, first + perChunk) - first
                                    let start = first * columns
                                    sq_rms_norm_backward_rows(
                                        pdy + start, px + start, pg, pi + first, po + start,
                                        gBase.map { $0 + chunk * columns }, count, columns)
                                }
                            }
                        }
                    }
                }
            }
        }
        var dGamma = [Float](repeating: 0, count: columns)
        for column in 0..<columns {
            var total = 0.0
            for chunk in 0..<chunks { total += Double(gammaPartials[chunk * columns + column]) }
            dGamma[column] = Float(total)
        }
        return RMSNormGradients(input: dx, gamma: Tensor(shape: [columns], floats: dGamma))
    }
}
