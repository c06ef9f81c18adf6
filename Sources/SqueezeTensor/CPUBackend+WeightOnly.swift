import CKernels

/// How the CPU backend runs a weight-only product (benchmarks and tests force one).
public enum WeightOnlyKernel: String, Sendable, CaseIterable {
    /// By the number of rows: fused up to `CPUBackend.weightOnlyFusedRows`, sgemm above.
    case automatic
    /// Fused dequantise-and-multiply in plain C loops (bit-identical to `fused`).
    case portable
    /// Fused dequantise-and-multiply, AVX2+FMA when the CPU has them.
    case fused
    /// The whole weight dequantised to an f32 scratch once, then sgemm tiles.
    case dequantizedSgemm
}

extension CPUBackend {
    /// Fused for up to `weightOnlyFusedRows` rows, else dequantise + sgemm.
    public func weightOnlyLinear(_ x: Tensor, weights: PackedGroupWeights, bias: Tensor?) -> Tensor {
        weightOnlyProduct(x, weights: weights, bias: bias, kernel: .automatic).result
    }

    /// Rows up to which the fused kernel runs. It dequantises each block of
    /// weights once per 32 rows and never writes the f32 weight out: at one
    /// row it is 4–6× faster than sgemm (which packs the whole weight for one
    /// row), at 32–256 rows 1.1–1.7× faster than dequantise + sgemm; from 512
    /// rows on the two are even and OpenBLAS's micro-kernels take over
    /// (Benchmarks/README.md, `squeeze bench weight-only`).
    public static let weightOnlyFusedRows = 256

    /// `weightOnlyLinear` with a chosen kernel, for benchmarks. The fused
    /// kernels (`portable`, `fused`, and `automatic` up to
    /// `weightOnlyFusedRows` rows) give identical bits; `dequantizedSgemm`
    /// agrees with them to rounding.
    public func weightOnlyLinear(_ x: Tensor, weights: PackedGroupWeights, bias: Tensor?, kernel: WeightOnlyKernel) -> Tensor {
        weightOnlyProduct(x, weights: weights, bias: bias, kernel: kernel).result
    }

    /// The product with a chosen kernel; also returns the kernel that ran
    /// (never `.automatic`). K = 0 always takes the fused path.
    func weightOnlyProduct(
        _ x: Tensor, weights: PackedGroupWeights, bias: Tensor?, kernel: WeightOnlyKernel
    ) -> (result: Tensor, kernel: WeightOnlyKernel) {
        let (rows, n, k) = ReferenceBackend.checkWeightOnlyLinear(x, weights, bias)
        let shape = Array(x.shape.dropLast()) + [n]
        var chosen = kernel
        if chosen == .automatic { chosen = rows <= Self.weightOnlyFusedRows ? .fused : .dequantizedSgemm }
        if chosen == .dequantizedSgemm && k == 0 { chosen = .fused }
        if rows * n == 0 { return (Tensor(zeros: shape), chosen) }
        precondition(Swift.max(rows, n, k) <= Int(Int32.max), "weightOnlyLinear: sizes exceed the BLAS integer range")
        let activations = x.contiguous()
        let biasValues = bias?.contiguous()
        let storage = TensorStorage(uninitializedByteCount: rows * n * 4)
        let out = storage.bytes.assumingMemoryBound(to: Float.self)
        withExtendedLifetime((activations, biasValues)) {
            let xBase = UnsafePointer(activations.storage.bytes.assumingMemoryBound(to: Float.self) + activations.offset)
            let biasBase = biasValues.map { UnsafePointer($0.storage.bytes.assumingMemoryBound(to: Float.self) + $0.offset) }
            weights.packedCodes.withUnsafeBufferPointer { codes in
                weights.packedScales.withUnsafeBufferPointer { scales in
                    weights.packedZeroPoints.withUnsafeBufferPointer { zeros in
                        let problem = sq_wo_problem(
                            m: rows, n: n, k: k, group: weights.groupSize, bits: Int32(weights.bits), x: xBase, ldx: k,
                            codes: codes.baseAddress, scales: scales.baseAddress,
                            zeros: weights.isSymmetric ? nil : zeros.baseAddress, bias: biasBase, y: out, ldy: n,
                            kernel: Int32(chosen == .portable ? SQ_WO_KERNEL_PORTABLE : SQ_WO_KERNEL_AUTO))
                        withUnsafePointer(to: problem) { shared in
                            if chosen == .dequantizedSgemm {
                                dequantizedProduct(shared, bias: biasBase)
                            } else {
                                let tiles = Self.weightOnlyTiles(m: rows, n: n, k: k)
                                runner.run(chunks: tiles.count) { tile in
                                    let (rowRange, panelRange) = tiles.ranges(tile)
                                    sq_wo_gemm(
                                        shared, rowRange.lowerBound, rowRange.upperBound, panelRange.lowerBound,
                                        panelRange.upperBound)
                                }
                            }
                        }
                    }
                }
            }
        }
        return (Tensor(storage: storage, dtype: .f32, shape: shape), chosen)
    }

