import Foundation

/// A linear axis rounded out to "nice" ticks (1, 2 or 5 × a power of ten).
struct ChartScale {
    let low: Double
    let high: Double
    let step: Double

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
    }

    /// A scale over `values` with `margin` (a fraction of their span) added
    /// on both sides, but never below 0 when no value is negative.
    init(covering values: [Double], margin: Double) {
        let low = values.min() ?? 0, high = values.max() ?? 1
        let pad = (high - low) * margin
        self.init(minimum: low >= 0 ? max(low - pad, 0) : low - pad, maximum: high + pad)
    }

    var ticks: [Double] {
        let count = Int(((high - low) / step).rounded())
        // Multiples of the step, so 0.1 + 0.2 noise never reaches a label.
        let first = (low / step).rounded()
        return (0...max(count, 0)).map { (first + Double($0)) * step }
    }

    /// A tick label with as many decimals as the step needs.
    func label(_ value: Double) -> String {
        let decimals = max(0, Int((-log10(step) - 1e-9).rounded(.up)))
        let text = String(format: "%.\(decimals)f", value)
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }

    /// `value`'s position between `from` (at `low`) and `to` (at `high`).
    func position(_ value: Double, from: Double, to: Double) -> Double {
        from + (value - low) / (high - low) * (to - from)
    }
}
