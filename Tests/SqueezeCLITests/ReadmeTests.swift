import Foundation
import Testing

/// The README's two set-up commands stay true: CI runs exactly the second, and
/// the first names a shipped pipeline that validates.
@Suite struct ReadmeTests {
    static func setUpCommands() throws -> [String] {
        let readme = try String(contentsOf: Corpus.repository.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "## Set up and run").dropFirst().first)
            .components(separatedBy: "\n## ").first ?? ""
        return section.components(separatedBy: "```sh\n").dropFirst().compactMap { block in
            block.components(separatedBy: "\n```").first?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    @Test func ciRunsTheReadmeTestCommand() throws {
        let commands = try Self.setUpCommands()
        #expect(commands.count == 2, "the README gives exactly two set-up commands: \(commands)")
        let ci = try String(contentsOf: Corpus.repository.appendingPathComponent(".ci/run"), encoding: .utf8)
        let lastLine = ci.split(separator: "\n").last.map(String.init)
        #expect(lastLine == commands.last, "`.ci/run` must end with the README's test command")
    }

    @Test func flagshipCommandNamesAValidPipeline() throws {
        let commands = try Self.setUpCommands()
        let flagship = try #require(commands.first)
        let recipe = try #require(flagship.split(separator: " ").first { $0.hasPrefix("pipelines/") }.map(String.init))
        let result = try SqueezeCLI.run(["validate", recipe], in: Corpus.repository, environment: [:], timeout: 60)
        #expect(result.status == 0, "\(result)")
    }
}
