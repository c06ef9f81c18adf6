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
        doc: "`{split: train, samples: 128, seq_len: 64, batch_size: 16, allow_fewer: false}`: `samples` examples of `split`, drawn by the stage seed, cut to `seq_len` tokens ([CLS] and [SEP] included) and run in batches of `batch_size`; each selected layer sees their real (unpadded) tokens. A split with fewer than `samples` examples is an error, or a warning with `allow_fewer: true` (then every example calibrates).")
    static let include = Parameter(
        "include", .array(.string), default: ["*"],
        doc: "The linear layers of the encoder blocks to compress, by pattern (`*` any characters, `?` one; a pattern matches a run of whole dot-separated name components: `attention.self.*`, `layer.0.*`, `intermediate.dense`). The pooler and the classifier are never compressed. A pattern matching no layer is an error.")
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
    static func selection(_ model: BertModel, include: [String], skip: [String]) throws(StageFailure) -> LinearLayerSelection {
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
