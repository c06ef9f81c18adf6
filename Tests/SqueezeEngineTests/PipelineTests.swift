import Foundation
import SqueezeEngine
import Testing

@Suite struct PipelineTests {
    private func diamond(_ tag: String, text: String = "a") -> String {
        """
        version: 1
        name: diamond
        seed: 3
        stages:
          root:
            uses: test/write
            with: { tag: \(tag), text: "\(text)" }
          left:
            uses: test/write
            with: { tag: \(tag), text: "L", inputs: ["${root.result}"], sleep_ms: 200 }
          right:
            uses: test/write
            with: { tag: \(tag), text: "R", inputs: ["${root.result}"], sleep_ms: 200 }
          join:
            uses: test/write
            with: { tag: \(tag), text: "J", inputs: ["${left.result}", "${right.result}"] }
        """
    }

    @Test func runsOnceThenEverythingIsCached() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let pipeline = try ws.pipeline(diamond(tag))
        let first = try await ws.run(pipeline)
        #expect(first.status == .succeeded)
        #expect(first.stages.map(\.status) == [.ran, .ran, .ran, .ran])
        #expect(ExecutionLog.shared.executions(tag) == 4)
        let joined = try #require(first.stage("join")?.outputs["result"])
        let text = try String(contentsOfFile: pipeline.store.path(for: joined) + "/value.txt", encoding: .utf8)
        #expect(text == "JLaRa")

