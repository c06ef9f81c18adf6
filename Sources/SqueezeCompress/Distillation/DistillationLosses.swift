import SqueezeModels
import SqueezeTensor

/// Knowledge-distillation losses, written against `TensorOperations` so they
/// run on a training tape and in plain inference alike. The teacher's values
/// are constants (plain tensors): no gradient flows into the teacher.
public enum DistillationLosses {
    /// `T² · KL(softmax(t/T) ‖ softmax(s/T))`, summed over classes and
    /// averaged over the `N` rows (PyTorch's `kl_div(..., reduction="batchmean")`
    /// times `T²`, as Hinton et al. scale it so gradients keep their size
    /// across temperatures). `student` and `teacher` are `[N, C]` logits.
    public static func kl<Ops: TensorOperations>(
        _ ops: Ops, student: Ops.Value, teacher: Tensor, temperature: Float
    ) -> Ops.Value {
        let backend = ops.backend
        let shape = ops.tensor(student).shape
        precondition(shape == teacher.shape && shape.count == 2, "kl: student \(shape) vs teacher \(teacher.shape)")
        let scaledTeacher = backend.affine(teacher, scale: 1 / temperature, shift: 0)
        // Probabilities and log-probabilities of the teacher from the same
        // scaled logits; where a probability underflows to 0 its term is 0.
        let teacherLogProbabilities = backend.logSoftmax(scaledTeacher)
        let teacherProbabilities = backend.softmax(scaledTeacher)
        let studentLogProbabilities = ops.logSoftmax(ops.affine(student, scale: 1 / temperature, shift: 0))
        let difference = ops.subtract(ops.constant(teacherLogProbabilities), studentLogProbabilities)
        let total = ops.sum(ops.multiply(ops.constant(teacherProbabilities), difference), axes: [0, 1], keepDimensions: false)
        return ops.affine(total, scale: temperature * temperature / Float(max(shape[0], 1)), shift: 0)
    }

    /// Mean squared error between student and teacher logits, over every element.
    public static func logitMSE<Ops: TensorOperations>(_ ops: Ops, student: Ops.Value, teacher: Tensor) -> Ops.Value {
        let shape = ops.tensor(student).shape
        precondition(shape == teacher.shape, "logitMSE: student \(shape) vs teacher \(teacher.shape)")
        let difference = ops.subtract(student, ops.constant(teacher))
        return ops.mean(ops.multiply(difference, difference), axes: Array(shape.indices), keepDimensions: false)
    }

    /// `α · distillation + (1 − α) · task`.
    public static func combine<Ops: TensorOperations>(
        _ ops: Ops, distillation: Ops.Value, task: Ops.Value, alpha: Float
    ) -> Ops.Value {
        ops.add(ops.affine(distillation, scale: alpha, shift: 0), ops.affine(task, scale: 1 - alpha, shift: 0))
    }

    /// Mean squared error between a student hidden state `[B, T, Hs]` mapped
    /// through `projection` (`[Ht, Hs]`, no bias; nil when the widths are
    /// equal and no projection is learned) and the teacher's `[B, T, Ht]`,
    /// averaged over the real tokens (attention mask 1) and the `Ht` features,
    /// so padding never counts and batches of any padding weigh the same.
    public static func hiddenMSE<Ops: TensorOperations>(
        _ ops: Ops, student: Ops.Value, teacher: Tensor, projection: Ops.Value?, attentionMask: Tensor
    ) -> Ops.Value {
        let mapped = projection.map { ops.linear(student, weight: $0, bias: nil) } ?? student
        let shape = ops.tensor(mapped).shape
        precondition(shape == teacher.shape && shape.count == 3, "hiddenMSE: student \(shape) vs teacher \(teacher.shape)")
        let (mask, realTokens) = tokenMask(attentionMask)
        let difference = ops.multiply(ops.subtract(mapped, ops.constant(teacher)), ops.constant(mask))
        let total = ops.sum(ops.multiply(difference, difference), axes: [0, 1, 2], keepDimensions: false)
        return ops.affine(total, scale: 1 / Float(max(realTokens * shape[2], 1)), shift: 0)
    }

