import Foundation
import Testing

/// The `command` stage as a user meets it.
@Suite struct CommandStageTests {
    // MARK: The log

    /// The child appends to the log squeeze writes too; neither may overwrite the other.
    @Test func theCommandsOutputAndSqueezesLinesShareTheLog() throws {
        let project = try Project("log")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: log
            stages:
              talk:
                uses: command
                with:
                  run: [sh, -c, 'echo "to stdout"; echo "to stderr" >&2']
            """)
        let result = try project.run()
        #expect(result.status == 0, "\(result)")
        let id = try #require(result.runID)
        let log = try #require(project.read("runs/\(id)/logs/talk.log"))
        let lines = log.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("$ sh -c ") == true, "\(log)")
        #expect(lines.contains("to stdout") && lines.contains("to stderr"), "\(log)")
        #expect(lines.last?.hasPrefix("stage `talk` finished") == true, "\(log)")
    }
}
