import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeTensor
import SqueezeYAML

/// `uses: eval/classification` — scores one or more classifier model
/// artifacts on a dataset split: accuracy, macro-F1 and loss; parameter
/// counts, weights file size and sparsity; and, on the current backend,
/// batch-1 latency percentiles and evaluation throughput.
///
/// Quality and size metrics are deterministic and also written to the
/// `report` output (JSON). Latency and throughput are measurements of this
/// machine at this moment (keys ending in `_ms` and `_per_s`); they are
/// recorded as metrics but kept out of the artifact, so the artifact stays
/// bit-identical across runs.
public struct EvalClassificationStage: Stage {
    public struct Params: Decodable, Sendable {
        public var models: [String: String]
        public var data: String
        public var split: String
        public var batch_size: Int
        public var max_seq_len: Int
        public var latency_samples: Int
    }

    public static let descriptor = StageTypeDescriptor(
        type: "eval/classification",
        version: 1,
        summary: "Evaluate classifier models on a dataset split: accuracy, macro-F1, loss, size, sparsity, latency and throughput.",
        parameters: [
            ParameterSpec("models", .map(.artifact("model")), required: true, doc: "Models by the name their metrics are reported under, e.g. `{teacher: ${teacher.model}}`."),
            ParameterSpec("data", .artifact("dataset"), required: true, doc: "The dataset (`${stage.dataset}` of `data/text-classification`)."),
            ParameterSpec("split", .string, default: .string("test"), doc: "The split to evaluate."),
            ParameterSpec("batch_size", .int, default: .int(32), doc: "Examples per batch for accuracy and throughput."),
            ParameterSpec("max_seq_len", .int, default: .int(128), doc: "Tokens per example, [CLS] and [SEP] included."),
            ParameterSpec("latency_samples", .int, default: .int(100), doc: "Examples timed one at a time (batch 1) for the latency percentiles; 0 skips latency."),
        ],
        outputs: [
            OutputSpec("report", kind: "file", doc: "report.json: the deterministic metrics per model (no timings)."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let models = with["models"], case .mapping(let entries) = models.kind, entries.isEmpty {
            problems.append(Diagnostic("`models` is empty", at: models.location, hint: "name at least one model, e.g. `models: {teacher: ${teacher.model}}`"))
        }
        for (name, minimum) in [("batch_size", 1), ("max_seq_len", 3), ("latency_samples", 0)] {
            if let node = with[name], let text = node.scalar, let value = Int(text), value < minimum {
                problems.append(Diagnostic("`\(name)` must be at least \(minimum), got \(text)", at: node.location))
            }
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try Backends.make(context.backend, threads: context.threads)
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: params.data)
        }
        let examples = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(params.split) }
        guard !examples.isEmpty else { throw StageFailure("the `\(params.split)` split is empty") }
        let labels = examples.map(\.label)

        var metrics: [String: Value] = ["examples": .int(examples.count)]
        var report: [String: Value] = [:]
        for (name, directory) in params.models.sorted(by: { $0.key < $1.key }) {
            try Task.checkCancellation()
            context.progress.report(StageProgress(message: "evaluating \(name)"))
            let loaded = try LoadedClassifier(directory: directory, seed: 0)
            guard loaded.model.config.labels.count == dataset.labels.count else {
                throw StageFailure("""
                    model `\(name)` has \(loaded.model.config.labels.count) classes but the dataset has \(dataset.labels.count) \
                    (\(dataset.labels.joined(separator: ", "))); evaluate a model fine-tuned on this dataset
                    """)
            }
            let sequences = loaded.encode(examples.map(\.text), maxLength: params.max_seq_len)
            let started = ContinuousClock.now
            let scores = try loaded.model.evaluate(
                sequences, labels: labels, batchSize: params.batch_size, padID: loaded.padID, backend: backend)
            let evalSeconds = FinetuneStage.seconds(ContinuousClock.now - started)

            let size = Self.sizeMetrics(loaded)
            var modelMetrics: [String: Value] = [
                "accuracy": .double(scores.accuracy),
                "macro_f1": .double(scores.macroF1),
                "loss": .double(scores.loss),
                "parameters": .int(size.parameters),
                "encoder_parameters": .int(size.encoderParameters),
                "size_bytes": .int(size.fileBytes),
                "sparsity": .double(size.sparsity),
            ]
            report[name] = .object(modelMetrics.merging(
                ["confusion": .array(scores.confusion.map { .array($0.map(Value.int)) })], uniquingKeysWith: { a, _ in a }))
            modelMetrics["throughput_per_s"] = .double(Double(examples.count) / max(evalSeconds, 1e-9))
            if params.latency_samples > 0 {
                let latencies = try Self.latencies(loaded, sequences, samples: params.latency_samples, backend: backend)
                modelMetrics["latency_b1_p50_ms"] = .double(Self.percentile(latencies, 0.50) * 1000)
                modelMetrics["latency_b1_p95_ms"] = .double(Self.percentile(latencies, 0.95) * 1000)
            }
            for (key, value) in modelMetrics { metrics["\(name).\(key)"] = value }
            context.log.line(
                "\(name): " + String(format: "accuracy %.4f macro-F1 %.4f loss %.4f", scores.accuracy, scores.macroF1, scores.loss)
                    + ", \(size.parameters) parameters (\(size.encoderParameters) in the encoder), \(size.fileBytes) bytes, "
                    + String(format: "sparsity %.4f", size.sparsity))
        }
        let reportPath = (context.outputDirectory as NSString).appendingPathComponent("report.json")
        do {
            try AtomicFile.write(Data(Value.object(report).canonicalJSON.utf8), to: reportPath)
        } catch {
            throw StageFailure("cannot write \(reportPath): \(error)")
        }
        return StageResult(metrics: metrics, outputs: ["report": "report.json"])
    }

