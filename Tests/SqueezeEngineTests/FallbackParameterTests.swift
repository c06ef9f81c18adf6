import Foundation
@testable import SqueezeEngine
import SqueezeRecipe
import SqueezeStore
import SqueezeSupport
import Synchronization
import Testing

/// A stage with a local `file` and a `download` fallback for it (with a
/// `fraction` that goes with the download), which records the parameters it
/// was run with.
struct FallbackStage: Stage {
    struct Params: Decodable, Sendable {
        var file: String?
        var download: Value?
        var fraction: Double?
    }

    /// The parameters of each run, by stage id.
    static let received = Mutex<[String: Params]>([:])

    static let descriptor = StageTypeDescriptor(
        type: "test/fallback", version: 1, summary: "Record the parameters it runs with.",
        parameters: [
            ParameterSpec("file", .path, doc: "A local file."),
            ParameterSpec(
                "download", .download, fallback: ParameterFallback(replaces: ["file"], companions: ["fraction"]),
                doc: "Used when `file` is missing."),
            ParameterSpec("fraction", .number, doc: "Goes with the download."),
        ],
        outputs: [OutputSpec("out", kind: "file", doc: "A marker.")],
        seedUse: .whenGiven("fraction"))

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        Self.received.withLock { $0[context.stageID] = params }
        try Data("ran".utf8).write(to: URL(fileURLWithPath: (context.outputDirectory as NSString).appendingPathComponent("out")))
        return StageResult()
    }
}

@Suite struct FallbackParameterTests {
    static let registry = StageRegistry([StageType(FallbackStage())])
    static let pin = String(repeating: "ab", count: 32)

    static func recipe(id: String, file: String?, url: String?) -> String {
        var text = "version: 1\nname: fallback\nstages:\n  \(id):\n    uses: test/fallback\n    with:\n"
        if let file { text += "      file: \(file)\n" }
        if let url {
            text += "      download: {url: \"\(url)\", sha256: \(pin), files: {train: d/train.tsv}}\n      fraction: 0.1\n"
        }
        return text
    }

    static func pipeline(_ ws: Workspace, _ yaml: String, environment: [String: String] = [:]) throws -> Pipeline {
        try ws.write("recipe.yaml", yaml)
        let recipe = try RecipeLoader.load(
            file: ws.path("recipe.yaml"), stageTypes: registry.descriptors, overrides: [],
            environment: environment, backends: testBackends)
        return Pipeline(recipe: recipe, registry: registry, store: try ContentStore(root: ws.path(".squeeze")), environment: environment)
    }

    static func material(_ pipeline: Pipeline, _ id: String) throws -> KeyMaterial {
        let scratch = KeyedContentScratch(store: pipeline.store)
        defer { scratch.removeAll() }
        return try pipeline.stageKey(for: pipeline.spec(id), upstream: [:], scratch: scratch).material
    }

    @Test func withTheLocalFileTheKeyIsTheOneWithoutTheFallback() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write("train.tsv", "sentence\tlabel\n")
        let id = "local-\(UUID().uuidString.prefix(8).lowercased())"
        let both = try Self.pipeline(ws, Self.recipe(id: id, file: "train.tsv", url: "https://example.org/a.zip"))
        let plain = try Self.pipeline(ws, Self.recipe(id: id, file: "train.tsv", url: nil))
        let material = try Self.material(both, id)
        let plainMaterial = try Self.material(plain, id)
        #expect(material == plainMaterial)
        #expect(material.seed == nil, "the fraction went with the unused download")

        let record = try await ws.run(both)
        #expect(record.status == .succeeded, "\(record.stages)")
        let received = try #require(FallbackStage.received.withLock { $0[id] })
        #expect(received.file == ws.path("train.tsv") && received.download == nil && received.fraction == nil)
    }

    @Test func withoutTheLocalFileTheDownloadIsKeyedByItsPinNotItsURL() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let id = "download-\(UUID().uuidString.prefix(8).lowercased())"
        let first = try Self.pipeline(
            ws, Self.recipe(id: id, file: "${env.DATA:-missing}/train.tsv", url: "${env.MIRROR:-https://example.org}/a.zip"))
        let material = try Self.material(first, id)
        #expect(material.params == .object([
            "download": .object(["sha256": .string(Self.pin), "files": .object(["train": .string("d/train.tsv")])]),
            "fraction": .double(0.1),
        ]), "no `file`, and no URL: \(material.params.canonicalJSON)")
        #expect(material.seed != nil, "the fraction draws on the seed")

        let mirror = try Self.pipeline(
            ws, Self.recipe(id: id, file: "${env.DATA:-missing}/train.tsv", url: "https://mirror.example.net/other/name.zip"))
        let mirrored = try Self.material(mirror, id)
        #expect(mirrored == material, "another URL with the same pin: the same key")

        let environment = ["MIRROR": "https://local.example"]
        let run = try Self.pipeline(
            ws, Self.recipe(id: id, file: "${env.DATA:-missing}/train.tsv", url: "${env.MIRROR:-https://example.org}/a.zip"),
            environment: environment)
        let record = try await ws.run(run)
        #expect(record.status == .succeeded, "\(record.stages)")
        let received = try #require(FallbackStage.received.withLock { $0[id] })
        #expect(received.file == nil && received.fraction == 0.1)
        #expect(received.download == .object([
            "url": .string("https://local.example/a.zip"), "sha256": .string(Self.pin),
            "files": .object(["train": .string("d/train.tsv")]),
        ]), "the stage gets the URL, rendered")
    }
}
