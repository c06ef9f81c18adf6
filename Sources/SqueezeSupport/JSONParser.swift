/// JSON text that is not valid, with where it stops being valid.
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line.
    public var line: Int
    /// 1-based column, counted in Unicode scalars from the start of the line.
    public var column: Int
    public var message: String

    public var description: String { "line \(line), column \(column): \(message)" }
}

extension Value {
    /// Parses JSON text (RFC 8259) strictly, keeping the lexical kind of every
    /// number: a literal with a fraction or an exponent (`3.0`, `1e-12`) is a
    /// `.double`, one without is an `.int`. An integer literal beyond the range
    /// of `Int` becomes the nearest `.double` (as in JavaScript); a literal
    /// beyond the range of `Double` (`1e400`) is an error.
    ///
    /// Rejected, with the line and column: anything after the value but white
    /// space, invalid UTF-8, raw control characters in strings, escapes that
    /// name a lone UTF-16 surrogate, duplicate object keys, a byte-order mark,
    /// and nesting deeper than `maximumDepth`.
    public init(json bytes: some Collection<UInt8>) throws(JSONSyntaxError) {
        var parser = JSONParser(bytes: Array(bytes))
        self = try parser.parseDocument()
    }

    /// `init(json:)` over the UTF-8 of `text`.
    public init(json text: String) throws(JSONSyntaxError) {
        try self.init(json: Array(text.utf8))
    }

    /// Deeper nesting is rejected rather than risking the stack.
    public static let maximumDepth = 512
}

/// A recursive-descent parser over UTF-8 bytes.
struct JSONParser {
    let bytes: [UInt8]
    var offset = 0
    var depth = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws(JSONSyntaxError) -> Value {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { throw error("a byte-order mark is not allowed in JSON", at: 0) }
        skipWhiteSpace()
        let value = try parseValue()
        skipWhiteSpace()
        guard offset == bytes.count else { throw error("unexpected \(describe(offset)) after the JSON value", at: offset) }
        return value
    }

    // MARK: Values

