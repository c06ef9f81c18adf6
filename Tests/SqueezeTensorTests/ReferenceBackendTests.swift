import Foundation
import Testing
@testable import SqueezeTensor

/// Hand-computed values for the specification backend.
@Suite struct ReferenceBackendTests {
    let backend = ReferenceBackend()

    @Test func matmulAllTransposeCombinations() {
        let a = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3, 2], floats: [7, 8, 9, 10, 11, 12])
        let expected: [Float] = [58, 64, 139, 154]
        #expect(backend.matmul(a, b, transposeA: false, transposeB: false, alpha: 1).floats == expected)
        let at = a.transposed(0, 1).contiguous()
        let bt = b.transposed(0, 1).contiguous()
        #expect(backend.matmul(at, b, transposeA: true, transposeB: false, alpha: 1).floats == expected)
        #expect(backend.matmul(a, bt, transposeA: false, transposeB: true, alpha: 1).floats == expected)
        #expect(backend.matmul(at, bt, transposeA: true, transposeB: true, alpha: 0.5).floats == expected.map { $0 / 2 })
    }

    @Test func matmulSharedAndBatched() {
        let a = Tensor(shape: [2, 1, 2], floats: [1, 2, 3, 4])
        let shared = Tensor(shape: [2, 2], floats: [1, 0, 0, 2])
        let product = backend.matmul(a, shared, transposeA: false, transposeB: false, alpha: 1)
        #expect(product.shape == [2, 1, 2])
        #expect(product.floats == [1, 4, 3, 8])
        let batched = Tensor(shape: [2, 2, 1], floats: [1, 1, 2, 2])
        #expect(backend.matmul(a, batched, transposeA: false, transposeB: false, alpha: 1).floats == [3, 14])
    }

    @Test func broadcastingElementwise() {
        let a = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let row = Tensor(shape: [3], floats: [10, 20, 30])
        let column = Tensor(shape: [2, 1], floats: [100, 200])
        #expect(backend.add(a, row).floats == [11, 22, 33, 14, 25, 36])
        #expect(backend.subtract(column, a).floats == [99, 98, 97, 196, 195, 194])
        #expect(backend.multiply(row, column).shape == [2, 3])
        #expect(backend.affine(a, scale: 2, shift: -1).floats == [1, 3, 5, 7, 9, 11])
        #expect(backend.reduce(a, toShape: [3]).floats == [5, 7, 9])
        #expect(backend.reduce(a, toShape: [2, 1]).floats == [6, 15])
        #expect(backend.reduce(a, toShape: [1]).floats == [21])
    }

    @Test func softmaxAndLayerNormKnownValues() {
        let x = Tensor(shape: [1, 2], floats: [0, Float(Foundation.log(3.0))])
        let y = backend.softmax(x).floats
        #expect(abs(y[0] - 0.25) < 1e-7 && abs(y[1] - 0.75) < 1e-7)
        let logY = backend.logSoftmax(x).floats
        #expect(abs(logY[0] - Float(Foundation.log(0.25))) < 1e-6)
        let norm = backend.layerNorm(
            Tensor(shape: [1, 2], floats: [1, 3]), gamma: Tensor(shape: [2], floats: [1, 2]),
            beta: Tensor(shape: [2], floats: [0, 1]), epsilon: 0)
        #expect(norm.output.floats == [-1, 3])
        #expect(norm.mean.floats == [2])
        #expect(norm.inverseStd.floats == [1])
    }

    @Test func geluMatchesKnownValues() {
        // GELU(1) = Φ(1) = 0.841344746..., GELU(−1) = −(1 − Φ(1)).
        let y = backend.gelu(Tensor(shape: [3], floats: [0, 1, -1])).floats
        #expect(y[0] == 0)
        #expect(abs(y[1] - 0.8413447) < 1e-7)
        #expect(abs(y[2] + 0.1586553) < 1e-7)
    }

    @Test func gatherScatterMaxAndSums() {
        let table = Tensor(shape: [3, 2], floats: [1, 2, 3, 4, 5, 6])
        let ids = Tensor(shape: [2, 2], int32s: [2, 0, 2, 1])
        let picked = backend.gather(table, ids)
        #expect(picked.shape == [2, 2, 2])
        #expect(picked.floats == [5, 6, 1, 2, 5, 6, 3, 4])
        #expect(backend.scatterAdd(picked, ids, rows: 3).floats == [1, 2, 3, 4, 10, 12])
        let (values, indices) = backend.max(Tensor(shape: [2, 3], floats: [1, 7, 7, 9, 2, 3]), axis: -1, keepDimensions: false)
        #expect(values.floats == [7, 9])
        #expect(indices.int32s == [1, 0])
        let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        #expect(backend.sum(x, axes: [0], keepDimensions: true).shape == [1, 3])
        #expect(backend.sum(x, axes: [0, 1], keepDimensions: false).floats == [21])
        #expect(backend.mean(x, axes: [-1], keepDimensions: false).floats == [2, 5])
        #expect(backend.sumOfSquares(x) == 91)
        let filled = backend.maskedFill(x, mask: Tensor(shape: [3], int32s: [0, 1, 0]), value: -9)
        #expect(filled.floats == [1, -9, 3, 4, -9, 6])
    }

    @Test func crossEntropyOfUniformLogits() {
        let logits = Tensor(zeros: [2, 4])
        let labels = Tensor(shape: [2], int32s: [1, 3])
        let (loss, probabilities) = backend.crossEntropy(logits, labels: labels)
        #expect(abs(loss.scalarValue - Float(Foundation.log(4.0))) < 1e-6)
        let gradient = backend.crossEntropyBackward(probabilities: probabilities, labels: labels, dLoss: 1)
        #expect(gradient.floats == [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375])
    }

    @Test func dropoutMaskIsZeroOrScaledAndRespectsP() {
        let x = Tensor(shape: [4000], floats: [Float](repeating: 1, count: 4000))
        let (output, mask) = backend.dropout(x, probability: 0.25, seed: 7, stream: 3)
        let scale: Float = 1 / 0.75
        #expect(mask.floats.allSatisfy { $0 == 0 || $0 == scale })
        #expect(output.floats == mask.floats)
        let dropped = mask.floats.filter { $0 == 0 }.count
        #expect(abs(dropped - 1000) < 120)
        let again = backend.dropout(x, probability: 0.25, seed: 7, stream: 3).mask
        #expect(again.floats == mask.floats)
        let otherStream = backend.dropout(x, probability: 0.25, seed: 7, stream: 4).mask
        #expect(otherStream.floats != mask.floats)
    }
}

