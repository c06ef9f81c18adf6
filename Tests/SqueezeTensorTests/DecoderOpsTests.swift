import Foundation
import Testing
@testable import SqueezeTensor

/// Element-wise closeness, `|actual − expected| ≤ absolute + relative·|expected|`
/// per element (for inputs whose magnitudes span many orders, where
/// `expectClose`'s scale-wide absolute tolerance would say nothing).
private func expectElementwiseClose(
    _ actual: Tensor, _ expected: Tensor, relative: Float, absolute: Float, _ what: @autoclosure () -> String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.shape == expected.shape, "\(what()): shape \(actual.shape) vs \(expected.shape)", sourceLocation: sourceLocation)
    guard actual.shape == expected.shape else { return }
    let a = actual.floats, e = expected.floats
    let (ratio, index) = worstViolation(a, e, absolute: absolute, relative: relative)
    #expect(
        ratio <= 1, "\(what()): element \(index) is \(index >= 0 ? a[index] : 0), expected \(index >= 0 ? e[index] : 0)",
        sourceLocation: sourceLocation)
}

/// Inputs of `count` elements in −12..<12 with the values the stable
/// sigmoid and the clamps branch on (and overflow candidates) at the front.
private func wideInputs(_ shape: [Int], seed: UInt64) -> Tensor {
    var generator = SeededGenerator(seed: seed)
    let count = shape.reduce(1, *)
    var values = (0..<count).map { _ in generator.uniform(in: -12..<12) }
    let special: [Float] = [
        0, -0.0, 1e-30, -1e-30, -87.4, 88.5, -88.5, -9.6, 9.6, -20, 20, -100, 100, -1e4, 1e4, -1e6, 1e6, -1e20, 1e20,
        3e38, -3e38,
    ]
    for (index, value) in special.enumerated() where index < count { values[index] = value }
    return Tensor(shape: shape, floats: values)
}

/// The decoder ops' CPU kernels against the reference, on odd shapes, views
/// and the whole float range.
@Suite struct DecoderOpsCPUTests {
    let cpu = CPUBackend(threads: 2)
    let reference = ReferenceBackend()

    static let elementShapes: [[Int]] = [[1], [7], [13, 33], [3, 1, 7], [2, 3, 5, 7], [5, 200]]
    static let rowShapes: [[Int]] = [[7], [1, 1], [13, 33], [3, 1, 129], [2, 5, 64], [4, 8], [3, 2]]

    @Test func geluTanhMatchesReference() {
        var generator = SeededGenerator(seed: 301)
        for shape in Self.elementShapes {
            for layout in Layout.allCases {
                let x = randomTensor(shape, layout, in: -6..<6, &generator)
                let dy = randomTensor(shape, layout == .contiguous ? .sliced : .contiguous, &generator)
                expectClose(cpu.geluTanh(x), reference.geluTanh(x), "geluTanh \(shape) \(layout)")
                expectClose(cpu.geluTanhBackward(x, dy), reference.geluTanhBackward(x, dy), "geluTanhBackward \(shape) \(layout)")
            }
        }
        let wide = wideInputs([5, 43], seed: 302)
        let dy = randomTensor([5, 43], .contiguous, &generator)
        expectElementwiseClose(cpu.geluTanh(wide), reference.geluTanh(wide), relative: 1e-5, absolute: 1e-7, "geluTanh, large |x|")
        expectElementwiseClose(
            cpu.geluTanhBackward(wide, dy), reference.geluTanhBackward(wide, dy), relative: 1e-5, absolute: 1e-6,
            "geluTanhBackward, large |x|")
        #expect(cpu.geluTanh(wide).floats.allSatisfy { $0.isFinite }, "geluTanh overflowed")
        #expect(cpu.geluTanhBackward(wide, dy).floats.allSatisfy { $0.isFinite }, "geluTanhBackward overflowed")
    }

