import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Run records that cannot be trusted (corrupt, missing, left `running` by a
/// killed squeeze) and the commands that read them: `runs`, `latest`, `cache gc`.
@Suite struct RunRecordFaultTests {
    static let quickRecipe = """
        version: 1
        name: records
        stages:
          hello:
            uses: command
            with:
              run: [sh, -c, 'echo hi > "$SQUEEZE_OUT/hello.txt"']
              outputs: [hello.txt]
        """

    static func project() throws -> Project {
        let project = try Project("records")
        try project.write("recipe/recipe.yaml", quickRecipe)
        return project
    }

    /// Two runs; the newest one's run.json is then cut short.
    static func projectWithCorruptNewestRun() throws -> (project: Project, older: String, newer: String) {
        let project = try Self.project()
        let first = try project.run()
        try #require(first.status == 0, "\(first)")
        let second = try project.run()
        try #require(second.status == 0, "\(second)")
        let older = try #require(first.runID), newer = try #require(second.runID)
        let record = try #require(project.read("runs/\(newer)/run.json"))
        try project.write("runs/\(newer)/run.json", String(record.prefix(record.count / 2)))
        return (project, older, newer)
    }

    @Test func corruptNewestRecordIsListedAndLatestFails() throws {
        let (project, older, newer) = try Self.projectWithCorruptNewestRun()

        let list = try project.squeeze(["runs", "list"] + project.storage())
        #expect(list.status == 0, "\(list)")
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(list)")
        #expect(lines.last?.hasPrefix("\(newer)  unreadable") == true, "\(list)")

        let json = try project.squeeze(["runs", "list", "--json"] + project.storage())
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(entries.compactMap { $0["status"] as? String } == ["succeeded", "unreadable"], "\(json)")
        #expect(entries.last?["error"] is String)

        for command in [["runs", "show", "latest"], ["report", "latest"], ["compare", older, "latest"]] {
            let result = try project.squeeze(command + project.storage())
            #expect(result.exitedNormally && result.status == 2, "\(command): \(result)")
            #expect(result.stderr.hasPrefix("error: the newest run, \(newer), has an unreadable record"), "\(command): \(result)")
        }
        let byID = try project.squeeze(["runs", "show", String(newer.suffix(8))] + project.storage())
        #expect(byID.status == 2 && byID.stderr.contains("unreadable"), "\(byID)")
        #expect(try project.squeeze(["runs", "show", older] + project.storage()).status == 0)
    }

    @Test func garbageCollectionRefusesWithoutRunRecords() throws {
        let project = try Self.project()
        #expect(try project.run().status == 0)
        #expect(try project.cacheEntries().count == 1)

        for runs in [project.path("elsewhere"), project.path("empty")] {
            if runs.hasSuffix("empty") { try FileManager.default.createDirectory(atPath: runs, withIntermediateDirectories: true) }
            let gc = try project.squeeze(["cache", "gc"] + project.storage(runs: runs))
            #expect(gc.exitedNormally && gc.status == 2, "\(gc)")
            #expect(gc.stderr.hasPrefix("error: no readable run records in \(runs)"), "\(gc)")
            #expect(gc.stderr.contains("--keep-runs 0"), "\(gc)")
            #expect(try project.cacheEntries().count == 1, "a refused gc deletes nothing")
        }
        let keepTwo = try project.squeeze(["cache", "gc", "--keep-runs", "2"] + project.storage(runs: project.path("empty")))
        #expect(keepTwo.status == 2, "only --keep-runs 0 says to empty the cache: \(keepTwo)")

        let deliberate = try project.squeeze(["cache", "gc", "--keep-runs", "0"] + project.storage(runs: project.path("empty")))
        #expect(deliberate.status == 0, "\(deliberate)")
        #expect(try project.cacheEntries().isEmpty)
    }

    @Test func garbageCollectionKeepsWhatAnUnreadableRunMayUse() throws {
        let (project, _, newer) = try Self.projectWithCorruptNewestRun()
        // Only the damaged run uses the entry once the older run is gone; a
        // variant of the recipe gives gc a readable run that uses another entry.
        let entries = try project.cacheEntries()
        try #require(entries.count == 1)
        let runs = project.path("runs")
        for name in try FileManager.default.contentsOfDirectory(atPath: runs) where name != newer {
            try FileManager.default.removeItem(atPath: runs + "/" + name)
        }
        let variant = try project.run("recipe/recipe.yaml", ["--set", "stages.hello.with.env={X: other}"])
        try #require(variant.status == 0, "\(variant)")
        try #require(try project.cacheEntries().count == 2)

        let gc = try project.squeeze(["cache", "gc"] + project.storage())
        #expect(gc.status == 0, "\(gc)")
        #expect(gc.stderr.contains("warning: run \(newer) is unreadable"), "\(gc)")
        #expect(Set(try project.cacheEntries().map(\.key)).isSuperset(of: entries.map(\.key)), "\(gc)")
    }

    /// `kill -9` of squeeze ends the command it was running, and the run,
    /// left `running` on disk, lists as `abandoned`.
    @Test(.timeLimit(.minutes(1)))
    func killNineEndsTheStageCommandAndAbandonsTheRun() throws {
        let project = try Project("kill")
        let pidFile = project.path("child.pid")
        try project.write("recipe/recipe.yaml", """
            version: 1
            name: killed
            stages:
              slow:
                uses: command
                with:
                  run: [sh, -c, 'echo $$ > "$PIDFILE"; sleep 30; echo late']
                  env: {PIDFILE: "\(pidFile)"}
            """)
        let running = try SqueezeCLI.start(["run", "recipe/recipe.yaml"] + project.storage(), in: project.root)
        let child = try #require(CLIBehaviourTests.waitForPID(in: pidFile, while: running), "the command never started")
        var sleeper: [pid_t] = []
        let started = Date()
        while sleeper.isEmpty, Date().timeIntervalSince(started) < 10 {
            usleep(10_000)
            sleeper = ProcessTable.descendants(of: child)
        }
        try #require(!sleeper.isEmpty, "the command's `sleep` never started")
        kill(running.pid, SIGKILL)
        let killed = running.wait(timeout: 10)
        #expect(!killed.exitedNormally && killed.status == SIGKILL, "\(killed)")

        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, ([child] + sleeper).contains(where: ProcessTable.isAlive) { usleep(20_000) }
        for pid in [child] + sleeper {
            #expect(!ProcessTable.isAlive(pid), "pid \(pid) outlived squeeze by 5 s")
            if ProcessTable.isAlive(pid) { kill(pid, SIGKILL) }
        }

        let list = try project.squeeze(["runs", "list"] + project.storage())
        #expect(list.stdout.contains("  abandoned"), "\(list)")
        let record = try project.runRecord("latest")
        #expect(record.status == "abandoned")
        let onDisk = try #require(project.read("runs/\(record.id)/run.json"))
        #expect(onDisk.contains("\"status\": \"running\"") && onDisk.contains("\"bootID\""), "the file keeps what squeeze wrote")
    }
}
