import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The cache shared by drivers on several hosts (docs/cluster.md, "The cache
/// on a shared file system"). A "host" is a UTS namespace with its own host
/// name (`unshare -u`, which needs root), so the lock protocol treats the
/// other driver as remote: it cannot see its pid and relies on the
/// heartbeat alone, as across the nodes of a cluster.
@Suite(.enabled(if: HostSimulation.isAvailable, "needs `unshare -u` (root) to give a driver another host name"))
struct SharedCacheTests {
    /// One command stage that appends its host to `counter.txt`, then runs `body`.
    static func recipe(counter: String, body: String) -> String {
        """
        version: 1
        name: shared
        stages:
          work:
            uses: command
            with:
              shell: true
              run: |
                hostname >> "$COUNTER"
        \(body.split(separator: "\n", omittingEmptySubsequences: false).map { "        " + $0 }.joined(separator: "\n"))
              env: {COUNTER: "\(counter)"}
              outputs: [result.txt]

        """
    }

    @Test func driversOnTwoHostsComputeAStageOnce() async throws {
        let project = try Project("two-hosts")
        let counter = project.path("counter.txt")
        try project.write("recipe/recipe.yaml", Self.recipe(counter: counter, body: """
            sleep 1.5
            echo done > "$SQUEEZE_OUT/result.txt"
            """))
        let a = try HostDriver(host: "node-a", ["run", "recipe/recipe.yaml"] + project.storage(runs: project.path("runs-a")), project: project)
        try await Self.waitForLines(counter, count: 1)
        let b = try HostDriver(host: "node-b", ["run", "recipe/recipe.yaml"] + project.storage(runs: project.path("runs-b")), project: project)
        let resultA = await a.wait(timeout: 60), resultB = await b.wait(timeout: 60)
        #expect(resultA.succeeded, "\(resultA)")
        #expect(resultB.succeeded, "\(resultB)")
        #expect(Self.lines(counter) == ["node-a"], "the command ran once, on node-a")
        let recordB = try project.record(of: resultB.asCLIResult, runs: project.path("runs-b"))
        #expect(recordB.stage("work")?.status == "cached")
        #expect(Self.lockFiles(project) == [])
    }

    @Test func aHolderKilledOnAnotherHostIsTakenOverAfterTheStaleThreshold() async throws {
        let project = try Project("killed-remote")
        let counter = project.path("counter.txt")
        try project.write("recipe/recipe.yaml", Self.recipe(counter: counter, body: """
            if [ "$(wc -l < "$COUNTER")" -eq 1 ]; then sleep 300; fi
            echo done > "$SQUEEZE_OUT/result.txt"
            """))
        let timing: [String: String?] = ["SQUEEZE_LOCK_HEARTBEAT_SECONDS": "0.5", "SQUEEZE_LOCK_STALE_SECONDS": "3"]
        let a = try HostDriver(host: "node-a", ["run", "recipe/recipe.yaml"] + project.storage(), project: project, environment: timing)
        try await Self.waitForLines(counter, count: 1)
        // The holder's heartbeat moves its lock file's mtime.
        let lock = try #require(Self.lockFiles(project).first { $0.hasSuffix(".lock") })
        let lockPath = project.path("cache/locks/" + lock)
        let before = try Self.mtime(lockPath)
        try await Task.sleep(nanoseconds: 1_200_000_000)
        #expect(try Self.mtime(lockPath) > before, "no heartbeat within 1.2 s")

        a.killHard()
        let started = Date()
        let b = try HostDriver(host: "node-b", ["run", "recipe/recipe.yaml"] + project.storage(), project: project, environment: timing)
        let resultB = await b.wait(timeout: 180)
        let waited = Date().timeIntervalSince(started)
        #expect(resultB.succeeded, "\(resultB)")
        #expect(Self.lines(counter) == ["node-a", "node-b"])
        // Stale 3 s after node-a's last heartbeat, which was at most 0.5 s before the kill.
        #expect(waited > 2 && waited < 150, "node-b finished \(waited) s after the kill")
        #expect(resultB.output.contains("took over the stale lock"), "\(resultB)")
        #expect(Self.lockFiles(project) == [])
    }

    @Test func aHolderKilledOnThisHostIsTakenOverAtOnce() async throws {
        let project = try Project("killed-local")
        let counter = project.path("counter.txt")
        try project.write("recipe/recipe.yaml", Self.recipe(counter: counter, body: """
            if [ "$(wc -l < "$COUNTER")" -eq 1 ]; then sleep 300; fi
            echo done > "$SQUEEZE_OUT/result.txt"
            """))
        // A stale threshold far beyond the test: only the dead pid explains a takeover.
        let timing: [String: String?] = ["SQUEEZE_LOCK_STALE_SECONDS": "600"]
        let a = try HostDriver(host: nil, ["run", "recipe/recipe.yaml"] + project.storage(), project: project, environment: timing)
        try await Self.waitForLines(counter, count: 1)
        a.killHard()
        let b = try HostDriver(host: nil, ["run", "recipe/recipe.yaml"] + project.storage(), project: project, environment: timing)
        let resultB = await b.wait(timeout: 180)
        #expect(resultB.succeeded, "\(resultB)")
        #expect(resultB.seconds < 150)
        #expect(Self.lines(counter).count == 2)
        #expect(resultB.output.contains("has exited"), "\(resultB)")
    }

    /// A holder frozen for longer than the stale threshold (SIGSTOP, as a
    /// node stalled on I/O or swapping) loses its lock, and both hosts compute
    /// the stage at once: both ingest the same outputs and save the same entry
    /// at about the same moment. Both runs succeed with the same digests, the
    /// store verifies, and a reader polling the entry never sees a partial one.
    @Test func aFrozenHolderAndItsSuccessorComputingOneStageLeaveOneValidEntry() async throws {
        let project = try Project("compute-twice")
        let counter = project.path("counter.txt")
        // Both commands wait for each other (up to 120 s: a full test run loads the machine), then write identical outputs.
        try project.write("recipe/recipe.yaml", Self.recipe(counter: counter, body: """
            for i in $(seq 1200); do [ "$(wc -l < "$COUNTER")" -ge 2 ] && break; sleep 0.1; done
            seq 1 1500000 > "$SQUEEZE_OUT/result.txt"
            mkdir "$SQUEEZE_OUT/parts"
            for i in $(seq 1 150); do echo "part $i" > "$SQUEEZE_OUT/parts/$i.txt"; done
            """))
        let timing: [String: String?] = ["SQUEEZE_LOCK_HEARTBEAT_SECONDS": "0.2", "SQUEEZE_LOCK_STALE_SECONDS": "1"]
        let stages = project.path("cache/stages")
        let reading = ReaderState()
        let reader = Thread {
            while reading.running.load(ordering: .relaxed) {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: stages)) ?? [] where name.hasSuffix(".json") {
                    guard let data = FileManager.default.contents(atPath: stages + "/" + name) else { continue }
                    if (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] == nil {
                        reading.partial.add(1, ordering: .relaxed)
                    } else {
                        reading.complete.add(1, ordering: .relaxed)
                    }
                }
                usleep(200)
            }
        }
        reader.start()
        let a = try HostDriver(host: "node-a", ["run", "recipe/recipe.yaml"] + project.storage(runs: project.path("runs-a")), project: project, environment: timing)
        try await Self.waitForLines(counter, count: 1)
        // Freeze node-a's driver (its command keeps running, waiting for node-b's).
        a.send(SIGSTOP)
        let b = try HostDriver(host: "node-b", ["run", "recipe/recipe.yaml"] + project.storage(runs: project.path("runs-b")), project: project, environment: timing)
        try await Self.waitForLines(counter, count: 2)
        a.send(SIGCONT)
        let resultA = await a.wait(timeout: 240), resultB = await b.wait(timeout: 240)
        reading.running.store(false, ordering: .relaxed)
        #expect(resultA.succeeded, "\(resultA)")
        #expect(resultB.succeeded, "\(resultB)")
        #expect(Self.lines(counter).sorted() == ["node-a", "node-b"], "both hosts computed the stage")
        let recordA = try project.record(of: resultA.asCLIResult, runs: project.path("runs-a"))
        let recordB = try project.record(of: resultB.asCLIResult, runs: project.path("runs-b"))
        #expect(recordA.stage("work")?.status == "ran")
        #expect(recordB.stage("work")?.status == "ran")
        let outputsA = try #require(recordA.stage("work")?.outputs)
        #expect(!outputsA.isEmpty && outputsA == recordB.stage("work")?.outputs)
        #expect(resultB.output.contains("took over the stale lock"), "\(resultB)")
        #expect(resultA.output.contains("lost the lock") || resultA.output.contains("taken over by another process"), "\(resultA)")
        #expect(reading.partial.load(ordering: .relaxed) == 0)
        #expect(reading.complete.load(ordering: .relaxed) > 0, "the reader saw the entry")
        let verify = try project.verifyCache()
        #expect(verify.status == 0, "\(verify)")
        #expect(try project.cacheEntries().count == 1)
        #expect(Self.lockFiles(project) == [])
    }

    @Test func anInterruptedWaiterLeavesTheHoldersLockAndNoClaim() async throws {
        let project = try Project("interrupted-waiter")
        let counter = project.path("counter.txt")
        try project.write("recipe/recipe.yaml", Self.recipe(counter: counter, body: """
            sleep 300
            echo done > "$SQUEEZE_OUT/result.txt"
            """))
        let a = try HostDriver(host: "node-a", ["run", "recipe/recipe.yaml"] + project.storage(), project: project)
        try await Self.waitForLines(counter, count: 1)
        let held = Self.lockFiles(project)
        #expect(held.count == 1 && held.allSatisfy { $0.hasSuffix(".lock") }, "\(held)")
        let b = try HostDriver(host: "node-b", ["run", "recipe/recipe.yaml"] + project.storage(), project: project)
        // node-b waits with a claim of its own beside node-a's lock.
        let deadline = Date().addingTimeInterval(120)
        while !Self.lockFiles(project).contains(where: { $0.hasSuffix(".claim") }), Date() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(Self.lockFiles(project).contains { $0.hasSuffix(".claim") }, "node-b never waited")
        b.send(SIGINT)
        let resultB = await b.wait(timeout: 60)
        #expect(resultB.exitedNormally && resultB.status == 130, "\(resultB)")
        #expect(Self.lockFiles(project) == held, "node-a's lock stays, node-b's claim is gone")
        #expect(Self.lines(counter) == ["node-a"])
        a.killHard()
    }

    @Test func verifyListsAndGCRemovesAStaleLockOfAKilledDriver() async throws {
        let project = try Project("gc-locks")
        let counter = project.path("counter.txt")
        try project.write("recipe/recipe.yaml", Self.recipe(counter: counter, body: """
            sleep 300
            echo done > "$SQUEEZE_OUT/result.txt"
            """))
        let a = try HostDriver(
            host: "node-a", ["run", "recipe/recipe.yaml"] + project.storage(), project: project,
            environment: ["SQUEEZE_LOCK_HEARTBEAT_SECONDS": "0.2"])
        try await Self.waitForLines(counter, count: 1)
        a.killHard()
        // Seen from this host, node-a's lock is only stale once its heartbeat is old.
        let verifyFresh = try project.squeeze(["cache", "verify"] + project.storage(), environment: ["SQUEEZE_LOCK_STALE_SECONDS": "600"])
        #expect(verifyFresh.status == 0 && !verifyFresh.stdout.contains("stale lock file"), "\(verifyFresh)")
        let env: [String: String?] = ["SQUEEZE_LOCK_STALE_SECONDS": "0.5"]
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let verify = try project.squeeze(["cache", "verify"] + project.storage(), environment: env)
        #expect(verify.status == 0, "\(verify)")
        #expect(verify.stdout.contains("stale lock file:") && verify.stdout.contains("held by pid"), "\(verify)")
        #expect(Self.lockFiles(project).count == 1)
        let gc = try project.squeeze(["cache", "gc", "--keep-runs", "0"] + project.storage(), environment: env)
        #expect(gc.status == 0, "\(gc)")
        #expect(gc.stdout.contains("removed 1 stale lock files"), "\(gc)")
        #expect(Self.lockFiles(project) == [])
    }

    // MARK: Helpers

    static func lines(_ path: String) -> [String] {
        let text = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// Polls with `Task.sleep`, so a waiting test leaves the cooperative pool to others.
    static func waitForLines(_ path: String, count: Int, timeout: Double = 120) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while lines(path).count < count {
            guard Date() < deadline else { throw HostDriver.Failure(description: "\(path) did not reach \(count) lines in \(timeout) s") }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Names in the cache's `locks/` other than the store-wide `.` files.
    static func lockFiles(_ project: Project) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: project.path("cache/locks"))) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    static func mtime(_ path: String) throws -> Double {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
    }
}

