import Testing
@testable import SqueezeCompress

@Suite struct AffineQuantizerTests {
    @Test func roundsHalfToEven() throws {
        let q = try AffineQuantizer(scale: 1, zeroPoint: 0, codeRange: -127...127)
        let cases: [(Float, Int32)] = [
            (0.5, 0), (1.5, 2), (2.5, 2), (3.5, 4), (-0.5, 0), (-1.5, -2), (-2.5, -2), (-3.5, -4),
            (0.49999997, 0), (0.50000006, 1), (126.5, 126), (-126.5, -126),
        ]
        for (x, expected) in cases { #expect(q.quantize(x) == expected, "round(\(x))") }
        var codes = [Int8](repeating: 0, count: cases.count)
        let inputs = cases.map(\.0)
        inputs.withUnsafeBufferPointer { source in codes.withUnsafeMutableBufferPointer { q.quantize(source, into: $0) } }
        #expect(codes.map(Int32.init) == cases.map(\.1))
    }

    @Test func roundingHappensBeforeTheZeroPointIsAdded() throws {
        let q = try AffineQuantizer(scale: 1, zeroPoint: 3, codeRange: 0...255)
        #expect(q.quantize(0.5) == 3)
        #expect(q.quantize(1.5) == 5)
        #expect(q.quantize(-2.5) == 1)
        #expect(q.quantize(-3.5) == 0)
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .int8Asymmetric, .uint8Asymmetric, .int4Symmetric, .uint4Asymmetric])
    func roundTripErrorIsAtMostHalfAStepInsideTheRange(scheme: QuantizationScheme) throws {
        let q = try scheme.quantizer(min: -1.7, max: 2.3)
        let range = q.representableRange
        let values = uniformValues(4000, in: range.lowerBound..<range.upperBound, seed: 3) + [range.lowerBound, range.upperBound, 0]
        // Half a step, plus the float rounding of x / s and s · q.
        let bound = q.scale / 2 * (1 + 1e-5)
        for x in values {
            let code = q.quantize(x)
            #expect(q.codeRange.contains(code))
            #expect(abs(q.dequantize(code) - x) <= bound, "x = \(x): \(q.dequantize(code))")
        }
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .uint8Asymmetric, .int4Symmetric])
    func valuesOutsideTheRangeClampToItsEnds(scheme: QuantizationScheme) throws {
        let q = try scheme.quantizer(min: -1, max: 2)
        let range = q.representableRange
        for x: Float in [-1e30, -50, range.lowerBound - q.scale, -.infinity] {
            #expect(q.quantize(x) == q.codeRange.lowerBound)
            #expect(q.fakeQuantize(x) == range.lowerBound)
        }
        for x: Float in [1e30, 50, range.upperBound + q.scale, .infinity] {
            #expect(q.quantize(x) == q.codeRange.upperBound)
            #expect(q.fakeQuantize(x) == range.upperBound)
        }
        #expect(q.quantize(.nan) == q.zeroPoint)
        #expect(q.fakeQuantize(.nan) == 0)
    }

    @Test func bufferPathsMatchTheScalarPath() throws {
        let values = uniformValues(1001, in: -3..<3, seed: 5) + [.nan, .infinity, -.infinity, 0.5, -0.5]
        let signed = try QuantizationScheme.int8Symmetric.quantizer(min: -2, max: 2)
        let unsigned = try QuantizationScheme.uint8Asymmetric.quantizer(min: -2, max: 1)
        var s8 = [Int8](repeating: 0, count: values.count)
        var u8 = [UInt8](repeating: 0, count: values.count)
        var back8 = [Float](repeating: 0, count: values.count)
        var backU8 = back8
        var fake = back8
        values.withUnsafeBufferPointer { x in
            s8.withUnsafeMutableBufferPointer { signed.quantize(x, into: $0) }
            u8.withUnsafeMutableBufferPointer { unsigned.quantize(x, into: $0) }
            fake.withUnsafeMutableBufferPointer { unsigned.fakeQuantize(x, into: $0) }
        }
        s8.withUnsafeBufferPointer { codes in back8.withUnsafeMutableBufferPointer { signed.dequantize(codes, into: $0) } }
        u8.withUnsafeBufferPointer { codes in backU8.withUnsafeMutableBufferPointer { unsigned.dequantize(codes, into: $0) } }
        for (i, x) in values.enumerated() {
            #expect(Int32(s8[i]) == signed.quantize(x))
            #expect(Int32(u8[i]) == unsigned.quantize(x))
            #expect(back8[i] == signed.dequantize(signed.quantize(x)))
            #expect(backU8[i] == unsigned.fakeQuantize(x))
            #expect(fake[i] == backU8[i])
        }
    }

    @Test func fakeQuantizeInPlace() throws {
        let q = try QuantizationScheme.int8Symmetric.quantizer(min: -1, max: 1)
        var values: [Float] = [0.3, -0.7, 5]
        let expected = values.map(q.fakeQuantize)
        values.withUnsafeMutableBufferPointer { buffer in q.fakeQuantize(UnsafeBufferPointer(buffer), into: buffer) }
        #expect(values == expected)
        #expect(values[2] == 1)
    }
}
