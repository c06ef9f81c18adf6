import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// The calibration statistics, the inverse-Hessian factor and OWL's layer sparsities.
@Suite struct LayerInputStatisticsTests {
    static let cols = 6
    static let tokens = 20
    static let inputs = normalValues(tokens * cols, seed: 501)

    /// `(2/n) XᵀX` and `Σ x_j²` by hand.
    static func expected() -> (hessian: [Double], squares: [Double]) {
        var hessian = [Double](repeating: 0, count: cols * cols)
        var squares = [Double](repeating: 0, count: cols)
        for t in 0..<tokens {
            for i in 0..<cols {
                squares[i] += Double(inputs[t * cols + i]) * Double(inputs[t * cols + i])
                for j in 0..<cols { hessian[i * cols + j] += 2 * Double(inputs[t * cols + i]) * Double(inputs[t * cols + j]) / Double(tokens) }
            }
        }
        return (hessian, squares)
    }

    @Test func batchesAccumulateTheAveragedGram() throws {
        let (hessian, squares) = Self.expected()
        var statistics = try LayerInputStatistics(columns: Self.cols)
        // Uneven batches: 7, 0, 13 tokens.
        try statistics.accumulate(rows: Array(Self.inputs[0..<(7 * Self.cols)]), tokens: 7)
        try statistics.accumulate(rows: [], tokens: 0)
        try statistics.accumulate(rows: Array(Self.inputs[(7 * Self.cols)...]), tokens: 13)
        #expect(statistics.tokenCount == Self.tokens)
        for (a, b) in zip(statistics.hessian, hessian) { #expect(abs(a - b) <= 1e-12 * max(1, abs(b))) }
        for (a, b) in zip(statistics.sumOfSquares, squares) { #expect(abs(a - b) <= 1e-12 * max(1, abs(b))) }
        #expect(statistics.columnNorms == statistics.sumOfSquares.map { $0.squareRoot() })
        for i in 0..<Self.cols { for j in 0..<Self.cols { #expect(statistics.hessian[i * Self.cols + j] == statistics.hessian[j * Self.cols + i]) } }
    }

    @Test func backendBatchesMatchThePlainLoops() throws {
        let (hessian, squares) = Self.expected()
        let backends: [any Backend] = [CPUBackend(threads: 2), ReferenceBackend()]
        for backend in backends {
            var statistics = try LayerInputStatistics(columns: Self.cols)
            try statistics.accumulate(Tensor(shape: [8, Self.cols], floats: Array(Self.inputs[0..<(8 * Self.cols)])), backend: backend)
            try statistics.accumulate(Tensor(shape: [12, Self.cols], floats: Array(Self.inputs[(8 * Self.cols)...])), backend: backend)
            #expect(statistics.tokenCount == Self.tokens)
            for (a, b) in zip(statistics.hessian, hessian) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b))) }
            for (a, b) in zip(statistics.sumOfSquares, squares) { #expect(abs(a - b) <= 1e-12 * max(1, abs(b))) }
            var again = try LayerInputStatistics(columns: Self.cols)
            try again.accumulate(Tensor(shape: [8, Self.cols], floats: Array(Self.inputs[0..<(8 * Self.cols)])), backend: backend)
            try again.accumulate(Tensor(shape: [12, Self.cols], floats: Array(Self.inputs[(8 * Self.cols)...])), backend: backend)
            #expect(again == statistics)
        }
    }

    @Test func badInputsAreTypedErrors() throws {
        var statistics = try LayerInputStatistics(columns: Self.cols)
        var bad = Self.inputs
        bad[13] = .nan
        #expect(throws: OneShotError.nonFiniteInput(row: 2, column: 1)) { try statistics.accumulate(rows: bad, tokens: Self.tokens) }
        #expect(throws: OneShotError.widthMismatch(expected: Self.cols, got: 4)) {
            try statistics.accumulate(Tensor(zeros: [3, 4]), backend: ReferenceBackend())
        }
        #expect(throws: OneShotError.self) { try statistics.accumulate(rows: [1, 2, 3], tokens: 1) }
        #expect(throws: OneShotError.self) { _ = try LayerInputStatistics(columns: 0) }
        #expect(statistics.tokenCount == 0)
    }

