import SqueezeSupport
import SqueezeTensor

/// Everything a training run must keep to continue bit for bit after a
/// restart, as named tensors (parameters, optimiser moments, the best
/// weights so far) and named values (counters, curves, multipliers). Each
/// trainer writes its part under a prefix (`saveState(into:)`) and reads it
/// back (`restoreState(from:)`); the training stages store it as a
/// checkpoint. Doubles are kept exactly: the checkpoint file encodes their
/// bits.
public struct TrainingState: Sendable {
    public var tensors: [String: Tensor]
    public var values: [String: Value]

    public init(tensors: [String: Tensor] = [:], values: [String: Value] = [:]) {
        self.tensors = tensors
        self.values = values
    }

    public func tensor(_ name: String) throws(TrainingStateError) -> Tensor {
        guard let tensor = tensors[name] else { throw TrainingStateError("no tensor `\(name)`") }
        return tensor
    }

    public func value(_ name: String) throws(TrainingStateError) -> Value {
        guard let value = values[name] else { throw TrainingStateError("no value `\(name)`") }
        return value
    }

    public func int(_ name: String) throws(TrainingStateError) -> Int {
        guard case .int(let value) = try value(name) else { throw TrainingStateError("`\(name)` is not an integer") }
        return value
    }

    public func double(_ name: String) throws(TrainingStateError) -> Double {
        switch try value(name) {
        case .double(let value): return value
        case .int(let value): return Double(value)
        default: throw TrainingStateError("`\(name)` is not a number")
        }
    }

    public func bool(_ name: String) throws(TrainingStateError) -> Bool {
        guard case .bool(let value) = try value(name) else { throw TrainingStateError("`\(name)` is not a boolean") }
        return value
    }

    public func array(_ name: String) throws(TrainingStateError) -> [Value] {
        guard case .array(let items) = try value(name) else { throw TrainingStateError("`\(name)` is not a list") }
        return items
    }

    public func doubles(_ name: String) throws(TrainingStateError) -> [Double] {
        try array(name).map { item throws(TrainingStateError) in
            guard case .double(let value) = item else { throw TrainingStateError("`\(name)` is not a list of numbers") }
            return value
        }
    }

    public func ints(_ name: String) throws(TrainingStateError) -> [Int] {
        try array(name).map { item throws(TrainingStateError) in
            guard case .int(let value) = item else { throw TrainingStateError("`\(name)` is not a list of integers") }
            return value
        }
    }

    public mutating func set(_ name: String, doubles: [Double]) {
        values[name] = .array(doubles.map(Value.double))
    }

    /// Stores `model`'s parameters as tensors `<prefix><parameter name>`.
    public mutating func save<Model: TrainableModel>(parameters model: Model, as prefix: String) {
        for (name, tensor) in zip(model.parameterNames, model.parameterTensors) {
            tensors[prefix + name] = tensor
        }
    }

    /// Replaces `model`'s parameters by the tensors `save(parameters:as:)`
    /// stored; each must be there with the parameter's shape and dtype.
    public func restore<Model: TrainableModel>(parameters model: inout Model, from prefix: String) throws(TrainingStateError) {
        let current = model.parameterTensors
        var restored: [Tensor] = []
        restored.reserveCapacity(current.count)
        for (name, now) in zip(model.parameterNames, current) {
            let saved = try tensor(prefix + name)
            guard saved.shape == now.shape, saved.dtype == now.dtype else {
                throw TrainingStateError("`\(prefix + name)` is \(saved.dtype) \(saved.shape), the model's \(now.dtype) \(now.shape)")
            }
            restored.append(saved)
        }
        model.updateParameters { $0 = restored }
    }

    /// A tensor saved in place of `like` (same shape and dtype).
    public func tensor(_ name: String, like: Tensor) throws(TrainingStateError) -> Tensor {
        let saved = try tensor(name)
        guard saved.shape == like.shape, saved.dtype == like.dtype else {
            throw TrainingStateError("`\(name)` is \(saved.dtype) \(saved.shape), expected \(like.dtype) \(like.shape)")
        }
        return saved
    }
}

/// A trainer whose whole state is its model's parameters and its updater's
/// state (the fine-tuning trainers of every model family): checkpointed the
/// same way for all of them.
package protocol ModelAndUpdaterTrainer {
    associatedtype Model: TrainableModel
    var model: Model { get }
    var updater: ParameterUpdater { get }
    /// Puts a restored model and updater in place.
    mutating func replace(model: Model, updater: ParameterUpdater)
}

extension ModelAndUpdaterTrainer {
    /// The model's parameters (`model.`) and the updater's state (`updater.`).
    package func saveState(into state: inout TrainingState) {
        state.save(parameters: model, as: "model.")
        updater.saveState(into: &state, as: "updater.")
    }

    /// Continues from a state `saveState` saved for this model and options.
    package mutating func restoreState(from state: TrainingState) throws(TrainingStateError) {
        var model = self.model
        var updater = self.updater
        try state.restore(parameters: &model, from: "model.")
        try updater.restoreState(from: state, as: "updater.")
        replace(model: model, updater: updater)
    }
}

/// A saved training state that does not fit the run restoring it.
public struct TrainingStateError: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