private final class ReaderState: Sendable {
    let running = Atomic<Bool>(true)
    let partial = Atomic<Int>(0)
    let complete = Atomic<Int>(0)
}

/// Whether `unshare -u` works here (root); under CI it must.
enum HostSimulation {
    static let isAvailable: Bool = {
        if ProcessInfo.processInfo.environment["CI"] == "true" { return true }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        probe.arguments = ["-u", "true"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        return probe.terminationStatus == 0
    }()
}

/// A `squeeze` process started under another host name (`unshare -u`, then
/// `hostname`, then exec), or on this host when `host` is nil; stdout and
/// stderr go to one file.
final class HostDriver: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct Result: CustomStringConvertible {
        var status: Int32
        var exitedNormally: Bool
        var output: String
        var seconds: Double
        var succeeded: Bool { exitedNormally && status == 0 }
        var description: String { "squeeze \(exitedNormally ? "exit" : "signal") \(status) after \(String(format: "%.2f", seconds)) s\n\(output)" }
        /// For `Project.record(of:)`, which reads the run id from stderr.
        var asCLIResult: SqueezeCLI.Result {
            SqueezeCLI.Result(status: status, exitedNormally: exitedNormally, timedOut: false, stdout: output, stderr: output, seconds: seconds)
        }
    }

