import Foundation
import Testing

/// `squeeze stage-exec SPEC.json`, what a cluster job runs, without a
/// cluster: it recomputes the key and refuses a spec whose key differs.
@Suite struct StageExecTests {
    private func spec(_ project: Project, key: String, suffix: String) throws -> (spec: String, result: String, log: String) {
        let result = project.path("jobs/result-\(suffix).json"), log = project.path("jobs/log-\(suffix).log")
        let spec: [String: Any] = [
            "formatVersion": 1, "recipeFile": project.path("recipe/recipe.yaml"), "overrides": ["vars.word=hello"],
            "matrix": [String](), "stageID": "greet", "key": key, "upstream": [String: Any](), "backend": "cpu",
            "seed": "1", "threads": 1, "force": false, "cacheDirectory": project.cacheDirectory,
            "runsDirectory": project.runsDirectory, "logPath": log, "resultPath": result, "useRemoteCache": false,
        ]
        let path = project.path("jobs/spec-\(suffix).json")
        try project.write("jobs/spec-\(suffix).json", String(decoding: try JSONSerialization.data(withJSONObject: spec), as: UTF8.self))
        return (path, result, log)
    }

    @Test func theNodeRefusesAnotherKeyAndRunsTheRightOne() throws {
        let project = try Project("stage-exec")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: stage-exec
            vars: { word: bye }
            stages:
              greet:
                uses: command
                with:
                  run: [sh, -c, 'echo "$1" > "$SQUEEZE_OUT/said.txt"', sh, "${vars.word}"]
                  outputs: [said.txt]
            """)
        let wrong = try spec(project, key: String(repeating: "0", count: 64), suffix: "wrong")
        let refused = try project.squeeze(["stage-exec", wrong.spec])
        #expect(refused.status == 2, "\(refused)")
        #expect(project.read("jobs/result-wrong.json")?.contains("key mismatch") == true)
        #expect(project.read("jobs/log-wrong.log")?.contains("key mismatch") == true)
        #expect(try project.cacheEntries().isEmpty, "nothing is stored under a key the node does not compute")

        // The key the driver computes, with the same --set as in the spec.
        let plan = try project.squeeze(["plan", "recipe/recipe.yaml", "--json", "--set", "vars.word=hello"] + project.storage())
        try #require(plan.status == 0, "\(plan)")
        let lines = try JSONDecoder().decode([CLIBehaviourTests.PlanLine].self, from: Data(plan.stdout.utf8))
        let key = try #require(lines.first?.key)
        let right = try spec(project, key: key, suffix: "right")
        let ran = try project.squeeze(["stage-exec", right.spec])
        #expect(ran.status == 0, "\(ran)")
        #expect(project.read("jobs/result-right.json")?.contains("\"ran\"") == true)
        #expect(try project.cacheEntries().map(\.key) == [key])
        #expect(try project.squeeze(["stage-exec", "--help"]).stdout.contains("stage-exec"))
        #expect(!(try project.squeeze(["--help"]).stdout.contains("stage-exec")), "stage-exec is hidden")
    }
}
