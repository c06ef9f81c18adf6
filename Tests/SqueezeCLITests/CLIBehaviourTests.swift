import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What the subcommands print and how they react to edits, flags and signals.
@Suite struct CLIBehaviourTests {
    /// `words` reads an input file; `count` reads `words`' output; `other` is independent.
    static func recipe(greeting: String = "hello", sortFlags: String = "-u") -> String {
        """
        version: 1
        name: behaviour
        vars:
          greeting: \(greeting)
        stages:
          words:
            uses: command
            with:
              run: [sh, -c, 'sort \(sortFlags) words.txt > "$SQUEEZE_OUT/sorted.txt"']
              inputs: [words.txt]
              outputs: [sorted.txt]
          count:
            uses: command
            with:
              run: [sh, -c, 'wc -l < "$1/sorted.txt" > "$SQUEEZE_OUT/count.txt"', sh, "${words.out}"]
              outputs: [count.txt]
          other:
            uses: command
            with:
              run: [sh, -c, 'echo "$GREETING" > "$SQUEEZE_OUT/greeting.txt"']
              env: {GREETING: "${vars.greeting}"}
              outputs: [greeting.txt]
        """
    }

    static func project() throws -> Project {
        let project = try Project("behaviour")
        try project.write("recipe/recipe.yaml", recipe())
        try project.write("recipe/words.txt", "pear\napple\npear\nfig\n")
        return project
    }

    struct PlanLine: Decodable {
        var id: String
        var status: String
        var reason: String
        var key: String?
    }

    static func plan(_ project: Project, _ flags: [String] = [], environment: [String: String?] = [:]) throws -> [String: PlanLine] {
        let result = try project.squeeze(
            ["plan", "recipe/recipe.yaml", "--json"] + project.storage() + flags, environment: environment)
        try #require(result.exitedNormally && result.status == 0, "\(result)")
        let lines = try JSONDecoder().decode([PlanLine].self, from: Data(result.stdout.utf8))
        return Dictionary(uniqueKeysWithValues: lines.map { ($0.id, $0) })
    }

    @Test func planExplainsEveryStatus() throws {
        let project = try Self.project()
        var plan = try Self.plan(project)
        #expect(plan.values.map(\.status).sorted() == ["blocked", "run", "run"])
        #expect(plan["words"]?.reason == "no cache entry")
        #expect(plan["count"]?.status == "blocked")
        #expect(plan["count"]?.reason.contains("`words`") == true)

        let run = try project.run()
        try #require(run.status == 0, "\(run)")
        plan = try Self.plan(project)
        #expect(plan.values.allSatisfy { $0.status == "cached" }, "\(plan)")

        // A parameter edit names the parameter; its dependant waits.
        try project.write("recipe/recipe.yaml", Self.recipe(sortFlags: "-r"))
        plan = try Self.plan(project)
        #expect(plan["words"]?.status == "run")
        #expect(plan["words"]?.reason.contains("params changed: run") == true, "\(plan["words"]?.reason ?? "")")
        #expect(plan["count"]?.status == "blocked")
        #expect(plan["other"]?.status == "cached")

        // A variable edit reaches the parameter that uses it.
        try project.write("recipe/recipe.yaml", Self.recipe(greeting: "bonjour"))
        plan = try Self.plan(project)
        #expect(plan["words"]?.status == "cached")
        #expect(plan["other"]?.status == "run")
        #expect(plan["other"]?.reason.contains("params changed: env.GREETING") == true, "\(plan["other"]?.reason ?? "")")

        // An input edit is an input change, not a parameter change.
        try project.write("recipe/recipe.yaml", Self.recipe())
        try project.write("recipe/words.txt", "kiwi\n")
        plan = try Self.plan(project)
        #expect(plan["words"]?.status == "run")
        #expect(plan["words"]?.reason.contains("input changed: inputs[0]") == true, "\(plan["words"]?.reason ?? "")")
        #expect(plan["words"]?.reason.contains("params changed") == false)

        // Forcing a cached stage.
        plan = try Self.plan(project, ["--force", "other"])
        #expect(plan["other"]?.status == "run")
        #expect(plan["other"]?.reason == "forced")

        // Text output shows the same.
        let text = try project.squeeze(["plan", "recipe/recipe.yaml"] + project.storage())
        #expect(text.status == 0)
        #expect(text.stdout.contains("input changed: inputs[0]"), "\(text)")
    }