    @Test func gatedSiLUMatchesReference() {
        var generator = SeededGenerator(seed: 303)
        for shape in Self.elementShapes {
            for layout in Layout.allCases {
                let gate = randomTensor(shape, layout, in: -6..<6, &generator)
                let up = randomTensor(shape, layout == .transposed ? .sliced : .transposed, &generator)
                let dy = randomTensor(shape, .contiguous, &generator)
                expectClose(cpu.gatedSiLU(gate: gate, up: up), reference.gatedSiLU(gate: gate, up: up), "gatedSiLU \(shape) \(layout)")
                let fast = cpu.gatedSiLUBackward(dy, gate: gate, up: up)
                let slow = reference.gatedSiLUBackward(dy, gate: gate, up: up)
                expectClose(fast.gate, slow.gate, "gatedSiLUBackward gate \(shape) \(layout)")
                expectClose(fast.up, slow.up, "gatedSiLUBackward up \(shape) \(layout)")
            }
        }
        let gate = wideInputs([3, 47], seed: 304)
        // |up| < 1, so silu(3e38)·up stays below the largest float.
        let up = randomTensor([3, 47], .contiguous, in: -0.9..<0.9, &generator)
        let dy = randomTensor([3, 47], .contiguous, &generator)
        expectElementwiseClose(
            cpu.gatedSiLU(gate: gate, up: up), reference.gatedSiLU(gate: gate, up: up), relative: 1e-5, absolute: 1e-7,
            "gatedSiLU, large |gate|")
        let fast = cpu.gatedSiLUBackward(dy, gate: gate, up: up)
        let slow = reference.gatedSiLUBackward(dy, gate: gate, up: up)
        expectElementwiseClose(fast.gate, slow.gate, relative: 1e-5, absolute: 1e-6, "gatedSiLUBackward gate, large |gate|")
        expectElementwiseClose(fast.up, slow.up, relative: 1e-5, absolute: 1e-7, "gatedSiLUBackward up, large |gate|")
        #expect((fast.gate.floats + fast.up.floats).allSatisfy { $0.isFinite }, "gatedSiLUBackward overflowed")
    }

    @Test func rmsNormMatchesReference() {
        var generator = SeededGenerator(seed: 305)
        for shape in Self.rowShapes {
            for layout in Layout.allCases {
                let columns = shape[shape.count - 1]
                let x = randomTensor(shape, layout, in: -3..<3, &generator)
                let gamma = randomTensor([columns], .contiguous, in: 0.5..<1.5, &generator)
                let dy = randomTensor(shape, layout == .contiguous ? .transposed : .contiguous, &generator)
                for epsilon: Float in [1e-6, 0.1] {
                    let fast = cpu.rmsNorm(x, gamma: gamma, epsilon: epsilon)
                    let slow = reference.rmsNorm(x, gamma: gamma, epsilon: epsilon)
                    expectClose(fast.output, slow.output, "rmsNorm \(shape) \(layout) ε \(epsilon)")
                    expectClose(fast.inverseRMS, slow.inverseRMS, "rmsNorm 1/rms \(shape) \(layout) ε \(epsilon)")
                    #expect(fast.inverseRMS.shape == [shape.dropLast().reduce(1, *)])
                    let fastBack = cpu.rmsNormBackward(dy, x, gamma: gamma, inverseRMS: fast.inverseRMS)
                    let slowBack = reference.rmsNormBackward(dy, x, gamma: gamma, inverseRMS: slow.inverseRMS)
                    expectClose(fastBack.input, slowBack.input, relative: 2e-5, "rmsNormBackward input \(shape) \(layout)")
                    expectClose(fastBack.gamma, slowBack.gamma, relative: 2e-5, "rmsNormBackward gamma \(shape) \(layout)")
                }
            }
        }
        // Rows over many chunks, so the γ gradient adds several partial sums.
        let x = randomTensor([700, 37], .contiguous, &generator)
        let gamma = randomTensor([37], .contiguous, in: 0.5..<1.5, &generator)
        let dy = randomTensor([700, 37], .contiguous, &generator)
        let fast = cpu.rmsNorm(x, gamma: gamma, epsilon: 1e-5)
        expectClose(fast.output, reference.rmsNorm(x, gamma: gamma, epsilon: 1e-5).output, "rmsNorm 700 rows")
        let fastBack = cpu.rmsNormBackward(dy, x, gamma: gamma, inverseRMS: fast.inverseRMS)
        let slowBack = reference.rmsNormBackward(dy, x, gamma: gamma, inverseRMS: fast.inverseRMS)
        expectClose(fastBack.input, slowBack.input, relative: 2e-5, "rmsNormBackward input, 700 rows")
        expectClose(fastBack.gamma, slowBack.gamma, relative: 2e-5, "rmsNormBackward gamma, 700 rows")
    }

