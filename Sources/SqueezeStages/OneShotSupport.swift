import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `calibration:` of the one-shot stages (`prune/oneshot`, `quantize/gptq`).
public struct OneShotCalibrationParams: Decodable, Sendable {
    public var split: String?
    public var samples: Int?
    public var seq_len: Int?
    public var batch_size: Int?
    public var allow_fewer: Bool?
}

/// What the one-shot (calibration-based, layer-wise) stages share: the
/// calibration fragment and the layer selection, declared once; drawing the
/// calibration examples; the sequential pass that accumulates each selected
/// layer's input statistics; the reconstruction error; the report file.
enum OneShotStages {
    // MARK: Shared parameter declarations

    static let calibration = Parameter(
        "calibration", .optional(.mapping(OneShotCalibrationParams.self)),
        doc: "`{split: train, samples: 128, seq_len: 64, batch_size: 16, allow_fewer: false}`: BERT: `samples` examples of `split`, drawn by the stage seed, cut to `seq_len` tokens ([CLS] and [SEP] included) and run in batches of `batch_size`; each selected layer sees their real (unpadded) tokens. A split with fewer than `samples` examples is an error, or a warning with `allow_fewer: true` (then every example calibrates). Decoders: `samples` windows of `seq_len` tokens (default: the dataset's block_size) starting at positions of the `split` stream drawn by the stage seed, as SparseGPT and GPTQ calibrate.")
    static let include = Parameter(
        "include", .array(.string), default: ["*"],
        doc: "The linear layers of the model's blocks to compress, by pattern (`*` any characters, `?` one; a pattern matches a run of whole dot-separated name components: BERT `attention.self.*`, `layer.0.*`, `intermediate.dense`; decoders `self_attn.*`, `layers.0.*`, `mlp.down_proj`). BERT's pooler and classifier and a decoder's `lm_head` are never compressed. A pattern matching no layer is an error.")
    static let skip = Parameter(
        "skip", .array(.string), default: [],
        doc: "Included layers left as they are, by pattern (as `include`). A pattern matching none of the included layers is an error.")

    static let calibrationKeys = ["split", "samples", "seq_len", "batch_size", "allow_fewer"]
    static let defaults = (split: "train", samples: 128, seqLen: 64, batchSize: 16)

    // MARK: Checks (recipe validation)

    /// `calibration:` keys and values.
    static func checkCalibration(_ with: YAMLNode) -> [Diagnostic] {
        guard let node = with["calibration"] else { return [] }
        var problems = QuantizeStages.unknownKeys(node, parameter: "calibration", known: calibrationKeys)
        guard node.entries != nil else { return problems }
        problems += QuantizeStages.checkInteger(node, "samples", parameter: "calibration", minimum: 1)
        problems += QuantizeStages.checkInteger(node, "seq_len", parameter: "calibration", minimum: 3)
        problems += QuantizeStages.checkInteger(node, "batch_size", parameter: "calibration", minimum: 1)
        problems += QuantizeStages.checkBool(node, "allow_fewer", parameter: "calibration")
        if let split = node["split"], split.scalar == nil {
            problems.append(Diagnostic("`calibration.split` must be a split name", at: split.location))
        }
        return problems
    }

    /// `include` and `skip`: no empty patterns.
    static func checkPatterns(_ with: YAMLNode) -> [Diagnostic] {
        ["include", "skip"].flatMap { key -> [Diagnostic] in
            guard let items = with[key]?.items else { return [] }
            return items.compactMap { item in
                guard let text = item.scalar, text.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
                return Diagnostic(
                    "an empty `\(key)` pattern matches nothing", at: item.location, hint: "e.g. `attention.self.*` or `layer.0.*`")
            }
        }
    }

    /// A literal number of `with[key]`, with its node.
    static func literalNumber(_ with: YAMLNode, _ key: String) -> (value: Double, node: YAMLNode)? {
        guard let node = with[key], let text = node.scalar, !text.contains("${"), let value = Double(text) else { return nil }
        return (value, node)
    }

    // MARK: Run time

    /// The float model to compress; a failure (an unreadable or already
    /// quantized model) is reported at the `model` parameter.
    static func loadModel(_ directory: String) throws(StageFailure) -> LoadedClassifier {
        do {
            return try LoadedClassifier(directory: directory, seed: 0)
        } catch {
            throw StageFailure(error.message, parameter: "model")
        }
    }

