import CKernels
import Foundation

/// The fast CPU backend: OpenBLAS `sgemm` for matrix products (loaded with
/// the core type of the CPU's tier, see `CPUKernels`), vectorised C
/// kernels (`CKernels`, AVX2+FMA when the CPU has them) for everything else.
///
/// Threading policy — one budget of `threads`, one pool: every op, matrix
/// products included, cuts its work into chunks fixed by the tensor shapes
/// and runs them on at most `threads` Dispatch workers. OpenBLAS is kept
/// single-threaded and called from those workers on separate tiles of a
/// product (or separate products of a batch), so OpenBLAS threads and kernel
/// workers never compete for cores and nothing depends on OpenBLAS's
/// process-wide thread count.
///
/// Numerics: since chunks depend only on shapes and dropout is counter-based,
/// results are bit-identical run to run and for any `threads`. They agree with
/// `ReferenceBackend` to about 1e-5 relative.
public struct CPUBackend: Backend {
    /// Which int8 GEMM kernels the automatic choice may use. Every kernel
    /// gives the same bits; `.avx2` exists to measure VNNI against them.
    public enum Int8Kernels: String, Sendable, CaseIterable {
        /// The fastest exact kernel: AVX-512 VNNI where the CPU has it.
        case fastest
        /// The AVX2 kernels only (vpmaddubsw or int16), as on CPUs without VNNI.
        case avx2
    }

    public let threads: Int
    public let int8Kernels: Int8Kernels
    let runner: ChunkRunner

    public init(threads: Int) { self.init(threads: threads, int8Kernels: .fastest) }

    public init(threads: Int, int8Kernels: Int8Kernels) {
        precondition(threads >= 1, "CPUBackend needs at least one thread")
        self.threads = threads
        self.int8Kernels = int8Kernels
        self.runner = ChunkRunner(threads: threads)
    }

    public var id: String { "cpu" }

    /// The numerics of the kernels this machine runs ("avx2-fma" or
    /// "baseline"); the AVX-512 tier runs the avx2-fma numerics (its 16-lane
    /// maps give the same bits), so it shares this name.
    public static var kernelVariant: String { String(cString: sq_kernel_variant()) }

    /// Bumped whenever a change to a kernel can change any result bit.
    static let numericsRevision = 2

    /// What decides this backend's results on this machine
    /// ("cpu/r2/avx2-fma/openblas-0.3.21/SkylakeX"): Squeeze's kernel revision
    /// and variant, and the BLAS library, version and kernel family; stages put
    /// it in cache keys. Thread count is not part of it: results do not depend
    /// on it.
    public static var numericsFingerprint: String {
        "cpu/r\(numericsRevision)/\(kernelVariant)/\(CPUKernels.blasIdentity)"
    }

