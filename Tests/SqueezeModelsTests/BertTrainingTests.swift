import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeModels

@Suite struct BertTrainingTests {
    let backend = ReferenceBackend()

    private func train(
        seed: UInt64, steps: Int, options: TrainingHyperparameters? = nil, backend: any Backend = ReferenceBackend()
    ) throws -> (BertClassifierTrainer, [TrainingStep]) {
        var trainer = BertClassifierTrainer(
            model: try TinyBert.model(initializerRange: 0.2),
            options: options ?? TrainingHyperparameters(learningRate: 1e-2, weightDecay: 0.01, warmupSteps: 1, totalSteps: 40, seed: seed),
            backend: backend)
        var results: [TrainingStep] = []
        for _ in 0..<steps {
            results.append(try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels))
        }
        return (trainer, results)
    }

    private func bitPatterns(_ trainer: BertClassifierTrainer) -> [[UInt32]] {
        trainer.model.weights.elements.map { $0.floats.map(\.bitPattern) }
    }

    @Test(arguments: [1, 2])
    func sameSeedGivesBitIdenticalWeights(cpuThreads: Int) throws {
        let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: cpuThreads)]
        for backend in backends {
            let (first, firstSteps) = try train(seed: 11, steps: 3, backend: backend)
            let (second, secondSteps) = try train(seed: 11, steps: 3, backend: backend)
            #expect(bitPatterns(first) == bitPatterns(second), "\(backend.id)")
            #expect(firstSteps == secondSteps)
            #expect(first.optimizer.firstMoments.map { $0?.floats } == second.optimizer.firstMoments.map { $0?.floats })
            let (other, _) = try train(seed: 12, steps: 3, backend: backend)
            #expect(bitPatterns(other) != bitPatterns(first), "dropout masks depend on the seed")
        }
    }

    /// CPU training follows the reference's loss curve (same dropout masks;
    /// weights are not compared: Adam turns float noise in near-zero
    /// gradients into steps of size lr).
    @Test func cpuTrainingTracksTheReference() throws {
        let (_, referenceSteps) = try train(seed: 5, steps: 6)
        let (_, cpuSteps) = try train(seed: 5, steps: 6, backend: CPUBackend(threads: 2))
        for (a, b) in zip(referenceSteps, cpuSteps) {
            #expect(abs(a.loss - b.loss) <= 1e-3, "loss \(a.loss) vs \(b.loss)")
            #expect(abs((a.gradientNorm ?? 0) - (b.gradientNorm ?? 0)) <= 1e-3 * (a.gradientNorm ?? 1))
        }
    }

    @Test func warmupStartsAtZeroAndLossFalls() throws {
        let initial = try TinyBert.model(initializerRange: 0.2)
        let (afterOne, firstSteps) = try train(seed: 1, steps: 1)
        #expect(firstSteps[0].learningRate == 0)
        #expect(bitPatterns(afterOne) == initial.weights.elements.map { $0.floats.map(\.bitPattern) })
        #expect(afterOne.optimizer.steps.allSatisfy { $0 == 1 })

        let options = TrainingHyperparameters(learningRate: 1e-2, totalSteps: 30, maxGradientNorm: 1, seed: 1)
        let (trainer, steps) = try train(seed: 1, steps: 30, options: options)
        #expect(trainer.completedSteps == 30)
        #expect(steps[0].learningRate == 1e-2)
        #expect(abs(steps[15].learningRate - 5e-3) < 1e-9)
        #expect(steps.allSatisfy { ($0.gradientNorm ?? -1) >= 0 })
        let early = steps.prefix(3).map(\.loss).reduce(0, +) / 3
        let late = steps.suffix(3).map(\.loss).reduce(0, +) / 3
        #expect(late < early * 0.5, "loss \(early) -> \(late)")
    }

    @Test func rejectsBadLabelsWithoutChangingTheModel() throws {
        var trainer = BertClassifierTrainer(
            model: try TinyBert.model(), options: TrainingHyperparameters(totalSteps: 1, seed: 0), backend: backend)
        #expect(throws: BertInputError.self) {
            try trainer.step(batch: TinyBert.batch, labels: Tensor(shape: [2], int32s: [0, 7]))
        }
        #expect(trainer.completedSteps == 0)
    }
}
