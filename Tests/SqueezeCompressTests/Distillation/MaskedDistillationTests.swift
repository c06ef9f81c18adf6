import SqueezeCompress
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

@Suite struct MaskedDistillationTests {
    @Test func distillingIntoAMaskedStudentKeepsItsMasks() throws {
        let teacher = try TinyBert.model(seed: 1, initializerRange: 0.5)
        let student = try TinyBert.model(seed: 2, initializerRange: 0.5).maskedNofM()
        let options = TrainingHyperparameters(learningRate: 1e-2, weightDecay: 0.1, totalSteps: 5, seed: 3)
        var trainer = try DistillationTrainer(
            student: student, teacher: teacher, options: options, distillation: DistillationOptions(),
            backend: CPUBackend(threads: 2))
        for _ in 0..<5 { _ = try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels) }
        #expect(trainer.student.masks == student.masks)
        #expect(trainer.student.keepsItsMasks)
        let name = "encoder.layer.1.output.dense"
        #expect(try trainer.student.linearWeight(name).floats != student.linearWeight(name).floats)

        // A student made of some of a masked model's layers keeps those layers' masks.
        let shallow = try student.selectingLayers([1])
        #expect(shallow.masks["encoder.layer.0.output.dense.weight"] == student.masks["encoder.layer.1.output.dense.weight"])
        #expect(shallow.masks.count == 6 && shallow.keepsItsMasks)
    }
}
