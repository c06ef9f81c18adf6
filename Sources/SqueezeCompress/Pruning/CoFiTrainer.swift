import Foundation
import SqueezeModels
import SqueezeTensor

/// What CoFi prunes, towards which sparsity, and how it distils while pruning.
public struct CoFiOptions: Sendable, Hashable {
    /// The structures that get masks.
    public var units: Set<CoFiUnit>
    /// The target sparsity and its linear warm-up.
    public var schedule: CoFiSparsitySchedule
    /// Adam learning rate of the masks' `log α` (the reference's `reg_learning_rate`, 0.01).
    public var maskLearningRate: Double
    /// Adam learning rate of `λ1`, `λ2`, applied as gradient ascent.
    public var lambdaLearningRate: Double
    /// Weight of the layer distillation loss `L_layer` (0.9 in the reference).
    public var layerDistillWeight: Float
    /// Weight of the prediction-layer loss `T²·KL` (0.1 in the reference).
    public var predictionDistillWeight: Float
    /// Weight of the task cross-entropy (0 in the reference).
    public var ceWeight: Float
    /// Softmax temperature of the prediction-layer loss.
    public var temperature: Float
    /// Teacher layers (0-based, increasing) matched by the layer loss; nil:
    /// `CoFiLayerAlignment.defaultTeacherLayers`.
    public var teacherLayers: [Int]?
    /// Keeps the embedding tables and their LayerNorm fixed, as the reference does.
    public var freezeEmbeddings: Bool
    public var initialization: CoFiInitialization
    /// Seeds the masks' initial `log α`, each step's mask sample and dropout.
    public var seed: UInt64

    public init(
        units: Set<CoFiUnit> = Set(CoFiUnit.allCases), schedule: CoFiSparsitySchedule, maskLearningRate: Double = 0.01,
        lambdaLearningRate: Double = 0.01, layerDistillWeight: Float = 0.9, predictionDistillWeight: Float = 0.1, ceWeight: Float = 0,
        temperature: Float = 2, teacherLayers: [Int]? = nil, freezeEmbeddings: Bool = true,
        initialization: CoFiInitialization = .init(), seed: UInt64
    ) {
        self.units = units
        self.schedule = schedule
        self.maskLearningRate = maskLearningRate
        self.lambdaLearningRate = lambdaLearningRate
        self.layerDistillWeight = layerDistillWeight
        self.predictionDistillWeight = predictionDistillWeight
        self.ceWeight = ceWeight
        self.temperature = temperature
        self.teacherLayers = teacherLayers
        self.freezeEmbeddings = freezeEmbeddings
        self.initialization = initialization
        self.seed = seed
    }

    /// Checks the options against the two models; returns the teacher layers of the layer loss.
    public func validate(student: BertModel, teacher: BertModel) throws(CoFiError) -> [Int] {
        guard !units.isEmpty else {
            throw CoFiError("no pruning units chosen", hint: "list some of \(CoFiUnit.allCases.map { "`\($0.rawValue)`" }.joined(separator: ", "))")
        }
        guard temperature > 0, temperature.isFinite else { throw CoFiError("the temperature must be positive, got \(temperature)") }
        for (name, value) in [
            ("layer distillation", layerDistillWeight), ("prediction distillation", predictionDistillWeight), ("cross-entropy", ceWeight),
        ] where !(value >= 0 && value.isFinite) {
            throw CoFiError("the \(name) weight must not be negative, got \(value)")
        }
        guard layerDistillWeight + predictionDistillWeight + ceWeight > 0 else {
            throw CoFiError("every loss weight is 0: the weights would learn nothing while the masks are pruned")
        }
        guard maskLearningRate > 0, maskLearningRate.isFinite else {
            throw CoFiError("the mask learning rate must be positive, got \(maskLearningRate)")
        }
        guard lambdaLearningRate >= 0, lambdaLearningRate.isFinite else {
            throw CoFiError("the λ learning rate must not be negative, got \(lambdaLearningRate)")
        }
        guard student.config.labels == teacher.config.labels else {
            throw CoFiError("the student's labels \(student.config.labels) differ from the teacher's \(teacher.config.labels)")
        }
        guard student.config.vocabSize == teacher.config.vocabSize else {
            throw CoFiError(
                "the student's vocabulary has \(student.config.vocabSize) tokens, the teacher's \(teacher.config.vocabSize): they must share a tokenizer")
        }
        guard student.config.hiddenSize == teacher.config.hiddenSize else {
            throw CoFiError(
                "the student's hidden size \(student.config.hiddenSize) differs from the teacher's \(teacher.config.hiddenSize); the layer loss maps hidden states through a square matrix",
                hint: "prune the teacher itself, or a student of the teacher's width")
        }
        let count = teacher.weights.layers.count
        let layers = teacherLayers ?? CoFiLayerAlignment.defaultTeacherLayers(count: count)
        guard !layers.isEmpty else { throw CoFiError("the list of teacher layers to distil is empty") }
        for (position, layer) in layers.enumerated() {
            guard layer >= 0, layer < count else {
                throw CoFiError("teacher layer \(layer) does not exist: the teacher has \(count) layers (0…\(count - 1))")
            }
            if position > 0, layer <= layers[position - 1] {
                throw CoFiError("teacher layers must be strictly increasing, got \(layers)")
            }
        }
        return layers
    }
}

