import Foundation
@testable import SqueezeEngine
import SqueezeSupport
import Testing

/// How `RunStore.resolve` finds a run: id, prefix, suffix, `latest`, or a path.
@Suite struct RunStoreTests {
    static func record(_ id: String, startedAt: TimeInterval) -> RunRecord {
        RunRecord(
            id: id, name: "demo", recipeFile: "recipe.yaml", status: .succeeded, startedAt: Date(timeIntervalSince1970: startedAt),
            endedAt: nil, wallSeconds: 1, squeezeVersion: "test", backend: "cpu", jobs: 1, threads: 1, host: "h", git: nil,
            overrides: [], cacheDirectory: ".squeeze", recipe: .object([:]), stages: [])
    }

    @Test func resolvesByIdPrefixSuffixLatestAndPath() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = RunStore(root: workspace.path("runs"))
        try store.save(Self.record("20260101T000000Z-demo-aaaa1111", startedAt: 1))
        try store.save(Self.record("20260102T000000Z-demo-bbbb2222", startedAt: 2))

        #expect(try store.resolve("latest").id == "20260102T000000Z-demo-bbbb2222")
        #expect(try store.resolve("20260101").id == "20260101T000000Z-demo-aaaa1111")
        #expect(try store.resolve("bbbb2222").id == "20260102T000000Z-demo-bbbb2222")
        let directory = workspace.path("runs/20260101T000000Z-demo-aaaa1111")
        for path in [directory, directory + "/", directory + "/run.json"] {
            #expect(try store.resolve(path).id == "20260101T000000Z-demo-aaaa1111", "\(path)")
        }
        #expect { try store.resolve("2026") } throws: { "\($0)".contains("matches 2 runs") }
        #expect {
            try store.resolve(workspace.path("runs/missing"))
        } throws: { "\($0)".contains("no run record at \(workspace.path("runs/missing/run.json"))") }

        try workspace.write("broken.json", "{}")
        #expect {
            try store.resolve(workspace.path("broken.json"))
        } throws: { "\($0)".contains("has an unreadable run.json") }
    }

    /// A run record keeps a double metric 3.0 a double (and an integer an
    /// integer), its dates to the millisecond, and the recipe as written.
    @Test func recordsRoundTripDoubleMetricsAndDates() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = RunStore(root: workspace.path("runs"))
        var record = Self.record("20260101T000000Z-demo-aaaa1111", startedAt: 1_767_225_600.125)
        record.endedAt = Date(timeIntervalSince1970: 1_767_225_700.5)
        record.recipe = .object(["vars": .object(["lr": .double(2), "epochs": .int(2)])])
        var stage = StageRecord(id: "eval", uses: "eval/classification", status: .ran)
        stage.metrics = ["accuracy": .double(3), "examples": .int(3), "loss": .double(0.25)]
        stage.start = record.startedAt
        record.stages = [stage]
        try store.save(record)

        let read = try store.resolve("aaaa1111")
        #expect(read.stages.first?.metrics == stage.metrics)
        #expect(read.stages.first?.metrics["accuracy"] == .double(3))
        #expect(read.stages.first?.metrics["examples"] == .int(3))
        #expect(read.recipe == record.recipe)
        #expect(read.startedAt == record.startedAt && read.endedAt == record.endedAt)
        let text = try String(contentsOfFile: workspace.path("runs/20260101T000000Z-demo-aaaa1111/run.json"), encoding: .utf8)
        #expect(text.contains("\"accuracy\": 3.0,") && text.contains("\"startedAt\": \"2026-01-01T00:00:00.125Z\""), "\(text)")
    }

    /// A run.json written before the one codec (by `JSONEncoder`) still reads.
    @Test func recordsWrittenByJSONEncoderStillRead() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let old = """
            {
              "backend" : "cpu",
              "cacheDirectory" : ".squeeze",
              "host" : "h",
              "id" : "20260101T000000Z-demo-aaaa1111",
              "jobs" : 1,
              "name" : "demo",
              "overrides" : [

              ],
              "recipe" : {

              },
              "recipeFile" : "recipe.yaml",
              "squeezeVersion" : "test",
              "stages" : [
                {
                  "cpuSeconds" : 0,
                  "id" : "eval",
                  "metrics" : {
                    "accuracy" : 3,
                    "loss" : 0.25
                  },
                  "outputs" : {

                  },
                  "status" : "ran",
                  "uses" : "eval/classification",
                  "wallSeconds" : 1.5
                }
              ],
              "startedAt" : "2026-01-01T00:00:00Z",
              "status" : "succeeded",
              "threads" : 1,
              "wallSeconds" : 1
            }
            """
        try FileManager.default.createDirectory(atPath: workspace.path("runs/20260101T000000Z-demo-aaaa1111"), withIntermediateDirectories: true)
        try workspace.write("runs/20260101T000000Z-demo-aaaa1111/run.json", old)
        let read = try RunStore(root: workspace.path("runs")).resolve("latest")
        #expect(read.startedAt == Date(timeIntervalSince1970: 1_767_225_600))
        #expect(read.stages.first?.metrics == ["accuracy": .int(3), "loss": .double(0.25)])
        #expect(read.stages.first?.wallSeconds == 1.5)
    }

    /// A corrupt newest run.json is listed as unreadable, and `latest` names
    /// it instead of quietly meaning the run before it.
    @Test func corruptNewestRecordMakesLatestFail() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = RunStore(root: workspace.path("runs"))
        try store.save(Self.record("20260101T000000Z-demo-aaaa1111", startedAt: 1_767_225_600))
        try store.save(Self.record("20260102T000000Z-demo-bbbb2222", startedAt: 1_767_312_000))
        try workspace.write("runs/20260102T000000Z-demo-bbbb2222/run.json", "{\"id\": \"trunc")

        let listing = try store.listing()
        #expect(listing.records.map(\.id) == ["20260101T000000Z-demo-aaaa1111"])
        #expect(listing.unreadable.map(\.id) == ["20260102T000000Z-demo-bbbb2222"])
        #expect(listing.unreadable.first?.reason.contains("not a valid run record") == true)

        for query in ["latest", "bbbb2222", "20260102T000000Z-demo-bbbb2222"] {
            #expect(throws: RunStore.Failure.self, "\(query)") { try store.resolve(query) }
            #expect { try store.resolve(query) } throws: { "\($0)".contains("20260102T000000Z-demo-bbbb2222") && "\($0)".contains("unreadable") }
        }
        #expect(try store.resolve("aaaa1111").id == "20260101T000000Z-demo-aaaa1111")

        // An older unreadable run does not stop `latest`.
        try store.save(Self.record("20260103T000000Z-demo-cccc3333", startedAt: 1_767_398_400))
        #expect(try store.resolve("latest").id == "20260103T000000Z-demo-cccc3333")
        // A run directory without run.json is unreadable too; stray files and hidden names are not runs.
        try FileManager.default.createDirectory(atPath: workspace.path("runs/20260104T000000Z-demo-dddd4444"), withIntermediateDirectories: true)
        try workspace.write("runs/notes.txt", "not a run")
        try FileManager.default.createDirectory(atPath: workspace.path("runs/.hidden"), withIntermediateDirectories: true)
        #expect(try store.listing().unreadable.map(\.id) == ["20260102T000000Z-demo-bbbb2222", "20260104T000000Z-demo-dddd4444"])
        #expect { try store.resolve("latest") } throws: { "\($0)".contains("20260104T000000Z-demo-dddd4444") }
    }

    @Test func aRunsDirectoryThatIsAFileIsAnError() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try workspace.write("runs", "a file")
        let store = RunStore(root: workspace.path("runs"))
        for attempt in [{ _ = try store.listing() }, { _ = try store.makeRunDirectory(name: "demo", at: Date()) }] {
            #expect {
                try attempt()
            } throws: { error in
                let failure = error as? RunStore.Failure
                return failure?.concernsRunsDirectory == true && failure?.description.contains("is a regular file, not a directory") == true
            }
        }
        #expect(try RunStore(root: workspace.path("absent")).listing().records.isEmpty, "no runs directory yet: no runs")
    }

    /// A `running` record reads as `abandoned` once its process is gone; the
    /// start time and boot id keep a reused pid from passing for it.
    @Test func runningRecordOfAGoneProcessIsAbandoned() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = RunStore(root: workspace.path("runs"))
        let this = try #require(RunProcess.current(), "Linux has /proc")
        func save(_ id: String, _ process: RunProcess?, host: String = ProcessInfo.processInfo.hostName) throws {
            var record = Self.record(id, startedAt: 1)
            record.status = .running
            record.process = process
            record.host = host
            try store.save(record)
        }
        try save("alive", this)
        try save("reused-pid", RunProcess(pid: this.pid, startTicks: this.startTicks + 1, bootID: this.bootID))
        try save("before-reboot", RunProcess(pid: this.pid, startTicks: this.startTicks, bootID: "another-boot"))
        try save("other-host", RunProcess(pid: this.pid, startTicks: this.startTicks + 1, bootID: this.bootID), host: "elsewhere")
        try save("old-format", nil)

        let finished = Process()
        finished.executableURL = URL(fileURLWithPath: "/bin/true")
        try finished.run()
        finished.waitUntilExit()
        try save("exited", RunProcess(pid: finished.processIdentifier, startTicks: this.startTicks, bootID: this.bootID))

        let statuses = Dictionary(uniqueKeysWithValues: try store.listing().records.map { ($0.id, $0.status) })
        #expect(statuses == [
            "alive": .running, "reused-pid": .abandoned, "before-reboot": .abandoned,
            "other-host": .running, "old-format": .running, "exited": .abandoned,
        ])
        #expect(try store.resolve("exited").status == .abandoned)
        #expect(try RunStore.load(path: workspace.path("runs/reused-pid")).status == .abandoned)
    }

    @Test func digestsLeftInADamagedRecordAreFound() {
        let key = String(repeating: "ab", count: 32), digest = String(repeating: "0f", count: 32)
        let text = "{\"key\":\"\(key)\",\"digest\":\"sha256:\(digest)\",\"long\":\"\(key)0\",\"upper\":\"\(key.uppercased())\""
        #expect(UnreadableRun.hexDigests(in: Array(text.utf8)) == [key, digest])
    }
}
