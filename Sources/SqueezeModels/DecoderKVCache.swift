import SqueezeTensor

/// The keys and values of every token a decoder has seen so far, per layer,
/// so generating a token costs one token's forward pass. Buffers are
/// allocated once for `capacity` tokens (`[B, capacity, kv heads, d]`);
/// attention reads a `[B, kv, S, d]` view of the filled part.
public struct DecoderKVCache: Sendable {
    /// Tokens cached so far.
    public private(set) var length = 0
    public let capacity: Int
    private var keys: [Tensor]
    private var values: [Tensor]

    /// An empty cache for `batch` sequences of up to `capacity` tokens of a model with `config`.
    public init(config: DecoderConfig, batch: Int, capacity: Int) {
        self.capacity = capacity
        let shape = [batch, capacity, config.numKeyValueHeads, config.headDimension]
        keys = (0..<config.numHiddenLayers).map { _ in Tensor(zeros: shape) }
        values = keys
    }

    /// Bytes held by the buffers.
    public var byteCount: Int { (keys + values).reduce(0) { $0 + $1.count * 4 } }

    /// Writes layer `layer`'s new keys and values (`[B, T, kv, d]`) after the
    /// cached tokens and returns every key and value so far as `[B, kv, S, d]`
    /// views. The length moves on in `advance(by:)`, once every layer appended.
    mutating func append(layer: Int, keys newKeys: Tensor, values newValues: Tensor) -> (keys: Tensor, values: Tensor) {
        let (batch, tokens, heads, d) = (newKeys.shape[0], newKeys.shape[1], newKeys.shape[2], newKeys.shape[3])
        precondition(length + tokens <= capacity, "KV cache of \(capacity) tokens overflows")
        let row = heads * d
        func write(_ source: Tensor, into buffer: inout Tensor) {
            let start = length
            source.contiguous().withUnsafeFloats { input in
                buffer.withUnsafeMutableFloats { output in
                    for b in 0..<batch {
                        let from = b * tokens * row
                        let to = (b * capacity + start) * row
                        for i in 0..<(tokens * row) { output[to + i] = input[from + i] }
                    }
                }
            }
        }
        write(newKeys, into: &keys[layer])
        write(newValues, into: &values[layer])
        let filled = length + tokens
        return (keys[layer].sliced(axis: 1, 0..<filled).transposed(1, 2), values[layer].sliced(axis: 1, 0..<filled).transposed(1, 2))
    }

    /// Counts `tokens` more tokens as cached.
    mutating func advance(by tokens: Int) { length += tokens }
}