    @Test func planAndRunRejectUnknownStageNames() throws {
        let project = try Self.project()
        for command in ["plan", "run"] {
            let result = try project.squeeze([command, "recipe/recipe.yaml", "--force", "word"] + project.storage())
            #expect(result.exitedNormally && result.status == 2, "\(result)")
            #expect(result.stderr.contains("did you mean `words`?"), "\(result)")
        }
        #expect(!FileManager.default.fileExists(atPath: project.runsDirectory), "a rejected run must not record anything")
    }

    @Test func runJSONEmitsOneObjectPerLine() throws {
        let project = try Self.project()
        let result = try project.run("recipe/recipe.yaml", ["--json"])
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count >= 8)
        var events: [String] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            let event = try #require(object?["event"] as? String, "not an event line: \(line)")
            events.append(event)
        }
        #expect(events.first == "run_started")
        #expect(events.last == "run_finished")
        #expect(events.filter { $0 == "stage_finished" }.count == 3)
        struct Finished: Decodable {
            var event: String
            var run: RunJSON
        }
        let last = try #require(lines.last)
        let finished = try JSONDecoder().decode(Finished.self, from: Data(last.utf8))
        #expect(finished.run.status == "succeeded")
        #expect(finished.run.stages.count == 3)
    }

    @Test func runsListShowAndDiff() throws {
        let project = try Self.project()
        let first = try project.run()
        #expect(first.status == 0, "\(first)")
        let second = try project.run("recipe/recipe.yaml", ["--set", "vars.greeting=salut"])
        #expect(second.status == 0, "\(second)")
        let a = try #require(first.runID), b = try #require(second.runID)

        let list = try project.squeeze(["runs", "list"] + project.storage())
        #expect(list.status == 0)
        let ids = list.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        #expect(Set(ids) == [a, b], "\(list)")
        #expect(ids.allSatisfy { $0.contains("-behaviour-") })

        let show = try project.squeeze(["runs", "show", b] + project.storage())
        #expect(show.status == 0)
        #expect(show.stdout.contains("run \(b): succeeded"), "\(show)")
        #expect(show.stdout.contains("overrides: vars.greeting=salut"), "\(show)")
        for stage in ["words", "count", "other"] { #expect(show.stdout.contains("  \(stage)  "), "\(stage)") }

        // A unique suffix (the short id) finds a run too.
        let short = try project.squeeze(["runs", "show", String(a.suffix(8))] + project.storage())
        #expect(short.stdout.contains("run \(a): succeeded"), "\(short)")

        let diff = try project.squeeze(["runs", "diff", a, b] + project.storage())
        #expect(diff.status == 0)
        #expect(diff.stdout.contains("\"hello\" → \"salut\""), "\(diff)")
        #expect(diff.stdout.contains("stage other key:"), "\(diff)")
        #expect(!diff.stdout.contains("stage words key"), "\(diff)")

        let same = try project.squeeze(["runs", "diff", a, a] + project.storage())
        #expect(same.stdout.contains("no differences"), "\(same)")

        let missing = try project.squeeze(["runs", "show", "no-such-run"] + project.storage())
        #expect(missing.exitedNormally && missing.status == 2, "\(missing)")
    }

    /// Runs started within one second must still list oldest first, and
    /// `latest` must be the newest (ids share the second, then differ randomly).
    @Test func latestIsTheNewestRun() throws {
        let project = try Self.project()
        var ids: [String] = []
        for _ in 0..<5 {
            let result = try project.run()
            #expect(result.status == 0, "\(result)")
            ids.append(try #require(result.runID))
        }
        let latest = try project.runRecord("latest")
        #expect(latest.id == ids.last, "latest is \(latest.id), the newest run is \(ids.last ?? "")")
        let list = try project.squeeze(["runs", "list"] + project.storage())
        let listed = list.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        #expect(listed == ids, "runs list is not oldest first")
    }

    /// A cache or runs directory inside the recipe's directory is squeeze's own
    /// storage, not a file the command wrote beside the recipe.
    @Test func storageInsideTheRecipeDirectoryIsNotAStrayWrite() throws {
        let project = try Self.project()
        let result = try project.squeeze(
            ["run", "recipe/recipe.yaml", "--cache-dir", "recipe/cache", "--runs-dir", "recipe/records"])
        #expect(result.exitedNormally && result.status == 0, "\(result)")
    }

    @Test func stageTimingsAreRecorded() throws {
        let project = try Project("timing")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: timing
            stages:
              nap:
                uses: command
                with:
                  run: [sleep, "0.3"]
              fail:
                uses: command
                with:
                  run: [sh, -c, 'sleep 0.3; exit 3']
            """)
        let result = try project.run("recipe/recipe.yaml", ["--keep-going"])
        #expect(result.status == 1, "\(result)")
        let record = try project.record(of: result)
        for id in ["nap", "fail"] {
            let stage = try #require(record.stage(id))
            #expect((stage.wallSeconds ?? 0) >= 0.3, "\(id) took \(stage.wallSeconds ?? 0) s")
            #expect(stage.start != nil && stage.end != nil, "\(id): start \(stage.start ?? "-") end \(stage.end ?? "-")")
        }
        #expect(result.stderr.contains("fail: FAILED after 0.3"), "\(result)")
        #expect(result.stderr.contains("command exited with status 3"), "\(result)")
    }

    /// A quoted `"${vars.n}"` is text: an argument list takes it as a string,
    /// whatever the variable's type (the schema says the same).
    @Test func quotedVariableInAnArgumentListIsAString() throws {
        let project = try Project("quoted")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: quoted
            vars:
              n: 3
              ratio: 0.5
            stages:
              write:
                uses: command
                with:
                  run: [sh, -c, 'printf "%s %s" "$1" "$RATIO" > "$SQUEEZE_OUT/n.txt"', sh, "${vars.n}"]
                  env: {RATIO: "${vars.ratio}"}
                  outputs: [n.txt]
            """)
        let validate = try project.squeeze(["validate", "recipe/recipe.yaml"])
        #expect(validate.exitedNormally && validate.status == 0, "\(validate)")
        let run = try project.run()
        #expect(run.status == 0, "\(run)")
        if let id = run.runID {
            #expect(project.read("runs/\(id)/outputs/write/out/n.txt") == "3 0.5")
        }
    }

    @Test func garbageCollectionThenRerunRecomputes() throws {
        let project = try Self.project()
        #expect(try project.run().status == 0)
        #expect(try project.cacheEntries().count == 3)
        let gc = try project.squeeze(["cache", "gc", "--keep-runs", "0"] + project.storage())
        #expect(gc.status == 0, "\(gc)")
        #expect(gc.stdout.contains("removed 3 entries"), "\(gc)")
        #expect(try project.cacheEntries().isEmpty)
        #expect(try project.verifyCache().status == 0)

        let second = try project.run()
        #expect(second.status == 0)
        let rerun = try project.record(of: second)
        #expect(rerun.stages.allSatisfy { $0.status == "ran" }, "\(rerun.stages.map(\.status))")

        // Keeping every run keeps every entry.
        let keep = try project.squeeze(["cache", "gc"] + project.storage())
        #expect(keep.status == 0)
        #expect(try project.cacheEntries().count == 3)
    }

    @Test func stagesCommandListsParameters() throws {
        let list = try SqueezeCLI.run(["stages"])
        #expect(list.status == 0)
        #expect(list.stdout.contains("command"))

        let command = try SqueezeCLI.run(["stages", "command"])
        #expect(command.status == 0, "\(command)")
        for parameter in ["run", "shell", "inputs", "outputs", "env", "timeout"] {
            #expect(command.stdout.contains("  \(parameter): "), "\(parameter) missing:\n\(command.stdout)")
        }
        #expect(command.stdout.contains("out: directory"))

        let unknown = try SqueezeCLI.run(["stages", "comand"])
        #expect(unknown.exitedNormally && unknown.status == 2)
        #expect(unknown.stderr.contains("did you mean `command`?"), "\(unknown)")
    }

    @Test(arguments: [["--jobs", "0"], ["-j", "-3"], ["--jobs", "many"], ["--frobnicate"]])
    func badFlagsAreUsageErrors(_ flags: [String]) throws {
        let project = try Self.project()
        let result = try project.run("recipe/recipe.yaml", flags)
        #expect(result.exitedNormally && result.status == 2, "\(flags): \(result)")
        #expect(!result.stderr.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: project.runsDirectory), "nothing may run")
    }

    @Test func missingRecipeIsAnInputError() throws {
        let project = try Project("missing")
        let result = try project.squeeze(["validate", "nope.yaml"])
        #expect(result.exitedNormally && result.status == 2, "\(result)")
        #expect(result.stderr.contains("nope.yaml"), "\(result)")
    }

    @Test(.timeLimit(.minutes(1)))
    func interruptStopsTheCommandAndRecordsIt() throws {
        let project = try Project("interrupt")
        let pidFile = project.path("child.pid")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: interrupted
            stages:
              quick:
                uses: command
                with:
                  run: [sh, -c, 'echo done > "$SQUEEZE_OUT/done.txt"']
              slow:
                uses: command
                needs: [quick]
                with:
                  run: [sh, -c, 'echo $$ > "$PIDFILE"; exec sleep 30']
                  env: {PIDFILE: "\(pidFile)"}
            """)
        let running = try SqueezeCLI.start(["run", "recipe/recipe.yaml", "--jobs", "1"] + project.storage(), in: project.root)
        let pid = try #require(Self.waitForPID(in: pidFile, while: running), "the slow command never started")
        // Let `exec sleep` happen, then interrupt squeeze alone, as a terminal's Ctrl-C would
        // (squeeze gives its commands their own process groups).
        usleep(100_000)
        running.send(SIGINT)
        let result = running.wait(timeout: 15)
        #expect(result.exitedNormally && result.status == 130, "\(result)")
        #expect(result.seconds < 15)
        #expect(!ProcessTable.isAlive(pid), "the command (pid \(pid)) outlived the interrupt")
        if ProcessTable.isAlive(pid) { kill(pid, SIGKILL) }

        let record = try project.record(of: result)
        #expect(record.status == "interrupted")
        #expect(record.stage("quick")?.status == "ran")
        #expect(record.stage("slow")?.status == "cancelled")
        #expect(try project.verifyCache().status == 0)
        #expect(try project.cacheEntries().map(\.stageID) == ["quick"])

        // The next run reuses what finished and reruns what did not; SIGTERM stops it the same way.
        try FileManager.default.removeItem(atPath: pidFile)
        let again = try SqueezeCLI.start(["run", "recipe/recipe.yaml"] + project.storage(), in: project.root)
        let secondChild = try #require(Self.waitForPID(in: pidFile, while: again), "the slow command never restarted")
        usleep(100_000)
        again.send(SIGTERM)
        let second = again.wait(timeout: 15)
        #expect(second.exitedNormally && second.status == 130, "SIGTERM: \(second)")
        let secondRecord = try project.record(of: second)
        #expect(secondRecord.stage("quick")?.status == "cached")
        #expect(secondRecord.status == "interrupted")
        #expect(!ProcessTable.isAlive(secondChild), "the command (pid \(secondChild)) outlived SIGTERM")
        if ProcessTable.isAlive(secondChild) { kill(secondChild, SIGKILL) }
    }

    /// The pid a command wrote to `file`, once it appears (nil after 20 s or if squeeze ended).
    static func waitForPID(in file: String, while process: BackgroundSqueeze) -> pid_t? {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, process.isRunning {
            if let text = FileManager.default.contents(atPath: file).map({ String(decoding: $0, as: UTF8.self) }),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return pid
            }
            usleep(10_000)
        }
        return nil
    }
}
