import SqueezeTensor

/// Token id sequences stored back to back in one array (no array per
/// sequence): sequence `i` is `tokens[offsets[i]..<offsets[i + 1]]`.
public struct TokenSequences: Sendable, Hashable {
    public private(set) var tokens: [Int32] = []
    public private(set) var offsets: [Int] = [0]

    public init() {}

    public init(_ sequences: [[Int32]]) {
        for sequence in sequences { append(sequence) }
    }

    public mutating func append(_ ids: some Collection<Int32>) {
        tokens.append(contentsOf: ids)
        offsets.append(tokens.count)
    }

    public var count: Int { offsets.count - 1 }

    public func length(_ index: Int) -> Int { offsets[index + 1] - offsets[index] }

    public subscript(index: Int) -> ArraySlice<Int32> { tokens[offsets[index]..<offsets[index + 1]] }
}

/// Sequences padded into one batch.
public struct TokenBatch: Sendable {
    /// Token ids, i32 `[B, T]`, right-padded with the pad id; T is the longest sequence's length.
    public let ids: Tensor
    /// i32 `[B, T]`: 1 for real tokens, 0 for padding.
    public let attentionMask: Tensor
    /// Row `r` holds sequence `indices[r]` of the input.
    public let indices: [Int]

    public var size: Int { indices.count }
    public var length: Int { ids.shape.count == 2 ? ids.shape[1] : 0 }
}

/// Groups sequences of similar length into batches, so little compute goes to padding.
public enum LengthBucketing {
    /// Batches per sorting pool when shuffling: large enough that batches are
    /// nearly uniform in length, small enough that their composition varies
    /// from epoch to epoch.
    public static let defaultPoolBatches = 50

    /// Pads `sequences[indices]` (in that order) into one batch; every index
    /// must be below `sequences.count`.
    public static func batch(_ sequences: TokenSequences, indices: [Int], padID: Int32) -> TokenBatch {
        let width = indices.map { sequences.length($0) }.max() ?? 0
        var ids = Tensor(zeros: [indices.count, width], dtype: .i32)
        var mask = Tensor(zeros: [indices.count, width], dtype: .i32)
        sequences.tokens.withUnsafeBufferPointer { tokens in
            ids.withUnsafeMutableElements(Int32.self) { out in
                mask.withUnsafeMutableElements(Int32.self) { ones in
                    for (row, index) in indices.enumerated() {
                        let start = sequences.offsets[index]
                        let length = sequences.offsets[index + 1] - start
                        let base = row * width
                        for column in 0..<length {
                            out[base + column] = tokens[start + column]
                            ones[base + column] = 1
                        }
                        for column in length..<width {
                            out[base + column] = padID
                        }
                    }
                }
            }
        }
        return TokenBatch(ids: ids, attentionMask: mask, indices: indices)
    }

    /// Every sequence exactly once, in batches of `batchSize` (the last may be
    /// smaller; a size below 1 counts as 1).
    ///
    /// With `shuffle`, the order depends only on `seed`: sequences are
    /// shuffled, cut into pools of `poolBatches × batchSize`, each pool is
    /// sorted by length and cut into batches, and the batches are shuffled.
    /// Without it, sequences are sorted by length (ties by index) and batched
    /// shortest first, the usual order for evaluation.
    public static func batches(
        _ sequences: TokenSequences, batchSize: Int, padID: Int32, shuffle: Bool, seed: UInt64,
        poolBatches: Int = defaultPoolBatches
    ) -> [TokenBatch] {
        let size = max(batchSize, 1)
        var groups: [[Int]] = []
        if shuffle {
            var generator = SplitMix64(seed: seed)
            let order = generator.shuffled(Array(0..<sequences.count))
            let poolSize = size * max(poolBatches, 1)
            for poolStart in stride(from: 0, to: order.count, by: poolSize) {
                let pool = order[poolStart..<min(poolStart + poolSize, order.count)]
                // Stable: equal lengths keep their shuffled order.
                let sorted = pool.enumerated()
                    .sorted { (sequences.length($0.element), $0.offset) < (sequences.length($1.element), $1.offset) }
                    .map(\.element)
                groups += chunks(sorted, size)
            }
            groups = generator.shuffled(groups)
        } else {
            let sorted = (0..<sequences.count).sorted { (sequences.length($0), $0) < (sequences.length($1), $1) }
            groups = chunks(sorted, size)
        }
        return groups.map { batch(sequences, indices: $0, padID: padID) }
    }

    private static func chunks(_ items: [Int], _ size: Int) -> [[Int]] {
        stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
    }
}

/// SplitMix64: a small, fast generator whose sequence is fixed by its seed on
/// every platform and Swift version (unlike `SystemRandomNumberGenerator`, and
/// unlike the standard library's `shuffle`, whose algorithm may change).
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<bound` (Lemire's multiply-and-reject, unbiased).
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        let range = UInt64(bound)
        let threshold = (0 &- range) % range
        while true {
            let (high, low) = next().multipliedFullWidth(by: range)
            if low >= threshold { return Int(high) }
        }
    }

    /// Fisher–Yates.
    mutating func shuffled<T>(_ items: [T]) -> [T] {
        var result = items
        var index = result.count - 1
        while index > 0 {
            result.swapAt(index, below(index + 1))
            index -= 1
        }
        return result
    }
}
