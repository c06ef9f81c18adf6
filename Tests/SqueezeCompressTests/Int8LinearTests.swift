import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// An int8 Linear against the float Linear of its fake-quantized operands.
@Suite struct Int8LinearTests {
    static func operands(seed: UInt64) -> (weight: Tensor, bias: Tensor, input: Tensor) {
        var generator = SeededGenerator(seed: seed)
        let (n, k) = (24, 40)
        let weight = Tensor(shape: [n, k], floats: (0..<(n * k)).map { _ in generator.normal(standardDeviation: 0.3) })
        let bias = Tensor(shape: [n], floats: (0..<n).map { _ in generator.normal() })
        // Skewed inputs (mostly positive, as after GELU), so the zero point is not in the middle.
        let input = Tensor(shape: [2, 5, k], floats: (0..<(10 * k)).map { _ in generator.normal(mean: 0.8, standardDeviation: 1.2) })
        return (weight, bias, input)
    }

    /// The integer sums are exact; the f32 epilogue `fma(Float(S), s_x·s_w, b)`
    /// (S exact in int32 and in Float here, |S| < 2²⁴) rounds `s_x·s_w` once
    /// and the fma once, so against the exact fake-quant value
    /// `s_x·s_w·S + b` (in Double) it is off by at most
    /// 2⁻²⁴·|s_x·s_w·S| + ulp(y)/2; allowed: 3·2⁻²⁴·|s_x·s_w·S| + ulp(y), room
    /// for a kernel that applies the two scales one after the other. The f32
    /// float Linear of the fake-quantized operands adds its own accumulation
    /// error, at most K·2⁻²⁴·Σ|x̂·ŵ| (K = 40 terms).
    @Test(arguments: [(127, 0...127), (63, 0...255), (127, 0...255)] as [(Int32, ClosedRange<Int32>)])
    func matchesTheFakeQuantizedFloatLinear(weightLimit: Int32, codes: ClosedRange<Int32>) throws {
        let backend = CPUBackend(threads: 2)
        let (weight, bias, input) = Self.operands(seed: UInt64(weightLimit) + UInt64(codes.upperBound))
        let packed = try W8A8Quantizer.quantizeWeight(weight, module: "m", limit: weightLimit, perTensor: false)
        #expect(packed.values.int8s.allSatisfy { abs(Int32($0)) <= weightLimit })
        let quantization = ActivationQuantization(ranges: backend.activationRange(input, perRow: false), range: codes)
        let linear = Int8Linear(weights: packed, activations: .fixed(quantization))
        let (scale, zero) = (quantization.scales[0], quantization.zeroPoints[0])
        let (n, k) = (packed.outputCount, packed.inputCount)

        let activationCodes = backend.quantize(input, quantization).uint8s
        let sums = backend.quantizedLinear(
            quantized: Tensor(shape: input.shape, uint8s: activationCodes), quantization: quantization, weights: packed, bias: nil,
            output: .accumulators
        ).int32s
        let w = packed.values.int8s
        let output = linear.apply(input, bias: bias, backend: backend).floats
        let fakeInput = Tensor(shape: input.shape, floats: activationCodes.map { scale * Float(Int32($0) - zero) })
        let fake = backend.linear(fakeInput, weight: packed.dequantized(), bias: bias).floats
        let biases = bias.floats
        for row in 0..<10 {
            for column in 0..<n {
                var exact: Int64 = 0
                var centred: Int64 = 0
                var magnitude = 0.0
                for index in 0..<k {
                    let a = Int64(activationCodes[row * k + index])
                    let b = Int64(w[column * k + index])
                    exact += a * b
                    centred += (a - Int64(zero)) * b
                    magnitude += abs(Double(a - Int64(zero)) * Double(scale) * Double(b) * Double(packed.scales[column]))
                }
                #expect(Int64(sums[row * n + column]) == exact, "integer sums are exact")
                let product = Double(scale) * Double(packed.scales[column]) * Double(centred)
                let y = output[row * n + column]
                #expect(abs(Double(y) - (product + Double(biases[column]))) <= 3 * 0x1p-24 * abs(product) + Double(y.ulp))
                let allowance = Double(k + 3) * 0x1p-24 * magnitude + 2 * Double(y.ulp)
                #expect(abs(Double(y) - Double(fake[row * n + column])) <= allowance)
            }
        }
    }

    /// Dynamic parameters are the batch's own range, per tensor or per row:
    /// the same bits as fixed parameters computed from that range.
    @Test(arguments: [false, true])
    func dynamicUsesEachBatchsRange(perRow: Bool) throws {
        let backend = CPUBackend(threads: 2)
        let (weight, bias, input) = Self.operands(seed: 5)
        let packed = try W8A8Quantizer.quantizeWeight(weight, module: "m", limit: 63, perTensor: false)
        let dynamic = Int8Linear(weights: packed, activations: .dynamic(perRow: perRow, range: 0...255))
        let fixed = Int8Linear(
            weights: packed,
            activations: .fixed(ActivationQuantization(ranges: backend.activationRange(input, perRow: perRow), range: 0...255)))
        #expect(dynamic.apply(input, bias: bias, backend: backend).floats == fixed.apply(input, bias: bias, backend: backend).floats)
        let reference = ReferenceBackend()
        #expect(dynamic.apply(input, bias: bias, backend: reference).floats == fixed.apply(input, bias: bias, backend: reference).floats)
        #expect(dynamic.activationQuantization(for: input, backend: backend).isPerRow == perRow)
    }

    @Test func weightQuantizationIsSymmetricPerRowOrPerTensor() throws {
        let weight = Tensor(shape: [3, 4], floats: [1, -2, 0.5, 0, 0, 0, 0, 0, 0.25, 0.1, -0.3, 0.2])
        let perRow = try W8A8Quantizer.quantizeWeight(weight, module: "m", limit: 127, perTensor: false)
        #expect(perRow.scales == [Float(2) / 127, 1, Float(0.3) / 127])
        #expect(perRow.values.int8s[0..<4] == [64, -127, 32, 0])
        #expect(perRow.values.int8s[4..<8] == [0, 0, 0, 0], "an all-zero row gets scale 1")
        let perTensor = try W8A8Quantizer.quantizeWeight(weight, module: "m", limit: 63, perTensor: true)
        let shared = Float(2) / 63
        #expect(Set(perTensor.scales) == [shared])
        #expect(perTensor.values.int8s == weight.floats.map { Int8(($0 / shared).rounded(.toNearestOrEven)) })
        let broken = Tensor(shape: [2, 2], floats: [1, .nan, 0, 1])
        #expect(throws: BertQuantizationError.self) { try W8A8Quantizer.quantizeWeight(broken, module: "m", limit: 127, perTensor: false) }
    }
}
