import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeTensor
import Testing

/// Tiny decoders for the distillation tests: a 2-layer teacher and narrower students.
enum TinyDecoders {
    static func llama(hidden: Int = 8, layers: Int = 2, heads: Int = 4, kvHeads: Int = 2) -> DecoderConfig {
        DecoderConfig(
            family: .llama, vocabSize: 23, hiddenSize: hidden, intermediateSize: 12, numHiddenLayers: layers, numAttentionHeads: heads,
            numKeyValueHeads: kvHeads, maxPositionEmbeddings: 16, initializerRange: 0.4)
    }

    static func gpt2(hidden: Int = 8, layers: Int = 2) -> DecoderConfig {
        DecoderConfig(
            family: .gpt2, vocabSize: 19, hiddenSize: hidden, intermediateSize: 16, numHiddenLayers: layers, numAttentionHeads: 2,
            maxPositionEmbeddings: 16, normEpsilon: 1e-5, positions: .learned, queryKeyValueBias: true, outputBias: true,
            mlpBias: true, tieWordEmbeddings: true, attentionDropout: 0.1, residualDropout: 0.1, initializerRange: 0.4)
    }

    static let ids = Tensor(shape: [2, 5], int32s: [1, 4, 7, 2, 9, 3, 3, 0, 11, 5])

    /// A random model of `config` with norm weights away from one and biases
    /// away from zero, so their gradients matter.
    static func model(_ config: DecoderConfig, seed: UInt64) throws -> DecoderModel {
        let model = try DecoderModel(randomWithConfig: config, seed: seed)
        let weights = model.weights.map { name, tensor -> Tensor in
            guard name.contains("norm") || name.hasSuffix(".bias") else { return tensor }
            var generator = SeededGenerator(seed: seed &+ UInt64(name.utf8.count))
            return Tensor.uniform(shape: tensor.shape, in: 0.5..<1.5, generator: &generator)
        }
        return try DecoderModel(config: config, weights: weights)
    }
}

@Suite struct DecoderDistillationTests {
    let backend = ReferenceBackend()

