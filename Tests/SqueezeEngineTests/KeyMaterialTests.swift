@testable import SqueezeEngine
import SqueezeRecipe
import Foundation
import Testing

@Suite struct KeyMaterialTests {
    static func material(_ params: [String: Value], backend: String = "cpu") -> KeyMaterial {
        KeyMaterial(
            formatVersion: KeyMaterial.currentFormatVersion, stageType: "t", stageVersion: 1, params: .object(params),
            inputs: [:], backend: backend, seed: 7)
    }

    /// The index's JSON reads a recorded `1.0` back as the integer 1: that is
    /// not a parameter change to report.
    @Test func recordedWholeNumbersAreNoParamChange() throws {
        let live = Self.material(["epochs": .double(1), "lr": .double(5e-5)])
        let recorded = try JSONDecoder().decode(KeyMaterial.self, from: JSONEncoder().encode(live))
        #expect(live.changes(since: recorded).isEmpty)
        #expect(Self.material(["epochs": .double(1.5)]).changes(since: Self.material(["epochs": .int(1)])) == ["params changed: epochs"])
    }

    @Test func changesNameParamsAndBackend() {
        let live = Self.material(["epochs": .double(2), "lr": .double(5e-5)], backend: "cpu/r2/avx2-fma")
        let recorded = Self.material(["epochs": .int(1), "lr": .double(5e-5)])
        #expect(live.key != recorded.key)
        #expect(live.changes(since: recorded) == ["params changed: epochs", "backend changed (cpu → cpu/r2/avx2-fma)"])
    }
}
