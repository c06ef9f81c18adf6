import Foundation
import Glibc
import SqueezeSupport

extension ContentStore {
    func entryPath(_ key: String) -> String { stagesDirectory + "/" + key + ".json" }

    private func checkKey(_ key: String) throws {
        guard StageEntry.isValidKey(key) else {
            throw StoreError(
                .invalidKey, path: "",
                "stage key `\(key)` must be 1-200 letters, digits, `.`, `_` or `-` and not start with `.`")
        }
    }

    /// The entry for `key`, or nil when there is none. An unreadable or
    /// corrupt entry is also nil, with a warning: it counts as a cache miss.
    public func entry(forKey key: String) -> StageEntry? {
        guard StageEntry.isValidKey(key) else {
            logger.warning("ignoring lookup of invalid stage key `\(key)`")
            return nil
        }
        do {
            return try readEntry(key)
        } catch {
            logger.warning("ignoring unreadable stage entry: \(error)")
            return nil
        }
    }

    /// nil when absent; throws `.corrupt` when unreadable.
    func readEntry(_ key: String) throws -> StageEntry? {
        let path = entryPath(key)
        guard let bytes = try FileSystem.readFileIfPresent(path) else { return nil }
        let entry: StageEntry
        do {
            entry = try SqueezeJSON.decode(StageEntry.self, from: bytes)
        } catch {
            throw StoreError.corrupt(path, "not a valid stage entry: \(error)")
        }
        guard entry.key == key else {
            throw StoreError.corrupt(path, "entry is for key `\(entry.key)`, not `\(key)`")
        }
        return entry
    }

    /// Writes the entry atomically. Every output must already be in the store
    /// (entries are written last, so an entry never points at nothing).
    public func save(_ entry: StageEntry) throws {
        try checkKey(entry.key)
        for (name, ref) in entry.outputs.sorted(by: { $0.key < $1.key }) where !contains(ref) {
            throw StoreError.missing(
                entryPath(entry.key), "output `\(name)` (\(ref.type.rawValue) \(ref.digest)) is not in the store; ingest outputs before saving their entry")
        }
        let bytes: Data
        do {
            bytes = Data(try SqueezeJSON.encode(entry))
        } catch {
            throw StoreError(.io, path: entryPath(entry.key), "could not encode the stage entry: \(error)")
        }
        try AtomicFile.write(Array(bytes), to: entryPath(entry.key), temporaryDirectory: privateTemporary)
    }

    /// Removes the entry for `key`; removing a missing entry is not an error.
    public func removeEntry(forKey key: String) throws {
        try checkKey(key)
        try FileSystem.removeFile(entryPath(key))
        try FileSystem.fsyncDirectory(stagesDirectory)
    }

    /// Every readable entry, sorted by key (unreadable ones are skipped with a warning).
    public func allEntries() -> [StageEntry] {
        let names: [String]
        do {
            names = try FileSystem.listDirectory(stagesDirectory)
        } catch {
            logger.warning("could not list stage entries: \(error)")
            return []
        }
        return names.sorted().compactMap { name in
            guard name.hasSuffix(".json") else { return nil }
            let key = String(name.dropLast(5))
            guard StageEntry.isValidKey(key) else { return nil }
            return entry(forKey: key)
        }
    }

    // MARK: Locks

    /// Waits until this caller holds the lock of `key`, across threads, store
    /// instances and processes (an `flock` on `locks/<key>.lock`). Polls with
    /// a growing sleep, so cancelling the task ends the wait (it then throws
    /// `CancellationError`).
    public func lock(key: String) async throws -> StoreLock {
        try checkKey(key)
        let path = locksDirectory + "/" + key + ".lock"
        var delay: UInt64 = 1_000_000
        while true {
            try Task.checkCancellation()
            let file = HeldFile(descriptor: try FileSystem.open(path, O_RDWR | O_CREAT), path: path)
            while true {
                if try file.tryLock(LOCK_EX) {
                    // Garbage collection may have removed the file after it was opened.
                    guard try file.isStillAtPath() else { break }
                    let fd = dup(file.descriptor)
                    guard fd >= 0 else { throw StoreError.io(path, "dup", errno: errno) }
                    return StoreLock(key: key, descriptor: fd)
                }
                try await Task.sleep(nanoseconds: delay)
                delay = min(delay * 2, 50_000_000)
            }
        }
    }
}
