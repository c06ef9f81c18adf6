import CKernels

/// Which int8 kernel runs a product (tests and benchmarks force one; the
/// results are the same bits whichever runs).
enum Int8Kernel: Int32, Sendable, CaseIterable {
    /// The fastest exact kernel for the activations at hand.
    case automatic = 0
    /// Plain C loops.
    case portable = 1
    /// AVX2 with both operands widened to int16 (exact for any input).
    case wide = 2
    /// AVX2 vpmaddubsw; runs only where activations ≤ `fastActivationLimit`.
    case maddubs = 3
    /// AVX-512 VNNI vpdpbusd (exact for any input; the automatic choice where the CPU has it).
    case vnni = 4
    /// The automatic choice among the AVX2 kernels only (maddubs or wide).
    case avx2 = 5

    /// Whether this CPU runs the VNNI kernel.
    static var hasVNNI: Bool { sq_use_avx512_vnni() != 0 }

    /// The kernel that runs on this CPU when `self` is asked for (the C side's choice).
    func resolved(fastActivationLimit: Int32, activationMax: Int32) -> Int8Kernel {
        Int8Kernel(rawValue: sq_i8_kernel_for(rawValue, fastActivationLimit, activationMax)) ?? .portable
    }

    /// The name a kernel that ran is reported by.
    var name: String {
        switch self {
        case .portable: "portable"
        case .wide: "avx2-wide"
        case .maddubs: "avx2-maddubs"
        case .vnni: "avx512-vnni"
        case .automatic, .avx2: "automatic"
        }
    }
}

extension CPUBackend {
    /// The kernel choice of this backend's int8 products.
    var automaticInt8Kernel: Int8Kernel { int8Kernels == .fastest ? .automatic : .avx2 }

    /// The kernel this backend's automatic choice runs on this machine for
    /// activations ≤ `activationMax` ("avx512-vnni", "avx2-maddubs", "avx2-wide" or "portable").
    public func int8KernelName(activationMax: Int32, fastActivationLimit: Int32) -> String {
        automaticInt8Kernel.resolved(fastActivationLimit: fastActivationLimit, activationMax: activationMax).name
    }
}

extension CPUBackend {
    public func activationRange(_ x: Tensor, perRow: Bool) -> ActivationRange {
        x.requireFloat("activationRange")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        let (groups, span) = perRow ? (rows, columns) : (1, x.count)
        let chunk = perRow ? rowChunk(columns: columns) : elementChunk
        let pieces = perRow ? (rows + chunk - 1) / chunk : (x.count + chunk - 1) / chunk
        // Per row: one slot per row. Per tensor: one slot per chunk, combined below.
        let slots = perRow ? groups : Swift.max(pieces, 1)
        var minimums = [Float](repeating: 0, count: slots)
        var maximums = [Float](repeating: 0, count: slots)
        withFloats(x) { px in
            minimums.withUnsafeMutableBufferPointer { low in
                maximums.withUnsafeMutableBufferPointer { high in
                    guard let lowBase = low.baseAddress, let highBase = high.baseAddress else { return }
                    runner.run(chunks: pieces) { piece in
                        if perRow {
                            for row in (piece * chunk)..<Swift.min(rows, (piece + 1) * chunk) {
                                sq_f32_range(px + row * span, span, lowBase + row, highBase + row)
                            }
                        } else {
                            let start = piece * chunk
                            sq_f32_range(px + start, Swift.min(chunk, x.count - start), lowBase + piece, highBase + piece)
                        }
                    }
                }
            }
        }
        if perRow { return ActivationRange(minimums: minimums, maximums: maximums) }
        return ActivationRange(minimums: [minimums.min() ?? 0], maximums: [maximums.max() ?? 0])
    }

    public func quantize(_ x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        if quantization.channelMultipliers != nil { return quantizeColumns(x, quantization) }
        return quantize(x, quantization, "quantize") { x, out, count, inverseScale, zero, low, high in
            sq_quantize_u8(x, out, count, inverseScale, zero, low, high)
        }
    }

