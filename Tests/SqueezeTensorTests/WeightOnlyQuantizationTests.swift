import Testing
@testable import SqueezeTensor

/// Random signed codes for `bits` over the whole storage range.
func randomGroupCodes(count: Int, bits: Int, _ generator: inout SeededGenerator) -> [Int8] {
    let span = UInt64(1) << UInt64(bits)
    return (0..<count).map { _ in Int8(Int(generator.next() % span) - Int(span / 2)) }
}

/// Gaussian weights `[n, k]` with a few outliers (×8) so that groups differ in range.
func outlierWeights(n: Int, k: Int, _ generator: inout SeededGenerator) -> Tensor {
    let values = (0..<(n * k)).map { _ in
        let value = generator.normal(standardDeviation: 0.05)
        return generator.next() % 61 == 0 ? value * 8 : value
    }
    return Tensor(shape: [n, k], floats: values)
}

@Suite struct WeightOnlyQuantizationTests {
    /// (N, K, group size): single elements, odd K (odd numbers of nibbles per
    /// row), N not a multiple of the 16-row panel, groups of 1 and = K.
    static let packingShapes: [(Int, Int, Int)] = [
        (1, 1, 1), (3, 31, 31), (17, 6, 3), (5, 65, 13), (16, 64, 32), (33, 9, 1), (2, 384, 128), (4, 0, 8),
    ]

    @Test(arguments: [4, 8])
    func signedCodesScalesAndZeroPointsRoundTrip(bits: Int) throws {
        var generator = SeededGenerator(seed: 1 + UInt64(bits))
        for (n, k, group) in Self.packingShapes {
            let groups = n * (k / group)
            let codes = randomGroupCodes(count: n * k, bits: bits, &generator)
            let scales = (0..<groups).map { _ in generator.uniform(in: 0.001..<0.1) }
            let zeros = randomGroupCodes(count: groups, bits: bits, &generator).map { Int32($0) }
            for zeroPoints in [nil, zeros] {
                let weights = try PackedGroupWeights(
                    codes: Tensor(shape: [n, k], int8s: codes), bits: bits, groupSize: group, scales: scales,
                    zeroPoints: zeroPoints)
                #expect(weights.outputCount == n && weights.inputCount == k && weights.groupsPerRow == k / group)
                #expect(firstMismatch(weights.codes.int8s, codes) == nil, "\(bits) bits \(n)×\(k)/\(group)")
                #expect(weights.scales == scales)
                #expect(weights.zeroPoints == (zeroPoints?.contains { $0 != 0 } == true ? zeroPoints : nil))
                // ŵ = s · (q − z), element by element.
                let expected = (0..<(n * k)).map { index -> Float in
                    let g = (index / k) * (k / group) + (index % k) / group
                    return scales[g] * Float(Int32(codes[index]) - (zeroPoints?[g] ?? 0))
                }
                #expect(weights.dequantized().floats.map(\.bitPattern) == expected.map(\.bitPattern))
            }
        }
    }

    /// Unsigned codes (0…15, 0…255) stand for the same values as signed
    /// codes shifted by 2^(bits−1), with or without zero points.
    @Test(arguments: [4, 8])
    func unsignedCodesDequantiseAsGiven(bits: Int) throws {
        var generator = SeededGenerator(seed: 5 + UInt64(bits))
        let (n, k, group) = (5, 12, 4)
        let levels = UInt64(1) << UInt64(bits)
        let codes = (0..<(n * k)).map { _ in UInt8(generator.next() % levels) }
        let scales = (0..<(n * 3)).map { _ in generator.uniform(in: 0.01..<0.1) }
        let zeros = (0..<(n * 3)).map { _ in Int32(generator.next() % levels) }
        for zeroPoints in [nil, zeros] {
            let weights = try PackedGroupWeights(
                codes: Tensor(shape: [n, k], uint8s: codes), bits: bits, groupSize: group, scales: scales,
                zeroPoints: zeroPoints)
            let expected = (0..<(n * k)).map { index -> Float in
                let g = (index / k) * 3 + (index % k) / group
                return scales[g] * Float(Int32(codes[index]) - (zeroPoints?[g] ?? 0))
            }
            #expect(weights.dequantized().floats == expected)
            let half = Int32(1) << Int32(bits - 1)
            #expect(weights.codes.int8s == codes.map { Int8(Int32($0) - half) })
            #expect(weights.zeroPoints == (zeroPoints ?? [Int32](repeating: 0, count: n * 3)).map { $0 - half })
        }
    }

