import Synchronization

/// Digests of files this process has just written, so that the next reader of
/// the same unchanged file takes the digest instead of hashing it again: a
/// stage's model files are hashed as they are written, and sealing the model
/// artifact and the store's ingest both use that.
///
/// Recorded only by `AtomicFile.Writer` with hashing, which knows the digest
/// is of exactly the bytes it wrote to a file it created (`O_EXCL`), with the
/// status taken after fsync. A record is keyed by the absolute path and the
/// file's device, inode, size and modification time, and is used only while
/// all of them still match. Bounded: when full, the table starts again empty.
package enum KnownDigests {
    private struct Key: Hashable {
        var path: String
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var mtimeNanoseconds: Int64

        init(_ path: String, _ status: FileSystem.Status) {
            self.path = FileSystem.absolute(path)
            device = status.device
            inode = status.inode
            size = status.size
            mtimeNanoseconds = status.mtimeNanoseconds
        }
    }

    private static let capacity = 4096
    private static let table = Mutex<[Key: Digest]>([:])

    static func record(_ digest: Digest, path: String, status: FileSystem.Status) {
        guard status.isRegularFile else { return }
        let key = Key(path, status)
        table.withLock { table in
            if table.count >= capacity { table.removeAll(keepingCapacity: true) }
            table[key] = digest
        }
    }

    /// The digest recorded for the file at `path` while it has this status, if any.
    package static func digest(path: String, status: FileSystem.Status) -> Digest? {
        let key = Key(path, status)
        return table.withLock { $0[key] }
    }
}
