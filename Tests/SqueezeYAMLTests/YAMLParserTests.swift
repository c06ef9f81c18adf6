import Foundation
import SqueezeYAML
import Testing

@Suite struct YAMLParserTests {
    @Test func positionsOfNestedNodesAreOneBased() throws {
        let root = try parse(
            """
            name: demo
            stages:
              data:
                uses: data/text
                with: { train: a.tsv, test: [x, y] }
              list:
                - first
                - key: value
                  other: 2
            """)
        #expect(root.location == SourceLocation(file: "r.yaml", line: 1, column: 1))
        #expect(position(root["name"]) == "1:7")
        let stages = try #require(root["stages"])
        #expect(position(stages) == "3:3")
        #expect(position(stages["data"]) == "4:5")
        #expect(position(stages["data"]?["uses"]) == "4:11")
        let with = try #require(stages["data"]?["with"])
        #expect(position(with) == "5:11")
        #expect(position(with["train"]) == "5:20")
        #expect(position(with["test"]) == "5:33")
        #expect(position(with["test"]?.items?.last) == "5:37")
        let list = try #require(stages["list"]?.items)
        #expect(list.map(position) == ["7:7", "8:7"])
        #expect(position(list[1]["other"]) == "9:14")
        let keys = try #require(root.entries?.map(\.key))
        #expect(keys.map(position) == ["1:1", "2:1"])
        #expect(keys.map(\.scalar) == ["name", "stages"])
    }

    @Test func emptyValueIsAnEmptyPlainScalarAfterTheColon() throws {
        let root = try parse("a:\nb: 1\n")
        #expect(root["a"]?.kind == .scalar("", .plain))
        #expect(position(root["a"]) == "1:3")
        #expect(YAMLScalar.resolve(try #require(root["a"])) == .null)
    }

    @Test func allScalarStyles() throws {
        let root = try parse(
            """
            plain: hello world
            single: 'it''s'
            double: "tab\\tnew\\u00e9"
            literal: |
              line one
              line two
            folded: >
              folded
              text
            """)
        #expect(root["plain"]?.kind == .scalar("hello world", .plain))
        #expect(root["single"]?.kind == .scalar("it's", .singleQuoted))
        #expect(root["double"]?.kind == .scalar("tab\tnew\u{e9}", .doubleQuoted))
        #expect(root["literal"]?.kind == .scalar("line one\nline two\n", .literal))
        #expect(root["folded"]?.kind == .scalar("folded text", .folded))
        #expect(["plain", "single", "double", "literal", "folded"].map { position(root[$0]) }
            == ["1:8", "2:9", "3:9", "4:10", "7:9"])
    }

    @Test func tagsAreKeptInShortForm() throws {
        let root = try parse("a: !!str 42\nb: !custom x\nc: 42\n")
        #expect(root["a"]?.tag == "!!str")
        #expect(root["b"]?.tag == "!custom")
        #expect(root["c"]?.tag == nil)
    }

    @Test func fileNameIsTheOnePassedIn() throws {
        let root = try #require(try YAMLParser.parse("a: 1", file: "recipes/x.yaml"))
        #expect(root["a"]?.location.file == "recipes/x.yaml")
        #expect(root["a"]?.location.description == "recipes/x.yaml:1:4")
    }

    @Test(arguments: ["", "\n\n", "# only a comment\n  # another\n", "---\n", "--- # empty\n...\n"])
    func emptyDocumentIsNil(text: String) throws {
        #expect(try YAMLParser.parse(text, file: "r.yaml") == nil)
    }

    @Test func explicitNullDocumentIsANode() throws {
        let root = try parse("~\n")
        #expect(YAMLScalar.resolve(root) == .null)
    }

    @Test func documentMarkersAroundOneDocumentAreFine() throws {
        let root = try parse("---\na: 1\n...\n")
        #expect(position(root["a"]) == "2:4")
    }

    @Test func utf8BOMIsAcceptedAndNotAColumn() throws {
        let text = "a:\n  b: [1, 2]\n"
        let plain = try YAMLParser.parse(text, file: "r.yaml")
        let withBOM = try YAMLParser.parse([0xEF, 0xBB, 0xBF] + Array(text.utf8), file: "r.yaml")
        #expect(plain != nil)
        #expect(plain == withBOM)
        #expect(position(withBOM?["a"]) == "2:3")
        let error = parseError([0xEF, 0xBB, 0xBF] + Array("a: b: c".utf8))
        #expect(error?.location?.column == 5)
    }

    @Test func crlfGivesTheSamePositionsAsLF() throws {
        let lf = """
            name: demo
            stages:
              - uses: x
                with: { a: 1 }
              - text: |
                  two
                  lines
                after: 'q'
            """
        let crlf = lf.replacingOccurrences(of: "\n", with: "\r\n")
        #expect(crlf.utf8.count > lf.utf8.count)
        let a = try YAMLParser.parse(lf, file: "r.yaml")
        let b = try YAMLParser.parse(crlf, file: "r.yaml")
        #expect(a != nil)
        #expect(a == b)
        #expect(position(b?["stages"]?.items?.last?["after"]) == "8:12")

        let badLF = "a: 1\nb: 2\nc: \u{7F}\n"
        let badCRLF = badLF.replacingOccurrences(of: "\n", with: "\r\n")
        #expect(parseError(badLF)?.location == parseError(badCRLF)?.location)
        #expect(parseError("a:\r\n  b: 1\r\n c: 2\r\n")?.location == parseError("a:\n  b: 1\n c: 2\n")?.location)
    }

    @Test func columnsCountCharactersNotBytes() throws {
        let root = try parse("é€😀: [ü, x]")
        #expect(position(root.entries?.first?.value) == "1:6")
        #expect(position(root.entries?.first?.value.items?.last) == "1:10")
    }

    @Test func parseFileReadsAndNamesTheFile() throws {
        let path = try TemporaryFile.write("a: 1\nb: [x]\n")
        defer { TemporaryFile.remove(path) }
        let root = try #require(try YAMLParser.parseFile(atPath: path, displayName: "recipe.yaml"))
        #expect(root["b"]?.location.description == "recipe.yaml:2:4")
        let unnamed = try #require(try YAMLParser.parseFile(atPath: path))
        #expect(unnamed["a"]?.location.file == path)
    }

    @Test func parseFileRefusesDirectoriesAndMissingFiles() throws {
        let directory = try TemporaryFile.makeDirectory()
        defer { TemporaryFile.remove(directory) }
        do {
            _ = try YAMLParser.parseFile(atPath: directory, displayName: "dir")
            Issue.record("expected an error")
        } catch {
            #expect(error.message == "`dir` is a directory, not a YAML file")
        }
        do {
            _ = try YAMLParser.parseFile(atPath: directory + "/missing.yaml", displayName: "missing.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.message.hasPrefix("cannot read `missing.yaml`: "))
        }
    }
}