    /// Per-tensor parameters with channel multipliers: chunks of whole rows,
    /// each column with its own inverse scale.
    private func quantizeColumns(_ x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        x.requireFloat("quantize")
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        quantization.requireRows(rows, "quantize")
        let inverses = quantization.columnInverseScales(columns, "quantize")
        let storage = TensorStorage(uninitializedByteCount: x.count)
        let out = storage.bytes.assumingMemoryBound(to: UInt8.self)
        let (zero, low, high) = (quantization.zeroPoints[0], quantization.range.lowerBound, quantization.range.upperBound)
        withFloats(x) { px in
            inverses.withUnsafeBufferPointer { inverse in
                runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                    sq_quantize_u8_columns(
                        px + r.lowerBound * columns, out + r.lowerBound * columns, r.count, columns, inverse.baseAddress, zero, low, high)
                }
            }
        }
        return Tensor(storage: storage, dtype: .u8, shape: x.shape)
    }

    /// One pass per chunk: the GELU of a block, quantised while still in L1.
    public func quantize(geluOf x: Tensor, _ quantization: ActivationQuantization) -> Tensor {
        quantization.requireNoChannelMultipliers("quantize(geluOf:)")
        return quantize(x, quantization, "quantize(geluOf:)") { x, out, count, inverseScale, zero, low, high in
            sq_gelu_quantize_u8(x, out, count, inverseScale, zero, low, high)
        }
    }

    /// `kernel(x, out, count, 1/scale, zero, q_min, q_max)` over chunks of
    /// `x`, with the parameters of each chunk's rows.
    private func quantize(
        _ x: Tensor, _ quantization: ActivationQuantization, _ op: String,
        kernel: (UnsafePointer<Float>, UnsafeMutablePointer<UInt8>, Int, Float, Int32, Int32, Int32) -> Void
    ) -> Tensor {
        x.requireFloat(op)
        let (rows, columns) = Shapes.rowsAndColumns(x.shape)
        quantization.requireRows(rows, op)
        let storage = TensorStorage(uninitializedByteCount: x.count)
        let out = storage.bytes.assumingMemoryBound(to: UInt8.self)
        let (low, high) = (quantization.range.lowerBound, quantization.range.upperBound)
        withFloats(x) { px in
            if !quantization.isPerRow {
                let scale = quantization.scales[0]
                let zero = quantization.zeroPoints[0]
                runner.forEachRange(count: x.count, chunkSize: elementChunk) { r in
                    kernel(px + r.lowerBound, out + r.lowerBound, r.count, 1 / scale, zero, low, high)
                }
                return
            }
            runner.forEachRange(count: rows, chunkSize: rowChunk(columns: columns)) { r in
                for row in r {
                    let (scale, zero) = quantization.parameters(row: row)
                    kernel(px + row * columns, out + row * columns, columns, 1 / scale, zero, low, high)
                }
            }
        }
        return Tensor(storage: storage, dtype: .u8, shape: x.shape)
    }

    public func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        output: QuantizedLinearOutput
    ) -> Tensor {
        int8Linear(
            quantized: x, quantization: quantization, weights: weights, bias: bias, output: output, activationMax: nil,
            kernel: automaticInt8Kernel
        ).result
    }

    /// As the protocol's composition, except that the activations are known to
    /// lie in `quantization.range`, so no tile scans them for their largest.
    public func quantizedLinear(
        _ x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?
    ) -> Tensor {
        int8Linear(
            quantized: quantize(x, quantization), quantization: quantization, weights: weights, bias: bias,
            output: .float, activationMax: quantization.range.upperBound, kernel: automaticInt8Kernel
        ).result
    }

    /// Per block of `geluBlockRows` rows, on the workers: the f32 product
    /// into a scratch block that stays in L2, then its GELU codes; the f32
    /// pre-activations never go to memory.
    public func quantizedLinear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        geluCodes: ActivationQuantization
    ) -> Tensor {
        int8Linear(
            quantized: x, quantization: quantization, weights: weights, bias: bias, output: .float, geluCodes: geluCodes,
            activationMax: nil, kernel: automaticInt8Kernel
        ).result
    }

    /// Rows per block of `quantizedLinear(quantized:…geluCodes:)`: up to 256 KiB
    /// of f32 scratch (half of a Zen 3 L2), a multiple of 4 rows (the AVX2
    /// micro-tile), at least 4.
    static func geluBlockRows(n: Int) -> Int { Swift.max(4, (65_536 / Swift.max(n, 1)) / 4 * 4) }

    /// `quantizedLinear(quantized:…)` with a chosen kernel; also returns the
    /// kernel each tile ran (in tile order). `activationMax` bounds every
    /// activation when known; nil: each tile finds the largest of its rows.
    /// With `geluCodes` (and `.float` output) the result is the u8 codes of
    /// the GELU of the f32 product, computed per block of rows.
    func int8Linear(
        quantized x: Tensor, quantization: ActivationQuantization, weights: PackedInt8Weights, bias: Tensor?,
        output: QuantizedLinearOutput, geluCodes: ActivationQuantization? = nil, activationMax: Int32?, kernel: Int8Kernel
    ) -> (result: Tensor, kernels: [Int8Kernel]) {
        let (rows, n, k) = ReferenceBackend.checkQuantizedLinear(x, quantization, weights, bias, output)
        precondition(geluCodes == nil || output == .float, "int8Linear: GELU codes come from the f32 output")
        precondition(geluCodes?.isPerRow != true, "quantizedLinear(geluCodes:): per-tensor GELU parameters only")
        geluCodes?.requireNoChannelMultipliers("quantizedLinear(geluCodes:)")
        let shape = Array(x.shape.dropLast()) + [n]
        let (dtype, outputKind): (DType, Int32) =
            switch output {
            case .accumulators: (.i32, Int32(SQ_I8_OUT_S32))
            case .float: (geluCodes == nil ? .f32 : .u8, Int32(SQ_I8_OUT_F32))
            case .quantized: (.u8, Int32(SQ_I8_OUT_U8))
            }
        let storage = TensorStorage(uninitializedByteCount: rows * n * dtype.byteSize)
        let result = Tensor(storage: storage, dtype: dtype, shape: shape)
        if rows * n == 0 { return (result, []) }
        var target: (scale: Float, zero: Int32, range: ClosedRange<Int32>) = (1, 0, 0...255)
        if case .quantized(let parameters) = output {
            target = (parameters.scales[0], parameters.zeroPoints[0], parameters.range)
        }
        let tiles = Self.int8Tiles(m: rows, n: n, k: k)
        let blockRows = Self.geluBlockRows(n: n)
        let blocks = (rows + blockRows - 1) / blockRows
        var kernels = [Int32](repeating: 0, count: geluCodes == nil ? tiles.count : blocks)
        let activations = x.contiguous()
        let biasValues = bias?.contiguous()
        withExtendedLifetime((activations, biasValues)) {
            let a = UnsafePointer((activations.storage.bytes + activations.offset).assumingMemoryBound(to: UInt8.self))
            let biasBase = biasValues.map {
                UnsafePointer(($0.storage.bytes + $0.offset * 4).assumingMemoryBound(to: Float.self))
            }
            weights.packed.withUnsafeBufferPointer { packed in
                weights.columnSums.withUnsafeBufferPointer { sums in
                    weights.scales.withUnsafeBufferPointer { wScales in
                        quantization.scales.withUnsafeBufferPointer { aScales in
                            quantization.zeroPoints.withUnsafeBufferPointer { aZeros in
                                kernels.withUnsafeMutableBufferPointer { used in
                                    let problem = sq_i8_gemm_problem(
                                        m: rows, n: n, k: k, a: a, lda: k, packed: packed.baseAddress,
                                        column_sums: sums.baseAddress, fast_activation_limit: weights.fastActivationLimit,
                                        activation_max: activationMax ?? -1, a_scale: aScales.baseAddress, a_zero: aZeros.baseAddress,
                                        a_param_stride: quantization.isPerRow ? 1 : 0, w_scale: wScales.baseAddress,
                                        bias: biasBase, output: outputKind, c: storage.bytes, ldc: n,
                                        out_inverse_scale: 1 / target.scale, out_zero: target.zero,
                                        out_min: target.range.lowerBound, out_max: target.range.upperBound,
                                        kernel: kernel.rawValue)
                                    let usedBase = used.baseAddress
                                    if let geluCodes {
                                        let codes = storage.bytes.assumingMemoryBound(to: UInt8.self)
                                        runner.run(chunks: blocks) { block in
                                            let first = block * blockRows
                                            let count = Swift.min(blockRows, rows - first)
                                            // From the buffer pool: recycled, so no page faults per block.
                                            let scratch = TensorStorage(uninitializedByteCount: count * n * 4)
                                            var local = problem
                                            local.m = count
                                            local.a = a + first * k
                                            local.c = scratch.bytes
                                            if quantization.isPerRow {
                                                local.a_scale = problem.a_scale + first
                                                local.a_zero = problem.a_zero + first
                                            }
                                            usedBase?[block] = sq_i8_gemm(&local, 0, count, 0, tiles.panels)
                                            sq_gelu_quantize_u8(
                                                scratch.bytes.assumingMemoryBound(to: Float.self), codes + first * n, count * n,
                                                1 / geluCodes.scales[0], geluCodes.zeroPoints[0], geluCodes.range.lowerBound,
                                                geluCodes.range.upperBound)
                                        }
                                        return
                                    }
                                    withUnsafePointer(to: problem) { shared in
                                        runner.run(chunks: tiles.count) { tile in
                                            let (rowRange, panelRange) = tiles.ranges(tile)
                                            usedBase?[tile] = sq_i8_gemm(
                                                shared, rowRange.lowerBound, rowRange.upperBound, panelRange.lowerBound,
                                                panelRange.upperBound)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (result, kernels.map { Int8Kernel(rawValue: $0) ?? .automatic })
    }

    /// Int8 products below this many multiply-adds are not split.
    static let smallInt8Product = 1 << 19

    /// How an int8 product is cut into tiles, from its sizes only: up to 8
    /// (the weights are packed once, so extra tiles cost nothing but their
    /// scheduling and help balance a shared machine), along the rows in
    /// multiples of 16 when there are at least 64 rows, else along panels of
    /// `SQ_I8_PANEL` columns.
    static func int8Tiles(m: Int, n: Int, k: Int) -> Int8Tiles {
        let panels = (n + Int(SQ_I8_PANEL) - 1) / Int(SQ_I8_PANEL)
        let wanted = Swift.min(8, Swift.max(1, m * n * Swift.max(k, 1) / smallInt8Product))
        if m >= 64 {
            let size = ((m + wanted - 1) / wanted + 15) / 16 * 16
            return Int8Tiles(alongRows: true, rows: m, panels: panels, size: size)
        }
        let size = (panels + wanted - 1) / wanted
        return Int8Tiles(alongRows: false, rows: m, panels: panels, size: Swift.max(size, 1))
    }
}

/// The tiles of one int8 product: ranges of rows (every panel) or of panels (every row).
struct Int8Tiles: Sendable, Equatable {
    let alongRows: Bool
    let rows: Int
    let panels: Int
    let size: Int

    var count: Int {
        let length = alongRows ? rows : panels
        return (length + size - 1) / size
    }

    func ranges(_ tile: Int) -> (rows: Range<Int>, panels: Range<Int>) {
        let length = alongRows ? rows : panels
        let range = (tile * size)..<Swift.min(length, (tile + 1) * size)
        return alongRows ? (range, 0..<panels) : (0..<rows, range)
    }
}
