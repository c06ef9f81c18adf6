import SqueezeRecipe
import SqueezeYAML
import Testing

/// A parameter that takes an output of one of several kinds
/// (`oneOf([artifact(a), artifact(b)])`) is checked as one reference: every
/// listed kind passes, another kind or a literal is one error naming them all.
@Suite struct ArtifactKindsTests {
    static let tokenize = StageTypeDescriptor(
        type: "data/tokenize", version: 1, summary: "Tokenizes text.",
        parameters: [
            ParameterSpec("tokenizer", .oneOf([.artifact("tokenizer"), .artifact("model")]), required: true, doc: "Where tokenizer.json is."),
        ],
        outputs: [OutputSpec("dataset", kind: "text-dataset", doc: "The tokens.")])

    static let train = StageTypeDescriptor(
        type: "tokenizer/train", version: 1, summary: "Trains a tokenizer.", parameters: [],
        outputs: [OutputSpec("tokenizer", kind: "tokenizer", doc: "tokenizer.json.")])

    static func diagnostics(tokenizer: String) -> [Diagnostic] {
        var registry = Fixtures.registry
        for descriptor in [tokenize, train] { registry[descriptor.type] = descriptor }
        do {
            _ = try RecipeLoader.load(
                text: """
                    version: 1
                    name: kinds
                    stages:
                      base: { uses: model/import, with: { source: x } }
                      data: { uses: data/load, with: { train: t.tsv } }
                      bpe: { uses: tokenizer/train }
                      tokens:
                        uses: data/tokenize
                        with:
                          tokenizer: \(tokenizer)
                    """,
                file: Fixtures.file, directory: "/work/project", stageTypes: registry, overrides: [], environment: [:],
                backends: Fixtures.backends)
            return []
        } catch {
            return error.items
        }
    }

    @Test func everyListedKindPasses() {
        #expect(Self.diagnostics(tokenizer: "${bpe.tokenizer}").isEmpty)
        #expect(Self.diagnostics(tokenizer: "${base.model}").isEmpty)
    }

    @Test func anotherKindOrALiteralIsOneError() {
        let wrongKind = Self.diagnostics(tokenizer: "${data.dataset}")
        #expect(wrongKind.map(\.message) == ["expected a `tokenizer` or `model` artifact, but `${data.dataset}` is a `dataset`"])
        #expect(wrongKind.map(\.position) == ["10:18"])
        let literal = Self.diagnostics(tokenizer: "tokenizer.json")
        #expect(literal.map(\.message) == [#"expected exactly one stage output reference (a `tokenizer` or `model` artifact), got "tokenizer.json""#])
        let number = Self.diagnostics(tokenizer: "3")
        #expect(number.map(\.message) == ["expected one of: artifact<tokenizer> | artifact<model>, got an integer"])
    }
}
