import SqueezeYAML
import Testing

@Suite struct SuggestionTests {
    @Test func suggestsCloseNames() {
        #expect(Suggestion.closest(to: "teachr", in: ["teacher", "pruned", "data"]) == "teacher")
        #expect(Suggestion.closest(to: "xyz", in: ["teacher", "pruned"]) == nil)
        #expect(Suggestion.editDistance("kitten", "sitting") == 3)
        #expect(Suggestion.editDistance("wiht", "with") == 1)
        #expect(Suggestion.closest(to: "wiht", in: ["with", "uses", "needs"]) == "with")
    }

    @Test func diagnosticFormat() {
        let d = Diagnostic("unknown key `stagez`", at: SourceLocation(file: "r.yaml", line: 3, column: 1), hint: "did you mean `stages`?")
        #expect(d.description == "r.yaml:3:1: error: unknown key `stagez`\n  hint: did you mean `stages`?")
    }
}
