import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct DistillationLossTests {
    let backend = ReferenceBackend()

    static let studentLogits = Tensor(shape: [2, 3], floats: [0.5, -1.0, 2.0, 1.5, 0.25, -0.75])
    static let teacherLogits = Tensor(shape: [2, 3], floats: [1.0, -0.5, 0.5, 3.0, -2.0, 0.0])

    @Test func klIsZeroWhenStudentEqualsTeacher() {
        for temperature: Float in [1, 2, 4.5] {
            let loss = DistillationLosses.kl(
                Eager(backend: backend), student: Self.teacherLogits, teacher: Self.teacherLogits, temperature: temperature)
            #expect(loss.shape == [])
            #expect(abs(loss.scalarValue) <= 1e-7, "T=\(temperature): \(loss.scalarValue)")
        }
    }

    /// The loss against the formula in Double: T² · mean over rows of Σ p log(p/q).
    @Test func klMatchesTheDefinition() {
        let temperature: Float = 2
        let loss = DistillationLosses.kl(
            Eager(backend: backend), student: Self.studentLogits, teacher: Self.teacherLogits, temperature: temperature)
        func softmax(_ row: ArraySlice<Float>) -> [Double] {
            let scaled = row.map { Double($0) / Double(temperature) }
            let top = scaled.max() ?? 0
            let exps = scaled.map { Foundation.exp($0 - top) }
            let total = exps.reduce(0, +)
            return exps.map { $0 / total }
        }
        var expected = 0.0
        for row in 0..<2 {
            let p = softmax(Self.teacherLogits.floats[(row * 3)..<(row * 3 + 3)])
            let q = softmax(Self.studentLogits.floats[(row * 3)..<(row * 3 + 3)])
            expected += zip(p, q).reduce(0.0) { $0 + $1.0 * Foundation.log($1.0 / $1.1) }
        }
        expected = expected / 2 * Double(temperature * temperature)
        #expect(expected > 0.1)
        #expect(abs(Double(loss.scalarValue) - expected) <= 1e-5 * expected, "\(loss.scalarValue) vs \(expected)")
    }

    @Test func logitMSEAndCombination() {
        let eager = Eager(backend: backend)
        let mse = DistillationLosses.logitMSE(eager, student: Self.studentLogits, teacher: Self.teacherLogits).scalarValue
        let expected = zip(Self.studentLogits.floats, Self.teacherLogits.floats).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / 6
        #expect(abs(mse - expected) <= 1e-6)
        let combined = DistillationLosses.combine(
            eager, distillation: Tensor(shape: [], floats: [2]), task: Tensor(shape: [], floats: [10]), alpha: 0.25)
        #expect(combined.scalarValue == 0.25 * 2 + 0.75 * 10)
    }

    /// Padding positions never count: changing the teacher there leaves the loss alone.
    @Test func hiddenMSEIgnoresPadding() {
        var generator = SeededGenerator(seed: 4)
        let student = Tensor.uniform(shape: [2, 3, 4], generator: &generator)
        let teacher = Tensor.uniform(shape: [2, 3, 5], generator: &generator)
        let projection = Tensor.uniform(shape: [5, 4], generator: &generator)
        let mask = Tensor(shape: [2, 3], int32s: [1, 1, 1, 1, 0, 0])
        let eager = Eager(backend: backend)
        let loss = DistillationLosses.hiddenMSE(eager, student: student, teacher: teacher, projection: projection, attentionMask: mask)
        var changed = teacher.floats
        for index in 20..<30 { changed[index] = 100 }
        let same = DistillationLosses.hiddenMSE(
            eager, student: student, teacher: Tensor(shape: [2, 3, 5], floats: changed), projection: projection, attentionMask: mask)
        #expect(loss.scalarValue == same.scalarValue)
        // By hand: mean over the 4 real tokens × 5 features.
        let mapped = backend.linear(student, weight: projection, bias: nil).floats
        var total: Float = 0
        for token in [0, 1, 2, 3] {
            for f in 0..<5 { total += (mapped[token * 5 + f] - teacher.floats[token * 5 + f]) * (mapped[token * 5 + f] - teacher.floats[token * 5 + f]) }
        }
        #expect(abs(loss.scalarValue - total / 20) <= 1e-5)
    }

    @Test func lossGradientsMatchFiniteDifferences() {
        let teacher = Self.teacherLogits
        for temperature: Float in [1, 3] {
            let kl = checkGradients(inputs: [Self.studentLogits], backend: backend) { tape, inputs in
                DistillationLosses.kl(tape, student: inputs[0], teacher: teacher, temperature: temperature)
            }
            #expect(kl.ratio <= 1, "kl T=\(temperature): \(kl)")
        }
        let mse = checkGradients(inputs: [Self.studentLogits], backend: backend) { tape, inputs in
            DistillationLosses.logitMSE(tape, student: inputs[0], teacher: teacher)
        }
        #expect(mse.ratio <= 1, "mse: \(mse)")
        let labels = Tensor(shape: [2], int32s: [2, 0])
        let combined = checkGradients(inputs: [Self.studentLogits], backend: backend) { tape, inputs in
            DistillationLosses.combine(
                tape, distillation: DistillationLosses.kl(tape, student: inputs[0], teacher: teacher, temperature: 2),
                task: tape.crossEntropy(inputs[0], labels: labels), alpha: 0.7)
        }
        #expect(combined.ratio <= 1, "combined: \(combined)")

        var generator = SeededGenerator(seed: 8)
        let student = Tensor.uniform(shape: [2, 3, 4], generator: &generator)
        let hiddenTeacher = Tensor.uniform(shape: [2, 3, 5], generator: &generator)
        let projection = Tensor.uniform(shape: [5, 4], generator: &generator)
        let mask = Tensor(shape: [2, 3], int32s: [1, 1, 0, 1, 1, 1])
        let hidden = checkGradients(inputs: [student, projection], backend: backend) { tape, inputs in
            DistillationLosses.hiddenMSE(tape, student: inputs[0], teacher: hiddenTeacher, projection: inputs[1], attentionMask: mask)
        }
        #expect(hidden.ratio <= 1, "hidden: \(hidden)")
    }

    /// KD and hidden losses through a whole tiny student (dropout on) against finite differences.
    @Test(arguments: [LogitLoss.kl, .mse])
    func wholeStudentGradientsMatchFiniteDifferences(logitLoss: LogitLoss) throws {
        let teacher = try TinyBert.model(seed: 7, initializerRange: 0.5)
        let student = try TinyBert.model(seed: 3, initializerRange: 0.5).selectingLayers([1])
        let eager = Eager(backend: backend)
        let teacherLayers = BertModel.encodeLayers(eager, teacher.weights, config: teacher.config, batch: TinyBert.batch)
        let teacherLogits = try teacher.logits(TinyBert.batch, backend: backend)
        var generator = SeededGenerator(seed: 2)
        let projection = Tensor.uniform(shape: [8, 8], generator: &generator)
        let worst = checkGradients(
            inputs: student.weights.elements + [projection], backend: backend, dropoutSeed: 5, elementsPerInput: 4
        ) { tape, variables in
            let weights = student.weights.replacing(with: Array(variables.dropLast()))
            let layers = BertModel.encodeLayers(tape, weights, config: student.config, batch: TinyBert.batch)
            let logits = BertModel.classify(tape, layers[0], weights: weights, config: student.config, pooling: student.pooling, batch: TinyBert.batch)
            let logitTerm = logitLoss == .kl
                ? DistillationLosses.kl(tape, student: logits, teacher: teacherLogits, temperature: 2)
                : DistillationLosses.logitMSE(tape, student: logits, teacher: teacherLogits)
            let total = DistillationLosses.combine(tape, distillation: logitTerm, task: tape.crossEntropy(logits, labels: TinyBert.labels), alpha: 0.6)
            let hidden = DistillationLosses.hiddenMSE(
                tape, student: layers[0], teacher: teacherLayers[1], projection: variables[variables.count - 1], attentionMask: TinyBert.batch.attentionMask)
            return tape.add(total, tape.affine(hidden, scale: 0.5, shift: 0))
        }
        let names = student.weights.names + ["projection"]
        #expect(worst.ratio <= 1, "\(names[worst.input])[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    @Test func alphaSchedules() {
        #expect(AlphaSchedule.constant(0.3).alpha(atStep: 7, of: 10) == 0.3)
        let linear = AlphaSchedule.linear(start: 0.9, end: 0.1)
        #expect(linear.alpha(atStep: 0, of: 5) == 0.9)
        #expect(abs(linear.alpha(atStep: 2, of: 5) - 0.5) <= 1e-6)
        #expect(abs(linear.alpha(atStep: 4, of: 5) - 0.1) <= 1e-6)
        #expect(abs(linear.alpha(atStep: 9, of: 5) - 0.1) <= 1e-6, "clamped past the end")
        #expect(linear.alpha(atStep: 0, of: 1) == 0.9)
    }

    @Test func evenlySpacedLayerMaps() {
        func pairs(_ s: Int, _ t: Int) -> [[Int]] {
            LayerPair.evenlySpaced(studentLayers: s, teacherLayers: t).map { [$0.student, $0.teacher] }
        }
        #expect(pairs(3, 6) == [[0, 1], [1, 3], [2, 5]])
        #expect(pairs(1, 2) == [[0, 1]])
        #expect(pairs(2, 3) == [[0, 1], [1, 2]])
        #expect(pairs(4, 4) == [[0, 0], [1, 1], [2, 2], [3, 3]])
    }
}

