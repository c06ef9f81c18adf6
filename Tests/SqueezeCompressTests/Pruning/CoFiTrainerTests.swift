import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct CoFiTrainerTests {
    let backend = CPUBackend(threads: 2)

    /// A small BERT (hidden 32, 3 layers of 4 heads × 8 and FFN 64) with
    /// weights large enough that every layer matters.
    static func model(seed: UInt64 = 4) throws -> BertModel {
        var config = BertConfig(
            vocabSize: 20, hiddenSize: 32, numHiddenLayers: 3, numAttentionHeads: 4, intermediateSize: 64,
            maxPositionEmbeddings: 12, initializerRange: 0.2, labels: ["a", "b"])
        config.pooling = .pooler
        return try BertModel(randomWithConfig: config, seed: seed)
    }

    /// Batch `index` of 4 random sequences (lengths 4 to 8, padded) and labels.
    static func batch(_ index: Int) -> (BertBatch, Tensor) {
        var generator = SeededGenerator(seed: 100 + UInt64(index))
        let sequences = (0..<4).map { _ in
            [2] + (0..<(2 + Int(generator.next() % 5))).map { _ in Int32(5 + generator.next() % 15) } + [3]
        }
        let labels = Tensor(shape: [4], int32s: sequences.map { Int32($0.count % 2) })
        return (BertBatch(sequences: sequences), labels)
    }

    static func trainer(
        target: Double, warmup: Int = 0, steps: Int = 50, maskLearningRate: Double = 0.01,
        lambdaLearningRate: Double = 0.01, units: Set<CoFiUnit> = Set(CoFiUnit.allCases), seed: UInt64 = 7, backend: any Backend
    ) throws -> CoFiTrainer {
        let teacher = try model()
        let options = TrainingHyperparameters(learningRate: 1e-3, weightDecay: 0.01, warmupSteps: 0, totalSteps: steps, seed: seed)
        let cofi = CoFiOptions(
            units: units, schedule: try CoFiSparsitySchedule(target: target, warmupSteps: warmup), maskLearningRate: maskLearningRate,
            lambdaLearningRate: lambdaLearningRate, seed: seed)
        return try CoFiTrainer(student: teacher, teacher: teacher, options: options, cofi: cofi, backend: backend)
    }

    @Test func defaultTeacherLayersScaleThePapersChoice() {
        #expect(CoFiLayerAlignment.defaultTeacherLayers(count: 12) == [2, 5, 8, 11])
        #expect(CoFiLayerAlignment.defaultTeacherLayers(count: 6) == [1, 3, 5])
        #expect(CoFiLayerAlignment.defaultTeacherLayers(count: 3) == [0, 1, 2])
        #expect(CoFiLayerAlignment.defaultTeacherLayers(count: 1) == [0])
    }

    @Test func alignmentKeepsOrderAndSkipsPrunedLayers() {
        // Unconstrained, every teacher layer would pick student layer 3.
        let losses: [[Double]] = [
            [0.5, 0.4, 0.9, 0.1],
            [0.7, 0.3, 0.8, 0.2],
            [0.9, 0.8, 0.6, 0.1],
        ]
        #expect(CoFiLayerAlignment.align(losses: losses, present: [true, true, true, true]) == [0, 1, 3])
        // Layer 3 fully pruned: the last teacher layer takes 2, the others go below it.
        #expect(CoFiLayerAlignment.align(losses: losses, present: [true, true, true, false]) == [0, 1, 2])
        // Only two layers left for three teacher layers: the first is not matched.
        #expect(CoFiLayerAlignment.align(losses: losses, present: [false, true, false, true]) == [nil, 1, 3])
        #expect(CoFiLayerAlignment.align(losses: losses, present: [false, false, false, false]) == [nil, nil, nil])
        // Ties go to the lower layer.
        #expect(CoFiLayerAlignment.align(losses: [[1, 1, 1]], present: [true, true, true]) == [0])
    }

    @Test func presentLayersNeedAComputingBlock() throws {
        let structure = CoFiStructure(model: try Self.model())
        var z = CoFiMaskValues(structure: structure, repeating: 1)
        z.attentionLayers[0] = 0
        z.intermediate[0] = z.intermediate[0].map { _ in 0 }  // layer 0: no attention, no FFN units
        z.heads[1] = z.heads[1].map { _ in 0 }  // layer 1: FFN only
        z.ffnLayers[2] = 0  // layer 2: attention only
        #expect(CoFiLayerAlignment.presentLayers(z) == [false, true, true])
    }

    /// Expected sparsity starts below the target, so the ascent makes λ1
    /// negative and λ2 positive: the penalty `λ1·(ŝ − t) + λ2·(ŝ − t)²` grows.
    @Test func lambdaAscentRaisesThePenaltyWhileBelowTarget() throws {
        var trainer = try Self.trainer(target: 0.8, lambdaLearningRate: 0.05, backend: backend)
        var penalties: [Double] = []
        for step in 0..<6 {
            let (batch, labels) = Self.batch(step)
            let result = try trainer.step(batch: batch, labels: labels)
            #expect(result.expectedSparsity < result.targetSparsity)
            penalties.append(result.lagrangian)
        }
        #expect(trainer.lambda1 < 0, "λ1 \(trainer.lambda1)")
        #expect(trainer.lambda2 > 0, "λ2 \(trainer.lambda2)")
        #expect(penalties[0] == 0, "λ starts at 0")
        #expect(zip(penalties, penalties.dropFirst()).allSatisfy { $0 < $1 }, "\(penalties)")
    }

    /// Under the Lagrangian pressure `log α` falls and the expected sparsity rises.
    @Test func logAlphaFallsUnderTheLagrangian() throws {
        var trainer = try Self.trainer(target: 0.9, maskLearningRate: 0.1, lambdaLearningRate: 0.5, backend: backend)
        let initialMean = trainer.masks.logAlpha.reduce(0, +) / Double(trainer.masks.logAlpha.count)
        let initialSparsity = trainer.expectedSparsity
        for step in 0..<30 {
            let (batch, labels) = Self.batch(step % 8)
            _ = try trainer.step(batch: batch, labels: labels)
        }
        let mean = trainer.masks.logAlpha.reduce(0, +) / Double(trainer.masks.logAlpha.count)
        #expect(mean < initialMean - 0.5, "mean log α \(initialMean) → \(mean)")
        #expect(trainer.expectedSparsity > initialSparsity + 0.1, "expected sparsity \(initialSparsity) → \(trainer.expectedSparsity)")
        #expect(trainer.masks.logAlpha.allSatisfy { HardConcrete.logAlphaRange.contains($0) }, "clamped")
    }

    @Test func sameSeedGivesIdenticalTrainingAndPrunedModel() throws {
        func run(seed: UInt64) throws -> (CoFiTrainer, [CoFiStep]) {
            var trainer = try Self.trainer(target: 0.5, warmup: 2, seed: seed, backend: backend)
            var steps: [CoFiStep] = []
            for step in 0..<4 {
                let (batch, labels) = Self.batch(step)
                steps.append(try trainer.step(batch: batch, labels: labels))
            }
            return (trainer, steps)
        }
        let (first, firstSteps) = try run(seed: 7)
        let (second, secondSteps) = try run(seed: 7)
        #expect(firstSteps == secondSteps)
        #expect(first.masks == second.masks)
        #expect(first.student.weights.elements.map(\.floats) == second.student.weights.elements.map(\.floats))
        #expect(first.layerMap.floats == second.layerMap.floats)
        #expect(try first.prunedModel().weights.elements.map(\.floats) == second.prunedModel().weights.elements.map(\.floats))
        let (other, _) = try run(seed: 8)
        #expect(other.masks != first.masks)
        // Frozen embeddings, trained encoder, a trained layer map.
        let teacher = try Self.model()
        #expect(first.student.weights.embeddings.word.floats == teacher.weights.embeddings.word.floats)
        #expect(first.student.weights.layers[0].query.weight.floats != teacher.weights.layers[0].query.weight.floats)
        #expect(firstSteps.allSatisfy { $0.alignment.count == 3 && $0.layerLoss >= 0 })
    }

    /// A short prune reaches its target: the compacted model's prunable
    /// parameters are within 2 points of it, and the compacted model computes
    /// what the masked student computes under the final masks. Fine-grained
    /// units only: on a model this small one whole attention block is 17% of
    /// the prunable parameters, so a layer mask still undecided after a few
    /// hundred steps would dominate the rounding of the deterministic masks.
    @Test func pruningReachesTheTargetSparsity() throws {
        let steps = 300
        var trainer = try Self.trainer(
            target: 0.5, warmup: 100, steps: steps, maskLearningRate: 0.1, lambdaLearningRate: 0.1, units: [.heads, .ffnUnits, .hidden],
            backend: backend)
        var last: CoFiStep?
        for step in 0..<steps {
            let (batch, labels) = Self.batch(step % 16)
            last = try trainer.step(batch: batch, labels: labels)
        }
        let result = try #require(last)
        #expect(abs(result.expectedSparsity - 0.5) < 0.02, "expected sparsity \(result.expectedSparsity)")
        let pruned = try trainer.prunedModel()
        let full = CoFiStructure(model: trainer.student).fullPrunableParameterCount
        let remaining = CoFiStructure(model: pruned).fullPrunableParameterCount
        let realised = 1 - Double(remaining) / Double(full)
        #expect(abs(realised - 0.5) <= 0.02, "realised sparsity \(realised), expected \(result.expectedSparsity), \(pruned.layerShapes) hidden \(pruned.config.hiddenSize)")

        let (batch, _) = Self.batch(0)
        let masked = MaskedBert.forward(
            Eager(backend: backend), trainer.student.weights, config: trainer.student.config, pooling: trainer.student.pooling,
            batch: batch, masks: trainer.masks.inputs(trainer.finalMasks) { $0 })
        let logits = try pruned.logits(batch, backend: backend)
        for (x, y) in zip(masked.logits.floats, logits.floats) { #expect(abs(x - y) < 1e-4) }
    }

    @Test func badSettingsAreRejected() throws {
        let teacher = try Self.model()
        let options = TrainingHyperparameters(totalSteps: 1, seed: 0)
        let schedule = try CoFiSparsitySchedule(target: 0.5, warmupSteps: 0)
        func message(_ cofi: CoFiOptions, student: BertModel? = nil) -> String? {
            do {
                _ = try CoFiTrainer(student: student ?? teacher, teacher: teacher, options: options, cofi: cofi, backend: backend)
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message(CoFiOptions(units: [], schedule: schedule, seed: 0))?.contains("no pruning units") == true)
        #expect(message(CoFiOptions(schedule: schedule, teacherLayers: [0, 3], seed: 0))?.contains("teacher layer 3 does not exist") == true)
        #expect(message(CoFiOptions(schedule: schedule, teacherLayers: [2, 1], seed: 0))?.contains("strictly increasing") == true)
        #expect(message(CoFiOptions(schedule: schedule, temperature: 0, seed: 0))?.contains("temperature") == true)
        #expect(message(CoFiOptions(schedule: schedule, layerDistillWeight: 0, predictionDistillWeight: 0, seed: 0))?.contains("every loss weight is 0") == true)
        var config = teacher.config
        config.labels = ["x", "y", "z"]
        let threeLabels = try BertModel(randomWithConfig: config, seed: 1)
        #expect(message(CoFiOptions(schedule: schedule, seed: 0), student: threeLabels)?.contains("labels") == true)
        #expect(throws: CoFiError.self) { try CoFiSparsitySchedule(target: 1, warmupSteps: 0) }
    }
}
