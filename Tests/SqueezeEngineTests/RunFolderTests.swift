import Foundation
import SqueezeEngine
import SqueezeRecipe
import Testing

/// A run that cannot start leaves nothing under `runs/`.
@Suite struct RunFolderTests {
    /// The loader refuses non-finite numbers; this reaches the engine with one
    /// anyway, so the run record cannot be encoded as JSON.
    @Test func aRunWhoseRecordCannotBeWrittenLeavesNoFolder() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let loaded = try ws.pipeline("""
            version: 1
            name: unrecordable
            vars: { x: 1.5 }
            stages:
              a:
                uses: test/write
                with: { tag: \(UUID().uuidString), text: "${vars.x}" }
            """)
        var recipe = loaded.recipe
        recipe.vars["x"] = .double(.nan)
        let pipeline = Pipeline(recipe: recipe, registry: loaded.registry, store: loaded.store, environment: [:])
        await #expect(throws: (any Error).self) { try await ws.run(pipeline) }
        let runs = (try? FileManager.default.contentsOfDirectory(atPath: ws.path("runs"))) ?? []
        #expect(runs.isEmpty, "\(runs)")
    }
}
