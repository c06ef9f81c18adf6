import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// The attention-score loss of `distill/kd` (TinyBERT): the loss, its
/// gradients through a student, padding, and the trainer's use of it.
@Suite struct AttentionDistillationTests {
    static let backends: [any Backend] = [ReferenceBackend(), CPUBackend(threads: 2)]
    static let bothLayers = [LayerPair(student: 0, teacher: 0), LayerPair(student: 1, teacher: 1)]

    /// By hand on random scores: every head and every (query, key) pair of
    /// real tokens counts, a pair with a padded query or key never does.
    @Test func scoreLossMatchesTheDefinitionAndIgnoresPadding() {
        var generator = SeededGenerator(seed: 4)
        let student = Tensor.uniform(shape: [2, 2, 3, 3], generator: &generator)
        let teacher = Tensor.uniform(shape: [2, 2, 3, 3], generator: &generator)
        let mask = Tensor(shape: [2, 3], int32s: [1, 1, 1, 1, 1, 0])
        var total: Float = 0
        var changed = teacher.floats
        for b in 0..<2 {
            for h in 0..<2 {
                for q in 0..<3 {
                    for k in 0..<3 {
                        let index = ((b * 2 + h) * 3 + q) * 3 + k
                        if b == 1 && (q == 2 || k == 2) {
                            changed[index] = 100
                        } else {
                            total += (student.floats[index] - teacher.floats[index]) * (student.floats[index] - teacher.floats[index])
                        }
                    }
                }
            }
        }
        for backend in Self.backends {
            let eager = Eager(backend: backend)
            let loss = DistillationLosses.attentionScoreMSE(eager, student: student, teacher: teacher, attentionMask: mask)
            #expect(loss.shape == [])
            // 2 heads × (9 + 4) real pairs.
            #expect(abs(loss.scalarValue - total / 26) <= 1e-6, "\(backend.id): \(loss.scalarValue) vs \(total / 26)")
            let same = DistillationLosses.attentionScoreMSE(
                eager, student: student, teacher: Tensor(shape: [2, 2, 3, 3], floats: changed), attentionMask: mask)
            #expect(same.scalarValue == loss.scalarValue, "\(backend.id)")
        }
    }

    /// The loss on both layers' scores through a whole student (dropout on)
    /// against finite differences, on both backends.
    @Test(arguments: [0, 1])
    func studentGradientsMatchFiniteDifferences(backendIndex: Int) throws {
        let backend = Self.backends[backendIndex]
        let teacher = try TinyBert.model(seed: 7, initializerRange: 0.5)
        let student = try TinyBert.model(seed: 3, initializerRange: 0.5)
        let batch = TinyBert.batch
        let teacherScores = BertModel.encodeLayers(
            Eager(backend: backend), teacher.weights, config: teacher.config, batch: batch, attentionScoresOf: [0, 1]).scores
        #expect(teacherScores[0]?.shape == [2, 2, 5, 5] && teacherScores[1]?.shape == [2, 1, 5, 5])
        let worst = checkGradients(
            inputs: student.weights.elements, backend: backend, dropoutSeed: 5, elementsPerInput: 4
        ) { tape, variables in
            let weights = student.weights.replacing(with: variables)
            let scores = BertModel.encodeLayers(tape, weights, config: student.config, batch: batch, attentionScoresOf: [0, 1]).scores
            let terms = Self.bothLayers.compactMap { pair in
                scores[pair.student].flatMap { studentScores in
                    teacherScores[pair.teacher].map {
                        DistillationLosses.attentionScoreMSE(tape, student: studentScores, teacher: $0, attentionMask: batch.attentionMask)
                    }
                }
            }
            return terms.dropFirst().reduce(terms[0]) { tape.add($0, $1) }
        }
        let names = student.weights.names
        #expect(worst.input >= 0)
        #expect(
            worst.ratio <= 1,
            "\(backend.id) \(names[Swift.max(worst.input, 0)])[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    /// Asking for scores changes nothing else: the layer outputs are bit for bit the same.
    @Test func scoresLeaveTheLayerOutputsAlone() throws {
        let model = try TinyBert.model(seed: 7, initializerRange: 0.5)
        for backend in Self.backends {
            let eager = Eager(backend: backend)
            let plain = BertModel.encodeLayers(eager, model.weights, config: model.config, batch: TinyBert.batch)
            let withScores = BertModel.encodeLayers(eager, model.weights, config: model.config, batch: TinyBert.batch, attentionScoresOf: [1])
            #expect(withScores.outputs.map { $0.floats.map(\.bitPattern) } == plain.map { $0.floats.map(\.bitPattern) })
            #expect(Array(withScores.scores.keys) == [1])
        }
    }

    /// A 3-layer student made of all the teacher's layers (dropout off) has
    /// exactly the teacher's scores: the loss is 0.
    @Test func lossIsZeroForAStudentEqualToTheTeacher() throws {
        var config = TinyBert.config(initializerRange: 0.5)
        config.numHiddenLayers = 3
        config.hiddenDropoutProbability = 0
        config.attentionDropoutProbability = 0
        let shapes = [BertLayerShape(heads: 2, intermediateSize: 16), BertLayerShape(heads: 1, intermediateSize: 12), BertLayerShape(heads: 2, intermediateSize: 8)]
        let teacher = try BertModel(randomWithConfig: config, layerShapes: shapes, seed: 7)
        let student = try teacher.selectingLayers([0, 1, 2])
        for backend in Self.backends {
            var trainer = try DistillationTrainer(
                student: student, teacher: teacher, options: DistillationTrainerTests.options(), distillation: DistillationOptions(attentionLossWeight: 1),
                backend: backend)
            #expect(trainer.layerMap == (0..<3).map { LayerPair(student: $0, teacher: $0) })
            let step = try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels)
            #expect(step.attentionLoss == 0, "\(backend.id)")
            #expect(step.hiddenLoss == nil)
        }
    }

