import Foundation
@testable import SqueezeEngine
import SqueezeRecipe
import Synchronization
import Testing

/// A stage whose `source: fetch:PATH` stands for whatever PATH holds when the
/// key is made: its `keyedContent` hook "fetches" (copies) the file into a
/// scratch directory, and the stage copies what the engine hands it back.
struct FetchStage: Stage {
    struct Params: Decodable, Sendable {
        var source: String
    }

    /// Hook calls by `source` value.
    static let fetches = Mutex<[String: Int]>([:])
    /// Where each run found its keyed content, by `source` value.
    static let handed = Mutex<[String: String]>([:])

    static let descriptor = StageTypeDescriptor(
        type: "test/fetch", version: 1, summary: "Copy a file fetched when the key is made.",
        parameters: [ParameterSpec("source", .string, required: true, doc: "`fetch:PATH`.")],
        outputs: [OutputSpec("file", kind: "file", doc: "The fetched file.")],
        seedUse: .never,
        keyedContent: { parameter, value, scope in
            guard parameter == "source", value.hasPrefix("fetch:") else { return nil }
            fetches.withLock { $0[value, default: 0] += 1 }
            let original = String(value.dropFirst("fetch:".count))
            let fetched = (try scope.makeScratchDirectory() as NSString).appendingPathComponent((original as NSString).lastPathComponent)
            try FileManager.default.copyItem(atPath: original, toPath: fetched)
            return KeyedContent(path: fetched, label: (original as NSString).lastPathComponent)
        })

    func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        guard let fetched = context.keyedContent["source"] else { throw StageFailure("no keyed content for `source`") }
        Self.handed.withLock { $0[params.source] = fetched }
        try FileManager.default.copyItem(atPath: fetched, toPath: (context.outputDirectory as NSString).appendingPathComponent("file"))
        return StageResult()
    }
}

@Suite struct KeyedContentTests {
    static let registry = StageRegistry([StageType(FetchStage())])

    static func recipe(_ source: String) -> String {
        """
        version: 1
        name: fetch
        stages:
          fetch:
            uses: test/fetch
            with: { source: "fetch:\(source)" }
        """
    }

    /// Scratch directories the hook fetched into that still exist.
    static func scratchLeft(_ ws: Workspace) -> [String] {
        let temporary = ws.path(".squeeze/tmp")
        return (FileManager.default.enumerator(atPath: temporary)?.allObjects as? [String] ?? [])
            .filter { ($0 as NSString).lastPathComponent.hasPrefix("stage-keyed-content") }
    }

    @Test func theRunGetsExactlyWhatWasKeyedAndPlanNamesAChange() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let source = ws.path("data-\(UUID().uuidString).txt")
        let value = "fetch:\(source)"
        let label = (source as NSString).lastPathComponent
        try ws.write((source as NSString).lastPathComponent, "one")
        let pipeline = try ws.pipeline(Self.recipe(source), registry: Self.registry)

        let first = try await ws.run(pipeline)
        #expect(first.status == .succeeded, "\(first.stages)")
        let output = try #require(first.stage("fetch")?.outputs["file"])
        #expect(try String(contentsOfFile: pipeline.store.path(for: output), encoding: .utf8) == "one")
        #expect(FetchStage.fetches.withLock { $0[value] } == 1, "one fetch per run: the key's")
        let handed = try #require(FetchStage.handed.withLock { $0[value] })
        #expect(handed.hasPrefix(ws.path(".squeeze/tmp/")), "fetched into the store's staging area: \(handed)")
        #expect(!FileManager.default.fileExists(atPath: handed), "removed once the stage has run")

        var plan = try pipeline.plan()
        #expect(plan.first?.status == .cached)
        #expect(Self.scratchLeft(ws).isEmpty, "\(Self.scratchLeft(ws))")

        try ws.write(label, "two")
        plan = try pipeline.plan()
        #expect(plan.first?.status == .run)
        #expect(plan.first?.reason == "content changed: source (`\(value)@\(label)` now stands for other content)")

        let second = try await ws.run(pipeline)
        let changed = try #require(second.stage("fetch")?.outputs["file"])
        #expect(second.stage("fetch")?.status == .ran)
        #expect(try String(contentsOfFile: pipeline.store.path(for: changed), encoding: .utf8) == "two")
        #expect(FetchStage.fetches.withLock { $0[value] } == 4, "run, plan, plan, run: one fetch each")

        let third = try await ws.run(pipeline)
        #expect(third.stage("fetch")?.status == .cached)
        #expect(third.stage("fetch")?.key == second.stage("fetch")?.key)
        #expect(Self.scratchLeft(ws).isEmpty, "\(Self.scratchLeft(ws))")
    }

    @Test func theKeyHoldsTheTextTheLabelAndTheDigest() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let label = "data-\(UUID().uuidString).txt"
        try ws.write(label, "one")
        let pipeline = try ws.pipeline(Self.recipe(ws.path(label)), registry: Self.registry)
        let scratch = KeyedContentScratch(store: pipeline.store)
        defer { scratch.removeAll() }
        let key = try pipeline.stageKey(for: pipeline.spec("fetch"), upstream: [:], scratch: scratch)
        let digest = try pipeline.store.digest(ofPath: ws.path(label)).digest.description
        #expect(key.material.params == .object(["source": .string("fetch:\(ws.path(label))@\(label)@\(digest)")]))
        #expect(key.keyedContent["source"].map { ($0 as NSString).lastPathComponent } == label)
    }

    @Test func changesNameTheContentAParameterStandsFor() {
        let one = "sha256:" + String(repeating: "1", count: 64)
        let two = "sha256:" + String(repeating: "2", count: 64)
        func material(_ source: String) -> KeyMaterial { KeyMaterialTests.material(["source": .string(source)]) }
        #expect(material("pip:x@x-2.0-py3-none-any.whl@\(two)").changes(since: material("pip:x@x-1.0-py3-none-any.whl@\(one)"))
            == ["content changed: source (`pip:x@x-1.0-py3-none-any.whl` → `pip:x@x-2.0-py3-none-any.whl`)"])
        #expect(material("hf:o/n@\(two)").changes(since: material("hf:o/n@\(one)"))
            == ["content changed: source (`hf:o/n` now stands for other content)"])
        // Not a digest after the last `@`: an ordinary parameter edit.
        #expect(material("hf:o/n@main").changes(since: material("hf:o/n@v1")) == ["params changed: source"])
    }
}
