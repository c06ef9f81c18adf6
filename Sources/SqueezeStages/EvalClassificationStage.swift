import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: eval/classification` — scores one or more classifier model
/// artifacts on a dataset split: accuracy, macro-F1 and loss; parameter
/// counts, weights file size and sparsity; and, on the current backend,
/// batch-1 latency percentiles, evaluation throughput and the latency of a
/// fixed-shape batch (by default 32 × 64 tokens), optionally as a speedup
/// over a baseline model.
///
/// Quality and size metrics are deterministic and also written to the
/// `report` output (JSON). Latencies, throughput and speedups are
/// measurements of this machine at this moment (keys ending in `_ms` and
/// `_per_s`, and `speedup_…`); they are recorded as metrics but kept out of
/// the artifact, so the artifact stays bit-identical across runs.
public struct EvalClassificationStage: Stage {
    public struct Params: StageParameters {
        public static let models = Parameter("models", .map(.artifact("model")), doc: "Models by the name their metrics are reported under, e.g. `{teacher: ${teacher.model}}`.")
        public static let data = Parameter("data", .artifact("dataset"), doc: "The dataset (`${stage.dataset}` of `data/text-classification`).")
        public static let split = Parameter("split", .string, default: "test", doc: "The split to evaluate.")
        public static let batch_size = Parameter("batch_size", .int, default: 32, doc: "Examples per batch for accuracy and throughput.")
        public static let max_seq_len = Parameter("max_seq_len", .int, default: 128, doc: "Tokens per example, [CLS] and [SEP] included.")
        public static let latency_samples = Parameter("latency_samples", .int, default: 100, doc: "Examples timed one at a time (batch 1) for the latency percentiles; 0 skips latency.")
        public static let speed_repeats = Parameter("speed_repeats", .int, default: 10, doc: "Timed inference runs (no dropout) per model of one fixed batch of `speed_batch_size` × `speed_seq_len` random token ids (stage seed, attention mask all ones), after 2 warm-ups; the median is reported as `<name>.latency_b<B>_t<T>_ms`. 0 skips this timing.")
        public static let speed_batch_size = Parameter("speed_batch_size", .int, default: 32, doc: "Sequences in the fixed-shape timing batch.")
        public static let speed_seq_len = Parameter("speed_seq_len", .int, default: 64, doc: "Tokens per sequence in the fixed-shape timing batch; at most every model's `max_position_embeddings`.")
        public static let baseline = Parameter("baseline", .optional(.string), doc: "The name (a key of `models`) of the model the others are compared with: every model gets `<name>.parameter_ratio` (its parameters / the baseline's) and `<name>.speedup_b<B>_t<T>` (baseline median latency / its median latency; 1 for the baseline). The fixed-shape runs of all models are interleaved round-robin, so machine noise hits every model alike.")

        public static let parameters: [any ParameterDeclaration] = [
            models, data, split, batch_size, max_seq_len, latency_samples, speed_repeats, speed_batch_size, speed_seq_len,
            baseline,
        ]

        public var models: [String: String]
        public var data: String
        public var split: String
        public var batch_size: Int
        public var max_seq_len: Int
        public var latency_samples: Int
        public var speed_repeats: Int
        public var speed_batch_size: Int
        public var speed_seq_len: Int
        public var baseline: String?

        public init(_ arguments: StageArguments) throws {
            models = try arguments[Self.models]
            data = try arguments[Self.data]
            split = try arguments[Self.split]
            batch_size = try arguments[Self.batch_size]
            max_seq_len = try arguments[Self.max_seq_len]
            latency_samples = try arguments[Self.latency_samples]
            speed_repeats = try arguments[Self.speed_repeats]
            speed_batch_size = try arguments[Self.speed_batch_size]
            speed_seq_len = try arguments[Self.speed_seq_len]
            baseline = try arguments[Self.baseline]
        }
    }

    /// Untimed fixed-shape runs of every model before the timed ones.
    static let speedWarmups = 2

    public static let descriptor = StageTypeDescriptor(
        type: "eval/classification",
        version: 2,
        summary: "Evaluate classifier models on a dataset split: accuracy, macro-F1, loss, size, sparsity, latency, throughput and speedup over a baseline.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("report", kind: "file", doc: "report.json: the deterministic metrics per model (no timings)."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    /// The backends a recipe may name.
    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let models = with["models"], case .mapping(let entries) = models.kind, entries.isEmpty {
            problems.append(Diagnostic("`models` is empty", at: models.location, hint: "name at least one model, e.g. `models: {teacher: ${teacher.model}}`"))
        }
        let minimums = [
            ("batch_size", 1), ("max_seq_len", 3), ("latency_samples", 0), ("speed_repeats", 0), ("speed_batch_size", 1),
            ("speed_seq_len", 1),
        ]
        for (name, minimum) in minimums {
            if let node = with[name], let text = node.scalar, let value = Int(text), value < minimum {
                problems.append(Diagnostic("`\(name)` must be at least \(minimum), got \(text)", at: node.location))
            }
        }
        if let baseline = with["baseline"], let name = baseline.scalar, !name.contains("${"),
            let entries = with["models"]?.entries
        {
            let names = entries.compactMap(\.key.scalar)
            if !names.contains(name) {
                problems.append(Diagnostic(
                    "`baseline` must name one of `models`, got `\(name)`", at: baseline.location,
                    hint: Suggestion.hint(for: name, in: names)
                        ?? "`models` names \(names.sorted().map { "`\($0)`" }.joined(separator: ", "))"))
            }
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        if let baseline = params.baseline, params.models[baseline] == nil {
            throw StageFailure("`baseline` \(baseline) is not one of `models` (\(params.models.keys.sorted().joined(separator: ", ")))")
        }
        let timesSpeed = params.speed_repeats > 0
        if timesSpeed { try Self.checkSpeedShape(params) }
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: params.data)
        }
        let examples = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(params.split) }
        guard !examples.isEmpty else { throw StageFailure("the `\(params.split)` split is empty") }

        var metrics: [String: Value] = ["examples": .int(examples.count)]
        var report: [String: [String: Value]] = [:]
        var parameters: [String: Int] = [:]
        var timed: [String: any SequenceClassifier] = [:]
        for (name, directory) in params.models.sorted(by: { $0.key < $1.key }) {
            try Task.checkCancellation()
            context.progress.report(StageProgress(message: "evaluating \(name)"))
            let evaluation = try Self.evaluate(
                name, directory: directory, examples: examples, classes: dataset.labels, params, backend: backend, log: context.log)
            report[name] = evaluation.report
            parameters[name] = evaluation.parameters
            metrics.merge(evaluation.timings) { _, timing in timing }
            if timesSpeed { timed[name] = evaluation.model }
        }
        if let baseline = params.baseline, let baselineParameters = parameters[baseline] {
            for (name, count) in parameters {
                report[name]?["parameter_ratio"] = .double(name == baseline ? 1 : Double(count) / Double(max(baselineParameters, 1)))
            }
        }
        for (name, entry) in report {
            for (key, value) in entry where key != "confusion" { metrics["\(name).\(key)"] = value }
        }
        if timesSpeed {
            try Task.checkCancellation()
            context.progress.report(StageProgress(message: "timing inference"))
            metrics.merge(try Self.speedMetrics(timed, params, seed: context.seed, backend: backend, log: context.log)) { _, speed in speed }
        }
        let reportPath = (context.outputDirectory as NSString).appendingPathComponent("report.json")
        do {
            try AtomicFile.write(Data(Value.object(report.mapValues(Value.object)).canonicalJSON.utf8), to: reportPath)
        } catch {
            throw StageFailure("cannot write \(reportPath): \(error)")
        }
        return StageResult(metrics: metrics, outputs: ["report": "report.json"])
    }

    /// One model's evaluation: its `report.json` entry, its throughput and
    /// latency metrics (`<name>.…`), and the model for the fixed-shape timing.
    struct ModelEvaluation {
        var report: [String: Value]
        var parameters: Int
        var timings: [String: Value]
        var model: any SequenceClassifier
    }

    /// Scores the model in `directory` on `examples`, measures its size and
    /// speed, and logs the scores and size.
    static func evaluate(
        _ name: String, directory: String, examples: [TextClassificationDataset.Example], classes: [String], _ params: Params,
        backend: any Backend, log: StageLog
    ) throws -> ModelEvaluation {
        let loaded = try LoadedInferenceModel(directory: directory)
        guard loaded.model.config.labels.count == classes.count else {
            throw StageFailure("""
                model `\(name)` has \(loaded.model.config.labels.count) classes but the dataset has \(classes.count) \
                (\(classes.joined(separator: ", "))); evaluate a model fine-tuned on this dataset
                """)
        }
        let sequences = loaded.encode(examples.map(\.text), maxLength: params.max_seq_len)
        let started = ContinuousClock.now
        let scores = try loaded.model.evaluate(
            sequences, labels: examples.map(\.label), batchSize: params.batch_size, padID: loaded.padID, backend: backend)
        let evalSeconds = StageTiming.seconds(ContinuousClock.now - started)

        let size = sizeMetrics(loaded)
        var report: [String: Value] = [
            "accuracy": .double(scores.accuracy),
            "macro_f1": .double(scores.macroF1),
            "loss": .double(scores.loss),
            "parameters": .int(size.parameters),
            "encoder_parameters": .int(size.encoderParameters),
            "size_bytes": .int(size.fileBytes),
            "sparsity": .double(size.sparsity),
            "confusion": .array(scores.confusion.map { .array($0.map(Value.int)) }),
        ]
        if let quantization = loaded.quantization { report["quantization"] = .string(quantization.mode.rawValue) }
        if let masked = maskedLayers(loaded.model) { report["masked_layers"] = masked }
        var timings: [String: Value] = ["\(name).throughput_per_s": .double(Double(examples.count) / max(evalSeconds, 1e-9))]
        if params.latency_samples > 0 {
            let latencies = try latencies(loaded, sequences, samples: params.latency_samples, backend: backend)
            timings["\(name).latency_b1_p50_ms"] = .double(percentile(latencies, 0.50) * 1000)
            timings["\(name).latency_b1_p95_ms"] = .double(percentile(latencies, 0.95) * 1000)
        }
        if params.latency_samples > 0 || params.speed_repeats > 0, let mode = loaded.quantization?.mode, mode != .weightOnly,
            let cpu = backend as? CPUBackend
        {
            // Which int8 GEMM ran the timed products (the weights are within ±63): latencies
            // compare only between runs that used the same kernel; the accuracy does not depend on it.
            timings["\(name).int8_kernel"] = .string(cpu.int8KernelName(activationMax: 255, fastActivationLimit: 255))
        }
        log.line(
            "\(name): " + String(format: "accuracy %.4f macro-F1 %.4f loss %.4f", scores.accuracy, scores.macroF1, scores.loss)
                + ", \(size.parameters) parameters (\(size.encoderParameters) in the encoder), \(size.fileBytes) bytes, "
                + String(format: "sparsity %.4f", size.sparsity))
        return ModelEvaluation(report: report, parameters: size.parameters, timings: timings, model: loaded.model)
    }

    /// The fixed-shape timing of the `timed` models (the baseline first):
    /// `<name>.latency_b<B>_t<T>_ms` and, with a baseline, `<name>.speedup_…`.
    static func speedMetrics(
        _ timed: [String: any SequenceClassifier], _ params: Params, seed: UInt64, backend: any Backend, log: StageLog
    ) throws -> [String: Value] {
        let shape = "b\(params.speed_batch_size)_t\(params.speed_seq_len)"
        let order = params.baseline.map { baseline in [baseline] + timed.keys.sorted().filter { $0 != baseline } }
            ?? timed.keys.sorted()
        let models = order.compactMap { name in timed[name].map { (name: name, model: $0) } }
        let input = speedInput(models.map(\.model), batchSize: params.speed_batch_size, length: params.speed_seq_len, seed: seed)
        let medians = try interleavedMedians(models, input: input, repeats: params.speed_repeats, backend: backend)
        var metrics: [String: Value] = [:]
        var line = "inference \(params.speed_batch_size) × \(params.speed_seq_len) tokens, median of \(params.speed_repeats):"
        for name in order {
            guard let median = medians[name] else { continue }
            metrics["\(name).latency_\(shape)_ms"] = .double(median * 1000)
            line += String(format: " \(name) %.3f ms", median * 1000)
            if let baseline = params.baseline, let reference = medians[baseline] {
                let speedup = name == baseline ? 1 : reference / max(median, 1e-12)
                metrics["\(name).speedup_\(shape)"] = .double(speedup)
                if name != baseline { line += String(format: " (%.2f× `\(baseline)`)", speedup) }
            }
            line += ";"
        }
        log.line(String(line.dropLast()))
        return metrics
    }

    /// Fails before any evaluation when a model cannot run the fixed-shape batch.
    static func checkSpeedShape(_ params: Params) throws(StageFailure) {
        for (name, directory) in params.models.sorted(by: { $0.key < $1.key }) {
            let config = try StageFailure.wrapping("cannot load the model: ") { () throws(ModelFileError) in
                try BertConfig(contentsOfFile: try ModelArtifact(directory: directory).configPath)
            }
            guard params.speed_seq_len <= config.maxPositionEmbeddings else {
                throw StageFailure("""
                    `speed_seq_len` \(params.speed_seq_len) exceeds max_position_embeddings \(config.maxPositionEmbeddings) \
                    of model `\(name)`; set `speed_seq_len` to at most \(config.maxPositionEmbeddings), \
                    or `speed_repeats: 0` to skip the fixed-shape timing
                    """)
            }
        }
    }

    /// The fixed-shape timing batch: ids drawn by `seed` below every model's
    /// vocabulary size (the same input for all), attention mask all ones.
    static func speedInput(_ models: [any SequenceClassifier], batchSize: Int, length: Int, seed: UInt64) -> BertBatch {
        let vocabulary = UInt64(max(models.map(\.config.vocabSize).min() ?? 1, 1))
        var generator = SeededGenerator(seed: seed)
        var ids = [Int32](repeating: 0, count: batchSize * length)
        for index in ids.indices { ids[index] = Int32(truncatingIfNeeded: generator.next() % vocabulary) }
        return BertBatch(inputIDs: Tensor(shape: [batchSize, length], int32s: ids))
    }

    /// Median seconds per inference of `input`, by model name. Runs go
    /// round-robin — one run of each model in `models` order, then again —
    /// so drifts in the machine's speed hit every model alike; the first
    /// `speedWarmups` rounds are not timed.
    static func interleavedMedians(
        _ models: [(name: String, model: any SequenceClassifier)], input: BertBatch, repeats: Int, backend: any Backend
    ) throws -> [String: Double] {
        var times = [[Double]](repeating: [], count: models.count)
        for round in 0..<(speedWarmups + repeats) {
            try Task.checkCancellation()
            for (index, entry) in models.enumerated() {
                let started = ContinuousClock.now
                _ = try entry.model.logits(input, backend: backend)
                if round >= speedWarmups { times[index].append(StageTiming.seconds(ContinuousClock.now - started)) }
            }
        }
        var medians: [String: Double] = [:]
        for (index, entry) in models.enumerated() { medians[entry.name] = median(times[index]) }
        return medians
    }

    /// The middle value of `values` (the mean of the two middle ones for an even count).
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    struct SizeMetrics {
        var parameters: Int
        var encoderParameters: Int
        var fileBytes: Int
        /// Fraction of exact zeros among the encoder layers' weight matrices.
        var sparsity: Double
    }

    /// Parameters count every weight once, whatever its type (an int8
    /// weight's scales are not counted); sparsity counts exact zeros of f32
    /// and int8 matrices alike.
    static func sizeMetrics(_ loaded: LoadedInferenceModel) -> SizeMetrics {
        var parameters = 0
        var encoder = 0
        var zeros = 0
        var matrixElements = 0
        for (name, tensor) in loaded.model.namedParameters {
            parameters += tensor.count
            guard name.hasPrefix("encoder.") else { continue }
            encoder += tensor.count
            if tensor.rank == 2 {
                matrixElements += tensor.count
                zeros += tensor.dtype == .i8
                    ? tensor.withUnsafeElements(Int8.self) { values in values.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
                    : tensor.withUnsafeFloats { values in values.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
            }
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: loaded.artifact.weightsPath)
        return SizeMetrics(
            parameters: parameters, encoderParameters: encoder,
            fileBytes: (attributes?[.size] as? NSNumber)?.intValue ?? 0,
            sparsity: matrixElements == 0 ? 0 : Double(zeros) / Double(matrixElements))
    }

    /// For a model whose artifact carries pruning masks: per masked weight
    /// (by parameter name), its pattern and the share of exact zeros in it;
    /// nil for a model without masks.
    static func maskedLayers(_ model: any SequenceClassifier) -> Value? {
        guard let model = model as? BertModel, !model.masks.isEmpty else { return nil }
        let parameters = Dictionary(model.namedParameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { first, _ in first })
        var layers: [String: Value] = [:]
        for (name, mask) in model.masks {
            let zeros = parameters[name].map { tensor in
                tensor.withUnsafeFloats { values in values.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
            } ?? 0
            layers[name] = .object([
                "pattern": .string(mask.pattern.description),
                "zero_share": .double(mask.elementCount == 0 ? 0 : Double(zeros) / Double(mask.elementCount)),
            ])
        }
        return .object(layers)
    }

    /// Seconds per forward of single examples (the first `samples`, cycling
    /// when the split is smaller), after one untimed warm-up.
    static func latencies(
        _ loaded: LoadedInferenceModel, _ sequences: TokenSequences, samples: Int, backend: any Backend
    ) throws -> [Double] {
        var times: [Double] = []
        times.reserveCapacity(samples)
        for index in -1..<samples {
            let batch = LengthBucketing.batch(sequences, indices: [max(index, 0) % sequences.count], padID: loaded.padID)
            let started = ContinuousClock.now
            _ = try loaded.model.logits(BertBatch(inputIDs: batch.ids, attentionMask: batch.attentionMask), backend: backend)
            if index >= 0 { times.append(StageTiming.seconds(ContinuousClock.now - started)) }
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
