import Foundation
import Testing

/// `--matrix`, instance ids in `run`, `plan`, `--only` and `runs show`.
@Suite struct MatrixCLITests {
    static let recipe = """
        version: 1
        name: sweep
        vars:
          sparsity: 0.5
          label: none
        matrix:
          sparsity: [0.6, 0.8, 0.9]
        stages:
          teacher:
            uses: command
            with:
              run: [sh, -c, 'echo T > "$SQUEEZE_OUT/t.txt"']
              outputs: [t.txt]
          pruned:
            uses: command
            with:
              run: [sh, -c, 'cat "$1/t.txt" > "$SQUEEZE_OUT/p.txt"; echo "$2" >> "$SQUEEZE_OUT/p.txt"', sh, "${teacher.out}", "${vars.sparsity}"]
              outputs: [p.txt]
          int8:
            uses: command
            with:
              run: [sh, -c, 'cat "$1/p.txt" > "$SQUEEZE_OUT/q.txt"', sh, "${pruned.out}"]
              outputs: [q.txt]
          labelled:
            uses: command
            with:
              run: [sh, -c, 'echo "$2" | cat "$1/p.txt" - > "$SQUEEZE_OUT/l.txt"', sh, "${pruned.out}", "${vars.label}"]
              outputs: [l.txt]
        """

    /// `x/y`, `x_y` and `x:y` once all mapped to the log `s_v_x_y_.log`.
    @Test func instancesWhoseIDsDifferOnlyInPunctuationKeepTheirOwnLogsAndOutputs() throws {
        let project = try Project("matrix-names")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: names
            vars: { v: none }
            matrix:
              v: [x/y, x_y, "x:y"]
            stages:
              s:
                uses: command
                with:
                  run: [sh, -c, 'echo "$1" > "$SQUEEZE_OUT/v.txt"; echo "log of $1"', sh, "${vars.v}"]
                  outputs: [v.txt]
            """)
        let run = try project.run()
        #expect(run.status == 0, "\(run)")
        let id = try #require(run.runID)
        for (value, name) in [("x/y", "s[v=x%2Fy]"), ("x_y", "s[v=x_y]"), ("x:y", "s[v=x%3Ay]")] {
            #expect(project.read("runs/\(id)/outputs/\(name)/out/v.txt") == "\(value)\n")
            #expect(project.read("runs/\(id)/logs/\(name).log")?.contains("log of \(value)\n") == true)
        }
        let logs = try FileManager.default.contentsOfDirectory(atPath: project.path("runs/\(id)/logs"))
        #expect(logs.count == 3, "\(logs)")
    }

    @Test func sweepRunPlanOnlyAndShow() throws {
        let project = try Project("matrix")
        try project.write("recipe/recipe.yaml", Self.recipe)
        let run = try project.run()
        #expect(run.status == 0, "\(run)")
        #expect(run.stderr.contains("pruned[sparsity=0.8]: done"), "\(run)")
        let record = try project.record(of: run)
        #expect(record.stages.count == 10)
        #expect(record.stages.filter { $0.status == "ran" }.count == 10)
        if let id = run.runID {
            #expect(project.read("runs/\(id)/outputs/int8[sparsity=0.9]/out/q.txt") == "T\n0.9\n")
            let show = try project.squeeze(["runs", "show", id] + project.storage())
            #expect(show.stdout.contains("matrix over sparsity: 3 combinations"), "\(show)")
            #expect(show.stdout.contains("  int8[sparsity=0.6]  ran"), "\(show)")
        }

        // `--only pruned` selects every instance of `pruned`, and what they need.
        let only = try CLIBehaviourTests.plan(project, ["--only", "pruned"])
        #expect(only["pruned[sparsity=0.6]"]?.status == "cached")
        #expect(only["teacher"]?.status == "cached")
        #expect(only["int8[sparsity=0.6]"]?.status == "skipped")

        // `--matrix` replaces the list: 0.6 is cached, 0.95 is new.
        let narrowed = try CLIBehaviourTests.plan(project, ["--matrix", "vars.sparsity=0.6,0.95"])
        #expect(Set(narrowed.keys) == [
            "teacher", "pruned[sparsity=0.6]", "pruned[sparsity=0.95]", "int8[sparsity=0.6]", "int8[sparsity=0.95]",
            "labelled[sparsity=0.6]", "labelled[sparsity=0.95]",
        ])
        #expect(narrowed["pruned[sparsity=0.6]"]?.status == "cached")
        #expect(narrowed["pruned[sparsity=0.95]"]?.status == "run")

        let forced = try project.run("recipe/recipe.yaml", ["--force", "int8[sparsity=0.8]", "--only", "int8[sparsity=0.8]"])
        #expect(forced.status == 0, "\(forced)")
        let forcedRecord = try project.record(of: forced)
        #expect(forcedRecord.stages.filter { $0.status == "ran" }.map(\.id) == ["int8[sparsity=0.8]"])

        // Commas inside an instance id do not split a stage list.
        let twoVariables = try CLIBehaviourTests.plan(project, [
            "--matrix", "vars.label=a,b", "--only", "labelled[label=b,sparsity=0.6],pruned[sparsity=0.9]",
        ])
        #expect(twoVariables["labelled[label=b,sparsity=0.6]"]?.status == "run")
        #expect(twoVariables["labelled[label=a,sparsity=0.6]"]?.status == "skipped")
        #expect(twoVariables["pruned[sparsity=0.9]"]?.status == "cached")
    }

    @Test func badMatrixFlagsAreInputErrors() throws {
        let project = try Project("matrix-bad")
        try project.write("recipe/recipe.yaml", Self.recipe)
        let undeclared = try project.squeeze(["validate", "recipe/recipe.yaml", "--matrix", "vars.sparsty=0.1"])
        #expect(undeclared.exitedNormally && undeclared.status == 2, "\(undeclared)")
        #expect(undeclared.stderr.contains("`--matrix vars.sparsty=0.1`: the matrix sweeps `sparsty`, which is not declared under `vars:`"), "\(undeclared)")
        #expect(undeclared.stderr.contains("did you mean `sparsity`?"), "\(undeclared)")

        let unknownStage = try project.squeeze(["plan", "recipe/recipe.yaml", "--only", "prune"] + project.storage())
        #expect(unknownStage.exitedNormally && unknownStage.status == 2, "\(unknownStage)")
        #expect(unknownStage.stderr.contains("--only names unknown stage `prune`"), "\(unknownStage)")
    }
}
