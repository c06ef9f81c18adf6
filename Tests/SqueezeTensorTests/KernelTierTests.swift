import CKernels
import SqueezeTensor
import Testing

/// The element-wise maps have an AVX-512 variant (16 lanes) next to the AVX2
/// one (8 lanes); every lane runs the same operations, so the two must give
/// the same bits, at every length (tails go through a padded copy).
@Suite struct KernelTierTests {
    static let maps: [(name: String, map: Int32)] = [
        ("gelu", Int32(SQ_MAP_GELU)), ("gelu backward", Int32(SQ_MAP_GELU_BACKWARD)), ("tanh", Int32(SQ_MAP_TANH)),
        ("tanh backward", Int32(SQ_MAP_TANH_BACKWARD)), ("exp", Int32(SQ_MAP_EXP)),
        ("gelu with derivative", Int32(SQ_MAP_GELU_WITH_DERIVATIVE)), ("gelu tanh", Int32(SQ_MAP_GELU_TANH)),
        ("gelu tanh backward", Int32(SQ_MAP_GELU_TANH_BACKWARD)), ("gated silu", Int32(SQ_MAP_GATED_SILU)),
    ]

    /// Inputs across the ranges the maps branch on, with the awkward values.
    static func inputs(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SeededGenerator(seed: seed)
        var values = (0..<count).map { _ in generator.uniform(in: -12..<12) }
        let special: [Float] = [0, -0.0, 1e-30, -1e-30, 0.49, 0.5, 0.625, -0.625, -87.4, 88.5, 9.5, -9.5, .leastNonzeroMagnitude]
        for (index, value) in special.enumerated() where index < count { values[index] = value }
        return values
    }

    static func run(tier: Int32, map: Int32, x: [Float], y: [Float]) -> ([Float], [Float]) {
        var out = [Float](repeating: .nan, count: x.count)
        var second = [Float](repeating: .nan, count: x.count)
        out.withUnsafeMutableBufferPointer { o in
            second.withUnsafeMutableBufferPointer { s in
                sq_map_with_tier(tier, map, x, y, o.baseAddress, s.baseAddress, x.count)
            }
        }
        return (out, second)
    }

    @Test(arguments: [1, 7, 8, 15, 16, 17, 33, 1536, 1549])
    func avx512MapsGiveTheAVX2Bits(count: Int) {
        guard CPUKernels.detectedTier == .avx512 else {
            print("skipped: this CPU has no AVX-512; only the AVX2 and baseline variants exist here")
            return
        }
        let x = Self.inputs(count, seed: UInt64(count))
        let y = Self.inputs(count, seed: UInt64(count) + 1000)
        for (name, map) in Self.maps {
            let avx2 = Self.run(tier: 1, map: map, x: x, y: y)
            let avx512 = Self.run(tier: 2, map: map, x: x, y: y)
            #expect(avx2.0.map(\.bitPattern) == avx512.0.map(\.bitPattern), "\(name), n = \(count)")
            if map == Int32(SQ_MAP_GELU_WITH_DERIVATIVE) {
                #expect(avx2.1.map(\.bitPattern) == avx512.1.map(\.bitPattern), "\(name) derivative, n = \(count)")
            }
        }
    }

    static func gatedSiLUBackward(tier: Int32, dy: [Float], gate: [Float], up: [Float]) -> [Float] {
        var dGate = [Float](repeating: .nan, count: gate.count)
        var dUp = [Float](repeating: .nan, count: gate.count)
        dGate.withUnsafeMutableBufferPointer { g in
            dUp.withUnsafeMutableBufferPointer { u in
                sq_gated_silu_backward_with_tier(tier, dy, gate, up, g.baseAddress, u.baseAddress, gate.count)
            }
        }
        return dGate + dUp
    }

    @Test(arguments: [1, 7, 8, 15, 16, 17, 33, 1549])
    func avx512GatedSiLUBackwardGivesTheAVX2Bits(count: Int) {
        guard CPUKernels.detectedTier == .avx512 else {
            print("skipped: this CPU has no AVX-512; only the AVX2 and baseline variants exist here")
            return
        }
        let (dy, gate, up) = (Self.inputs(count, seed: 1), Self.inputs(count, seed: 2), Self.inputs(count, seed: 3))
        let avx2 = Self.gatedSiLUBackward(tier: 1, dy: dy, gate: gate, up: up)
        let avx512 = Self.gatedSiLUBackward(tier: 2, dy: dy, gate: gate, up: up)
        #expect(avx2.map(\.bitPattern) == avx512.map(\.bitPattern), "n = \(count)")
        let baseline = Self.gatedSiLUBackward(tier: 0, dy: dy, gate: gate, up: up)
        for (a, b) in zip(baseline, avx512) { #expect(abs(a - b) <= 1e-5 * max(1, abs(a)), "\(a) vs \(b)") }
    }

    /// Every tier computes the same function: the variants agree with each
    /// other to float rounding (the baseline has no FMA, so not bit for bit).
    @Test func everyTierComputesTheSameFunction() {
        let x = Self.inputs(1000, seed: 9)
        let y = Self.inputs(1000, seed: 10)
        for (name, map) in Self.maps {
            let baseline = Self.run(tier: 0, map: map, x: x, y: y).0
            let fastest = Self.run(tier: 2, map: map, x: x, y: y).0
            for (a, b) in zip(baseline, fastest) {
                #expect(abs(a - b) <= 1e-5 * max(1, abs(a)), "\(name): \(a) vs \(b)")
            }
        }
    }
}
