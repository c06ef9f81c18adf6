import Testing
@testable import SqueezeTensor

/// Random u8 activations in `0...maximum`.
func randomActivations(_ shape: [Int], maximum: UInt8 = 255, _ generator: inout SeededGenerator) -> Tensor {
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, uint8s: (0..<count).map { _ in UInt8(generator.next() % (UInt64(maximum) + 1)) })
}

/// Random packed int8 weights `[n, k]` over the whole int8 range, scales in [0.001, 0.02).
func randomWeights(n: Int, k: Int, _ generator: inout SeededGenerator) -> PackedInt8Weights {
    let values = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: generator.next()) }
    let scales = (0..<n).map { _ in Float.random(in: 0.001..<0.02, using: &generator) }
    return PackedInt8Weights(values: Tensor(shape: [n, k], int8s: values), scales: scales)
}

/// The first index where two arrays differ (their common length when one is
/// a prefix of the other); nil when they are equal. Keeps failure messages short.
func firstMismatch<T: Equatable>(_ a: [T], _ b: [T]) -> Int? {
    let common = Swift.min(a.count, b.count)
    if let index = (0..<common).first(where: { a[$0] != b[$0] }) { return index }
    return a.count == b.count ? nil : common
}

/// Whether this machine runs the AVX2 kernels (else every product is portable).
let hasAVX2 = CPUBackend.kernelVariant == "avx2-fma"
/// Whether this machine runs the AVX-512 VNNI kernel (then the automatic choice everywhere).
let hasVNNI = Int8Kernel.hasVNNI

@Suite struct Int8GEMMTests {
    let cpu = CPUBackend(threads: 2)
    let reference = ReferenceBackend()

    /// (M, N, K) with each of 1, 3, 7, 31, 33, 64, 65 in every position, K
    /// mostly not a multiple of the 4-byte group or the 32-byte vector, and
    /// the model's 384.
    static let shapes: [(Int, Int, Int)] = {
        let sizes = [1, 3, 7, 31, 33, 64, 65]
        var shapes: [(Int, Int, Int)] = []
        for i in sizes.indices {
            shapes.append((sizes[i], sizes[(i + 2) % 7], sizes[(i + 4) % 7]))
            shapes.append((sizes[(i + 3) % 7], sizes[i], sizes[(i + 1) % 7]))
        }
        return shapes + [(3, 384, 384), (33, 31, 385), (65, 17, 2), (2, 16, 0)]
    }()

