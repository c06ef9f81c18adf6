import Foundation
import Testing

import SqueezeSupport

/// Codable types through `SqueezeJSON`: Codable → `Value` → text and back.
@Suite struct SqueezeJSONTests {
    enum Colour: String, Codable, Equatable {
        case red, green
    }

    struct Inner: Codable, Equatable {
        var name: String
        var weights: [[Double]]
    }

    struct Document: Codable, Equatable {
        var created: Date
        var finished: Date?
        var note: String?
        var count: Int
        var ratio: Double
        var exact: Double
        var scale: Float
        var small: UInt8
        var big: Int64
        var colour: Colour
        var grid: [[Int]]
        var inners: [Inner]
        var table: [String: Inner]
        var metrics: [String: Value]
    }

    static let document = Document(
        created: Date(timeIntervalSince1970: 1_700_000_000.25), finished: nil, note: "naïve \"quoted\"\n",
        count: 3, ratio: 0.1, exact: 3, scale: 0.1, small: 255, big: Int64.min, colour: .green,
        grid: [[1, 2], [], [3]], inners: [Inner(name: "a", weights: [[1, 2.5], [-0.0]])],
        table: ["z": Inner(name: "z", weights: [])],
        metrics: ["accuracy": .double(3), "steps": .int(3), "curve": .array([.double(0.5), .int(1)]), "none": .null])

    @Test func codableDocumentRoundTripsPrettyAndCompact() throws {
        for pretty in [true, false] {
            let bytes = try SqueezeJSON.encode(Self.document, pretty: pretty)
            let decoded = try SqueezeJSON.decode(Document.self, from: bytes)
            #expect(decoded == Self.document)
            #expect(decoded.metrics["accuracy"] == .double(3), "a double metric 3.0 must not come back as an integer")
        }
        let text = try SqueezeJSON.text(Self.document, pretty: false)
        #expect(text.contains(#""created":"2023-11-14T22:13:20.250Z""#))
        #expect(!text.contains("finished"), "a nil optional is left out")
        #expect(text.contains(#""exact":3.0"#) && text.contains(#""count":3,"#) && text.contains(#""scale":0.1,"#))
    }

    @Test func anOptionalThatIsPresentRoundTrips() throws {
        var document = Self.document
        document.finished = Date(timeIntervalSince1970: 1_700_000_100.5)
        document.note = nil
        #expect(try SqueezeJSON.decode(Document.self, from: SqueezeJSON.encode(document)) == document)
    }

    @Test func datesReadWithOrWithoutFractionalSeconds() throws {
        struct Stamp: Codable, Equatable {
            var at: Date
        }
        #expect(try SqueezeJSON.decode(Stamp.self, from: Array(#"{"at":"2023-11-14T22:13:20Z"}"#.utf8)).at == Date(timeIntervalSince1970: 1_700_000_000))
        #expect(try SqueezeJSON.decode(Stamp.self, from: Array(#"{"at":"2023-11-14T22:13:20.250Z"}"#.utf8)).at == Date(timeIntervalSince1970: 1_700_000_000.25))
        #expect(throws: DecodingError.self) { try SqueezeJSON.decode(Stamp.self, from: Array(#"{"at":"yesterday"}"#.utf8)) }
    }

    /// Files written by `JSONEncoder` (`"key" : value`, `3.0` written as `3`,
    /// empty objects as `{\n\n}`) still read; a double field takes the integer.
    @Test func filesWrittenByJSONEncoderStillRead() throws {
        struct Old: Codable, Equatable {
            var wallSeconds: Double
            var metrics: [String: Value]
            var outputs: [String: Int]
        }
        let text = "{\n  \"metrics\" : {\n    \"accuracy\" : 3,\n    \"loss\" : 0.25\n  },\n  \"outputs\" : {\n\n  },\n  \"wallSeconds\" : 3\n}"
        let old = try SqueezeJSON.decode(Old.self, from: Array(text.utf8))
        #expect(old == Old(wallSeconds: 3, metrics: ["accuracy": .int(3), "loss": .double(0.25)], outputs: [:]))
    }

