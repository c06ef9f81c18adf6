import Foundation
import Testing

/// Two `squeeze run`s of one recipe on one cache, started together, both
/// succeed and compute every stage exactly once between them.
@Suite struct ConcurrencyTests {
    @Test(arguments: [false, true])
    func twoRunsShareOneCache(sameRunsDirectory: Bool) throws {
        let project = try Project("concurrent")
        // The counter lives outside the recipe's directory, where a new file
        // would be warned about; appending here is the point.
        let counter = project.path("counter.txt")
        _ = FileManager.default.createFile(atPath: counter, contents: nil)
        let stage = { (id: String, extra: String) in
            """
              \(id):
                uses: command
                with:
                  shell: true
                  run: |
                    echo \(id) >> "$COUNTER"
                    sleep 0.3
                    echo \(id)\(extra) > "$SQUEEZE_OUT/\(id).txt"
                  env: {COUNTER: "\(counter)"}
                  outputs: [\(id).txt]

            """
        }
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: concurrent
            stages:
            \(stage("first", ""))\(stage("second", " ${first.out}"))\(stage("third", " ${second.out}"))\(stage("side", ""))
            """)

        let runsA = project.path("runs-a"), runsB = sameRunsDirectory ? runsA : project.path("runs-b")
        let a = try SqueezeCLI.start(["run", "recipe/recipe.yaml"] + project.storage(runs: runsA), in: project.root)
        let b = try SqueezeCLI.start(["run", "recipe/recipe.yaml"] + project.storage(runs: runsB), in: project.root)
        let resultA = a.wait(timeout: 60), resultB = b.wait(timeout: 60)
        #expect(resultA.exitedNormally && resultA.status == 0, "\(resultA)")
        #expect(resultB.exitedNormally && resultB.status == 0, "\(resultB)")

        let lines = (project.read("counter.txt") ?? "").split(separator: "\n").map(String.init)
        #expect(lines.sorted() == ["first", "second", "side", "third"], "each command runs once: \(lines)")

        let runs = try Self.records(project, runsA) + (sameRunsDirectory ? [] : Self.records(project, runsB))
        #expect(runs.count == 2)
        for run in runs {
            #expect(run.status == "succeeded")
            #expect(run.stages.count == 4)
            for stage in run.stages {
                #expect(stage.status == "ran" || stage.status == "cached", "\(run.id) \(stage.id): \(stage.status)")
            }
        }
        // Every stage ran in exactly one of the two runs, and both saw the same outputs.
        for id in ["first", "second", "third", "side"] {
            let statuses = runs.compactMap { $0.stage(id)?.status }
            #expect(statuses.filter { $0 == "ran" }.count == 1, "\(id): \(statuses)")
            let outputs = runs.compactMap { $0.stage(id)?.outputs }
            #expect(outputs.count == 2 && outputs[0] == outputs[1], "\(id)")
        }
        #expect(try project.verifyCache().status == 0)
    }

    /// Every run record in a runs directory, via `squeeze runs list --json` and `runs show`.
    static func records(_ project: Project, _ runs: String) throws -> [RunJSON] {
        let list = try project.squeeze(["runs", "list", "--json"] + project.storage(runs: runs))
        try #require(list.status == 0, "\(list)")
        struct Summary: Decodable { var id: String }
        let ids = try JSONDecoder().decode([Summary].self, from: Data(list.stdout.utf8)).map(\.id)
        return try ids.map { try project.runRecord($0, runs: runs) }
    }
}