    // MARK: Matrix products

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) -> Tensor {
        product(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha, bias: nil)
    }

    /// Each tile of the output starts as the bias rows and OpenBLAS adds the
    /// product to it (beta 1), which costs no more than the zeroing pass it
    /// does for beta 0, and saves the separate add.
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        guard let bias else { return matmul(x, weight, transposeA: false, transposeB: true, alpha: 1) }
        bias.requireFloat("linear")
        precondition(weight.rank == 2 && bias.shape == [weight.shape[0]], "linear: bias \(bias.shape) for weight \(weight.shape)")
        return product(x, weight, transposeA: false, transposeB: true, alpha: 1, bias: bias.contiguous())
    }

    /// `alpha · op(a) · op(b)`, plus `bias` (contiguous `[N]`) on every row when given.
    private func product(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float, bias: Tensor?
    ) -> Tensor {
        a.requireFloat("matmul")
        b.requireFloat("matmul")
        let s = Shapes.matmul(a.shape, b.shape, transposeA: transposeA, transposeB: transposeB)
        if s.batch * s.m * s.n == 0 { return Tensor(zeros: s.resultShape) }
        if s.k == 0 {
            guard let bias else { return Tensor(zeros: s.resultShape) }
            return add(Tensor(zeros: s.resultShape), bias)
        }
        precondition(
            Swift.max(s.m, s.n, s.k, s.batch * s.m) <= Int(Int32.max), "matmul: sizes exceed the BLAS integer range")
        let left = MatrixOperand(a, transposed: transposeA)
        let right = MatrixOperand(b, transposed: transposeB)
        Self.keepBLASSingleThreaded()
        let biasBase = bias.map { UnsafePointer($0.storage.bytes.assumingMemoryBound(to: Float.self) + $0.offset) }
        return produce(s.resultShape) { c in
            withExtendedLifetime((left, right, bias)) {
                if s.sharedB && !left.transposed && left.rowsAreUniform(rowsPerBatch: s.m) {
                    // [batch·M, K] · [K, N]: one product over every row.
                    let tiles = Self.tiles(m: s.batch * s.m, n: s.n, k: s.k)
                    runner.run(chunks: tiles.count) { tile in
                        gemm(
                            left, left.batchOffsets[0], right, right.batchOffsets[0], c, rows: s.batch * s.m, n: s.n,
                            k: s.k, tile: tiles.range(tile), alpha: alpha, bias: biasBase)
                    }
                    return
                }
                let tiles = Self.tiles(m: s.m, n: s.n, k: s.k)
                runner.run(chunks: s.batch * tiles.count) { task in
                    let batch = task / tiles.count
                    gemm(
                        left, left.batchOffsets[batch], right, right.batchOffsets[s.sharedB ? 0 : batch],
                        c + batch * s.m * s.n, rows: s.m, n: s.n, k: s.k, tile: tiles.range(task % tiles.count),
                        alpha: alpha, bias: biasBase)
                }
            }
        }
    }

    /// OpenBLAS stays single-threaded: the backend splits products into tiles
    /// itself. Its thread count is process-wide state, so changing it per call
    /// would race with other callers and make rounding depend on it.
    static func keepBLASSingleThreaded() {
        if sq_blas_threads() != 1 { sq_blas_set_threads(1) }
    }

    /// Products below this many multiply-adds are not split.
    static let smallProduct = 1 << 18

    /// At most this many tiles per product: enough to balance two to four
    /// threads, few enough that re-packing the shared operand stays cheap.
    static let maxTiles = 4

    /// How one `[m, k] · [k, n]` product is cut into tiles, from its sizes only
    /// (never from the thread count), along its longer output axis (so the
    /// operand every tile re-packs is the smaller one), in multiples of 16.
    static func tiles(m: Int, n: Int, k: Int) -> ProductTiles {
        let work = m * n * k
        let alongRows = m >= n
        let length = alongRows ? m : n
        let wanted = Swift.min(maxTiles, Swift.max(1, work / smallProduct), Swift.max(1, length / 16))
        let step = (length + wanted - 1) / wanted
        let size = (step + 15) / 16 * 16
        return ProductTiles(alongRows: alongRows, length: length, size: Swift.max(size, 1))
    }

    /// One tile of a product: `rows` and `n` are the full product's sizes; the
    /// tile selects a range of rows or of columns. `c` has leading dimension `n`.
    private func gemm(
        _ a: MatrixOperand, _ aOffset: Int, _ b: MatrixOperand, _ bOffset: Int, _ c: UnsafeMutablePointer<Float>,
        rows: Int, n: Int, k: Int, tile: ProductTiles.Tile, alpha: Float, bias: UnsafePointer<Float>?
    ) {
        var aStart = a.base + aOffset
        var bStart = b.base + bOffset
        var cStart = c
        var m = rows
        var columns = n
        if tile.alongRows {
            aStart += a.transposed ? tile.range.lowerBound : tile.range.lowerBound * a.leadingDimension
            cStart += tile.range.lowerBound * n
            m = tile.range.count
        } else {
            bStart += b.transposed ? tile.range.lowerBound * b.leadingDimension : tile.range.lowerBound
            cStart += tile.range.lowerBound
            columns = tile.range.count
        }
        var beta: Float = 0
        if let bias {
            let first = tile.alongRows ? 0 : tile.range.lowerBound
            for row in 0..<m { (cStart + row * n).update(from: bias + first, count: columns) }
            beta = 1
        }
        sq_sgemm(
            a.transposed ? 1 : 0, b.transposed ? 1 : 0, Int32(m), Int32(columns), Int32(k), alpha, aStart,
            Int32(a.leadingDimension), bStart, Int32(b.leadingDimension), beta, cStart, Int32(n))
    }

    // MARK: Element-wise

    public func add(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, op: 0, "add") }
    public func subtract(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, op: 1, "subtract") }
    public func multiply(_ a: Tensor, _ b: Tensor) -> Tensor { binary(a, b, op: 2, "multiply") }

    public func affine(_ a: Tensor, scale: Float, shift: Float) -> Tensor {
        map(a, "affine") { sq_affine($0, $1, $2, scale, shift) }
    }

    public func reduce(_ gradient: Tensor, toShape shape: [Int]) -> Tensor {
        gradient.requireFloat("reduce")
        let axes = Shapes.expandedAxes(from: shape, to: gradient.shape)
        return sumKeepingAxes(gradient.contiguous(), axes: axes).reshaped(shape)
    }

    // MARK: Activations

    public func gelu(_ x: Tensor) -> Tensor { map(x, "gelu") { sq_gelu($0, $1, $2) } }

    public func geluBackward(_ x: Tensor, _ dy: Tensor) -> Tensor {
        paired(x, dy, "geluBackward") { sq_gelu_backward($0, $1, $2, $3) }
    }

    public func tanh(_ x: Tensor) -> Tensor { map(x, "tanh") { sq_tanh($0, $1, $2) } }

    public func tanhBackward(_ y: Tensor, _ dy: Tensor) -> Tensor {
        paired(y, dy, "tanhBackward") { sq_tanh_backward($0, $1, $2, $3) }
    }

    // MARK: Normalisation

    public func softmax(_ x: Tensor) -> Tensor {
        rowwise(x, "softmax") { sq_softmax_rows($0, $1, nil, $2, $3) }
    }

    public func softmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor {
        rowwisePaired(y, dy, "softmaxBackward") { sq_softmax_backward_rows($0, $1, $2, $3, $4) }
    }

    public func logSoftmax(_ x: Tensor) -> Tensor {
        rowwise(x, "logSoftmax") { sq_log_softmax_rows($0, $1, $2, $3) }
    }

    public func logSoftmaxBackward(_ y: Tensor, _ dy: Tensor) -> Tensor {
        rowwisePaired(y, dy, "logSoftmaxBackward") { sq_log_softmax_backward_rows($0, $1, $2, $3, $4) }
    }

    public func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, epsilon: Float) -> LayerNormResult {
        x.requireFloat("layerNorm")
        gamma.requireFloat("layerNorm")
        beta.requireFloat("layerNorm")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns] && beta.shape == [columns], "layerNorm: gamma/beta must be [\(columns)]")
        let meanStorage = TensorStorage(uninitializedByteCount: rows * 4)
        let inverseStorage = TensorStorage(uninitializedByteCount: rows * 4)
        let means = meanStorage.bytes.assumingMemoryBound(to: Float.self)
        let inverses = inverseStorage.bytes.assumingMemoryBound(to: Float.self)
        let output = withFloats(x) { px in
            withFloats(gamma) { pg in
                withFloats(beta) { pb in
                    produce(x.shape) { po in
                        runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                            let start = r.lowerBound * columns
                            sq_layer_norm_rows(
                                px + start, pg, pb, epsilon, po + start, means + r.lowerBound, inverses + r.lowerBound,
                                r.count, columns)
                        }
                    }
                }
            }
        }
        return LayerNormResult(
            output: output,
            mean: Tensor(storage: meanStorage, dtype: .f32, shape: [rows]),
            inverseStd: Tensor(storage: inverseStorage, dtype: .f32, shape: [rows]))
    }

    public func layerNormBackward(
        _ dy: Tensor, _ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor
    ) -> LayerNormGradients {
        layerNormBackward(dy, x, gamma: gamma, mean: mean, inverseStd: inverseStd, then: nil)
    }

    /// `then(dx, rows)` runs on each chunk's rows of the input gradient right
    /// after they are computed (still in cache).
    func layerNormBackward(
        _ dy: Tensor, _ x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor,
        then: ((UnsafeMutablePointer<Float>, Range<Int>) -> Void)?
    ) -> LayerNormGradients {
        for t in [dy, x, gamma, mean, inverseStd] { t.requireFloat("layerNormBackward") }
        precondition(dy.shape == x.shape, "layerNormBackward: dy \(dy.shape) vs x \(x.shape)")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        precondition(gamma.shape == [columns], "layerNormBackward: gamma must be [\(columns)]")
        precondition(mean.count == rows && inverseStd.count == rows, "layerNormBackward: statistics must be [\(rows)]")
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
                            gammaPartials.withUnsafeMutableBufferPointer { gp in
                                betaPartials.withUnsafeMutableBufferPointer { bp in
                                    produce(x.shape) { po in
                                        let gBase = gp.baseAddress
                                        let bBase = bp.baseAddress
                                        runner.run(chunks: chunks) { chunk in
                                            let first = chunk * perChunk
                                            let count = Swift.min(rows, first + perChunk) - first
                                            let start = first * columns
                                            sq_layer_norm_backward_rows(
                                                pdy + start, px + start, pg, pm + first, pi + first, po + start,
                                                gBase.map { $0 + chunk * columns }, bBase.map { $0 + chunk * columns },
                                                count, columns)
                                            then?(po, first..<(first + count))
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

    /// The γ and β gradients from per-chunk partial sums (`chunks × columns`),
    /// added in chunk order so the result does not depend on the thread count.
    static func layerNormGradients(
        input: Tensor, gammaPartials: [Float], betaPartials: [Float], chunks: Int, columns: Int
    ) -> LayerNormGradients {
        var dGamma = [Float](repeating: 0, count: columns)
        var dBeta = [Float](repeating: 0, count: columns)
        for column in 0..<columns {
            var g = 0.0
            var b = 0.0
            for chunk in 0..<chunks {
                g += Double(gammaPartials[chunk * columns + column])
                b += Double(betaPartials[chunk * columns + column])
            }
            dGamma[column] = Float(g)
            dBeta[column] = Float(b)
        }
        return LayerNormGradients(
            input: input, gamma: Tensor(shape: [columns], floats: dGamma), beta: Tensor(shape: [columns], floats: dBeta))
    }

    // MARK: Indexing and masking

    public func gather(_ table: Tensor, _ ids: Tensor) -> Tensor {
        table.requireFloat("gather")
        ids.requireInt32("gather")
        precondition(table.rank == 2, "gather: table must be [V, D], got \(table.shape)")
        let (vocabulary, width) = (table.shape[0], table.shape[1])
        let indices = ids.contiguous()
        return indices.withUnsafeElements(Int32.self) { idv in
            for id in idv { precondition(id >= 0 && Int(id) < vocabulary, "gather: id \(id) outside 0..<\(vocabulary)") }
            return withFloats(table) { pt in
                produce(ids.shape + [width]) { po in
                    runner.forEachRange(count: idv.count, chunkSize: rowChunk(columns: width)) { r in
                        for position in r {
                            (po + position * width).update(from: pt + Int(idv[position]) * width, count: width)
                        }
                    }
                }
            }
        }
    }

    public func scatterAdd(_ dy: Tensor, _ ids: Tensor, rows: Int) -> Tensor {
        dy.requireFloat("scatterAdd")
        ids.requireInt32("scatterAdd")
        precondition(
            dy.rank == ids.rank + 1 && Array(dy.shape.dropLast()) == ids.shape,
            "scatterAdd: dy \(dy.shape) must be ids \(ids.shape) + [D]")
        let width = dy.shape[dy.rank - 1]
        let result = produce([rows, width]) { out in
            runner.forEachRange(count: rows * width, chunkSize: 4 * elementChunk) { r in
                (out + r.lowerBound).update(repeating: 0, count: r.count)
            }
        }
        let out = result.storage.bytes.assumingMemoryBound(to: Float.self)
        let block = Int(SQ_COLUMN_BLOCK)
        ids.contiguous().withUnsafeElements(Int32.self) { idv in
            for id in idv { precondition(id >= 0 && Int(id) < rows, "scatterAdd: id \(id) outside 0..<\(rows)") }
            withFloats(dy) { pdy in
                // Each chunk owns a block of columns and adds every row in id order.
                runner.forEachRange(count: width, chunkSize: block) { columns in
                    for (position, id) in idv.enumerated() {
                        sq_accumulate(
                            out + Int(id) * width + columns.lowerBound, pdy + position * width + columns.lowerBound,
                            columns.count)
                    }
                }
            }
        }
        return result
    }

    public func maskedFill(_ x: Tensor, mask: Tensor, value: Float) -> Tensor {
        x.requireFloat("maskedFill")
        precondition(Shapes.broadcast(x.shape, mask.shape) == x.shape, "maskedFill: mask \(mask.shape) does not broadcast to \(x.shape)")
        let flags = Tensor(shape: mask.shape, floats: mask.nonZeroFlags.map { $0 ? 1 : 0 })
        return broadcastBinary(x, flags, shape: x.shape, op: 3, fill: value)
    }

    // MARK: Reductions

    public func sum(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        x.requireFloat("sum")
        let resolved = Shapes.normalize(axes: axes, rank: x.rank)
        let kept = sumKeepingAxes(x.contiguous(), axes: resolved)
        return keepDimensions ? kept : kept.reshaped(Shapes.reducedShape(x.shape, axes: resolved, keepDimensions: false))
    }

    public func mean(_ x: Tensor, axes: [Int], keepDimensions: Bool) -> Tensor {
        let total = sum(x, axes: axes, keepDimensions: keepDimensions)
        let reduced = Swift.max(1, x.count) / Swift.max(1, total.count)
        return affine(total, scale: 1 / Float(reduced), shift: 0)
    }

    public func max(_ x: Tensor, axis: Int, keepDimensions: Bool) -> (values: Tensor, indices: Tensor) {
        x.requireFloat("max")
        let resolved = Shapes.normalize(axis: axis, rank: x.rank)
        let length = x.shape[resolved]
        precondition(length > 0, "max over an empty axis")
        let inner = x.shape[(resolved + 1)...].reduce(1, *)
        let outer = x.shape[..<resolved].reduce(1, *)
        let shape = Shapes.reducedShape(x.shape, axes: [resolved], keepDimensions: keepDimensions)
        let indices = Tensor(zeros: shape, dtype: .i32)
        let positions = indices.storage.bytes.assumingMemoryBound(to: Int32.self)
        let values = withFloats(x) { px in
            produce(shape) { best in
                runner.forEachRange(count: outer, chunkSize: Swift.max(1, elementChunk / Swift.max(1, length * inner))) { r in
                    for o in r {
                        let base = px + o * length * inner
                        let top = best + o * inner
                        let at = positions + o * inner
                        top.update(from: base, count: inner)
                        for i in 0..<inner { at[i] = 0 }
                        for step in 1..<length {
                            let row = base + step * inner
                            for i in 0..<inner where row[i] > top[i] {
                                top[i] = row[i]
                                at[i] = Int32(step)
                            }
                        }
                    }
                }
            }
        }
        return (values, indices)
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        x.requireFloat("sumOfSquares")
        let chunk = 65_536
        let chunks = (x.count + chunk - 1) / chunk
        var partials = [Double](repeating: 0, count: chunks)
        withFloats(x) { px in
            partials.withUnsafeMutableBufferPointer { out in
                let base = out.baseAddress
                runner.run(chunks: chunks) { index in
                    let start = index * chunk
                    base?[index] = sq_sum_of_squares(px + start, Swift.min(chunk, x.count - start))
                }
            }
        }
        return partials.reduce(0, +)
    }

    // MARK: Training

    public func dropout(_ x: Tensor, probability p: Float, seed: UInt64, stream: UInt64) -> (output: Tensor, mask: Tensor) {
        x.requireFloat("dropout")
        let threshold = dropoutThreshold(p)
        let scale = 1 / (1 - p)
        let key = randomStreamKey(seed: seed, stream: stream)
        let maskStorage = TensorStorage(uninitializedByteCount: x.count * 4)
        let mask = maskStorage.bytes.assumingMemoryBound(to: Float.self)
        let output = withFloats(x) { px in
            produce(x.shape) { po in
                runner.forEachRange(count: x.count, chunkSize: elementChunk) { r in
                    let start = r.lowerBound
                    sq_dropout(px + start, po + start, mask + start, r.count, UInt64(start), key, threshold, scale)
                }
            }
        }
        return (output, Tensor(storage: maskStorage, dtype: .f32, shape: x.shape))
    }

    public func crossEntropy(_ logits: Tensor, labels: Tensor) -> (loss: Tensor, probabilities: Tensor) {
        logits.requireFloat("crossEntropy")
        labels.requireInt32("crossEntropy")
        precondition(logits.rank == 2 && labels.shape == [logits.shape[0]], "crossEntropy: logits [N, C], labels [N]")
        let (rows, classes) = (logits.shape[0], logits.shape[1])
        let targets = labels.int32s
        for label in targets { precondition(label >= 0 && Int(label) < classes, "crossEntropy: label \(label) outside 0..<\(classes)") }
        var logSumExp = [Float](repeating: 0, count: rows)
        var total = 0.0
        let probabilities = withFloats(logits) { px in
            logSumExp.withUnsafeMutableBufferPointer { lse in
                let lseBase = lse.baseAddress
                let result = produce(logits.shape) { po in
                    runner.forEachRange(count: rows, chunkSize: rowChunk(columns: classes)) { r in
                        let start = r.lowerBound * classes
                        sq_softmax_rows(px + start, po + start, lseBase.map { $0 + r.lowerBound }, r.count, classes)
                    }
                }
                for row in 0..<rows {
                    total += Double(lse[row]) - Double(px[row * classes + Int(targets[row])])
                }
                return result
            }
        }
        let loss = rows == 0 ? 0 : Float(total / Double(rows))
        return (Tensor(scalar: loss), probabilities)
    }

    public func crossEntropyBackward(probabilities: Tensor, labels: Tensor, dLoss: Float) -> Tensor {
        probabilities.requireFloat("crossEntropyBackward")
        labels.requireInt32("crossEntropyBackward")
        precondition(probabilities.rank == 2 && labels.shape == [probabilities.shape[0]], "crossEntropyBackward: [N, C], [N]")
        let (rows, classes) = (probabilities.shape[0], probabilities.shape[1])
        let targets = labels.int32s
        for label in targets { precondition(label >= 0 && Int(label) < classes, "crossEntropyBackward: label \(label) outside 0..<\(classes)") }
        let scale = Float(Double(dLoss) / Double(Swift.max(rows, 1)))
        let result = affine(probabilities, scale: scale, shift: 0)
        let out = result.storage.bytes.assumingMemoryBound(to: Float.self)
        for row in 0..<rows { out[row * classes + Int(targets[row])] -= scale }
        return result
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
        for t in [parameter, gradient, firstMoment, secondMoment] { t.requireFloat("adamWUpdate") }
        let correction1 = 1 - Foundation.pow(Double(h.beta1), Double(step))
        let correction2 = 1 - Foundation.pow(Double(h.beta2), Double(step))
        let stepSize = Float(Double(h.learningRate) / correction1)
        let rootCorrection2 = Float(correction2.squareRoot())
        let count = parameter.count
        withFloats(gradient) { pg in
            parameter.withUnsafeMutableFloats { p in
                firstMoment.withUnsafeMutableFloats { m in
                    secondMoment.withUnsafeMutableFloats { v in
                        guard let pp = p.baseAddress, let mp = m.baseAddress, let vp = v.baseAddress else { return }
                        runner.forEachRange(count: count, chunkSize: elementChunk) { r in
                            let s = r.lowerBound
                            sq_adamw(
                                pp + s, pg + s, mp + s, vp + s, r.count, h.learningRate, h.beta1, h.beta2, h.epsilon,
                                h.weightDecay, stepSize, rootCorrection2, h.gradientScale)
                        }
                    }
                }
            }
        }
    }
}