    /// Code 2i in the low nibble of byte i, 2i + 1 in the high nibble, in
    /// row-major element order across rows (K odd), as `Int4Packing` stores them.
    @Test func int4NibbleOrderMatchesInt4Packing() throws {
        let codes: [Int8] = [1, -2, 3, 4, -8, 7, 0, 5, -1]
        let packed: [UInt8] = [0xE1, 0x43, 0x78, 0x50, 0x0F]
        let weights = try PackedGroupWeights(
            codes: Tensor(shape: [3, 3], int8s: codes), bits: 4, groupSize: 3, scales: [1, 1, 1])
        #expect(weights.int4PackedCodes() == packed)
        let loaded = try PackedGroupWeights(
            int4Codes: packed, signed: true, outputCount: 3, inputCount: 3, groupSize: 3, scales: [1, 1, 1])
        #expect(loaded.codes.int8s == codes)
        #expect(loaded.dequantized().floats == codes.map { Float($0) })
        // Unsigned nibbles: the same bytes read as 0…15.
        let unsigned = try PackedGroupWeights(
            int4Codes: packed, signed: false, outputCount: 3, inputCount: 3, groupSize: 3, scales: [1, 1, 1])
        #expect(unsigned.dequantized().floats == [1, 14, 3, 4, 8, 7, 0, 5, 15])
        let eightBit = try PackedGroupWeights(
            codes: Tensor(shape: [3, 3], int8s: codes), bits: 8, groupSize: 1, scales: [Float](repeating: 1, count: 9))
        #expect(eightBit.int4PackedCodes() == nil)
    }

    /// Ties round to the even code, on both sides of 0 and around a zero point.
    @Test func roundingIsHalfToEven() throws {
        // Symmetric int4: max|w| = 7 gives scale 1.
        let four = try PackedGroupWeights(
            quantizing: Tensor(shape: [1, 8], floats: [7, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5]), bits: 4, groupSize: 8)
        #expect(four.scales == [1])
        #expect(four.codes.int8s == [7, 0, 2, 2, 0, -2, -2, 4])
        // Symmetric int8: max|w| = 127 gives scale 1.
        let eight = try PackedGroupWeights(
            quantizing: Tensor(shape: [1, 6], floats: [-127, 126.5, 125.5, -0.5, 0.5, -1.5]), bits: 8, groupSize: 6)
        #expect(eight.codes.int8s == [-127, 126, 126, 0, 0, -2])
        // Asymmetric int4 over [0, 15]: scale 1, zero point −8.
        let shifted = try PackedGroupWeights(
            quantizing: Tensor(shape: [1, 4], floats: [15, 2.5, 3.5, 0.5]), bits: 4, groupSize: 4, mapping: .asymmetric)
        #expect(shifted.scales == [1] && shifted.zeroPoints == [-8])
        #expect(shifted.dequantized().floats == [15, 2, 4, 0])
    }

