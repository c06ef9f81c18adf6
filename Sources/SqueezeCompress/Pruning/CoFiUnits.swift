/// A pruning setting that cannot be used; `hint` suggests a fix.
public struct CoFiError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { hint.map { "\(message) (\($0))" } ?? message }
}

/// What CoFi may prune. A unit that is not chosen keeps its masks at 1 and
/// has no parameters.
public enum CoFiUnit: String, Sendable, Hashable, CaseIterable, Comparable {
    /// Attention heads (`z_head`).
    case heads
    /// FFN intermediate units (`z_int`).
    case ffnUnits = "ffn_units"
    /// Hidden dimensions, shared by every layer (`z_hidden`).
    case hidden
    /// Whole attention and FFN sublayers (`z_MHA`, `z_FFN`).
    case layers

    public static func < (a: CoFiUnit, b: CoFiUnit) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }

    /// The units named `names` (as in a recipe: `heads`, `ffn_units`,
    /// `hidden`, `layers`); an unknown name is an error with a did-you-mean.
    public static func parse(_ names: [String]) throws(CoFiError) -> Set<CoFiUnit> {
        var units: Set<CoFiUnit> = []
        for name in names {
            guard let unit = CoFiUnit(rawValue: name) else {
                let known = allCases.map(\.rawValue)
                let near = known.map { ($0, editDistance($0, name)) }.filter { $0.1 <= Swift.max(2, name.count / 3) }
                    .min { $0.1 < $1.1 }
                throw CoFiError(
                    "unknown pruning unit `\(name)`; expected one of \(known.map { "`\($0)`" }.joined(separator: ", "))",
                    hint: near.map { "did you mean `\($0.0)`?" })
            }
            units.insert(unit)
        }
        return units
    }

    /// Levenshtein distance over characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        guard !x.isEmpty, !y.isEmpty else { return Swift.max(x.count, y.count) }
        var previous = Array(0...y.count)
        for i in 1...x.count {
            var current = [i] + [Int](repeating: 0, count: y.count)
            for j in 1...y.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[y.count]
    }
}

/// The target sparsity over training: linear from 0 to `target` over
/// `warmupSteps` updates, then constant (the reference's Lagrangian warm-up).
public struct CoFiSparsitySchedule: Sendable, Hashable {
    public let target: Double
    public let warmupSteps: Int

    /// Rejects a target outside `[0, 1)` and a negative warm-up.
    public init(target: Double, warmupSteps: Int) throws(CoFiError) {
        guard target >= 0, target < 1 else {
            throw CoFiError("target sparsity must be in [0, 1), got \(target)")
        }
        guard warmupSteps >= 0 else { throw CoFiError("lagrangian warm-up steps must be non-negative, got \(warmupSteps)") }
        self.target = target
        self.warmupSteps = warmupSteps
    }

    /// The target at update `step` (counting from 0).
    public func target(atStep step: Int) -> Double {
        guard warmupSteps > 0, step < warmupSteps else { return target }
        return target * Double(Swift.max(step, 0)) / Double(warmupSteps)
    }
}
