import Dispatch
import Synchronization

/// Runs numbered chunks of work on up to `threads` threads.
///
/// The caller fixes the chunk boundaries from the problem size alone; the
/// thread count only decides which thread runs which chunk. Kernels that
/// combine partial results combine them per chunk in chunk order, so the
/// output does not depend on the thread count or on scheduling.
///
/// Each worker takes the next chunk nobody has taken yet, so on a shared
/// machine a worker that gets less CPU time runs fewer chunks instead of
/// holding up the op with a fixed share.
struct ChunkRunner: Sendable {
    let threads: Int

    /// Calls `body(chunk)` once for each chunk in `0..<chunks`.
    func run(chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 0 { return }
        if threads <= 1 || chunks == 1 {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        let workers = Swift.min(threads, chunks)
        withoutActuallyEscaping(body) { escapable in
            // Chunks write disjoint memory and `concurrentPerform` returns only
            // when every worker has finished, so sharing the closure is safe.
            let shared = UncheckedSendable(escapable)
            let next = Atomic<Int>(workers)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var chunk = worker
                while chunk < chunks {
                    shared.value(chunk)
                    chunk = next.wrappingAdd(1, ordering: .relaxed).oldValue
                }
            }
        }
    }

    /// Splits `0..<count` into ranges of `chunkSize` (the last may be shorter)
    /// and calls `body` for each.
    func forEachRange(count: Int, chunkSize: Int, _ body: (Range<Int>) -> Void) {
        let size = Swift.max(chunkSize, 1)
        let chunks = (count + size - 1) / size
        run(chunks: chunks) { chunk in
            body(chunk * size..<Swift.min(count, (chunk + 1) * size))
        }
    }
}

/// Elements per chunk for streaming element-wise kernels (128 KiB of f32).
let elementChunk = 32_768

/// Rows per chunk for row-wise kernels with `columns` columns (about 16K elements).
func rowChunk(columns: Int) -> Int { Swift.max(1, 16_384 / Swift.max(columns, 1)) }

/// Carries a value into a `@Sendable` closure where the caller guarantees the
/// access pattern is race-free (see `ChunkRunner.run`).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
