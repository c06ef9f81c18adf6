import Foundation

/// BERT's basic (pre-WordPiece) tokenizer with HuggingFace `tokenizers`
/// semantics (`BertNormalizer` + `BertPreTokenizer`), applied per Unicode scalar:
/// 1. clean: drop NUL, U+FFFD and control/format/unassigned scalars (not \t \n \r);
///    any whitespace becomes a space;
/// 2. surround CJK ideographs with spaces;
/// 3. strip accents (NFD, drop nonspacing marks), then lowercase;
/// 4. split on whitespace and isolate each punctuation scalar.
public struct BasicTokenizer: Sendable {
    public var lowercase = true
    /// nil follows `lowercase`, as in HuggingFace.
    public var stripAccents: Bool? = nil
    public var tokenizeChineseCharacters = true

    public init(lowercase: Bool = true, stripAccents: Bool? = nil, tokenizeChineseCharacters: Bool = true) {
        self.lowercase = lowercase
        self.stripAccents = stripAccents
        self.tokenizeChineseCharacters = tokenizeChineseCharacters
    }

    public func tokenize(_ text: String) -> [String] {
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isWhitespace(scalar) {
                cleaned.append(" ")
            } else if tokenizeChineseCharacters && Self.isChineseCharacter(scalar) {
                cleaned.append(" ")
                cleaned.append(scalar)
                cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        var normalized = cleaned
        if stripAccents ?? lowercase {
            normalized = String.UnicodeScalarView(
                String(normalized).decomposedStringWithCanonicalMapping.unicodeScalars
                    .filter { $0.properties.generalCategory != .nonspacingMark })
        }
        if lowercase {
            var lowered = String.UnicodeScalarView()
            for scalar in normalized {
                lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            }
            normalized = lowered
        }

        var tokens: [String] = []
        var current = String.UnicodeScalarView()
        func flush() {
            if !current.isEmpty {
                tokens.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        for scalar in normalized {
            if scalar.properties.isWhitespace {
                flush()
            } else if Self.isPunctuation(scalar) {
                flush()
                tokens.append(String(scalar))
            } else {
                current.append(scalar)
            }
        }
        flush()
        return tokens
    }

    /// \t \n \r count as whitespace; otherwise the Unicode White_Space property.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace
    }

    /// Category C* (Cc, Cf, Cn, Co, Cs) except \t \n \r, as `tokenizers`' `is_control`.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "\t", "\n", "\r":
            return false
        default:
            switch scalar.properties.generalCategory {
            case .control, .format, .unassigned, .privateUse, .surrogate: return true
            default: return false
            }
        }
    }

    /// ASCII punctuation (33-47, 58-64, 91-96, 123-126) or any Unicode P* category.
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 33...47, 58...64, 91...96, 123...126:
            return true
        default:
            switch scalar.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation:
                return true
            default:
                return false
            }
        }
    }

    /// The CJK blocks of `tokenizers`' `is_chinese_char` (note 0x2B920, not the
    /// 0x2B820 of the Python tokenizer: `tokenizers` is the reference here).
    static func isChineseCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}