    /// The whole loss (KL or MSE, cross-entropy, hidden MSE through a
    /// projection from a narrower student) against finite differences, on
    /// the student's parameters and the projection, dropout on for GPT-2.
    @Test(arguments: [
        (TinyDecoders.llama(), TinyDecoders.llama(hidden: 4, layers: 1, heads: 2, kvHeads: 1), LogitLoss.kl),
        (TinyDecoders.llama(), TinyDecoders.llama(hidden: 4, layers: 1, heads: 2, kvHeads: 1), LogitLoss.mse),
        (TinyDecoders.gpt2(), TinyDecoders.gpt2(hidden: 4, layers: 1), LogitLoss.kl),
    ])
    func lossGradientsMatchFiniteDifferences(teacherConfig: DecoderConfig, studentConfig: DecoderConfig, logitLoss: LogitLoss) throws {
        let teacher = try TinyDecoders.model(teacherConfig, seed: 7)
        let student = try TinyDecoders.model(studentConfig, seed: 3)
        let options = DistillationOptions(temperature: 2, alpha: .constant(0.6), logitLoss: logitLoss, hiddenLossWeight: 0.7)
        let layerMap = try options.validate(student: student, teacher: teacher)
        #expect(layerMap == [LayerPair(student: 0, teacher: 1)])
        let targets = DecoderDistillation.teacherTargets(teacher, ids: TinyDecoders.ids, layers: [1], backend: backend)
        #expect(targets.logits.shape == [8, teacherConfig.vocabSize])
        var generator = SeededGenerator(seed: 2)
        let projection = Tensor.uniform(shape: [8, 4], generator: &generator)
        let worst = checkGradients(
            inputs: student.weights.elements + [projection], backend: backend, dropoutSeed: 5, elementsPerInput: 4
        ) { tape, variables in
            DecoderDistillation.losses(
                tape, student: student.weights.replacing(with: Array(variables.dropLast())), config: student.config,
                inverseFrequencies: student.inverseFrequencies, projection: variables[variables.count - 1], targets: targets,
                ids: TinyDecoders.ids, options: options, layerMap: layerMap, alpha: 0.6
            ).total
        }
        let names = student.weights.names + ["projection"]
        #expect(worst.ratio <= 1, "\(names[worst.input])[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    /// The KL term is the per-token definition in Double: T² times the mean
    /// over the 8 predicting positions of Σ p log(p/q); the task term is the
    /// model's own language-model loss.
    @Test func lossPartsMatchTheirDefinitions() throws {
        let teacher = try TinyDecoders.model(TinyDecoders.llama(), seed: 7)
        let student = try TinyDecoders.model(TinyDecoders.llama(hidden: 4, layers: 1, heads: 2, kvHeads: 1), seed: 3)
        let temperature: Float = 2
        let options = DistillationOptions(temperature: temperature, alpha: .constant(0.25))
        let eager = Eager(backend: backend)
        let targets = DecoderDistillation.teacherTargets(teacher, ids: TinyDecoders.ids, layers: [], backend: backend)
        let parts = DecoderDistillation.losses(
            eager, student: student.weights, config: student.config, inverseFrequencies: student.inverseFrequencies, projection: nil,
            targets: targets, ids: TinyDecoders.ids, options: options, layerMap: [], alpha: 0.25)
        #expect(parts.hidden == nil)

        let teacherLogits = try teacher.logits(TinyDecoders.ids, backend: backend).floats
        let studentLogits = try student.logits(TinyDecoders.ids, backend: backend).floats
        let vocabulary = 23
        func softmax(_ logits: [Float], row: Int) -> [Double] {
            let scaled = logits[(row * vocabulary)..<((row + 1) * vocabulary)].map { Double($0) / Double(temperature) }
            let top = scaled.max() ?? 0
            let exps = scaled.map { Foundation.exp($0 - top) }
            let total = exps.reduce(0, +)
            return exps.map { $0 / total }
        }
        var kl = 0.0
        for sequence in 0..<2 {
            for position in 0..<4 {
                let row = sequence * 5 + position
                let p = softmax(teacherLogits, row: row)
                let q = softmax(studentLogits, row: row)
                kl += zip(p, q).reduce(0.0) { $0 + $1.0 * Foundation.log($1.0 / $1.1) }
            }
        }
        kl = kl / 8 * Double(temperature * temperature)
        #expect(kl > 0.01)
        #expect(abs(Double(parts.distillation.scalarValue) - kl) <= 1e-4 * kl, "\(parts.distillation.scalarValue) vs \(kl)")

        let task = DecoderModel.languageModelLoss(
            eager, student.weights, config: student.config, inverseFrequencies: student.inverseFrequencies, ids: TinyDecoders.ids)
        #expect(parts.task.scalarValue == task.scalarValue)
        let expected = 0.25 * parts.distillation.scalarValue + 0.75 * parts.task.scalarValue
        #expect(abs(parts.total.scalarValue - expected) <= 1e-6 * abs(expected))
    }

    /// The teacher distilled into itself loses nothing: KL and hidden MSE
    /// (identity projection) are zero.
    @Test func aStudentEqualToItsTeacherHasNoDistillationLoss() throws {
        let teacher = try TinyDecoders.model(TinyDecoders.llama(), seed: 7)
        let student = try teacher.selectingLayers([0, 1])
        let options = DistillationOptions(hiddenLossWeight: 1)
        let layerMap = try options.validate(student: student, teacher: teacher)
        #expect(layerMap == [LayerPair(student: 0, teacher: 0), LayerPair(student: 1, teacher: 1)])
        let targets = DecoderDistillation.teacherTargets(teacher, ids: TinyDecoders.ids, layers: [0, 1], backend: backend)
        let identity = Tensor(shape: [8, 8], floats: (0..<64).map { $0 / 8 == $0 % 8 ? 1 : 0 })
        let parts = DecoderDistillation.losses(
            Eager(backend: backend), student: student.weights, config: student.config, inverseFrequencies: student.inverseFrequencies,
            projection: identity, targets: targets, ids: TinyDecoders.ids, options: options, layerMap: layerMap, alpha: 0.5)
        #expect(abs(parts.distillation.scalarValue) <= 1e-6)
        #expect(parts.hidden?.scalarValue == 0)
    }

    /// `layerStates` is the forward `hiddenStates` runs: the same hidden
    /// states bit for bit, and the last block's output is what the final norm reads.
    @Test func layerStatesAreTheForwardsBlockOutputs() throws {
        for config in [TinyDecoders.llama(), TinyDecoders.gpt2()] {
            let model = try TinyDecoders.model(config, seed: 4)
            let eager = Eager(backend: backend)
            var cache: DecoderKVCache?
            let hidden = DecoderModel.hiddenStates(
                eager, model.weights, config: config, inverseFrequencies: model.inverseFrequencies, ids: TinyDecoders.ids, cache: &cache)
            let states = DecoderModel.layerStates(
                eager, model.weights, config: config, inverseFrequencies: model.inverseFrequencies, ids: TinyDecoders.ids, cache: &cache,
                keeping: [0, 1])
            #expect(states.hidden.floats == hidden.floats)
            #expect(states.blockOutputs.keys.sorted() == [0, 1])
            #expect(states.blockOutputs[0]?.shape == [2, 5, 8])
            let last = try #require(states.blockOutputs[1])
            let normed = config.usesRMSNorm
                ? eager.rmsNorm(last, gamma: model.weights.finalNorm.weight, epsilon: Float(config.normEpsilon))
                : eager.layerNorm(
                    last, gamma: model.weights.finalNorm.weight, beta: model.weights.finalNorm.bias ?? Tensor(zeros: [8]),
                    epsilon: Float(config.normEpsilon))
            #expect(normed.floats == hidden.floats)
        }
    }

    @Test func selectingLayersKeepsEmbeddingsNormHeadAndChosenBlocks() throws {
        let teacher = try TinyDecoders.model(TinyDecoders.llama(), seed: 7)
        let student = try teacher.selectingLayers([1])
        #expect(student.config.numHiddenLayers == 1)
        #expect(student.weights.layers[0].query.weight.floats == teacher.weights.layers[1].query.weight.floats)
        #expect(student.weights.tokenEmbedding.floats == teacher.weights.tokenEmbedding.floats)
        #expect(student.weights.finalNorm.weight.floats == teacher.weights.finalNorm.weight.floats)
        #expect(student.weights.head?.floats == teacher.weights.head?.floats)
        let all = try teacher.selectingLayers([0, 1])
        #expect(try all.logits(TinyDecoders.ids, backend: backend).floats == teacher.logits(TinyDecoders.ids, backend: backend).floats)
        #expect(throws: DistillationError.self) { try teacher.selectingLayers([0, 2]) }
    }

    @Test func decoderSetupsThatCannotWorkAreErrors() throws {
        let teacher = try TinyDecoders.model(TinyDecoders.llama(), seed: 7)
        let student = try TinyDecoders.model(TinyDecoders.llama(hidden: 4, layers: 1, heads: 2, kvHeads: 1), seed: 3)
        func message(_ options: DistillationOptions, student: DecoderModel) -> String {
            do {
                _ = try options.validate(student: student, teacher: teacher)
                return ""
            } catch {
                return error.message
            }
        }
        #expect(message(DistillationOptions(attentionLossWeight: 1), student: student).contains("the attention-score loss is for BERT students"))
        var wide = TinyDecoders.llama(hidden: 4, layers: 1, heads: 2, kvHeads: 1)
        wide.vocabSize = 30
        let otherVocabulary = try TinyDecoders.model(wide, seed: 3)
        #expect(message(DistillationOptions(), student: otherVocabulary).contains("the student's vocabulary has 30 tokens, the teacher's 23"))
        #expect(message(DistillationOptions(hiddenLossWeight: 1, learnProjection: false), student: student).contains("hidden size 4 differs"))
        #expect(message(DistillationOptions(hiddenLossWeight: 1, layerMap: [LayerPair(student: 0, teacher: 2)]), student: student)
            .contains("the teacher has 2 layers"))
    }