@Suite struct DistillationStudentTests {
    let backend = ReferenceBackend()

    @Test func selectingLayersKeepsEmbeddingsHeadsAndChosenLayers() throws {
        let teacher = try TinyBert.model(initializerRange: 0.5)
        let student = try teacher.selectingLayers([1])
        #expect(student.config.numHiddenLayers == 1)
        #expect(student.layerShapes == [TinyBert.layerShapes[1]])
        #expect(student.pooling == teacher.pooling)
        #expect(student.weights.layers[0].query.weight.floats == teacher.weights.layers[1].query.weight.floats)
        #expect(student.weights.embeddings.word.floats == teacher.weights.embeddings.word.floats)
        #expect(student.weights.pooler?.weight.floats == teacher.weights.pooler?.weight.floats)
        #expect(student.weights.classifier.weight.floats == teacher.weights.classifier.weight.floats)
        let all = try teacher.selectingLayers([0, 1])
        #expect(try all.logits(TinyBert.batch, backend: backend).floats == teacher.logits(TinyBert.batch, backend: backend).floats)
    }

    @Test(arguments: [
        ([0, 2], "layer 2 does not exist: the teacher has 2 layers (0…1)"),
        ([-1], "layer -1 does not exist"),
        ([1, 0], "layers must be in increasing order, got [1, 0]"),
        ([1, 1], "layer 1 is listed twice in [1, 1]"),
        ([], "`layers` is empty"),
    ])
    func badLayerListsAreErrors(layers: [Int], message: String) throws {
        let teacher = try TinyBert.model()
        #expect {
            _ = try teacher.selectingLayers(layers)
        } throws: { error in
            (error as? DistillationError)?.message.contains(message) == true
        }
    }

    @Test func encodeLayersEndsWithEncode() throws {
        let model = try TinyBert.model(initializerRange: 0.5)
        let eager = Eager(backend: backend)
        let layers = BertModel.encodeLayers(eager, model.weights, config: model.config, batch: TinyBert.batch)
        #expect(layers.count == 2)
        #expect(layers.allSatisfy { $0.shape == [2, 5, 8] })
        #expect(layers.last?.floats == BertModel.encode(eager, model.weights, config: model.config, batch: TinyBert.batch).floats)
        let logits = BertModel.classify(eager, layers[1], weights: model.weights, config: model.config, pooling: model.pooling, batch: TinyBert.batch)
        let direct = try model.logits(TinyBert.batch, backend: backend)
        for (x, y) in zip(logits.floats, direct.floats) { #expect(abs(x - y) <= 1e-5) }
    }
}

