import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeModels

@Suite struct ParameterUpdatesTests {
    let backend = ReferenceBackend()

    /// Random gradients shaped like `parameters`.
    private func gradients(like parameters: [Tensor], seed: UInt64) -> [Tensor?] {
        var generator = SeededGenerator(seed: seed)
        return parameters.map { Tensor.normal(shape: $0.shape, generator: &generator) }
    }

    @Test func bertModelTrainsItsWeightsInOrderWithTheDecaySplit() throws {
        let model = try TinyBert.model()
        #expect(model.parameterNames == model.weights.names)
        #expect(model.decayMask == BertModel.decayMask(names: model.weights.names))
        #expect(model.decayMask.contains(true) && model.decayMask.contains(false))
    }

    @Test func updatesTheModelThenTheAuxiliaryParametersAsOneClippedAdamW() throws {
        let model = try TinyBert.model()
        var generator = SeededGenerator(seed: 9)
        let projection = Tensor.normal(shape: [3, 4], generator: &generator)
        let hyperparameters = TrainingHyperparameters(
            learningRate: 1e-2, weightDecay: 0.1, warmupSteps: 1, totalSteps: 4, maxGradientNorm: 0.5, seed: 7)
        let gradients = gradients(like: model.weights.elements + [projection], seed: 2)

        var updater = ParameterUpdater(for: model, auxiliaryParameters: 1, hyperparameters: hyperparameters, backend: backend)
        var trained = model
        var auxiliary = [projection]
        let updates = (0..<3).map { _ in updater.apply(gradients, to: &trained, auxiliary: &auxiliary) }

        // By hand: AdamW over the model's parameters and the projection (never
        // decayed), all gradients clipped together, the warmup/decay schedule.
        var expected = model.weights.elements + [projection]
        var optimizer = AdamW(weightDecays: model.decayMask.map { $0 ? 0.1 : 0 } + [0])
        let clipping = clippingScale(gradients, maxNorm: 0.5, backend: backend)
        let schedule = LinearWarmupSchedule(peak: 1e-2, warmupSteps: 1, totalSteps: 4)
        for step in 0..<3 {
            optimizer.update(
                &expected, gradients: gradients, learningRate: schedule.learningRate(forUpdate: step), gradientScale: clipping.scale,
                backend: backend)
        }
        #expect(clipping.scale < 1, "the test clips")
        #expect(updates.map(\.learningRate) == (0..<3).map { schedule.learningRate(forUpdate: $0) })
        #expect(updates.allSatisfy { $0.gradientNorm == clipping.norm })
        #expect(trained.weights.elements.map(\.floats) == expected.dropLast().map(\.floats))
        #expect(auxiliary.map(\.floats) == expected.suffix(1).map(\.floats))
        #expect(trained.weights.elements.map(\.floats) != model.weights.elements.map(\.floats))
        #expect(updater.completedSteps == 3)
        #expect(updater.optimizer.steps.allSatisfy { $0 == 3 })
    }

    @Test func eachStepHasItsOwnDropoutSeedAndNoClippingReportsNoNorm() throws {
        var model = try TinyBert.model()
        let hyperparameters = TrainingHyperparameters(totalSteps: 2, maxGradientNorm: nil, seed: 5)
        var updater = ParameterUpdater(for: model, hyperparameters: hyperparameters, backend: backend)
        let first = updater.dropoutSeed
        #expect(first == randomBits(seed: 5, stream: ParameterUpdater.dropoutSeedStream, index: 0))
        let update = updater.apply(gradients(like: model.weights.elements, seed: 3), to: &model)
        #expect(update.gradientNorm == nil)
        #expect(updater.dropoutSeed == randomBits(seed: 5, stream: ParameterUpdater.dropoutSeedStream, index: 1))
        #expect(updater.dropoutSeed != first)
    }

    @Test func prunedWeightsGetNoGradientAndStayZero() throws {
        var model = try TinyBert.model()
        let name = "encoder.layer.0.intermediate.dense.weight"
        let index = try #require(model.weights.names.firstIndex(of: name))
        let shape = model.weights.elements[index].shape
        let mask = try WeightMask(shape: shape, pattern: .unstructured, keep: (0..<(shape[0] * shape[1])).map { $0 % 2 == 0 })
        try model.setMask(mask, forParameter: name)
        let gradients = gradients(like: model.weights.elements, seed: 4)
        var masked = gradients
        model.maskGradients(&masked)

        let hyperparameters = TrainingHyperparameters(learningRate: 1e-2, totalSteps: 2, maxGradientNorm: 1e-3, seed: 1)
        var updater = ParameterUpdater(for: model, hyperparameters: hyperparameters, backend: backend)
        let update = updater.apply(gradients, to: &model)
        #expect(update.gradientNorm == clippingScale(masked, maxNorm: 1e-3, backend: backend).norm)
        #expect(update.gradientNorm != clippingScale(gradients, maxNorm: 1e-3, backend: backend).norm)
        let weight = model.weights.elements[index].floats
        #expect(weight.indices.allSatisfy { $0 % 2 == 0 || weight[$0] == 0 })
    }
}