    /// The sums of every kernel equal the reference's Int64 sums exactly.
    @Test(arguments: [UInt8(255), 127])
    func accumulatorsAreExactOnOddShapes(activationMaximum: UInt8) {
        var generator = SeededGenerator(seed: 11 + UInt64(activationMaximum))
        for (m, n, k) in Self.shapes {
            let x = randomActivations([m, k], maximum: activationMaximum, &generator)
            let weights = randomWeights(n: n, k: k, &generator)
            let quantization = ActivationQuantization(scale: 0.1, zeroPoint: 3)
            let expected = reference.quantizedLinear(
                quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators)
            for kernel in Int8Kernel.allCases {
                let (result, ran) = cpu.int8Linear(
                    quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators,
                    activationMax: nil, kernel: kernel)
                #expect(result.dtype == .i32 && result.shape == [m, n], "\(m)×\(n)×\(k)")
                #expect(firstMismatch(result.int32s, expected.int32s) == nil, "\(m)×\(n)×\(k) kernel \(kernel) ran \(ran)")
                if kernel == .vnni && hasVNNI { #expect(ran.allSatisfy { $0 == .vnni }, "\(m)×\(n)×\(k) ran \(ran)") }
            }
        }
    }

    /// Every pair of extreme activations against every pair of extreme
    /// weights, repeated along K = 70 (35 pairs: a pair sum saturating int16
    /// anywhere would change the total; 70 is not a multiple of 4 either).
    /// Row r holds activation pair r (even k, odd k), column c weight pair c;
    /// four more rows cycle through the values in different orders so that
    /// the pairs also mix within a row.
    @Test func extremeValuesAreExactForEveryCombination() {
        let activationValues: [UInt8] = [0, 1, 127, 128, 254, 255]
        let weightValues: [Int8] = [-128, -127, -1, 0, 1, 127]
        let k = 70
        var rows: [[UInt8]] = []
        for first in activationValues {
            for second in activationValues { rows.append((0..<k).map { $0 % 2 == 0 ? first : second }) }
        }
        rows.append((0..<k).map { activationValues[$0 % 6] })
        rows.append((0..<k).map { activationValues[($0 / 2) % 6] })
        rows.append((0..<k).map { activationValues[($0 * 5) % 6] })
        rows.append((0..<k).map { activationValues[($0 / 3) % 6] })
        var columns: [[Int8]] = []
        for first in weightValues {
            for second in weightValues { columns.append((0..<k).map { $0 % 2 == 0 ? first : second }) }
        }
        let x = Tensor(shape: [rows.count, k], uint8s: rows.flatMap { $0 })
        let weights = PackedInt8Weights(
            values: Tensor(shape: [columns.count, k], int8s: columns.flatMap { $0 }),
            scales: [Float](repeating: 1, count: columns.count))
        var expected: [Int32] = []
        for row in rows {
            for column in columns {
                expected.append(Int32(zip(row, column).reduce(Int64(0)) { $0 + Int64($1.0) * Int64($1.1) }))
            }
        }
        let quantization = ActivationQuantization(scale: 1, zeroPoint: 0)
        for kernel in Int8Kernel.allCases {
            let (result, ran) = cpu.int8Linear(
                quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators,
                activationMax: nil, kernel: kernel)
            #expect(firstMismatch(result.int32s, expected) == nil, "kernel \(kernel) ran \(ran)")
        }
        // (−128, −128) pairs allow activations up to 128 only: among the AVX2
        // kernels the full range must take the wide one. VNNI, where present,
        // is the automatic choice for any activations.
        #expect(weights.fastActivationLimit == 128)
        let automatic = cpu.int8Linear(
            quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators,
            activationMax: nil, kernel: .automatic)
        #expect(Set(automatic.kernels) == [hasVNNI ? .vnni : hasAVX2 ? .wide : .portable])
        let avx2 = cpu.int8Linear(
            quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators,
            activationMax: nil, kernel: .avx2)
        #expect(Set(avx2.kernels) == [hasAVX2 ? .wide : .portable])

        // The 7-bit half of the rows runs the maddubs kernel, still exactly.
        let lowRows = rows.indices.filter { rows[$0].allSatisfy { $0 <= 127 } }
        let low = Tensor(shape: [lowRows.count, k], uint8s: lowRows.flatMap { rows[$0] })
        let lowResult = cpu.int8Linear(
            quantized: low, quantization: quantization, weights: weights, bias: nil, output: .accumulators,
            activationMax: nil, kernel: .avx2)
        #expect(Set(lowResult.kernels) == [hasAVX2 ? .maddubs : .portable])
        #expect(firstMismatch(lowResult.result.int32s, lowRows.flatMap { expected[($0 * columns.count)..<(($0 + 1) * columns.count)] }) == nil)
    }

    /// Weights within ±63 (7 bits) take the maddubs kernel with full-range
    /// activations, including a·(63 + 63) = 32130 pair sums next to the int16 limit.
    @Test func sevenBitWeightsRunTheFastKernelOnFullRangeActivations() {
        var generator = SeededGenerator(seed: 12)
        let (m, n, k) = (33, 40, 131)
        let values = (0..<(n * k)).map { index -> Int8 in
            index % 7 == 0 ? 63 : index % 7 == 1 ? -63 : Int8(Int(generator.next() % 127) - 63)
        }
        let weights = PackedInt8Weights(values: Tensor(shape: [n, k], int8s: values), scales: [Float](repeating: 0.01, count: n))
        #expect(weights.fastActivationLimit == 255)
        let x = Tensor(shape: [m, k], uint8s: (0..<(m * k)).map { $0 % 3 == 0 ? 255 : UInt8(generator.next() % 256) })
        let quantization = ActivationQuantization(scale: 0.1, zeroPoint: 7)
        let expected = reference.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators)
        let (result, ran) = cpu.int8Linear(
            quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators,
            activationMax: nil, kernel: .avx2)
        #expect(Set(ran) == [hasAVX2 ? .maddubs : .portable])
        #expect(firstMismatch(result.int32s, expected.int32s) == nil)
    }

