import Foundation
@testable import SqueezeEngine
import SqueezeSupport
import Testing

/// The key the remote cache's variant index is filed under: the stage key
/// without the backend, so every arithmetic of one stage shares it.
@Suite struct RemoteKeyTests {
    static func material(backend: String, lr: Double = 5e-5, seed: UInt64? = 7) -> KeyMaterial {
        KeyMaterial(
            formatVersion: KeyMaterial.currentFormatVersion, stageType: "train/finetune", stageVersion: 3,
            params: .object(["lr": .double(lr)]), inputs: ["${data.dataset}": "sha256:" + String(repeating: "a", count: 64)],
            backend: backend, seed: seed)
    }

    @Test func theKeyWithoutBackendIgnoresOnlyTheBackend() {
        let cpu = Self.material(backend: "cpu/r2/avx2-fma/openblas-0.3.21/SkylakeX")
        let haswell = Self.material(backend: "cpu/r2/avx2-fma/openblas-0.3.21/Haswell")
        #expect(cpu.key != haswell.key)
        #expect(cpu.keyWithoutBackend == haswell.keyWithoutBackend)
        #expect(cpu.keyWithoutBackend != cpu.key)
        #expect(Self.material(backend: "cpu", lr: 1e-4).keyWithoutBackend != Self.material(backend: "cpu").keyWithoutBackend)
        #expect(Self.material(backend: "cpu", seed: 8).keyWithoutBackend != Self.material(backend: "cpu").keyWithoutBackend)
        #expect(cpu.keyWithoutBackend.count == 64 && Digest(hex: cpu.keyWithoutBackend) != nil)
    }
}
