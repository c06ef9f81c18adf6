import CKernels
import Testing
@testable import SqueezeTensor

@Suite struct QuantizationTests {
    let cpu = CPUBackend(threads: 2)
    let reference = ReferenceBackend()

    /// Scale 1 and zero point 10 on 0...255: round half to even, clamping,
    /// NaN to the lower end. 16 values, so the vector kernel sees them all.
    @Test func quantizeRoundsHalfToEvenAndClamps() {
        let values: [Float] = [0.5, 1.5, 2.5, -0.5, -1.5, 3.49, 245, 246, 1e30, -1e30, .nan, .infinity, -.infinity, -10, -11, 7.5]
        let expected: [UInt8] = [10, 12, 12, 10, 8, 13, 255, 255, 255, 0, 0, 255, 0, 0, 0, 18]
        let quantization = ActivationQuantization(scale: 1, zeroPoint: 10)
        for order in [values, values.reversed()] {
            let x = Tensor(shape: [16], floats: order)
            let wanted = order == values ? expected : expected.reversed()
            #expect(cpu.quantize(x, quantization).uint8s == wanted)
            #expect(reference.quantize(x, quantization).uint8s == wanted)
            var portable = [UInt8](repeating: 0, count: 16)
            sq_quantize_u8_portable(order, &portable, 16, 1, 10, 0, 255)
            #expect(portable == wanted)
        }
    }

    @Test func cpuQuantizeMatchesReferenceAndPortableKernel() {
        var generator = SeededGenerator(seed: 21)
        let x = randomTensor([5, 7, 67], .contiguous, in: -4..<4, &generator)
        let perRow = ActivationQuantization(ranges: reference.activationRange(x, perRow: true), range: 0...127)
        let perTensor = ActivationQuantization(scale: 0.03, zeroPoint: 128)
        for quantization in [perRow, perTensor] {
            let expected = reference.quantize(x, quantization)
            #expect(cpu.quantize(x, quantization).uint8s == expected.uint8s)
            #expect(cpu.quantize(x, quantization).shape == x.shape)
        }
        // Ties after the multiply by the reciprocal: (i + 0.5) with scale 1, across vector and tail.
        let ties = (0..<203).map { Float($0 % 300) - 99.5 }
        var vector = [UInt8](repeating: 0, count: ties.count)
        var portable = vector
        sq_quantize_u8(ties, &vector, ties.count, 1, 100, 0, 255)
        sq_quantize_u8_portable(ties, &portable, ties.count, 1, 100, 0, 255)
        #expect(vector == portable)
        #expect(vector[0] == 0 && vector[1] == 2 && vector[2] == 2 && vector[3] == 4)
    }