    /// Training moves the student towards the teacher, keeps a pruned
    /// student's zeros, and equal runs give equal bits.
    @Test func trainingLearnsKeepsMasksAndIsReproducible() throws {
        let teacher = try TinyDecoders.model(TinyDecoders.llama(), seed: 7)
        var student = try TinyDecoders.model(TinyDecoders.llama(hidden: 4, layers: 1, heads: 2, kvHeads: 1), seed: 3)
        let name = "model.layers.0.mlp.up_proj.weight"
        let weight = try #require(student.weights.layers.first?.up.weight)
        let keep = (0..<weight.count).map { $0 % 2 == 0 }
        try student.setMask(try WeightMask(shape: weight.shape, pattern: .unstructured, keep: keep), forParameter: name)
        let options = TrainingHyperparameters(learningRate: 3e-2, totalSteps: 30, seed: 3)
        let distillation = DistillationOptions(temperature: 1, alpha: .constant(0.8), hiddenLossWeight: 0.1)
        func train() throws -> (DecoderDistillationTrainer, [DistillationStep]) {
            var trainer = try DecoderDistillationTrainer(
                student: student, teacher: teacher, options: options, distillation: distillation, backend: CPUBackend(threads: 2))
            var steps: [DistillationStep] = []
            for _ in 0..<30 { steps.append(try trainer.step(ids: TinyDecoders.ids)) }
            return (trainer, steps)
        }
        let (trainer, steps) = try train()
        let first = try #require(steps.first)
        let last = try #require(steps.last)
        #expect(last.distillationLoss < first.distillationLoss * 0.5, "KL \(first.distillationLoss) → \(last.distillationLoss)")
        #expect(first.hiddenLoss != nil && first.attentionLoss == nil)
        #expect(trainer.projection?.shape == [8, 4])
        let trained = try #require(trainer.student.weights.layers.first?.up.weight.floats)
        #expect(trainer.student.masks[name] != nil)
        #expect(zip(trained, keep).allSatisfy { $1 || $0 == 0 }, "pruned weights stay zero")
        #expect(zip(trained, weight.floats).contains { $0 != $1 }, "kept weights train")
        let (again, _) = try train()
        #expect(again.student.weights.elements.map(\.floats) == trainer.student.weights.elements.map(\.floats))
    }
}
