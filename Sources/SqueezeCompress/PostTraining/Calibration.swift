import Foundation
import SqueezeModels
import SqueezeTensor

/// Signal and noise energies summed over many tensors, for one SQNR
/// (`signalToQuantizationNoiseRatio`'s conventions: +∞ without noise, NaN on
/// non-finite input).
public struct SQNRAccumulator: Sendable, Hashable {
    public private(set) var signal = 0.0
    public private(set) var noise = 0.0
    public private(set) var count = 0

    public init() {}

    public mutating func add(reference: UnsafeBufferPointer<Float>, approximation: UnsafeBufferPointer<Float>) {
        precondition(reference.count == approximation.count, "SQNRAccumulator: \(reference.count) references, \(approximation.count) approximations")
        for index in 0..<reference.count {
            let y = Double(reference[index])
            let difference = y - Double(approximation[index])
            signal += y * y
            noise += difference * difference
        }
        count += reference.count
    }

    /// 10 · log10(signal / noise) in dB.
    public var decibels: Double {
        guard signal.isFinite, noise.isFinite else { return .nan }
        if noise == 0 { return .infinity }
        if signal == 0 { return -.infinity }
        return 10 * log10(signal / noise)
    }
}

/// What calibration found for one int8 Linear, and how well it does.
public struct LayerQuantizationReport: Sendable, Hashable {
    public var module: String
    /// `[out, in]`.
    public var shape: [Int]
    /// The smallest and largest finite input seen during calibration
    /// (real tokens only); nil for dynamic quantization.
    public var observedRange: ClosedRange<Float>?
    /// The range the observer chose (widened to include 0, symmetric when
    /// asked); nil for dynamic quantization.
    public var chosenRange: ClosedRange<Float>?
    /// The static activation scale and zero point.
    public var scale: Float?
    public var zeroPoint: Int32?
    /// NaN or infinite inputs seen (and ignored) during calibration.
    public var nonFiniteInputs: Int
    /// SQNR of the int8 weight against the f32 weight, dB.
    public var weightSQNR: Double
    /// SQNR of the layer's output, int8 layer against f32 layer on the same
    /// f32 inputs, over the evaluation batches' real tokens, dB.
    public var outputSQNR: Double?
}

/// A post-training quantization's outcome besides the model.
public struct QuantizationReport: Sendable, Hashable {
    public var layers: [LayerQuantizationReport]
    public var skipped: [ModelQuantization.SkippedModule]
    /// Skip patterns that matched nothing.
    public var unmatchedPatterns: [String]
    /// Examples the observers saw.
    public var calibrationExamples: Int
    /// Examples the SQNRs were measured on.
    public var evaluationExamples: Int
    /// True when those were held out from calibration; false when the
    /// calibration examples had to be reused (none left over).
    public var evaluatedOnHeldOut: Bool
    /// SQNR of the quantized model's logits against the float model's, dB.
    public var logitsSQNR: Double?
    /// Fraction of evaluation examples whose predicted class is unchanged.
    public var predictionAgreement: Double?
    /// SmoothQuant's outcome, when the model was smoothed.
    public var smoothing: SmoothingReport?

    /// The finite per-layer output SQNRs (weight SQNRs when there are none), sorted.
    public var sortedLayerSQNRs: [Double] {
        let outputs = layers.compactMap(\.outputSQNR)
        return (outputs.isEmpty ? layers.map(\.weightSQNR) : outputs).filter(\.isFinite).sorted()
    }
}

/// Static W8A8 settings: which observer picks each activation range.
public struct CalibrationSettings: Sendable, Hashable {
    public var observer: ObserverKind
    /// Histogram bins of the histogram observers.
    public var bins: Int

    public init(observer: ObserverKind, bins: Int = 2048) {
        self.observer = observer
        self.bins = bins
    }

    var observerName: String {
        switch observer {
        case .minMax: "minmax"
        case .percentile: "percentile"
        case .mse: "mse"
        case .entropy: "entropy"
        }
    }

    var percentile: Double? {
        if case .percentile(let p) = observer { return p }
        return nil
    }
}

/// SmoothQuant for static quantization (`SmoothQuant`): a fixed migration
/// strength α, or the α of a grid with the least calibration loss.
public struct SmoothingSettings: Sendable, Hashable {
    public enum Alpha: Sendable, Hashable {
        /// α in [0, 1].
        case fixed(Double)
        /// Every α of the grid is tried; the one whose quantized model's
        /// logits are nearest the float model's on the calibration batches
        /// (least mean squared error) wins, the first of equal losses.
        case search([Double])
    }