    @Test(arguments: [false, true])
    func rotaryMatchesReference(inverse: Bool) {
        var generator = SeededGenerator(seed: 306)
        let shapes: [(b: Int, t: Int, h: Int, d: Int)] = [(1, 1, 1, 2), (2, 3, 5, 6), (3, 7, 2, 64), (1, 33, 3, 64), (2, 5, 1, 2)]
        for (b, t, h, d) in shapes {
            let frequencies = Rotary.inverseFrequencies(headDimension: d, theta: 10_000)
            let (cos, sin) = Rotary.rotaryTables(positions: 5..<(5 + t), headDimension: d, inverseFrequencies: frequencies)
            let x = randomTensor([b, t, h, d], .contiguous, in: -2..<2, &generator)
            expectClose(
                cpu.rotary(x, cos: cos, sin: sin, inverse: inverse), reference.rotary(x, cos: cos, sin: sin, inverse: inverse),
                "rotary [\(b), \(t), \(h), \(d)]")
            // Heads split off as a view: [B, H, T, d] stored, read as [B, T, H, d].
            let view = randomTensor([b, h, t, d], .contiguous, &generator).transposed(1, 2)
            expectClose(
                cpu.rotary(view, cos: cos, sin: sin, inverse: inverse),
                reference.rotary(view, cos: cos, sin: sin, inverse: inverse), "rotary view [\(b), \(t), \(h), \(d)]")
            // Tables that are views too (a window of a longer table).
            let (longCos, longSin) = Rotary.rotaryTables(positions: 0..<(t + 9), headDimension: d, inverseFrequencies: frequencies)
            let windowCos = longCos.sliced(axis: 0, 5..<(5 + t)), windowSin = longSin.sliced(axis: 0, 5..<(5 + t))
            #expect(cpu.rotary(x, cos: windowCos, sin: windowSin, inverse: inverse).floats == cpu.rotary(x, cos: cos, sin: sin, inverse: inverse).floats)
        }
    }

    @Test func decoderOpsAreBitIdenticalAcrossRunsAndThreadCounts() {
        var generator = SeededGenerator(seed: 307)
        let x = randomTensor([300, 257], .contiguous, in: -6..<6, &generator)
        let y = randomTensor([300, 257], .transposed, &generator)
        let gamma = randomTensor([257], .contiguous, in: 0.5..<1.5, &generator)
        let heads = randomTensor([2, 40, 8, 64], .contiguous, &generator)
        let (cos, sin) = Rotary.rotaryTables(
            positions: 0..<40, headDimension: 64, inverseFrequencies: Rotary.inverseFrequencies(headDimension: 64, theta: 10_000))
        func outputs(_ backend: CPUBackend) -> [[UInt32]] {
            let norm = backend.rmsNorm(x, gamma: gamma, epsilon: 1e-6)
            let back = backend.rmsNormBackward(y, x, gamma: gamma, inverseRMS: norm.inverseRMS)
            let gated = backend.gatedSiLUBackward(y, gate: x, up: y)
            return [
                bits(norm.output), bits(norm.inverseRMS), bits(back.input), bits(back.gamma),
                bits(backend.geluTanh(x)), bits(backend.geluTanhBackward(x, y)), bits(backend.gatedSiLU(gate: x, up: y)),
                bits(gated.gate), bits(gated.up), bits(backend.rotary(heads, cos: cos, sin: sin, inverse: false)),
                bits(backend.rotary(heads, cos: cos, sin: sin, inverse: true)),
            ]
        }
        let first = outputs(CPUBackend(threads: 1))
        #expect(first == outputs(CPUBackend(threads: 1)), "two runs differ")
        #expect(first == outputs(CPUBackend(threads: 2)), "1 and 2 threads differ")
        #expect(first == outputs(CPUBackend(threads: 3)), "1 and 3 threads differ")
    }
}

