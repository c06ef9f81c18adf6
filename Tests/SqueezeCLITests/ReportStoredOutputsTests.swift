import Foundation
@testable import squeeze
@testable import SqueezeEngine
import SqueezeStore
import SqueezeSupport
import Testing

/// `squeeze report` reads a generate stage's report.json by the digest its
/// record gives, from the run's content store.
@Suite struct ReportStoredOutputsTests {
    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "squeeze-report-outputs-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func readsByDigestFromTheRecordsStoreThenTheOther() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = try ContentStore(root: root + "/cache")
        let staged = root + "/report.json"
        let bytes = Data(#"{"fp32": {"samples": []}}"#.utf8)
        try bytes.write(to: URL(fileURLWithPath: staged))
        var stage = StageRecord(id: "generate", uses: "eval/generate", status: .ran)
        stage.outputs["report"] = try store.ingest(staged)

        let missing = root + "/no-cache"
        let outputs = StoredOutputs(stores: [missing, root + "/cache"])
        #expect(try outputs.read(stage, "report") == bytes)
        #expect(!FileManager.default.fileExists(atPath: missing), "a store that does not exist is not created")
        #expect(throws: StoredOutputs.Unavailable.self) { try outputs.read(stage, "model") }

        let onlyMissing = StoredOutputs(stores: [missing])
        #expect {
            try onlyMissing.read(stage, "report")
        } throws: { error in
            "\(error)".contains("no cache at \(missing)")
        }
    }

    @Test func changedBytesAreNotShown() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let reference: ArtifactRef
        do {
            let store = try ContentStore(root: root + "/cache")
            try Data(#"{"a": 1}"#.utf8).write(to: URL(fileURLWithPath: root + "/report.json"))
            reference = try store.ingest(root + "/report.json")
            let object = try store.path(for: reference)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: object)
            try Data(#"{"b": 2}"#.utf8).write(to: URL(fileURLWithPath: object))
        }
        var stage = StageRecord(id: "generate", uses: "eval/generate", status: .ran)
        stage.outputs["report"] = reference
        #expect {
            try StoredOutputs(stores: [root + "/cache"]).read(stage, "report")
        } throws: { error in
            "\(error)".contains("does not match digest")
        }
    }

    /// A hand-written record of a perplexity and a generate stage over two
    /// artifacts, with the generate report.json in the project's store.
    static func languageModelRun(_ project: Project) throws -> String {
        let store = try ContentStore(root: project.cacheDirectory)
        let report: Value = .object([
            "fp32": .object(["samples": .array([.object([
                "prompt": .string(" The game"), "prompt_tokens": .int(3), "continuation": .string(" <b>was</b> & won"),
                "tokens": .array([.int(1), .int(2)]), "stopped_at_eos": .bool(false),
            ])]), "quantization": .null]),
            "sampling": .object(["temperature": .double(0), "max_new_tokens": .int(2), "stop_at_eos": .bool(false)]),
        ])
        try project.write("staged/report.json", report.prettyJSON)
        var generate = StageRecord(id: "generate", uses: "eval/generate", status: .ran)
        generate.outputs["report"] = try store.ingest(project.path("staged/report.json"))
        generate.metrics = ["fp32.decode_tokens_per_s": .double(120), "fp32.prefill_tokens_per_s": .double(900), "prompts": .int(1)]
        var pretrain = StageRecord(id: "pretrain", uses: "train/causal-lm", status: .ran)
        pretrain.outputs["model"] = ArtifactRef(digest: try #require(Digest(hex: String(repeating: "ab", count: 32))), type: .directory, size: 20_000_000)
        var pruned = StageRecord(id: "pruned", uses: "prune/oneshot", status: .ran)
        pruned.outputs["model"] = ArtifactRef(digest: try #require(Digest(hex: String(repeating: "cd", count: 32))), type: .directory, size: 12_000_000)
        var ppl = StageRecord(id: "ppl", uses: "eval/perplexity", status: .ran)
        ppl.metrics = [
            "dense.perplexity": .double(30), "dense.tokens_per_s": .double(2000), "pruned.perplexity": .double(31.5), "seq_len": .int(128),
        ]
        func stage(_ models: [String: String], _ dependencies: [String]) -> Value {
            .object(["with": .object(["models": .object(models.mapValues(Value.string))]), "dependencies": .array(dependencies.map(Value.string))])
        }
        let recipe: Value = .object(["stages": .object([
            "pretrain": stage([:], []), "pruned": stage([:], ["pretrain"]),
            "ppl": stage(["dense": "${pretrain.model}", "pruned": "${pruned.model}"], ["pretrain", "pruned"]),
            "generate": stage(["fp32": "${pretrain.model}"], ["pretrain"]),
        ])])
        let id = "20261207T100000Z-lm-0badcafe"
        let record = RunRecord(
            id: id, name: "lm", recipeFile: "recipe/recipe.yaml", status: .succeeded, startedAt: Date(timeIntervalSince1970: 1_765_101_600),
            endedAt: Date(timeIntervalSince1970: 1_765_101_700), wallSeconds: 100, squeezeVersion: "0.1.0", backend: "cpu", jobs: 1, threads: 2,
            host: "test", git: nil, overrides: [], cacheDirectory: project.cacheDirectory, recipe: recipe, stages: [pretrain, pruned, ppl, generate])
        try RunStore(root: project.runsDirectory).save(record)
        return id
    }

    @Test func squeezeReportShowsTheLanguageModelsAndTheirTexts() throws {
        let project = try Project("report-lm")
        let id = try Self.languageModelRun(project)
        let result = try project.squeeze(["report", id, "--html", "report.html"] + project.storage())
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("language models (Δ against baseline dense)"), "\(result.stdout)")
        #expect(result.stdout.contains("+5.00%") && result.stdout.contains("120/s"), "\(result.stdout)")
        #expect(result.stdout.contains("    dense: \" <b>was</b> & won\""), "\(result.stdout)")
        let page = try #require(project.read("report.html"))
        #expect(page.contains("&lt;b&gt;was&lt;/b&gt; &amp; won") && !page.contains("<b>was"))
        #expect(page.contains("Perplexity vs size"))

        // After `cache gc` took the object, the page says so instead of showing texts.
        let stored = try ContentStore(root: project.cacheDirectory).path(for: try #require(
            try RunStore(root: project.runsDirectory).resolve(id).stages.last?.outputs["report"]))
        try FileManager.default.removeItem(atPath: stored)
        let gone = try project.squeeze(["report", id, "--html", "gone.html"] + project.storage())
        #expect(gone.status == 0, "\(gone)")
        #expect(try #require(project.read("gone.html")).contains("The texts are not shown: cannot read its report output"))
    }
}
