import SqueezeModels
import SqueezeTensor
import Testing

@Suite struct TokenizerBatchingTests {
    /// Sequences of lengths 1...n in a scrambled order, each filled with its own index + 10.
    static func sequences(lengths: [Int]) -> TokenSequences {
        TokenSequences(lengths.enumerated().map { index, length in Array(repeating: Int32(index + 10), count: length) })
    }

    @Test func tokenSequencesStoreBackToBack() {
        var sequences = TokenSequences()
        sequences.append([1, 2, 3])
        sequences.append([Int32]())
        sequences.append([4])
        #expect(sequences.count == 3)
        #expect(sequences.tokens == [1, 2, 3, 4])
        #expect(sequences.offsets == [0, 3, 3, 4])
        #expect(sequences.length(1) == 0 && Array(sequences[2]) == [4])
        #expect(TokenSequences().count == 0)
    }

    @Test func batchPadsAndMasks() {
        let sequences = TokenSequences([[5, 6, 7], [8], [9, 9]])
        let batch = LengthBucketing.batch(sequences, indices: [1, 0], padID: -1)
        #expect(batch.ids.shape == [2, 3] && batch.attentionMask.shape == [2, 3])
        #expect(batch.ids.int32s == [8, -1, -1, 5, 6, 7])
        #expect(batch.attentionMask.int32s == [1, 0, 0, 1, 1, 1])
        #expect(batch.indices == [1, 0] && batch.size == 2 && batch.length == 3)
    }

    @Test func evaluationBatchesAreSortedByLength() {
        let sequences = Self.sequences(lengths: [5, 1, 3, 1, 4, 2, 5])
        let batches = LengthBucketing.batches(sequences, batchSize: 3, padID: 0, shuffle: false, seed: 99)
        #expect(batches.map(\.indices) == [[1, 3, 5], [2, 4, 0], [6]])
        #expect(batches.map(\.length) == [2, 5, 5])
        // The seed does not matter without shuffling.
        let again = LengthBucketing.batches(sequences, batchSize: 3, padID: 0, shuffle: false, seed: 1)
        #expect(again.map(\.indices) == batches.map(\.indices))
    }

    @Test func shuffledBatchesCoverEverythingOnceAndDependOnlyOnTheSeed() {
        let lengths = (0..<1000).map { ($0 * 7919) % 61 + 1 }
        let sequences = Self.sequences(lengths: lengths)
        let one = LengthBucketing.batches(sequences, batchSize: 16, padID: 0, shuffle: true, seed: 42, poolBatches: 8)
        let two = LengthBucketing.batches(sequences, batchSize: 16, padID: 0, shuffle: true, seed: 42, poolBatches: 8)
        let other = LengthBucketing.batches(sequences, batchSize: 16, padID: 0, shuffle: true, seed: 43, poolBatches: 8)
        #expect(one.map(\.indices) == two.map(\.indices))
        #expect(one.map(\.indices) != other.map(\.indices))
        #expect(one.flatMap(\.indices).sorted() == Array(0..<1000))
        #expect(one.count == 63 && one.filter { $0.size < 16 }.count == 1)
        // Rows hold their own sequence and the batch is padded to its longest.
        for batch in one {
            let ids = batch.ids.int32s
            let mask = batch.attentionMask.int32s
            #expect(batch.length == batch.indices.map { lengths[$0] }.max())
            for (row, index) in batch.indices.enumerated() {
                let rowIDs = ids[(row * batch.length)..<((row + 1) * batch.length)]
                let rowMask = mask[(row * batch.length)..<((row + 1) * batch.length)]
                #expect(Array(rowIDs.prefix(lengths[index])) == Array(repeating: Int32(index + 10), count: lengths[index]))
                #expect(rowMask.reduce(0, +) == Int32(lengths[index]))
            }
        }
        // Bucketing: far less padding than random batches of the same size.
        let padded = one.reduce(0) { $0 + $1.size * $1.length }
        let unbucketed = LengthBucketing.batches(sequences, batchSize: 16, padID: 0, shuffle: true, seed: 42, poolBatches: 1)
        let paddedUnbucketed = unbucketed.reduce(0) { $0 + $1.size * $1.length }
        let real = lengths.reduce(0, +)
        #expect(Double(padded - real) < 0.5 * Double(paddedUnbucketed - real))
        // Batch order is shuffled, not sorted by length.
        #expect(one.map(\.length) != one.map(\.length).sorted())
    }

    @Test func emptyInputAndOddSizes() {
        #expect(LengthBucketing.batches(TokenSequences(), batchSize: 4, padID: 0, shuffle: true, seed: 1).isEmpty)
        let sequences = Self.sequences(lengths: [2, 1])
        #expect(LengthBucketing.batches(sequences, batchSize: 0, padID: 0, shuffle: false, seed: 1).map(\.indices) == [[1], [0]])
        #expect(LengthBucketing.batches(sequences, batchSize: 10, padID: 0, shuffle: true, seed: 1).map(\.size) == [2])
    }

    @Test func bertBatchesTruncateAndMapBack() throws {
        let bert = BertTokenizer(vocabulary: try WordPieceTests.vocabulary())
        let texts = ["hello world hello world hello world", "hello", "world !", "hello world"]
        let batches = bert.batches(texts, maxLength: 4, batchSize: 2, shuffle: false, seed: 0)
        // Lengths after truncation: 4, 3, 4, 4.
        #expect(batches.map(\.indices) == [[1, 0], [2, 3]])
        #expect(batches[0].ids.int32s == [2, 5, 3, 0, 2, 5, 6, 3])
        #expect(batches[0].attentionMask.int32s == [1, 1, 1, 0, 1, 1, 1, 1])
        #expect(batches[1].ids.int32s == [2, 6, 11, 3, 2, 5, 6, 3])
        #expect(batches[1].attentionMask.int32s == [1, 1, 1, 1, 1, 1, 1, 1])
        let encoded = bert.encodeAll(texts, maxLength: 4)
        #expect(encoded.count == 4 && Array(encoded[0]) == [2, 5, 6, 3])
    }
}
