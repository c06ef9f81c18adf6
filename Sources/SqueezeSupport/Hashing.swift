import Crypto
import Foundation
import Glibc

/// SHA-256 of files and bytes. swift-crypto's `SHA256` is BoringSSL's, which
/// uses the SHA-NI instructions when the CPU has them.
public enum Hashing {
    /// Bytes read per `read(2)`: large enough that system-call overhead is
    /// negligible, small enough to stay in the L2/L3 cache while it is hashed.
    package static let readSize = 1 << 20

    /// SHA-256 of the regular file at `path` (symbolic links followed), streamed.
    public static func sha256(fileAt path: String) throws -> Digest {
        // O_NONBLOCK so that a FIFO is rejected instead of waiting for a writer.
        let fd = try FileSystem.open(path, O_RDONLY | O_NONBLOCK)
        defer { close(fd) }
        let status = try FileSystem.fstat(fd, path: path)
        guard status.isRegularFile else {
            throw StoreError.unsupported(path, "is \(status.kindDescription), not a regular file")
        }
        return try sha256(fileDescriptor: fd, path: path).digest
    }

    /// SHA-256 of the bytes.
    public static func sha256(_ bytes: some DataProtocol) -> Digest {
        Digest(bytes: SHA256.hash(data: bytes))
    }

    /// Files at least this large are read ahead on a second thread.
    package static let pipelineThreshold: Int64 = 16 << 20

    /// Hashes an open file from its current offset to its end; also returns
    /// the number of bytes hashed.
    package static func sha256(fileDescriptor fd: Int32, path: String) throws -> (digest: Digest, byteCount: Int64) {
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var status = stat()
        if fstat(fd, &status) == 0, Int64(status.st_size) >= pipelineThreshold {
            return try pipelinedSHA256(fileDescriptor: fd, path: path)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readSize, alignment: 4096)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var total: Int64 = 0
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count > 0 {
                hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                total += Int64(count)
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw StoreError.io(path, "read", errno: errno)
            }
        }
        return (Digest(bytes: hasher.finalize()), total)
    }

    /// Large files: a reader thread fills a ring of buffers while this thread
    /// hashes, so the copy out of the page cache overlaps the hashing (SHA-256
    /// itself is sequential). `mmap` would be as fast but turns a file
    /// truncated while being hashed into a SIGBUS.
    private static func pipelinedSHA256(fileDescriptor fd: Int32, path: String) throws -> (digest: Digest, byteCount: Int64) {
        let ring = ReadAheadRing(slots: 4, slotSize: readSize)
        let thread = Thread { ring.fill(from: fd) }
        thread.start()
        var hasher = SHA256()
        var total: Int64 = 0
        var slot = 0
        var failure: Int32 = 0
        while true {
            ring.filled.wait()
            let count = ring.counts[slot]
            if count <= 0 {
                failure = count < 0 ? Int32(-count) : 0
                break
            }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: ring.slot(slot), count: count))
            total += Int64(count)
            ring.free.signal()
            slot = (slot + 1) % ring.slotCount
        }
        ring.finished.wait()
        guard failure == 0 else { throw StoreError.io(path, "read", errno: failure) }
        return (Digest(bytes: hasher.finalize()), total)
    }
}

/// The buffers shared by `pipelinedSHA256` and its reader thread.
///
/// `@unchecked Sendable`: slot `i` is written only by the reader between
/// `free.wait()` and `filled.signal()`, and read only by the hasher between
/// `filled.wait()` and `free.signal()`; the semaphores order those accesses.
/// The memory is freed only after the reader signalled `finished`.
private final class ReadAheadRing: @unchecked Sendable {
    let slotCount: Int
    let slotSize: Int
    private let memory: UnsafeMutableRawPointer
    /// Bytes read into each slot; 0 at end of file, -errno on failure.
    let counts: UnsafeMutablePointer<Int>
    /// Created at 0 and signalled up: libdispatch traps when a semaphore is
    /// freed below its initial value, which `free` may be at the end.
    let free = DispatchSemaphore(value: 0)
    let filled = DispatchSemaphore(value: 0)
    let finished = DispatchSemaphore(value: 0)

    init(slots: Int, slotSize: Int) {
        slotCount = slots
        self.slotSize = slotSize
        memory = UnsafeMutableRawPointer.allocate(byteCount: slots * slotSize, alignment: 4096)
        counts = UnsafeMutablePointer<Int>.allocate(capacity: slots)
        counts.initialize(repeating: 0, count: slots)
        for _ in 0..<slots { free.signal() }
    }

    deinit {
        memory.deallocate()
        counts.deallocate()
    }

    func slot(_ index: Int) -> UnsafeMutableRawPointer { memory + index * slotSize }

    /// Reads the file into successive slots until end of file or an error,
    /// which ends the stream (a count of 0 or -errno).
    func fill(from fd: Int32) {
        var index = 0
        while true {
            free.wait()
            var count: Int
            repeat {
                count = read(fd, slot(index), slotSize)
            } while count < 0 && errno == EINTR
            counts[index] = count < 0 ? -Int(errno) : count
            filled.signal()
            if count <= 0 { break }
            index = (index + 1) % slotCount
        }
        finished.signal()
    }
}