    private mutating func parseValue() throws(JSONSyntaxError) -> Value {
        guard offset < bytes.count else { throw error("unexpected end of input, expected a value", at: offset) }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected \(describe(offset)), expected a value", at: offset)
        }
    }

    private mutating func expectLiteral(_ literal: String) throws(JSONSyntaxError) {
        let start = offset
        for byte in literal.utf8 {
            guard offset < bytes.count, bytes[offset] == byte else {
                throw error("invalid literal, expected `\(literal)`", at: start)
            }
            offset += 1
        }
    }

    private mutating func enter(at start: Int) throws(JSONSyntaxError) {
        depth += 1
        if depth > Value.maximumDepth { throw error("nesting deeper than \(Value.maximumDepth) levels", at: start) }
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> Value {
        try enter(at: offset)
        defer { depth -= 1 }
        offset += 1
        var fields: [String: Value] = [:]
        skipWhiteSpace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
            offset += 1
            return .object(fields)
        }
        while true {
            skipWhiteSpace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else {
                throw error("expected a string key, found \(describe(offset))", at: offset)
            }
            let keyStart = offset
            let key = try parseString()
            guard fields[key] == nil else { throw error("duplicate key \(JSONText.string(key))", at: keyStart) }
            skipWhiteSpace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else {
                throw error("expected `:` after the key, found \(describe(offset))", at: offset)
            }
            offset += 1
            skipWhiteSpace()
            fields[key] = try parseValue()
            skipWhiteSpace()
            guard offset < bytes.count else { throw error("unexpected end of input, expected `,` or `}`", at: offset) }
            switch bytes[offset] {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "}"): offset += 1; return .object(fields)
            default: throw error("expected `,` or `}`, found \(describe(offset))", at: offset)
            }
        }
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> Value {
        try enter(at: offset)
        defer { depth -= 1 }
        offset += 1
        var items: [Value] = []
        skipWhiteSpace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
            offset += 1
            return .array(items)
        }
        while true {
            skipWhiteSpace()
            items.append(try parseValue())
            skipWhiteSpace()
            guard offset < bytes.count else { throw error("unexpected end of input, expected `,` or `]`", at: offset) }
            switch bytes[offset] {
            case UInt8(ascii: ","): offset += 1
            case UInt8(ascii: "]"): offset += 1; return .array(items)
            default: throw error("expected `,` or `]`, found \(describe(offset))", at: offset)
            }
        }
    }

    // MARK: Numbers

    private mutating func parseNumber() throws(JSONSyntaxError) -> Value {
        let start = offset
        if bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        guard offset < bytes.count, isDigit(bytes[offset]) else { throw error("a number needs digits after `-`", at: start) }
        if bytes[offset] == UInt8(ascii: "0") {
            offset += 1
            if offset < bytes.count, isDigit(bytes[offset]) { throw error("a number cannot have a leading zero", at: start) }
        } else {
            skipDigits()
        }
        var isInteger = true
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            isInteger = false
            offset += 1
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw error("a number needs digits after `.`", at: start) }
            skipDigits()
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
            isInteger = false
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw error("a number needs digits in its exponent", at: start) }
            skipDigits()
        }
        let literal = String(decoding: bytes[start..<offset], as: UTF8.self)
        if isInteger, let integer = Int(literal) { return .int(integer) }
        guard let double = Double(literal), double.isFinite else {
            throw error("the number \(literal) is beyond the range of a double", at: start)
        }
        return .double(double)
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    private mutating func skipDigits() {
        while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
    }

    // MARK: Strings

    private mutating func parseString() throws(JSONSyntaxError) -> String {
        offset += 1
        var scalars = String.UnicodeScalarView()
        while true {
            guard offset < bytes.count else { throw error("unexpected end of input inside a string", at: offset) }
            let byte = bytes[offset]
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                scalars.append(try parseEscape())
            case 0..<0x20:
                throw error("control character U+\(hex(UInt32(byte))) must be escaped in a string", at: offset)
            case 0..<0x80:
                scalars.append(Unicode.Scalar(byte))
                offset += 1
            default:
                scalars.append(try parseMultiByteScalar())
            }
        }
    }

    private mutating func parseEscape() throws(JSONSyntaxError) -> Unicode.Scalar {
        let start = offset
        offset += 1
        guard offset < bytes.count else { throw error("unexpected end of input in an escape", at: start) }
        let letter = bytes[offset]
        offset += 1
        switch letter {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let unit = try parseHexQuad(escapeStart: start)
            switch unit {
            case 0xD800...0xDBFF:
                let lowStart = offset
                guard offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") else {
                    throw error("lone high surrogate \\u\(hex(unit)) is not followed by a low surrogate", at: start)
                }
                offset += 2
                let low = try parseHexQuad(escapeStart: lowStart)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw error("high surrogate \\u\(hex(unit)) is followed by \\u\(hex(low)), not a low surrogate", at: start)
                }
                let combined = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                guard let scalar = Unicode.Scalar(combined) else { throw error("invalid surrogate pair", at: start) }
                return scalar
            case 0xDC00...0xDFFF:
                throw error("lone low surrogate \\u\(hex(unit))", at: start)
            default:
                guard let scalar = Unicode.Scalar(unit) else { throw error("invalid escape \\u\(hex(unit))", at: start) }
                return scalar
            }
        default:
            throw error("invalid escape `\\\(describeByte(letter))`", at: start)
        }
    }

    private mutating func parseHexQuad(escapeStart: Int) throws(JSONSyntaxError) -> UInt32 {
        var unit: UInt32 = 0
        for _ in 0..<4 {
            guard offset < bytes.count else { throw error("unexpected end of input in a \\u escape", at: escapeStart) }
            let byte = bytes[offset]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("a \\u escape needs four hexadecimal digits", at: escapeStart)
            }
            unit = unit << 4 | digit
            offset += 1
        }
        return unit
    }

    /// One UTF-8 sequence of two to four bytes, validated: no stray
    /// continuation bytes, overlong forms, surrogates or code points above U+10FFFF.
    private mutating func parseMultiByteScalar() throws(JSONSyntaxError) -> Unicode.Scalar {
        let start = offset
        let lead = bytes[offset]
        let length: Int
        var value: UInt32
        switch lead {
        case 0xC2...0xDF: length = 2; value = UInt32(lead & 0x1F)
        case 0xE0...0xEF: length = 3; value = UInt32(lead & 0x0F)
        case 0xF0...0xF4: length = 4; value = UInt32(lead & 0x07)
        default: throw error("invalid UTF-8 byte 0x\(hex(UInt32(lead), width: 2))", at: start)
        }
        guard start + length <= bytes.count else { throw error("truncated UTF-8 sequence", at: start) }
        for index in (start + 1)..<(start + length) {
            let byte = bytes[index]
            guard byte & 0xC0 == 0x80 else { throw error("invalid UTF-8 sequence", at: start) }
            value = value << 6 | UInt32(byte & 0x3F)
        }
        let minimum: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
        guard value >= minimum, let scalar = Unicode.Scalar(value) else {
            throw error("invalid UTF-8 sequence", at: start)
        }
        offset += length
        return scalar
    }

    // MARK: Positions and messages

    private mutating func skipWhiteSpace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): offset += 1
            default: return
            }
        }
    }

    private func describe(_ position: Int) -> String {
        position < bytes.count ? "`\(describeByte(bytes[position]))`" : "end of input"
    }

    private func describeByte(_ byte: UInt8) -> String {
        (0x21..<0x7F).contains(byte) ? String(Unicode.Scalar(byte)) : "0x" + hex(UInt32(byte), width: 2)
    }

    private func hex(_ value: UInt32, width: Int = 4) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// The error at byte `position`, with its line and its column in scalars
    /// (UTF-8 continuation bytes do not count).
    private func error(_ message: String, at position: Int) -> JSONSyntaxError {
        var line = 1
        var column = 1
        for byte in bytes[..<min(position, bytes.count)] {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return JSONSyntaxError(line: line, column: column, message: message)
    }
}
