/// The bytes handed to libyaml, checked first, plus the position arithmetic
/// that libyaml's reader does not give us (byte offsets to line:column).
///
/// Positions follow libyaml's conventions so both agree: columns count Unicode
/// scalars (a tab is one column), a leading UTF-8 BOM is not part of line 1,
/// and CR LF, CR, LF, NEL, LS and PS each end a line.
struct SourceText {
    let file: String
    /// The input without its UTF-8 byte order mark.
    let bytes: [UInt8]

    /// Checks size, encoding and characters before libyaml sees the input.
    init(validating input: [UInt8], file: String, limits: YAMLLimits) throws(Diagnostic) {
        self.file = file
        if input.count > limits.maxBytes {
            throw Diagnostic(
                "file is \(input.count) bytes; recipes are limited to \(YAMLLimits.describe(bytes: limits.maxBytes))",
                at: SourceLocation(file: file, line: 1, column: 1))
        }
        if input.starts(with: [0xFF, 0xFE]) || input.starts(with: [0xFE, 0xFF]) {
            throw Diagnostic(
                "file is UTF-16 encoded; recipes must be UTF-8",
                at: SourceLocation(file: file, line: 1, column: 1),
                hint: "save the file as UTF-8")
        }
        bytes = input.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(input.dropFirst(3)) : input
        // A NUL is the surest sign of a binary file; report it before whatever
        // invalid UTF-8 the same file is bound to contain earlier.
        if let nul = bytes.firstIndex(of: 0) {
            throw Diagnostic("file contains a NUL byte; is this a binary file?", at: location(ofByte: nul))
        }
        try checkCharacters()
    }

    /// Rejects malformed UTF-8 and characters YAML does not allow in a stream.
    private func checkCharacters() throws(Diagnostic) {
        var offset = 0
        while offset < bytes.count {
            guard let (scalar, length) = Self.decode(bytes, at: offset) else {
                let byte = String(bytes[offset], radix: 16, uppercase: true)
                throw Diagnostic(
                    "invalid UTF-8 (byte 0x\(byte.count == 1 ? "0" : "")\(byte)); recipes must be UTF-8 text",
                    at: location(ofByte: offset),
                    hint: "is this a binary file, or text in another encoding such as Latin-1? Save it as UTF-8")
            }
            if !Self.isPrintable(scalar) {
                var code = String(scalar, radix: 16, uppercase: true)
                while code.count < 4 { code = "0" + code }
                let escape = scalar <= 0xFF ? "\\x\(code.suffix(2))" : "\\u\(code)"
                throw Diagnostic(
                    "file contains the control character U+\(code), which YAML does not allow",
                    at: location(ofByte: offset),
                    hint: "delete it, or write it as the escape \"\(escape)\" inside a double-quoted string")
            }
            offset += length
        }
    }

    /// The scalar value and encoded length of the well-formed UTF-8 sequence at
    /// `offset`, or nil when it is malformed, overlong, a surrogate, or truncated.
    static func decode(_ bytes: [UInt8], at offset: Int) -> (UInt32, Int)? {
        let lead = bytes[offset]
        if lead < 0x80 { return (UInt32(lead), 1) }
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: return nil
        }
        guard offset + length <= bytes.count, secondRange.contains(bytes[offset + 1]) else { return nil }
        var value = UInt32(lead) & (0xFF >> (length + 1))
        for index in (offset + 1)..<(offset + length) {
            let byte = bytes[index]
            guard byte & 0xC0 == 0x80 else { return nil }
            value = value << 6 | UInt32(byte & 0x3F)
        }
        return (value, length)
    }

    /// YAML's `c-printable` set.
    static func isPrintable(_ scalar: UInt32) -> Bool {
        switch scalar {
        case 0x09, 0x0A, 0x0D, 0x20...0x7E, 0x85, 0xA0...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
        default: false
        }
    }

    /// A 1-based location from a libyaml mark (0-based line and column).
    func location(line: Int, column: Int) -> SourceLocation {
        SourceLocation(file: file, line: line + 1, column: column + 1)
    }

    /// The 1-based line:column of the character starting at byte `target`.
    func location(ofByte target: Int) -> SourceLocation {
        var line = 0, column = 0, offset = 0
        while offset < min(target, bytes.count) {
            let length = Self.decode(bytes, at: offset)?.1 ?? 1
            switch (bytes[offset], bytes[safe: offset + 1], bytes[safe: offset + 2]) {
            case (0x0D, 0x0A, _):
                // CR LF is one break; the LF starts column 0 of the next line.
                offset += 1
                continue
            case (0x0A, _, _), (0x0D, _, _), (0xC2, 0x85, _), (0xE2, 0x80, 0xA8), (0xE2, 0x80, 0xA9):
                line += 1
                column = 0
            default:
                column += 1
            }
            offset += length
        }
        return location(line: line, column: column)
    }

    /// The byte offset of the `index`-th Unicode scalar (libyaml's mark index).
    func byteOffset(ofScalar index: Int) -> Int? {
        var seen = 0
        for (offset, byte) in bytes.enumerated() where byte & 0xC0 != 0x80 {
            if seen == index { return offset }
            seen += 1
        }
        return nil
    }

    /// Whether only spaces and tabs precede byte `offset` on its line.
    func isIndentation(byte offset: Int) -> Bool {
        var index = offset - 1
        while index >= 0, index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09: index -= 1
            case 0x0A, 0x0D: return true
            default: return false
            }
        }
        return true
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? {
        indices.contains(index) ? self[index] : nil
    }
}