    /// TinyBERT's attention loss for one layer: the squared difference of the
    /// student's and the teacher's pre-softmax scores `q·kᵀ/√d_head`
    /// (`[B, H, T, T]`, one head for one head), averaged over the heads and
    /// over the (query, key) pairs where both tokens are real (attention mask
    /// 1): `Σ m_q·m_k·(S − S_teacher)² / (H · Σ_b n_b²)` with `n_b` the real
    /// tokens of sequence `b`. Padding never counts, whatever its scores.
    public static func attentionScoreMSE<Ops: TensorOperations>(
        _ ops: Ops, student: Ops.Value, teacher: Tensor, attentionMask: Tensor
    ) -> Ops.Value {
        let shape = ops.tensor(student).shape
        precondition(
            shape == teacher.shape && shape.count == 4 && shape[2] == shape[3] && [shape[0], shape[2]] == attentionMask.shape,
            "attentionScoreMSE: student \(shape) vs teacher \(teacher.shape), mask \(attentionMask.shape)")
        let (mask, realPairs) = pairMask(attentionMask)
        let difference = ops.multiply(ops.subtract(student, ops.constant(teacher)), ops.constant(mask))
        let total = ops.sum(ops.multiply(difference, difference), axes: [0, 1, 2, 3], keepDimensions: false)
        return ops.affine(total, scale: 1 / Float(max(realPairs * shape[1], 1)), shift: 0)
    }

    /// `[B, 1, T, T]` floats, 1 where both the query and the key token are
    /// real, and the number of such pairs.
    static func pairMask(_ attentionMask: Tensor) -> (mask: Tensor, count: Int) {
        let (batch, length) = (attentionMask.shape[0], attentionMask.shape[1])
        let real = attentionMask.int32s.map { $0 != 0 }
        var values = [Float](repeating: 0, count: batch * length * length)
        var count = 0
        for b in 0..<batch {
            for q in 0..<length where real[b * length + q] {
                for k in 0..<length where real[b * length + k] {
                    values[(b * length + q) * length + k] = 1
                    count += 1
                }
            }
        }
        return (Tensor(shape: [batch, 1, length, length], floats: values), count)
    }

    /// The i32 `[B, T]` mask as floats `[B, T, 1]` and its number of ones.
    static func tokenMask(_ attentionMask: Tensor) -> (mask: Tensor, count: Int) {
        let values = attentionMask.int32s.map { $0 == 0 ? Float(0) : 1 }
        let count = values.reduce(0) { $0 + Int($1) }
        return (Tensor(shape: attentionMask.shape + [1], floats: values), count)
    }
}

/// The weight α of the distillation loss at each update.
public enum AlphaSchedule: Sendable, Hashable {
    case constant(Float)
    /// Linear from `start` at the first update to `end` at the last.
    case linear(start: Float, end: Float)

    /// α at update `step` (0-based) of `totalSteps`.
    public func alpha(atStep step: Int, of totalSteps: Int) -> Float {
        switch self {
        case .constant(let value):
            return value
        case .linear(let start, let end):
            guard totalSteps > 1 else { return start }
            let fraction = Float(min(max(step, 0), totalSteps - 1)) / Float(totalSteps - 1)
            return start + (end - start) * fraction
        }
    }

    var bounds: [Float] {
        switch self {
        case .constant(let value): [value]
        case .linear(let start, let end): [start, end]
        }
    }
}

/// What the student's logits are matched to the teacher's with.
public enum LogitLoss: String, Sendable, Hashable, CaseIterable {
    /// Temperature-scaled KL divergence (`DistillationLosses.kl`).
    case kl
    /// Mean squared error of the raw logits (`DistillationLosses.logitMSE`).
    case mse
}

/// A student encoder layer whose output is matched to a teacher layer's (0-based).
public struct LayerPair: Sendable, Hashable {
    public var student: Int
    public var teacher: Int

    public init(student: Int, teacher: Int) {
        self.student = student
        self.teacher = teacher
    }

    /// Student layer `i` of `studentLayers` ↔ teacher layer `⌈(i+1)·T/S⌉ − 1`:
    /// evenly spaced, the last student layer on the last teacher layer
    /// (for 3 of 6: 1, 3, 5).
    public static func evenlySpaced(studentLayers: Int, teacherLayers: Int) -> [LayerPair] {
        guard studentLayers > 0 else { return [] }
        return (0..<studentLayers).map { i in
            LayerPair(student: i, teacher: ((i + 1) * teacherLayers + studentLayers - 1) / studentLayers - 1)
        }
    }
}

/// A distillation set-up that cannot work (bad layer lists, widths, labels,
/// temperature or α), reported before any training.
public struct DistillationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
