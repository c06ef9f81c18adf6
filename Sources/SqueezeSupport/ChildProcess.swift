import CProcessSupport
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a child process in its own process group, with stdout and stderr
/// appended to a log file, a timeout, and cancellation that kills the whole
/// group (the program and everything it started). The group also dies when
/// squeeze does, even by SIGKILL (see `squeeze_spawn_supervised`).
package enum ChildProcess {
    package enum Status: Equatable, Sendable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
    }

    package struct Outcome: Sendable {
        package var status: Status
        /// User + system CPU seconds of the child (and the children it waited for).
        package var cpuSeconds: Double
    }

    package struct SpawnError: Error, CustomStringConvertible {
        package var description: String
    }

    package static func run(
        executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String, logPath: String?, timeout: Double?
    ) async throws -> Outcome {
        let pid = try spawn(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: workingDirectory, logPath: logPath)
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        let watchdog = TimeoutWatchdog(pid: pid, timeout: timeout)
        return try await withTaskCancellationHandler {
            var pollNanoseconds: UInt64 = 1_000_000
            while true {
                if let outcome = try watchdog.poll({ try poll(pid, deadline: deadline) }) { return outcome }
                try? await Task.sleep(nanoseconds: pollNanoseconds)
                pollNanoseconds = min(pollNanoseconds * 2, 20_000_000)
            }
        } onCancel: {
            kill(-pid, SIGTERM)
        }
    }

    /// Stops the child's group at its deadline from a GCD thread, so a
    /// timeout is on time even while the cooperative threads that poll the
    /// child are all busy (the poll then reports the timeout, not the
    /// signal). The child is reaped only under the lock the watchdog takes,
    /// so its pid cannot be reused before the watchdog has had its say.
    private final class TimeoutWatchdog: @unchecked Sendable {
        private let lock = NSLock()
        private var fired = false
        private var finished = false

        init(pid: pid_t, timeout: Double?) {
            guard let timeout else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + max(timeout, 0)) { [self] in
                lock.withLock {
                    guard !finished, !Self.hasEnded(pid) else { return }
                    fired = true
                    kill(-pid, SIGTERM)
                }
            }
        }

        /// Whether the child has ended (it may not be reaped yet: a poll
        /// delayed past the deadline must still report its own exit).
        private static func hasEnded(_ pid: pid_t) -> Bool {
            var info = siginfo_t()
            return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == pid
        }

        /// `body`'s outcome (a poll of the child), or a timeout once the watchdog fired.
        func poll(_ body: () throws -> Outcome?) throws -> Outcome? {
            try lock.withLock {
                let outcome = try body()
                if outcome != nil { finished = true }
                guard fired, let outcome else { return outcome }
                return Outcome(status: .timedOut, cpuSeconds: outcome.cpuSeconds)
            }
        }
    }

    /// `run` for a caller that cannot suspend (a cache key is made
    /// synchronously): blocks the calling thread until the child ends, polling
    /// so that the timeout and the cancellation of the current task still end
    /// the whole group.
    package static func runBlocking(
        executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String, logPath: String?, timeout: Double?
    ) throws -> Outcome {
        let pid = try spawn(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: workingDirectory, logPath: logPath)
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var pollMicroseconds: UInt32 = 1000
        while true {
            if let outcome = try poll(pid, deadline: deadline) { return outcome }
            usleep(pollMicroseconds)
            pollMicroseconds = min(pollMicroseconds * 2, 20_000)
        }
    }

    /// One look at a running child: its outcome once it has ended or timed
    /// out (the whole group is then ended), nil while it runs; cancelling
    /// the current task ends the group and throws.
    private static func poll(_ pid: pid_t, deadline: Date?) throws -> Outcome? {
        if let outcome = try reapIfEnded(pid) { return outcome }
        if let deadline, Date() >= deadline {
            terminateGroup(pid)
            return Outcome(status: .timedOut, cpuSeconds: 0)
        }
        if Task.isCancelled {
            terminateGroup(pid)
            throw CancellationError()
        }
        return nil
    }

    /// The child's outcome if it has ended (and is now reaped), else nil.
    private static func reapIfEnded(_ pid: pid_t) throws -> Outcome? {
        var status: Int32 = 0
        var usage = rusage()
        let result = wait4(pid, &status, WNOHANG, &usage)
        if result == pid {
            return Outcome(status: decode(status), cpuSeconds: seconds(usage))
        }
        if result < 0, errno != EINTR {
            throw SpawnError(description: "waitpid failed: \(String(cString: strerror(errno)))")
        }
        return nil
    }

    /// SIGTERM to the group, a grace period, then SIGKILL; reaps the child.
    private static func terminateGroup(_ pid: pid_t) {
        kill(-pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<50 {
            if waitpid(pid, &status, WNOHANG) == pid {
                kill(-pid, SIGKILL)
                return
            }
            usleep(20_000)
        }
        kill(-pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    private static func seconds(_ usage: rusage) -> Double {
        Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    private static func decode(_ status: Int32) -> Status {
        let signal = status & 0x7f
        if signal == 0 { return .exited((status >> 8) & 0xff) }
        return .signaled(signal)
    }

    /// Grace the supervisor gives the program after squeeze died, before SIGKILL.
    private static let orphanGraceMilliseconds: Int32 = 2000

    /// Starts the program under the supervisor of `squeeze_spawn_supervised`,
    /// which ends it (and its process group) when squeeze dies.
    private static func spawn(
        executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String, logPath: String?
    ) throws -> pid_t {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        var failedStep: Int32 = 0
        let result = squeeze_spawn_supervised(
            executable, argv, envp, workingDirectory, logPath, orphanGraceMilliseconds, &pid, &failedStep)
        guard result == 0 else {
            let reason = String(cString: strerror(result))
            switch UInt32(failedStep) {
            case SQUEEZE_SPAWN_STEP_LOG.rawValue:
                throw SpawnError(description: "cannot open the log `\(logPath ?? "/dev/null")`: \(reason)")
            case SQUEEZE_SPAWN_STEP_CHDIR.rawValue:
                throw SpawnError(description: "cannot run in `\(workingDirectory)`: \(reason)")
            default:
                throw SpawnError(description: "could not start `\(executable)`: \(reason)")
            }
        }
        return pid
    }
}