    struct SizeMetrics {
        var parameters: Int
        var encoderParameters: Int
        var fileBytes: Int
        /// Fraction of exact zeros among the encoder layers' weight matrices.
        var sparsity: Double
    }

    static func sizeMetrics(_ loaded: LoadedClassifier) -> SizeMetrics {
        var parameters = 0
        var encoder = 0
        var zeros = 0
        var matrixElements = 0
        for (name, tensor) in zip(loaded.model.weights.names, loaded.model.weights.elements) {
            parameters += tensor.count
            guard name.hasPrefix("encoder.") else { continue }
            encoder += tensor.count
            if tensor.rank == 2 {
                matrixElements += tensor.count
                zeros += tensor.withUnsafeFloats { values in values.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
            }
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: loaded.artifact.weightsPath)
        return SizeMetrics(
            parameters: parameters, encoderParameters: encoder,
            fileBytes: (attributes?[.size] as? NSNumber)?.intValue ?? 0,
            sparsity: matrixElements == 0 ? 0 : Double(zeros) / Double(matrixElements))
    }

    /// Seconds per forward of single examples (the first `samples`, cycling
    /// when the split is smaller), after one untimed warm-up.
    static func latencies(
        _ loaded: LoadedClassifier, _ sequences: TokenSequences, samples: Int, backend: any Backend
    ) throws -> [Double] {
        var times: [Double] = []
        times.reserveCapacity(samples)
        for index in -1..<samples {
            let batch = LengthBucketing.batch(sequences, indices: [max(index, 0) % sequences.count], padID: loaded.padID)
            let started = ContinuousClock.now
            _ = try loaded.model.logits(BertBatch(inputIDs: batch.ids, attentionMask: batch.attentionMask), backend: backend)
            if index >= 0 { times.append(FinetuneStage.seconds(ContinuousClock.now - started)) }
        }
        return times
    }

    /// The nearest-rank percentile of `values`.
    static func percentile(_ values: [Double], _ fraction: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }
}