@Suite struct RandomTests {
    @Test func seededGeneratorIsReproducibleAndSeedSensitive() {
        var a = SeededGenerator(seed: 42)
        var b = SeededGenerator(seed: 42)
        var c = SeededGenerator(seed: 43)
        let first = (0..<8).map { _ in a.next() }
        #expect(first == (0..<8).map { _ in b.next() })
        #expect(first != (0..<8).map { _ in c.next() })
    }

    @Test func uniformAndNormalHaveTheRightMoments() {
        var generator = SeededGenerator(seed: 1)
        let u = (0..<20000).map { _ in generator.uniform() }
        #expect(u.allSatisfy { $0 >= 0 && $0 < 1 })
        let uMean = u.reduce(0, +) / Float(u.count)
        #expect(abs(uMean - 0.5) < 0.01)
        let n = Tensor.normal(shape: [20000], mean: 2, standardDeviation: 3, generator: &generator).floats
        let mean = n.reduce(0.0) { $0 + Double($1) } / Double(n.count)
        let variance = n.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n.count)
        #expect(abs(mean - 2) < 0.1)
        #expect(abs(variance.squareRoot() - 3) < 0.1)
    }

    @Test func randomBitsIsAPureFunctionOfItsCounter() {
        #expect(randomBits(seed: 1, stream: 2, index: 3) == randomBits(seed: 1, stream: 2, index: 3))
        let values = Set((0..<1000).map { randomBits(seed: 1, stream: 2, index: UInt64($0)) })
        #expect(values.count == 1000)
        #expect(randomBits(seed: 1, stream: 2, index: 0) != randomBits(seed: 1, stream: 3, index: 0))
        #expect(randomBits(seed: 1, stream: 2, index: 0) != randomBits(seed: 2, stream: 2, index: 0))
        // Roughly half the bits set on average.
        let ones = (0..<1000).reduce(0) { $0 + randomBits(seed: 9, stream: 0, index: UInt64($1)).nonzeroBitCount }
        #expect(abs(Double(ones) / 1000 - 32) < 1)
    }
}
