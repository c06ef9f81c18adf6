import Foundation
import Glibc
import Logging
import Synchronization
import SqueezeSupport

/// How often a key lock's holder proves it is alive, and when a waiter on
/// another host stops believing it. Every process sharing a store should use
/// the same values; a waiter gives a holder at least three of the holder's
/// own heartbeat intervals (recorded in the lock file).
public struct LockTiming: Sendable, Equatable {
    /// Seconds between heartbeats (the holder sets its lock file's mtime to now).
    public var heartbeatSeconds: Double
    /// A lock whose heartbeat is older than this (and than three of its
    /// holder's heartbeat intervals) is stale and taken over, unless its
    /// holder runs on this host and is known to be alive.
    public var staleAfterSeconds: Double
    /// The longest a waiter sleeps between two looks at a held lock.
    public var maximumPollSeconds: Double

    public init(heartbeatSeconds: Double = 10, staleAfterSeconds: Double = 60, maximumPollSeconds: Double = 0.5) {
        self.heartbeatSeconds = heartbeatSeconds
        self.staleAfterSeconds = staleAfterSeconds
        self.maximumPollSeconds = maximumPollSeconds
    }

    /// Heartbeat every 10 s, stale after 60 s without one (3 missed beats
    /// plus 30 s for a slow file server or a loaded node).
    public static let standard = LockTiming()

    /// `standard`, with `SQUEEZE_LOCK_HEARTBEAT_SECONDS` and
    /// `SQUEEZE_LOCK_STALE_SECONDS` overriding its fields (for a file server
    /// slower than the defaults allow). A value that is not a positive
    /// number is an error.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LockTiming {
        var timing = LockTiming.standard
        func seconds(_ name: String) throws -> Double? {
            guard let text = environment[name] else { return nil }
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite, value > 0 else {
                throw UserError("\(name) must be a positive number of seconds; got `\(text)`")
            }
            return value
        }
        if let value = try seconds("SQUEEZE_LOCK_HEARTBEAT_SECONDS") { timing.heartbeatSeconds = value }
        if let value = try seconds("SQUEEZE_LOCK_STALE_SECONDS") { timing.staleAfterSeconds = value }
        return timing
    }
}

/// Who holds a key lock: the JSON content of `locks/<key>.lock`, written once
/// before the file gets its name. The heartbeat is the file's mtime, not a
/// field: the holder refreshes it with `futimens`, which on NFS sets the
/// server's time, so a waiter compares it with the server's clock (the mtime
/// of its own claim file), never with its own.
struct LockOwner: Codable, Equatable, Sendable {
    var host: String
    var pid: Int
    /// `/proc/sys/kernel/random/boot_id` of the holder's machine.
    var bootID: String?
    /// `/proc/self/ns/pid` of the holder: pids only compare within one namespace.
    var pidNamespace: String?
    /// Start time of the holder (clock ticks after boot, `/proc/PID/stat`),
    /// which tells a reused pid from the holder.
    var processStart: Int?
    var createdAt: Date
    var heartbeatSeconds: Double
    /// Random, distinct for every acquisition.
    var token: String

    enum CodingKeys: String, CodingKey {
        case host, pid, token
        case bootID = "boot_id"
        case pidNamespace = "pid_namespace"
        case processStart = "process_start"
        case createdAt = "created_at"
        case heartbeatSeconds = "heartbeat_seconds"
    }

    static func current(timing: LockTiming) -> LockOwner {
        let identity = ProcessIdentity.current
        return LockOwner(
            host: identity.host, pid: Int(getpid()), bootID: identity.bootID, pidNamespace: identity.pidNamespace,
            processStart: identity.processStart, createdAt: Date(), heartbeatSeconds: timing.heartbeatSeconds,
            token: FileSystem.randomSuffix() + FileSystem.randomSuffix())
    }

    /// "pid 123 on node-a"
    var summary: String { "pid \(pid) on \(host)" }
}

/// What identifies this process and its machine to other processes sharing the store.
struct ProcessIdentity: Sendable {
    var host: String
    var bootID: String?
    var pidNamespace: String?
    var processStart: Int?