/// CoFi's layer distillation mapping ("version 4": order kept).
public enum CoFiLayerAlignment {
    /// The teacher layers distilled by default: at most four, every
    /// `⌈L/4⌉`-th layer ending at the last. For 12 layers that is the paper's
    /// 2, 5, 8, 11; for 6 layers 1, 3, 5; for 2 layers 0, 1.
    public static func defaultTeacherLayers(count: Int) -> [Int] {
        guard count > 0 else { return [] }
        let stride = (count + 3) / 4
        return Array(Swift.stride(from: count - 1, through: 0, by: -stride).reversed())
    }

    /// The student layer each teacher layer is matched to: `losses[i][j]` is
    /// the MSE between (projected) student layer `j` and the `i`-th chosen
    /// teacher layer, `present[j]` whether student layer `j` is not fully
    /// pruned. From the last teacher layer back, each takes the present
    /// student layer of lowest loss below the one matched after it (ties: the
    /// lower layer), so the matches strictly increase. A teacher layer with no
    /// such student layer left is not matched (nil).
    public static func align(losses: [[Double]], present: [Bool]) -> [Int?] {
        var result = [Int?](repeating: nil, count: losses.count)
        var bound = present.count
        for teacher in losses.indices.reversed() {
            var best: Int?
            for student in 0..<Swift.min(bound, losses[teacher].count) where present[student] {
                if best.map({ losses[teacher][student] < losses[teacher][$0] }) ?? true { best = student }
            }
            if let best {
                result[teacher] = best
                bound = best
            }
        }
        return result
    }

    /// Whether each layer still computes something under masks `z`: its
    /// attention block (`z_MHA` and some `z_head` non-zero) or its FFN block
    /// (`z_FFN` and some `z_int` non-zero).
    public static func presentLayers(_ z: CoFiMaskValues) -> [Bool] {
        z.attentionLayers.indices.map { layer in
            let attention = z.attentionLayers[layer] != 0 && z.heads[layer].contains { $0 != 0 }
            let ffn = z.ffnLayers[layer] != 0 && z.intermediate[layer].contains { $0 != 0 }
            return attention || ffn
        }
    }
}

/// What one CoFi update did. Losses are before weighting.
public struct CoFiStep: Sendable, Hashable {
    /// Weighted distillation losses plus the Lagrangian term.
    public var loss: Double
    /// `Σ_i MSE(W·h_s,m(i), h_t,i)` over the matched pairs (0 when off).
    public var layerLoss: Double
    /// `T²·KL(teacher ‖ student)`.
    public var predictionLoss: Double
    /// Cross-entropy against the labels (reported even when its weight is 0).
    public var taskLoss: Double
    /// `λ1·(ŝ − t) + λ2·(ŝ − t)²`.
    public var lagrangian: Double
    public var expectedSparsity: Double
    public var targetSparsity: Double
    /// The multipliers used in this step (before their update).
    public var lambda1: Double
    public var lambda2: Double
    /// The student layer matched to each chosen teacher layer (nil: none).
    public var alignment: [Int?]
    /// Global norm of the weight gradients before clipping (nil when clipping is off).
    public var gradientNorm: Float?
    public var learningRate: Float
}