/// Known values, on both backends.
@Suite struct DecoderOpsValueTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]

    @Test(arguments: backends)
    func rmsNormOfAHandComputedCase(backend: any Backend) {
        // Row [3, 4]: mean(x²) = 12.5, + ε 0.5 = 13, so 1/rms = 1/√13; γ = [1, 2].
        // Row [0, 0]: mean 0, + ε = 0.5, 1/rms = √2, output 0.
        let x = Tensor(shape: [2, 2], floats: [3, 4, 0, 0])
        let result = backend.rmsNorm(x, gamma: Tensor(shape: [2], floats: [1, 2]), epsilon: 0.5)
        let inverse = 1 / Float(13).squareRoot()
        expectClose(result.output, Tensor(shape: [2, 2], floats: [3 * inverse, 8 * inverse, 0, 0]), relative: 1e-6, absolute: 1e-7, "\(backend.id)")
        expectClose(result.inverseRMS, Tensor(shape: [2], floats: [inverse, Float(2).squareRoot()]), relative: 1e-6, "\(backend.id)")
    }

    @Test(arguments: backends)
    func rotaryTurnsATwoVectorByItsAngle(backend: any Backend) {
        // d = 2: the pair (x₀, x₁) turns by θ; token 1 turns by 2θ.
        let theta = Float.pi / 6
        let cos = Tensor(shape: [2, 1], floats: [Float(Foundation.cos(Double(theta))), Float(Foundation.cos(Double(2 * theta)))])
        let sin = Tensor(shape: [2, 1], floats: [Float(Foundation.sin(Double(theta))), Float(Foundation.sin(Double(2 * theta)))])
        let x = Tensor(shape: [1, 2, 1, 2], floats: [2, 1, 1, 0])
        let c = Float(Foundation.cos(Double(theta))), s = Float(Foundation.sin(Double(theta)))
        let expected = Tensor(shape: [1, 2, 1, 2], floats: [2 * c - s, 1 * c + 2 * s, 0.5, Float(3).squareRoot() / 2])
        expectClose(backend.rotary(x, cos: cos, sin: sin, inverse: false), expected, relative: 1e-6, absolute: 1e-6, "\(backend.id)")
        let back = Tensor(shape: [1, 2, 1, 2], floats: [2 * c + s, 1 * c - 2 * s, 0.5, -Float(3).squareRoot() / 2])
        expectClose(backend.rotary(x, cos: cos, sin: sin, inverse: true), back, relative: 1e-6, absolute: 1e-6, "\(backend.id) inverse")
    }

    @Test(arguments: backends)
    func rotaryThenInverseIsTheIdentity(backend: any Backend) {
        var generator = SeededGenerator(seed: 311)
        for d in [2, 6, 64] {
            let x = randomTensor([2, 9, 3, d], .contiguous, in: -3..<3, &generator)
            let (cos, sin) = Rotary.rotaryTables(
                positions: 100..<109, headDimension: d, inverseFrequencies: Rotary.inverseFrequencies(headDimension: d, theta: 500_000))
            let turned = backend.rotary(x, cos: cos, sin: sin, inverse: false)
            expectClose(backend.rotary(turned, cos: cos, sin: sin, inverse: true), x, relative: 1e-6, absolute: 3e-6, "\(backend.id) d \(d)")
            #expect(turned.floats != x.floats, "\(backend.id) d \(d): nothing turned")
        }
    }

    /// PyTorch 2.x float32 values of `gelu_new` and `silu` (printed by the
    /// torch venv). `gelu_new` computes ½·x·(1 + tanh u) in f32, which cancels
    /// for negative x (−2.98e−7 at −5 where the function is −2.3e−7); ours does
    /// not, so the tolerance allows that 7e−8.
    @Test(arguments: backends)
    func activationsMatchPyTorch(backend: any Backend) {
        let x = Tensor(shape: [13], floats: [-20, -10, -5, -3, -1, -0.5, 0, 0.5, 1, 3, 5, 10, 30])
        let geluNew = Tensor(shape: [13], floats: [
            -0.0, -0.0, -2.980232238769531e-07, -0.0036374330520629883, -0.15880799293518066, -0.1542859971523285, 0,
            0.3457140028476715, 0.8411920070648193, 2.9963626861572266, 4.999999523162842, 10, 30,
        ])
        let silu = Tensor(shape: [13], floats: [
            -4.1223074731533416e-08, -0.0004539787187241018, -0.033464252948760986, -0.14227761328220367,
            -0.2689414322376251, -0.1887703388929367, 0, 0.3112296760082245, 0.7310585975646973, 2.857722520828247,
            4.966535568237305, 9.99954605102539, 30,
        ])
        expectElementwiseClose(backend.geluTanh(x), geluNew, relative: 1e-6, absolute: 1e-7, "\(backend.id) gelu_new")
        let ones = Tensor(shape: [13], floats: [Float](repeating: 1, count: 13))
        expectElementwiseClose(backend.gatedSiLU(gate: x, up: ones), silu, relative: 1e-6, absolute: 1e-12, "\(backend.id) silu")
    }

    /// Hugging Face transformers 4.x / 5.x Llama (`LlamaRotaryEmbedding` with
    /// θ 10⁴ at positions 5, 6, 7 and `apply_rotary_pos_emb`; `LlamaRMSNorm`
    /// with ε 1e−6 and weight [0.5, 1, 1.5, 2]) on x[i] = ((7i mod 11) − 5)/4,
    /// shape [1, 3, 2, 4], as printed by the torch venv (transformers 5.25.0,
    /// torch 2.15.0, f32): the "rotate half" pairing and RMSNorm's rounding.
    @Test(arguments: backends)
    func llamaRotaryAndRMSNormMatchHuggingFace(backend: any Backend) {
        let x = Tensor(shape: [1, 3, 2, 4], floats: (0..<24).map { Float(($0 * 7) % 11 - 5) / 4 })
        let (cos, sin) = Rotary.rotaryTables(
            positions: 5..<8, headDimension: 4, inverseFrequencies: Rotary.inverseFrequencies(headDimension: 4, theta: 10_000))
        let rotated = Tensor(shape: [1, 3, 2, 4], floats: [
            -0.8340399265289307, 0.43690118193626404, 1.0568242073059082, 1.2734274864196777, 1.0298398733139038,
            -0.749062716960907, 0.04393112659454346, -0.03748437389731407, -1.0300241708755493, 0.8236054182052612,
            0.039372920989990234, -1.202777624130249, 0.8293545246124268, -0.5140912532806396, 1.0605051517486572,
            0.219568133354187, -0.5654267072677612, 1.0674939155578613, -0.4927399456501007, -0.9276081919670105,
            1.3866599798202515, -0.2843591868877411, -0.44963786005973816, 0.481289803981781,
        ])
        expectElementwiseClose(
            backend.rotary(x, cos: cos, sin: sin, inverse: false), rotated, relative: 1e-6, absolute: 2e-7, "\(backend.id) rotary")
        let normalised = Tensor(shape: [1, 3, 2, 4], floats: [
            -0.6565317511558533, 0.5252254009246826, -0.7878381013870239, 2.626127004623413, 0.1961158961057663,
            -1.1766953468322754, 2.353390693664551, 0, -0.5601117014884949, 0.8401675224304199, -0.42008376121520996,
            -2.800558567047119, 0.34299683570861816, -0.6859936714172363, 2.572476387023926, 0.6859936714172363,
            -0.4685209393501282, 1.2493891716003418, 0, -2.4987783432006836, 0.48038408160209656, -0.3202560544013977,
            -2.4019203186035156, 1.2810242176055908,
        ])
        let gamma = Tensor(shape: [4], floats: [0.5, 1, 1.5, 2])
        expectElementwiseClose(
            backend.rmsNorm(x, gamma: gamma, epsilon: 1e-6).output, normalised, relative: 1e-6, absolute: 1e-7,
            "\(backend.id) rmsNorm")
    }

    /// Bit patterns of `1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`
    /// from PyTorch (f32), as Hugging Face's default rotary embedding builds them.
    @Test func inverseFrequenciesAreHuggingFacesBits() {
        let expected: [(d: Int, theta: Double, bits: [UInt32])] = [
            (6, 10_000, [0x3f80_0000, 0x3d3e_1e95, 0x3b0d_3169]),
            (64, 10_000, [
                0x3f80_0000, 0x3f3f_f911, 0x3f0f_f59a, 0x3ed7_e89b, 0x3ea1_e89b, 0x3e72_d423, 0x3e36_1887, 0x3e08_8d77,
                0x3dcc_cccd, 0x3d99_940d, 0x3d66_55c2, 0x3d2c_ba15, 0x3d01_86e3, 0x3cc2_434f, 0x3c91_ad39, 0x3c5a_7bf2,
                0x3c23_d70a, 0x3bf5_b9b0, 0x3bb8_449c, 0x3b8a_2e77, 0x3b4f_3e38, 0x3b1b_690d, 0x3ae9_1528, 0x3aae_c98e,
                0x3a83_126f, 0x3a44_948c, 0x3a13_6a16, 0x39dd_1725, 0x39a5_cb60, 0x3978_a815, 0x393a_7753, 0x390b_d472,
            ]),
            (128, 500_000, [
                0x3f80_0000, 0x3f50_8ac1, 0x3f29_e1c6, 0x3f0a_6384, 0x3ee1_77bc, 0x3eb7_ab7d, 0x3e95_9ee3, 0x3e73_c461,
                0x3e46_93b0, 0x3e21_c3a0, 0x3e03_c6a0, 0x3dd6_b19c, 0x3dae_e4ad, 0x3d8e_7898, 0x3d68_1e67, 0x3d3d_1684,
                0x3d1a_08c8, 0x3cfa_f53f, 0x3ccc_6f49, 0x3ca6_8939, 0x3c87_a9c3, 0x3c5d_06ec, 0x3c34_0d6d, 0x3c12_ac7f,
                0x3bee_f74f, 0x3bc2_aa76, 0x3b9e_9402, 0x3b81_2e35, 0x3b52_7720, 0x3b2b_72dc, 0x3b0b_aa41, 0x3ae3_8c10,
                0x3ab9_5d21, 0x3a97_0023, 0x3a76_03ea, 0x3a48_6886, 0x3a23_418d, 0x3a04_fdbf, 0x39d8_ac81, 0x39b0_8199,
                0x398f_c8f8, 0x396a_426f, 0x393e_d4f4, 0x391b_7475, 0x38fd_45c3, 0x38ce_51f5, 0x38a8_126b, 0x3888_ea0f,
                0x385f_10c4, 0x3835_b687, 0x3814_06cb, 0x37f1_2b80, 0x37c4_7610, 0x37a0_0a69, 0x3782_5f34, 0x3754_6808,
                0x372d_07a7, 0x370c_f400, 0x36e5_a54d, 0x36bb_12c7, 0x3698_64a7, 0x3678_48c2, 0x364a_41b0, 0x3624_c2ff,
            ]),
        ]
        for (d, theta, bits) in expected {
            let ours = Rotary.inverseFrequencies(headDimension: d, theta: theta).map(\.bitPattern)
            #expect(ours == bits, "d \(d), θ \(theta)")
        }
    }

    /// PyTorch's f32 `cos`/`sin` of HF's angles (d 64, θ 10⁴) at positions 100
    /// and 2047, first 8 frequencies: ours within 1 ulp (angles bit-equal).
    @Test func tablesAreWithinAnUlpOfHuggingFaces() {
        let frequencies = Rotary.inverseFrequencies(headDimension: 64, theta: 10_000)
        let (cos, sin) = Rotary.rotaryTables(positions: 100..<2048, headDimension: 64, inverseFrequencies: frequencies)
        #expect(cos.shape == [1948, 32] && sin.shape == [1948, 32])
        let cases: [(row: Int, values: [UInt32], table: Tensor, name: String)] = [
            (0, [0x3f5c_c0ee, 0x3f6a_e796, 0x3f73_70de, 0xbe75_3f39, 0x3f7a_8af5, 0x3e1a_d664, 0x3ef7_46b5, 0x3f37_fdb3], cos, "cos 100"),
            (1947, [0x3e7f_b55b, 0xbeb6_f76f, 0x3e8e_010d, 0xbf3f_947b, 0x3f7d_1ea0, 0xbd34_944d, 0x3f6a_af7c, 0xbf70_c3eb], cos, "cos 2047"),
            (1947, [0xbf77_e3c6, 0x3f6f_1888, 0x3f75_f4ec, 0x3f29_cd9a, 0x3e19_2d5d, 0x3f7f_c048, 0xbecc_892a, 0x3ead_fd45], sin, "sin 2047"),
        ]
        for (row, values, table, name) in cases {
            let ours = Array(table.floats[(row * 32)..<(row * 32 + 8)])
            for (index, (value, expected)) in zip(ours, values.map(Float.init(bitPattern:))).enumerated() {
                #expect(value == expected || value.nextUp == expected || value.nextDown == expected, "\(name)[\(index)]: \(value) vs \(expected)")
            }
        }
    }
}

