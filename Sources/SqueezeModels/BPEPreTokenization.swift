/// Scanners for the pre-tokenizer regexes of byte-level BPE tokenizers, written
/// by hand over Unicode scalars (leftmost-first alternation, as the `regex` /
/// `onig` engines of Hugging Face `tokenizers` match them). `\s` is the
/// Unicode White_Space property, `\p{L}` and `\p{N}` the general categories.
enum BPEPreTokenization {
    /// GPT-2's split pattern:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    /// Returns the end of the match starting at `start` (always > `start`).
    static func gpt2MatchEnd(_ text: [Unicode.Scalar], from start: Int) -> Int {
        let count = text.count
        let first = text[start]
        if first == "'", start + 1 < count {
            let next = text[start + 1]
            if next == "s" || next == "t" || next == "m" || next == "d" { return start + 2 }
            if start + 2 < count {
                let third = text[start + 2]
                if (next == "r" && third == "e") || (next == "v" && third == "e") || (next == "l" && third == "l") {
                    return start + 3
                }
            }
        }
        let body = first == " " ? start + 1 : start
        if body < count {
            let kind = ScalarKind(text[body])
            if kind != .whitespace {
                var end = body + 1
                while end < count, ScalarKind(text[end]) == kind { end += 1 }
                return end
            }
        }
        return whitespaceMatchEnd(text, from: start)
    }

    /// Llama-3's split pattern:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    static func llama3MatchEnd(_ text: [Unicode.Scalar], from start: Int) -> Int {
        let count = text.count
        let first = text[start]
        if first == "'", start + 1 < count {
            let next = lowercasedASCII(text[start + 1])
            if next == "s" || next == "t" || next == "m" || next == "d" { return start + 2 }
            if start + 2 < count {
                let third = lowercasedASCII(text[start + 2])
                if (next == "r" && third == "e") || (next == "v" && third == "e") || (next == "l" && third == "l") {
                    return start + 3
                }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        let firstKind = ScalarKind(first)
        var letters = start
        if firstKind != .letter, firstKind != .number, first != "\r", first != "\n" { letters = start + 1 }
        if letters < count, ScalarKind(text[letters]) == .letter {
            var end = letters + 1
            while end < count, ScalarKind(text[end]) == .letter { end += 1 }
            return end
        }
        // \p{N}{1,3}
        if firstKind == .number {
            var end = start + 1
            while end < count, end < start + 3, ScalarKind(text[end]) == .number { end += 1 }
            return end
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let body = first == " " ? start + 1 : start
        if body < count, ScalarKind(text[body]) == .other {
            var end = body + 1
            while end < count, ScalarKind(text[end]) == .other { end += 1 }
            while end < count, text[end] == "\r" || text[end] == "\n" { end += 1 }
            return end
        }
        // `\s*[\r\n]+`: the longest whitespace run that ends in \r or \n.
        var runEnd = start
        while runEnd < count, ScalarKind(text[runEnd]) == .whitespace { runEnd += 1 }
        var lastNewline = runEnd
        while lastNewline > start, text[lastNewline - 1] != "\r", text[lastNewline - 1] != "\n" { lastNewline -= 1 }
        if lastNewline > start { return lastNewline }
        return whitespaceMatchEnd(text, from: start)
    }

    /// `\s+(?!\S)|\s+` at `start`.
    private static func whitespaceMatchEnd(_ text: [Unicode.Scalar], from start: Int) -> Int {
        let count = text.count
        var end = start
        while end < count, ScalarKind(text[end]) == .whitespace { end += 1 }
        if end == start { return start + 1 }
        if end == count || end - start < 2 { return end }
        return end - 1
    }

    private static func lowercasedASCII(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        ("A"..."Z").contains(scalar) ? Unicode.Scalar(scalar.value + 32) ?? scalar : scalar
    }

    enum ScalarKind: Equatable {
        case whitespace, letter, number, other

        init(_ scalar: Unicode.Scalar) {
            if scalar.value < 0x80 {
                switch scalar.value {
                case 0x41...0x5A, 0x61...0x7A: self = .letter
                case 0x30...0x39: self = .number
                case 0x09...0x0D, 0x20: self = .whitespace
                default: self = .other
                }
                return
            }
            if scalar.properties.isWhitespace {
                self = .whitespace
                return
            }
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: self = .letter
            case .decimalNumber, .letterNumber, .otherNumber: self = .number
            default: self = .other
            }
        }
    }

    /// GPT-2's reversible map from bytes to printable scalars: printable
    /// Latin-1 bytes map to themselves, the others to U+0100 onwards.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                table[byte] = Unicode.Scalar(next) ?? " "
                next += 1
            }
        }
        return table
    }()

    static let scalarToByte: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in byteToScalar.enumerated() { map[scalar] = UInt8(byte) }
        return map
    }()
}
