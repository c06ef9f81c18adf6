import CProcessSupport
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a child process in its own process group, with stdout and stderr
/// appended to a log file, a timeout, and cancellation that kills the whole
/// group (the program and everything it started).
enum ChildProcess {
    enum Status: Equatable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
    }

    struct Outcome {
        var status: Status
        /// User + system CPU seconds of the child (and the children it waited for).
        var cpuSeconds: Double
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    static func run(
        executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String, logPath: String?, timeout: Double?
    ) async throws -> Outcome {
        let pid = try spawn(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: workingDirectory, logPath: logPath)
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        return try await withTaskCancellationHandler {
            var pollNanoseconds: UInt64 = 1_000_000
            while true {
                var status: Int32 = 0
                var usage = rusage()
                let result = wait4(pid, &status, WNOHANG, &usage)
                if result == pid {
                    return Outcome(status: decode(status), cpuSeconds: seconds(usage))
                }
                if result < 0, errno != EINTR {
                    throw SpawnError(description: "waitpid failed: \(String(cString: strerror(errno)))")
                }
                if let deadline, Date() >= deadline {
                    terminateGroup(pid)
                    return Outcome(status: .timedOut, cpuSeconds: 0)
                }
                if Task.isCancelled {
                    terminateGroup(pid)
                    throw CancellationError()
                }
                try? await Task.sleep(nanoseconds: pollNanoseconds)
                pollNanoseconds = min(pollNanoseconds * 2, 20_000_000)
            }
        } onCancel: {
            kill(-pid, SIGTERM)
        }
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

    private static func spawn(
        executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String, logPath: String?
    ) throws -> pid_t {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        let logTarget = logPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&fileActions, 1, logTarget, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        let chdirResult = squeeze_spawn_add_chdir(&fileActions, workingDirectory)
        guard chdirResult == 0 else {
            throw SpawnError(description: "cannot run in `\(workingDirectory)`: \(String(cString: strerror(chdirResult)))")
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        sigaddset(&defaultSignals, SIGINT)
        sigaddset(&defaultSignals, SIGTERM)
        sigaddset(&defaultSignals, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &fileActions, &attributes, argv, envp)
        guard result == 0 else {
            throw SpawnError(description: "could not start `\(executable)`: \(String(cString: strerror(result)))")
        }
        return pid
    }
}
