import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct AffineQuantizedTensorTests {
    /// A 3 × 8 weight whose rows have very different ranges.
    static let weight = Tensor(shape: [3, 8], floats: [
        0.1, -0.2, 0.05, 0.3, -0.1, 0.0, 0.25, -0.3,
        4, -8, 2, 1, -3, 6, 0.5, 7,
        -0.01, 0.02, 0.015, -0.005, 0.01, 0, -0.02, 0.005,
    ])

    @Test func perTensorUsesOneQuantizer() throws {
        let quantized = try AffineQuantizedTensor(quantizing: Self.weight, scheme: .int8Symmetric, granularity: .perTensor)
        #expect(quantized.quantizers.count == 1)
        #expect(quantized.quantizers[0] == (try QuantizationScheme.int8Symmetric.quantizer(min: -8, max: 7)))
        #expect(quantized.codes.dtype == .i8)
        #expect(quantized.shape == [3, 8])
    }

    @Test func perChannelUsesEachRowsRange() throws {
        let quantized = try AffineQuantizedTensor(quantizing: Self.weight, scheme: .int8Symmetric, granularity: .perChannel)
        #expect(quantized.quantizers.count == 3)
        let values = Self.weight.floats
        for row in 0..<3 {
            let slice = values[row * 8..<(row + 1) * 8]
            let expected = try QuantizationScheme.int8Symmetric.quantizer(min: slice.min() ?? 0, max: slice.max() ?? 0)
            #expect(quantized.quantizers[row] == expected)
        }
        #expect(quantized.scales[2] < quantized.scales[0] && quantized.scales[0] < quantized.scales[1])
        expectWithinHalfAStep(quantized, Self.weight)
    }

    @Test func perGroupUsesConsecutiveElementsOfARow() throws {
        let quantized = try AffineQuantizedTensor(quantizing: Self.weight, scheme: .uint4Asymmetric, granularity: .perGroup(size: 4))
        #expect(quantized.quantizers.count == 6)
        #expect(quantized.codes.dtype == .u8)
        let values = Self.weight.floats
        for group in 0..<6 {
            let slice = values[group * 4..<(group + 1) * 4]
            let expected = try QuantizationScheme.uint4Asymmetric.quantizer(min: slice.min() ?? 0, max: slice.max() ?? 0)
            #expect(quantized.quantizers[group] == expected, "group \(group)")
        }
        let codes = quantized.codes.withUnsafeElements(UInt8.self) { Array($0) }
        #expect(codes.allSatisfy { $0 <= 15 })
        expectWithinHalfAStep(quantized, Self.weight)
    }

    @Test func groupSizeMustDivideTheRowLength() {
        #expect(throws: QuantizationError.groupSizeDoesNotDivide(groupSize: 3, rowLength: 8)) {
            try AffineQuantizedTensor(quantizing: Self.weight, scheme: .int4Symmetric, granularity: .perGroup(size: 3))
        }
        #expect(throws: QuantizationError.invalidGroupSize(0)) {
            try AffineQuantizedTensor(quantizing: Self.weight, scheme: .int4Symmetric, granularity: .perGroup(size: 0))
        }
    }

    @Test func perChannelAndPerGroupNeedAMatrix() {
        let vector = Tensor(shape: [4], floats: [1, 2, 3, 4])
        let cube = Tensor(zeros: [2, 2, 2])
        #expect(throws: QuantizationError.requiresMatrix(shape: [4])) {
            try AffineQuantizedTensor(quantizing: vector, scheme: .int8Symmetric, granularity: .perChannel)
        }
        #expect(throws: QuantizationError.requiresMatrix(shape: [2, 2, 2])) {
            try AffineQuantizedTensor(quantizing: cube, scheme: .int8Symmetric, granularity: .perGroup(size: 2))
        }
        #expect(throws: QuantizationError.unsupportedDType(.i32, expected: .f32)) {
            try AffineQuantizedTensor(quantizing: Tensor(shape: [1, 2], int32s: [1, 2]), scheme: .int8Symmetric, granularity: .perChannel)
        }
    }

    @Test func nonFiniteValuesStayOutOfTheRanges() throws {
        let tensor = Tensor(shape: [3, 4], floats: [
            1, .nan, -2, .infinity,
            .nan, .nan, .nan, .nan,
            0, 0, 0, 0,
        ])
        let quantized = try AffineQuantizedTensor(quantizing: tensor, scheme: .int8Symmetric, granularity: .perChannel)
        #expect(quantized.quantizers.allSatisfy { $0.scale.isFinite && $0.scale > 0 })
        #expect(quantized.quantizers[0] == (try QuantizationScheme.int8Symmetric.quantizer(min: -2, max: 1)))
        #expect(quantized.quantizers[1].scale == 1)
        #expect(quantized.quantizers[2].scale == 1)
        let back = quantized.dequantized().floats
        #expect(back[1] == 0)
        #expect(back[3] == quantized.quantizers[0].representableRange.upperBound)
        #expect(Array(back[4..<12]) == [Float](repeating: 0, count: 8))
    }

    @Test func calibratedQuantizerPerTensor() throws {
        let activation = Tensor(shape: [2, 3], floats: [-1, 0, 0.5, 2, 3, 10])
        let quantizer = try QuantizationScheme.uint8Asymmetric.quantizer(min: -1, max: 3)
        let quantized = try AffineQuantizedTensor(quantizing: activation, with: quantizer, scheme: .uint8Asymmetric)
        #expect(quantized.quantizers == [quantizer])
        let back = quantized.dequantized().floats
        #expect(back[5] == quantizer.representableRange.upperBound)
        #expect(abs(back[2] - 0.5) <= quantizer.scale / 2)
        #expect(throws: QuantizationError.self) {
            try AffineQuantizedTensor(quantizing: activation, with: quantizer, scheme: .int8Symmetric)
        }
    }

    @Test func int4CodesPackAndUnpack() throws {
        let signed = try AffineQuantizedTensor(quantizing: Self.weight, scheme: .int4Symmetric, granularity: .perGroup(size: 2))
        let packed = try signed.int4PackedCodes()
        #expect(packed.count == 12)
        let codes = signed.codes.withUnsafeElements(Int8.self) { Array($0) }
        #expect(try Int4Packing.unpackSigned(packed, count: 24) == codes)
        let int8 = try AffineQuantizedTensor(quantizing: Self.weight, scheme: .int8Symmetric, granularity: .perChannel)
        #expect(throws: QuantizationError.unsupportedBits(.eight, expected: .four)) { try int8.int4PackedCodes() }
    }

    @Test func emptyTensors() throws {
        let empty = try AffineQuantizedTensor(quantizing: Tensor(zeros: [0, 4]), scheme: .int8Symmetric, granularity: .perChannel)
        #expect(empty.quantizers.isEmpty)
        #expect(empty.dequantized().shape == [0, 4])
        let noColumns = try AffineQuantizedTensor(quantizing: Tensor(zeros: [2, 0]), scheme: .int8Symmetric, granularity: .perChannel)
        #expect(noColumns.quantizers.count == 2)
        #expect(noColumns.dequantized().count == 0)
    }

    private func expectWithinHalfAStep(_ quantized: AffineQuantizedTensor, _ original: Tensor, sourceLocation: SourceLocation = #_sourceLocation) {
        let back = quantized.dequantized().floats
        let values = original.floats
        let sliceLength = values.count / quantized.quantizers.count
        for (i, x) in values.enumerated() {
            let step = quantized.quantizers[i / sliceLength].scale
            #expect(abs(back[i] - x) <= step / 2 * (1 + 1e-5), "element \(i)", sourceLocation: sourceLocation)
        }
    }
}
