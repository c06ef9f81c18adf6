import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Recycles the large buffers behind tensors.
///
/// A training step allocates and frees the same few activation sizes over
/// and over. Fresh anonymous memory costs a page fault (and the kernel's
/// zeroing) per 4 KiB on first touch, and leaving large blocks to `malloc`
/// fragments its heap (the dynamic mmap threshold keeps them in the arena),
/// which multiplies peak memory. So buffers of at least `minimumBytes` come
/// from `mmap` and go back to a per-size-class free list on release, most
/// recently freed first (still warm in the CPU caches); the free lists hold
/// at most `cacheLimit` bytes, beyond which released buffers are unmapped.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    /// Smaller buffers use `malloc`, which recycles them well by itself.
    static let minimumBytes = 64 * 1024

    /// Bytes the free lists may hold.
    let cacheLimit: Int

    private struct State {
        var free: [Int: [UnsafeMutableRawPointer]] = [:]
        var cachedBytes = 0
    }

    /// Guarded by `lock` (buffers are released from whichever thread drops the last tensor).
    private var state = State()
    private let lock = NSLock()

    init(cacheLimit: Int = 768 << 20) {
        self.cacheLimit = cacheLimit
    }

    /// The size class of a request: whole pages, and at most 1/16 (rounded
    /// up to a page) above the request, so near sizes share a class.
    static func capacity(for byteCount: Int) -> Int {
        let page = 4096
        var granule = page
        if byteCount > 16 * page {
            let top = Int.bitWidth - (byteCount - 1).leadingZeroBitCount
            granule = Swift.max(page, (1 << top) / 16)
        }
        return (byteCount + granule - 1) / granule * granule
    }

    /// A buffer of `capacity` bytes (a value from `capacity(for:)`) and
    /// whether it is fresh from the kernel (so already zero).
    func take(capacity: Int) -> (pointer: UnsafeMutableRawPointer, fresh: Bool) {
        let reused = withState { state -> UnsafeMutableRawPointer? in
            guard let pointer = state.free[capacity]?.popLast() else { return nil }
            state.cachedBytes -= capacity
            return pointer
        }
        if let reused { return (reused, false) }
        guard let mapped = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            mapped != MAP_FAILED
        else {
            // Out of address space: let the trimmed cache go and try once more.
            trim()
            guard let retry = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                retry != MAP_FAILED
            else { preconditionFailure("out of memory allocating \(capacity) bytes") }
            return (retry, true)
        }
        return (mapped, true)
    }

    /// Returns a buffer from `take(capacity:)`.
    func give(_ pointer: UnsafeMutableRawPointer, capacity: Int) {
        let kept = withState { state -> Bool in
            guard state.cachedBytes + capacity <= cacheLimit else { return false }
            state.free[capacity, default: []].append(pointer)
            state.cachedBytes += capacity
            return true
        }
        if !kept { munmap(pointer, capacity) }
    }

    /// Unmaps every cached buffer.
    func trim() {
        let released = withState { state -> [(UnsafeMutableRawPointer, Int)] in
            let all = state.free.flatMap { capacity, pointers in pointers.map { ($0, capacity) } }
            state.free = [:]
            state.cachedBytes = 0
            return all
        }
        for (pointer, capacity) in released { munmap(pointer, capacity) }
    }

    /// Bytes currently held in the free lists.
    var cachedBytes: Int { withState { $0.cachedBytes } }

    private func withState<R>(_ body: (inout State) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }
}