    static let current = ProcessIdentity(
        host: hostName(), bootID: firstLine(of: "/proc/sys/kernel/random/boot_id"),
        pidNamespace: symbolicLink("/proc/self/ns/pid"), processStart: startTime(of: getpid()))

    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "unknown-host" : name
    }

    private static func firstLine(of path: String) -> String? {
        guard let bytes = try? FileSystem.readFileIfPresent(path) else { return nil }
        let line = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return line.isEmpty ? nil : line
    }

    private static func symbolicLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Start time of a live (not zombie) process in clock ticks after boot,
    /// field 22 of `/proc/PID/stat`; nil when there is no such process.
    static func startTime(of pid: pid_t) -> Int? {
        guard let bytes = try? FileSystem.readFileIfPresent("/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // The command name (field 2) may hold spaces and parentheses; fields 3... follow the last `)`.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3), so field 22 is fields[19].
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return Int(fields[19])
    }

    /// The host name with anything but letters, digits, `.`, `-` and `_` as `_`, for file names.
    var fileNameHost: String {
        String(host.unicodeScalars.prefix(64).map { scalar -> Character in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || ".-_".unicodeScalars.contains(scalar))
                ? Character(scalar) : "_"
        })
    }

    /// Whether `owner` is a process of this machine and pid namespace, whose
    /// liveness `/proc` can tell.
    func isLocal(_ owner: LockOwner) -> Bool {
        guard owner.host == host, let bootID, let pidNamespace else { return false }
        return owner.bootID == bootID && owner.pidNamespace == pidNamespace
    }
}

/// A held per-key lock (`locks/<key>.lock`, see `ContentStore.lock(key:)`).
/// While held, a background heartbeat sets the lock file's mtime every
/// `LockTiming.heartbeatSeconds`. Released by `release()` or when the value
/// is deallocated; a holder that dies stops beating, and waiters take the
/// lock over (at once on the same host, after `staleAfterSeconds` elsewhere).
public final class StoreLock: Sendable {
    public let key: String
    let path: String
    let owner: LockOwner
    private let logger: Logger
    private let state: Mutex<Held?>

    private struct Held {
        var descriptor: Int32
        var identity: FileSystem.Status
        var timer: (any DispatchSourceTimer)?
        var lost = false
    }

    /// One serial queue beats for every lock of the process: a heartbeat is a
    /// `futimens` and two `stat`s, and GCD threads keep beating while the
    /// cooperative pool is busy with stage work.
    private static let heartbeatQueue = DispatchQueue(label: "squeeze.store.lock-heartbeat")

    init(key: String, path: String, owner: LockOwner, descriptor: Int32, identity: FileSystem.Status, timing: LockTiming, logger: Logger) {
        self.key = key
        self.path = path
        self.owner = owner
        self.logger = logger
        // Clamped to [1 ms, 1 day], so no setting can make a busy timer or overflow.
        let interval = DispatchTimeInterval.nanoseconds(Int(min(max(timing.heartbeatSeconds, 0.001), 86_400) * 1e9))
        let timer = DispatchSource.makeTimerSource(queue: StoreLock.heartbeatQueue)
        timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(10))
        state = Mutex(Held(descriptor: descriptor, identity: identity, timer: timer))
        state.withLock { held in
            held?.timer?.setEventHandler { [weak self] in self?.beat() }
            held?.timer?.resume()
        }
    }

    /// False once released, or once another process has taken the lock over
    /// (this holder's heartbeat stalled past the stale threshold). The holder
    /// may still finish its work: every store write is safe to do twice.
    public var isHeld: Bool { state.withLock { $0.map { !$0.lost } ?? false } }

    /// Sets the lock file's mtime to now, and notices a takeover. A lost lock
    /// keeps its descriptor: `release` still removes the file if a waiter that
    /// was checking it put it back.
    private func beat() {
        state.withLock { held in
            guard let current = held, !current.lost else { return }
            let problem: String?
            if futimens(current.descriptor, nil) != 0 {
                problem = "its heartbeat failed: \(String(cString: strerror(errno)))"
            } else if let status = try? FileSystem.lstatIfPresent(path), status.isSameFile(as: current.identity) {
                problem = nil
            } else {
                problem = "another process took it over"
            }
            guard let problem else { return }
            logger.warning("lost the lock of key `\(key)`: \(problem); the stage may be computed twice (safe: its writes are idempotent)")
            current.timer?.cancel()
            held?.lost = true
        }
    }

    /// Stops the heartbeat and removes the lock file if it is still this
    /// holder's; calling it again does nothing.
    public func release() {
        guard let held = state.withLock({ held -> Held? in
            defer { held = nil }
            return held
        }) else { return }
        held.timer?.cancel()
        defer { close(held.descriptor) }
        do {
            // A waiter checking the lock may have set it aside for a moment; it then puts it back.
            for attempt in 0..<5 {
                if attempt > 0 { usleep(10_000) }
                guard let status = try FileSystem.lstatIfPresent(path), status.isSameFile(as: held.identity) else { continue }
                if try LockFiles.remove(path, logger: logger, isExpected: { $0.isSameFile(as: held.identity) }) { return }
            }
            if !held.lost {
                logger.warning("the lock of key `\(key)` was taken over by another process before it was released")
            }
        } catch {
            logger.warning("could not remove the lock of key `\(key)`: \(error)")
        }
    }

    deinit { release() }
}

