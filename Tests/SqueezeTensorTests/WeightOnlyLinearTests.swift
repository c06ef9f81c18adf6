import Testing
@testable import SqueezeTensor

@Suite struct WeightOnlyLinearTests {
    let cpu = CPUBackend(threads: 2)
    let reference = ReferenceBackend()

    /// (M, N, K) with each of 1, 3, 31, 64, 65, 384 in every position.
    static let shapes: [(Int, Int, Int)] = {
        let sizes = [1, 3, 31, 64, 65, 384]
        var shapes: [(Int, Int, Int)] = []
        for i in sizes.indices {
            shapes.append((sizes[i], sizes[(i + 2) % 6], sizes[(i + 4) % 6]))
            shapes.append((sizes[(i + 3) % 6], sizes[i], sizes[(i + 1) % 6]))
        }
        return shapes
    }()

    /// The group sizes among 32, 64, 128 and K that divide K.
    static func groupSizes(_ k: Int) -> [Int] {
        Array(Set([32, 64, 128, k].filter { $0 >= 1 && k % $0 == 0 })).sorted()
    }

    static let kernels: [WeightOnlyKernel] = [.portable, .fused, .dequantizedSgemm]

    /// Every kernel against the reference (dequantise, then Double sums), for
    /// int4 and int8, symmetric and asymmetric, every valid group size; the
    /// fused kernels give identical bits, and `automatic` those of the one it picks.
    @Test(arguments: [4, 8])
    func everyKernelMatchesTheReference(width: Int) throws {
        var generator = SeededGenerator(seed: 40 + UInt64(width))
        for (m, n, k) in Self.shapes {
            let x = randomTensor([m, k], in: -2..<2, &generator)
            let bias = randomTensor([n], .contiguous, &generator)
            let weight = outlierWeights(n: n, k: k, &generator)
            for group in Self.groupSizes(k) {
                for mapping in PackedGroupWeights.Mapping.allCases {
                    let weights = try PackedGroupWeights(quantizing: weight, bits: width, groupSize: group, mapping: mapping)
                    let what = "\(m)×\(n)×\(k) int\(width) \(mapping) g\(group)"
                    let expected = reference.weightOnlyLinear(x, weights: weights, bias: bias)
                    var results: [WeightOnlyKernel: Tensor] = [:]
                    for kernel in Self.kernels {
                        let (result, ran) = cpu.weightOnlyProduct(x, weights: weights, bias: bias, kernel: kernel)
                        #expect(ran == kernel, "\(what)")
                        expectClose(result, expected, relative: 2e-5, "\(what) \(kernel)")
                        results[kernel] = result
                    }
                    let portable = try #require(results[.portable])
                    let fused = try #require(results[.fused])
                    #expect(firstMismatch(bits(fused), bits(portable)) == nil, "\(what): fused vs portable")
                    let automatic = cpu.weightOnlyProduct(x, weights: weights, bias: bias, kernel: .automatic)
                    #expect(automatic.kernel == (m <= CPUBackend.weightOnlyFusedRows ? .fused : .dequantizedSgemm))
                    let chosen = try #require(results[automatic.kernel])
                    #expect(firstMismatch(bits(automatic.result), bits(chosen)) == nil, "\(what): automatic")
                }
            }
        }
    }

    /// The same as the f32 product with the dequantised weight (no bias, a
    /// batch of rows above the fused limit, leading axes kept).
    @Test func agreesWithTheFloatLinearOnTheDequantisedWeight() throws {
        var generator = SeededGenerator(seed: 7)
        let weight = outlierWeights(n: 96, k: 128, &generator)
        for rows in [1, 7, CPUBackend.weightOnlyFusedRows + 1] {
            let x = randomTensor([rows, 1, 128], .contiguous, &generator)
            for bits in [4, 8] {
                let weights = try PackedGroupWeights(quantizing: weight, bits: bits, groupSize: 32)
                let result = cpu.weightOnlyLinear(x, weights: weights, bias: nil)
                #expect(result.shape == [rows, 1, 96])
                expectClose(result, cpu.linear(x, weight: weights.dequantized(), bias: nil), relative: 2e-5, "\(rows) rows int\(bits)")
            }
        }
    }

