@testable import SqueezeEngine
import SqueezeRecipe
import Foundation
import SqueezeSupport
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

    /// The last-run index keeps a 64-bit seed exactly and a double a double;
    /// an index file written before (seed as a number) still reads.
    @Test func indexRoundTripsSeedsAndDoubles() throws {
        var live = Self.material(["epochs": .double(1), "steps": .int(1)])
        live.seed = UInt64.max
        let recorded = try SqueezeJSON.decode(KeyMaterial.self, from: SqueezeJSON.encode(live))
        #expect(recorded == live)
        live.seed = nil
        #expect(try SqueezeJSON.decode(KeyMaterial.self, from: SqueezeJSON.encode(live)) == live)
        let old = #"{"backend" : "cpu", "formatVersion" : 1, "inputs" : {}, "params" : {"epochs" : 1}, "seed" : 7, "stageType" : "t", "stageVersion" : 1}"#
        let read = try SqueezeJSON.decode(KeyMaterial.self, from: Array(old.utf8))
        #expect(read.seed == 7)
        #expect(Self.material(["epochs": .double(1)]).changes(since: read).isEmpty)
    }

    @Test func changesNameParamsAndBackend() {
        let live = Self.material(["epochs": .double(2), "lr": .double(5e-5)], backend: "cpu/r2/avx2-fma")
        let recorded = Self.material(["epochs": .int(1), "lr": .double(5e-5)])
        #expect(live.key != recorded.key)
        #expect(live.changes(since: recorded) == ["params changed: epochs", "backend changed (cpu → cpu/r2/avx2-fma)"])
    }

    /// A parameter added with a behaviour-preserving default leaves old keys
    /// alone until a recipe sets it to something else.
    @Test func addedParameterAtItsDefaultIsNotKeyed() {
        let descriptor = StageTypeDescriptor(
            type: "t", version: 1, summary: "",
            parameters: [
                ParameterSpec("lr", .number, default: .double(1e-3), doc: ""),
                ParameterSpec("extra_weight", .number, default: .double(0), keyedOnlyWhenChanged: true, doc: ""),
            ],
            outputs: [])
        let before = Value.object(["lr": .double(1e-3)])
        let atDefault = KeyMaterial.keyedParameters(.object(["lr": .double(1e-3), "extra_weight": .int(0)]), of: descriptor)
        let changed = KeyMaterial.keyedParameters(.object(["lr": .double(1e-3), "extra_weight": .double(0.5)]), of: descriptor)
        let lrAtDefault = KeyMaterial.keyedParameters(.object(["lr": .double(1e-3)]), of: descriptor)
        #expect(atDefault == before)
        #expect(changed == .object(["lr": .double(1e-3), "extra_weight": .double(0.5)]))
        #expect(lrAtDefault == before, "ordinary parameters stay keyed at their default")
    }

    /// A parameter declared `outsideKey` (how often to checkpoint) is left
    /// out of the key at every value, its default included.
    @Test func parameterOutsideTheKeyIsNeverKeyed() {
        let descriptor = StageTypeDescriptor(
            type: "t", version: 1, summary: "",
            parameters: [
                ParameterSpec("lr", .number, default: .double(1e-3), doc: ""),
                ParameterSpec("checkpoint_every", .oneOf([.int, .string]), default: .string("10m"), outsideKey: true, doc: ""),
            ],
            outputs: [])
        let without = Value.object(["lr": .double(1e-3)])
        for value: Value in [.string("10m"), .int(1), .int(200), .string("1m")] {
            let keyed = KeyMaterial.keyedParameters(.object(["lr": .double(1e-3), "checkpoint_every": value]), of: descriptor)
            #expect(keyed == without, "checkpoint_every: \(value)")
            guard case .object(let fields) = keyed else { continue }
            #expect(Self.material(fields).key == Self.material(["lr": .double(1e-3)]).key)
        }
    }
}

@Suite struct SeedlessKeyMaterialTests {
    /// A stage that draws no randomness keys without a seed; one that does
    /// keeps the key it always had.
    @Test func theSeedIsKeyedOnlyWhenGiven() {
        var seeded = KeyMaterialTests.material([:])
        #expect(seeded.canonicalValue["seed"] == .string("7"))
        var seedless = seeded
        seedless.seed = nil
        #expect(seedless.canonicalValue["seed"] == nil)
        #expect(seedless.key != seeded.key)
        #expect(seedless.changes(since: seeded) == ["the stage no longer draws on the seed"])
        seeded.seed = 8
        #expect(seeded.changes(since: KeyMaterialTests.material([:])) == ["seed changed"])
    }
}
