import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The squeeze process that writes a run record, recorded so that readers can
/// tell a run still going from one whose process died without finishing the
/// record (kill -9, a crash, a power cut). A pid alone is not enough: pids are
/// reused, so the process start time and the boot id are recorded with it.
public struct RunProcess: Sendable, Codable, Equatable {
    public var pid: Int32
    /// When the process started, in clock ticks after boot (field 22 of
    /// /proc/PID/stat); another process later given the same pid differs.
    public var startTicks: UInt64
    /// /proc/sys/kernel/random/boot_id: a pid from before a reboot names nothing.
    public var bootID: String

    public init(pid: Int32, startTicks: UInt64, bootID: String) {
        self.pid = pid
        self.startTicks = startTicks
        self.bootID = bootID
    }

    /// This process, or nil where /proc does not tell (not Linux).
    public static func current() -> RunProcess? {
        let pid = ProcessInfo.processInfo.processIdentifier
        guard let bootID = currentBootID(), let started = startTicks(of: pid), !started.isZombie else { return nil }
        return RunProcess(pid: pid, startTicks: started.ticks, bootID: bootID)
    }

    /// Whether the process still runs: false when it is gone (or its pid now
    /// names another process, or the machine rebooted), nil when this machine
    /// cannot tell (the record comes from another host, or there is no /proc).
    func isAlive(recordedOnHost host: String) -> Bool? {
        guard host == Self.thisHost, let bootID = Self.currentBootID() else { return nil }
        guard bootID == self.bootID else { return false }
        guard let started = Self.startTicks(of: pid) else {
            // No /proc entry: gone, unless /proc hides other users' processes
            // (hidepid) and the pid still answers.
            return kill(pid, 0) == 0 || errno == EPERM ? nil : false
        }
        return !started.isZombie && started.ticks == startTicks
    }

    private static let thisHost = Provenance.host()

    private static func currentBootID() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8) else { return nil }
        let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return id.isEmpty ? nil : id
    }

    /// Start time and whether the process is a zombie (dead, not yet reaped),
    /// from /proc/PID/stat; nil when there is no such process.
    private static func startTicks(of pid: Int32) -> (ticks: UInt64, isZombie: Bool)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let commandEnd = stat.lastIndex(of: ")") else { return nil }
        // After "pid (command)": field 3 (state) onwards, so field 22 is at index 19.
        let fields = stat[stat.index(after: commandEnd)...].split(separator: " ")
        guard fields.count > 19, let ticks = UInt64(fields[19]) else { return nil }
        return (ticks, fields[0] == "Z" || fields[0] == "X")
    }
}
