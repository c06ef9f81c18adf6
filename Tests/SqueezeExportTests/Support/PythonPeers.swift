import Foundation
import Testing

/// The Python peers the export tests check against (onnx, onnxruntime,
/// transformers, compressed-tensors; `scripts/bootstrap` installs them). They
/// are test-only: squeeze never runs Python. Without them a test prints why
/// and skips — except under `CI=true`, where it fails.
enum PythonPeers {
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// `Tests/SqueezeExportTests/Support/Python/NAME`.
    static func script(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Python").appendingPathComponent(name)
    }

    /// Why python3 cannot import `modules`, or nil when it can.
    static func missing(_ modules: [String]) -> String? {
        let result = try? run(["-c", "import " + modules.joined(separator: ", ")])
        guard let result else { return "python3 cannot be started" }
        return result.status == 0 ? nil : "python3 cannot import \(modules.joined(separator: ", ")) (scripts/bootstrap installs them): \(result.stderr.suffix(300))"
    }

    /// True when the test should run; prints the reason when it skips.
    static func available(_ modules: [String], for test: String) -> Bool {
        guard let reason = missing(modules) else { return true }
        if isCI { return true }
        print("skipping \(test): \(reason)")
        return false
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs python3 with `arguments`; output goes through files, not pipes,
    /// so a chatty peer cannot block on a full pipe.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-python-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("stdout"), err = directory.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = env["OMP_NUM_THREADS"] ?? "1"
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        )
    }
}

/// Runs an ONNX file through `onnx.checker` and ONNX Runtime (`onnx_run.py`).
enum ONNXRuntimePeer {
    static let modules = ["numpy", "onnx", "onnxruntime"]

    /// One graph input: its NumPy dtype, shape and values.
    struct Tensor: Codable {
        var dtype: String
        var shape: [Int]
        var data: [Double]

        static func int64(_ values: [Int], shape: [Int]) -> Tensor {
            Tensor(dtype: "int64", shape: shape, data: values.map(Double.init))
        }

        static func float32(_ values: [Float], shape: [Int]) -> Tensor {
            Tensor(dtype: "float32", shape: shape, data: values.map(Double.init))
        }
    }

    struct Output: Codable {
        var shape: [Int]
        var data: [Double]
        var floats: [Float] { data.map(Float.init) }
    }

    struct Report: Codable {
        struct Run: Codable { var outputs: [String: Output] }
        var opset: Int
        var ir_version: Int
        var providers: [String]
        var runs: [Run]
    }

    private struct Request: Codable {
        struct Run: Codable { var inputs: [String: Tensor] }
        var runs: [Run]
        var optimization: String
        var threads: Int
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Checks `model` and runs it once per element of `runs` (input name → tensor).
    static func run(
        model: URL, _ runs: [[String: Tensor]], optimized: Bool = true, threads: Int = 1
    ) throws -> Report {
        let directory = model.deletingLastPathComponent()
        let request = directory.appendingPathComponent("ort-request-\(UUID().uuidString).json")
        let result = directory.appendingPathComponent("ort-result-\(UUID().uuidString).json")
        defer {
            try? FileManager.default.removeItem(at: request)
            try? FileManager.default.removeItem(at: result)
        }
        let body = Request(
            runs: runs.map { Request.Run(inputs: $0) }, optimization: optimized ? "all" : "disabled", threads: threads
        )
        try JSONEncoder().encode(body).write(to: request)
        let outcome = try PythonPeers.run([PythonPeers.script("onnx_run.py").path, model.path, request.path, result.path])
        guard outcome.status == 0 else {
            throw Failure(description: "onnx_run.py exited with \(outcome.status): \(outcome.stderr.suffix(2000))")
        }
        return try JSONDecoder().decode(Report.self, from: Data(contentsOf: result))
    }
}
