import Foundation
import Glibc
import SqueezeSupport

extension ContentStore {
    func lockPath(_ key: String) -> String { locksDirectory + "/" + key + ".lock" }

    /// Waits until this caller holds the lock of `key`, across threads, store
    /// instances, processes and hosts sharing the store's file system.
    ///
    /// The lock is the file `locks/<key>.lock`, naming its holder (host, pid,
    /// boot id, pid namespace, process start time); it exists only while held.
    /// A claim file is written in full under a unique name and hard-linked to
    /// the lock's name, which succeeds for exactly one claimant, also on NFS.
    /// A waiter that finds the lock held takes it over when it is stale: at
    /// once when its holder ran on this host and has exited (or its pid now
    /// belongs to another process), after `LockTiming.staleAfterSeconds`
    /// (or three of the holder's heartbeat intervals, if longer) without a
    /// heartbeat otherwise. It sleeps between looks with a growing
    /// delay (up to `LockTiming.maximumPollSeconds`); cancelling the task
    /// ends the wait with `CancellationError`.
    public func lock(key: String) async throws -> StoreLock {
        try checkKey(key)
        let path = lockPath(key)
        let owner = LockOwner.current(timing: lockTiming)
        let claim = try LockClaim(lockPath: path, owner: owner)
        defer { claim.discard() }
        let maximumPoll = min(max(lockTiming.maximumPollSeconds, 0.001), 60)
        var delay = 0.001
        var reported: String?
        while true {
            try Task.checkCancellation()
            if try claim.link() {
                let identity = try FileSystem.fstat(claim.descriptor, path: path)
                return StoreLock(
                    key: key, path: path, owner: owner, descriptor: claim.takeDescriptor(), identity: identity,
                    timing: lockTiming, logger: logger)
            }
            guard let observation = try LockFiles.observe(path) else { continue }
            switch LockFiles.verdict(observation, now: try claim.fileSystemNow(), timing: lockTiming) {
            case .stale(let reason):
                let expected = observation.status
                if try LockFiles.remove(path, logger: logger, isExpected: {
                    $0.isSameFile(as: expected) && $0.mtimeNanoseconds == expected.mtimeNanoseconds
                }) {
                    logger.warning("took over the stale lock of key `\(key)` \(reason)")
                    continue
                }
                // It changed while being checked (a heartbeat, a new holder): look again after a pause.
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(delay * 2, maximumPoll)
            case .live:
                let holder = observation.owner?.summary ?? "an unknown process"
                if reported != holder {
                    logger.debug("waiting for the lock of key `\(key)`, held by \(holder)")
                    reported = holder
                }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(delay * 2, maximumPoll)
            }
        }
    }

    /// Stale files in `locks/`: locks whose holder is gone, and claims and
    /// set-aside locks left by processes killed while they took or released
    /// one. With `remove`, each is deleted (a lock only if it is still the
    /// file judged stale). Returns "path: why" for each.
    func staleLockFiles(remove: Bool) throws -> [String] {
        let now = try fileSystemNow()
        var stale: [String] = []
        for name in try FileSystem.listDirectory(locksDirectory).sorted() where !name.hasPrefix(".") {
            let isLock = name.hasSuffix(".lock") && StageEntry.isValidKey(String(name.dropLast(5)))
            guard isLock || name.hasSuffix(".claim") || name.hasSuffix(".aside") else { continue }
            let path = locksDirectory + "/" + name
            guard let observation = try LockFiles.observe(path),
                  case .stale(let reason) = LockFiles.verdict(observation, now: now, timing: lockTiming)
            else { continue }
            if remove, isLock {
                let expected = observation.status
                guard try LockFiles.remove(path, logger: logger, isExpected: {
                    $0.isSameFile(as: expected) && $0.mtimeNanoseconds == expected.mtimeNanoseconds
                }) else { continue }
            } else if remove {
                // Claims and set-aside locks are nobody's lock: no one waits on their names.
                try FileSystem.removeFile(path)
            }
            let kind = isLock ? "lock" : name.hasSuffix(".claim") ? "leftover claim" : "lock set aside"
            stale.append("\(path): \(kind) \(reason)")
        }
        return stale
    }

    /// The current time of the store's file system (an NFS server's, not
    /// this host's): the mtime of a file touched in the staging area.
    func fileSystemNow() throws -> Int64 {
        let probe = privateTemporary + "/clock"
        let fd = try FileSystem.open(probe, O_WRONLY | O_CREAT, mode: 0o600)
        defer { close(fd) }
        guard futimens(fd, nil) == 0 else { throw StoreError.io(probe, "futimens", errno: errno) }
        return try FileSystem.fstat(fd, path: probe).mtimeNanoseconds
    }
}

/// A would-be holder's claim: `locks/<key>.lock.<random>.claim`, holding the
/// complete owner record, which `link` gives the lock's name.
final class LockClaim {
    let path: String
    let lockPath: String
    private(set) var descriptor: Int32

    init(lockPath: String, owner: LockOwner) throws {
        self.lockPath = lockPath
        path = lockPath + "." + FileSystem.randomSuffix() + ".claim"
        let writer = try FileSystem.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        descriptor = -1
        do {
            defer { close(writer) }
            try SqueezeJSON.encode(owner).withUnsafeBytes { try FileSystem.writeAll(writer, $0, path: path) }
        } catch {
            discard()
            throw error
        }
        // Closing sends the record to an NFS server (close-to-open), so whoever
        // opens the lock once it is linked reads it whole. No fsync: a lock
        // needs no durability, its holder dies with a crash. The descriptor
        // kept for the heartbeat is a fresh one.
        do {
            descriptor = try FileSystem.open(path, O_RDWR)
        } catch {
            discard()
            throw error
        }
    }

    /// Links the claim to the lock's name; true when this claim now holds it.
    /// On NFS a retransmitted LINK whose first reply was lost fails although
    /// it worked, so the claim's link count decides, as in the classic recipe.
    func link() throws -> Bool {
        if Glibc.link(path, lockPath) == 0 { return true }
        let code = errno
        if let status = try FileSystem.lstatIfPresent(path), status.linkCount == 2 { return true }
        if code == EEXIST { return false }
        throw StoreError.io(path, "link to \(lockPath)", errno: code)
    }

    /// The file system's current time: the claim's mtime, set to now.
    func fileSystemNow() throws -> Int64 {
        guard futimens(descriptor, nil) == 0 else { throw StoreError.io(path, "futimens", errno: errno) }
        return try FileSystem.fstat(descriptor, path: path).mtimeNanoseconds
    }

    /// Hands the descriptor (now the lock file's) to the holder; the claim's
    /// own name is removed by `discard`.
    func takeDescriptor() -> Int32 {
        let taken = descriptor
        descriptor = -1
        return taken
    }

    /// Removes the claim's name (the lock keeps the file when it was linked).
    func discard() {
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
        try? FileSystem.removeFile(path)
    }
}
