import Foundation

/// The JSON text Squeeze writes by hand: cache keys (`Value.canonicalJSON`),
/// tree manifests, safetensors headers and dataset lines all use these, so
/// equal values give equal bytes everywhere.
///
/// - Strings: `"` and `\` are escaped, `\n`, `\r` and `\t` by name, the other
///   C0 controls (below U+0020) as `\u00xx` with lowercase hex; everything
///   else, U+007F and non-ASCII included, is written as UTF-8. JSON requires
///   no more, and this is the form cache keys have always had.
/// - Numbers: an integral double below 10^15 in magnitude keeps a fraction
///   (`3.0`), so a float reads back as a float and never as the integer `3`;
///   other finite doubles take their shortest round-tripping form (`0.1`,
///   `1e-12`, `1e+20`); NaN and the infinities, which JSON lacks, become the
///   strings `"nan"`, `"inf"` and `"-inf"`. Integers are written as integers.
/// - Object keys: sorted by their UTF-8 bytes.
public enum JSONText {
    /// Appends `text` as a JSON string literal.
    public static func appendString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// `text` as a JSON string literal.
    public static func string(_ text: String) -> String {
        var out = ""
        appendString(text, to: &out)
        return out
    }

    /// Appends a double as described above.
    public static func appendNumber(_ number: Double, to out: inout String) {
        if number.isFinite, number == number.rounded(), abs(number) < 1e15 {
            out += String(format: "%.1f", number)
        } else if number.isFinite {
            out += "\(number)"
        } else {
            out += "\"\(number)\""
        }
    }

    /// Whether object key `a` sorts before `b` (by UTF-8 bytes).
    public static func keyPrecedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}
