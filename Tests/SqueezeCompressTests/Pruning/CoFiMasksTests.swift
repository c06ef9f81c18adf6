import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// A tiny heterogeneous mask structure: hidden 6, heads of 2, layers of
/// 3 heads / 5 units and 1 head / 4 units.
enum TinyStructure {
    static let structure = CoFiStructure(
        hiddenSize: 6, headDimension: 2,
        layers: [BertLayerShape(heads: 3, intermediateSize: 5), BertLayerShape(heads: 1, intermediateSize: 4)])

    /// Masks with random `log α` in the clamp range.
    static func masks(units: Set<CoFiUnit> = Set(CoFiUnit.allCases), seed: UInt64) throws -> CoFiMasks {
        let count = try CoFiMasks(structure: structure, units: units, seed: 0).logAlpha.count
        var generator = SeededGenerator(seed: seed)
        return try CoFiMasks(
            structure: structure, units: units, logAlpha: (0..<count).map { _ in Double(generator.uniform(in: -4..<4)) })
    }
}

@Suite struct CoFiMasksTests {
    /// Worst `|analytic − numeric| / (1e-9 + 1e-6·scale)` over every parameter.
    static func worstRatio(_ masks: CoFiMasks, analytic: [Double], _ f: (CoFiMasks) -> Double) -> Double {
        var worst = 0.0
        for index in masks.logAlpha.indices {
            var plus = masks, minus = masks
            plus.logAlpha[index] += 1e-5
            minus.logAlpha[index] -= 1e-5
            let numeric = (f(plus) - f(minus)) / 2e-5
            worst = max(worst, abs(analytic[index] - numeric) / (1e-9 + 1e-6 * max(abs(numeric), 1)))
        }
        return worst
    }