    /// A fused product's row does not depend on the rows next to it: one row
    /// alone (the register kernel) and inside batches of 5 and 70 (the
    /// buffered kernel, split into row tiles) give the same bits.
    @Test func fusedRowsDoNotDependOnTheBatch() throws {
        var generator = SeededGenerator(seed: 9)
        let x = randomTensor([70, 384], .contiguous, &generator)
        let bias = randomTensor([1536], .contiguous, &generator)
        for bits in [4, 8] {
            let weights = try PackedGroupWeights(
                quantizing: outlierWeights(n: 1536, k: 384, &generator), bits: bits, groupSize: 64, mapping: .asymmetric)
            let batch = cpu.weightOnlyProduct(x, weights: weights, bias: bias, kernel: .fused).result.floats
            for rows in [0..<5, 41..<42, 69..<70] {
                let part = cpu.weightOnlyProduct(x.sliced(axis: 0, rows), weights: weights, bias: bias, kernel: .fused).result
                let expected = Array(batch[(rows.lowerBound * 1536)..<(rows.upperBound * 1536)])
                #expect(firstMismatch(part.floats.map(\.bitPattern), expected.map(\.bitPattern)) == nil, "int\(bits) rows \(rows)")
            }
        }
    }

    /// 1, 2 and 3 threads give the same bits on both paths, with tiles along
    /// panels (few rows) and along rows for the fused kernel, along columns
    /// (32 rows, forced) and rows for sgemm; and the paths agree.
    @Test func resultsDoNotDependOnTheThreadCount() throws {
        var generator = SeededGenerator(seed: 11)
        let weights = try PackedGroupWeights(quantizing: outlierWeights(n: 1536, k: 384, &generator), bits: 4, groupSize: 32)
        let bias = randomTensor([1536], .contiguous, &generator)
        let backends = [1, 2, 3].map { CPUBackend(threads: $0) }
        let cases: [(rows: Int, kernel: WeightOnlyKernel)] = [
            (1, .automatic), (32, .automatic), (96, .fused), (32, .dequantizedSgemm), (300, .automatic),
        ]
        for (rows, kernel) in cases {
            let x = randomTensor([rows, 384], .contiguous, &generator)
            let results = backends.map { $0.weightOnlyProduct(x, weights: weights, bias: bias, kernel: kernel) }
            let tiles = results[0].kernel == .fused
                ? CPUBackend.weightOnlyTiles(m: rows, n: 1536, k: 384).count : CPUBackend.tiles(m: rows, n: 1536, k: 384).count
            #expect(tiles > 1, "\(rows) rows \(results[0].kernel): more than one tile")
            for result in results.dropFirst() {
                #expect(result.kernel == results[0].kernel)
                #expect(firstMismatch(bits(result.result), bits(results[0].result)) == nil, "\(rows) rows \(kernel)")
            }
            let fused = cpu.weightOnlyProduct(x, weights: weights, bias: bias, kernel: .fused).result
            expectClose(results[0].result, fused, relative: 2e-5, "\(rows) rows \(kernel) vs fused")
        }
    }

    /// Strided activations, leading axes, K = 0 (the bias) and no outputs.
    @Test func layoutsAndEmptyShapes() throws {
        var generator = SeededGenerator(seed: 13)
        let weights = try PackedGroupWeights(quantizing: outlierWeights(n: 20, k: 64, &generator), bits: 4, groupSize: 32)
        let bias = randomTensor([20], .contiguous, &generator)
        for layout in Layout.allCases {
            let x = randomTensor([2, 3, 64], layout, &generator)
            let result = cpu.weightOnlyLinear(x, weights: weights, bias: bias)
            #expect(result.shape == [2, 3, 20])
            #expect(bits(result) == bits(cpu.weightOnlyLinear(x.contiguous(), weights: weights, bias: bias)), "\(layout)")
            expectClose(result, reference.weightOnlyLinear(x, weights: weights, bias: bias), relative: 2e-5, "\(layout)")
        }
        let empty = try PackedGroupWeights(quantizing: Tensor(zeros: [20, 0]), bits: 8, groupSize: 4)
        for kernel in Self.kernels {
            let (result, _) = cpu.weightOnlyProduct(Tensor(zeros: [3, 0]), weights: empty, bias: bias, kernel: kernel)
            #expect(result.shape == [3, 20] && result.floats == Array((0..<3).map { _ in bias.floats }.joined()))
        }
        #expect(cpu.weightOnlyLinear(Tensor(zeros: [0, 64]), weights: weights, bias: bias).shape == [0, 20])
        let none = try PackedGroupWeights(quantizing: Tensor(zeros: [0, 64]), bits: 4, groupSize: 64)
        #expect(cpu.weightOnlyLinear(randomTensor([2, 64], .contiguous, &generator), weights: none, bias: nil).shape == [2, 0])
    }
}