/// Finite-difference gradient checks through the tape, on both backends.
@Suite struct DecoderOpsGradientTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]
    /// `GradientCheckTests`' tolerance (tighter than `checkGradients`' default),
    /// which still fails a backward that is off by 1% in one term.
    static let absolute = 2e-4
    static let relative = 5e-4

    private static func random(_ shape: [Int], seed: UInt64, in range: Range<Float> = -1..<1) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        return Tensor.uniform(shape: shape, in: range, generator: &generator)
    }

    private static func expectPasses(
        _ what: String, _ worst: GradientComparison, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(worst.input >= 0, "\(what): nothing compared", sourceLocation: sourceLocation)
        #expect(
            worst.ratio <= 1,
            "\(what): input \(worst.input) element \(worst.element): analytic \(worst.analytic) vs numeric \(worst.numeric)",
            sourceLocation: sourceLocation)
    }

    @Test(arguments: backends)
    func rmsNorm(backend: any Backend) {
        let inputs = [Self.random([3, 6], seed: 1, in: -2..<2), Self.random([6], seed: 2, in: 0.5..<1.5)]
        let worst = checkGradients(
            inputs: inputs, backend: backend, absoluteTolerance: Self.absolute, relativeTolerance: Self.relative
        ) { tape, v in tape.rmsNorm(v[0], gamma: v[1], epsilon: 1e-5) }
        Self.expectPasses("rmsNorm \(backend.id)", worst)
    }

    @Test(arguments: backends)
    func gatedSiLU(backend: any Backend) {
        let inputs = [Self.random([3, 5], seed: 3, in: -4..<4), Self.random([3, 5], seed: 4, in: -2..<2)]
        let worst = checkGradients(
            inputs: inputs, backend: backend, absoluteTolerance: Self.absolute, relativeTolerance: Self.relative
        ) { tape, v in tape.gatedSiLU(gate: v[0], up: v[1]) }
        Self.expectPasses("gatedSiLU \(backend.id)", worst)
    }

    @Test(arguments: backends)
    func geluTanh(backend: any Backend) {
        let worst = checkGradients(
            inputs: [Self.random([3, 7], seed: 5, in: -4..<4)], backend: backend, absoluteTolerance: Self.absolute,
            relativeTolerance: Self.relative
        ) { tape, v in
            tape.geluTanh(v[0])
        }
        Self.expectPasses("geluTanh \(backend.id)", worst)
    }

    @Test(arguments: backends)
    func rotary(backend: any Backend) {
        let (cos, sin) = Rotary.rotaryTables(
            positions: 1..<4, headDimension: 6, inverseFrequencies: Rotary.inverseFrequencies(headDimension: 6, theta: 10))
        let worst = checkGradients(
            inputs: [Self.random([2, 3, 2, 6], seed: 6, in: -2..<2)], backend: backend, absoluteTolerance: Self.absolute,
            relativeTolerance: Self.relative
        ) { tape, v in
            tape.rotary(v[0], cos: cos, sin: sin)
        }
        Self.expectPasses("rotary \(backend.id)", worst)
    }

    /// The tape's forward values are exactly `Eager`'s.
    @Test func tapeForwardIsEager() {
        let backend = CPUBackend(threads: 2)
        let eager = Eager(backend: backend)
        let tape = Tape(backend: backend)
        let x = Self.random([2, 3, 2, 4], seed: 7, in: -3..<3)
        let up = Self.random([2, 3, 2, 4], seed: 8)
        let gamma = Self.random([4], seed: 9, in: 0.5..<1.5)
        let (cos, sin) = Rotary.rotaryTables(
            positions: 0..<3, headDimension: 4, inverseFrequencies: Rotary.inverseFrequencies(headDimension: 4, theta: 10_000))
        let v = tape.parameter(x)
        #expect(tape.rmsNorm(v, gamma: tape.parameter(gamma), epsilon: 1e-6).value.floats == eager.rmsNorm(x, gamma: gamma, epsilon: 1e-6).floats)
        #expect(tape.gatedSiLU(gate: v, up: tape.parameter(up)).value.floats == eager.gatedSiLU(gate: x, up: up).floats)
        #expect(tape.geluTanh(v).value.floats == eager.geluTanh(x).floats)
        #expect(tape.rotary(v, cos: cos, sin: sin).value.floats == eager.rotary(x, cos: cos, sin: sin).floats)
    }
}
