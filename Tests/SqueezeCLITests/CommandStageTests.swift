import Foundation
import SqueezeRecipe
import SqueezeStages
import SqueezeTensor
import Testing

/// The `command` stage as a user meets it: shell scripts with hostile values,
/// and a recipe folder that other programs write to while a stage runs.
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

    // MARK: Values in shell scripts

    /// Values that would run `touch PWNED` if they became script text.
    static let hostileValues = [
        "$(touch PWNED)",
        "\"; touch PWNED; \"",
        "' ; touch PWNED ; '",
        "`touch PWNED`",
        "a  b * $HOME \\ 'q' \"d\" ${x:-$(touch PWNED)} \n second line",
    ]

    /// The same value in every place a shell script may use it, and what each
    /// line must print: the value intact.
    static let script = #"""
        printf '%s\n' ${vars.y} > "$SQUEEZE_OUT/out.txt"
        printf '%s\n' "v: ${vars.y}" >> "$SQUEEZE_OUT/out.txt"
        printf '%s\n' "b: ${env.BRANCH}" >> "$SQUEEZE_OUT/out.txt"
        printf '%s\n' "$(printf '%s' ${vars.y})" >> "$SQUEEZE_OUT/out.txt"
        printf '%s\n' "$(printf '%s' "${vars.y}")" >> "$SQUEEZE_OUT/out.txt"
        printf '%s\n' pre-${vars.y}'-post' >> "$SQUEEZE_OUT/out.txt"
        v=${vars.y}; printf '%s\n' "w: $v" >> "$SQUEEZE_OUT/out.txt"
        # a comment naming ${vars.y}
        cat >> "$SQUEEZE_OUT/out.txt" <<EOF
        h: ${vars.y}
        EOF
        cat >> "$SQUEEZE_OUT/out.txt" <<-EOF
        	t: "${vars.path}"
        	EOF
        """#

    static func expectedOutput(value: String, branch: String) -> String {
        [value, "v: \(value)", "b: \(branch)", value, value, "pre-\(value)-post", "w: \(value)", "h: \(value)", "t: \"\(branch)/it's $(here)\""]
            .map { $0 + "\n" }.joined()
    }

    /// A YAML double-quoted scalar holding `text` exactly; `${` is written
    /// `$${` so the recipe reads it as text, not a reference.
    static func yamlString(_ text: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let json = String(decoding: try encoder.encode(text), as: UTF8.self)
        return json.replacingOccurrences(of: "${", with: "$${")
    }

    @Test(arguments: hostileValues)
    func aValueInAShellScriptArrivesIntactAndNeverRuns(_ value: String) throws {
        let project = try Project("shell-values")
        let branch = "main\"; touch PWNED; echo \"$(touch PWNED)'`touch PWNED`'"
        let script = Self.script.split(separator: "\n", omittingEmptySubsequences: false)
            .map { "        " + $0 }.joined(separator: "\n")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: hostile
            vars:
              y: \(try Self.yamlString(value))
              path: "${env.BRANCH}/it's $(here)"
            stages:
              s:
                uses: command
                with:
                  shell: true
                  outputs: [out.txt]
                  run: |
            \(script)
            """)
        let result = try project.run(environment: ["BRANCH": branch])
        #expect(result.status == 0, "\(result)")
        let id = try #require(result.runID)
        #expect(project.read("runs/\(id)/outputs/s/out/out.txt") == Self.expectedOutput(value: value, branch: branch))
        #expect(!FileManager.default.fileExists(atPath: project.path("recipe/PWNED")))
        #expect(!FileManager.default.fileExists(atPath: project.path("PWNED")))
    }

    /// `--set` values take the same way into the script.
    @Test func aSetValueInAShellScriptNeverRuns() throws {
        let project = try Project("shell-set")
        try project.write("recipe/recipe.yaml", #"""
            version: 1
            name: hostile-set
            vars: { y: harmless }
            stages:
              s:
                uses: command
                with:
                  shell: true
                  outputs: [out.txt]
                  run: |
                    printf '%s|%s\n' "v: ${vars.y}" ${vars.y} > "$SQUEEZE_OUT/out.txt"
            """#)
        let result = try project.run("recipe/recipe.yaml", ["--set", "vars.y=$(touch PWNED)`touch PWNED`"])
        #expect(result.status == 0, "\(result)")
        let id = try #require(result.runID)
        #expect(project.read("runs/\(id)/outputs/s/out/out.txt") == "v: $(touch PWNED)`touch PWNED`|$(touch PWNED)`touch PWNED`\n")
        #expect(!FileManager.default.fileExists(atPath: project.path("recipe/PWNED")))
    }

    /// Places where the shell cannot expand a value as written are refused
    /// before anything runs, naming the reference, the place and the position.
    @Test(arguments: [
        ("echo 'v: ${vars.y}'", "inside single quotes"),
        ("sh -c 'echo ${vars.y}'", "inside single quotes"),
        ("echo $'v: ${vars.y}'", "inside single quotes"),
        ("echo `echo ${vars.y}`", "inside backquotes"),
        ("echo $(( ${vars.y} + 1 ))", "inside shell arithmetic"),
        ("((n = ${vars.y}))", "inside shell arithmetic"),
        ("echo $${HOME:-${vars.y}}", "inside a shell `${…}` expansion"),
        ("echo \\\\${vars.y}", "right after a backslash"),
        ("cat <<'EOF'\\n${vars.y}\\nEOF", "in a here-document with a quoted delimiter"),
        ("echo \\\"$(echo '${vars.y}')\\\"", "inside single quotes"),
    ])
    func aValueWhereTheShellCannotExpandItIsRefused(_ script: String, _ place: String) throws {
        let project = try Project("shell-refused")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: refused
            vars: { y: "$(touch PWNED)" }
            stages:
              s:
                uses: command
                with:
                  shell: true
                  run: "\(script)"
            """)
        let result = try project.run()
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("recipe/recipe.yaml:9:12: error: `${vars.y}` cannot be substituted \(place)"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: project.path("recipe/PWNED")))
        #expect(!FileManager.default.fileExists(atPath: project.path("runs")))
    }

    /// A shell started by `run: [sh, -c, SCRIPT, …]` gets values as arguments,
    /// never pasted into SCRIPT; everything else in a list is plain argv.
    @Test(arguments: [
        (#"[sh, -c, 'echo ${vars.y}']"#, true),
        (#"[/usr/bin/bash, -euc, "echo ${out}"]"#, true),
        (#"[bash, -o, pipefail, -c, "cat ${vars.y}"]"#, true),
        (#"[zsh, +o, nomatch, -c, -, "cat ${vars.y}"]"#, true),
        (#"[sh, -c, 'echo "$1"', sh, "${vars.y}"]"#, false),
        (#"[sh, -c, 'echo $${HOME}']"#, false),
        (#"[bash, script.sh, -c, "${vars.y}"]"#, false),
        (#"[echo, -c, "${vars.y}"]"#, false),
        (#"[python3, -c, "print('${vars.y}')"]"#, false),
    ])
    func aReferenceInsideTheScriptOfShDashCIsRefused(_ run: String, _ refused: Bool) throws {
        let text = """
            version: 1
            name: sh-c
            vars: { y: "$(touch PWNED)" }
            stages:
              a:
                uses: command
                with: { run: \(run) }
            """
        do {
            _ = try RecipeLoader.load(
                text: text, file: "recipe.yaml", directory: "/tmp", stageTypes: BuiltinStages.registry(backends: .builtin).descriptors, environment: [:],
                backends: BackendRegistry.builtin.recipeBackends)
            #expect(!refused, "\(run) loaded")
        } catch {
            let message = error.items.map(\.description).joined(separator: "\n")
            #expect(refused, "\(run): \(message)")
            #expect(message.contains("recipe.yaml:7:") && message.contains("would be pasted into shell code"), "\(message)")
        }
    }
}
