import SqueezeYAML
import Testing

@Suite struct YAMLScalarTests {
    static let plainTable: [(String, YAMLScalar.Resolved)] = [
        ("", .null), ("~", .null), ("null", .null), ("Null", .null), ("NULL", .null),
        ("nULL", .string("nULL")),
        ("true", .bool(true)), ("True", .bool(true)), ("TRUE", .bool(true)),
        ("false", .bool(false)), ("False", .bool(false)), ("FALSE", .bool(false)),
        ("yes", .string("yes")), ("no", .string("no")), ("on", .string("on")), ("tRUE", .string("tRUE")),
        ("0", .int(0)), ("42", .int(42)), ("-17", .int(-17)), ("+8", .int(8)), ("007", .int(7)),
        ("0x1F", .int(31)), ("0xff", .int(255)), ("0o17", .int(15)),
        ("1_000", .string("1_000")), ("0x", .string("0x")), ("0xG1", .string("0xG1")), ("0o8", .string("0o8")),
        ("-0x10", .string("-0x10")), ("0b101", .string("0b101")),
        ("9223372036854775807", .int(Int.max)), ("-9223372036854775808", .int(Int.min)),
        ("9223372036854775808", .string("9223372036854775808")),
        ("1.5", .double(1.5)), ("-2e-3", .double(-0.002)), (".5", .double(0.5)), ("3e5", .double(300_000)),
        ("1.", .double(1)), ("+1.25E2", .double(125)), ("-.5", .double(-0.5)),
        (".inf", .double(.infinity)), ("-.inf", .double(-.infinity)), ("+.INF", .double(.infinity)),
        ("1e", .string("1e")), ("e3", .string("e3")), (".", .string(".")), ("1.2.3", .string("1.2.3")),
        ("1,5", .string("1,5")), ("inf", .string("inf")), ("nan", .string("nan")),
        ("hello", .string("hello")), ("data/train.tsv", .string("data/train.tsv")),
    ]

    @Test(arguments: plainTable)
    func plainScalarResolution(text: String, expected: YAMLScalar.Resolved) {
        #expect(YAMLScalar.resolve(text, style: .plain, tag: nil) == expected)
    }

    @Test(arguments: [".nan", ".NaN", ".NAN"])
    func nan(text: String) throws {
        guard case .double(let value) = YAMLScalar.resolve(text, style: .plain, tag: nil) else {
            Issue.record("\(text) is not a double")
            return
        }
        #expect(value.isNaN)
    }

    @Test(arguments: [ScalarStyle.singleQuoted, .doubleQuoted, .literal, .folded])
    func nonPlainScalarsAreStrings(style: ScalarStyle) {
        for text in ["42", "true", "null", "", "1.5"] {
            #expect(YAMLScalar.resolve(text, style: style, tag: nil) == .string(text))
        }
    }

    @Test func tagsForceOrFallBack() {
        #expect(YAMLScalar.resolve("42", style: .plain, tag: "!!str") == .string("42"))
        #expect(YAMLScalar.resolve("42", style: .plain, tag: "!") == .string("42"))
        #expect(YAMLScalar.resolve("42", style: .doubleQuoted, tag: "!!int") == .int(42))
        #expect(YAMLScalar.resolve("abc", style: .plain, tag: "!!int") == .string("abc"))
        #expect(YAMLScalar.resolve("1", style: .plain, tag: "!!float") == .double(1))
        #expect(YAMLScalar.resolve("x", style: .plain, tag: "!!float") == .string("x"))
        #expect(YAMLScalar.resolve("true", style: .singleQuoted, tag: "!!bool") == .bool(true))
        #expect(YAMLScalar.resolve("~", style: .plain, tag: "!!null") == .null)
        #expect(YAMLScalar.resolve("42", style: .plain, tag: "!custom") == .string("42"))
    }

    @Test func resolvesParsedNodes() throws {
        let root = try parse(
            """
            a: 42
            b: "42"
            c: !!str 42
            d: !!int "42"
            e: 1.5
            f: |
              42
            g: [1, x]
            """)
        let values = ["a", "b", "c", "d", "e", "f"].map { root[$0].map(YAMLScalar.resolve) }
        #expect(values == [.int(42), .string("42"), .string("42"), .int(42), .double(1.5), .string("42\n")])
        #expect(YAMLScalar.resolve(try #require(root["g"])) == .null)
    }
}
