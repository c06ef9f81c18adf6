import Foundation
import SqueezeEngine
import SqueezeSupport
import Testing

/// What a run leaves under `runs/`.
@Suite struct RunFolderTests {
    /// The loader refuses non-finite numbers; one that reaches the engine
    /// anyway no longer makes the run record unwritable (`JSONEncoder` threw
    /// on NaN): the codec writes it as the string `"nan"`, so the run is
    /// recorded and its record reads.
    @Test func aNonFiniteValueInTheRecipeIsRecordedAsAString() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let loaded = try ws.pipeline("""
            version: 1
            name: nonfinite
            vars: { x: 1.5 }
            stages:
              a:
                uses: test/write
                with: { tag: \(UUID().uuidString), text: "${vars.x}" }
            """)
        var recipe = loaded.recipe
        recipe.vars["x"] = .double(.nan)
        let pipeline = Pipeline(recipe: recipe, registry: loaded.registry, store: loaded.store, environment: [:])
        let ran = try await ws.run(pipeline)
        let read = try RunStore(root: ws.path("runs")).resolve(ran.id)
        #expect(read.status == .succeeded)
        #expect(read.recipe["vars"]?["x"] == .string("nan"))
    }
}
