import Foundation
@testable import SqueezeEngine
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport
import Testing

/// A stage whose directory output `bundle` is published to `destination`;
/// `text` decides its content.
struct PublishingStage: Stage {
    struct Params: Decodable, Sendable {
        var text: String
        var destination: String?
    }

    static let descriptor = StageTypeDescriptor(
        type: "test/publish", version: 1, summary: "Write a folder and publish it.",
        parameters: [
            ParameterSpec("text", .string, required: true, doc: "The content."),
            ParameterSpec("destination", .string, outsideKey: true, doc: "Where to copy the folder."),
        ],
        outputs: [OutputSpec("bundle", kind: "directory", doc: "A folder.")],
        seedUse: .never,
        publication: Publication(parameter: "destination", output: "bundle"))

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let folder = (context.outputDirectory as NSString).appendingPathComponent("bundle")
        try FileManager.default.createDirectory(atPath: folder + "/nested", withIntermediateDirectories: true)
        try Data(params.text.utf8).write(to: URL(fileURLWithPath: folder + "/a.txt"))
        try Data("b".utf8).write(to: URL(fileURLWithPath: folder + "/nested/b.txt"))
        return StageResult()
    }
}

@Suite struct PublicationTests {
    static let registry = StageRegistry([StageType(PublishingStage())])

    static func pipeline(_ ws: Workspace, text: String, destination: String) throws -> Pipeline {
        try ws.write(
            "recipe.yaml",
            "version: 1\nname: publish\nstages:\n  export:\n    uses: test/publish\n    with:\n      text: \(text)\n      destination: \(destination)\n")
        let recipe = try RecipeLoader.load(
            file: ws.path("recipe.yaml"), stageTypes: registry.descriptors, overrides: [], environment: [:],
            backends: testBackends)
        return Pipeline(recipe: recipe, registry: registry, store: try ContentStore(root: ws.path(".squeeze")), environment: [:])
    }

    static func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func publishesOnRunAndOnCacheHitAndReplacesItsOwnPublication() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let first = try Self.pipeline(ws, text: "one", destination: "deploy/model")
        try first.checkPublications(runsRoot: ws.path("runs"))
        let ran = try await ws.run(first)
        #expect(ran.status == .succeeded, "\(ran.stages)")
        #expect(Self.read(ws.path("deploy/model/a.txt")) == "one")
        #expect(Self.read(ws.path("deploy/model/nested/b.txt")) == "b")
        #expect(FileManager.default.fileExists(atPath: ws.path("deploy/model/\(Publisher.markerName)")))

        // Removed by the user: a cached rerun puts it back.
        try FileManager.default.removeItem(atPath: ws.path("deploy/model"))
        let cached = try await ws.run(first)
        #expect(cached.stages.first?.status == .cached)
        #expect(Self.read(ws.path("deploy/model/a.txt")) == "one")

