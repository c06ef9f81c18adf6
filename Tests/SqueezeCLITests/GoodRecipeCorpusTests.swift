import Foundation
import Testing

/// Every file in recipes/good uses valid features of the recipe language;
/// squeeze must accept it silently, and be able to run it.
@Suite struct GoodRecipeCorpusTests {
    static var files: [URL] { Corpus.files(in: "good") }

    @Test func corpusIsNotEmpty() {
        #expect(Self.files.count >= 5)
    }

    @Test(arguments: Corpus.files(in: "good"))
    func validatesSilently(_ file: URL) throws {
        let result = try SqueezeCLI.run(
            ["validate", "good/\(file.lastPathComponent)"], in: Corpus.directory,
            environment: ["SQUEEZE_CORPUS_GOOD_DATA": nil], timeout: 10)
        #expect(result.exitedNormally && result.status == 0, "\(file.lastPathComponent): \(result)")
        #expect(result.stdout.isEmpty, "\(file.lastPathComponent): \(result)")
        #expect(result.stderr.isEmpty, "\(file.lastPathComponent): \(result)")
    }

    /// Runs a copy of the recipe (with its data) twice: the first run executes
    /// every stage, the second finds every stage cached.
    @Test(arguments: Corpus.files(in: "good"))
    func runsThenHitsTheCache(_ file: URL) throws {
        let project = try Project("good")
        let copy = project.url("recipes")
        try FileManager.default.copyItem(at: Corpus.directory.appendingPathComponent("good"), to: copy)
        let recipe = "recipes/\(file.lastPathComponent)"

        let first = try project.run(recipe, ["--jobs", "2"])
        #expect(first.exitedNormally && first.status == 0, "\(file.lastPathComponent): \(first)")
        let firstRun = try project.record(of: first)
        #expect(firstRun.status == "succeeded")
        #expect(firstRun.stages.allSatisfy { $0.status == "ran" || $0.status == "cached" }, "\(firstRun.stages.map(\.status))")

        let second = try project.run(recipe)
        #expect(second.exitedNormally && second.status == 0, "\(file.lastPathComponent): \(second)")
        let secondRun = try project.record(of: second)
        #expect(secondRun.id != firstRun.id)
        #expect(secondRun.stages.allSatisfy { $0.status == "cached" }, "\(secondRun.stages.map { "\($0.id): \($0.status)" })")
        for stage in firstRun.stages {
            #expect(secondRun.stage(stage.id)?.outputs == stage.outputs, "\(stage.id)")
        }
    }
}
