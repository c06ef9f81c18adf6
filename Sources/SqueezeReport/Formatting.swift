import Foundation

/// How reports print numbers; "–" stands for a value the run did not record.
enum Format {
    static let missing = "–"

    /// 0.9123 → `91.23%`.
    static func percent(_ fraction: Double?, digits: Int = 2) -> String {
        fraction.map { String(format: "%.\(digits)f%%", $0 * 100) } ?? missing
    }

    /// A difference of fractions in percentage points: -0.0123 → `-1.23 pp`.
    static func points(_ difference: Double?) -> String {
        difference.map { String(format: "%+.2f pp", $0 * 100) } ?? missing
    }

    /// A relative change of a fraction: 0.0321 → `+3.21%`.
    static func signedPercent(_ fraction: Double?) -> String {
        fraction.map { String(format: "%+.2f%%", $0 * 100) } ?? missing
    }

    /// Two decimals: a perplexity of `31.42`.
    static func decimal(_ value: Double?) -> String {
        value.map { String(format: "%.2f", $0) } ?? missing
    }

    /// Bytes in decimal units: `87.6 MB`.
    static func bytes(_ bytes: Double?) -> String {
        guard let bytes else { return missing }
        let units = [(1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
        for (scale, unit) in units where abs(bytes) >= scale { return String(format: "%.1f \(unit)", bytes / scale) }
        return String(format: "%.0f B", bytes)
    }

    /// A count with an SI suffix: `22.7M`, `512k`.
    static func count(_ count: Double?) -> String {
        guard let count else { return missing }
        let units = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
        for (scale, unit) in units where abs(count) >= scale { return String(format: "%.1f\(unit)", count / scale) }
        return String(format: "%.0f", count)
    }

    static func milliseconds(_ value: Double?) -> String {
        value.map { String(format: $0 < 10 ? "%.2f ms" : "%.1f ms", $0) } ?? missing
    }

    static func rate(_ value: Double?) -> String {
        value.map { String(format: $0 < 100 ? "%.1f/s" : "%.0f/s", $0) } ?? missing
    }

    /// 3.97 → `3.97×`.
    static func factor(_ value: Double?) -> String {
        value.map { String(format: "%.2f×", $0) } ?? missing
    }

    static func seconds(_ value: Double) -> String {
        value >= 60 ? String(format: "%.0fm %02.0fs", (value / 60).rounded(.down), value.truncatingRemainder(dividingBy: 60))
            : String(format: "%.2fs", value)
    }

    /// A metric value: integers without a fraction, others to `digits` significant digits.
    static func number(_ value: Double, digits: Int = 6) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(format: "%.0f", value) }
        return String(format: "%.\(digits)g", value)
    }

    /// ISO 8601 in UTC, to the second.
    static func date(_ date: Date?) -> String {
        date.map { $0.formatted(Date.ISO8601FormatStyle()) } ?? missing
    }
}

/// A plain-text table: a header row, then rows; columns padded to their
/// widest cell, left-aligned ones as asked, the rest right-aligned.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []
    /// Columns aligned left (by index); others align right.
    var leftAligned: Set<Int> = [0]

    var lines: [String] {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            header.indices.map { column in
                let cell = row.indices.contains(column) ? row[column] : ""
                let pad = String(repeating: " ", count: max(widths[column] - cell.count, 0))
                return leftAligned.contains(column) ? cell + pad : pad + cell
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
    }
}
