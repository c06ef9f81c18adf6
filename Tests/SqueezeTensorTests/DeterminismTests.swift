import Synchronization
import Testing
@testable import SqueezeTensor

/// Same inputs, same bits: repeated calls and different thread counts.
@Suite struct DeterminismTests {
    /// Workers take chunks as they free up: still every chunk exactly once,
    /// for more, as many and fewer chunks than threads.
    @Test func chunkRunnerRunsEveryChunkOnce() {
        for threads in [1, 2, 3, 8] {
            for chunks in [0, 1, 2, 7, 64] {
                let counts = Mutex([Int](repeating: 0, count: chunks))
                ChunkRunner(threads: threads).run(chunks: chunks) { chunk in counts.withLock { $0[chunk] += 1 } }
                #expect(counts.withLock { $0 } == [Int](repeating: 1, count: chunks), "\(threads) threads, \(chunks) chunks")
            }
        }
    }

    @Test func everyOpIsBitIdenticalAcrossRunsAndThreadCounts() {
        var generator = SeededGenerator(seed: 201)
        let backends = [CPUBackend(threads: 1), CPUBackend(threads: 2), CPUBackend(threads: 3)]
        // Large enough that every op splits into several chunks.
        let x = randomTensor([300, 257], .contiguous, in: -3..<3, &generator)
        let y = randomTensor([300, 257], .transposed, &generator)
        let row = randomTensor([257], .contiguous, &generator)
        let gamma = randomTensor([257], .contiguous, in: 0.5..<1.5, &generator)
        let a = randomTensor([2, 200, 160], .contiguous, &generator)
        let w = randomTensor([160, 220], .sliced, &generator)
        let ids = randomIDs([700], upper: 300, &generator)
        let labels = randomIDs([300], upper: 257, &generator)
        func outputs(_ backend: CPUBackend) -> [[UInt32]] {
            let norm = backend.layerNorm(x, gamma: gamma, beta: row, epsilon: 1e-5)
            let back = backend.layerNormBackward(y, x, gamma: gamma, mean: norm.mean, inverseStd: norm.inverseStd)
            var p = x
            var m = y
            var v = backend.multiply(y, y)
            backend.adamWUpdate(parameter: &p, gradient: y, firstMoment: &m, secondMoment: &v, hyperparameters: AdamWHyperparameters(learningRate: 1e-3, weightDecay: 0.01), step: 3)
            let entropy = backend.crossEntropy(x, labels: labels)
            return [
                bits(backend.matmul(a, w, transposeA: false, transposeB: false, alpha: 1)),
                bits(backend.matmul(a, a, transposeA: true, transposeB: false, alpha: 1)),
                bits(backend.matmul(a.sliced(axis: 1, 0..<20), w, transposeA: false, transposeB: false, alpha: 1)),
                bits(backend.add(x, row)), bits(backend.multiply(x, y)), bits(backend.affine(x, scale: 2, shift: 1)),
                bits(backend.gelu(x)), bits(backend.geluBackward(x, y)), bits(backend.tanh(x)), bits(backend.tanhBackward(x, y)),
                bits(backend.softmax(x)), bits(backend.softmaxBackward(x, y)), bits(backend.logSoftmax(x)),
                bits(backend.logSoftmaxBackward(x, y)), bits(norm.output), bits(back.input), bits(back.gamma), bits(back.beta),
                bits(backend.reduce(y, toShape: [257])), bits(backend.sum(x, axes: [1], keepDimensions: false)),
                bits(backend.mean(x, axes: [0], keepDimensions: false)), bits(backend.max(x, axis: 0, keepDimensions: false).values),
                bits(backend.gather(x, ids)), bits(backend.scatterAdd(backend.gather(x, ids), ids, rows: 300)),
                bits(backend.maskedFill(x, mask: labels.reshaped([300, 1]), value: -1)),
                bits(backend.dropout(x, probability: 0.1, seed: 1, stream: 2).output), bits(p), bits(m), bits(v),
                bits(entropy.loss), bits(entropy.probabilities),
                [UInt32(truncatingIfNeeded: backend.sumOfSquares(x).bitPattern)],
            ]
        }
        let first = outputs(backends[0])
        let again = outputs(backends[0])
        for index in first.indices where first[index] != again[index] {
            Issue.record("output \(index) differs between two runs")
        }
        for backend in backends.dropFirst() {
            let other = outputs(backend)
            for index in first.indices where first[index] != other[index] {
                Issue.record("output \(index) differs with \(backend.threads) threads")
            }
        }
    }
}