    @Test func inverseFactorSquaresToTheDampedInverse() throws {
        let layer = try OneShotCase(rows: 2, cols: 24, tokens: 48, seed: 77)
        let n = layer.cols
        let (factor, dead) = try HessianInverse.upperCholeskyOfInverse(hessian: layer.statistics.hessian, n: n, dampening: 0.01)
        #expect(!dead.contains(true))
        let (inverse, _) = OneShotReference.dampedInverse(layer.statistics.hessian, n: n, dampening: 0.01)
        for i in 0..<n {
            for j in 0..<n {
                if j < i { #expect(factor[i * n + j] == 0) }
                var product = 0.0
                for k in 0..<n { product += factor[k * n + i] * factor[k * n + j] }
                #expect(abs(product - inverse[i * n + j]) <= 1e-9 * max(1, abs(inverse[i * n + j])))
            }
            #expect(factor[i * n + i] > 0)
        }
    }

    /// The panel-blocked, unrolled loops do each entry's updates in the
    /// order of the textbook loops, so they give the same bits.
    @Test func blockedFactorizationHasTheBitsOfTheTextbookLoops() throws {
        let layer = try OneShotCase(rows: 2, cols: 45, tokens: 90, seed: 78)
        let n = layer.cols
        var blocked = layer.statistics.hessian
        #expect(HessianInverse.choleskyUpperInPlace(&blocked, n: n) == nil)
        var plain = layer.statistics.hessian
        for k in 0..<n {
            plain[k * n + k] = plain[k * n + k].squareRoot()
            for j in (k + 1)..<n { plain[k * n + j] /= plain[k * n + k] }
            for i in (k + 1)..<n { for j in i..<n { plain[i * n + j] -= plain[k * n + i] * plain[k * n + j] } }
        }
        for i in 0..<n { for j in 0..<i { plain[i * n + j] = 0 } }
        #expect(blocked.map(\.bitPattern) == plain.map(\.bitPattern))

        let inverse = HessianInverse.upperTriangularInverse(blocked, n: n)
        var textbook = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            var accumulator = [Double](repeating: 0, count: n)
            for k in i..<n {
                textbook[i * n + k] = ((k == i ? 1 : 0) - accumulator[k]) / blocked[k * n + k]
                for j in (k + 1)..<n { accumulator[j] += textbook[i * n + k] * blocked[k * n + j] }
            }
        }
        #expect(inverse.map(\.bitPattern) == textbook.map(\.bitPattern))
    }

    @Test func owlLowersTheSparsityOfOutlierRichLayers() throws {
        // Layer 1 has the most values far above its mean, layer 0 none.
        let metrics: [[Double]] = [
            [Double](repeating: 1, count: 100),
            [Double](repeating: 1, count: 90) + [Double](repeating: 100, count: 10),
            [Double](repeating: 1, count: 97) + [Double](repeating: 100, count: 3),
        ]
        let ratios = try metrics.map { try OutlierWeighedSparsity.outlierRatio($0, threshold: 5) }
        #expect(ratios == [0, 0.1, 0.03])
        let sparsities = try OutlierWeighedSparsity.layerSparsities(metrics: metrics, target: 0.5, threshold: 5, lambda: 0.08)
        // Normalised ratios 0, 1, 0.3 → deviations 2λ · (those − their mean).
        let mean = (0 + 1 + 0.3) / 3 * 0.16
        let expected = [0.5 - (0 - mean), 0.5 - (0.16 - mean), 0.5 - (0.048 - mean)]
        for (a, b) in zip(sparsities, expected) { #expect(abs(a - b) < 1e-12) }
        #expect(abs(sparsities.reduce(0, +) / 3 - 0.5) < 1e-12)
        #expect(abs((sparsities.max() ?? 0) - (sparsities.min() ?? 0) - 0.16) < 1e-12)
        #expect(try OutlierWeighedSparsity.layerSparsities(outlierRatios: [0.2, 0.2], target: 0.6) == [0.6, 0.6])
        #expect(throws: OneShotError.invalidSparsity(1)) { try OutlierWeighedSparsity.layerSparsities(outlierRatios: [0.1], target: 1) }
        #expect(throws: OneShotError.invalidLambda(-1)) { try OutlierWeighedSparsity.layerSparsities(outlierRatios: [0.1], target: 0.5, lambda: -1) }
        #expect(throws: OneShotError.emptyLayers) { try OutlierWeighedSparsity.layerSparsities(outlierRatios: [], target: 0.5) }
        #expect(throws: OneShotError.invalidOutlierThreshold(0)) { try OutlierWeighedSparsity.outlierRatio([1], threshold: 0) }
        #expect(throws: OneShotError.self) { try OutlierWeighedSparsity.layerSparsities(outlierRatios: [0, 1], target: 0.95, lambda: 0.2) }
    }

    @Test func wandaMetricChecksItsShapes() throws {
        #expect(try Wanda.metric(weight: [1, -2, 3, -4], rows: 2, cols: 2, columnNorms: [0.5, 2]) == [0.5, 4, 1.5, 8])
        #expect(throws: OneShotError.widthMismatch(expected: 2, got: 3)) {
            _ = try Wanda.metric(weight: [1, -2, 3, -4], rows: 2, cols: 2, columnNorms: [1, 1, 1])
        }
    }
}
