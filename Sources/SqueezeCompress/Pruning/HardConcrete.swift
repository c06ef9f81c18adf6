import Foundation
import SqueezeModels
import SqueezeTensor

/// The hard-concrete distribution of CoFi's masks (Louizos et al. 2018, as
/// used by Xia et al. 2022), in `Double`.
///
/// A mask entry with parameter `log α` is sampled from a uniform `u` as
/// `s = sigmoid((log u − log(1 − u) + log α) / β)`, stretched to `(l, r)` and
/// clipped to `[0, 1]`, so it is exactly 0 or 1 with positive probability.
public enum HardConcrete {
    /// Stretch interval `(l, r)` and temperature `β`.
    public static let lower = -0.1
    public static let upper = 1.1
    public static let temperature = 2.0 / 3.0
    /// Uniforms are drawn from `(ε, 1 − ε)` so their logits are finite.
    public static let epsilon = 1e-6
    /// `log α` is clamped to `[log 0.01, log 100]` after every update.
    public static let logAlphaRange = Foundation.log(0.01)...Foundation.log(100.0)
    /// The reference's sharpening of the evaluation score `sigmoid(log α / β · 0.8)`.
    public static let evaluationSharpening = 0.8

    static func sigmoid(_ x: Double) -> Double {
        x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
    }

    /// A uniform in `(ε, 1 − ε)` from 53 random bits.
    public static func uniform(_ generator: inout SeededGenerator) -> Double {
        let unit = Double(generator.next() >> 11) * 0x1p-53
        return epsilon + unit * (1 - 2 * epsilon)
    }

    /// The sample `z` for uniform `u`, and `dz/dlog α` (0 where clipped).
    public static func sample(logAlpha: Double, uniform u: Double) -> (z: Double, derivative: Double) {
        let s = sigmoid((Foundation.log(u) - Foundation.log(1 - u) + logAlpha) / temperature)
        let stretched = s * (upper - lower) + lower
        if stretched <= 0 { return (0, 0) }
        if stretched >= 1 { return (1, 0) }
        return (stretched, (upper - lower) * s * (1 - s) / temperature)
    }

    /// `P(z ≠ 0) = sigmoid(log α − β · log(−l / r))`.
    public static func probabilityNonZero(logAlpha: Double) -> Double {
        sigmoid(logAlpha - temperature * Foundation.log(-lower / upper))
    }

    /// `dP(z ≠ 0) / dlog α = P · (1 − P)`.
    public static func probabilityNonZeroDerivative(logAlpha: Double) -> Double {
        let p = probabilityNonZero(logAlpha: logAlpha)
        return p * (1 - p)
    }

    /// The soft value a kept entry has in evaluation: `sigmoid(log α / β · 0.8)`.
    public static func evaluationScore(logAlpha: Double) -> Double {
        sigmoid(logAlpha / temperature * evaluationSharpening)
    }

    /// `log α` clamped to `logAlphaRange`.
    public static func clamp(_ logAlpha: Double) -> Double {
        Swift.min(Swift.max(logAlpha, logAlphaRange.lowerBound), logAlphaRange.upperBound)
    }

    /// The deterministic masks of one group (the reference's
    /// `_deterministic_z`): the expected number of zeros,
    /// `round(Σ (1 − P(z ≠ 0)))`, of the entries with the lowest scores are 0;
    /// the others keep their `evaluationScore`. Ties go to the lower index;
    /// halves round to even, as Python's `round` does.
    public static func deterministic(logAlphas: [Double]) -> [Double] {
        let expectedZeros = logAlphas.reduce(0.0) { $0 + (1 - probabilityNonZero(logAlpha: $1)) }
        let zeros = Swift.min(logAlphas.count, Int(expectedZeros.rounded(.toNearestOrEven)))
        var values = logAlphas.map(evaluationScore(logAlpha:))
        let lowest = values.indices.sorted { values[$0] < values[$1] || (values[$0] == values[$1] && $0 < $1) }
        for index in lowest.prefix(zeros) { values[index] = 0 }
        return values
    }
}
