import Foundation

/// A plain JSON value: what a stage's parameters become once every reference
/// has been substituted, and what Squeeze's own JSON documents pass through
/// (`SqueezeJSON`: Codable ↔ `Value` ↔ text). An integer and
/// a double are different values: `.int(3)` is written `3`, `.double(3)` is
/// written `3.0`, and each reads back as what it was.
public indirect enum Value: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([Value])
    case object([String: Value])

    /// Canonical JSON: no insignificant white space; strings, numbers and
    /// key order as `JSONText` writes them (integers without a fraction,
    /// integral doubles with one). Equal values always give equal bytes,
    /// which is what cache keys are built from.
    public var canonicalJSON: String {
        var out = ""
        writeCanonical(into: &out)
        return out
    }

    private func writeCanonical(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): JSONText.appendNumber(d, to: &out)
        case .string(let s): JSONText.appendString(s, to: &out)
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.writeCanonical(into: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (index, key) in fields.keys.sorted(by: JSONText.keyPrecedes).enumerated() {
                if index > 0 { out += "," }
                JSONText.appendString(key, to: &out)
                out += ":"
                fields[key]?.writeCanonical(into: &out)
            }
            out += "}"
        }
    }

    /// The value as a number, when it is an integer or a double.
    public var number: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    /// A short name of the value's type for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "a mapping"
        }
    }

    /// Decodes this value into a `Decodable` type (a stage's typed parameters).
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try ValueDecoder().decode(T.self, from: self)
    }

    public subscript(key: String) -> Value? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }
}

extension Value {
    /// Indented JSON for people and diffs: keys sorted by UTF-8 bytes, two
    /// spaces per level, a trailing newline; numbers as in `canonicalJSON`.
    public var prettyJSON: String {
        var out = ""
        writePretty(into: &out, indent: "")
        out += "\n"
        return out
    }

    private func writePretty(into out: inout String, indent: String) {
        let inner = indent + "  "
        switch self {
        case .array(let items) where !items.isEmpty:
            out += "[\n"
            for (index, item) in items.enumerated() {
                out += inner
                item.writePretty(into: &out, indent: inner)
                out += index == items.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case .object(let fields) where !fields.isEmpty:
            out += "{\n"
            let keys = fields.keys.sorted(by: JSONText.keyPrecedes)
            for (index, key) in keys.enumerated() {
                out += inner
                JSONText.appendString(key, to: &out)
                out += ": "
                fields[key]?.writePretty(into: &out, indent: inner)
                out += index == keys.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        default:
            out += canonicalJSON
        }
    }
}

/// For coders other than `SqueezeJSON`'s (which pass a `Value` through
/// unchanged); a JSON decoder cannot tell `3.0` from `3` here.
extension Value: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int.self) {
            self = .int(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([Value].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: Value].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}