    public var alpha: Alpha
    /// Whether the attention output projections are smoothed too (through
    /// the value projection); the query/key/value and FFN input projections
    /// always are. Off by default: on the SST-2 teacher it lowered the
    /// logits SQNR on each of four calibration samples (docs/quantized-models.md).
    public var attentionOutput: Bool

    /// `alpha: auto`'s grid: 0, 0.1, …, 1.
    public static let searchGrid: [Double] = (0...10).map { Double($0) / 10 }

    public init(alpha: Alpha, attentionOutput: Bool = false) {
        self.alpha = alpha
        self.attentionOutput = attentionOutput
    }

    var candidates: [Double] {
        switch alpha {
        case .fixed(let alpha): [alpha]
        case .search(let grid): grid
        }
    }

    func validate() throws(BertQuantizationError) {
        let candidates = candidates
        guard !candidates.isEmpty, candidates.allSatisfy({ (0...1).contains($0) }) else {
            throw BertQuantizationError("smoothing α must be in [0, 1], got \(candidates.map { "\($0)" }.joined(separator: ", "))")
        }
    }
}

/// What SmoothQuant chose.
public struct SmoothingReport: Sendable, Hashable {
    /// One α of the search and its calibration loss.
    public struct Candidate: Sendable, Hashable {
        public var alpha: Double
        /// Mean squared error of the quantized model's logits against the
        /// float model's over the calibration batches.
        public var calibrationLogitsMSE: Double
    }

    /// The α used.
    public var alpha: Double
    /// True when α was searched (`alpha: auto`).
    public var searched: Bool
    /// Every α tried with its loss (empty for a fixed α).
    public var candidates: [Candidate]
    /// The smoothed Linears with their factor's fold, in model order.
    public var groups: [SmoothingGroup]
    /// Per smoothed module, the smallest and largest factor `s_j`.
    public var factorRanges: [String: ClosedRange<Float>]
}

