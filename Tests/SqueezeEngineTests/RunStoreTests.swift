import Foundation
@testable import SqueezeEngine
import SqueezeRecipe
import Testing

/// How `RunStore.resolve` finds a run: id, prefix, suffix, `latest`, or a path.
@Suite struct RunStoreTests {
    static func record(_ id: String, startedAt: TimeInterval) -> RunRecord {
        RunRecord(
            id: id, name: "demo", recipeFile: "recipe.yaml", status: .succeeded, startedAt: Date(timeIntervalSince1970: startedAt),
            endedAt: nil, wallSeconds: 1, squeezeVersion: "test", backend: "cpu", jobs: 1, threads: 1, host: "h", git: nil,
            overrides: [], cacheDirectory: ".squeeze", recipe: .object([:]), stages: [])
    }

    @Test func resolvesByIdPrefixSuffixLatestAndPath() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = RunStore(root: workspace.path("runs"))
        try store.save(Self.record("20260101T000000Z-demo-aaaa1111", startedAt: 1))
        try store.save(Self.record("20260102T000000Z-demo-bbbb2222", startedAt: 2))

        #expect(try store.resolve("latest").id == "20260102T000000Z-demo-bbbb2222")
        #expect(try store.resolve("20260101").id == "20260101T000000Z-demo-aaaa1111")
        #expect(try store.resolve("bbbb2222").id == "20260102T000000Z-demo-bbbb2222")
        let directory = workspace.path("runs/20260101T000000Z-demo-aaaa1111")
        for path in [directory, directory + "/", directory + "/run.json"] {
            #expect(try store.resolve(path).id == "20260101T000000Z-demo-aaaa1111", "\(path)")
        }
        #expect { try store.resolve("2026") } throws: { "\($0)".contains("matches 2 runs") }
        #expect {
            try store.resolve(workspace.path("runs/missing"))
        } throws: { "\($0)".contains("no run record at \(workspace.path("runs/missing/run.json"))") }

        try workspace.write("broken.json", "{}")
        #expect {
            try store.resolve(workspace.path("broken.json"))
        } throws: { "\($0)".contains("has an unreadable run.json") }
    }
}