    /// Per-tensor parameters with one multiplier per input column (SmoothQuant's
    /// `1/s` in the quantize step): column j uses `(1/scale) · m_j`; the CPU
    /// kernel (AVX2 and portable, vector and tail columns, strided input,
    /// extreme and non-finite values) gives the reference's codes, and
    /// quantizedLinear of the f32 input equals the product of those codes.
    @Test func channelMultipliersScaleEachColumn() {
        var generator = SeededGenerator(seed: 31)
        let columns = 19
        var values = randomTensor([3, 4, columns], .contiguous, in: -6..<6, &generator).floats
        for (index, extreme) in [Float(1e30), -1e30, .nan, .infinity, -.infinity, 0, -0.0, 3e-39].enumerated() {
            values[index * 23] = extreme
        }
        let x = Tensor(shape: [3, 4, columns], floats: values)
        let multipliers = (0..<columns).map { Float(0.25) * Float(1 + $0 % 5) + (($0 % 3 == 0) ? 0.01 : 0) }
        let quantization = ActivationQuantization(scale: 0.05, zeroPoint: 100, range: 0...255, channelMultipliers: multipliers)
        let expected = reference.quantize(x, quantization).uint8s
        #expect(cpu.quantize(x, quantization).uint8s == expected)
        let inverses = multipliers.map { (1 / Float(0.05)) * $0 }
        var vector = [UInt8](repeating: 0, count: values.count)
        var portable = vector
        sq_quantize_u8_columns(values, &vector, 12, columns, inverses, 100, 0, 255)
        sq_quantize_u8_columns_portable(values, &portable, 12, columns, inverses, 100, 0, 255)
        #expect(vector == expected && portable == expected)
        // By hand: column j of a value v is clamp(round(v · 20 · m_j) + 100).
        for (index, value) in values.enumerated() where value.isFinite && abs(value) < 100 {
            let v = (value * inverses[index % columns]).rounded(.toNearestOrEven)
            #expect(expected[index] == UInt8(Swift.min(Swift.max(v + 100, 0), 255)), "element \(index)")
        }
        // Unit multipliers give the plain per-tensor codes.
        let unit = ActivationQuantization(scale: 0.05, zeroPoint: 100, channelMultipliers: [Float](repeating: 1, count: columns))
        #expect(cpu.quantize(x, unit).uint8s == cpu.quantize(x, ActivationQuantization(scale: 0.05, zeroPoint: 100)).uint8s)
        // A strided input quantizes as its contiguous copy.
        let transposed = randomTensor([4, columns, columns], .transposed, in: -3..<3, &generator)
        #expect(cpu.quantize(transposed, quantization).uint8s == reference.quantize(transposed.contiguous(), quantization).uint8s)
        // The int8 product of the f32 input quantizes with the multipliers.
        let weights = PackedInt8Weights(quantizing: randomTensor([6, columns], .contiguous, in: -1..<1, &generator), bits: 7)
        let finite = randomTensor([5, columns], .contiguous, in: -4..<4, &generator)
        for backend in [cpu as any Backend, reference] {
            let direct = backend.quantizedLinear(finite, quantization: quantization, weights: weights, bias: nil)
            let viaCodes = backend.quantizedLinear(
                quantized: backend.quantize(finite, quantization), quantization: quantization, weights: weights, bias: nil, output: .float)
            #expect(direct.floats == viaCodes.floats)
        }
        #expect(cpu.quantizedLinear(finite, quantization: quantization, weights: weights, bias: nil).floats
            == reference.quantizedLinear(finite, quantization: quantization, weights: weights, bias: nil).floats)
        #expect(quantization != quantization.withoutChannelMultipliers)
    }

    /// The fused GELU quantisation gives the codes of quantising the GELU
    /// values: on the CPU backend bit for bit (odd lengths cross the 1024-value
    /// blocks and the 8-wide vectors; extreme and non-finite inputs included),
    /// per tensor and per row; the reference backend's (its own GELU) also.
    @Test func geluQuantizationMatchesQuantizingTheGELU() {
        var generator = SeededGenerator(seed: 23)
        var values = randomTensor([3, 1031], .contiguous, in: -6..<6, &generator).floats
        for (index, extreme) in [Float(1e30), -1e30, .nan, .infinity, -.infinity, 0, -0.0, 3e-39].enumerated() {
            values[index * 97] = extreme
        }
        let x = Tensor(shape: [3, 1031], floats: values)
        let perTensor = ActivationQuantization(scale: 0.02, zeroPoint: 9)
        let perRow = ActivationQuantization(scales: [0.01, 0.05, 0.3], zeroPoints: [0, 128, 255])
        for quantization in [perTensor, perRow, ActivationQuantization(scale: 0.04, zeroPoint: 3, range: 0...127)] {
            #expect(cpu.quantize(geluOf: x, quantization).uint8s == cpu.quantize(cpu.gelu(x), quantization).uint8s)
            #expect(cpu.quantize(geluOf: x, quantization).shape == x.shape)
            #expect(reference.quantize(geluOf: x, quantization).uint8s == reference.quantize(reference.gelu(x), quantization).uint8s)
        }
        // Against the reference: the GELUs agree to rounding, so codes differ by at most one.
        let smooth = randomTensor([2, 5, 77], .contiguous, in: -5..<5, &generator)
        let cpuCodes = cpu.quantize(geluOf: smooth, perTensor).uint8s
        let referenceCodes = reference.quantize(geluOf: smooth, perTensor).uint8s
        #expect(zip(cpuCodes, referenceCodes).allSatisfy { abs(Int($0) - Int($1)) <= 1 })
        #expect(cpu.quantize(geluOf: Tensor(zeros: [0, 4]), perTensor).shape == [0, 4])
        let transposed = randomTensor([4, 9, 13], .transposed, in: -3..<3, &generator)
        #expect(cpu.quantize(geluOf: transposed, perTensor).uint8s == cpu.quantize(cpu.gelu(transposed), perTensor).uint8s)
    }

    @Test func activationRangeIncludesZeroAndSkipsNonFiniteValues() {
        let x = Tensor(shape: [3, 4], floats: [1, 2, .nan, 3, -1, -5, -.infinity, -2, 0.5, .infinity, -0.25, 4])
        for backend in [cpu as any Backend, reference] {
            let rows = backend.activationRange(x, perRow: true)
            #expect(rows.minimums == [0, -5, -0.25])
            #expect(rows.maximums == [3, 0, 4])
            let whole = backend.activationRange(x, perRow: false)
            #expect(whole.minimums == [-5] && whole.maximums == [4])
        }
        // Several chunks per tensor on the CPU backend.
        var generator = SeededGenerator(seed: 22)
        var values = Tensor.uniform(shape: [70_001], in: -1..<2, generator: &generator).floats
        values[70_000] = -3
        values[40_000] = 5
        let large = Tensor(shape: [70_001], floats: values)
        #expect(cpu.activationRange(large, perRow: false) == ActivationRange(minimums: [-3], maximums: [5]))
    }

    @Test func dynamicParametersMakeZeroExact() {
        let parameters = ActivationQuantization(ranges: ActivationRange(minimums: [-1.3, 0, -2, 0], maximums: [2.7, 5, 0, 0]))
        #expect(parameters.scales == [Float(4) / 255, Float(5) / 255, Float(2) / 255, 1])
        #expect(parameters.zeroPoints == [83, 0, 255, 0])
        let positive = ActivationQuantization(ranges: ActivationRange(minimums: [1], maximums: [3]))
        #expect(positive.scales == [Float(3) / 255] && positive.zeroPoints == [0])
        let narrow = ActivationQuantization(ranges: ActivationRange(minimums: [-2], maximums: [0]), range: 0...127)
        #expect(narrow.zeroPoints == [127] && narrow.scales == [Float(2) / 127])

        var generator = SeededGenerator(seed: 23)
        let x = randomTensor([4, 300], .contiguous, in: -1.3..<2.7, &generator)
        let quantization = ActivationQuantization(ranges: cpu.activationRange(x, perRow: false))
        let (scale, zero) = (quantization.scales[0], quantization.zeroPoints[0])
        #expect(cpu.quantize(Tensor(shape: [1], floats: [0]), quantization).uint8s == [UInt8(zero)])
        let q = cpu.quantize(x, quantization).uint8s
        for (value, integer) in zip(x.floats, q) {
            #expect(abs(scale * Float(Int32(integer) - zero) - value) <= scale * 0.5001)
        }
    }

    @Test func weightsQuantiseSymmetricallyPerRow() {
        var generator = SeededGenerator(seed: 24)
        var values = randomTensor([6, 37], .contiguous, in: -0.3..<0.2, &generator).floats
        for index in 74..<111 { values[index] = 0 }
        let weight = Tensor(shape: [6, 37], floats: values)
        for (bits, limit) in [(8, 127), (7, 63), (4, 7)] {
            let packed = PackedInt8Weights(quantizing: weight, bits: bits)
            let q = packed.values.int8s
            #expect(packed.scales[2] == 1 && q[74..<111].allSatisfy { $0 == 0 })
            for row in [0, 1, 3, 4, 5] {
                let rowValues = q[(row * 37)..<((row + 1) * 37)]
                #expect(rowValues.map { abs(Int($0)) }.max() == limit)
                #expect(packed.columnSums[row] == rowValues.reduce(Int32(0)) { $0 + Int32($1) })
            }
            let error = zip(packed.dequantized().floats, values).enumerated().map { abs($1.0 - $1.1) / packed.scales[$0 / 37] }
            #expect(error.allSatisfy { $0 <= 0.5001 })
            #expect(bits < 8 ? packed.fastActivationLimit == 255 : packed.fastActivationLimit >= 129)
        }
    }

    /// The largest activation with which no pair a·w₀ + a·w₁ leaves int16.
    @Test func fastActivationLimitFollowsThePairSums() {
        func limit(_ pair: [Int8], k: Int = 2) -> Int32 {
            let values = (0..<k).map { pair[$0 % 2] }
            return PackedInt8Weights(values: Tensor(shape: [1, k], int8s: values), scales: [1]).fastActivationLimit
        }
        #expect(limit([127, 127]) == 129)  // 32767 / 254
        #expect(limit([-128, -128]) == 128)  // 32768 / 256
        #expect(limit([127, -128]) == 255)  // opposite signs never add up
        #expect(limit([64, 64]) == 255)  // 32767 / 128 = 255.99
        #expect(limit([65, 64]) == 254)
        #expect(limit([-64, -64]) == 255)
        #expect(limit([-65, -64]) == 254)
        #expect(limit([127, 5], k: 1) == 255)  // an odd K pairs the last weight with 0
        #expect(limit([0, 0]) == 255)
    }
}