/// CoFi structured pruning (Xia et al. 2022): the student (a copy of the
/// teacher, or a model of the same width) trains under sampled hard-concrete
/// masks on layer distillation, prediction-layer distillation and optionally
/// cross-entropy, plus the Lagrangian sparsity term. Weights and the layer
/// map `W` take the update of every trainer (`ParameterUpdater`: AdamW with
/// the linear warmup/decay schedule and clipping),
/// `log α` its own Adam, `λ1`, `λ2` gradient ascent with Adam. Every step is
/// a pure function of the state, the batch and the step number.
public struct CoFiTrainer: Sendable {
    public private(set) var student: BertModel
    public let teacher: BertModel
    public let cofi: CoFiOptions
    public private(set) var masks: CoFiMasks
    /// The teacher layers of the layer loss (0-based).
    public let teacherLayers: [Int]
    /// `W`, `[hidden, hidden]`, identity at first; trained with the weights, not part of the pruned model.
    public private(set) var layerMap: Tensor
    public private(set) var lambda1 = 0.0
    public private(set) var lambda2 = 0.0
    /// Updates the student's parameters, then `W` (without weight decay).
    private var updater: ParameterUpdater
    private var maskOptimizer: DoubleAdam
    private var lambdaOptimizer = DoubleAdam(count: 2)
    /// Per student parameter (`weights.elements` order): trained or frozen.
    private let trainable: [Bool]

    public init(
        student: BertModel, teacher: BertModel, options: TrainingHyperparameters, cofi: CoFiOptions, backend: any Backend
    ) throws(CoFiError) {
        teacherLayers = try cofi.validate(student: student, teacher: teacher)
        masks = try CoFiMasks(
            structure: CoFiStructure(model: student), units: cofi.units, initialization: cofi.initialization,
            seed: randomBits(seed: cofi.seed, stream: Self.initializationStream, index: 0))
        self.student = student
        self.teacher = teacher
        self.cofi = cofi
        let width = student.config.hiddenSize
        var identity = [Float](repeating: 0, count: width * width)
        for i in 0..<width { identity[i * width + i] = 1 }
        layerMap = Tensor(shape: [width, width], floats: identity)
        let names = student.weights.names
        trainable = names.map { !(cofi.freezeEmbeddings && $0.hasPrefix("embeddings.")) }
        // W is not decayed: it only serves the auxiliary loss.
        updater = ParameterUpdater(for: student, auxiliaryParameters: 1, hyperparameters: options, backend: backend)
        maskOptimizer = DoubleAdam(count: masks.logAlpha.count)
    }

    public var options: TrainingHyperparameters { updater.hyperparameters }
    public var backend: any Backend { updater.backend }
    public var completedSteps: Int { updater.completedSteps }
    public var schedule: LinearWarmupSchedule { updater.schedule }

    /// The expected sparsity of the current masks.
    public var expectedSparsity: Double { masks.expectedSparsity().value }

    /// The deterministic masks of the current `log α` (`CoFiMasks.deterministic`).
    public var finalMasks: CoFiMaskValues { masks.deterministic() }

    /// The student with the deterministic masks folded in and the pruned structures removed.
    public func prunedModel() throws(CoFiError) -> BertModel {
        try CoFiCompaction.compact(student, masks: finalMasks)
    }

    /// One masked forward (teacher and student), backward and update of the
    /// weights, `W`, `log α` (then clamped) and `λ`.
    public mutating func step(batch: BertBatch, labels: Tensor) throws(BertInputError) -> CoFiStep {
        try student.check(batch)
        try student.check(labels: labels, batchSize: batch.inputIDs.shape[0])
        try teacher.check(batch)
        let index = UInt64(completedSteps)
        var generator = SeededGenerator(seed: randomBits(seed: cofi.seed, stream: Self.sampleStream, index: index))
        let sample = masks.sample(generator: &generator)
        let target = cofi.schedule.target(atStep: completedSteps)
        let lagrangian = masks.lagrangian(target: target, lambda1: lambda1, lambda2: lambda2)
        let pass = computeGradients(batch: batch, labels: labels, sample: sample, dropoutSeed: updater.dropoutSeed)

        // Moved out so `W` is uniquely referenced while AdamW writes it.
        var auxiliary = [layerMap]
        layerMap = Tensor(zeros: [0])
        let update = updater.apply(pass.weightGradients, to: &student, auxiliary: &auxiliary)
        if let map = auxiliary.first { layerMap = map }

        let fromLoss = masks.logAlphaGradient(sample, zGradient: pass.zGradient)
        maskOptimizer.update(
            &masks.logAlpha, gradients: zip(fromLoss, lagrangian.logAlphaGradient).map { $0 + $1 }, learningRate: cofi.maskLearningRate)
        masks.clampLogAlpha()
        let (usedLambda1, usedLambda2) = (lambda1, lambda2)
        var lambdas = [lambda1, lambda2]
        lambdaOptimizer.update(
            &lambdas, gradients: [lagrangian.lambda1Gradient, lagrangian.lambda2Gradient], learningRate: -cofi.lambdaLearningRate)
        (lambda1, lambda2) = (lambdas[0], lambdas[1])

        let distillation = Double(cofi.layerDistillWeight) * pass.layerLoss + Double(cofi.predictionDistillWeight) * pass.predictionLoss
            + Double(cofi.ceWeight) * pass.taskLoss
        return CoFiStep(
            loss: distillation + lagrangian.value, layerLoss: pass.layerLoss, predictionLoss: pass.predictionLoss, taskLoss: pass.taskLoss,
            lagrangian: lagrangian.value, expectedSparsity: lagrangian.expectedSparsity, targetSparsity: target,
            lambda1: usedLambda1, lambda2: usedLambda2, alignment: pass.alignment, gradientNorm: update.gradientNorm, learningRate: update.learningRate)
    }

