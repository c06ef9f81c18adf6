import SqueezeEngine
import SqueezeRecipe
import SqueezeStages
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML
import Testing

/// Backends reach recipes only through the registry the program builds: an
/// extra provider is accepted, listed and keyed; an unregistered id is not.
@Suite struct BackendRegistryTests {
    /// A test-only provider: the reference numerics under another id and fingerprint.
    static let echo = BackendProvider(
        id: "echo", summary: "the reference loops under a test id",
        numericsFingerprint: { "echo/r7" }, make: { _ in ReferenceBackend() })

    static let extended = BackendRegistry([.cpu, .reference, echo])

    static func load(_ text: String, backends: BackendRegistry) throws(Diagnostics) -> Recipe {
        try RecipeLoader.load(
            text: text, file: "recipe.yaml", directory: "/tmp",
            stageTypes: BuiltinStages.registry(backends: backends).descriptors, environment: [:],
            backends: backends.recipeBackends)
    }

    static let recipe = """
        version: 1
        name: backends
        backend: echo
        stages:
          a: { uses: command, with: { run: [x] } }
          b: { uses: command, backend: cpu, with: { run: [y] } }
        """

    @Test func registeredProviderIsAcceptedByValidation() throws {
        let loaded = try Self.load(Self.recipe, backends: Self.extended)
        #expect(loaded.backend == "echo")
        #expect(loaded.stages["a"]?.backend == "echo")
        #expect(loaded.stages["b"]?.backend == "cpu")
    }

    @Test func schemaListsExactlyTheRegisteredIDs() {
        func backendSchema(_ registry: BackendRegistry) -> Value? {
            RecipeSchema.generate(stageTypes: [], backends: registry.recipeBackends)["properties"]?["backend"]
        }
        let extended = backendSchema(Self.extended)
        #expect(extended?["enum"] == .array([.string("cpu"), .string("echo"), .string("reference")]))
        #expect(extended?["default"] == .string("cpu"))
        #expect(backendSchema(.builtin)?["enum"] == .array([.string("cpu"), .string("reference")]))
    }

    @Test func stagesKeyAndMakeTheRegisteredProvider() throws {
        #expect(BuiltinStages.registry(backends: Self.extended).backendFingerprint("echo") == "echo/r7")
        #expect(BuiltinStages.registry(backends: .builtin).backendFingerprint("cpu") == CPUBackend.numericsFingerprint)
        #expect(try Self.extended.make("echo", threads: 1).id == "reference")
        #expect(throws: UnknownBackend(id: "echo", known: ["cpu", "reference"])) {
            try BackendRegistry.builtin.make("echo", threads: 1)
        }
    }

    @Test func unregisteredIDIsAnErrorAtItsPosition() throws {
        let problems: [Diagnostic]
        do {
            _ = try Self.load(Self.recipe, backends: .builtin)
            Issue.record("a recipe naming an unregistered backend loaded")
            return
        } catch {
            problems = error.items
        }
        let problem = try #require(problems.first)
        #expect(problems.count == 1)
        #expect(problem.message == "unknown backend `echo`")
        #expect(problem.location == SourceLocation(file: "recipe.yaml", line: 3, column: 10))
        #expect(problem.hint == "available backends: `cpu` and `reference`")
    }
}
