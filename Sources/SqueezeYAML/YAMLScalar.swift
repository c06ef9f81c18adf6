/// Scalar typing by the YAML 1.2 core schema.
///
/// Only *plain* (unquoted) scalars are typed implicitly, so `"42"` and `'true'`
/// stay strings. Booleans are the 1.2 set only (`yes`/`no`/`on`/`off` are
/// strings), which avoids the "Norway problem".
public enum YAMLScalar {
    /// The typed value of a scalar.
    public enum Resolved: Equatable, Sendable {
        case null
        case bool(Bool)
        case int(Int)
        case double(Double)
        case string(String)
    }

    /// The typed value of `node`.
    ///
    /// - Quoted and block scalars, and scalars tagged `!!str` or `!`, are strings.
    /// - `!!int`, `!!float`, `!!bool` and `!!null` force that type and fall back
    ///   to a string when the text does not fit it (this function never fails).
    /// - Other tags (`!custom`) leave the text a string.
    /// - Integers that do not fit in `Int` stay strings rather than silently
    ///   losing precision as doubles.
    /// - Sequences and mappings are not scalars; callers switch on `node.kind`
    ///   first. For them this returns `.null`.
    public static func resolve(_ node: YAMLNode) -> Resolved {
        guard case .scalar(let text, let style) = node.kind else { return .null }
        return resolve(text, style: style, tag: node.tag)
    }

    /// The typed value of a scalar given by its parts.
    public static func resolve(_ text: String, style: ScalarStyle, tag: String?) -> Resolved {
        switch tag {
        case nil:
            guard style == .plain else { return .string(text) }
            if isNull(text) { return .null }
            if let value = bool(text) { return .bool(value) }
            if looksLikeInt(text) { return int(text).map(Resolved.int) ?? .string(text) }
            if let value = double(text) { return .double(value) }
            return .string(text)
        case "!!int":
            return int(text).map(Resolved.int) ?? .string(text)
        case "!!float":
            return double(text).map(Resolved.double) ?? .string(text)
        case "!!bool":
            return bool(text).map(Resolved.bool) ?? .string(text)
        case "!!null":
            return isNull(text) ? .null : .string(text)
        default:
            return .string(text)
        }
    }

    /// Whether `node` is written as an integer (plain, or tagged `!!int`) but
    /// does not fit in `Int`, so `resolve` kept it a string; messages then say
    /// "out of range" rather than "a string".
    public static func isOutOfRangeInteger(_ node: YAMLNode) -> Bool {
        guard case .scalar(let text, let style) = node.kind, case .string = resolve(node) else { return false }
        guard node.tag == "!!int" || (node.tag == nil && style == .plain) else { return false }
        return looksLikeInt(text)
    }

    /// How "expected X, got Y" messages name such an integer.
    public static func describeOutOfRangeInteger(_ text: String) -> String {
        "\(text), an integer outside the 64-bit range (\(Int.min)…\(Int.max))"
    }

    static func isNull(_ text: String) -> Bool {
        switch text {
        case "", "~", "null", "Null", "NULL": true
        default: false
        }
    }

    static func bool(_ text: String) -> Bool? {
        switch text {
        case "true", "True", "TRUE": true
        case "false", "False", "FALSE": false
        default: nil
        }
    }

    /// Whether `text` has the shape of a core-schema integer, regardless of range.
    static func looksLikeInt(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        if bytes.count > 2, bytes[0] == UInt8(ascii: "0") {
            let digits = bytes[2...]
            if bytes[1] == UInt8(ascii: "x") { return digits.allSatisfy(isHexDigit) }
            if bytes[1] == UInt8(ascii: "o") { return digits.allSatisfy(isOctalDigit) }
        }
        var digits = bytes[...]
        if let first = digits.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            digits = digits.dropFirst()
        }
        return !digits.isEmpty && digits.allSatisfy(isDecimalDigit)
    }

    /// Core-schema integer: `[-+]?[0-9]+`, `0x[0-9a-fA-F]+` or `0o[0-7]+`.
    static func int(_ text: String) -> Int? {
        guard looksLikeInt(text) else { return nil }
        if text.hasPrefix("0x") { return Int(text.dropFirst(2), radix: 16) }
        if text.hasPrefix("0o") { return Int(text.dropFirst(2), radix: 8) }
        return Int(text, radix: 10)
    }

    /// Core-schema float: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`,
    /// `[-+]?\.(inf|Inf|INF)` or `\.(nan|NaN|NAN)`.
    static func double(_ text: String) -> Double? {
        switch text {
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .infinity
        case "-.inf", "-.Inf", "-.INF": return -.infinity
        case ".nan", ".NaN", ".NAN": return .nan
        default: break
        }
        guard looksLikeDecimalFloat(Array(text.utf8)[...]) else { return nil }
        return Double(text)
    }

    private static func looksLikeDecimalFloat(_ bytes: ArraySlice<UInt8>) -> Bool {
        var rest = bytes
        if let first = rest.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            rest = rest.dropFirst()
        }
        let integerDigits = rest.prefix(while: isDecimalDigit).count
        rest = rest.dropFirst(integerDigits)
        var fractionDigits = 0
        if rest.first == UInt8(ascii: ".") {
            rest = rest.dropFirst()
            fractionDigits = rest.prefix(while: isDecimalDigit).count
            rest = rest.dropFirst(fractionDigits)
        }
        guard integerDigits > 0 || fractionDigits > 0 else { return false }
        if let marker = rest.first, marker == UInt8(ascii: "e") || marker == UInt8(ascii: "E") {
            rest = rest.dropFirst()
            if let sign = rest.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
                rest = rest.dropFirst()
            }
            let exponentDigits = rest.prefix(while: isDecimalDigit).count
            guard exponentDigits > 0 else { return false }
            rest = rest.dropFirst(exponentDigits)
        }
        return rest.isEmpty
    }

    private static func isDecimalDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private static func isOctalDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "7")
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        isDecimalDigit(byte)
            || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
    }
}