extension W8A8Quantizer {
    /// Static quantization: runs the float model over `calibration`, feeds
    /// each selected Linear's input (real tokens only) to an observer, fixes
    /// per-tensor activation parameters from the chosen ranges and quantizes
    /// the weights. Then measures, on `evaluation` (held-out batches, or the
    /// calibration batches again when `evaluatedOnHeldOut` is false), each
    /// int8 layer's output SQNR against its f32 layer on the same f32 inputs,
    /// and the logits' SQNR and prediction agreement end to end.
    /// `progress` gets short messages.
    /// With `smoothing`, the model is first smoothed (`SmoothQuant`) from its
    /// activations' per-channel maxima on `calibration`, at a fixed α or at
    /// each α of a grid (each candidate calibrated, quantized and scored on
    /// the calibration batches; the held-out batches are never used to choose).
    public static func quantizeStatic(
        _ model: BertModel, calibration: [BertBatch], evaluation: [BertBatch], evaluatedOnHeldOut: Bool,
        settings: CalibrationSettings, smoothing: SmoothingSettings? = nil, options: W8A8Options = W8A8Options(), backend: any Backend,
        progress: (String) -> Void = { _ in }
    ) throws(BertQuantizationError) -> (model: QuantizedBertModel, report: QuantizationReport) {
        try options.validate(mode: .static)
        try smoothing?.validate()
        guard !calibration.isEmpty else { throw BertQuantizationError("calibration needs at least one batch") }
        let selection = ModuleSelection(model: model, skip: options.skip)
        let examples = calibration.reduce(0) { $0 + $1.inputIDs.shape[0] }
        func section(_ smoothed: SmoothedModel) -> ModelQuantization {
            let schemes = options.schemes
            let smoothingSection = smoothing.map { _ in
                ModelQuantization.Smoothing(
                    alpha: smoothed.alpha,
                    modules: selection.quantized.filter { smoothed.inputMultipliers[$0] != nil },
                    foldedIntoValue: selection.quantized.filter { smoothed.factors[$0] != nil && smoothed.inputMultipliers[$0] == nil })
            }
            return ModelQuantization(
                mode: .static, weights: schemes.weights, activations: schemes.activations, observer: settings.observerName,
                percentile: settings.percentile, histogramBins: settings.observer == .minMax ? nil : settings.bins, calibrationExamples: examples,
                modules: selection.quantized, skipped: selection.skipped, smoothing: smoothingSection)
        }

        var smoothed = SmoothedModel(unsmoothed: model)
        var calibrated: Calibrated
        var smoothingReport: SmoothingReport?
        if let smoothing {
            let groups = SmoothQuant.groups(of: model, quantized: Set(selection.quantized), attentionOutput: smoothing.attentionOutput)
            progress("smoothing: per-channel activation maxima")
            let maxima = try SmoothQuant.activationMaxima(model, groups: groups, batches: calibration, backend: backend)
            let candidates = smoothing.candidates
            let reference = candidates.count > 1 ? try calibration.map { batch throws(BertQuantizationError) in try floatLogits(model, batch, backend) } : []
            var best: (smoothed: SmoothedModel, calibrated: Calibrated, loss: Double)?
            var tried: [SmoothingReport.Candidate] = []
            for alpha in candidates {
                let candidate = try SmoothQuant.smooth(model, groups: groups, activationMaxima: maxima, alpha: alpha)
                let result = try calibrate(candidate, selection: selection, on: calibration, settings: settings, options: options, backend: backend) {
                    progress("α \(alpha): " + $0)
                }
                guard candidates.count > 1 else {
                    best = (candidate, result, 0)
                    continue
                }
                let quantized = try assemble(candidate.model, linears: result.linears, quantization: section(candidate))
                let measured = try logitsMSE(quantized, reference: reference, on: calibration, backend: backend)
                let loss = measured.isNaN ? Double.infinity : measured
                tried.append(SmoothingReport.Candidate(alpha: alpha, calibrationLogitsMSE: measured))
                progress("α \(alpha): calibration logits MSE \(loss)")
                if best.map({ loss < $0.loss }) ?? true { best = (candidate, result, loss) }
            }
            guard let best else { throw BertQuantizationError("smoothing needs at least one α") }
            smoothed = best.smoothed
            calibrated = best.calibrated
            smoothingReport = SmoothingReport(
                alpha: smoothed.alpha, searched: candidates.count > 1, candidates: tried, groups: groups,
                factorRanges: smoothed.factors.compactMapValues { factors in
                    guard let low = factors.min(), let high = factors.max() else { return nil }
                    return low...high
                })
        } else {
            calibrated = try calibrate(smoothed, selection: selection, on: calibration, settings: settings, options: options, backend: backend, progress: progress)
        }

        let quantized = try assemble(smoothed.model, linears: calibrated.linears, quantization: section(smoothed))
        let measured = try measure(model, smoothed, quantized, linears: calibrated.linears, on: evaluation, backend: backend, progress: progress)
        var report = QuantizationReport(
            layers: selection.quantized.compactMap { calibrated.layers[$0] }, skipped: selection.skipped, unmatchedPatterns: selection.unmatchedPatterns,
            calibrationExamples: examples, evaluationExamples: measured.examples, evaluatedOnHeldOut: evaluatedOnHeldOut,
            logitsSQNR: measured.logits, predictionAgreement: measured.agreement, smoothing: smoothingReport)
        for index in report.layers.indices { report.layers[index].outputSQNR = measured.layers[report.layers[index].module] }
        return (quantized, report)
    }

    /// The int8 Linears calibration chose, and their report entries.
    struct Calibrated {
        var linears: [String: Int8Linear]
        var layers: [String: LayerQuantizationReport]
    }