        // Other content: our own publication is replaced, with nothing left beside it.
        let second = try Self.pipeline(ws, text: "two", destination: "deploy/model")
        try second.checkPublications(runsRoot: ws.path("runs"))
        let changed = try await ws.run(second)
        #expect(changed.status == .succeeded, "\(changed.stages)")
        #expect(Self.read(ws.path("deploy/model/a.txt")) == "two")
        #expect(try FileManager.default.contentsOfDirectory(atPath: ws.path("deploy")) == ["model"])
    }

    @Test func refusesAForeignDirectoryBeforeAnyStageRuns() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try FileManager.default.createDirectory(atPath: ws.path("deploy/model"), withIntermediateDirectories: true)
        try ws.write("deploy/model/mine.txt", "not squeeze's")
        let pipeline = try Self.pipeline(ws, text: "one", destination: "deploy/model")
        do {
            try pipeline.checkPublications(runsRoot: ws.path("runs"))
            Issue.record("a non-empty foreign directory was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("recipe.yaml:8:20"), "positioned: \(message)")
            #expect(message.contains("not empty"))
        }
        try ws.write("deploy/file", "x")
        let onFile = try Self.pipeline(ws, text: "one", destination: "deploy/file")
        #expect(throws: UserError.self) { try onFile.checkPublications(runsRoot: ws.path("runs")) }
        let inCache = try Self.pipeline(ws, text: "one", destination: ".squeeze/x")
        #expect(throws: UserError.self) { try inCache.checkPublications(runsRoot: ws.path("runs")) }
        #expect(Self.read(ws.path("deploy/model/mine.txt")) == "not squeeze's")
    }

    static func pipeline(_ ws: Workspace, yaml: String, environment: [String: String] = [:]) throws -> Pipeline {
        try ws.write("recipe.yaml", yaml)
        let recipe = try RecipeLoader.load(
            file: ws.path("recipe.yaml"), stageTypes: registry.descriptors, overrides: [], environment: environment,
            backends: testBackends)
        return Pipeline(
            recipe: recipe, registry: registry, store: try ContentStore(root: ws.path(".squeeze")), environment: environment)
    }

    /// Destinations that cannot be resolved or collide are refused before any
    /// stage runs, each naming the parameter's position.
    @Test func unresolvableAndCollidingDestinationsAreRefused() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        func problem(_ pipeline: Pipeline) -> String {
            do {
                try pipeline.checkPublications(runsRoot: ws.path("runs"))
                return ""
            } catch {
                return "\(error)"
            }
        }
        let stage = { (id: String, destination: String) in
            "  \(id):\n    uses: test/publish\n    with:\n      text: x\n      destination: \"\(destination)\"\n"
        }
        let header = "version: 1\nname: publish\nstages:\n"

        // An unset variable is already a recipe error when the recipe loads.
        do {
            _ = try Self.pipeline(ws, yaml: header + stage("a", "${env.SQUEEZE_TEST_UNSET_DESTINATION}/x"))
            Issue.record("a destination naming an unset variable loaded")
        } catch {
            #expect("\(error)".contains("recipe.yaml:8:20") && "\(error)".contains("`SQUEEZE_TEST_UNSET_DESTINATION` is not set"), "\(error)")
        }
        let fallback = problem(try Self.pipeline(ws, yaml: header + stage("a", "${env.SQUEEZE_TEST_UNSET_DESTINATION:-out}/x")))
        #expect(fallback.isEmpty, "\(fallback)")

        let output = problem(try Self.pipeline(ws, yaml: header + stage("a", "one") + stage("b", "${a.bundle}")))
        #expect(output.contains("cannot name a destination"), "\(output)")

        let twice = problem(try Self.pipeline(ws, yaml: header + stage("a", "same") + stage("b", "same")))
        #expect(twice.contains("already publishes to"), "\(twice)")
    }

    /// A destination that turns into a file after the check: the stage's
    /// run fails naming the publication, and the file is left as it was.
    @Test func aPublicationThatCannotBeWrittenFailsTheStage() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let pipeline = try Self.pipeline(ws, text: "one", destination: "deploy")
        try pipeline.checkPublications(runsRoot: ws.path("runs"))
        try ws.write("deploy", "a file now")
        let record = try await ws.run(pipeline)
        #expect(record.status == .failed)
        #expect(record.stages.first?.reason?.contains("could not publish its output") == true, "\(record.stages)")
        #expect(Self.read(ws.path("deploy")) == "a file now")
    }

    @Test func anEmptyDirectoryIsFilled() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try FileManager.default.createDirectory(atPath: ws.path("empty"), withIntermediateDirectories: true)
        let pipeline = try Self.pipeline(ws, text: "x", destination: "empty")
        try pipeline.checkPublications(runsRoot: ws.path("runs"))
        let record = try await ws.run(pipeline)
        #expect(record.status == .succeeded)
        #expect(Self.read(ws.path("empty/a.txt")) == "x")
    }
}