/// The lock-file protocol, safe on NFS without `flock`: a claim file written
/// in full under a unique name is hard-linked to the lock's name (`link` is
/// atomic and exclusive on NFS, where `O_EXCL` was not always), and a lock is
/// removed by renaming it aside and checking it is still the file that was
/// judged, so a lock refreshed or retaken meanwhile is put back.
enum LockFiles {
    /// A lock file as a waiter saw it.
    struct Observation {
        var status: FileSystem.Status
        var owner: LockOwner?
    }

    enum Verdict: Equatable {
        case live
        case stale(String)
    }

    /// Opens and reads the file at `path` (opening revalidates NFS's cached
    /// attributes), or nil when there is none.
    static func observe(_ path: String) throws -> Observation? {
        // O_NOFOLLOW: a symbolic link in `locks/` is an error, not a lock to wait for.
        guard let fd = try FileSystem.openIfPresent(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW) else { return nil }
        defer { close(fd) }
        let status = try FileSystem.fstat(fd, path: path)
        guard status.isRegularFile else { return Observation(status: status, owner: nil) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        let owner = count > 0 ? try? SqueezeJSON.decode(LockOwner.self, from: buffer.prefix(count)) : nil
        return Observation(status: status, owner: owner)
    }

    /// Whether a lock file is held by a live process: a holder of this host
    /// (same boot, same pid namespace) by its pid and start time, any other
    /// (or a file that names no owner) by the age of its heartbeat against
    /// `now`, a time from the same file system's clock.
    static func verdict(_ observation: Observation, now: Int64, timing: LockTiming) -> Verdict {
        let identity = ProcessIdentity.current
        if let owner = observation.owner, identity.isLocal(owner) {
            let start = Int32(exactly: owner.pid).flatMap(ProcessIdentity.startTime(of:))
            if let start, start == owner.processStart { return .live }
            let reused = start == nil ? "" : " (its pid now belongs to another process)"
            return .stale("whose holder, \(owner.summary), has exited\(reused)")
        }
        let age = (Double(now) - Double(observation.status.mtimeNanoseconds)) / 1e9
        // A holder configured with a slower heartbeat than this waiter expects is given three of its beats.
        let threshold = max(timing.staleAfterSeconds, 3 * (observation.owner?.heartbeatSeconds ?? 0))
        guard age > threshold else { return .live }
        let holder = observation.owner.map { "held by \($0.summary)" } ?? "with no owner record"
        return .stale("\(holder), without a heartbeat for \(String(format: "%.1f", age)) s (stale after \(String(format: "%g", threshold)) s)")
    }

    /// Renames `path` aside and deletes it if `isExpected` holds for what was
    /// moved; otherwise links it back. True when the expected file was removed.
    static func remove(_ path: String, logger: Logger, isExpected: (FileSystem.Status) -> Bool) throws -> Bool {
        let aside = path + "." + FileSystem.randomSuffix() + ".aside"
        if Glibc.rename(path, aside) != 0 {
            let code = errno
            // NFS: a retransmitted RENAME whose first reply was lost fails with ENOENT although it worked.
            guard code == ENOENT, try FileSystem.lstatIfPresent(aside) != nil else {
                if code == ENOENT { return false }
                throw StoreError.io(path, "rename to \(aside)", errno: code)
            }
        }
        guard let moved = try FileSystem.openIfPresent(aside, O_RDONLY | O_NONBLOCK) else { return false }
        let status: FileSystem.Status
        do {
            defer { close(moved) }
            status = try FileSystem.fstat(moved, path: aside)
        }
        if isExpected(status) {
            try FileSystem.removeFile(aside)
            return true
        }
        switch try FileSystem.link(aside, to: path) {
        case .linked:
            break
        case .exists, .crossDevice, .tooManyLinks:
            logger.warning("\(path) changed while it was being removed and a new holder took it meanwhile; its old holder may compute the same stage twice (safe)")
        }
        try FileSystem.removeFile(aside)
        return false
    }
}

/// A file kept open for a `flock` held as long as the owner lives (the
/// store-wide `.store.lock`, the stat cache's lock, staging areas).
final class HeldFile: Sendable {
    let descriptor: Int32
    let path: String

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// `flock(LOCK_NB | operation)`; false when another holder conflicts.
    func tryLock(_ operation: Int32) throws -> Bool {
        if flock(descriptor, operation | LOCK_NB) == 0 { return true }
        if errno == EWOULDBLOCK { return false }
        throw StoreError.io(path, "flock", errno: errno)
    }

    /// Blocking `flock`.
    func lock(_ operation: Int32) throws {
        while flock(descriptor, operation) != 0 {
            if errno != EINTR { throw StoreError.io(path, "flock", errno: errno) }
        }
    }

    /// Whether `path` still names the open file (it may have been removed
    /// and recreated after this descriptor was opened).
    func isStillAtPath() throws -> Bool {
        guard let current = try FileSystem.lstatIfPresent(path) else { return false }
        return try FileSystem.fstat(descriptor, path: path).isSameFile(as: current)
    }
}
