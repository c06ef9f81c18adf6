import Foundation
import Glibc
import SqueezeSupport

extension ContentStore {
    func entryPath(_ key: String) -> String { stagesDirectory + "/" + key + ".json" }

    func checkKey(_ key: String) throws {
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
}
