import Foundation
import Testing
@testable import SqueezeCompress

@Suite struct QuantizationSchemeTests {
    @Test func storageAndCodeRanges() {
        #expect(QuantizationScheme(bits: .eight, signed: true, mapping: .asymmetric).storageRange == -128...127)
        #expect(QuantizationScheme(bits: .eight, signed: false, mapping: .asymmetric).storageRange == 0...255)
        #expect(QuantizationScheme(bits: .four, signed: true, mapping: .asymmetric).storageRange == -8...7)
        #expect(QuantizationScheme(bits: .four, signed: false, mapping: .asymmetric).storageRange == 0...15)
        // Symmetric signed schemes use the restricted range; the others the full one.
        #expect(QuantizationScheme.int8Symmetric.codeRange == -127...127)
        #expect(QuantizationScheme.int4Symmetric.codeRange == -7...7)
        #expect(QuantizationScheme.int8Asymmetric.codeRange == -128...127)
        #expect(QuantizationScheme(bits: .eight, signed: false, mapping: .symmetric).codeRange == 0...255)
    }

    @Test func symmetricScaleIsLargestMagnitudeOverQMax() throws {
        let q = try QuantizationScheme.int8Symmetric.quantizer(min: -2, max: 1)
        #expect(q.scale == 2 / Float(127))
        #expect(q.zeroPoint == 0)
        #expect(q.quantize(-2) == -127)
        #expect(q.quantize(2) == 127)
        // Beyond −max|x|, the clamp stops at −127, not −128.
        #expect(q.quantize(-3) == -127)
        let q4 = try QuantizationScheme.int4Symmetric.quantizer(min: -0.5, max: 3.5)
        #expect(q4.scale == 0.5)
        #expect(q4.quantize(3.5) == 7)
    }

    @Test func asymmetricScaleAndZeroPoint() throws {
        let q = try QuantizationScheme.uint8Asymmetric.quantizer(min: -1, max: 3)
        #expect(q.scale == Float(4.0 / 255))
        // z = 0 − round(−1 / s) = round(63.75) = 64.
        #expect(q.zeroPoint == 64)
        #expect(q.quantize(0) == 64)
        #expect(q.dequantize(64) == 0)
    }

    @Test(arguments: [
        (QuantizationScheme.uint8Asymmetric, Float(2), Float(5)),
        (QuantizationScheme.int8Asymmetric, Float(-5), Float(-2)),
        (QuantizationScheme.uint4Asymmetric, Float(0.25), Float(0.3)),
        (QuantizationScheme.int8Asymmetric, Float(1e-3), Float(7)),
    ])
    func zeroIsExactWhenTheRangeDoesNotContainIt(scheme: QuantizationScheme, min: Float, max: Float) throws {
        let q = try scheme.quantizer(min: min, max: max)
        #expect(q.codeRange.contains(q.zeroPoint))
        #expect(q.quantize(0) == q.zeroPoint)
        #expect(q.fakeQuantize(0) == 0)
        #expect(q.fakeQuantize(-0.0) == 0)
        // The range was widened to reach 0 and still covers the data.
        #expect(q.representableRange.lowerBound <= Swift.min(min, 0) * (1 - 1e-6))
        #expect(q.representableRange.upperBound >= Swift.max(max, 0) * (1 - 1e-6))
    }

    @Test func asymmetricNegativeRangeUsesTheTopCodeForZero() throws {
        let q = try QuantizationScheme.int8Asymmetric.quantizer(min: -5, max: -2)
        #expect(q.scale == Float(5.0 / 255))
        #expect(q.zeroPoint == 127)
        #expect(q.quantize(-5) == -128)
    }

    @Test(arguments: [QuantizationScheme.int8Symmetric, .int8Asymmetric, .uint8Asymmetric, .int4Symmetric, .uint4Asymmetric])
    func degenerateRangesGiveUsableScales(scheme: QuantizationScheme) throws {
        // All zeros: scale 1, zero exact.
        let zeros = try scheme.quantizer(min: 0, max: 0)
        #expect(zeros.scale == 1)
        #expect(zeros.fakeQuantize(0) == 0)
        // A constant tensor: the range reaches 0 (asymmetric) or ±c (symmetric); c is within half a step.
        let constant = try scheme.quantizer(min: 3.25, max: 3.25)
        #expect(constant.scale.isFinite && constant.scale > 0)
        #expect(abs(constant.fakeQuantize(3.25) - 3.25) <= constant.scale / 2)
        // A subnormal range: the scale is raised to the smallest normal, so 1/s is finite.
        let subnormal = Float.leastNonzeroMagnitude * 7
        let tiny = try scheme.quantizer(min: 0, max: subnormal)
        #expect(tiny.scale >= AffineQuantizer.minimumScale)
        #expect((1 / tiny.scale).isFinite)
        #expect(tiny.fakeQuantize(subnormal).isFinite)
        // The widest finite range: (max − min) would overflow in Float, not in Double.
        let huge = try scheme.quantizer(min: -.greatestFiniteMagnitude, max: .greatestFiniteMagnitude)
        #expect(huge.scale.isFinite && huge.scale > 0)
        #expect(huge.fakeQuantize(.greatestFiniteMagnitude).isFinite)
    }

    @Test func nonFiniteOrInvertedBoundsAreErrors() {
        let scheme = QuantizationScheme.int8Symmetric
        #expect(throws: QuantizationError.invalidRange(min: 0, max: .infinity)) { try scheme.quantizer(min: 0, max: .infinity) }
        #expect(throws: QuantizationError.invalidRange(min: 2, max: 1)) { try scheme.quantizer(min: 2, max: 1) }
        #expect(throws: QuantizationError.self) { try scheme.quantizer(min: .nan, max: 1) }
    }

    @Test func explicitParametersAreValidated() throws {
        #expect(throws: QuantizationError.self) { try AffineQuantizer(scale: 0, zeroPoint: 0, codeRange: -127...127) }
        #expect(throws: QuantizationError.self) { try AffineQuantizer(scale: .nan, zeroPoint: 0, codeRange: -127...127) }
        #expect(throws: QuantizationError.self) { try AffineQuantizer(scale: .infinity, zeroPoint: 0, codeRange: 0...255) }
        #expect(throws: QuantizationError.self) { try AffineQuantizer(scale: 1, zeroPoint: 300, codeRange: 0...255) }
        #expect(throws: QuantizationError.self) { try AffineQuantizer(scale: 1, zeroPoint: 0, codeRange: -128...255) }
        let valid = try AffineQuantizer(scale: 0.5, zeroPoint: 3, codeRange: 0...15)
        #expect(valid.representableRange == -1.5...6)
    }

    @Test func quantizerCodableRoundTripAndValidation() throws {
        let q = try QuantizationScheme.uint8Asymmetric.quantizer(min: -1, max: 3)
        let data = try JSONEncoder().encode(q)
        #expect(try JSONDecoder().decode(AffineQuantizer.self, from: data) == q)
        let bad = Data(#"{"scale":-1,"zeroPoint":0,"codeRange":[0,255]}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(AffineQuantizer.self, from: bad) }
    }

    @Test func errorsDescribeThemselves() {
        #expect(QuantizationError.groupSizeDoesNotDivide(groupSize: 3, rowLength: 8).description == "group size 3 does not divide the row length 8")
        #expect(QuantizationError.noData.description.contains("no finite values"))
    }
}
