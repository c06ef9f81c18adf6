import Crypto
import Foundation
import Glibc

/// Whole-file writes that a crash can never leave half done, the one
/// implementation in Squeeze: the bytes go to a temporary file (beside the
/// target, or in a given directory on the same filesystem), which is fsynced
/// and renamed over the target; then the target's directory is fsynced. A
/// reader (or a crash) sees the old file or the complete new one.
public enum AtomicFile {
    /// Writes `data` to `path`, creating missing parent directories.
    public static func write(_ data: Data, to path: String) throws {
        try FileSystem.makeDirectories(FileSystem.parent(of: path))
        try write(Array(data), to: path)
    }

    /// Writes `bytes` to `path`; the temporary file goes in
    /// `temporaryDirectory` (which must be on the target's filesystem) or,
    /// when nil, beside the target.
    package static func write(
        _ bytes: [UInt8], to path: String, temporaryDirectory: String? = nil, mode: mode_t = 0o644
    ) throws {
        let writer = try Writer(path: path, temporaryDirectory: temporaryDirectory, mode: mode)
        try writer.write(bytes)
        try writer.commit()
    }

    /// A file written piece by piece, then made durable under its name by
    /// `commit`. Dropped without `commit`, the temporary file is removed and
    /// the target is untouched.
    package final class Writer {
        package let path: String
        private let temporaryPath: String
        private var fd: Int32
        private var hasher: SHA256?

        /// Starts writing `path`; with `hashing`, `commit` returns the SHA-256
        /// of the bytes written (computed as they pass, not by reading back)
        /// and records it in `KnownDigests`.
        package init(path: String, temporaryDirectory: String? = nil, mode: mode_t = 0o644, hashing: Bool = false) throws {
            self.path = path
            temporaryPath = temporaryDirectory.map { $0 + "/write-" + FileSystem.randomSuffix() }
                ?? path + ".tmp-" + FileSystem.randomSuffix()
            fd = try FileSystem.open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
            hasher = hashing ? SHA256() : nil
        }

        package func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard fd >= 0 else { throw StoreError(.io, path: path, "write after commit") }
            hasher?.update(bufferPointer: bytes)
            try FileSystem.writeAll(fd, bytes, path: temporaryPath)
        }

        package func write(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { try write($0) }
        }

        package func write(_ text: String) throws {
            try write(Array(text.utf8))
        }

        /// Makes the file durable under its final name; returns the SHA-256 of
        /// its bytes when hashing (otherwise nil).
        @discardableResult
        package func commit() throws -> Digest? {
            guard fd >= 0 else { throw StoreError(.io, path: path, "committed twice") }
            let descriptor = fd
            fd = -1
            let status: FileSystem.Status
            do {
                try FileSystem.fsync(descriptor, path: temporaryPath)
                status = try FileSystem.fstat(descriptor, path: temporaryPath)
            } catch {
                close(descriptor)
                unlink(temporaryPath)
                throw error
            }
            guard close(descriptor) == 0 else {
                let failure = StoreError.io(temporaryPath, "close", errno: errno)
                unlink(temporaryPath)
                throw failure
            }
            do {
                try FileSystem.rename(temporaryPath, to: path)
            } catch {
                unlink(temporaryPath)
                throw error
            }
            try FileSystem.fsyncDirectory(FileSystem.parent(of: path))
            guard let hasher else { return nil }
            let digest = Digest(bytes: hasher.finalize())
            KnownDigests.record(digest, path: path, status: status)
            return digest
        }

        deinit {
            if fd >= 0 {
                close(fd)
                unlink(temporaryPath)
            }
        }
    }
}

/// A directory of several files that appears under its name complete or not
/// at all (a training checkpoint: tensors and state): the files are written
/// into a temporary sibling directory, each durably (`AtomicFile`,
/// `SafetensorsWriter`), then the directory is fsynced and renamed to its
/// name, and the parent is fsynced. A crash leaves at most a `*.tmp-*`
/// sibling, which `isTemporary` recognises for cleanup.
public enum AtomicDirectory {
    /// Creates the directory `path`, which must not exist, with what `fill`
    /// writes into the temporary directory it is given. Creates missing parents.
    public static func create(_ path: String, fill: (_ temporary: String) throws -> Void) throws {
        let parent = FileSystem.parent(of: path)
        try FileSystem.makeDirectories(parent)
        let temporary = path + temporaryMarker + FileSystem.randomSuffix()
        try FileSystem.makeDirectory(temporary)
        do {
            try fill(temporary)
            try FileSystem.fsyncDirectory(temporary)
            guard try FileSystem.renameDirectory(temporary, to: path) else {
                throw StoreError(.io, path: path, "a directory of this name already exists")
            }
            try FileSystem.fsyncDirectory(parent)
        } catch {
            try? FileSystem.removeTree(temporary)
            throw error
        }
    }

    /// Whether `name` is a temporary directory `create` left behind.
    public static func isTemporary(_ name: String) -> Bool { name.contains(temporaryMarker) }

    static let temporaryMarker = ".tmp-"

    /// `rm -rf path`; a missing path is fine.
    public static func remove(_ path: String) throws { try FileSystem.removeTree(path) }
}