    /// f32 and requantised u8 outputs, per-tensor and per-row activation
    /// parameters, with and without bias: every kernel gives the reference's bits.
    @Test func everyKernelMatchesTheReferenceBitForBit() {
        var generator = SeededGenerator(seed: 13)
        for (m, n, k) in [(7, 33, 65), (64, 17, 31), (3, 384, 385), (65, 64, 7)] {
            let x = randomActivations([m, k], &generator)
            let weights = randomWeights(n: n, k: k, &generator)
            let bias = randomTensor([n], .contiguous, &generator)
            let perRow = ActivationQuantization(
                scales: (0..<m).map { _ in Float.random(in: 0.01..<0.1, using: &generator) },
                zeroPoints: (0..<m).map { _ in Int32(generator.next() % 256) })
            let perTensor = ActivationQuantization(scale: 0.037, zeroPoint: 131)
            let target = ActivationQuantization(scale: 0.05, zeroPoint: 120)
            for quantization in [perRow, perTensor] {
                let cases: [(Tensor?, QuantizedLinearOutput)] = [(bias, .float), (nil, .float), (bias, .quantized(target))]
                for (b, output) in cases {
                    let expected = reference.quantizedLinear(
                        quantized: x, quantization: quantization, weights: weights, bias: b, output: output)
                    for kernel in Int8Kernel.allCases {
                        let (result, _) = cpu.int8Linear(
                            quantized: x, quantization: quantization, weights: weights, bias: b, output: output,
                            activationMax: nil, kernel: kernel)
                        #expect(result.shape == [m, n] && result.dtype == expected.dtype)
                        if case .quantized = output {
                            #expect(firstMismatch(result.uint8s, expected.uint8s) == nil, "\(m)×\(n)×\(k) \(kernel) u8")
                        } else {
                            #expect(firstMismatch(bits(result), bits(expected)) == nil, "\(m)×\(n)×\(k) \(kernel) bias \(b != nil)")
                        }
                    }
                }
            }
        }
    }