    @Test func shapeErrorsAreDecodingErrorsWithThePath() throws {
        struct Outer: Codable {
            var inners: [Inner]
        }
        let bad = Array(#"{"inners":[{"name":"a","weights":[[1]]},{"name":2,"weights":[]}]}"#.utf8)
        do {
            _ = try SqueezeJSON.decode(Outer.self, from: bad)
            Issue.record("a number where a string belongs decoded")
        } catch DecodingError.typeMismatch(_, let context) {
            #expect(context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue } == ["inners", "1", "name"])
        }
        #expect(throws: DecodingError.self) { try SqueezeJSON.decode(Inner.self, from: Array(#"{"name":"a"}"#.utf8)) }
        #expect(throws: DecodingError.self) { try SqueezeJSON.decode(Inner.self, from: Array(#"{"name":null,"weights":[]}"#.utf8)) }
        #expect(throws: DecodingError.self) { try SqueezeJSON.decode(UInt8.self, from: Array("256".utf8)) }
        #expect(throws: DecodingError.self) { try SqueezeJSON.decode(Int.self, from: Array("2.5".utf8)) }
        #expect(try SqueezeJSON.decode(Int.self, from: Array("2.0".utf8)) == 2)
        #expect(throws: JSONSyntaxError.self) { try SqueezeJSON.decode(Inner.self, from: Array(#"{"name":"a",}"#.utf8)) }
    }

    /// Stage parameters used to be decoded by `JSONDecoder` from their
    /// canonical text; `Value.decode` must give the same bits, floats included
    /// (a float read through a double could round twice).
    @Test func floatsAndDoublesDecodeAsJSONDecoderDidFromCanonicalText() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state
        }
        // Halfway between the floats 1 and 1 + 2^-23: as a double it is a tie
        // (rounds to even, 1), its text "1.0000000596046448" is just above it.
        let midpoint = Value.double(1 + 0x1p-24)
        let direct = try JSONDecoder().decode(Float.self, from: Data(midpoint.canonicalJSON.utf8))
        #expect(try midpoint.decode(Float.self).bitPattern == direct.bitPattern, "\(direct)")
        for _ in 0..<20_000 {
            let digits = Double(next() % 100_000_000_000_000_000)
            let exponent = Int(next() % 60) - 45
            let value = Value.double(digits * pow(10, Double(exponent)))
            let text = Data(value.canonicalJSON.utf8)
            let viaFoundation = try JSONDecoder().decode(Float.self, from: text)
            let viaValue = try value.decode(Float.self)
            #expect(viaValue.bitPattern == viaFoundation.bitPattern, "\(value.canonicalJSON)")
            #expect(try value.decode(Double.self) == JSONDecoder().decode(Double.self, from: text))
        }
    }

    @Test func nonFiniteDoublesRoundTripAsStrings() throws {
        let values: [Double] = [.nan, .infinity, -.infinity, 1]
        let text = try SqueezeJSON.text(values, pretty: false)
        #expect(text == #"["nan","inf","-inf",1.0]"#)
        let back = try SqueezeJSON.decode([Double].self, from: Array(text.utf8))
        #expect(back[0].isNaN && back[1] == .infinity && back[2] == -.infinity && back[3] == 1)
    }

    @Test func unsignedIntegersBeyondIntAreAnEncodingError() {
        #expect(throws: EncodingError.self) { try SqueezeJSON.encode([UInt64.max]) }
        #expect(throws: Never.self) { try SqueezeJSON.encode([UInt64(Int.max)]) }
    }

    @Test func encodableOutputIsPrettyWithATrailingNewline() {
        struct Row: Encodable {
            var b: Int
            var a: String
        }
        #expect([Row(b: 1, a: "x/y")].prettyJSON == "[\n  {\n    \"a\": \"x/y\",\n    \"b\": 1\n  }\n]\n")
        #expect(Row(b: 1, a: "x").compactJSON == #"{"a":"x","b":1}"#)
    }
}
