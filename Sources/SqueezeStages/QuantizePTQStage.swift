import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: quantize/ptq` — static W8A8 post-training quantization of a float
/// classifier: the float model runs over calibration batches of a dataset
/// split, an observer (minmax, percentile, mse, entropy) picks each Linear
/// input's range, fixed per-tensor u8 parameters follow; weights are int8,
/// symmetric per output row. Outputs the quantized model artifact and a
/// per-layer report (observed and chosen ranges, scale, zero point, weight
/// SQNR, and the SQNR of each layer's output against the float layer's on
/// held-out batches, plus the logits' SQNR).
public struct QuantizePTQStage: Stage {
    public struct Calibration: Decodable, Sendable {
        public var split: String?
        public var batches: Int?
        public var batch_size: Int?
        public var held_out_batches: Int?
        public var allow_fewer: Bool?
    }

    /// `smoothing: {alpha: 0.5}` or `{alpha: auto}`.
    public struct Smoothing: Decodable, Sendable {
        /// A number, `auto`, or what the recipe wrote otherwise (refused at run time).
        public enum Alpha: Decodable, Sendable, Equatable {
            case value(Double)
            case auto
            case invalid(String)

            public init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Double.self) {
                    self = .value(number)
                } else if let text = try? container.decode(String.self) {
                    self = text == "auto" ? .auto : Double(text).map(Alpha.value) ?? .invalid(text)
                } else {
                    self = .invalid("a value that is neither a number nor `auto`")
                }
            }
        }

        public var alpha: Alpha?
        public var attention_output: Bool?
    }

    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The float classifier to quantize (`${finetuned.model}`); an already quantized model is an error.")
        public static let data = Parameter("data", .artifact("dataset"), doc: "The dataset (`${stage.dataset}` of `data/text-classification`) the calibration examples come from.")
        public static let calibration = Parameter("calibration", .optional(.mapping(Calibration.self)), doc: "`{split: train, batches: 8, batch_size: 32, held_out_batches: 4, allow_fewer: false}`: the observers see `batches` × `batch_size` examples of `split`, drawn by the stage seed; the next `held_out_batches` × `batch_size` examples (held out) measure the SQNRs. A split with fewer than `batches` × `batch_size` examples is an error, or a warning with `allow_fewer: true` (then every example calibrates; the SQNRs are measured on the calibration examples when none are left over).")
        public static let observer = Parameter("observer", .enumeration(ModelQuantization.observers), default: "minmax", doc: "How each activation range is chosen: `minmax` (observed extremes), `percentile` (the (100 − p)-th and p-th percentiles), `mse` (least squared quantization error), `entropy` (least KL divergence, TensorRT's calibrator; 2048-bin histograms).")
        public static let percentile = Parameter("percentile", .optional(.number), doc: "p of the `percentile` observer, in (50, 100]. Default 99.99.")
        public static let histogram_bins = Parameter("histogram_bins", .int, default: 2048, doc: "Bins of the histograms the `percentile`, `mse` and `entropy` observers build (2048, as TensorRT's calibrator); 256 to 1048576.")
        public static let weights = Parameter("weights", .optional(.mapping(QuantizationSchemeParams.self)), doc: "`{bits: 8, granularity: per_channel, symmetric: true}`: int8 weights, symmetric, one scale per output row (`per_channel`) or per matrix (`per_tensor`). 4-bit and per-group weights are weight-only quantization (`quantize/weight-only`), not W8A8.")
        public static let activations = Parameter("activations", .optional(.mapping(QuantizationSchemeParams.self)), doc: "`{bits: 8, granularity: per_tensor, symmetric: false}`: u8 activations with one fixed scale and zero point per Linear input (static is per-tensor; per-row needs `quantize/dynamic`); `symmetric: true` centres each range on 0.")
        public static let skip = Parameter("skip", .array(.string), default: [], doc: "Linear modules kept in f32, by pattern: `*` matches any characters, `?` one; a pattern matches a run of whole dot-separated name components (`classifier`, `pooler`, `layer.0.*`, `attention.output.dense`). A pattern matching nothing is a warning.")
        public static let max_seq_len = Parameter("max_seq_len", .int, default: 128, doc: "Tokens per calibration example, [CLS] and [SEP] included.")
        public static let smoothing = Parameter("smoothing", .optional(.mapping(Smoothing.self)), doc: "SmoothQuant: `{alpha: 0.5}` migrates activation outliers into the weights, per input channel `s_j = max|X_j|^α / max|W_j|^(1−α)` from the calibration batches, at a fixed α in [0, 1] (0.5 when left out), or `{alpha: auto}`: each α of 0, 0.1, …, 1 is tried and the one whose quantized logits are nearest the float model's on the calibration batches (least MSE) is kept. Smoothed: each layer's query/key/value (one factor, in their input's quantization) and FFN input projection, and with `attention_output: true` its attention output (folded into the value projection); exact in f32 (docs/quantized-models.md). Left out: no smoothing.")

        public static let parameters: [any ParameterDeclaration] = [
            model, data, calibration, observer, percentile, histogram_bins, weights, activations, skip, max_seq_len, smoothing,
        ]

        public var model: String
        public var data: String
        public var calibration: Calibration?
        public var observer: String
        public var percentile: Double?
        public var histogram_bins: Int
        public var weights: QuantizationSchemeParams?
        public var activations: QuantizationSchemeParams?
        public var skip: [String]
        public var max_seq_len: Int
        public var smoothing: Smoothing?

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            data = try arguments[Self.data]
            calibration = try arguments[Self.calibration]
            observer = try arguments[Self.observer]
            percentile = try arguments[Self.percentile]
            histogram_bins = try arguments[Self.histogram_bins]
            weights = try arguments[Self.weights]
            activations = try arguments[Self.activations]
            skip = try arguments[Self.skip]
            max_seq_len = try arguments[Self.max_seq_len]
            smoothing = try arguments[Self.smoothing]
        }
    }

    static let calibrationKeys = ["split", "batches", "batch_size", "held_out_batches", "allow_fewer"]
    static let smoothingKeys = ["alpha", "attention_output"]
    /// SmoothQuant's α when `smoothing` gives none (the paper's default for most models).
    static let defaultSmoothingAlpha = 0.5
    static let defaults = (split: "train", batches: 8, batchSize: 32, heldOutBatches: 4)
    static let defaultPercentile = 99.99

    public static let descriptor = StageTypeDescriptor(
        type: "quantize/ptq",
        version: 1,
        summary: "Static W8A8 post-training quantization: calibrate activation ranges on a dataset split with an observer, int8 weights per channel; outputs the int8 model and a per-layer SQNR report.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The quantized model artifact (int8 Linears; see docs/quantized-models.md)."),
            OutputSpec("report", kind: "file", doc: "report.json: per-layer ranges, scales, zero points and SQNRs, skipped modules, summary."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        check: checkParams
    )

    /// The backends a recipe may name.
    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems = ParamChecks.atLeast(with, [(Params.max_seq_len, 3), (Params.histogram_bins, 256)])
        if let node = with["histogram_bins"], let value = ParamChecks.number(node), value > Double(1 << 20) {
            problems.append(Diagnostic("`histogram_bins` must be at most 1048576, got \(node.scalar ?? "")", at: node.location))
        }
        if let node = with["calibration"] {
            problems += QuantizeStages.unknownKeys(node, parameter: "calibration", known: calibrationKeys)
            if node.entries != nil {
                problems += QuantizeStages.checkInteger(node, "batches", parameter: "calibration", minimum: 1)
                problems += QuantizeStages.checkInteger(node, "batch_size", parameter: "calibration", minimum: 1)
                problems += QuantizeStages.checkInteger(node, "held_out_batches", parameter: "calibration", minimum: 0)
                problems += QuantizeStages.checkBool(node, "allow_fewer", parameter: "calibration")
                if let split = node["split"], split.scalar == nil {
                    problems.append(Diagnostic("`calibration.split` must be a split name", at: split.location))
                }
            }
        }
        if let node = with["percentile"] {
            if let observer = with["observer"]?.scalar, !observer.contains("${"), observer != "percentile" {
                problems.append(Diagnostic(
                    "`percentile` applies to `observer: percentile`, not `\(observer)`", at: node.location, hint: "remove `percentile`"))
            }
            if let value = ParamChecks.number(node), !(value > 50 && value <= 100) {
                problems.append(Diagnostic("`percentile` must be in (50, 100], got \(node.scalar ?? "")", at: node.location, hint: "e.g. 99.99"))
            }
        }
        problems += QuantizeStages.checkWeights(with)
        problems += QuantizeStages.checkActivations(
            with, granularities: ["per_tensor"],
            otherwise: "static activations have one fixed scale per tensor; per-row (per-token) ranges are measured at run time by `quantize/dynamic`")
        problems += QuantizeStages.checkSkip(with)
        problems += checkSmoothing(with)
        return problems
    }

    /// `smoothing: {alpha: <number in [0, 1]> | auto}`.
    static func checkSmoothing(_ with: YAMLNode) -> [Diagnostic] {
        guard let node = with["smoothing"] else { return [] }
        var problems = QuantizeStages.unknownKeys(node, parameter: "smoothing", known: smoothingKeys)
        guard node.entries != nil else { return problems }
        problems += QuantizeStages.checkBool(node, "attention_output", parameter: "smoothing")
        guard let alpha = node["alpha"] else { return problems }
        guard let text = alpha.scalar else {
            return problems + [Diagnostic("`smoothing.alpha` must be a number in [0, 1] or `auto`", at: alpha.location, hint: "e.g. `alpha: 0.5` or `alpha: auto`")]
        }
        if text.contains("${") || text == "auto" { return problems }
        if let value = Double(text), (0...1).contains(value) { return problems }
        problems.append(Diagnostic(
            "`smoothing.alpha` must be a number in [0, 1] or `auto`, got `\(text)`", at: alpha.location,
            hint: "α is the share of each channel's range moved from the activations to the weights: e.g. `alpha: 0.5`, or `alpha: auto` to search 0, 0.1, …, 1"))
        return problems
    }

    /// The smoothing settings `smoothing` names (nil: none).
    static func smoothing(_ params: Params) throws(StageFailure) -> SmoothingSettings? {
        guard let smoothing = params.smoothing else { return nil }
        let attentionOutput = smoothing.attention_output ?? false
        switch smoothing.alpha ?? .value(defaultSmoothingAlpha) {
        case .auto:
            return SmoothingSettings(alpha: .search(SmoothingSettings.searchGrid), attentionOutput: attentionOutput)
        case .value(let alpha) where (0...1).contains(alpha):
            return SmoothingSettings(alpha: .fixed(alpha), attentionOutput: attentionOutput)
        case .value(let alpha):
            throw StageFailure("`smoothing.alpha` must be a number in [0, 1] or `auto`, got \(alpha)")
        case .invalid(let text):
            throw StageFailure("`smoothing.alpha` must be a number in [0, 1] or `auto`, got `\(text)`")
        }
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let backend = try backends.make(context)
        // Everything that can be wrong is checked before calibration.
        let loaded = try LoadedClassifier(directory: params.model, seed: 0)
        let options = try QuantizeStages.options(
            weights: params.weights, activations: params.activations, skip: params.skip, defaultActivationGranularity: "per_tensor")
        let observer = try Self.observer(params)
        let smoothing = try Self.smoothing(params)
        let selection = ModuleSelection(model: loaded.model, skip: params.skip)
        try QuantizeStages.requireModules(selection)
        let selectionWarnings = try QuantizeStages.unmatchedPatternWarnings(selection) + QuantizeStages.headWarnings(loaded.artifact)
        let sample = try Self.calibrationSample(params, seed: context.seed)
        let warnings = selectionWarnings + sample.warnings

        let maxLength = min(params.max_seq_len, loaded.model.config.maxPositionEmbeddings)
        func batchesOf(_ indices: [Int]) -> [BertBatch] {
            let sequences = loaded.encode(indices.map { sample.examples[$0].text }, maxLength: maxLength)
            return LengthBucketing.batches(sequences, batchSize: sample.batchSize, padID: loaded.padID, shuffle: false, seed: 0)
                .map { BertBatch(inputIDs: $0.ids, attentionMask: $0.attentionMask) }
        }
        for warning in warnings { context.log.line("warning: " + warning) }
        context.log.line("""
            quantize/ptq: observer \(params.observer)\(params.observer == "percentile" ? " \(params.percentile ?? Self.defaultPercentile)" : ""), \
            \(sample.calibration.count) calibration and \(sample.heldOut.count) held-out examples of `\(sample.split)` in batches of \(sample.batchSize), \
            max_seq_len \(maxLength); \(selection.quantized.count) Linear modules to int8, \(selection.skipped.count) kept f32; \
            weights \(options.weightGranularity.rawValue) ±\(options.weightLimit), activations u8 \(options.activationCodes) \
            \(options.activationSymmetric ? "symmetric" : "asymmetric")\(Self.describe(smoothing)); backend \(backend.id) with \(context.threads) threads
            """)

        let calibrationBatches = batchesOf(sample.calibration)
        let evaluationBatches = sample.onHeldOut ? batchesOf(sample.heldOut) : calibrationBatches
        let (quantized, report): (QuantizedBertModel, QuantizationReport)
        do {
            (quantized, report) = try W8A8Quantizer.quantizeStatic(
                loaded.model, calibration: calibrationBatches, evaluation: evaluationBatches, evaluatedOnHeldOut: sample.onHeldOut,
                settings: CalibrationSettings(observer: observer, bins: params.histogram_bins), smoothing: smoothing, options: options,
                backend: backend,
                progress: { context.progress.report(StageProgress(message: $0)) })
        } catch {
            throw StageFailure(error.message)
        }

        var extra: [String: Value] = ["calibration_split": .string(sample.split)]
        if let chosen = report.smoothing {
            extra["smoothing_alpha"] = .double(chosen.alpha)
            extra["smoothing_alpha_searched"] = .bool(chosen.searched)
        }
        let metrics = try QuantizeStages.publish(
            quantized, from: loaded.artifact, report: report, warnings: warnings, extra: extra, source: "quantize/ptq", context: context)
        Self.log(report, onHeldOut: sample.onHeldOut, to: context.log)
        return StageResult(metrics: metrics, outputs: QuantizeStages.outputs)
    }

    /// The activation observer `observer` (with `percentile`, `histogram_bins`) names.
    static func observer(_ params: Params) throws(StageFailure) -> ObserverKind {
        let observer: ObserverKind
        switch params.observer {
        case "minmax": observer = .minMax
        case "percentile": observer = .percentile(params.percentile ?? defaultPercentile)
        case "mse": observer = .mse
        case "entropy": observer = .entropy
        default: throw StageFailure("`observer` must be one of \(ModelQuantization.observers.joined(separator: ", ")), got `\(params.observer)`")
        }
        guard (256...(1 << 20)).contains(params.histogram_bins) else {
            throw StageFailure("`histogram_bins` must be in 256...1048576, got \(params.histogram_bins)")
        }
        if params.percentile != nil && params.observer != "percentile" {
            throw StageFailure("`percentile` applies to `observer: percentile`, not `\(params.observer)`")
        }
        return observer
    }

    /// The examples of the calibration split, drawn by the stage seed: the
    /// first `batches` × `batch_size` calibrate, the next
    /// `held_out_batches` × `batch_size` are held out for the SQNRs.
    struct CalibrationSample {
        var split: String
        var batchSize: Int
        var examples: [TextClassificationDataset.Example]
        /// Indices into `examples`.
        var calibration: [Int]
        var heldOut: [Int]
        /// Too few examples, or none held out.
        var warnings: [String]

        /// Whether the SQNRs are measured on held-out examples rather than the calibration ones.
        var onHeldOut: Bool { !heldOut.isEmpty }
    }

    static func calibrationSample(_ params: Params, seed: UInt64) throws(StageFailure) -> CalibrationSample {
        let calibration = params.calibration
        let split = calibration?.split ?? defaults.split
        let batches = calibration?.batches ?? defaults.batches
        let batchSize = calibration?.batch_size ?? defaults.batchSize
        let heldOutBatches = calibration?.held_out_batches ?? defaults.heldOutBatches
        guard batches >= 1, batchSize >= 1, heldOutBatches >= 0 else {
            throw StageFailure("`calibration.batches` and `batch_size` must be at least 1, `held_out_batches` at least 0")
        }
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: params.data)
        }
        let examples = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(split) }
        guard !examples.isEmpty else { throw StageFailure("the calibration split `\(split)` is empty") }
        let (wanted, overflow) = batches.multipliedReportingOverflow(by: batchSize)
        let (heldOut, heldOutOverflow) = heldOutBatches.multipliedReportingOverflow(by: batchSize)
        guard !overflow, !heldOutOverflow else {
            throw StageFailure("`calibration.batches` or `held_out_batches` × `batch_size` is too large")
        }
        var warnings: [String] = []
        if examples.count < wanted {
            let message = "the calibration split `\(split)` has \(examples.count) examples, fewer than `batches` × `batch_size` = \(batches) × \(batchSize) = \(wanted)"
            guard calibration?.allow_fewer == true else {
                throw StageFailure(message + "; lower `calibration.batches`, or set `calibration.allow_fewer: true` to calibrate on all \(examples.count)")
            }
            warnings.append(message + "; calibrating on all of them (`allow_fewer`)")
        }

        let order = shuffled(examples.count, seed: seed)
        let heldOutIndices = Array(order.dropFirst(wanted).prefix(heldOut))
        if heldOutIndices.isEmpty {
            warnings.append(
                heldOutBatches == 0
                    ? "`held_out_batches` is 0: the SQNRs are measured on the calibration examples"
                    : "no examples are left for the held-out batches: the SQNRs are measured on the calibration examples")
        }
        return CalibrationSample(
            split: split, batchSize: batchSize, examples: examples, calibration: Array(order.prefix(wanted)), heldOut: heldOutIndices,
            warnings: warnings)
    }

    static func describe(_ smoothing: SmoothingSettings?) -> String {
        switch smoothing?.alpha {
        case nil: ""
        case .fixed(let alpha): "; SmoothQuant α \(alpha)"
        case .search(let grid): "; SmoothQuant α searched over \(grid.map { "\($0)" }.joined(separator: ", "))"
        }
    }

    /// Each layer's chosen range and output SQNR, then the logits' SQNR and agreement.
    static func log(_ report: QuantizationReport, onHeldOut: Bool, to log: StageLog) {
        if let smoothing = report.smoothing {
            for candidate in smoothing.candidates {
                log.line("smoothing α \(candidate.alpha): calibration logits MSE \(candidate.calibrationLogitsMSE)")
            }
            log.line("smoothing: α \(smoothing.alpha)\(smoothing.searched ? " (least calibration logits MSE)" : ""), \(smoothing.groups.flatMap(\.modules).count) Linear modules smoothed")
        }
        for layer in report.layers {
            let sqnr = layer.outputSQNR.map { String(format: "%.2f dB", $0) } ?? "n/a"
            log.line("\(layer.module): range [\(layer.chosenRange?.lowerBound ?? 0), \(layer.chosenRange?.upperBound ?? 0)] of observed [\(layer.observedRange?.lowerBound ?? 0), \(layer.observedRange?.upperBound ?? 0)], scale \(layer.scale ?? 0) zero point \(layer.zeroPoint ?? 0), output SQNR \(sqnr)")
        }
        log.line(
            "logits SQNR " + (report.logitsSQNR.map { String(format: "%.2f dB", $0) } ?? "n/a")
                + ", prediction agreement " + (report.predictionAgreement.map { String(format: "%.4f", $0) } ?? "n/a")
                + " on \(report.evaluationExamples) \(onHeldOut ? "held-out" : "calibration") examples")
    }

    /// `0..<count` in an order fixed by `seed` (Fisher–Yates over `SeededGenerator`).
    static func shuffled(_ count: Int, seed: UInt64) -> [Int] {
        var order = Array(0..<count)
        var generator = SeededGenerator(seed: seed)
        for index in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(index, Int(generator.next() % UInt64(index + 1)))
        }
        return order
    }
}
