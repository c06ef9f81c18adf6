import Foundation
import SqueezeExport
import SqueezeModels
import SqueezeTensor
import Testing

/// The numbers docs/export-onnx-bert.md reports, on trained artifacts that
/// live outside the repository (a pipeline's outputs): opt in with
/// `SQUEEZE_EXPORT_MEASURE=name=/artifact/dir,name=/artifact/dir` (and
/// `SQUEEZE_DATA`). For each model: the export's wall time and size, and on
/// every SST-2 test sentence (max_seq_len 64, batches of 32 in file order)
/// the max abs difference between ORT's and squeeze's logits and both
/// accuracies. Without the variable nothing runs; with it the exactness
/// bound and equal predictions are checked.
@Suite struct RealModelExportMeasurements {
    static var models: [(name: String, directory: String)] {
        guard let spec = ProcessInfo.processInfo.environment["SQUEEZE_EXPORT_MEASURE"], !spec.isEmpty else { return [] }
        return spec.split(separator: ",").compactMap { entry in
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
    }

    @Test func exportAndCompareOnSST2() throws {
        let models = Self.models
        guard !models.isEmpty else { return print("SQUEEZE_EXPORT_MEASURE is not set: no real-model measurement") }
        try #require(PythonPeers.missing(ONNXRuntimePeer.modules) == nil)
        let rows = try String(contentsOf: BertParity.sst2TestFile, encoding: .utf8)
            .split(separator: "\n").dropFirst().map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        let texts = rows.map { String($0.first ?? "") }
        let labels = try rows.map { row in try #require(row.count == 2 ? Int(row[1].trimmingCharacters(in: .whitespaces)) : nil) }
        for (name, directory) in models {
            let scratch = try Scratch()
            let started = Date()
            let summary = try ONNXExport.export(
                artifactDirectory: directory, to: scratch.path("export"), options: .init(sourceDigest: "sha256:measurement"))
            let exportSeconds = Date().timeIntervalSince(started)
            let artifact = try ModelArtifact(directory: directory)
            let model = try BertModel(config: BertConfig(contentsOfFile: artifact.configPath), file: artifact.weights())
            let tokens = try artifact.tokenizer().encodeAll(texts, maxLength: 64)
            let batches = stride(from: 0, to: tokens.count, by: 32).map { start in
                BertParity.ParityBatch(sequences: (start..<min(start + 32, tokens.count)).map { Array(tokens[$0]) })
            }
            let onnx = URL(fileURLWithPath: scratch.path("export/model.onnx"))
            let report = try ONNXRuntimePeer.run(model: onnx, batches.map(\.onnxInputs), threads: 2)
            let backend = CPUBackend(threads: 2)
            var error: Float = 0
            var squeezeCorrect = 0, ortCorrect = 0, disagreements = 0, index = 0
            for (batch, run) in zip(batches, report.runs) {
                let expected = try model.logits(batch.bert, backend: backend).floats
                let actual = try #require(run.outputs[BertONNXExport.logitsName]).floats
                let width = model.config.labels.count
                for row in 0..<batch.rows {
                    let e = Array(expected[(row * width)..<((row + 1) * width)]), a = Array(actual[(row * width)..<((row + 1) * width)])
                    error = max(error, zip(e, a).map { abs($0 - $1) }.max() ?? 0)
                    let (squeezeLabel, ortLabel) = (Self.argmax(e), Self.argmax(a))
                    squeezeCorrect += squeezeLabel == labels[index] ? 1 : 0
                    ortCorrect += ortLabel == labels[index] ? 1 : 0
                    disagreements += squeezeLabel == ortLabel ? 0 : 1
                    index += 1
                }
            }
            print("""
                measurement \(name) (\(summary.kind.rawValue)): export \(String(format: "%.2f", exportSeconds)) s, \(summary.onnxBytes) bytes, \
                \(summary.nodeCount) nodes; \(index) SST-2 test sentences: max abs logit difference ORT vs squeeze \(error); \
                accuracy squeeze \(squeezeCorrect)/\(index), ORT \(ortCorrect)/\(index), \(disagreements) predictions differ
                """)
            #expect(error <= 1e-4, "\(name)")
            #expect(disagreements == 0, "\(name)")
        }
    }

    static func argmax(_ values: [Float]) -> Int {
        values.indices.max { values[$0] < values[$1] || (values[$0] == values[$1] && $0 > $1) } ?? 0
    }
}
