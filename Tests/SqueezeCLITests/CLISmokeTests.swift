import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct CLISmokeTests {
    @Test func printsVersion() throws {
        let result = try SqueezeCLI.run(["--version"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("0.1.0"))
    }

    @Test func unknownSubcommandIsAUsageError() throws {
        let result = try SqueezeCLI.run(["frobnicate"])
        #expect(result.exitedNormally)
        #expect(result.status == 2, "\(result)")
    }
}

/// Runs the built `squeeze` executable.
enum SqueezeCLI {
    struct Result: CustomStringConvertible {
        /// The exit code, or the signal number when `exitedNormally` is false.
        var status: Int32
        /// False when the process died of a signal (a crash, or our kill).
        var exitedNormally: Bool
        /// True when the process outlived its time limit and was killed.
        var timedOut: Bool
        var stdout: String
        var stderr: String
        var seconds: Double

        /// The id of the run squeeze started: from `squeeze: run ID (…)` on
        /// stderr, or from the `run_started` event with `--json`.
        var runID: String? {
            for line in stderr.split(separator: "\n") where line.hasPrefix("squeeze: run ") {
                return line.dropFirst("squeeze: run ".count).split(separator: " ").first.map(String.init)
            }
            for line in stdout.split(separator: "\n") where line.contains("\"run_started\"") {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return (object?["data"] as? [String: Any])?["run_id"] as? String
            }
            return nil
        }

        var description: String {
            let how = timedOut ? "timed out" : exitedNormally ? "exit \(status)" : "signal \(status)"
            return "squeeze \(how) after \(String(format: "%.2f", seconds)) s\n--- stdout\n\(stdout)--- stderr\n\(stderr)"
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The products directory holding the test bundle also holds `squeeze`.
    static var executable: URL {
        var url = Bundle.main.bundleURL
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: url.appendingPathComponent("squeeze").path) {
            url.deleteLastPathComponent()
        }
        return url.appendingPathComponent("squeeze")
    }

    /// The environment squeeze runs with: ours, without variables that would
    /// redirect its storage or add a remote cache, plus `environment` (a nil value removes a variable).
    static func environment(_ changes: [String: String?]) -> [String: String] {
        var result = ProcessInfo.processInfo.environment
        result["SQUEEZE_CACHE"] = nil
        result["SQUEEZE_RUNS"] = nil
        result["SQUEEZE_REMOTE_CACHE"] = nil
        for (name, value) in changes { result[name] = value }
        return result
    }

    /// Runs squeeze to completion. A run that outlives `timeout` is killed
    /// (with everything it started) and reported with `timedOut`.
    static func run(
        _ arguments: [String], in directory: URL? = nil, environment: [String: String?] = [:], timeout: Double = 60
    ) throws -> Result {
        let background = try start(arguments, in: directory, environment: environment)
        return background.wait(timeout: timeout)
    }

    /// Starts squeeze without waiting; stdout and stderr go to temporary files.
    static func start(
        _ arguments: [String], in directory: URL? = nil, environment: [String: String?] = [:]
    ) throws -> BackgroundSqueeze {
        try BackgroundSqueeze(arguments: arguments, directory: directory, environment: self.environment(environment))
    }
}

/// A squeeze process running in the background, in its own process group
/// (Foundation's `Process` puts each child in a new group).
final class BackgroundSqueeze: @unchecked Sendable {
    let process = Process()
    private let outputDirectory: URL
    private let started = Date()

    var pid: pid_t { process.processIdentifier }

    init(arguments: [String], directory: URL?, environment: [String: String]) throws {
        outputDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("squeeze-cli-output-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        let stdoutURL = outputDirectory.appendingPathComponent("stdout")
        let stderrURL = outputDirectory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = SqueezeCLI.executable
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: outputDirectory)
    }

    var isRunning: Bool { process.isRunning }

    /// Sends `signal` to squeeze alone (not to the commands it started).
    func send(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Simulates a power cut: freezes squeeze, then SIGKILLs it and every
    /// process it started (commands run in process groups of their own, which
    /// would otherwise outlive it and keep writing).
    func killHard() {
        kill(pid, SIGSTOP)
        let descendants = ProcessTable.descendants(of: pid)
        kill(pid, SIGKILL)
        for child in descendants {
            kill(-child, SIGKILL)
            kill(child, SIGKILL)
        }
    }

    /// Waits for the process to end; kills it (hard) after `timeout` seconds.
    func wait(timeout: Double) -> SqueezeCLI.Result {
        let deadline = started.addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() >= deadline {
                timedOut = true
                killHard()
                break
            }
            usleep(5_000)
        }
        process.waitUntilExit()
        return SqueezeCLI.Result(
            status: process.terminationStatus,
            exitedNormally: process.terminationReason == .exit,
            timedOut: timedOut,
            stdout: read("stdout"),
            stderr: read("stderr"),
            seconds: Date().timeIntervalSince(started))
    }

    private func read(_ name: String) -> String {
        let data = FileManager.default.contents(atPath: outputDirectory.appendingPathComponent(name).path) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Reads /proc to find the processes a process started.
enum ProcessTable {
    /// `(pid, parent pid, state)` of every process, from /proc/PID/stat.
    static func all() -> [(pid: pid_t, parent: pid_t, state: Character)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { name -> (pid_t, pid_t, Character)? in
            guard let pid = pid_t(name),
                  let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After "pid (comm)": state, ppid, ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let state = fields[0].first, let parent = pid_t(fields[1]) else { return nil }
            return (pid, parent, state)
        }
    }

    static func descendants(of root: pid_t) -> [pid_t] {
        let table = all()
        var result: [pid_t] = []
        var frontier = [root]
        while let parent = frontier.popLast() {
            let children = table.filter { $0.parent == parent }.map(\.pid)
            result += children
            frontier += children
        }
        return result
    }

    /// True while `pid` exists and is not a zombie.
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }
}