    /// The layers `include` and `skip` select, or the view's error.
    static func selection<Model: LinearLayerModel>(_ model: Model, include: [String], skip: [String]) throws(StageFailure) -> LinearLayerSelection {
        do {
            return try LinearLayerSelection(model: model, include: include, skip: skip)
        } catch {
            throw StageFailure(error.message, parameter: error.message.hasPrefix("skip") ? "skip" : "include")
        }
    }

    /// The calibration examples: `samples` of `split`, drawn by `seed`.
    struct CalibrationSample {
        var split: String
        var seqLen: Int
        var batchSize: Int
        var texts: [String]
        var warnings: [String]
    }

    static func calibrationSample(
        _ calibration: OneShotCalibrationParams?, data: String, seed: UInt64
    ) throws(StageFailure) -> CalibrationSample {
        let split = calibration?.split ?? defaults.split
        let samples = calibration?.samples ?? defaults.samples
        let seqLen = calibration?.seq_len ?? defaults.seqLen
        let batchSize = calibration?.batch_size ?? defaults.batchSize
        guard samples >= 1, batchSize >= 1, seqLen >= 3 else {
            throw StageFailure("`calibration.samples` and `batch_size` must be at least 1, `seq_len` at least 3")
        }
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: data)
        }
        let examples = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(split) }
        guard !examples.isEmpty else { throw StageFailure("the calibration split `\(split)` is empty", parameter: "calibration") }
        var warnings: [String] = []
        if examples.count < samples {
            let message = "the calibration split `\(split)` has \(examples.count) examples, fewer than `calibration.samples` = \(samples)"
            guard calibration?.allow_fewer == true else {
                throw StageFailure(message + "; lower `calibration.samples`, or set `calibration.allow_fewer: true` to calibrate on all \(examples.count)", parameter: "calibration")
            }
            warnings.append(message + "; calibrating on all of them (`allow_fewer`)")
        }
        let order = QuantizePTQStage.shuffled(examples.count, seed: seed)
        return CalibrationSample(
            split: split, seqLen: seqLen, batchSize: batchSize, texts: order.prefix(samples).map { examples[$0].text }, warnings: warnings)
    }

    /// Calibration batches ready for the sequential protocol, and what they are.
    struct Calibration<Batch> {
        var split: String
        var samples: Int
        var seqLen: Int
        var batchSize: Int
        var tokens: Int
        var batches: [Batch]
        var warnings: [String]

        /// `128 examples of `train` (… tokens, seq_len 64, batches of 16)`.
        func describe(unit: String) -> String {
            "\(samples) \(unit) of `\(split)` (\(tokens) tokens, seq_len \(seqLen), batches of \(batchSize))"
        }

        var reportEntry: Value {
            .object([
                "split": .string(split), "samples": .int(samples), "seq_len": .int(seqLen), "batch_size": .int(batchSize),
                "tokens": .int(tokens),
            ])
        }
    }

    /// The model a one-shot stage compresses — a BERT classifier or a
    /// decoder — with its calibration and how the result is written.
    struct Subject<Model: LinearLayerModel> {
        var model: Model
        var calibration: Calibration<Model.Batch>?
        /// Warnings about the model itself (a BERT model without a classifier head).
        var warnings: [String]
        /// What a calibration sample is: `examples` or `windows`.
        var sampleUnit: String
        /// Writes `model` as an artifact in `directory` with the source's tokenizer files (`source`: the stage type).
        var save: (_ model: Model, _ directory: String, _ source: String) throws -> Void
    }

    /// Whether the model artifact in `directory` is a decoder (failures reported at `parameter`).
    static func isDecoder(_ directory: String, parameter: String = "model") throws(StageFailure) -> Bool {
        do {
            return try ModelArtifact(directory: directory).isDecoder
        } catch {
            throw StageFailure("cannot load the model: " + error.description, parameter: parameter)
        }
    }

    /// A BERT classifier with `samples` examples of a text-classification split.
    static func bertSubject(
        model directory: String, data: String?, calibration: OneShotCalibrationParams?, calibrated: Bool, seed: UInt64
    ) throws(StageFailure) -> Subject<BertModel> {
        let loaded = try loadModel(directory)
        var prepared: Calibration<BertBatch>?
        if calibrated, let data {
            let sample = try calibrationSample(calibration, data: data, seed: seed)
            let batches = batches(sample, for: loaded)
            prepared = Calibration(
                split: sample.split, samples: sample.texts.count, seqLen: sample.seqLen, batchSize: sample.batchSize,
                tokens: tokenCount(batches), batches: batches, warnings: sample.warnings)
        }
        let artifact = loaded.artifact
        return Subject(
            model: loaded.model, calibration: prepared, warnings: try QuantizeStages.headWarnings(artifact), sampleUnit: "examples",
            save: { model, directory, source in try LoadedClassifier.save(model, from: artifact, to: directory, source: source) })
    }

    /// A decoder with `samples` windows of `seq_len` tokens drawn (by `seed`)
    /// from a `data/text` split, as SparseGPT and GPTQ calibrate.
    static func decoderSubject(
        model directory: String, data: String?, calibration: OneShotCalibrationParams?, calibrated: Bool, seed: UInt64
    ) throws(StageFailure) -> Subject<DecoderModel> {
        let model = try LoadedDecoder.model(directory, parameter: "model")
        var prepared: Calibration<Tensor>?
        if calibrated, let data {
            let split = calibration?.split ?? defaults.split
            let samples = calibration?.samples ?? defaults.samples
            let batchSize = calibration?.batch_size ?? defaults.batchSize
            let dataset = try LanguageModelData.dataset(data)
            let seqLen = calibration?.seq_len ?? dataset.blockSize
            guard seqLen <= model.config.maximumSequenceLength else {
                throw StageFailure(
                    "`calibration.seq_len` \(seqLen) is longer than the model's context of \(model.config.maximumSequenceLength) tokens",
                    parameter: "calibration")
            }
            guard dataset.splits.contains(split) else {
                throw StageFailure("the dataset has no `\(split)` split (it has \(dataset.splits.joined(separator: ", ")))", parameter: "calibration")
            }
            try LanguageModelData.checkVocabulary(of: dataset, fits: model.config)
            let stream = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.tokens(split) }
            guard stream.count > seqLen else {
                throw StageFailure("the calibration split `\(split)` has \(stream.count) tokens, not more than one window of \(seqLen)", parameter: "calibration")
            }
            var generator = SeededGenerator(seed: seed)
            let starts = (0..<samples).map { _ in Int(generator.next() % UInt64(stream.count - seqLen)) }
            var batches: [Tensor] = []
            for first in stride(from: 0, to: samples, by: batchSize) {
                let group = starts[first..<min(first + batchSize, samples)]
                batches.append(Tensor(shape: [group.count, seqLen], int32s: group.flatMap { stream[$0..<($0 + seqLen)] }))
            }
            prepared = Calibration(
                split: split, samples: samples, seqLen: seqLen, batchSize: batchSize, tokens: samples * seqLen, batches: batches, warnings: [])
        }
        return Subject(
            model: model, calibration: prepared, warnings: [], sampleUnit: "windows",
            save: { model, target, source in try LoadedDecoder.save(model, tokenizerFrom: directory, to: target, source: source) })
    }

    /// Real (unpadded) tokens in `batches`.
    static func tokenCount(_ batches: [BertBatch]) -> Int {
        batches.reduce(0) { total, batch in total + batch.attentionMask.int32s.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
    }

    /// The sample as model batches (length-bucketed, no shuffling: the order is the seed's).
    static func batches(_ sample: CalibrationSample, for loaded: LoadedClassifier) -> [BertBatch] {
        let sequences = loaded.encode(sample.texts, maxLength: sample.seqLen)
        return LengthBucketing.batches(sequences, batchSize: sample.batchSize, padID: loaded.padID, shuffle: false, seed: 0)
            .map { BertBatch(inputIDs: $0.ids, attentionMask: $0.attentionMask) }
    }

    /// Each selected layer's input statistics, accumulated block by block in
    /// the sequential protocol; layers fed the same activation (query, key,
    /// value) share one accumulation, found by the view handing them the
    /// same tensor.
    final class StatisticsCollector {
        let backend: any Backend
        private(set) var statistics: [String: LayerInputStatistics] = [:]
        /// The layer whose statistics a layer uses (itself, or the first
        /// layer of its block fed the same input).
        private(set) var owner: [String: String] = [:]

        init(backend: any Backend) { self.backend = backend }

        func observe(_ block: LinearBlock, selected: Set<String>, inputs: [String: Tensor]) throws {
            var seen: [(tensor: Tensor, name: String)] = []
            for layer in block.layers where selected.contains(layer.name) {
                guard let x = inputs[layer.name] else { throw StageFailure("no calibration inputs were captured for `\(layer.name)`") }
                if let shared = seen.first(where: { Self.same($0.tensor, x) }) {
                    owner[layer.name] = shared.name
                    continue
                }
                seen.append((x, layer.name))
                owner[layer.name] = layer.name
                var accumulated = try statistics[layer.name] ?? LayerInputStatistics(columns: layer.inFeatures)
                try accumulated.accumulate(x, backend: backend)
                statistics[layer.name] = accumulated
            }
        }

        /// The statistics `layer` uses.
        func statistics(of layer: String) -> LayerInputStatistics? {
            owner[layer].flatMap { statistics[$0] }
        }

        /// Frees a block's statistics once it is compressed.
        func release(_ block: LinearBlock) {
            for layer in block.layers {
                statistics[layer.name] = nil
            }
        }

        private static func same(_ a: Tensor, _ b: Tensor) -> Bool {
            a.storage === b.storage && a.offset == b.offset && a.shape == b.shape
        }
    }

    /// `‖(W − Ŵ)Xᵀ‖ / ‖WXᵀ‖` over a layer's calibration tokens, from its
    /// Hessian (`H = (2/n) XᵀX`, so `‖ΔW Xᵀ‖² = (n/2) tr(ΔW H ΔWᵀ)`, and the
    /// factor cancels): one `[rows, cols] × [cols, cols]` backend product per
    /// trace, the original's computed once.
    struct ReconstructionError {
        let original: [Float]
        let rows: Int
        let cols: Int
        let hessian: Tensor
        let backend: any Backend
        /// `tr(W H Wᵀ)`.
        let signal: Double

        init(original: [Float], rows: Int, cols: Int, statistics: LayerInputStatistics, backend: any Backend) {
            self.original = original
            self.rows = rows
            self.cols = cols
            self.backend = backend
            hessian = Tensor(shape: [cols, cols], floats: statistics.hessian.map { Float($0) })
            signal = Self.energy(original, rows: rows, cols: cols, hessian: hessian, backend: backend)
        }

        /// The relative error of `approximation`; nil when the layer's output has no energy.
        func relative(_ approximation: [Float]) -> Double? {
            guard signal > 0, signal.isFinite else { return nil }
            let difference = zip(original, approximation).map { $0 - $1 }
            let noise = Self.energy(difference, rows: rows, cols: cols, hessian: hessian, backend: backend)
            return (Swift.max(noise, 0) / signal).squareRoot()
        }

        /// `tr(M H Mᵀ)`.
        static func energy(_ matrix: [Float], rows: Int, cols: Int, hessian: Tensor, backend: any Backend) -> Double {
            let product = backend.matmul(Tensor(shape: [rows, cols], floats: matrix), hessian, transposeA: false, transposeB: false, alpha: 1)
            return product.withUnsafeFloats { p in
                var sum = 0.0
                for index in 0..<(rows * cols) { sum += Double(p[index]) * Double(matrix[index]) }
                return sum
            }
        }
    }

    /// A number for report.json, rounded to 6 significant digits so the file
    /// reads well; non-finite and missing values are null.
    static func rounded(_ value: Double?) -> Value {
        guard let value, value.isFinite else { return .null }
        return .double(Double(String(format: "%.6g", value)) ?? value)
    }

    /// The layers' seconds as a metric (kept out of report.json, whose bytes
    /// are an output and must not depend on timing).
    static func secondsMetric(_ seconds: [(String, Double)]) -> Value {
        .object(Dictionary(seconds.map { ($0.0, .double(($0.1 * 1000).rounded() / 1000)) }, uniquingKeysWith: { first, _ in first }))
    }

    /// The size of `model.safetensors` in `directory`.
    static func fileSize(_ directory: String) -> Int {
        let path = (directory as NSString).appendingPathComponent(ModelArtifact.weightsFileName)
        return (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Seconds since `start`.
    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }
}
