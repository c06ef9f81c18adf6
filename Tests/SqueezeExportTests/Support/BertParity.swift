import Foundation
import SqueezeExport
import SqueezeModels
import SqueezeTensor
import Testing

/// ONNX Runtime's logits of an exported BERT against squeeze's CPU forward.
enum BertParity {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `$SQUEEZE_DATA/sst2/test.tsv`, by default `../shared/data` next to the checkout (as the pipelines read it).
    static var sst2TestFile: URL {
        let data = ProcessInfo.processInfo.environment["SQUEEZE_DATA"].map { URL(fileURLWithPath: $0) }
            ?? repositoryRoot.appendingPathComponent("../shared/data").standardizedFileURL
        return data.appendingPathComponent("sst2/test.tsv")
    }

    /// Prints why `test` skips; under CI=true a missing input is a failure.
    static func skip(_ test: String, _ reason: String) {
        if PythonPeers.isCI {
            Issue.record("\(test) cannot run on CI: \(reason)")
        } else {
            print("skipping \(test): \(reason)")
        }
    }

    /// The `sentence` column of a GLUE-style TSV with a header.
    static func sst2Sentences(_ file: URL) throws -> [String] {
        let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true)
        return lines.dropFirst().compactMap { line in line.split(separator: "\t", omittingEmptySubsequences: false).first.map(String.init) }
    }

    /// One batch: ids and 0/1 mask, `[rows, length]`, row-major.
    struct ParityBatch {
        var rows: Int
        var length: Int
        var ids: [Int32]
        var mask: [Int32]

        /// Sequences right-padded with id 0 (mask 0) to the longest.
        init(sequences: [[Int32]]) {
            rows = sequences.count
            length = sequences.map(\.count).max() ?? 0
            ids = []
            mask = []
            for sequence in sequences {
                ids += sequence + Array(repeating: 0, count: length - sequence.count)
                mask += Array(repeating: 1, count: sequence.count) + Array(repeating: 0, count: length - sequence.count)
            }
        }

        init(rows: Int, length: Int, ids: [Int32], mask: [Int32]) {
            (self.rows, self.length, self.ids, self.mask) = (rows, length, ids, mask)
        }

        var bert: BertBatch {
            BertBatch(
                inputIDs: Tensor(shape: [rows, length], int32s: ids), attentionMask: Tensor(shape: [rows, length], int32s: mask))
        }

        var onnxInputs: [String: ONNXRuntimePeer.Tensor] {
            [
                BertONNXExport.inputIDsName: .int64(ids.map(Int.init), shape: [rows, length]),
                BertONNXExport.attentionMaskName: .int64(mask.map(Int.init), shape: [rows, length]),
            ]
        }
    }

    /// Batch 1 at every length 1…max, batch 7 at every length (random real
    /// lengths, one row all padding), batch 64 at the longest length.
    static func shapeSweep(config: BertConfig, seed: UInt64 = 17) -> [ParityBatch] {
        var generator = SeededGenerator(seed: seed)
        func id() -> Int32 { Int32(1 + generator.next() % UInt64(config.vocabSize - 1)) }
        func batch(rows: Int, length: Int, padded: Bool) -> ParityBatch {
            var ids: [Int32] = []
            var mask: [Int32] = []
            for row in 0..<rows {
                let real = !padded || row == 0 ? length : (row == rows - 1 && rows > 1 ? 0 : 1 + Int(generator.next() % UInt64(length)))
                for position in 0..<length {
                    ids.append(position < real ? id() : 0)
                    mask.append(position < real ? 1 : 0)
                }
            }
            return ParityBatch(rows: rows, length: length, ids: ids, mask: mask)
        }
        let lengths = 1...config.maxPositionEmbeddings
        return lengths.map { batch(rows: 1, length: $0, padded: false) }
            + lengths.map { batch(rows: 7, length: $0, padded: true) }
            + [batch(rows: 64, length: config.maxPositionEmbeddings, padded: true)]
    }

    /// Exports `model` (as `kind`, at `opset`) to a temporary file and returns the max
    /// abs logit difference over `shapeSweep`.
    static func maxError(_ model: BertModel, kind: ArtifactKind, opset: Int = ONNXOpset.default) throws -> Float {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bert-parity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("model.onnx")
        try BertONNXExport.export(model, kind: kind, opset: opset).model.serializedBytes().write(to: file)
        let (error, largest) = try compare(model, onnx: file, batches: shapeSweep(config: model.config))
        print("BERT ONNX parity (\(kind.rawValue), layers \(model.layerShapes.map { "\($0.heads)/\($0.intermediateSize)" }), \(model.pooling.rawValue)): max abs logit error \(error), |logit| up to \(largest)")
        return error
    }

    static func maxError(_ model: BertModel, onnx: URL) throws -> Float {
        try compare(model, onnx: onnx, batches: shapeSweep(config: model.config)).error
    }

    /// Max abs difference between ORT's and squeeze's logits over `batches`,
    /// and the largest |logit| (how large the values compared were).
    static func compare(_ model: BertModel, onnx: URL, batches: [ParityBatch]) throws -> (error: Float, largest: Float) {
        let report = try ONNXRuntimePeer.run(model: onnx, batches.map(\.onnxInputs))
        try #require(report.runs.count == batches.count)
        let backend = CPUBackend(threads: 1)
        var error: Float = 0
        var largest: Float = 0
        for (batch, run) in zip(batches, report.runs) {
            let expected = try model.logits(batch.bert, backend: backend)
            let actual = try #require(run.outputs[BertONNXExport.logitsName])
            try #require(actual.shape == expected.shape, "ORT logits \(actual.shape), squeeze \(expected.shape)")
            for (a, e) in zip(actual.floats, expected.floats) {
                error = max(error, abs(a - e))
                largest = max(largest, abs(e))
            }
        }
        return (error, largest)
    }
}
