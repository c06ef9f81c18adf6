import Foundation
import Testing

import SqueezeSupport

/// `Value` ↔ JSON text: the writer (compact and pretty) and the parser.
@Suite struct ValueJSONTests {
    static let samples: [Value] = [
        .null, .bool(true), .bool(false),
        .int(0), .int(3), .int(-1), .int(Int.max), .int(Int.min),
        .double(3), .double(0.1), .double(-2.5), .double(1e-12), .double(1e20), .double(1e15), .double(999_999_999_999_999),
        .double(-1.5e-300), .double(Double.greatestFiniteMagnitude), .double(Double.leastNonzeroMagnitude),
        .string(""), .string("plain"), .string("é漢😀"), .string("quote \" backslash \\ slash /"),
        .string(String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))), .string("\u{7F}\u{FFFF}\u{10FFFF}"),
        .array([]), .object([:]),
        .array([.int(1), .double(1), .string("1"), .null, .array([.array([])])]),
        .object(["b": .int(1), "a": .array([.double(3), .object(["é": .bool(false), "Z": .null])]), "": .string("empty key")]),
    ]

    @Test(arguments: samples) func everyValueRoundTripsCompactAndPretty(_ value: Value) throws {
        #expect(try Value(json: value.canonicalJSON) == value, "\(value.canonicalJSON)")
        #expect(try Value(json: value.prettyJSON) == value, "\(value.prettyJSON)")
    }

    @Test func doublesStayDoublesAndIntegersIntegers() throws {
        #expect(Value.double(3).canonicalJSON == "3.0")
        #expect(Value.int(3).canonicalJSON == "3")
        #expect(try Value(json: "3.0") == .double(3))
        #expect(try Value(json: "3") == .int(3))
        #expect(try Value(json: "3e0") == .double(3))
        #expect(try Value(json: "3E+2") == .double(300))
        #expect(try Value(json: "-0") == .int(0))
        // -0.0 keeps its sign through the text (== does not see the sign).
        guard case .double(let negativeZero) = try Value(json: Value.double(-0.0).canonicalJSON) else {
            Issue.record("-0.0 did not read back as a double")
            return
        }
        #expect(negativeZero == 0 && negativeZero.sign == .minus)
        #expect(try Value(json: "1e-12") == .double(1e-12))
    }

    @Test func integersBeyondIntBecomeTheNearestDouble() throws {
        #expect(try Value(json: "9223372036854775807") == .int(Int.max))
        #expect(try Value(json: "-9223372036854775808") == .int(Int.min))
        #expect(try Value(json: "9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try Value(json: "-99999999999999999999") == .double(-1e20))
    }

    /// The compact form is `canonicalJSON`, the bytes cache keys are the
    /// SHA-256 of; these are the exact strings it has always given.
    @Test func compactBytesArePinned() {
        let key: Value = .object(["b": .int(1), "a": .array([.double(3), .double(0.5), .string("x\"y\n")]), "c": .null])
        #expect(key.canonicalJSON == #"{"a":[3.0,0.5,"x\"y\n"],"b":1,"c":null}"#)
        let numbers: Value = .array([.double(-0.0), .double(1e-12), .double(1e20), .double(1e15), .double(1e14), .double(0.1), .int(-7)])
        #expect(numbers.canonicalJSON == "[-0.0,1e-12,1e+20,1000000000000000.0,100000000000000.0,0.1,-7]")
        let strings: Value = .object(["é": .bool(true), "Z": .string("\u{1}\t/\u{7F}é"), "a": .double(.nan), "b": .double(-.infinity)])
        #expect(strings.canonicalJSON == "{\"Z\":\"\\u0001\\t/\u{7F}é\",\"a\":\"nan\",\"b\":\"-inf\",\"é\":true}")
        #expect(Value.object(["x": .object([:]), "y": .array([])]).canonicalJSON == #"{"x":{},"y":[]}"#)
    }

    @Test func prettyFormIsSortedIndentedWithATrailingNewline() {
        let value: Value = .object(["b": .array([.int(1), .double(2)]), "a": .object([:]), "c": .array([])])
        #expect(value.prettyJSON == """
            {
              "a": {},
              "b": [
                1,
                2.0
              ],
              "c": []
            }

            """)
    }

    @Test func escapesAndSurrogatePairsRead() throws {
        #expect(try Value(json: #""\"\\\/\b\f\n\r\t\u0041\u00e9\uD83D\uDE00""#) == .string("\"\\/\u{8}\u{C}\n\r\tAé😀"))
        #expect(try Value(json: "\"é漢😀\"") == .string("é漢😀"))
    }

    @Test func syntaxErrorsNameLineAndColumn() {
        func failure(_ text: String) -> JSONSyntaxError? {
            failure(Array(text.utf8))
        }
        func failure(_ bytes: [UInt8]) -> JSONSyntaxError? {
            do {
                _ = try Value(json: bytes)
                return nil
            } catch {
                return error
            }
        }
        let cases: [(String, Int, Int, String)] = [
            ("", 1, 1, "unexpected end of input"),
            ("{\"a\":1,}", 1, 8, "expected a string key"),
            ("[1, 2] x", 1, 8, "after the JSON value"),
            ("{}{}", 1, 3, "after the JSON value"),
            ("{\n  \"é\": tru\n}", 2, 8, "expected `true`"),
            ("[01]", 1, 2, "leading zero"),
            ("[-]", 1, 2, "digits after `-`"),
            ("1.", 1, 1, "digits after `.`"),
            ("1e", 1, 1, "exponent"),
            ("1e400", 1, 1, "beyond the range of a double"),
            ("{\"a\":1,\"a\":2}", 1, 8, "duplicate key \"a\""),
            ("\"a\u{1}\"", 1, 3, "control character U+0001"),
            ("\"\\uD800\"", 1, 2, "lone high surrogate"),
            ("\"\\uD800\\u0041\"", 1, 2, "not a low surrogate"),
            ("\"\\uDC00\"", 1, 2, "lone low surrogate"),
            ("\"\\x\"", 1, 2, "invalid escape"),
            ("\"\\u12G4\"", 1, 2, "four hexadecimal digits"),
            ("[1 2]", 1, 4, "expected `,` or `]`"),
            ("{\"a\" 1}", 1, 6, "expected `:`"),
            ("[\"abc", 1, 6, "inside a string"),
            ("nul", 1, 1, "expected `null`"),
            ("'a'", 1, 1, "expected a value"),
        ]
        for (text, line, column, message) in cases {
            let error = failure(text)
            #expect(error?.line == line && error?.column == column, "\(text.debugDescription): \(String(describing: error))")
            #expect(error?.message.contains(message) == true, "\(text.debugDescription): \(String(describing: error))")
        }
        // Invalid UTF-8: a stray continuation byte, an overlong form, an encoded surrogate, a truncated sequence.
        for bytes: [UInt8] in [[0x22, 0x80, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xE2, 0x82]] {
            let error = failure(bytes)
            #expect(error?.line == 1 && error?.column == 2, "\(bytes): \(String(describing: error))")
            #expect(error?.message.contains("UTF-8") == true, "\(bytes): \(String(describing: error))")
        }
        #expect(failure([0xEF, 0xBB, 0xBF, 0x31])?.message.contains("byte-order mark") == true)
        #expect(failure("{\"a\":\n  [1,\n   2,]}")?.description == "line 3, column 6: unexpected `]`, expected a value")
    }

    @Test func nestingIsLimited() throws {
        let deepest = String(repeating: "[", count: Value.maximumDepth) + String(repeating: "]", count: Value.maximumDepth)
        #expect(throws: Never.self) { try Value(json: deepest) }
        let tooDeep = "[" + deepest + "]"
        #expect { try Value(json: tooDeep) } throws: { ($0 as? JSONSyntaxError)?.message.contains("nesting deeper") == true }
    }

    @Test func whiteSpaceAroundTokensIsAllowed() throws {
        #expect(try Value(json: " \t\r\n{ \"a\" : [ 1 , 2.5 ] }\n") == .object(["a": .array([.int(1), .double(2.5)])]))
    }
}
