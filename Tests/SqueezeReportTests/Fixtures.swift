import Foundation
@testable import SqueezeEngine
import SqueezeSupport

/// Run records built in code, shaped like what the stages record.
enum Fixtures {
    static func stage(_ id: String, _ uses: String, status: StageRecord.Status = .ran, metrics: [String: Value] = [:]) -> StageRecord {
        var stage = StageRecord(id: id, uses: uses, status: status)
        stage.metrics = metrics
        stage.key = String(repeating: "ab", count: 32)
        stage.cache = status == .cached ? "hit" : "miss"
        stage.wallSeconds = 12.5
        stage.cpuSeconds = 20
        return stage
    }

    static func run(id: String = "20261203T010203Z-sst2-cofi-0a1b2c3d", stages: [StageRecord], recipe: Value = recipe) -> RunRecord {
        RunRecord(
            id: id, name: "sst2-cofi", recipeFile: "pipelines/sst2-cofi.yaml", status: .succeeded,
            startedAt: Date(timeIntervalSince1970: 1_764_723_723), endedAt: Date(timeIntervalSince1970: 1_764_724_923),
            wallSeconds: 1200, squeezeVersion: "0.1.0", backend: "cpu", jobs: 1, threads: 2, host: "builder",
            git: .init(commit: "0123456789abcdef0123456789abcdef01234567", dirty: true),
            overrides: ["vars.epochs=3"], cacheDirectory: "/tmp/.squeeze", recipe: recipe, stages: stages)
    }

    /// The recipe as recorded: `eval` names `teacher` its baseline.
    static let recipe: Value = .object([
        "vars": .object(["reference": .string("teacher")]),
        "stages": .object([
            "eval": .object(["uses": .string("eval/classification"), "with": .object(["baseline": .string("teacher")])]),
            "sweep_eval": .object(["uses": .string("eval/classification"), "with": .object(["baseline": .string("${vars.reference}")])]),
        ]),
    ])

    /// `eval/classification` metrics for `models`: name → (accuracy, size MB, p50 ms).
    static func evalMetrics(_ models: [(name: String, accuracy: Double, megabytes: Double, p50: Double)], baseline: String?) -> [String: Value] {
        var metrics: [String: Value] = ["examples": .int(872)]
        let reference = models.first { $0.name == baseline }
        for model in models {
            let prefix = model.name + "."
            metrics[prefix + "accuracy"] = .double(model.accuracy)
            metrics[prefix + "macro_f1"] = .double(model.accuracy - 0.01)
            metrics[prefix + "loss"] = .double(0.3)
            metrics[prefix + "size_bytes"] = .int(Int(model.megabytes * 1e6))
            metrics[prefix + "parameters"] = .int(Int(model.megabytes * 250_000))
            metrics[prefix + "encoder_parameters"] = .int(Int(model.megabytes * 200_000))
            metrics[prefix + "sparsity"] = .double(model.name == "cofi" ? 0.6 : 0)
            metrics[prefix + "throughput_per_s"] = .double(1000 / model.p50)
            metrics[prefix + "latency_b1_p50_ms"] = .double(model.p50)
            metrics[prefix + "latency_b1_p95_ms"] = .double(model.p50 * 1.2)
            metrics[prefix + "latency_b32_t64_ms"] = .double(model.p50 * 20)
            if let reference {
                metrics[prefix + "parameter_ratio"] = .double(model.megabytes / reference.megabytes)
                metrics[prefix + "speedup_b32_t64"] = .double(reference.p50 / model.p50)
            }
        }
        return metrics
    }

    static let finetune = stage("teacher", "train/finetune", metrics: [
        "steps": .int(150),
        "loss_curve": .array([[50, 0.62], [100, 0.41], [150, 0.33]].map { .array([.int(Int($0[0])), .double($0[1])]) }),
        "dev_curve": .array([[50, 0.80, 0.5], [100, 0.85, 0.41], [150, 0.88, 0.36]].map {
            .array([.int(Int($0[0])), .double($0[1]), .double($0[2])])
        }),
        "dev_accuracy": .double(0.88),
    ])

    static let cofi = stage("cofi", "prune/cofi", metrics: [
        "loss_curve": .array([
            .array([.int(10), .double(2.0), .double(1.2), .double(0.5), .double(0.3), .double(-0.01)]),
            .array([.int(20), .double(1.5), .double(0.9), .double(0.4), .double(0.2), .double(0.02)]),
        ]),
        "sparsity_curve": .array([
            .array([.int(10), .double(0.1), .double(0.2), .double(0.5), .double(1.5)]),
            .array([.int(20), .double(0.5), .double(0.6), .double(0.7), .double(2.5)]),
        ]),
        "dev_curve": .array([.array([.int(20), .double(0.83), .double(0.55)])]),
        "finetune_loss_curve": .array([.array([.int(5), .double(0.4)]), .array([.int(10), .double(0.35)])]),
        "realised_sparsity": .double(0.6),
    ])

    static let distill = stage("student", "distill/kd", status: .cached, metrics: [
        "loss_parts_curve": .array([
            .array([.int(10), .double(0.9), .double(0.5), .null, .null]),
            .array([.int(20), .double(0.7), .double(0.4), .null, .null]),
        ]),
    ])

    /// A CoFi run: teacher fine-tune, pruning, int8, one eval of all three and
    /// a sweep instance of a second eval.
    static func cofiRun() -> RunRecord {
        run(stages: [
            stage("data", "data/text-classification", status: .cached, metrics: ["labels": .int(2)]),
            finetune, cofi, distill,
            stage("int8", "quantize/ptq", metrics: ["size_bytes": .int(23_000_000), "compression": .double(3.9)]),
            stage("eval", "eval/classification", metrics: evalMetrics([
                ("teacher", 0.91, 90, 8), ("cofi", 0.89, 36, 3.5), ("int8", 0.90, 23, 4), ("cofi_int8", 0.86, 40, 5),
            ], baseline: "teacher")),
            stage("sweep_eval[sparsity=0.8]", "eval/classification", metrics: evalMetrics([
                ("teacher", 0.91, 90, 8), ("cofi", 0.84, 18, 2),
            ], baseline: "teacher")),
            stage("broken", "eval/classification", status: .failed),
        ])
    }
}
