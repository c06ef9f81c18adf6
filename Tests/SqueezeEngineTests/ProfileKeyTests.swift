import Foundation
import SqueezeEngine
import Testing

@Suite struct ProfileKeyTests {
    private let recipe = """
        version: 1
        name: profiles
        vars:
          profile: quick
          text: long
        profiles:
          quick: { text: short }
          also-short: { text: short }
          full: { text: long }
        stages:
          first:
            uses: test/write
            with: { tag: profile-keys, text: "${vars.text}" }
        """

    /// Stage keys depend on resolved parameters only, never on which profile produced them.
    @Test func profilesWithTheSameValuesHaveTheSameKeys() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        func keys(_ overrides: [String]) throws -> [String?] {
            try ws.pipeline(recipe, overrides: overrides).plan().map(\.key)
        }
        let quick = try keys([])
        #expect(quick.allSatisfy { $0 != nil })
        #expect(try keys(["vars.profile=also-short"]) == quick)
        #expect(try keys(["vars.profile=full", "vars.text=short"]) == quick)
        #expect(try keys(["vars.profile=full"]) != quick)
        #expect(try keys(["vars.profile=also-short", "vars.text=long"]) == (try keys(["vars.profile=full"])))
    }

    @Test func theRunRecordNamesTheProfile() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let record = try await ws.run(try ws.pipeline(recipe, overrides: ["vars.profile=full"]))
        guard case .object(let recorded) = record.recipe, case .object(let vars)? = recorded["vars"] else {
            Issue.record("the record has no recipe")
            return
        }
        #expect(recorded["profile"] == .string("full"))
        #expect(vars["text"] == .string("long"))
    }
}