    private struct Pass {
        var layerLoss: Double
        var predictionLoss: Double
        var taskLoss: Double
        var alignment: [Int?]
        /// Student parameters in `weights.elements` order (nil when frozen), then `W`; not yet masked.
        var weightGradients: [Tensor?]
        var zGradient: CoFiMaskValues
    }

    /// The losses and gradients of one step on a tape that is gone when this returns.
    private func computeGradients(batch: BertBatch, labels: Tensor, sample: CoFiMaskSample, dropoutSeed: UInt64) -> Pass {
        let eager = Eager(backend: backend)
        let teacherStates = BertModel.encodeLayers(eager, teacher.weights, config: teacher.config, batch: batch)
        let teacherLogits = teacherStates.last.map {
            BertModel.classify(eager, $0, weights: teacher.weights, config: teacher.config, pooling: teacher.pooling, batch: batch)
        } ?? BertModel.logits(eager, teacher.weights, config: teacher.config, pooling: teacher.pooling, batch: batch)

        let tape = Tape(backend: backend, dropoutSeed: dropoutSeed)
        let trainable = self.trainable
        var index = 0
        let parameters = student.weights.map { _, tensor in
            defer { index += 1 }
            return trainable[index] ? tape.parameter(tensor) : tape.constant(tensor)
        }
        let maskInputs = masks.inputs(sample.values) { tape.parameter($0) }
        let projection = tape.parameter(layerMap)
        let result = MaskedBert.forward(
            tape, parameters, config: student.config, pooling: student.pooling, batch: batch, masks: maskInputs)

        let prediction = DistillationLosses.kl(tape, student: result.logits, teacher: teacherLogits, temperature: cofi.temperature)
        let task = tape.crossEntropy(result.logits, labels: labels)
        var terms: [Variable] = []
        if cofi.predictionDistillWeight > 0 { terms.append(tape.affine(prediction, scale: cofi.predictionDistillWeight, shift: 0)) }
        if cofi.ceWeight > 0 { terms.append(tape.affine(task, scale: cofi.ceWeight, shift: 0)) }

        var alignment: [Int?] = []
        var layerLoss = 0.0
        if cofi.layerDistillWeight > 0 {
            // The mapping is chosen on the current values; no gradient flows through the choice.
            let projected = result.layerOutputs.map { eager.linear($0.value, weight: layerMap, bias: nil) }
            let losses = teacherLayers.map { layer in
                projected.map { state in
                    Double(DistillationLosses.hiddenMSE(
                        eager, student: state, teacher: teacherStates[layer], projection: nil, attentionMask: batch.attentionMask
                    ).scalarValue)
                }
            }
            alignment = CoFiLayerAlignment.align(losses: losses, present: CoFiLayerAlignment.presentLayers(sample.values))
            var sum: Variable?
            for (position, match) in alignment.enumerated() {
                guard let match else { continue }
                let term = DistillationLosses.hiddenMSE(
                    tape, student: result.layerOutputs[match], teacher: teacherStates[teacherLayers[position]], projection: projection,
                    attentionMask: batch.attentionMask)
                sum = sum.map { tape.add($0, term) } ?? term
            }
            if let sum {
                layerLoss = Double(sum.value.scalarValue)
                terms.append(tape.affine(sum, scale: cofi.layerDistillWeight, shift: 0))
            }
        }
        if let first = terms.first {
            tape.backward(from: terms.dropFirst().reduce(first) { tape.add($0, $1) })
        }
        var weightGradients = parameters.map { _, variable in tape.gradient(of: variable) }.elements
        weightGradients.append(tape.gradient(of: projection))
        return Pass(
            layerLoss: layerLoss, predictionLoss: Double(prediction.value.scalarValue), taskLoss: Double(task.value.scalarValue),
            alignment: alignment, weightGradients: weightGradients, zGradient: masks.zGradient(maskInputs, on: tape))
    }

