/// A value computed on a `Tape`: the forward result plus the node that made it.
///
/// Variables are handles; they are only meaningful on the tape that created
/// them (checked). A variable that does not depend on any parameter is a
/// constant and records nothing.
public struct Variable {
    /// The forward value.
    public let value: Tensor
    /// Node index on the tape, or -1 for a constant.
    let node: Int
    /// The tape that owns `node` (nil for constants).
    let tape: ObjectIdentifier?

    public var shape: [Int] { value.shape }
    /// True when gradients flow back through this value.
    public var requiresGradient: Bool { node >= 0 }
}

/// Reverse-mode automatic differentiation by recording.
///
/// Each differentiable operation appends a node holding a backward closure
/// that maps the output's gradient to its inputs' gradients with `Backend`
/// kernels. The closures capture exactly what their backward needs; the tape
/// keeps no forward values itself. `backward(from:)` walks the nodes in
/// reverse, releases each closure (and so its saved activations) as soon as it
/// has run and drops intermediate gradients once they are consumed, so peak
/// memory is the forward's saved activations, not their sum with all gradients.
///
/// Parameters persist across steps as plain tensors; a new tape is built for
/// every step: `tape.parameter(weight)` makes a leaf whose gradient is kept and
/// read back with `gradient(of:)`.
///
/// A tape belongs to one task: it is a class with mutable state and is not
/// `Sendable`.
public final class Tape {
    public let backend: any Backend
    /// Seed for dropout; nil turns dropout off (evaluation on the tape, gradient checks).
    public let dropoutSeed: UInt64?

    private struct Node {
        var shape: [Int]
        /// Node indices of the inputs (-1 for inputs that need no gradient),
        /// in the order the backward returns their gradients.
        var inputs: [Int]
        /// Output gradient to input gradients; nil for leaves and after it ran.
        var backward: ((Tensor) -> [Tensor?])?
        /// Leaves keep their gradient after `backward(from:)`.
        var keepsGradient: Bool
    }

    private var nodes: [Node] = []
    private var gradients: [Tensor?] = []
    private var nextDropoutStream: UInt64 = 0
    private var backwardDone = false

    public init(backend: any Backend, dropoutSeed: UInt64? = nil) {
        self.backend = backend
        self.dropoutSeed = dropoutSeed
    }

    /// Number of recorded nodes (leaves included).
    public var nodeCount: Int { nodes.count }

    /// A leaf whose gradient is accumulated and kept, e.g. a weight.
    public func parameter(_ value: Tensor) -> Variable {
        precondition(value.dtype == .f32, "parameters are f32, got \(value.dtype)")
        nodes.append(Node(shape: value.shape, inputs: [], backward: nil, keepsGradient: true))
        gradients.append(nil)
        return Variable(value: value, node: nodes.count - 1, tape: ObjectIdentifier(self))
    }

    /// A value no gradient flows into (inputs, masks, frozen weights).
    public func constant(_ value: Tensor) -> Variable {
        Variable(value: value, node: -1, tape: nil)
    }

    /// The accumulated gradient of `variable` after `backward(from:)`: kept
    /// for parameters, nil when nothing flowed into it or for intermediates.
    public func gradient(of variable: Variable) -> Tensor? {
        guard variable.requiresGradient else { return nil }
        checkOwnership(variable)
        return gradients[variable.node]
    }

    /// Records an operation's result. `backward` receives the output gradient
    /// and returns one gradient (or nil) per input, in the order of `inputs`;
    /// it is dropped at once when no input needs a gradient.
    public func record(
        _ value: Tensor, inputs: [Variable], backward: @escaping (Tensor) -> [Tensor?]
    ) -> Variable {
        var anyNeeds = false
        let indices = inputs.map { input -> Int in
            if input.requiresGradient {
                checkOwnership(input)
                anyNeeds = true
            }
            return input.node
        }
        guard anyNeeds else { return constant(value) }
        precondition(!backwardDone, "recording on a tape after backward(from:)")
        nodes.append(Node(shape: value.shape, inputs: indices, backward: backward, keepsGradient: false))
        gradients.append(nil)
        return Variable(value: value, node: nodes.count - 1, tape: ObjectIdentifier(self))
    }

    /// Back-propagates from `output` with seed gradient `seed` (ones when nil,
    /// which for a scalar loss means d loss / d loss = 1). Runs once per tape.
    public func backward(from output: Variable, seed: Tensor? = nil) {
        precondition(!backwardDone, "backward(from:) runs once per tape")
        backwardDone = true
        guard output.requiresGradient else { return }
        checkOwnership(output)
        let start = seed ?? ones(output.shape)
        precondition(start.shape == output.shape, "seed gradient \(start.shape) for output \(output.shape)")
        gradients[output.node] = start
        for index in stride(from: output.node, through: 0, by: -1) {
            guard let run = nodes[index].backward else { continue }
            nodes[index].backward = nil
            guard let gradient = gradients[index] else { continue }
            gradients[index] = nil
            let inputGradients = run(gradient)
            let inputs = nodes[index].inputs
            precondition(inputGradients.count == inputs.count, "backward returned \(inputGradients.count) gradients for \(inputs.count) inputs")
            for (input, inputGradient) in zip(inputs, inputGradients) where input >= 0 {
                if let inputGradient { accumulate(inputGradient, into: input) }
            }
        }
        // Closures of nodes the output does not depend on still hold activations.
        for index in nodes.indices where !nodes[index].keepsGradient {
            nodes[index].backward = nil
            gradients[index] = nil
        }
    }

    /// The next dropout stream: each dropout site on a tape gets its own, so
    /// masks depend only on the seed and the order of the forward pass.
    func takeDropoutStream() -> UInt64 {
        defer { nextDropoutStream += 1 }
        return nextDropoutStream
    }

    private func accumulate(_ gradient: Tensor, into index: Int) {
        precondition(gradient.shape == nodes[index].shape, "gradient \(gradient.shape) for a value of shape \(nodes[index].shape)")
        guard let existing = gradients[index] else {
            gradients[index] = gradient
            return
        }
        gradients[index] = backend.add(existing, gradient)
    }

    private func checkOwnership(_ variable: Variable) {
        precondition(variable.tape == ObjectIdentifier(self), "a variable from another tape")
    }

    private func ones(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, floats: [Float](repeating: 1, count: shape.reduce(1, *)))
    }
}
