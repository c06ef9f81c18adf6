import Foundation
import Testing

import SqueezeSupport

@Suite struct ChildProcessTests {
    @Test func exitStatusAndOutputGoToTheLog() async throws {
        let directory = try TemporaryDirectory()
        let log = directory.path + "/log.txt"
        let outcome = try await ChildProcess.run(
            executable: "/bin/sh", arguments: ["sh", "-c", "echo out; echo err >&2; echo \"$GREETING\"; pwd; exit 3"],
            environment: ["GREETING": "hello"], workingDirectory: directory.path, logPath: log, timeout: 30)
        #expect(outcome.status == .exited(3))
        let text = String(decoding: try directory.contents("log.txt"), as: UTF8.self)
        let physical = URL(fileURLWithPath: directory.path).resolvingSymlinksInPath().path
        #expect(text == "out\nerr\nhello\n\(physical)\n")
    }

    @Test func aSignalAndATimeoutAreReported() async throws {
        let directory = try TemporaryDirectory()
        let killed = try await ChildProcess.run(
            executable: "/bin/sh", arguments: ["sh", "-c", "kill -TERM $$"],
            environment: [:], workingDirectory: directory.path, logPath: nil, timeout: 30)
        #expect(killed.status == .signaled(SIGTERM))
        let slow = try await ChildProcess.run(
            executable: "/bin/sleep", arguments: ["sleep", "30"],
            environment: [:], workingDirectory: directory.path, logPath: nil, timeout: 0.2)
        #expect(slow.status == .timedOut)
    }

    /// With every cooperative thread blocked past the deadline, a child that
    /// already exited still reports its exit, and one still running is
    /// stopped at its deadline and reported as timed out.
    @Test func timeoutsHoldWhileTheCooperativePoolIsBusy() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path
        let blockers = ProcessInfo.processInfo.activeProcessorCount * 2
        async let quick = ChildProcess.run(
            executable: "/bin/sh", arguments: ["sh", "-c", "exit 3"],
            environment: [:], workingDirectory: path, logPath: nil, timeout: 0.3)
        // Ends at 1 s, while the pool is still blocked: only a kill at its deadline reports the timeout
        // (a poll that ran late would see a normal exit). No wall-time bound: under a full test run the
        // pool stays busy with other suites, and when this task resumes says nothing about the watchdog.
        async let slow = ChildProcess.run(
            executable: "/bin/sleep", arguments: ["sleep", "1"],
            environment: [:], workingDirectory: path, logPath: nil, timeout: 0.3)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<blockers { group.addTask { usleep(1_500_000) } }
        }
        #expect(try await quick.status == .exited(3))
        #expect(try await slow.status == .timedOut)
    }

    @Test func aMissingWorkingDirectoryIsASpawnError() async throws {
        let directory = try TemporaryDirectory()
        let error = await #expect(throws: ChildProcess.SpawnError.self) {
            try await ChildProcess.run(
                executable: "/bin/true", arguments: ["true"], environment: [:],
                workingDirectory: directory.path + "/missing", logPath: nil, timeout: 30)
        }
        #expect(error?.description.contains("cannot run in") == true)
    }
}