@Suite struct DistillationTrainerTests {
    let backend = ReferenceBackend()

    static func options(steps: Int = 30, seed: UInt64 = 1) -> TrainingHyperparameters {
        TrainingHyperparameters(learningRate: 1e-2, weightDecay: 0.01, warmupSteps: 1, totalSteps: steps, seed: seed)
    }

    static func trainer(
        _ distillation: DistillationOptions = DistillationOptions(), student: BertModel? = nil, seed: UInt64 = 1,
        backend: any Backend = ReferenceBackend()
    ) throws -> DistillationTrainer {
        let teacher = try TinyBert.model(seed: 7, initializerRange: 0.5)
        return try DistillationTrainer(
            student: try student ?? teacher.selectingLayers([0]), teacher: teacher, options: options(seed: seed),
            distillation: distillation, backend: backend)
    }

    private func bits(_ model: BertModel) -> [[UInt32]] { model.weights.elements.map { $0.floats.map(\.bitPattern) } }

    @Test func studentApproachesTheTeacher() throws {
        var trainer = try Self.trainer(DistillationOptions(alpha: .constant(1)))
        var steps: [DistillationStep] = []
        for _ in 0..<30 { steps.append(try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels)) }
        #expect(steps[0].learningRate == 0)
        #expect(steps.allSatisfy { $0.alpha == 1 && $0.loss == $0.distillationLoss && $0.hiddenLoss == nil })
        let early = steps.prefix(3).map(\.distillationLoss).reduce(0, +)
        let late = steps.suffix(3).map(\.distillationLoss).reduce(0, +)
        #expect(late < early * 0.5, "KL \(early) → \(late)")
        #expect(trainer.completedSteps == 30)
    }

    /// With α = 0 and no hidden loss, distillation is plain fine-tuning, update for update.
    @Test func alphaZeroIsBitIdenticalToTheClassifierTrainer() throws {
        let student = try TinyBert.model(seed: 7, initializerRange: 0.5).selectingLayers([1])
        var distiller = try Self.trainer(DistillationOptions(alpha: .constant(0)), student: student)
        var plain = BertClassifierTrainer(model: student, options: Self.options(), backend: backend)
        for _ in 0..<4 {
            let a = try distiller.step(batch: TinyBert.batch, labels: TinyBert.labels)
            let b = try plain.step(batch: TinyBert.batch, labels: TinyBert.labels)
            #expect(a.loss == b.loss && a.taskLoss == b.loss && a.gradientNorm == b.gradientNorm && a.learningRate == b.learningRate)
        }
        #expect(bits(distiller.student) == bits(plain.model))
    }

    @Test func sameSeedIsBitIdenticalAndCachedTeacherLogitsGiveTheSameStep() throws {
        let options = DistillationOptions(alpha: .linear(start: 0.9, end: 0.1), hiddenLossWeight: 0.5)
        var first = try Self.trainer(options)
        var second = try Self.trainer(options)
        for _ in 0..<3 {
            let a = try first.step(batch: TinyBert.batch, labels: TinyBert.labels)
            let b = try second.step(batch: TinyBert.batch, labels: TinyBert.labels)
            #expect(a == b)
            #expect(a.hiddenLoss != nil)
        }
        #expect(bits(first.student) == bits(second.student))
        #expect(first.projection?.floats == second.projection?.floats)
        var other = try Self.trainer(options, seed: 2)
        for _ in 0..<3 { _ = try other.step(batch: TinyBert.batch, labels: TinyBert.labels) }
        #expect(bits(other.student) != bits(first.student))

        var live = try Self.trainer()
        var cached = try Self.trainer()
        let logits = try cached.teacherLogits(TinyBert.batch)
        for _ in 0..<2 {
            let a = try live.step(batch: TinyBert.batch, labels: TinyBert.labels)
            let b = try cached.step(batch: TinyBert.batch, labels: TinyBert.labels, teacherLogits: logits)
            #expect(a == b)
        }
        #expect(bits(live.student) == bits(cached.student))
    }

    @Test func projectionStartsAtIdentityOrSeededAndIsTrained() throws {
        var trainer = try Self.trainer(DistillationOptions(hiddenLossWeight: 1))
        let identity = try #require(trainer.projection)
        #expect(identity.shape == [8, 8])
        #expect(identity.floats.enumerated().allSatisfy { $0.element == ($0.offset % 9 == 0 ? 1 : 0) })
        for _ in 0..<3 { _ = try trainer.step(batch: TinyBert.batch, labels: TinyBert.labels) }
        #expect(trainer.projection?.floats != identity.floats)

        var config = TinyBert.config()
        config.hiddenSize = 4
        config.numHiddenLayers = 1
        config.numAttentionHeads = 1
        let narrow = try BertModel(randomWithConfig: config, seed: 3)
        var narrowTrainer = try Self.trainer(DistillationOptions(hiddenLossWeight: 1, projectionSeed: 9), student: narrow)
        #expect(narrowTrainer.projection?.shape == [8, 4])
        let step = try narrowTrainer.step(batch: TinyBert.batch, labels: TinyBert.labels)
        #expect(step.hiddenLoss.map { $0 > 0 } == true)
        #expect(try Self.trainer(DistillationOptions(hiddenLossWeight: 0), student: narrow).projection == nil)
        #expect(try Self.trainer(DistillationOptions(hiddenLossWeight: 1, learnProjection: false)).projection == nil)
    }

    @Test func badSetupsAreErrorsBeforeTraining() throws {
        func message(_ options: DistillationOptions, student: BertModel? = nil) -> String? {
            do {
                _ = try Self.trainer(options, student: student)
                return nil
            } catch {
                return (error as? DistillationError)?.message
            }
        }
        #expect(message(DistillationOptions(temperature: 0))?.contains("`temperature` must be a positive number") == true)
        #expect(message(DistillationOptions(alpha: .constant(1.5)))?.contains("α must be between 0 and 1, got 1.5") == true)
        #expect(message(DistillationOptions(alpha: .linear(start: 0.5, end: -0.1)))?.contains("got -0.1") == true)
        #expect(message(DistillationOptions(hiddenLossWeight: 1, layerMap: [LayerPair(student: 0, teacher: 2)]))?
            .contains("the teacher has 2 layers") == true)
        #expect(message(DistillationOptions(hiddenLossWeight: 1, layerMap: [LayerPair(student: 1, teacher: 0)]))?
            .contains("the student has 1 layers") == true)
        var config = TinyBert.config()
        config.hiddenSize = 16
        config.numHiddenLayers = 1
        let wide = try BertModel(randomWithConfig: config, seed: 3)
        #expect(message(DistillationOptions(hiddenLossWeight: 1, learnProjection: false), student: wide)?
            .contains("hidden size 16 differs from the teacher's 8") == true)
        #expect(message(DistillationOptions(hiddenLossWeight: 1), student: wide) == nil, "a learned projection bridges the widths")
        var otherLabels = TinyBert.config(labels: 2)
        otherLabels.numHiddenLayers = 1
        #expect(message(DistillationOptions(), student: try BertModel(randomWithConfig: otherLabels, seed: 3))?
            .contains("labels") == true)
    }
}