        let second = try await ws.run(try ws.pipeline(diamond(tag)))
        #expect(second.stages.map(\.status) == [.cached, .cached, .cached, .cached])
        #expect(ExecutionLog.shared.executions(tag) == 4)
        #expect(second.stage("join")?.outputs == first.stage("join")?.outputs)
        #expect(second.stage("join")?.metrics == first.stage("join")?.metrics)
    }

    @Test func independentStagesRunInParallelUpToJobs() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        _ = try await ws.run(try ws.pipeline(diamond(tag)), jobs: 2)
        #expect(ExecutionLog.shared.maxConcurrency(tag) == 2)

        let serialTag = UUID().uuidString
        _ = try await ws.run(try ws.pipeline(diamond(serialTag)), jobs: 1)
        #expect(ExecutionLog.shared.maxConcurrency(serialTag) == 1)
    }

    @Test func aStageAskingForAllCoresRunsAlone() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let yaml = """
            version: 1
            name: alone
            stages:
              a: { uses: test/write, with: { tag: \(tag), text: a, sleep_ms: 150 }, resources: { cores: all } }
              b: { uses: test/write, with: { tag: \(tag), text: b, sleep_ms: 150 } }
              c: { uses: test/write, with: { tag: \(tag), text: c, sleep_ms: 150 } }
            """
        let record = try await ws.run(try ws.pipeline(yaml), jobs: 4)
        #expect(record.status == .succeeded)
        let a = try #require(record.stage("a")), b = try #require(record.stage("b")), c = try #require(record.stage("c"))
        let aStart = try #require(a.start), aEnd = try #require(a.end)
        for other in [b, c] {
            let start = try #require(other.start), end = try #require(other.end)
            #expect(end <= aStart || start >= aEnd, "stage \(other.id) overlapped the all-cores stage")
        }
    }

    @Test func changingAParamRerunsOnlyWhatDependsOnIt() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        _ = try await ws.run(try ws.pipeline(diamond(tag)))
        let changed = try ws.pipeline(diamond(tag, text: "b"))
        let plan = try changed.plan()
        #expect(plan.map(\.status) == [.run, .blocked, .blocked, .blocked])
        #expect(plan.first?.reason == "params changed: text")
        let record = try await ws.run(changed)
        #expect(record.stages.map(\.status) == [.ran, .ran, .ran, .ran])

        // Same output as before from a changed stage: downstream is a cache hit.
        let back = try await ws.run(try ws.pipeline(diamond(tag)))
        #expect(back.stages.map(\.status) == [.cached, .cached, .cached, .cached])
    }

    @Test func planExplainsInputChangesAndVersionBumps() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        try ws.write("source.txt", "hello")
        let yaml = """
            version: 1
            name: inputs
            stages:
              upper: { uses: test/upper, with: { tag: \(tag), source: source.txt } }
            """
        #expect(try ws.pipeline(yaml).plan().first?.reason == "no cache entry")
        let first = try await ws.run(try ws.pipeline(yaml))
        let file = try #require(first.stage("upper")?.outputs["file"])
        #expect(try String(contentsOfFile: ws.pipeline(yaml).store.path(for: file), encoding: .utf8) == "HELLO")
        #expect(try ws.pipeline(yaml).plan().first?.status == .cached)

        try ws.write("source.txt", "changed")
        let plan = try ws.pipeline(yaml).plan()
        #expect(plan.first?.status == .run)
        #expect(plan.first?.reason == "input changed: source")
        #expect(try ws.pipeline(yaml).plan(force: ["upper"]).first?.reason == "forced")
    }

    /// A tensor stage's key holds the registry's backend fingerprint, not the
    /// recipe's backend name: new kernel numerics make it stale, with the
    /// reason; a stage that uses no backend stays cached.
    @Test func backendNumericsChangeIsAMissForTensorStagesOnly() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let yaml = """
            version: 1
            name: numerics
            backend: cpu
            stages:
              tensor: { uses: test/backend, with: { tag: \(tag)-tensor } }
              plain: { uses: test/write, with: { tag: \(tag)-plain, text: a } }
            """
        func registry(_ revision: String) -> StageRegistry {
            StageRegistry(Array(testRegistry.types.values)) { "\($0)/\(revision)" }
        }
        let first = try await ws.run(try ws.pipeline(yaml, registry: registry("r1")))
        #expect(first.stages.map(\.status) == [.ran, .ran])
        #expect(try ws.pipeline(yaml, registry: registry("r1")).plan().map(\.status) == [.cached, .cached])
        let plan = try ws.pipeline(yaml, registry: registry("r2")).plan()
        #expect(plan.map(\.status) == [.run, .cached])
        #expect(plan.first?.reason == "backend changed (cpu/r1 → cpu/r2)")
    }

    @Test func failureSkipsDependentsAndKeepGoingContinuesOthers() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let yaml = """
            version: 1
            name: failing
            stages:
              bad: { uses: test/write, with: { tag: \(tag), fail: true } }
              after: { uses: test/write, with: { tag: \(tag), inputs: ["${bad.result}"] } }
              other: { uses: test/write, with: { tag: \(tag), text: x, sleep_ms: 100 } }
            """
        let stopped = try await ws.run(try ws.pipeline(yaml), jobs: 1)
        #expect(stopped.status == .failed)
        #expect(stopped.stage("bad")?.status == .failed)
        #expect(stopped.stage("bad")?.reason?.contains("asked to fail") == true)
        #expect(stopped.stage("after")?.status == .skipped)
        #expect(stopped.stage("after")?.reason == "dependency `bad` failed")
        #expect(stopped.stage("other")?.status == .notStarted)

        let kept = try await ws.run(try ws.pipeline(yaml), jobs: 1, keepGoing: true)
        #expect(kept.status == .failed)
        #expect(kept.stage("other")?.status == .ran)
        #expect(kept.stage("after")?.status == .skipped)
        // A failed stage leaves no cache entry.
        let badKey = try #require(kept.stage("bad")?.key)
        #expect(try ws.pipeline(yaml).store.entry(forKey: badKey) == nil)
    }

    @Test func onlyRunsTheSelectionAndItsDependencies() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let record = try await ws.run(try ws.pipeline(diamond(tag)), only: ["left"])
        #expect(record.stage("root")?.status == .ran)
        #expect(record.stage("left")?.status == .ran)
        #expect(record.stage("right")?.status == .skipped)
        #expect(record.stage("join")?.status == .skipped)
        #expect(record.status == .succeeded)
    }

    @Test func seedsAreDerivedPerStageAndReproducible() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let pipeline = try ws.pipeline(diamond(UUID().uuidString))
        #expect(pipeline.seed(for: "left") != pipeline.seed(for: "right"))
        #expect(pipeline.seed(for: "left") == (try ws.pipeline(diamond("other")).seed(for: "left")))
        let reseeded = try ws.pipeline(diamond("x"), overrides: ["seed=4"])
        #expect(reseeded.seed(for: "left") != pipeline.seed(for: "left"))
    }

    @Test func cancellationMarksTheRunInterruptedAndLeavesNoEntry() async throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tag = UUID().uuidString
        let yaml = """
            version: 1
            name: slow
            stages:
              slow: { uses: test/write, with: { tag: \(tag), sleep_ms: 5000 } }
            """
        let pipeline = try ws.pipeline(yaml)
        let task = Task { try await ws.run(pipeline) }
        try await Task.sleep(nanoseconds: 300_000_000)
        task.cancel()
        let record = try await task.value
        #expect(record.status == .interrupted)
        #expect(record.stage("slow")?.status == .cancelled)
        #expect(pipeline.store.allEntries().isEmpty)
    }
}
