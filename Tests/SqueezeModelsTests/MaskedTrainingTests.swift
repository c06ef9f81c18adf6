import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

@Suite struct MaskedTrainingTests {
    @Test func fineTuningKeepsPrunedWeightsAtZeroUnderWeightDecayAndMomentum() throws {
        let model = try TinyBert.model(seed: 2, initializerRange: 0.5).maskedNofM()
        #expect(model.keepsItsMasks)
        let options = TrainingHyperparameters(learningRate: 1e-2, weightDecay: 0.1, totalSteps: 6, maxGradientNorm: 1, seed: 4)
        for backend in [ReferenceBackend() as any Backend, CPUBackend(threads: 2)] {
            var trainer = BertClassifierTrainer(model: model, options: options, backend: backend)
            for _ in 0..<6 { _ = try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels) }
            let trained = trainer.model
            #expect(trained.masks == model.masks)
            #expect(trained.keepsItsMasks)
            // The kept weights did train.
            let name = "encoder.layer.0.intermediate.dense"
            #expect(try trained.linearWeight(name).floats != model.linearWeight(name).floats)
            let mask = try #require(trained.masks[name + ".weight"])
            let before = try model.linearWeight(name).floats
            let after = try trained.linearWeight(name).floats
            #expect(before.indices.filter(mask.isKept).contains { before[$0] != after[$0] })
        }
    }

    @Test func maskedGradientsAreZeroWhereTheMaskPrunes() throws {
        let model = try TinyBert.model(seed: 2).maskedNofM()
        let tape = Tape(backend: ReferenceBackend())
        let (loss, parameters) = try model.trainingLoss(on: tape, batch: TinyBert.batch, labels: TinyBert.labels)
        tape.backward(from: loss)
        var gradients = parameters.map { _, variable in tape.gradient(of: variable) }.elements
        model.maskGradients(&gradients)
        for (index, name) in model.weights.names.enumerated() {
            guard let mask = model.masks[name], let gradient = gradients[index]?.floats else { continue }
            #expect(gradient.indices.allSatisfy { mask.isKept($0) || gradient[$0] == 0 }, "\(name)")
            #expect(gradient.indices.contains { mask.isKept($0) && gradient[$0] != 0 }, "\(name)")
        }
    }
}
