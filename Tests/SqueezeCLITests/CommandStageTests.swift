import Foundation
import Testing

/// The `command` stage as a user meets it: its log, and a recipe folder that
/// other programs write to while a stage runs.
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

    // MARK: Files appearing beside the recipe

    /// An editor, git or `__pycache__` writing beside the recipe while a long
    /// stage runs must not cost the stage its output.
    @Test func aFileCreatedBesideTheRecipeWhileACommandRunsIsAWarningAndTheOutputIsKept() throws {
        let project = try Project("bystander")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: bystander
            stages:
              train:
                uses: command
                with:
                  shell: true
                  run: |
                    touch ../started
                    i=0
                    while [ ! -e notes.txt ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
                    echo trained > "$SQUEEZE_OUT/model.txt"
                  outputs: [model.txt]
            """)
        // The stage signals outside the recipe folder that it runs; then
        // "someone else" saves a file beside the recipe.
        DispatchQueue.global().async {
            for _ in 0..<400 where !FileManager.default.fileExists(atPath: project.path("started")) {
                usleep(50_000)
            }
            _ = FileManager.default.createFile(atPath: project.path("recipe/notes.txt"), contents: Data("draft\n".utf8))
        }
        let result = try project.run()
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr.contains("warning: `train`: `notes.txt` appeared in the recipe's directory"), "\(result)")
        let record = try project.record(of: result)
        #expect(record.stage("train")?.status == "ran")
        let id = try #require(result.runID)
        #expect(project.read("runs/\(id)/outputs/train/out/model.txt") == "trained\n")
        #expect(project.read("runs/\(id)/logs/train.log")?.contains("warning: `notes.txt` appeared") == true)
        #expect(project.read("recipe/notes.txt") == "draft\n")

        let again = try project.run()
        #expect(again.status == 0, "\(again)")
        #expect(try project.record(of: again).stage("train")?.status == "cached")
    }
}