    @Test func layoutAndInitialisation() throws {
        let structure = TinyStructure.structure
        let all = try CoFiMasks(structure: structure, units: Set(CoFiUnit.allCases), seed: 1)
        #expect(all.logAlpha.count == 2 + 2 + 4 + 9 + 6)
        // Coarse masks start near 10, fine ones near log(0.5/0.5) = 0.
        #expect(all.logAlpha[0..<8].allSatisfy { abs($0 - 10) < 0.05 })
        #expect(all.logAlpha[8...].allSatisfy { abs($0) < 0.05 })
        #expect(try CoFiMasks(structure: structure, units: Set(CoFiUnit.allCases), seed: 1) == all)
        let hiddenOnly = try CoFiMasks(structure: structure, units: [.hidden], seed: 1)
        #expect(hiddenOnly.logAlpha.count == 6)
        let p = hiddenOnly.probabilities
        #expect(p.heads.flatMap { $0 }.allSatisfy { $0 == 1 } && p.attentionLayers == [1, 1] && p.intermediate[1] == [1, 1, 1, 1])
        #expect(p.hidden.allSatisfy { $0 > 0.8 && $0 < 0.85 })
        // Values round-trip through the flat layout.
        let values = try TinyStructure.masks(seed: 2).probabilities
        #expect(all.scatter(all.gather(values), into: CoFiMaskValues(structure: structure, repeating: 7)) == values)
        #expect(throws: CoFiError.self) { try CoFiMasks(structure: structure, units: [.hidden], logAlpha: [0, 0]) }
        #expect(throws: CoFiError.self) {
            try CoFiMasks(structure: structure, units: [.hidden], initialization: CoFiInitialization(fineDropRate: 1), seed: 0)
        }
    }

    @Test func fullSizeCountsThePrunableWeights() {
        // (4·3·2 + 2·5)·6 + (4·1·2 + 2·4)·6
        #expect(TinyStructure.structure.fullPrunableParameterCount == 204 + 96)
        let ones = CoFiMaskValues(structure: TinyStructure.structure, repeating: 1)
        #expect(TinyStructure.structure.expectedRemainingParameters(ones).value == 300)
    }

    @Test(arguments: [Set(CoFiUnit.allCases), [.heads, .hidden], [.layers], [.ffnUnits]] as [Set<CoFiUnit>])
    func sparsityGradientMatchesFiniteDifferences(units: Set<CoFiUnit>) throws {
        let masks = try TinyStructure.masks(units: units, seed: 3)
        let (value, gradient) = masks.expectedSparsity()
        #expect(value > 0 && value < 1)
        #expect(Self.worstRatio(masks, analytic: gradient) { $0.expectedSparsity().value } <= 1)
    }

    @Test func lagrangianGradientsMatchFiniteDifferences() throws {
        let masks = try TinyStructure.masks(seed: 4)
        let (lambda1, lambda2, target) = (0.7, -1.3, 0.4)
        let term = masks.lagrangian(target: target, lambda1: lambda1, lambda2: lambda2)
        let gap = term.expectedSparsity - target
        #expect(abs(term.value - (lambda1 * gap + lambda2 * gap * gap)) < 1e-15)
        #expect(Self.worstRatio(masks, analytic: term.logAlphaGradient) {
            $0.lagrangian(target: target, lambda1: lambda1, lambda2: lambda2).value
        } <= 1)
        let step = 1e-5
        let numeric1 = (masks.lagrangian(target: target, lambda1: lambda1 + step, lambda2: lambda2).value
            - masks.lagrangian(target: target, lambda1: lambda1 - step, lambda2: lambda2).value) / (2 * step)
        let numeric2 = (masks.lagrangian(target: target, lambda1: lambda1, lambda2: lambda2 + step).value
            - masks.lagrangian(target: target, lambda1: lambda1, lambda2: lambda2 - step).value) / (2 * step)
        #expect(abs(term.lambda1Gradient - numeric1) < 1e-8)
        #expect(abs(term.lambda2Gradient - numeric2) < 1e-8)
    }

    /// Averaged over samples, each entry is non-zero with probability P(z ≠ 0).
    @Test func samplesFollowTheProbabilities() throws {
        let masks = try TinyStructure.masks(units: [.ffnUnits], seed: 5)
        var generator = SeededGenerator(seed: 6)
        var counts = [Double](repeating: 0, count: masks.logAlpha.count)
        let draws = 4000
        for _ in 0..<draws {
            let sample = masks.sample(generator: &generator)
            #expect(sample.values.hidden.allSatisfy { $0 == 1 } && sample.values.heads[0] == [1, 1, 1])
            for (index, z) in masks.gather(sample.values).enumerated() where z != 0 { counts[index] += 1 }
        }
        for (count, p) in zip(counts, masks.gather(masks.probabilities)) {
            #expect(abs(count / Double(draws) - p) < 0.035)
        }
        // The chain rule applies dz/dlog α entry by entry.
        let sample = masks.sample(generator: &generator)
        let ones = CoFiMaskValues(structure: TinyStructure.structure, repeating: 2)
        #expect(masks.logAlphaGradient(sample, zGradient: ones) == sample.derivatives.map { 2 * $0 })
    }

    @Test func clampKeepsLogAlphaInRange() throws {
        var masks = try CoFiMasks(structure: TinyStructure.structure, units: [.layers], seed: 7)
        masks.logAlpha[0] = -9
        masks.clampLogAlpha()
        #expect(masks.logAlpha.allSatisfy { HardConcrete.logAlphaRange.contains($0) })
        #expect(masks.logAlpha[1] == log(100.0) && masks.logAlpha[0] == log(0.01))
    }

    @Test func deterministicMasksPerGroup() throws {
        var masks = try CoFiMasks(structure: TinyStructure.structure, units: [.layers, .heads], seed: 8)
        masks.logAlpha = [-3, 3, 3, -3] + [-4, -4, 4] + [-4]
        let values = masks.deterministic()
        #expect(values.attentionLayers[0] == 0 && values.attentionLayers[1] > 0.9)
        #expect(values.ffnLayers[0] > 0.9 && values.ffnLayers[1] == 0)
        #expect(values.heads[0][0] == 0 && values.heads[0][1] == 0 && values.heads[0][2] > 0.9)
        #expect(values.heads[1] == [0])
        #expect(values.intermediate[0] == [1, 1, 1, 1, 1] && values.hidden.allSatisfy { $0 == 1 })
    }

    @Test func scheduleRampsAndRejectsBadTargets() throws {
        let schedule = try CoFiSparsitySchedule(target: 0.6, warmupSteps: 10)
        #expect(schedule.target(atStep: 0) == 0)
        #expect(abs(schedule.target(atStep: 5) - 0.3) < 1e-15)
        #expect(schedule.target(atStep: 10) == 0.6 && schedule.target(atStep: 99) == 0.6)
        #expect(try CoFiSparsitySchedule(target: 0.5, warmupSteps: 0).target(atStep: 0) == 0.5)
        for bad in [1.0, -0.1, .nan, 1.5] {
            #expect(throws: CoFiError.self) { try CoFiSparsitySchedule(target: bad, warmupSteps: 10) }
        }
        #expect(throws: CoFiError.self) { try CoFiSparsitySchedule(target: 0.5, warmupSteps: -1) }
    }

    @Test func unitNames() throws {
        #expect(try CoFiUnit.parse(["heads", "ffn_units", "hidden", "layers"]) == Set(CoFiUnit.allCases))
        #expect(try CoFiUnit.parse([]) == [])
        do {
            _ = try CoFiUnit.parse(["heads", "ffn_unit"])
            Issue.record("accepted an unknown unit")
        } catch {
            #expect(error.message.contains("unknown pruning unit `ffn_unit`"))
            #expect(error.hint == "did you mean `ffn_units`?")
        }
        do {
            _ = try CoFiUnit.parse(["banana"])
            Issue.record("accepted an unknown unit")
        } catch {
            #expect(error.hint == nil)
        }
    }
}
