import Foundation

/// A linear axis rounded out to "nice" ticks (1, 2 or 5 × a power of ten),
/// or a logarithmic one with ticks at 1, 2 and 5 × powers of ten.
struct ChartScale {
    let low: Double
    let high: Double
    let step: Double
    let logarithmic: Bool

    /// Spans `minimum...maximum` (finite numbers) with about `ticks` intervals;
    /// an empty span is widened around its value.
    init(minimum: Double, maximum: Double, ticks: Int = 5) {
        var lower = minimum, upper = maximum
        // A span lost in rounding (a flat curve) is no span.
        if !(upper - lower > 1e-9 * max(abs(upper), abs(lower), 1)) {
            let pad = lower == 0 ? 1 : abs(lower) * 0.02
            lower -= pad
            upper += pad
        }
        let rough = (upper - lower) / Double(max(ticks, 1))
        let magnitude = pow(10, (log10(rough)).rounded(.down))
        let fraction = rough / magnitude
        step = (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude
        low = (lower / step).rounded(.down) * step
        high = (upper / step).rounded(.up) * step
        logarithmic = false
    }

    /// A logarithmic scale over the positive finite `values`, widened by 5 %
    /// of its decades on each side: for values spanning orders of
    /// magnitude (the perplexity of a model pruned too far beside the dense
    /// one's), where a linear axis would crush the others into a line.
    init(logarithmicCovering values: [Double]) {
        let positive = values.filter { $0 > 0 && $0.isFinite }
        let lowest = log10(positive.min() ?? 1), highest = log10(positive.max() ?? 10)
        let pad = max((highest - lowest) * 0.05, 0.02)
        low = pow(10, lowest - pad)
        high = pow(10, highest + pad)
        step = 0
        logarithmic = true
    }

    /// A scale over `values` with `margin` (a fraction of their span) added
    /// on both sides, but never below 0 when no value is negative.
    init(covering values: [Double], margin: Double) {
        let low = values.min() ?? 0, high = values.max() ?? 1
        let pad = (high - low) * margin
        self.init(minimum: low >= 0 ? max(low - pad, 0) : low - pad, maximum: high + pad)
    }

    var ticks: [Double] {
        if logarithmic { return logarithmicTicks }
        let count = Int(((high - low) / step).rounded())
        // Multiples of the step, so 0.1 + 0.2 noise never reaches a label.
        let first = (low / step).rounded()
        return (0...max(count, 0)).map { (first + Double($0)) * step }
    }

    /// 1, 2 and 5 × the powers of ten inside the scale; only the powers when
    /// that would crowd the axis.
    private var logarithmicTicks: [Double] {
        let first = Int(log10(low).rounded(.down)), last = Int(log10(high).rounded(.up))
        guard first <= last else { return [] }
        let all = (first...last).flatMap { exponent in [1.0, 2, 5].map { $0 * pow(10, Double(exponent)) } }.filter { $0 >= low && $0 <= high }
        return all.count > 9 ? all.filter { log10($0) == log10($0).rounded() } : all
    }

    /// A tick label with as many decimals as the step needs.
    func label(_ value: Double) -> String {
        if logarithmic { return String(format: "%g", value) }
        let decimals = max(0, Int((-log10(step) - 1e-9).rounded(.up)))
        let text = String(format: "%.\(decimals)f", value)
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }

    /// `value`'s position between `from` (at `low`) and `to` (at `high`).
    func position(_ value: Double, from: Double, to: Double) -> Double {
        if logarithmic {
            return from + (log10(max(value, low)) - log10(low)) / (log10(high) - log10(low)) * (to - from)
        }
        return from + (value - low) / (high - low) * (to - from)
    }
}