    /// Runs the (smoothed) float model over `batches`, feeds each selected
    /// Linear's quantized input (real tokens; times its multipliers when
    /// smoothed) to an observer, and fixes per-tensor activation parameters
    /// from the chosen ranges and int8 weights from the (smoothed) f32 weights.
    static func calibrate(
        _ smoothed: SmoothedModel, selection: ModuleSelection, on batches: [BertBatch], settings: CalibrationSettings, options: W8A8Options,
        backend: any Backend, progress: (String) -> Void
    ) throws(BertQuantizationError) -> Calibrated {
        let model = smoothed.model
        let scheme = options.activationSymmetric ? QuantizationScheme.int8Symmetric : .uint8Asymmetric
        let observers = ObserverState()
        for module in selection.quantized {
            do {
                observers.observers[module] = try settings.observer.makeObserver(scheme: scheme, bins: settings.bins)
            } catch {
                throw BertQuantizationError("observer \(settings.observerName): \(error)")
            }
            observers.extrema[module] = MinMaxObserver()
        }
        let multipliers = smoothed.multiplierTensors
        let floatWeights = model.inferenceWeights
        for (index, batch) in batches.enumerated() {
            progress("calibrating: batch \(index + 1)/\(batches.count)")
            try checked(batch, model)
            let ops = InferenceOperations(backend: backend, inputMultipliers: multipliers) { module, input in
                guard observers.observers[module] != nil else { return }
                let quantized = multipliers[module].map { backend.multiply(input, $0) } ?? input
                RealTokens.withRows(of: quantized, batch: batch) { rows in
                    observers.observers[module]?.observe(rows)
                    observers.extrema[module]?.observe(rows)
                }
            }
            _ = BertModel.logits(ops, floatWeights, config: model.config, pooling: model.pooling, batch: batch)
        }

        var result = Calibrated(linears: [:], layers: [:])
        for module in selection.quantized {
            guard let observer = observers.observers[module], let extrema = observers.extrema[module] else { continue }
            let observed: ClosedRange<Float>
            var chosen: ClosedRange<Float>
            do {
                observed = try extrema.range()
                chosen = try observer.range()
            } catch {
                throw BertQuantizationError("`\(module)` saw no finite input during calibration (\(error)); skip it or calibrate on other data")
            }
            chosen = Swift.min(chosen.lowerBound, 0)...Swift.max(chosen.upperBound, 0)
            if options.activationSymmetric {
                let bound = Swift.max(-chosen.lowerBound, chosen.upperBound)
                chosen = -bound...bound
            }
            var parameters = ActivationQuantization(
                ranges: ActivationRange(minimums: [chosen.lowerBound], maximums: [chosen.upperBound]), range: options.activationCodes)
            if let channelMultipliers = smoothed.inputMultipliers[module] {
                parameters = ActivationQuantization(
                    scale: parameters.scales[0], zeroPoint: parameters.zeroPoints[0], range: parameters.range, channelMultipliers: channelMultipliers)
            }
            let floatWeight = try floatWeight(of: model, module: module)
            let packed = try weights(of: model, module: module, options: options)
            result.linears[module] = Int8Linear(weights: packed, activations: .fixed(parameters))
            result.layers[module] = LayerQuantizationReport(
                module: module, shape: floatWeight.shape, observedRange: observed, chosenRange: chosen, scale: parameters.scales[0],
                zeroPoint: parameters.zeroPoints[0], nonFiniteInputs: observer.nonFiniteCount,
                weightSQNR: signalToQuantizationNoiseRatio(reference: floatWeight, approximation: packed.dequantized()))
        }
        return result
    }

    /// The float model's logits through the inference forward pass.
    static func floatLogits(_ model: BertModel, _ batch: BertBatch, _ backend: any Backend) throws(BertQuantizationError) -> Tensor {
        try checked(batch, model)
        let ops = InferenceOperations(backend: backend)
        return ops.tensor(BertModel.logits(ops, model.inferenceWeights, config: model.config, pooling: model.pooling, batch: batch))
    }

    /// Mean squared difference between `quantized`'s logits and `reference` (one tensor per batch) over `batches`.
    static func logitsMSE(
        _ quantized: QuantizedBertModel, reference: [Tensor], on batches: [BertBatch], backend: any Backend
    ) throws(BertQuantizationError) -> Double {
        var total = 0.0
        var count = 0
        for (batch, expected) in zip(batches, reference) {
            let logits: Tensor
            do {
                logits = try quantized.logits(batch, backend: backend)
            } catch {
                throw BertQuantizationError("cannot run the quantized model: \(error.message)")
            }
            for (y, yHat) in zip(expected.floats, logits.floats) {
                let difference = Double(y) - Double(yHat)
                total += difference * difference
            }
            count += expected.count
        }
        return total / Double(Swift.max(count, 1))
    }

    /// The weight-only part of a report (dynamic quantization has no data):
    /// each int8 layer's weight SQNR.
    public static func weightReport(_ model: BertModel, _ quantized: QuantizedBertModel, skip: [String]) -> QuantizationReport {
        let selection = ModuleSelection(model: model, skip: skip)
        let linears = quantized.int8Linears
        let layers = selection.quantized.compactMap { module -> LayerQuantizationReport? in
            guard let linear = linears[module], let weight = try? floatWeight(of: model, module: module) else { return nil }
            return LayerQuantizationReport(
                module: module, shape: weight.shape, nonFiniteInputs: 0,
                weightSQNR: signalToQuantizationNoiseRatio(reference: weight, approximation: linear.weights.dequantized()))
        }
        return QuantizationReport(
            layers: layers, skipped: selection.skipped, unmatchedPatterns: selection.unmatchedPatterns, calibrationExamples: 0,
            evaluationExamples: 0, evaluatedOnHeldOut: false)
    }

