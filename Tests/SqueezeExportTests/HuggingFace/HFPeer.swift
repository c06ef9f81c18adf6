import Foundation
import SqueezeModels
import SqueezeSupport
import SqueezeTensor
import Testing

/// Loads export directories with `transformers` (`Support/Python/hf_run.py`):
/// every job of a test in one Python process, since importing torch takes seconds.
enum HFPeer {
    static let modules = ["torch", "transformers", "compressed_tensors", "safetensors"]

    enum Job {
        /// `AutoModelFor…` logits of each batch of rows (`attention_mask` when given).
        case logits(directory: String, auto: String, batches: [[String: [[Int]]]], dequantize: Bool = false)
        case tokenize(directory: String, texts: [String], maxLength: Int?)
        /// compressed-tensors' own dequantization of the named modules' stored tensors.
        case dequantize(directory: String, modules: [String])

        var json: Value {
            switch self {
            case .logits(let directory, let auto, let batches, let dequantize):
                .object([
                    "kind": .string("logits"), "dir": .string(directory), "auto": .string(auto), "dequantize": .bool(dequantize),
                    "batches": .array(batches.map { batch in
                        .object(batch.mapValues { rows in .array(rows.map { .array($0.map(Value.int)) }) })
                    }),
                ])
            case .tokenize(let directory, let texts, let maxLength):
                .object([
                    "kind": .string("tokenize"), "dir": .string(directory), "texts": .array(texts.map(Value.string)),
                    "max_length": maxLength.map(Value.int) ?? .null,
                ])
            case .dequantize(let directory, let modules):
                .object(["kind": .string("dequantize"), "dir": .string(directory), "modules": .array(modules.map(Value.string))])
            }
        }
    }

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Runs `jobs`; each result is the job's JSON object (`ok` true), or the run throws with the job's traceback.
    static func run(_ jobs: [Job]) throws -> [Value] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-hf-peer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let request = directory.appendingPathComponent("request.json"), result = directory.appendingPathComponent("result.json")
        try Data(Value.object(["jobs": .array(jobs.map(\.json))]).canonicalJSON.utf8).write(to: request)
        let outcome = try PythonPeers.run([PythonPeers.script("hf_run.py").path, request.path, result.path])
        guard outcome.status == 0 else {
            throw Failure(description: "hf_run.py exited with \(outcome.status): \(outcome.stderr.suffix(2000))")
        }
        guard case .array(let results)? = try Value(json: Array(Data(contentsOf: result)))["jobs"] else {
            throw Failure(description: "hf_run.py wrote no job results")
        }
        for (index, result) in results.enumerated() where result["ok"] != .bool(true) {
            throw Failure(description: "job \(index) failed: \(result["error"].map { "\($0)" } ?? "?")")
        }
        return results
    }

    /// A `{"shape": [...], "data": [...]}` member as floats.
    static func floats(_ value: Value?) -> (shape: [Int], data: [Float]) {
        guard case .array(let shape)? = value?["shape"], case .array(let data)? = value?["data"] else { return ([], []) }
        return (shape.compactMap { if case .int(let n) = $0 { n } else { nil } }, data.map { Float($0.number ?? .nan) })
    }

    /// The logits of each batch of a `logits` job.
    static func logits(_ result: Value) -> [(shape: [Int], data: [Float])] {
        guard case .array(let batches)? = result["batches"] else { return [] }
        return batches.map { floats($0) }
    }

    static func ids(_ result: Value) -> [[Int]] {
        guard case .array(let rows)? = result["ids"] else { return [] }
        return rows.map { row in
            guard case .array(let ids) = row else { return [] }
            return ids.compactMap { if case .int(let n) = $0 { n } else { nil } }
        }
    }

    static func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count, !a.isEmpty else { return .infinity }
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }
}
