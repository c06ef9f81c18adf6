import SqueezeTensor

/// Token ids for one forward pass: i32 `[B, T]` ids, a 0/1 attention mask
/// of the same shape (1 for real tokens) and optional token type ids.
public struct BertBatch: Sendable {
    public var inputIDs: Tensor
    public var attentionMask: Tensor
    public var tokenTypeIDs: Tensor?

    /// A batch from tensors; the mask defaults to all ones.
    public init(inputIDs: Tensor, attentionMask: Tensor? = nil, tokenTypeIDs: Tensor? = nil) {
        self.inputIDs = inputIDs
        self.attentionMask = attentionMask
            ?? Tensor(shape: inputIDs.shape, int32s: [Int32](repeating: 1, count: inputIDs.count))
        self.tokenTypeIDs = tokenTypeIDs
    }

    /// Sequences padded with `padID` (mask 0) to the longest one, or to `length` when longer.
    public init(sequences: [[Int32]], padID: Int32 = 0, length: Int? = nil) {
        let width = Swift.max(sequences.map(\.count).max() ?? 0, length ?? 0)
        var ids: [Int32] = []
        var mask: [Int32] = []
        ids.reserveCapacity(sequences.count * width)
        mask.reserveCapacity(sequences.count * width)
        for sequence in sequences {
            ids += sequence.prefix(width)
            mask += [Int32](repeating: 1, count: Swift.min(sequence.count, width))
            let padding = width - Swift.min(sequence.count, width)
            ids += [Int32](repeating: padID, count: padding)
            mask += [Int32](repeating: 0, count: padding)
        }
        self.init(
            inputIDs: Tensor(shape: [sequences.count, width], int32s: ids),
            attentionMask: Tensor(shape: [sequences.count, width], int32s: mask))
    }
}

/// Input a model cannot run on (ids outside the vocabulary, too long, wrong shapes).
public struct BertInputError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

extension BertModel {
    /// Checks shapes, dtypes and id ranges so the kernels' preconditions hold.
    public func check(_ batch: BertBatch) throws(BertInputError) {
        try Self.check(batch, config: config)
    }

    /// Checks `batch` against the sizes of `config` (any model of that config).
    public static func check(_ batch: BertBatch, config: BertConfig) throws(BertInputError) {
        let ids = batch.inputIDs
        guard ids.dtype == .i32, ids.rank == 2 else {
            throw BertInputError("input ids must be i32 [batch, length], got \(ids.dtype) \(ids.shape)")
        }
        let (rows, length) = (ids.shape[0], ids.shape[1])
        guard rows > 0, length > 0 else { throw BertInputError("empty batch \(ids.shape)") }
        guard length <= config.maxPositionEmbeddings else {
            throw BertInputError("sequence length \(length) exceeds max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        try Self.checkRange(ids, "input id", below: config.vocabSize)
        guard batch.attentionMask.dtype == .i32, batch.attentionMask.shape == ids.shape else {
            throw BertInputError("attention mask must be i32 \(ids.shape), got \(batch.attentionMask.dtype) \(batch.attentionMask.shape)")
        }
        try Self.checkRange(batch.attentionMask, "attention mask value", below: 2)
        if let types = batch.tokenTypeIDs {
            guard types.dtype == .i32, types.shape == ids.shape else {
                throw BertInputError("token type ids must be i32 \(ids.shape), got \(types.dtype) \(types.shape)")
            }
            try Self.checkRange(types, "token type id", below: config.typeVocabSize)
        }
    }

    /// Checks i32 labels `[batchSize]` against the classifier's labels.
    public func check(labels: Tensor, batchSize: Int) throws(BertInputError) {
        guard labels.dtype == .i32, labels.shape == [batchSize] else {
            throw BertInputError("labels must be i32 [\(batchSize)], got \(labels.dtype) \(labels.shape)")
        }
        try Self.checkRange(labels, "label", below: config.labels.count)
    }

    private static func checkRange(_ tensor: Tensor, _ what: String, below limit: Int) throws(BertInputError) {
        let bad = tensor.withUnsafeElements(Int32.self) { values in values.first { $0 < 0 || Int($0) >= limit } }
        if let bad { throw BertInputError("\(what) \(bad) is outside 0..<\(limit)") }
    }
}