    /// The f32 epilogue against the same formula in Double. It rounds three
    /// times: Float(Σ) (relative 2⁻²⁴; Σ exceeds 2²⁴ for large K), the scale
    /// product s_x·s_w (relative 2⁻²⁴) and the fused multiply-add (half an
    /// ulp of the result). So |y − exact| ≤ 2·2⁻²⁴·|s_x·s_w·Σ| + ulp(y)/2,
    /// checked with a little headroom (3·2⁻²⁴ and one ulp).
    @Test func floatEpilogueMatchesDoubleMath() {
        var generator = SeededGenerator(seed: 14)
        let (m, n, k) = (31, 47, 1537)
        let x = randomActivations([m, k], &generator)
        let weights = randomWeights(n: n, k: k, &generator)
        let bias = randomTensor([n], .contiguous, in: -5..<5, &generator)
        let quantization = ActivationQuantization(
            scales: (0..<m).map { _ in Float.random(in: 0.001..<0.1, using: &generator) },
            zeroPoints: (0..<m).map { _ in Int32(generator.next() % 256) })
        let sums = cpu.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: nil, output: .accumulators).int32s
        let y = cpu.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: .float).floats
        let b = bias.floats
        var worst = 0.0
        for row in 0..<m {
            for column in 0..<n {
                let corrected = Double(sums[row * n + column]) - Double(quantization.zeroPoints[row]) * Double(weights.columnSums[column])
                let product = Double(quantization.scales[row]) * Double(weights.scales[column]) * corrected
                let exact = product + Double(b[column])
                let value = y[row * n + column]
                let allowance = 3 * 0x1p-24 * abs(product) + Double(value.ulp)
                worst = Swift.max(worst, abs(Double(value) - exact) / allowance)
            }
        }
        #expect(worst <= 1, "worst error \(worst)× the allowance")
    }

    /// `quantizedLinear` on f32 input against a fake-quantised float Linear
    /// (dequantised input and weight, reference matmul in Double, + bias).
    /// The integer sums are exact, so the two differ only by rounding: here
    /// the dequantised operands (2⁻²⁴ relative each, so 2·2⁻²⁴ of Σ|x̂·ŵ|),
    /// there the epilogue's 2·2⁻²⁴ of |Σ x̂·ŵ| ≤ Σ|x̂·ŵ|; plus the final
    /// roundings of each side (an ulp). Allowed: 5·2⁻²⁴·Σ|x̂·ŵ| + 2 ulp.
    @Test(arguments: [0...255, 0...127] as [ClosedRange<Int32>])
    func quantizedLinearMatchesFakeQuantisedFloatLinear(range: ClosedRange<Int32>) {
        var generator = SeededGenerator(seed: 15)
        let (m, n, k) = (37, 45, 384)
        let x = randomTensor([m, k], .contiguous, in: -2..<3, &generator)
        let weight = randomTensor([n, k], .contiguous, in: -0.5..<0.5, &generator)
        let bias = randomTensor([n], .contiguous, &generator)
        let weights = PackedInt8Weights(quantizing: weight)
        let quantization = ActivationQuantization(ranges: cpu.activationRange(x, perRow: false), range: range)
        let y = cpu.quantizedLinear(x, quantization: quantization, weights: weights, bias: bias)
        #expect(firstMismatch(bits(y), bits(reference.quantizedLinear(x, quantization: quantization, weights: weights, bias: bias))) == nil)

        let q = cpu.quantize(x, quantization).uint8s
        let (scale, zero) = (quantization.scales[0], quantization.zeroPoints[0])
        let dequantized = Tensor(shape: [m, k], floats: q.map { scale * Float(Int32($0) - zero) })
        let w = weights.dequantized()
        let fake = reference.linear(dequantized, weight: w, bias: bias).floats
        let (xv, wv, values) = (dequantized.floats, w.floats, y.floats)
        var worst = 0.0
        for row in 0..<m {
            for column in 0..<n {
                var magnitude = 0.0
                for index in 0..<k { magnitude += abs(Double(xv[row * k + index]) * Double(wv[column * k + index])) }
                let value = values[row * n + column]
                let allowance = 5 * 0x1p-24 * magnitude + 2 * Double(value.ulp)
                worst = Swift.max(worst, abs(Double(value) - Double(fake[row * n + column])) / allowance)
            }
        }
        #expect(worst <= 1, "worst difference \(worst)× the allowance")
        // And the quantised layer approximates the float one it came from.
        expectClose(y, reference.linear(x, weight: weight, bias: bias), relative: 0.05, "int8 vs fp32")
    }

    @Test func resultsDoNotDependOnThreadCount() {
        var generator = SeededGenerator(seed: 16)
        let x = randomTensor([2, 130, 384], .contiguous, &generator)
        let small = randomTensor([31, 384], .contiguous, &generator)
        let weights = PackedInt8Weights(quantizing: randomTensor([200, 384], .contiguous, &generator))
        let bias = randomTensor([200], .contiguous, &generator)
        let quantization = ActivationQuantization(ranges: cpu.activationRange(x, perRow: false), range: 0...127)
        let perRow = ActivationQuantization(ranges: cpu.activationRange(small, perRow: true))
        #expect(CPUBackend.int8Tiles(m: 260, n: 200, k: 384).count > 2)
        #expect(CPUBackend.int8Tiles(m: 31, n: 200, k: 384).count > 1)
        let outputs = [1, 2, 3].map { threads -> [[UInt32]] in
            let backend = CPUBackend(threads: threads)
            return [
                bits(backend.quantizedLinear(x, quantization: quantization, weights: weights, bias: bias)),
                bits(backend.quantizedLinear(small, quantization: perRow, weights: weights, bias: nil)),
            ]
        }
        #expect(firstMismatch(outputs[0], outputs[1]) == nil && firstMismatch(outputs[0], outputs[2]) == nil)
        #expect(outputs[0][0].count == 260 * 200)
    }

    @Test func tilesCoverEveryOutputOnce() {
        for (m, n, k) in [(2048, 384, 384), (32, 1536, 384), (1, 1, 1), (65, 33, 7), (64, 1000, 1536), (200, 17, 0)] {
            let tiles = CPUBackend.int8Tiles(m: m, n: n, k: k)
            let panels = (n + 15) / 16
            var covered = [Int](repeating: 0, count: m * panels)
            for tile in 0..<tiles.count {
                let (rows, columns) = tiles.ranges(tile)
                if tiles.alongRows { #expect(rows.lowerBound % 16 == 0) }
                for row in rows { for panel in columns { covered[row * panels + panel] += 1 } }
            }
            #expect(covered.allSatisfy { $0 == 1 }, "\(m)×\(n)×\(k)")
            #expect(tiles.count <= 8)
        }
    }

    /// Shapes with leading axes, an empty K and an empty batch.
    @Test func leadingAxesAndEmptyShapes() {
        var generator = SeededGenerator(seed: 17)
        let weights = randomWeights(n: 5, k: 6, &generator)
        let x = randomActivations([2, 3, 6], &generator)
        let quantization = ActivationQuantization(scale: 0.5, zeroPoint: 2)
        let bias = randomTensor([5], .contiguous, &generator)
        let y = cpu.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: .float)
        #expect(y.shape == [2, 3, 5])
        #expect(firstMismatch(bits(y), bits(reference.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: .float))) == nil)

        let none = randomWeights(n: 4, k: 0, &generator)
        let empty = cpu.quantizedLinear(quantized: Tensor(zeros: [3, 0], dtype: .u8), quantization: quantization, weights: none, bias: Tensor(shape: [4], floats: [1, 2, 3, 4]), output: .float)
        #expect(empty.floats == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4])
        let noRows = cpu.quantizedLinear(quantized: Tensor(zeros: [0, 6], dtype: .u8), quantization: quantization, weights: weights, bias: nil, output: .float)
        #expect(noRows.shape == [0, 5])
    }

    /// A backend limited to the AVX2 kernels gives the same bits as the
    /// fastest one (VNNI where present) through the public entry points:
    /// f32 and requantised outputs, fused GELU codes, per-row parameters.
    @Test func avx2OnlyBackendGivesTheSameBitsAsTheFastest() {
        var generator = SeededGenerator(seed: 41)
        let fastest = CPUBackend(threads: 2)
        let avx2 = CPUBackend(threads: 2, int8Kernels: .avx2)
        let codes = ActivationQuantization(scale: 0.03, zeroPoint: 9)
        for (m, n, k) in [(130, 385, 67), (5, 1536, 384), (64, 33, 1)] {
            let x = randomActivations([m, k], &generator)
            let weights = randomWeights(n: n, k: k, &generator)
            let bias = Tensor.uniform(shape: [n], in: -0.5..<0.5, generator: &generator)
            let perRow = ActivationQuantization(
                scales: (0..<m).map { Float($0 % 3 + 1) * 0.02 }, zeroPoints: (0..<m).map { Int32($0 % 11) })
            for quantization in [ActivationQuantization(scale: 0.05, zeroPoint: 2), perRow] {
                let outputs: [(CPUBackend) -> Tensor] = [
                    { $0.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: .float) },
                    { $0.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, output: .quantized(codes)) },
                    { $0.quantizedLinear(quantized: x, quantization: quantization, weights: weights, bias: bias, geluCodes: codes) },
                ]
                for output in outputs {
                    let (a, b) = (output(fastest), output(avx2))
                    #expect(a.dtype == b.dtype && a.shape == b.shape)
                    #expect(a.dtype == .u8 ? a.uint8s == b.uint8s : bits(a) == bits(b), "\(m)×\(n)×\(k)")
                }
            }
        }
        #expect(avx2.int8KernelName(activationMax: 255, fastActivationLimit: 255) == (hasAVX2 ? "avx2-maddubs" : "portable"))
    }

    /// The block-by-block GELU codes of the int8 product equal quantising the
    /// GELU of the f32 product, bit for bit: row counts around the block size
    /// (blocks of `geluBlockRows` rows, a last partial one), odd N and K,
    /// activations up to 255 and 127 (the wide and the maddubs kernels),
    /// per-row input parameters, bias or none, 1 and 2 threads, leading axes.
    /// The reference backend's composition agrees within one code.
    @Test func geluCodesMatchQuantizingTheGELUOfTheProduct() {
        var generator = SeededGenerator(seed: 31)
        let geluCodes = ActivationQuantization(scale: 0.004, zeroPoint: 40)
        for (m, n, k) in [(1, 7, 5), (45, 1536, 33), (97, 385, 64), (130, 17, 385), (5, 16, 0)] {
            let blockRows = CPUBackend.geluBlockRows(n: n)
            #expect(blockRows % 4 == 0 && blockRows * n <= 65_536 || blockRows == 4)
            for maximum in [UInt8(255), 127] {
                let x = randomActivations([m, k], maximum: maximum, &generator)
                let weights = randomWeights(n: n, k: k, &generator)
                let bias = Tensor.uniform(shape: [n], in: -0.5..<0.5, generator: &generator)
                let perRow = ActivationQuantization(
                    scales: (0..<m).map { Float($0 % 5 + 1) * 0.01 }, zeroPoints: (0..<m).map { Int32($0 % 7) })
                for quantization in [ActivationQuantization(scale: 0.02, zeroPoint: 17), perRow] {
                    for biasTensor in [bias, nil] {
                        let product = cpu.quantizedLinear(
                            quantized: x, quantization: quantization, weights: weights, bias: biasTensor, output: .float)
                        let expected = cpu.quantize(cpu.gelu(product), geluCodes).uint8s
                        for threads in [1, 2] {
                            let codes = CPUBackend(threads: threads).quantizedLinear(
                                quantized: x, quantization: quantization, weights: weights, bias: biasTensor, geluCodes: geluCodes)
                            #expect(codes.dtype == .u8 && codes.shape == [m, n])
                            #expect(firstMismatch(codes.uint8s, expected) == nil, "\(m)×\(n)×\(k) max \(maximum) threads \(threads)")
                        }
                        let referenceCodes = reference.quantizedLinear(
                            quantized: x, quantization: quantization, weights: weights, bias: biasTensor, geluCodes: geluCodes)
                        #expect(zip(referenceCodes.uint8s, expected).allSatisfy { abs(Int($0) - Int($1)) <= 1 }, "\(m)×\(n)×\(k)")
                    }
                }
            }
        }
        let batched = randomActivations([2, 3, 9], &generator)
        let weights = randomWeights(n: 5, k: 9, &generator)
        let codes = cpu.quantizedLinear(
            quantized: batched, quantization: ActivationQuantization(scale: 0.1, zeroPoint: 2), weights: weights, bias: nil,
            geluCodes: geluCodes)
        #expect(codes.shape == [2, 3, 5])
    }
}
