import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// Magnitude, Wanda and SparseGPT against plain references, their patterns,
/// the error ordering on correlated inputs, prior masks, determinism and bad arguments.
@Suite struct OneShotPruningTests {
    static let small = try? OneShotCase(rows: 6, cols: 16, tokens: 64, seed: 101)

    static func layer() throws -> OneShotCase { try #require(small) }

    @Test func magnitudeZeroesTheSmallestWeightsOfTheLayer() throws {
        let layer = try Self.layer()
        let pruned = try OneShotPruning.prune(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: nil, method: .magnitude, target: .unstructured(0.3))
        let count = Int(0.3 * Double(layer.rows * layer.cols))
        #expect(pruned.prunedCount == count)
        let threshold = layer.weight.map(abs).sorted()[count - 1]
        for index in pruned.mask.indices {
            #expect(pruned.mask[index] == (abs(layer.weight[index]) > threshold))
            #expect(pruned.weights[index] == (pruned.mask[index] ? layer.weight[index] : 0))
        }
    }

    @Test func globalMagnitudeUsesOneThresholdAcrossLayers() throws {
        let a = OneShotPruning.LayerWeight(weight: normalValues(40, seed: 1).map { $0 * 0.1 }, rows: 4, cols: 10)
        let b = OneShotPruning.LayerWeight(weight: normalValues(60, seed: 2), rows: 6, cols: 10)
        let pruned = try OneShotPruning.globalMagnitude(layers: [a, b], fraction: 0.5)
        #expect(pruned[0].prunedCount + pruned[1].prunedCount == 50)
        // The small-valued layer loses more than half, the large one less.
        #expect(pruned[0].sparsity > 0.5 && pruned[1].sparsity < 0.5)
        let keptMinimum = zip(a.weight + b.weight, pruned[0].mask + pruned[1].mask).filter(\.1).map { abs($0.0) }.min() ?? 0
        let prunedMaximum = zip(a.weight + b.weight, pruned[0].mask + pruned[1].mask).filter { !$0.1 }.map { abs($0.0) }.max() ?? 0
        #expect(prunedMaximum <= keptMinimum)
    }

    @Test func wandaPrunesTheLowestMetricOfEachRow() throws {
        let layer = try Self.layer()
        let pruned = try OneShotPruning.prune(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: .wanda,
            target: .unstructured(0.5))
        for row in 0..<layer.rows {
            // ‖X_j‖₂ by hand from the inputs.
            let metric = (0..<layer.cols).map { j -> Double in
                let norm = (0..<layer.tokens).reduce(0.0) { $0 + Double(layer.inputs[$1 * layer.cols + j]) * Double(layer.inputs[$1 * layer.cols + j]) }
                return Double(abs(layer.weight[row * layer.cols + j])) * norm.squareRoot()
            }
            let expectedPruned = Set((0..<layer.cols).sorted { (metric[$0], $0) < (metric[$1], $1) }.prefix(layer.cols / 2))
            for j in 0..<layer.cols {
                #expect(pruned.mask[row * layer.cols + j] == !expectedPruned.contains(j), "row \(row) column \(j)")
            }
        }
        // No weight update: kept weights are the originals.
        for index in pruned.weights.indices where pruned.mask[index] { #expect(pruned.weights[index] == layer.weight[index]) }
    }

    @Test(arguments: [PruningMethod.magnitude, .wanda, .sparseGPT])
    func nOfMKeepsExactlyNInEveryGroup(method: PruningMethod) throws {
        let layer = try Self.layer()
        for (n, m) in [(2, 4), (1, 4), (4, 8)] {
            let pruned = try OneShotPruning.prune(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: method,
                target: .nOfM(n: n, m: m))
            for row in 0..<layer.rows {
                for start in stride(from: 0, to: layer.cols, by: m) {
                    let group = (start..<(start + m)).map { row * layer.cols + $0 }
                    #expect(group.filter { pruned.mask[$0] }.count == n, "\(method) \(n):\(m) row \(row) group \(start)")
                    #expect(group.filter { pruned.weights[$0] != 0 }.count == n)
                }
            }
            #expect(pruned.sparsity == 1 - Double(n) / Double(m))
        }
    }

    @Test(arguments: [PruningMethod.magnitude, .wanda, .sparseGPT])
    func unstructuredReachesTheExactFraction(method: PruningMethod) throws {
        let layer = try Self.layer()
        for fraction in [0.0, 0.25, 0.5, 0.7] {
            let pruned = try OneShotPruning.prune(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: method,
                target: .unstructured(fraction), options: OneShotPruningOptions(blockSize: 5))
            let expected = method == .wanda
                ? layer.rows * Int(fraction * Double(layer.cols)) : Int(fraction * Double(layer.rows * layer.cols))
            #expect(pruned.prunedCount == expected, "\(method) \(fraction)")
            #expect(pruned.weights.filter { $0 == 0 }.count == expected)
        }
    }

    @Test(arguments: [SparsityTarget.unstructured(0.5), .unstructured(0.6), .nOfM(n: 2, m: 4)], [4, 5, 16])
    func sparseGPTMatchesTheUnblockedOBSReference(target: SparsityTarget, blockSize: Int) throws {
        let layer = try Self.layer()
        let pruned = try OneShotPruning.prune(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: .sparseGPT,
            target: target, options: OneShotPruningOptions(blockSize: blockSize))
        let reference = OneShotReference.sparseGPT(layer, target: target, blockSize: blockSize)
        #expect(pruned.mask == reference.mask)
        let worst = worstRelativeDifference(pruned.weights, reference.weights)
        #expect(worst < 1e-4, "\(target) block \(blockSize): \(worst)")
        // Error compensation moved the kept weights.
        #expect(zip(pruned.weights, layer.weight).contains { $0 != 0 && $0 != $1 })
    }

    @Test func sparseGPTBlockSizesAgree() throws {
        let layer = try OneShotCase(rows: 8, cols: 64, tokens: 128, seed: 7)
        let mask = try OneShotPruning.prune(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: nil, method: .magnitude, target: .unstructured(0.5)
        ).mask
        // With the mask fixed, the blocked updates must equal one block over all columns.
        var results: [[Float]] = []
        for blockSize in [1, 7, 32, 128] {
            results.append(
                try SparseGPT.prune(
                    weight: layer.weight, rows: layer.rows, cols: layer.cols, hessian: layer.statistics.hessian,
                    target: .unstructured(0), options: OneShotPruningOptions(blockSize: blockSize, priorMask: mask)
                ).weights)
        }
        for result in results.dropFirst() { #expect(worstRelativeDifference(result, results[0]) < 1e-4) }
    }

    @Test(arguments: [PruningMethod.magnitude, .wanda, .sparseGPT])
    func priorZerosStayZero(method: PruningMethod) throws {
        let layer = try Self.layer()
        var prior = [Bool](repeating: true, count: layer.rows * layer.cols)
        for index in stride(from: 0, to: prior.count, by: 5) { prior[index] = false }
        let priorZeros = prior.filter { !$0 }.count
        for target in [SparsityTarget.unstructured(0.5), .nOfM(n: 2, m: 4)] {
            let pruned = try OneShotPruning.prune(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: method, target: target,
                options: OneShotPruningOptions(blockSize: 4, priorMask: prior))
            for index in prior.indices where !prior[index] {
                #expect(!pruned.mask[index] && pruned.weights[index] == 0, "\(method) \(target) index \(index)")
            }
            // The prior zeros (one in five) fit inside every comparison set's count, so the target is met exactly.
            #expect(priorZeros < prior.count / 2)
            #expect(pruned.prunedCount == prior.count / 2, "\(method) \(target)")
        }
        if method == .sparseGPT {
            let pruned = try OneShotPruning.prune(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: .sparseGPT,
                target: .unstructured(0.5), options: OneShotPruningOptions(blockSize: 4, priorMask: prior))
            let reference = OneShotReference.sparseGPT(layer, target: .unstructured(0.5), blockSize: 4, prior: prior)
            #expect(pruned.mask == reference.mask)
            #expect(worstRelativeDifference(pruned.weights, reference.weights) < 1e-4)
        }
    }

    /// On correlated inputs with outlier features, the methods that see the
    /// inputs reconstruct the layer's output better: SparseGPT ≤ Wanda ≤ magnitude.
    @Test(arguments: [SparsityTarget.unstructured(0.5), .nOfM(n: 2, m: 4)])
    func reconstructionErrorOrdersTheMethods(target: SparsityTarget) throws {
        let layer = try OneShotCase(rows: 24, cols: 64, tokens: 256, outliers: 4, seed: 301)
        var errors: [PruningMethod: Double] = [:]
        for method in PruningMethod.allCases {
            let pruned = try OneShotPruning.prune(
                weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: method, target: target,
                options: OneShotPruningOptions(blockSize: 16))
            errors[method] = layer.reconstructionError(pruned.weights)
        }
        let sparseGPT = try #require(errors[.sparseGPT])
        let wanda = try #require(errors[.wanda])
        let magnitude = try #require(errors[.magnitude])
        #expect(sparseGPT < wanda && wanda < magnitude, "\(target): sparsegpt \(sparseGPT) wanda \(wanda) magnitude \(magnitude)")
    }

    @Test func sameInputsGiveTheSameBits() throws {
        let layer = try Self.layer()
        for method in PruningMethod.allCases {
            for target in [SparsityTarget.unstructured(0.5), .nOfM(n: 2, m: 4)] {
                let run = {
                    try OneShotPruning.prune(
                        weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: layer.statistics, method: method,
                        target: target, options: OneShotPruningOptions(blockSize: 4))
                }
                let first = try run()
                let second = try run()
                #expect(first.mask == second.mask)
                #expect(first.weights.map(\.bitPattern) == second.weights.map(\.bitPattern))
            }
        }
    }

    @Test func deadInputsGetZeroWeights() throws {
        let layer = try Self.layer()
        var statistics = try LayerInputStatistics(columns: layer.cols)
        var inputs = layer.inputs
        for t in 0..<layer.tokens { inputs[t * layer.cols + 2] = 0 }
        try statistics.accumulate(rows: inputs, tokens: layer.tokens)
        let pruned = try OneShotPruning.prune(
            weight: layer.weight, rows: layer.rows, cols: layer.cols, statistics: statistics, method: .sparseGPT, target: .unstructured(0.25))
        for row in 0..<layer.rows { #expect(pruned.weights[row * layer.cols + 2] == 0) }
    }

    @Test func badArgumentsAreTypedErrors() throws {
        let layer = try Self.layer()
        func prune(_ target: SparsityTarget, method: PruningMethod = .magnitude, statistics: LayerInputStatistics? = nil,
                   options: OneShotPruningOptions = OneShotPruningOptions(), cols: Int? = nil) throws(OneShotError) {
            _ = try OneShotPruning.prune(
                weight: layer.weight, rows: layer.rows, cols: cols ?? layer.cols, statistics: statistics ?? layer.statistics,
                method: method, target: target, options: options)
        }
        #expect(throws: OneShotError.invalidSparsity(1.0)) { try prune(.unstructured(1.0)) }
        #expect(throws: OneShotError.invalidSparsity(-0.1)) { try prune(.unstructured(-0.1)) }
        #expect(throws: OneShotError.self) { try prune(.unstructured(.nan)) }
        #expect(throws: OneShotError.invalidNOfM(n: 5, m: 4)) { try prune(.nOfM(n: 5, m: 4)) }
        #expect(throws: OneShotError.invalidNOfM(n: 4, m: 4)) { try prune(.nOfM(n: 4, m: 4)) }
        #expect(throws: OneShotError.invalidNOfM(n: 0, m: 4)) { try prune(.nOfM(n: 0, m: 4)) }
        #expect(throws: OneShotError.nOfMDoesNotDivide(m: 3, cols: 16)) { try prune(.nOfM(n: 2, m: 3)) }
        #expect(throws: OneShotError.invalidShape(name: "the weight", count: 96, rows: 6, cols: 15)) { try prune(.unstructured(0.5), cols: 15) }
        #expect(throws: OneShotError.invalidBlockSize(0)) {
            try prune(.unstructured(0.5), method: .sparseGPT, options: OneShotPruningOptions(blockSize: 0))
        }
        #expect(throws: OneShotError.invalidDampening(-1)) {
            try prune(.unstructured(0.5), method: .sparseGPT, options: OneShotPruningOptions(dampening: -1))
        }
        #expect(throws: OneShotError.missingCalibration(method: "Wanda")) {
            try prune(.unstructured(0.5), method: .wanda, statistics: try LayerInputStatistics(columns: 16))
        }
        #expect(throws: OneShotError.widthMismatch(expected: 16, got: 8)) {
            var other = try LayerInputStatistics(columns: 8)
            try other.accumulate(rows: [Float](repeating: 1, count: 8), tokens: 1)
            try prune(.unstructured(0.5), method: .sparseGPT, statistics: other)
        }
        var badWeight = layer.weight
        badWeight[17] = .infinity
        #expect(throws: OneShotError.nonFiniteWeight(row: 1, column: 1)) {
            _ = try OneShotPruning.prune(
                weight: badWeight, rows: layer.rows, cols: layer.cols, statistics: nil, method: .magnitude, target: .unstructured(0.5))
        }
        #expect(throws: OneShotError.invalidShape(name: "the prior mask", count: 3, rows: 6, cols: 16)) {
            try prune(.unstructured(0.5), options: OneShotPruningOptions(priorMask: [true, false, true]))
        }
        // Messages say what to do.
        #expect(OneShotError.invalidNOfM(n: 4, m: 4).description.contains("0 < N < M"))
        #expect(OneShotError.nOfMDoesNotDivide(m: 3, cols: 16).description.contains("divides"))
    }
}