    /// Other ids at the padded positions (mask 0) change their scores, not the loss.
    @Test func paddedTokensDoNotCount() throws {
        let teacher = try TinyBert.model(seed: 7, initializerRange: 0.5)
        let student = try TinyBert.model(seed: 3, initializerRange: 0.5)
        let batch = TinyBert.batch
        var ids = batch.inputIDs.int32s
        #expect(batch.attentionMask.int32s[8...] == [0, 0])
        ids[8] = 13
        ids[9] = 17
        let repadded = BertBatch(inputIDs: Tensor(shape: batch.inputIDs.shape, int32s: ids), attentionMask: batch.attentionMask)

        let backend = ReferenceBackend()
        let eager = Eager(backend: backend)
        func teacherScores(_ batch: BertBatch) -> [Float] {
            BertModel.encodeLayers(eager, teacher.weights, config: teacher.config, batch: batch, attentionScoresOf: [1]).scores[1]?.floats ?? []
        }
        #expect(teacherScores(batch) != teacherScores(repadded), "the padded tokens' scores changed")

        let options = DistillationOptions(attentionLossWeight: 1, layerMap: Self.bothLayers)
        var first = try DistillationTrainer(
            student: student, teacher: teacher, options: DistillationTrainerTests.options(), distillation: options, backend: backend)
        var second = first
        let a = try first.step(batch: batch, labels: TinyBert.labels)
        let b = try second.step(batch: repadded, labels: TinyBert.labels)
        #expect(a.attentionLoss != nil && a.attentionLoss == b.attentionLoss)
        #expect(a.loss == b.loss)
    }

    /// A random 1-layer student learns the teacher's last-layer scores; the
    /// total is the weighted sum of its parts; the same seed gives the same student.
    @Test func attentionLossFallsDuringDistillation() throws {
        var config = TinyBert.config()
        config.numHiddenLayers = 1
        config.numAttentionHeads = 1
        let student = try BertModel(randomWithConfig: config, seed: 3)
        let options = DistillationOptions(alpha: .constant(0.5), attentionLossWeight: 0.5)
        var trainer = try DistillationTrainerTests.trainer(options, student: student)
        #expect(trainer.layerMap == [LayerPair(student: 0, teacher: 1)])
        #expect(trainer.projection == nil, "no projection without the hidden loss")
        var losses: [Float] = []
        for _ in 0..<30 {
            let step = try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels)
            let attention = try #require(step.attentionLoss)
            let expected = 0.5 * step.distillationLoss + 0.5 * step.taskLoss + 0.5 * attention
            #expect(abs(step.loss - expected) <= 1e-5 * Swift.max(1, abs(expected)))
            losses.append(attention)
        }
        let early = losses.prefix(3).reduce(0, +)
        let late = losses.suffix(3).reduce(0, +)
        #expect(late < early * 0.5, "attention loss \(early) → \(late)")

        var again = try DistillationTrainerTests.trainer(options, student: student)
        for _ in 0..<30 { _ = try again.step(batch: TinyBert.batch, labels: TinyBert.labels) }
        #expect(again.student.weights.elements.map(\.floats) == trainer.student.weights.elements.map(\.floats))
    }

    @Test func headCountsMustMatchBeforeTraining() throws {
        func message(_ options: DistillationOptions, student: BertModel) -> String? {
            do {
                _ = try DistillationTrainerTests.trainer(options, student: student)
                return nil
            } catch {
                return (error as? DistillationError)?.message
            }
        }
        let teacher = try TinyBert.model(seed: 7, initializerRange: 0.5)
        let first = try teacher.selectingLayers([0])
        // Default map: student 0 (2 heads) ↔ teacher 1 (1 head).
        let mismatch = message(DistillationOptions(attentionLossWeight: 1), student: first)
        #expect(mismatch?.contains("student layer 0 has 2 attention heads but teacher layer 1") == true, "\(mismatch ?? "no error")")
        #expect(mismatch?.contains("`layer_map`") == true && mismatch?.contains("`attention_loss_weight: 0`") == true)
        #expect(message(DistillationOptions(attentionLossWeight: 1, layerMap: [LayerPair(student: 0, teacher: 0)]), student: first) == nil)
        #expect(message(DistillationOptions(hiddenLossWeight: 1), student: first) == nil, "head counts matter only for the attention loss")

        var config = TinyBert.config()
        config.numHiddenLayers = 1
        let headless = try BertModel(randomWithConfig: config, layerShapes: [BertLayerShape(heads: 0, intermediateSize: 16)], seed: 3)
        let pruned = message(DistillationOptions(attentionLossWeight: 1), student: headless)
        #expect(pruned?.contains("student layer 0 (layer map pair [0, 1]) has no attention heads left") == true, "\(pruned ?? "no error")")
        #expect(message(DistillationOptions(attentionLossWeight: -1), student: first)?
            .contains("`attention_loss_weight` must not be negative") == true)
    }
}