    /// `randomBits` streams of `CoFiOptions.seed`.
    static let initializationStream: UInt64 = 0xC0F1
    static let sampleStream: UInt64 = 0xC0F2
}

/// Adam (`torch.optim.Adam`, no weight decay) over a flat vector of doubles:
/// the masks' `log α`, and `λ` with a negative learning rate (ascent).
struct DoubleAdam: Sendable, Hashable {
    let beta1 = 0.9
    let beta2 = 0.999
    let epsilon = 1e-8
    private(set) var steps = 0
    private var first: [Double]
    private var second: [Double]

    init(count: Int) {
        first = Array(repeating: 0, count: count)
        second = Array(repeating: 0, count: count)
    }

    mutating func update(_ parameters: inout [Double], gradients: [Double], learningRate: Double) {
        precondition(parameters.count == first.count && gradients.count == first.count, "DoubleAdam: sizes differ")
        steps += 1
        let correction1 = 1 - Foundation.pow(beta1, Double(steps))
        let correction2 = 1 - Foundation.pow(beta2, Double(steps))
        for i in parameters.indices {
            first[i] = beta1 * first[i] + (1 - beta1) * gradients[i]
            second[i] = beta2 * second[i] + (1 - beta2) * gradients[i] * gradients[i]
            parameters[i] -= learningRate * (first[i] / correction1) / ((second[i] / correction2).squareRoot() + epsilon)
        }
    }
}

extension CoFiTrainer {
    /// Everything a CoFi step reads besides the batch: the student's
    /// parameters (`student.`), the layer map `W`, the updater's state
    /// (`updater.`), the masks' `log α` with their Adam, and `λ1`, `λ2` with theirs.
    public func saveState(into state: inout TrainingState) {
        state.save(parameters: student, as: "student.")
        state.tensors["layer_map"] = layerMap
        updater.saveState(into: &state, as: "updater.")
        state.set("masks.log_alpha", doubles: masks.logAlpha)
        state.set("lambdas", doubles: [lambda1, lambda2])
        maskOptimizer.saveState(into: &state, as: "masks.adam.")
        lambdaOptimizer.saveState(into: &state, as: "lambdas.adam.")
    }

    /// Continues from a state `saveState` saved for these models and options.
    public mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
        var restored = self
        try state.restore(parameters: &restored.student, from: "student.")
        restored.layerMap = try state.tensor("layer_map", like: layerMap)
        try restored.updater.restoreState(from: state, as: "updater.")
        let logAlpha = try state.doubles("masks.log_alpha")
        guard logAlpha.count == masks.logAlpha.count else {
            throw TrainingStateError("\(logAlpha.count) mask variables saved, this model has \(masks.logAlpha.count)")
        }
        restored.masks.logAlpha = logAlpha
        let lambdas = try state.doubles("lambdas")
        guard lambdas.count == 2 else { throw TrainingStateError("`lambdas` must hold λ1 and λ2") }
        (restored.lambda1, restored.lambda2) = (lambdas[0], lambdas[1])
        restored.maskOptimizer = try DoubleAdam(restoring: state, as: "masks.adam.", count: logAlpha.count)
        restored.lambdaOptimizer = try DoubleAdam(restoring: state, as: "lambdas.adam.", count: 2)
        self = restored
    }
}

extension DoubleAdam {
    func saveState(into state: inout TrainingState, as prefix: String) {
        state.values[prefix + "steps"] = .int(steps)
        state.set(prefix + "first", doubles: first)
        state.set(prefix + "second", doubles: second)
    }

    /// The optimizer `saveState` saved, over `count` parameters.
    init(restoring state: TrainingState, as prefix: String, count: Int) throws(TrainingStateError) {
        self.init(count: count)
        let (steps, first, second) = (try state.int(prefix + "steps"), try state.doubles(prefix + "first"), try state.doubles(prefix + "second"))
        guard steps >= 0, first.count == count, second.count == count else {
            throw TrainingStateError("the `\(prefix)` optimizer state does not fit \(count) parameters")
        }
        (self.steps, self.first, self.second) = (steps, first, second)
    }
}