    /// |w − ŵ| ≤ scale / 2 (plus the rounding of w / s and s · q) for every
    /// weight; symmetric codes stay in [−q_max, q_max] and negate with w.
    @Test(arguments: [4, 8], [PackedGroupWeights.Mapping.symmetric, .asymmetric])
    func errorIsAtMostHalfAScale(bits: Int, mapping: PackedGroupWeights.Mapping) throws {
        var generator = SeededGenerator(seed: 21 + UInt64(bits))
        let (n, k) = (19, 384)
        let weight = outlierWeights(n: n, k: k, &generator)
        let w = weight.floats
        for group in [32, 64, 128, 384] {
            let weights = try PackedGroupWeights(quantizing: weight, bits: bits, groupSize: group, mapping: mapping)
            let scales = weights.scales
            let restored = weights.dequantized().floats
            var worst: Float = 0
            for index in w.indices {
                let scale = scales[(index / k) * (k / group) + (index % k) / group]
                let allowance = scale / 2 * (1 + 1e-5) + w[index].magnitude.ulp
                worst = Swift.max(worst, (w[index] - restored[index]).magnitude / allowance)
            }
            #expect(worst <= 1, "\(bits) bits \(mapping) groups of \(group): \(worst)× the bound")
            let codes = weights.codes.int8s
            if mapping == .symmetric {
                let qMax = Int8((1 << (bits - 1)) - 1)
                #expect(codes.allSatisfy { (-qMax...qMax).contains($0) })
                let negated = try PackedGroupWeights(
                    quantizing: Tensor(shape: [n, k], floats: w.map { -$0 }), bits: bits, groupSize: group)
                #expect(negated.codes.int8s == codes.map { -$0 })
            } else {
                // The extremes of each group reach the ends of the code range.
                #expect(codes.contains(Int8(-(1 << (bits - 1)))) || codes.contains(Int8((1 << (bits - 1)) - 1)))
            }
        }
    }

    /// An all-zero group gets scale 1 and codes 0; a group of one tiny value
    /// (subnormal) keeps a normal scale; exact zeros stay exact with zero points.
    @Test func degenerateGroups() throws {
        let weight = Tensor(shape: [2, 4], floats: [0, 0, 0, 0, Float.leastNormalMagnitude / 4, 0, -0.3, 0])
        let symmetric = try PackedGroupWeights(quantizing: weight, bits: 4, groupSize: 2)
        #expect(symmetric.scales[0] == 1 && symmetric.scales[1] == 1)
        #expect(symmetric.scales.allSatisfy { $0.isNormal })
        let asymmetric = try PackedGroupWeights(quantizing: weight, bits: 8, groupSize: 4, mapping: .asymmetric)
        let restored = asymmetric.dequantized().floats
        #expect(restored[0...3].allSatisfy { $0 == 0 } && restored[5] == 0 && restored[7] == 0)
    }

    @Test func packedSizeCountsCodesScalesAndZeroPoints() throws {
        var generator = SeededGenerator(seed: 3)
        let weight = outlierWeights(n: 384, k: 384, &generator)
        let four = try PackedGroupWeights(quantizing: weight, bits: 4, groupSize: 32)
        #expect(four.byteCount == 384 * 384 / 2 + 384 * 12 * 4)
        let eight = try PackedGroupWeights(quantizing: weight, bits: 8, groupSize: 128, mapping: .asymmetric)
        #expect(eight.byteCount == 384 * 384 + 384 * 3 * 5)
        // N is padded to whole panels of 16 rows.
        let small = try PackedGroupWeights(quantizing: Tensor(zeros: [3, 8]), bits: 4, groupSize: 8)
        #expect(small.byteCount == 16 * 8 / 2 + 16 * 4)
    }