    /// Per-layer output SQNRs (on the float model's inputs), logits SQNR and
    /// agreement over `batches`. Each int8 layer is compared with the f32
    /// layer it was quantized from (`smoothed`'s, on the same inputs); the
    /// logits with `model`'s.
    static func measure(
        _ model: BertModel, _ smoothed: SmoothedModel, _ quantized: QuantizedBertModel, linears: [String: Int8Linear], on batches: [BertBatch],
        backend: any Backend, progress: (String) -> Void
    ) throws(BertQuantizationError) -> (layers: [String: Double], logits: Double?, agreement: Double?, examples: Int) {
        guard !batches.isEmpty else { return ([:], nil, nil, 0) }
        let state = SQNRState()
        let floatWeights = smoothed.model.inferenceWeights
        let multipliers = smoothed.multiplierTensors
        let isSmoothed = !smoothed.factors.isEmpty
        let parameters = Dictionary(smoothed.model.namedParameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { first, _ in first })
        var logits = SQNRAccumulator()
        var agreeing = 0
        var examples = 0
        for (index, batch) in batches.enumerated() {
            progress("measuring SQNR: batch \(index + 1)/\(batches.count)")
            try checked(batch, model)
            let ops = InferenceOperations(backend: backend, inputMultipliers: multipliers) { module, input in
                guard let linear = linears[module], let weight = parameters[module + ".weight"], let bias = parameters[module + ".bias"]
                else { return }
                let reference = backend.linear(multipliers[module].map { backend.multiply(input, $0) } ?? input, weight: weight, bias: bias)
                let approximation = linear.apply(input, bias: bias, backend: backend)
                RealTokens.withRows(of: reference, batch: batch) { y in
                    RealTokens.withRows(of: approximation, batch: batch) { yHat in
                        state.layers[module, default: SQNRAccumulator()].add(reference: y, approximation: yHat)
                    }
                }
            }
            let hooked = ops.tensor(BertModel.logits(ops, floatWeights, config: model.config, pooling: model.pooling, batch: batch))
            let reference = isSmoothed ? try floatLogits(model, batch, backend) : hooked
            let approximation: Tensor
            do {
                approximation = try quantized.logits(batch, backend: backend)
            } catch {
                throw BertQuantizationError("cannot run the quantized model: \(error.message)")
            }
            let classes = reference.shape[1]
            reference.withUnsafeFloats { y in
                approximation.withUnsafeFloats { yHat in
                    logits.add(reference: y, approximation: yHat)
                    for row in 0..<reference.shape[0] {
                        agreeing += argmax(y, row: row, classes: classes) == argmax(yHat, row: row, classes: classes) ? 1 : 0
                    }
                }
            }
            examples += reference.shape[0]
        }
        return (state.layers.mapValues(\.decibels), logits.decibels, Double(agreeing) / Double(Swift.max(examples, 1)), examples)
    }

    static func argmax(_ values: UnsafeBufferPointer<Float>, row: Int, classes: Int) -> Int {
        var best = 0
        for c in 1..<Swift.max(classes, 1) where values[row * classes + c] > values[row * classes + best] { best = c }
        return best
    }

    static func checked(_ batch: BertBatch, _ model: BertModel) throws(BertQuantizationError) {
        do {
            try model.check(batch)
        } catch {
            throw BertQuantizationError("calibration batch: \(error.message)")
        }
    }
}

/// Observers by module, mutated by the forward pass's Linear hook.
private final class ObserverState {
    var observers: [String: any RangeObserver] = [:]
    var extrema: [String: MinMaxObserver] = [:]
}

/// SQNR sums by module, mutated by the forward pass's Linear hook.
private final class SQNRState {
    var layers: [String: SQNRAccumulator] = [:]
}

/// The rows of a Linear's input or output that belong to real tokens.
enum RealTokens {
    /// Calls `body` with the f32 values of `tensor`'s rows whose token has
    /// mask 1: for `[B, T, n]` with the batch's `T`, rows by the attention
    /// mask; otherwise (`[B, n]`, or `[B, 1, n]` of first tokens only) every row.
    static func withRows(of tensor: Tensor, batch: BertBatch, _ body: (UnsafeBufferPointer<Float>) -> Void) {
        let mask = batch.attentionMask
        let shape = tensor.shape
        guard shape.count == 3, shape[0] == mask.shape[0], shape[1] == mask.shape[1] else {
            tensor.contiguous().withUnsafeFloats(body)
            return
        }
        let width = shape[2]
        let flags = mask.int32s
        if !flags.contains(0) {
            tensor.contiguous().withUnsafeFloats(body)
            return
        }
        var rows: [Float] = []
        rows.reserveCapacity(flags.count * width)
        tensor.contiguous().withUnsafeFloats { values in
            for (row, flag) in flags.enumerated() where flag != 0 {
                rows.append(contentsOf: values[(row * width)..<((row + 1) * width)])
            }
        }
        rows.withUnsafeBufferPointer(body)
    }
}