    private let process = Process()
    private let outputPath: String
    private let started = Date()

    init(host: String?, _ arguments: [String], project: Project, environment: [String: String?] = [:]) throws {
        outputPath = project.path("driver-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let squeeze = SqueezeCLI.executable.path
        if let host {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            process.arguments = ["-u", "/bin/sh", "-c", "hostname \"$0\" && exec \"$@\"", host, squeeze] + arguments
        } else {
            process.executableURL = SqueezeCLI.executable
            process.arguments = arguments
        }
        process.currentDirectoryURL = project.root
        process.environment = SqueezeCLI.environment(environment)
        process.standardInput = FileHandle.nullDevice
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    deinit {
        if process.isRunning { killHard() }
    }

    /// Sends `signal` to squeeze alone, as a terminal's Ctrl-C would.
    func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// SIGKILLs squeeze and everything it started, as a node failure would.
    func killHard() {
        let pid = process.processIdentifier
        kill(pid, SIGSTOP)
        let descendants = ProcessTable.descendants(of: pid)
        kill(pid, SIGKILL)
        for child in descendants {
            kill(-child, SIGKILL)
            kill(child, SIGKILL)
        }
        process.waitUntilExit()
    }

    /// Waits for squeeze to end (polling with `Task.sleep`, which leaves the
    /// cooperative pool to other tests); kills it after `timeout` seconds.
    func wait(timeout: Double) async -> Result {
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { try? await Task.sleep(nanoseconds: 10_000_000) }
        if process.isRunning { killHard() }
        process.waitUntilExit()
        let output = FileManager.default.contents(atPath: outputPath).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return Result(
            status: process.terminationStatus, exitedNormally: process.terminationReason == .exit, output: output,
            seconds: Date().timeIntervalSince(started))
    }
}
