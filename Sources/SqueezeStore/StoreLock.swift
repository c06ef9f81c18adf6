import Glibc
import Synchronization
import SqueezeSupport

/// An exclusive per-key lock (`locks/<key>.lock`, flock). Released by
/// `release()`, when the value is deallocated, or by the kernel when the
/// process dies, so a killed run never leaves a key locked.
public final class StoreLock: Sendable {
    public let key: String
    private let descriptor: Mutex<Int32?>

    init(key: String, descriptor: Int32) {
        self.key = key
        self.descriptor = Mutex(descriptor)
    }

    /// Releases the lock; calling it again does nothing.
    public func release() {
        descriptor.withLock { fd in
            if let open = fd { close(open) }
            fd = nil
        }
    }

    deinit { release() }
}

/// A file kept open for a `flock` held as long as the owner lives.
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
