import Foundation
import SqueezeModels
import Testing

/// `tokenizer/train-bpe` through the CLI: a tokenizer trained on a small text
/// file loads and encodes; a second run hits the cache; bad parameters are
/// errors at their position in the recipe.
@Suite struct TrainBPEStageTests {
    static func recipe(_ with: String) -> String {
        """
        version: 1
        name: bpe
        stages:
          bpe:
            uses: tokenizer/train-bpe
            with:
        \(with)
        """
    }

    static let text = String(repeating: "the cat sat on the mat. the dog sat on the log.\n", count: 20)

    @Test func trainsAWorkingTokenizerAndCaches() throws {
        let project = try Project("train-bpe")
        _ = try project.write("recipe/text.txt", Self.text)
        _ = try project.write("recipe/recipe.yaml", Self.recipe("      files: [text.txt]\n      vocab_size: 400"))
        let result = try project.run(timeout: 120)
        #expect(result.status == 0, "\(result)")
        let metrics = try ModelStagesTests.metrics(project, runID: result.runID, stage: "bpe")
        // Ten distinct words ("the", " cat", ".", "\n", …) need 17 merges in all
        // ("he", "the", " the", "at", " c", " cat", …); then no pair is left.
        #expect(metrics["vocab_size"] as? Int == 1 + 256 + 17 && metrics["merges"] as? Int == 17, "\(metrics)")
        #expect(metrics["words"] as? Int == 10, "\(metrics)")
        let directory = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "bpe", output: "tokenizer")
        let tokenizer = try BPETokenizer(contentsOfFile: directory + "/tokenizer.json")
        #expect(tokenizer.tokens(of: tokenizer.encode("the cat")) == ["the", "Ġcat"])
        #expect(tokenizer.encode("<|endoftext|>") == [0])

        let second = try project.run(timeout: 120)
        #expect(second.status == 0 && second.stderr.contains("bpe: cached"), "\(second)")
    }

    @Test func vocabularyTooSmallIsARecipeError() throws {
        let project = try Project("train-bpe-small")
        _ = try project.write("recipe/text.txt", Self.text)
        _ = try project.write("recipe/recipe.yaml", Self.recipe("      files: [text.txt]\n      vocab_size: 100"))
        let result = try project.run(timeout: 60)
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe.yaml:8:19: error: `vocab_size` must be at least 257"), "\(result)")
    }

    /// The engine checks `path` inputs when it keys the stage: a missing file
    /// fails the stage before any work, at the value's recipe position, naming
    /// the parameter and the path.
    @Test func missingFileFailsNamingIt() throws {
        let project = try Project("train-bpe-missing")
        _ = try project.write("recipe/recipe.yaml", Self.recipe("      files: [absent.txt]"))
        let result = try project.run(timeout: 60)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("input `files[0]` does not exist: ") && result.stderr.contains("recipe/absent.txt"), "\(result)")
        #expect(
            result.stderr.range(of: #"recipe\.yaml:\d+:\d+: input `files\[0\]` does not exist"#, options: .regularExpression) != nil,
            "\(result)")
    }

    @Test func emptyFileListIsARecipeError() throws {
        let project = try Project("train-bpe-empty")
        _ = try project.write("recipe/recipe.yaml", Self.recipe("      files: []\n      special_tokens: [<s>, </s>]\n      vocab_size: 257"))
        let result = try project.squeeze(["validate", project.path("recipe/recipe.yaml")])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe.yaml:7:14: error: `files` is empty"), "\(result)")
        #expect(result.stderr.contains("recipe.yaml:9:19: error: `vocab_size` must be at least 258 (256 byte tokens plus 2 special tokens), got 257"), "\(result)")
    }

    @Test func minimumFrequencyBelowOneIsARecipeError() throws {
        let project = try Project("train-bpe-frequency")
        _ = try project.write("recipe/recipe.yaml", Self.recipe("      files: [text.txt]\n      min_frequency: 0"))
        let result = try project.run(timeout: 60)
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe.yaml:8:22: error: `min_frequency` must be at least 1, got 0"), "\(result)")
    }
}
