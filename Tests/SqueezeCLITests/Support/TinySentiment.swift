import Foundation
import SqueezeModels
import SqueezeTensor
import Testing

/// The fixture of the training-stage tests: a tiny, learnable sentiment task
/// (the sentiment word decides the label), tiny random BERTs over its
/// vocabulary, and a project with both and a recipe that imports them.
enum TinySentiment {
    static let vocabulary = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "fine", "bad", "awful", "poor", "the", "film",
        "plot", "acting", "was", "very", "really",
    ]

    /// A random BERT of `config` (and `layerShapes`) over the vocabulary, saved as a model directory.
    static func writeRandomBert(at directory: URL, config: BertConfig, layerShapes: [BertLayerShape]? = nil, seed: UInt64) throws {
        let model = try layerShapes.map { try BertModel(randomWithConfig: config, layerShapes: $0, seed: seed) }
            ?? BertModel(randomWithConfig: config, seed: seed)
        try model.save(toDirectory: directory.path)
        try Data((vocabulary.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent("vocab.txt"))
    }

    /// A BERT config over the vocabulary with 32 positions.
    static func config(hidden: Int, layers: Int, heads: Int, intermediate: Int, positions: Int = 32, labels: [String]? = nil) -> BertConfig {
        var config = BertConfig(
            vocabSize: vocabulary.count, hiddenSize: hidden, numHiddenLayers: layers, numAttentionHeads: heads,
            intermediateSize: intermediate, maxPositionEmbeddings: positions)
        if let labels { config.labels = labels }
        return config
    }

    /// A tiny BERT (hidden 16, 2 layers with different head counts and FFN widths) with random weights.
    static func writeTinyBert(at directory: URL, seed: UInt64 = 3) throws {
        try writeRandomBert(
            at: directory, config: config(hidden: 16, layers: 2, heads: 4, intermediate: 32),
            layerShapes: [BertLayerShape(heads: 4, intermediateSize: 32), BertLayerShape(heads: 2, intermediateSize: 24)], seed: seed)
    }

    /// A tiny BERT checkpoint as a Hugging Face export writes it (`bert.` prefixes), with
    /// `labels` classes, with or without classifier weights.
    static func writeCheckpoint(at directory: URL, labels: [String], classifier: Bool) throws {
        let config = config(hidden: 16, layers: 2, heads: 4, intermediate: 32, labels: labels)
        let model = try BertModel(randomWithConfig: config, seed: 5)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tensors = zip(model.weights.names, model.weights.elements)
            .filter { classifier || !$0.0.hasPrefix("classifier.") }
            .map { (name: $0.0.hasPrefix("classifier.") ? $0.0 : "bert." + $0.0, tensor: $0.1) }
        try SafetensorsWriter.write(tensors: tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors").path)
        try config.jsonData().write(to: directory.appendingPathComponent("config.json"))
        try Data((vocabulary.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent("vocab.txt"))
    }

    /// Sentences whose label is decided by the sentiment word: positive → 1.
    static func tsv(rows: Int, seed: UInt64) -> String {
        let positive = ["good", "great", "fine"]
        let negative = ["bad", "awful", "poor"]
        let subjects = ["the film", "the plot", "the acting"]
        let adverbs = ["", "very ", "really "]
        var generator = SeededGenerator(seed: seed)
        var lines = ["sentence\tlabel"]
        for _ in 0..<rows {
            let label = Int(generator.next() % 2)
            let words = label == 1 ? positive : negative
            let word = words[Int(generator.next() % 3)]
            let subject = subjects[Int(generator.next() % 3)]
            let adverb = adverbs[Int(generator.next() % 3)]
            lines.append("\(subject) was \(adverb)\(word)\t\(label)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A recipe named `name` (seed 11) importing `tiny` as `base` and the three
    /// splits as `data`, followed by `stages` (indented two spaces).
    static func recipe(name: String, stages: String) -> String {
        """
        version: 1
        name: \(name)
        seed: 11
        stages:
          base:
            uses: model/import
            with:
              directory: tiny
          data:
            uses: data/text-classification
            with:
              train: train.tsv
              dev: dev.tsv
              test: test.tsv
        \(stages)
        """
    }

    /// The tiny teacher the compression tests start from: `teacher`, the
    /// random BERT fine-tuned with `length` (6 epochs) and `extra` settings
    /// (each line indented like the others), as a stage of `recipe(name:stages:)`.
    static func teacherStage(length: String = "epochs: 6", extra: String = "") -> String {
        let stage = """
              teacher:
                uses: train/finetune
                with:
                  model: ${base.model}
                  data: ${data.dataset}
                  \(length)
                  batch_size: 8
                  lr: 3.0e-3
                  max_seq_len: 16
                  warmup_ratio: 0.1
            """
        return extra.isEmpty ? stage : stage + "\n      " + extra
    }

    /// A project with the tiny BERT at `recipe/tiny`, 160 training and 40
    /// dev and test examples, and `recipe` as `recipe/recipe.yaml`.
    static func makeProject(_ name: String, recipe: String) throws -> Project {
        let project = try Project(name)
        try writeTinyBert(at: project.url("recipe/tiny"))
        _ = try project.write("recipe/train.tsv", tsv(rows: 160, seed: 1))
        _ = try project.write("recipe/dev.tsv", tsv(rows: 40, seed: 2))
        _ = try project.write("recipe/test.tsv", tsv(rows: 40, seed: 3))
        _ = try project.write("recipe/recipe.yaml", recipe)
        return project
    }
}

extension Project {
    /// The digest of `stage`'s `model` output in the run that printed `result`.
    func modelDigest(_ result: SqueezeCLI.Result, stage: String) throws -> String? {
        try record(of: result).stage(stage)?.outputs["model"]?.raw
    }
}

extension Project {
    /// `squeeze validate` rejects `recipe/recipe.yaml` with `message`, naming the file and position.
    func expectInvalidRecipe(_ message: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let result = try squeeze(["validate", path("recipe/recipe.yaml")])
        #expect(result.status == 2, "\(result)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(message), "\(result)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains("recipe.yaml:"), "errors name the file and position: \(result)", sourceLocation: sourceLocation)
    }

    /// `squeeze run` fails with `message` before `stage` runs its first update.
    func expectFailureBeforeTraining(stage: String, _ message: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let result = try run(timeout: 300)
        #expect(result.status == 1, "\(result)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(message), "\(result)", sourceLocation: sourceLocation)
        let log = read("runs/\(result.runID ?? "")/logs/\(stage).log") ?? ""
        #expect(!log.contains("step 1/"), "no update ran: \(log)", sourceLocation: sourceLocation)
    }
}