    /// Dequantises the whole weight into a pooled f32 scratch (`[K, N]`
    /// padded to whole panels; freed on return) and multiplies with sgemm in
    /// the tiles of `matmul`, each output tile starting as the bias rows.
    private func dequantizedProduct(_ p: UnsafePointer<sq_wo_problem>, bias: UnsafePointer<Float>?) {
        let (rows, n, k) = (p.pointee.m, p.pointee.n, p.pointee.k)
        let panel = Int(SQ_WO_PANEL)
        let panels = (n + panel - 1) / panel
        let width = panels * panel
        let scratch = TensorStorage(uninitializedByteCount: k * width * 4)
        let w = scratch.bytes.assumingMemoryBound(to: Float.self)
        runner.forEachRange(count: panels, chunkSize: Swift.max(1, 65_536 / Swift.max(k * panel, 1))) { range in
            sq_wo_dequantize(p, range.lowerBound, range.upperBound, 0, k, w + range.lowerBound * panel, width)
        }
        // As `matmul`: OpenBLAS single-threaded, the backend's workers run the tiles.
        Self.keepBLASSingleThreaded()
        let x = p.pointee.x
        let y = p.pointee.y
        let tiles = Self.tiles(m: rows, n: n, k: k)
        withExtendedLifetime(scratch) {
            runner.run(chunks: tiles.count) { index in
                let tile = tiles.range(index)
                let (firstRow, firstColumn) = tile.alongRows ? (tile.range.lowerBound, 0) : (0, tile.range.lowerBound)
                let m = tile.alongRows ? tile.range.count : rows
                let columns = tile.alongRows ? n : tile.range.count
                guard let x, let y else { return }
                let c = y + firstRow * n + firstColumn
                var beta: Float = 0
                if let bias {
                    for row in 0..<m { (c + row * n).update(from: bias + firstColumn, count: columns) }
                    beta = 1
                }
                sq_sgemm(
                    0, 0, Int32(m), Int32(columns), Int32(k), 1, x + firstRow * k, Int32(k), w + firstColumn,
                    Int32(width), beta, c, Int32(n))
            }
        }
    }

    /// Fused products below this many multiply-adds are not split.
    static let smallWeightOnlyProduct = 1 << 18

    /// How a fused product is cut into tiles, from its sizes only (every
    /// split gives the same bits anyway): up to 8, along the rows in
    /// multiples of 32 (the rows sharing a dequantised block) when there are
    /// at least 64, else along blocks of 4 panels (64 columns).
    static func weightOnlyTiles(m: Int, n: Int, k: Int) -> WeightOnlyTiles {
        let panels = (n + Int(SQ_WO_PANEL) - 1) / Int(SQ_WO_PANEL)
        let wanted = Swift.min(8, Swift.max(1, m * n * Swift.max(k, 1) / smallWeightOnlyProduct))
        if m >= 64 {
            let size = ((m + wanted - 1) / wanted + 31) / 32 * 32
            return WeightOnlyTiles(alongRows: true, rows: m, panels: panels, size: size)
        }
        let size = ((panels + wanted - 1) / wanted + 3) / 4 * 4
        return WeightOnlyTiles(alongRows: false, rows: m, panels: panels, size: size)
    }
}

/// The tiles of one fused product: ranges of rows (every panel) or of panels (every row).
struct WeightOnlyTiles: Sendable, Equatable {
    let alongRows: Bool
    let rows: Int
    let panels: Int
    let size: Int

    var count: Int {
        let length = alongRows ? rows : panels
        return Swift.max(1, (length + size - 1) / size)
    }

    func ranges(_ tile: Int) -> (rows: Range<Int>, panels: Range<Int>) {
        let length = alongRows ? rows : panels
        let range = (tile * size)..<Swift.min(length, (tile + 1) * size)
        return alongRows ? (range, 0..<panels) : (0..<rows, range)
    }
}
