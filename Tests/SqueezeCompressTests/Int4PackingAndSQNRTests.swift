import Foundation
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct Int4PackingTests {
    @Test func nibbleOrderIsLowNibbleFirst() throws {
        #expect(Int4Packing.pack([UInt8(1), 2]) == [0x21])
        #expect(Int4Packing.pack([UInt8(15), 0, 7]) == [0x0F, 0x07])
        // Signed codes as 4-bit two's complement: −1 = 0xF, −8 = 0x8.
        #expect(Int4Packing.pack([Int8(-1), 7, -8]) == [0x7F, 0x08])
        #expect(try Int4Packing.unpackSigned([0x7F, 0x08], count: 3) == [-1, 7, -8])
        #expect(try Int4Packing.unpackUnsigned([0x21], count: 2) == [1, 2])
    }

    @Test(arguments: 0...9)
    func roundTripsEveryCodeAtEveryLength(length: Int) throws {
        let signed = (0..<length).map { Int8(($0 * 5) % 16 - 8) }
        let unsigned = (0..<length).map { UInt8(($0 * 7 + 3) % 16) }
        let packedSigned = Int4Packing.pack(signed)
        let packedUnsigned = Int4Packing.pack(unsigned)
        #expect(packedSigned.count == (length + 1) / 2)
        #expect(try Int4Packing.unpackSigned(packedSigned, count: length) == signed)
        #expect(try Int4Packing.unpackUnsigned(packedUnsigned, count: length) == unsigned)
        if length % 2 == 1 { #expect((packedUnsigned.last ?? 0) >> 4 == 0, "the unused high nibble is 0") }
    }

    @Test func everySignedAndUnsignedValueSurvives() throws {
        let signed = (-8...7).map(Int8.init)
        let unsigned = (0...15).map(UInt8.init)
        #expect(try Int4Packing.unpackSigned(Int4Packing.pack(signed), count: 16) == signed)
        #expect(try Int4Packing.unpackUnsigned(Int4Packing.pack(unsigned), count: 16) == unsigned)
    }

    @Test func sizeMismatchIsAnError() {
        #expect(throws: QuantizationError.packedSizeMismatch(byteCount: 2, count: 5)) { try Int4Packing.unpackSigned([1, 2], count: 5) }
        #expect(throws: QuantizationError.packedSizeMismatch(byteCount: 3, count: 2)) { try Int4Packing.unpackUnsigned([1, 2, 3], count: 2) }
        #expect(throws: QuantizationError.self) { try Int4Packing.unpackUnsigned([], count: -1) }
    }
}

@Suite struct SQNRTests {
    @Test func knownRatio() {
        // ‖y‖² = 4, ‖y − ŷ‖² = 4 · 0.01: 10 · log10(100) = 20 dB.
        let y: [Float] = [1, -1, 1, -1]
        let yHat: [Float] = [0.9, -0.9, 1.1, -1.1]
        let sqnr = y.withUnsafeBufferPointer { a in yHat.withUnsafeBufferPointer { signalToQuantizationNoiseRatio(reference: a, approximation: $0) } }
        #expect(abs(sqnr - 20) < 1e-5)
        let tensors = signalToQuantizationNoiseRatio(reference: Tensor(shape: [2, 2], floats: y), approximation: Tensor(shape: [2, 2], floats: yHat))
        #expect(tensors == sqnr)
    }

    @Test func edgeCases() {
        func sqnr(_ y: [Float], _ yHat: [Float]) -> Double {
            signalToQuantizationNoiseRatio(reference: Tensor(shape: [y.count], floats: y), approximation: Tensor(shape: [y.count], floats: yHat))
        }
        #expect(sqnr([1, 2], [1, 2]) == .infinity)
        #expect(sqnr([0, 0], [0, 0]) == .infinity)
        #expect(sqnr([], []) == .infinity)
        #expect(sqnr([0, 0], [0.5, 0]) == -.infinity)
        #expect(sqnr([1, .nan], [1, 0]).isNaN)
        #expect(sqnr([1, 2], [1, .infinity]).isNaN)
    }

    @Test func moreBitsMeanHigherSQNR() throws {
        let values = normalValues(5000, seed: 21)
        let reference = Tensor(shape: [values.count], floats: values)
        func sqnr(_ scheme: QuantizationScheme) throws -> Double {
            let quantized = try AffineQuantizedTensor(quantizing: reference, scheme: scheme, granularity: .perTensor)
            return signalToQuantizationNoiseRatio(reference: reference, approximation: quantized.dequantized())
        }
        let eight = try sqnr(.int8Symmetric)
        let four = try sqnr(.int4Symmetric)
        // About 6 dB per bit.
        #expect(eight - four > 20 && eight - four < 28, "int8 \(eight) dB, int4 \(four) dB")
    }
}
