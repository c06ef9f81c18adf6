import Testing

import SqueezeSupport

@Suite struct JSONTextTests {
    @Test func stringsEscapeQuotesBackslashesAndC0ControlsOnly() {
        #expect(JSONText.string("a\"b\\c") == #""a\"b\\c""#)
        #expect(JSONText.string("\n\r\t") == #""\n\r\t""#)
        #expect(JSONText.string("\u{0}\u{1}\u{1F}") == #""\u0000\u0001\u001f""#)
        #expect(JSONText.string("/") == #""/""#, "slashes are not escaped")
        #expect(JSONText.string("\u{7F}") == "\"\u{7F}\"", "DEL is written as itself")
        #expect(JSONText.string("é€😀") == "\"é€😀\"", "non-ASCII is written as UTF-8")
    }

    @Test func integralDoublesKeepAFractionOthersRoundTrip() {
        func number(_ value: Double) -> String {
            var out = ""
            JSONText.appendNumber(value, to: &out)
            return out
        }
        #expect(number(3) == "3.0")
        #expect(number(-0.0) == "-0.0")
        #expect(number(1e14) == "100000000000000.0")
        #expect(number(0.1) == "0.1")
        #expect(number(1e-12) == "1e-12")
        #expect(number(1e20) == "1e+20")
        #expect(number(.nan) == "\"nan\"")
        #expect(number(.infinity) == "\"inf\"")
        #expect(number(-.infinity) == "\"-inf\"")
        for value in [0.1, 1e-12, 1e20, 123.456, -2.5e-300] {
            #expect(Double(number(value)) == value)
        }
    }

    @Test func keysSortByUTF8Bytes() {
        // "Z" (0x5A) < "a" (0x61) < "é" (0xC3 0xA9). In UTF-16 order U+10000
        // (surrogates 0xD800...) would sort before U+FF5E; in UTF-8 it is after.
        #expect(["é", "a", "Z"].sorted(by: JSONText.keyPrecedes) == ["Z", "a", "é"])
        #expect(JSONText.keyPrecedes("\u{FF5E}", "\u{10000}"))
        #expect(!JSONText.keyPrecedes("\u{10000}", "\u{FF5E}"))
        #expect(!JSONText.keyPrecedes("a", "a"))
    }
}