    @Test func invalidRequestsThrow() throws {
        let weight = Tensor(zeros: [4, 384])
        #expect(throws: WeightOnlyQuantizationError.groupSizeDoesNotDivide(groupSize: 100, inputCount: 384)) {
            try PackedGroupWeights(quantizing: weight, bits: 4, groupSize: 100)
        }
        #expect(
            WeightOnlyQuantizationError.groupSizeDoesNotDivide(groupSize: 100, inputCount: 384).description
                == "group size 100 does not divide the input width 384")
        #expect(throws: WeightOnlyQuantizationError.invalidGroupSize(0)) {
            try PackedGroupWeights(quantizing: weight, bits: 8, groupSize: 0)
        }
        #expect(throws: WeightOnlyQuantizationError.unsupportedBits(3)) {
            try PackedGroupWeights(quantizing: weight, bits: 3, groupSize: 32)
        }
        #expect(throws: WeightOnlyQuantizationError.invalidWeight(dtype: .f32, shape: [384], expected: "an f32 [N, K] weight")) {
            try PackedGroupWeights(quantizing: Tensor(zeros: [384]), bits: 4, groupSize: 32)
        }
        var values = [Float](repeating: 0.5, count: 2 * 64)
        values[64 + 37] = .nan
        #expect(throws: WeightOnlyQuantizationError.nonFiniteWeight(row: 1, column: 37)) {
            try PackedGroupWeights(quantizing: Tensor(shape: [2, 64], floats: values), bits: 4, groupSize: 32)
        }
    }

    @Test func invalidCodesAndParametersThrow() throws {
        let codes = Tensor(shape: [2, 4], int8s: [0, 1, 2, 3, -8, 7, 8, 0])
        #expect(throws: WeightOnlyQuantizationError.codeOutOfRange(row: 1, column: 2, code: 8, range: -8...7)) {
            try PackedGroupWeights(codes: codes, bits: 4, groupSize: 2, scales: [1, 1, 1, 1])
        }
        let unsigned = Tensor(shape: [1, 2], uint8s: [15, 16])
        #expect(throws: WeightOnlyQuantizationError.codeOutOfRange(row: 0, column: 1, code: 16, range: 0...15)) {
            try PackedGroupWeights(codes: unsigned, bits: 4, groupSize: 2, scales: [1])
        }
        #expect(throws: WeightOnlyQuantizationError.parameterCount(name: "scales", count: 3, expected: 4)) {
            try PackedGroupWeights(codes: codes, bits: 8, groupSize: 2, scales: [1, 1, 1])
        }
        #expect(throws: WeightOnlyQuantizationError.invalidScale(index: 2, scale: 0)) {
            try PackedGroupWeights(codes: codes, bits: 8, groupSize: 2, scales: [1, 1, 0, 1])
        }
        #expect(throws: WeightOnlyQuantizationError.invalidScale(index: 0, scale: .infinity)) {
            try PackedGroupWeights(codes: codes, bits: 8, groupSize: 2, scales: [.infinity, 1, 1, 1])
        }
        #expect(throws: WeightOnlyQuantizationError.parameterCount(name: "zero points", count: 1, expected: 4)) {
            try PackedGroupWeights(codes: codes, bits: 8, groupSize: 2, scales: [1, 1, 1, 1], zeroPoints: [0])
        }
        #expect(throws: WeightOnlyQuantizationError.zeroPointOutOfRange(index: 3, zeroPoint: -9, range: -8...7)) {
            try PackedGroupWeights(codes: Tensor(zeros: [2, 4], dtype: .i8), bits: 4, groupSize: 2, scales: [1, 1, 1, 1], zeroPoints: [0, 0, 0, -9])
        }
        #expect(throws: WeightOnlyQuantizationError.invalidWeight(dtype: .f32, shape: [2, 4], expected: "i8 or u8 [N, K] codes")) {
            try PackedGroupWeights(codes: Tensor(zeros: [2, 4]), bits: 8, groupSize: 2, scales: [1, 1, 1, 1])
        }
        #expect(throws: WeightOnlyQuantizationError.packedSizeMismatch(byteCount: 4, count: 9)) {
            try PackedGroupWeights(int4Codes: [0, 0, 0, 0], signed: true, outputCount: 3, inputCount: 3, groupSize: 3, scales: [1, 1, 1])
        }
        #expect(throws: WeightOnlyQuantizationError.groupSizeDoesNotDivide(groupSize: 2, inputCount: 3)) {
            try PackedGroupWeights(int4Codes: [0, 0, 0, 0, 0], signed: true, outputCount: 3, inputCount: 3, groupSize: 2, scales: [1, 1, 1])
        }
    }
}
