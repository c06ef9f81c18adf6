import Glibc
import SqueezeSupport

/// Resumable areas: `resumable/<key>/`, one directory per stage key where a
/// long stage keeps what it needs to continue after being killed, preempted
/// or timed out (a training stage's latest checkpoint). The store only hands
/// out, removes and garbage-collects the directories; what is inside is the
/// stage's. An area lives outside the staging directory, which is deleted
/// after every attempt, and outside `stages/`: it is never a result.
extension ContentStore {
    /// `resumable/`, the parent of every area.
    var resumableRoot: String { root + "/resumable" }

    /// The resumable area of `key`: an absolute path, not created until the
    /// stage first writes there (most stages never do). Throws for a key that
    /// is not a valid entry name.
    public func resumableDirectory(forKey key: String) throws -> String {
        guard StageEntry.isValidKey(key) else {
            throw StoreError(.invalidKey, path: root, "invalid stage key \(key.debugDescription)")
        }
        return resumableRoot + "/" + key
    }

    /// Removes the resumable area of `key` (after its entry is saved, or
    /// before a forced rerun); a missing area is fine.
    public func removeResumableArea(forKey key: String) throws {
        try FileSystem.removeTree(try resumableDirectory(forKey: key))
        try? FileSystem.fsyncDirectory(resumableRoot)
    }

    /// The keys that have a resumable area.
    public func resumableKeys() throws -> [String] {
        guard try FileSystem.lstatIfPresent(resumableRoot)?.isDirectory == true else { return [] }
        return try FileSystem.listDirectory(resumableRoot).filter(StageEntry.isValidKey).sorted()
    }

    /// Removes the orphaned resumable areas: those whose key has a stage
    /// entry (the stage finished; the runner removes its area itself, so such
    /// an area is left over from a crash between the two), those not written
    /// for `maximumAge` seconds or more (nobody resumed them; 0 removes every
    /// area) and anything under `resumable/` that is not an area — but never
    /// the area of a key whose lock file exists: `collectGarbage` calls this
    /// after removing the stale lock files, so what is left is held by a live
    /// run (on this host or another sharing the store) that may be writing there.
    func removeOrphanedResumableAreas(olderThan maximumAge: Double, report: inout GCReport) throws {
        guard try FileSystem.lstatIfPresent(resumableRoot)?.isDirectory == true else { return }
        let cutoff = FileSystem.nowNanoseconds() - Int64(maximumAge * 1e9)
        for name in try FileSystem.listDirectory(resumableRoot) {
            let path = resumableRoot + "/" + name
            let isDirectory = try FileSystem.lstat(path).isDirectory
            let isArea = StageEntry.isValidKey(name) && isDirectory
            if isArea, try FileSystem.lstatIfPresent(lockPath(name)) != nil { continue }
            if isArea, entry(forKey: name) == nil, try Self.newestModification(path) > cutoff { continue }
            report.removedBytes += try Self.totalSize(path)
            report.removedResumableAreas += 1
            try FileSystem.removeTree(path)
        }
        try FileSystem.fsyncDirectory(resumableRoot)
    }

    /// The newest mtime (nanoseconds) of `path` and everything below it.
    private static func newestModification(_ path: String) throws -> Int64 {
        let status = try FileSystem.lstat(path)
        guard status.isDirectory else { return status.mtimeNanoseconds }
        return try FileSystem.listDirectory(path).reduce(status.mtimeNanoseconds) { newest, name in
            max(newest, try newestModification(path + "/" + name))
        }
    }

    /// The bytes of the files at and below `path`.
    private static func totalSize(_ path: String) throws -> Int64 {
        let status = try FileSystem.lstat(path)
        guard status.isDirectory else { return status.size }
        return try FileSystem.listDirectory(path).reduce(0) { total, name in total + (try totalSize(path + "/" + name)) }
    }
}
