import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// GPTQ against a column-by-column reference, its grid against the stored
/// weight-only format, GPTQ ≤ RTN, kept zeros, determinism and bad arguments.
@Suite struct GPTQTests {
    static let small = try? OneShotCase(rows: 5, cols: 16, tokens: 64, seed: 211)

    static func layer() throws -> OneShotCase { try #require(small) }

    static let gridCases: [(WeightGrid, Bool, Bool)] = [
        (WeightGrid(bits: 4, groupSize: -1, symmetric: true), false, false),
        (WeightGrid(bits: 4, groupSize: 8, symmetric: true), false, false),
        (WeightGrid(bits: 3, groupSize: 4, symmetric: false), false, false),
        (WeightGrid(bits: 4, groupSize: 8, symmetric: false), true, false),
        (WeightGrid(bits: 8, groupSize: -1, symmetric: false), true, false),
        (WeightGrid(bits: 4, groupSize: 8, symmetric: true), false, true),
    ]

    @Test(arguments: gridCases)
    func matchesTheColumnByColumnReference(grid: WeightGrid, actOrder: Bool, staticGroups: Bool) throws {
        let layer = try Self.layer()
        let reference = OneShotReference.gptq(layer, options: GPTQOptions(grid: grid, actOrder: actOrder, staticGroups: staticGroups))
        for blockSize in [1, 3, 8, 128] {
            let options = GPTQOptions(grid: grid, actOrder: actOrder, staticGroups: staticGroups, blockSize: blockSize)
            let result = try GPTQ.quantize(weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, options: options)
            let worst = worstRelativeDifference(result.dequantized, reference)
            #expect(worst < 1e-4, "\(grid) act order \(actOrder) block \(blockSize): \(worst)")
            // Codes, scales and zero points describe the dequantized weights.
            for row in 0..<layer.rows {
                for j in 0..<layer.cols {
                    let group = row * (layer.cols / result.groupSize) + j / result.groupSize
                    let zero = result.zeroPoints.isEmpty ? 0 : result.zeroPoints[group]
                    let code = Int32(result.codes[row * layer.cols + j])
                    #expect(grid.codeRange.contains(code))
                    #expect(result.dequantized[row * layer.cols + j] == result.scales[group] * Float(code - zero))
                }
            }
        }
    }

    /// For 4 and 8 bits the grid is the stored format's: RTN equals
    /// `PackedGroupWeights(quantizing:)` bit for bit, and GPTQ's codes load
    /// into `PackedGroupWeights(codes:)` with the same dequantized weights.
    @Test(arguments: [4, 8], [true, false])
    func gridIsTheStoredWeightOnlyFormat(bits: Int, symmetric: Bool) throws {
        let layer = try Self.layer()
        let weight = Tensor(shape: [layer.rows, layer.cols], floats: layer.weight)
        let grid = WeightGrid(bits: bits, groupSize: 8, symmetric: symmetric)
        let packed = try PackedGroupWeights(quantizing: weight, bits: bits, groupSize: 8, mapping: symmetric ? .symmetric : .asymmetric)
        let rtn = try grid.roundToNearest(weight: layer.weight, rows: layer.rows, cols: layer.cols)
        #expect(rtn.dequantized.map(\.bitPattern) == packed.dequantized().floats.map(\.bitPattern))
        #expect(rtn.scales == packed.scales)
        let scheme = WeightOnlyOptions(bits: bits, groupSize: 8, symmetric: symmetric).scheme
        #expect([Int(grid.codeRange.lowerBound), Int(grid.codeRange.upperBound)] == scheme.codeRange)

        let gptq = try GPTQ.quantize(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, options: GPTQOptions(grid: grid))
        var codes = Tensor(zeros: [layer.rows, layer.cols], dtype: .i8)
        codes.withUnsafeMutableElements(Int8.self) { for index in $0.indices { $0[index] = gptq.codes[index] } }
        let loaded = try PackedGroupWeights(
            codes: codes, bits: bits, groupSize: gptq.groupSize, scales: gptq.scales, zeroPoints: symmetric ? nil : gptq.zeroPoints)
        #expect(loaded.dequantized().floats.map(\.bitPattern) == gptq.dequantized.map(\.bitPattern))
    }

    /// On correlated inputs GPTQ's output error is below RTN's on the same grid.
    @Test(arguments: [
        WeightGrid(bits: 4, groupSize: 128), WeightGrid(bits: 4, groupSize: -1), WeightGrid(bits: 3, groupSize: 128),
        WeightGrid(bits: 3, groupSize: -1, symmetric: false),
    ])
    func beatsRoundToNearest(grid: WeightGrid) throws {
        let layer = try OneShotCase(rows: 16, cols: 256, tokens: 512, outliers: 6, seed: 401)
        let rtn = try grid.roundToNearest(weight: layer.weight, rows: layer.rows, cols: layer.cols)
        for actOrder in [false, true] {
            let gptq = try GPTQ.quantize(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics,
                options: GPTQOptions(grid: grid, actOrder: actOrder))
            let gptqError = layer.reconstructionError(gptq.dequantized)
            let rtnError = layer.reconstructionError(rtn.dequantized)
            #expect(gptqError < rtnError, "\(grid) act order \(actOrder): gptq \(gptqError) rtn \(rtnError)")
        }
    }

    @Test(arguments: [true, false])
    func keptZerosStayZero(symmetric: Bool) throws {
        let layer = try Self.layer()
        let sparse = try OneShotPruning.prune(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: .sparseGPT,
            target: .nOfM(n: 2, m: 4))
        for actOrder in [false, true] {
            let options = GPTQOptions(grid: WeightGrid(bits: 4, groupSize: 8, symmetric: symmetric), actOrder: actOrder, keepZeros: true)
            let result = try GPTQ.quantize(weight: sparse.weights, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, options: options)
            for index in sparse.weights.indices where sparse.weights[index] == 0 {
                #expect(result.dequantized[index] == 0, "index \(index)")
            }
            let reference = OneShotReference.gptq(layer, options: options, weight: sparse.weights)
            #expect(worstRelativeDifference(result.dequantized, reference) < 1e-4)
        }
        // Without keepZeros the compensation moves some zeros off zero.
        let moved = try GPTQ.quantize(
            weight: sparse.weights, rows: layer.rows, cols: layer.cols, statistics: layer.statistics,
            options: GPTQOptions(grid: WeightGrid(bits: 4, groupSize: 8, symmetric: symmetric)))
        #expect(sparse.weights.indices.contains { sparse.weights[$0] == 0 && moved.dequantized[$0] != 0 })
    }

    @Test func sameInputsGiveTheSameBits() throws {
        let layer = try Self.layer()
        let options = GPTQOptions(grid: WeightGrid(bits: 4, groupSize: 8, symmetric: false), actOrder: true, blockSize: 4)
        let first = try GPTQ.quantize(weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, options: options)
        let second = try GPTQ.quantize(weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, options: options)
        #expect(first == second)
        #expect(first.dequantized.map(\.bitPattern) == second.dequantized.map(\.bitPattern))
    }

    @Test func badArgumentsAreTypedErrors() throws {
        let layer = try Self.layer()
        func quantize(_ grid: WeightGrid, blockSize: Int = 128, dampening: Double = 0.01) throws(OneShotError) {
            _ = try GPTQ.quantize(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics,
                options: GPTQOptions(grid: grid, dampening: dampening, blockSize: blockSize))
        }
        for bits in [0, 1, 9, 16] {
            #expect(throws: OneShotError.unsupportedBits(bits)) { try quantize(WeightGrid(bits: bits)) }
        }
        #expect(throws: OneShotError.groupSizeDoesNotDivide(groupSize: 5, cols: 16)) { try quantize(WeightGrid(bits: 4, groupSize: 5)) }
        #expect(throws: OneShotError.invalidGroupSize(0)) { try quantize(WeightGrid(bits: 4, groupSize: 0)) }
        #expect(throws: OneShotError.invalidGroupSize(-2)) { try quantize(WeightGrid(bits: 4, groupSize: -2)) }
        #expect(throws: OneShotError.invalidBlockSize(0)) { try quantize(WeightGrid(bits: 4), blockSize: 0) }
        #expect(throws: OneShotError.invalidDampening(.infinity)) { try quantize(WeightGrid(bits: 4), dampening: .infinity) }
        #expect(throws: OneShotError.missingCalibration(method: "GPTQ")) {
            _ = try GPTQ.quantize(weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: nil, options: GPTQOptions(grid: WeightGrid(bits: 4)))
        }
        #expect(throws: OneShotError.unsupportedBits(9)) {
            _ = try WeightGrid(bits: 9).roundToNearest(weight: layer.weight, rows: layer.rows, cols: layer.cols)
        }
        // An indefinite "Hessian" (eigenvalues −1 and 3 in its first two columns) has no Cholesky factor.
        var indefinite = [Double](repeating: 0, count: layer.cols * layer.cols)
        for j in 0..<layer.cols { indefinite[j * layer.cols + j] = 1 }
        indefinite[1] = 2
        indefinite[layer.cols] = 2
        let error = #expect(throws: OneShotError.self) {
            _ = try GPTQ.quantize(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, hessian: indefinite,
                options: GPTQOptions(grid: WeightGrid(bits: 4), dampening: 0))
        }
        #expect(error?.description.contains("not positive definite") == true)
    }
}
