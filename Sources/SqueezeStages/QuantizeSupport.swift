import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeSupport
import SqueezeYAML

/// `weights:` / `activations:` of the quantize stages.
public struct QuantizationSchemeParams: Decodable, Sendable {
    public var bits: Int?
    public var granularity: String?
    public var symmetric: Bool?
}

/// What the quantize stages share: parameter checks, the output artifact and
/// the report.
enum QuantizeStages {
    static let schemeKeys = ["bits", "granularity", "symmetric"]
    static let weightGranularities = ["per_channel", "per_tensor"]

    // MARK: Checks (recipe validation)

    /// Unknown keys of a map parameter, with a suggestion.
    static func unknownKeys(_ node: YAMLNode, parameter: String, known: [String]) -> [Diagnostic] {
        guard let entries = node.entries else {
            return [Diagnostic("`\(parameter)` must be a mapping of \(known.map { "`\($0)`" }.joined(separator: ", "))", at: node.location)]
        }
        return entries.compactMap { entry in
            guard let key = entry.key.scalar, !known.contains(key) else { return nil }
            return Diagnostic(
                "unknown key `\(key)` in `\(parameter)`", at: entry.key.location,
                hint: Suggestion.hint(for: key, in: known) ?? "`\(parameter)` takes \(known.map { "`\($0)`" }.joined(separator: ", "))")
        }
    }

    /// A literal scalar (not a `${…}` reference) of `node[key]`.
    static func literal(_ node: YAMLNode, _ key: String) -> (text: String, location: SourceLocation)? {
        guard let value = node[key], let text = value.scalar, !text.contains("${") else { return nil }
        return (text, value.location)
    }

    static func checkInteger(_ node: YAMLNode, _ key: String, parameter: String, minimum: Int) -> [Diagnostic] {
        guard let (text, location) = literal(node, key) else { return [] }
        guard let value = Int(text) else { return [Diagnostic("`\(parameter).\(key)` must be an integer, got `\(text)`", at: location)] }
        return value < minimum ? [Diagnostic("`\(parameter).\(key)` must be at least \(minimum), got \(value)", at: location)] : []
    }

    static func checkBool(_ node: YAMLNode, _ key: String, parameter: String) -> [Diagnostic] {
        guard let (text, location) = literal(node, key), text != "true", text != "false" else { return [] }
        return [Diagnostic("`\(parameter).\(key)` must be true or false, got `\(text)`", at: location)]
    }

    /// `weights: {bits: 8, granularity: per_channel | per_tensor, symmetric: true}`.
    static func checkWeights(_ with: YAMLNode) -> [Diagnostic] {
        guard let node = with["weights"] else { return [] }
        var problems = unknownKeys(node, parameter: "weights", known: schemeKeys)
        guard node.entries != nil else { return problems }
        if let (text, location) = literal(node, "bits") {
            switch Int(text) {
            case 8: break
            case 4:
                problems.append(Diagnostic(
                    "4-bit weights are for weight-only quantization (per-group int4, float activations), which this stage does not do",
                    at: location, hint: "W8A8 quantization has `bits: 8` weights; for int4 weights use `uses: quantize/weight-only`"))
            default:
                problems.append(Diagnostic("`weights.bits` must be 4 or 8, got `\(text)`", at: location, hint: "W8A8 quantization has `bits: 8` weights"))
            }
        }
        if let (text, location) = literal(node, "granularity"), !weightGranularities.contains(text) {
            let hint = text == "per_group"
                ? "per-group scales are for weight-only quantization (`uses: quantize/weight-only`); int8 weights here are per_channel or per_tensor"
                : Suggestion.hint(for: text, in: weightGranularities) ?? "use `per_channel` (one scale per output row) or `per_tensor`"
            problems.append(Diagnostic("`weights.granularity` must be `per_channel` or `per_tensor`, got `\(text)`", at: location, hint: hint))
        }
        problems += checkBool(node, "symmetric", parameter: "weights")
        if let (text, location) = literal(node, "symmetric"), text == "false" {
            problems.append(Diagnostic(
                "int8 weights are symmetric: the int8 product has no weight zero point", at: location, hint: "remove `symmetric: false`"))
        }
        return problems
    }

    /// `activations: {bits: 8, granularity: …, symmetric: false}`, with the
    /// granularities this stage supports.
    static func checkActivations(_ with: YAMLNode, granularities: [String], otherwise: String) -> [Diagnostic] {
        guard let node = with["activations"] else { return [] }
        var problems = unknownKeys(node, parameter: "activations", known: schemeKeys)
        guard node.entries != nil else { return problems }
        if let (text, location) = literal(node, "bits") {
            switch Int(text) {
            case 8: break
            case 4:
                problems.append(Diagnostic(
                    "activations are 8-bit in W8A8 quantization; 4 bits apply to weights only, in weight-only quantization",
                    at: location, hint: "use `bits: 8`"))
            default:
                problems.append(Diagnostic(
                    "`activations.bits` must be 4 or 8, got `\(text)`", at: location, hint: "W8A8 activations are `bits: 8`"))
            }
        }
        if let (text, location) = literal(node, "granularity"), !granularities.contains(text) {
            let hint = ["per_tensor", "per_row"].contains(text) ? otherwise : Suggestion.hint(for: text, in: granularities) ?? otherwise
            problems.append(Diagnostic(
                "`activations.granularity` must be \(granularities.map { "`\($0)`" }.joined(separator: " or ")), got `\(text)`",
                at: location, hint: hint))
        }
        problems += checkBool(node, "symmetric", parameter: "activations")
        return problems
    }

    /// `skip`: non-empty patterns.
    static func checkSkip(_ with: YAMLNode) -> [Diagnostic] {
        guard let items = with["skip"]?.items else { return [] }
        return items.compactMap { item in
            guard let text = item.scalar, text.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
            return Diagnostic("an empty `skip` pattern matches nothing", at: item.location, hint: "e.g. `classifier` or `layer.0.*`")
        }
    }

    // MARK: Run time

    /// The W8A8 options of the parameters (already validated).
    static func options(
        weights: QuantizationSchemeParams?, activations: QuantizationSchemeParams?, skip: [String], defaultActivationGranularity: String
    ) throws(StageFailure) -> W8A8Options {
        if let bits = weights?.bits, bits != 8 { throw StageFailure("`weights.bits` must be 8 for W8A8 quantization, got \(bits)") }
        if let bits = activations?.bits, bits != 8 { throw StageFailure("`activations.bits` must be 8 for W8A8 quantization, got \(bits)") }
        if weights?.symmetric == false { throw StageFailure("int8 weights are symmetric: the int8 product has no weight zero point") }
        let weightGranularity = weights?.granularity ?? "per_channel"
        let activationGranularity = activations?.granularity ?? defaultActivationGranularity
        guard let weightScheme = ModelQuantization.Granularity(rawValue: weightGranularity),
            let activationScheme = ModelQuantization.Granularity(rawValue: activationGranularity)
        else {
            throw StageFailure("unknown granularity `\(weightGranularity)` or `\(activationGranularity)`")
        }
        return W8A8Options(
            weightGranularity: weightScheme, activationGranularity: activationScheme, activationSymmetric: activations?.symmetric ?? false,
            skip: skip)
    }

    /// Warnings for skip patterns that match no Linear module.
    static func unmatchedPatternWarnings(_ selection: ModuleSelection) -> [String] {
        selection.unmatchedPatterns.map { pattern in
            let hint = Suggestion.closest(to: pattern, in: selection.modules.flatMap { $0.split(separator: ".").map(String.init) } + selection.modules)
            return "skip pattern `\(pattern)` matches no Linear module" + (hint.map { " (did you mean `\($0)`?)" } ?? "")
        }
    }

    /// A warning when the checkpoint has no classifier head (the loader made
    /// a random one, which gets quantized with the rest).
    static func headWarnings(_ artifact: ModelArtifact) throws(StageFailure) -> [String] {
        try DistillStage.hasClassifier(artifact)
            ? [] : ["the model has no classifier head: a random one is quantized with it; fine-tune the model first (`train/finetune`)"]
    }

    /// Fails when there is nothing left to quantize.
    static func requireModules(_ selection: ModuleSelection) throws(StageFailure) {
        guard selection.quantized.isEmpty else { return }
        throw StageFailure("""
            nothing to quantize: all \(selection.modules.count) Linear modules are skipped \
            (\(selection.skipped.prefix(3).map { "\($0.module): \($0.reason)" }.joined(separator: "; ")))
            """)
    }

    /// Writes `model` as an artifact in `<output>/model` with the source
    /// artifact's vocabulary and tokenizer.
    static func save(_ model: QuantizedBertModel, from artifact: ModelArtifact, to directory: String, source: String) throws(StageFailure) {
        try StageFailure.wrapping("cannot write the quantized model: ") { () throws(ModelFileError) in
            try model.save(toDirectory: directory)
            var extras = [ModelArtifact.vocabularyFileName]
            if artifact.tokenizerPath != nil { extras.append(ModelArtifact.tokenizerFileName) }
            try artifact.copy(extras, into: directory)
            _ = try ModelArtifact.seal(directory: directory, architecture: "bert", source: source)
        }
    }

    /// Sizes of the float and the quantized `model.safetensors`, whole and
    /// their encoder tensors only (`bert.encoder.*`: int8 weights with their
    /// scales, f32 biases and LayerNorms).
    static func sizeMetrics(float: ModelArtifact, quantizedDirectory: String) throws(StageFailure) -> [String: Value] {
        func sizes(_ path: String) throws(StageFailure) -> (file: Int, encoder: Int) {
            try StageFailure.wrapping("cannot read \(path): ") { () throws(ModelFileError) in
                let file = try SafetensorsFile(path: path)
                let encoder = file.entries.values.filter { $0.name.hasPrefix("bert.encoder.") || $0.name.hasPrefix("encoder.") }
                    .reduce(0) { $0 + $1.byteRange.count }
                let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
                return (bytes, encoder)
            }
        }
        let before = try sizes(float.weightsPath)
        let after = try sizes((quantizedDirectory as NSString).appendingPathComponent(ModelArtifact.weightsFileName))
        return [
            "size_bytes": .int(after.file),
            "float_size_bytes": .int(before.file),
            "compression": .double(Double(before.file) / Double(max(after.file, 1))),
            "encoder_bytes": .int(after.encoder),
            "float_encoder_bytes": .int(before.encoder),
            "encoder_compression": .double(Double(before.encoder) / Double(max(after.encoder, 1))),
        ]
    }

    /// A dB value for JSON: finite as a number, ±∞ (no noise / no signal) and NaN as null.
    static func decibels(_ value: Double?) -> Value {
        guard let value, value.isFinite else { return .null }
        return .double((value * 1000).rounded() / 1000)
    }

    /// The per-layer report (report.json) and the summary metrics.
    static func report(
        _ report: QuantizationReport, quantization: ModelQuantization, warnings: [String], extra: [String: Value]
    ) -> (report: Value, metrics: [String: Value]) {
        let layers: [Value] = report.layers.map { layer in
            var entry: [String: Value] = [
                "module": .string(layer.module),
                "shape": .array(layer.shape.map(Value.int)),
                "weight_sqnr_db": decibels(layer.weightSQNR),
            ]
            if let range = layer.observedRange {
                entry["observed_min"] = .metric(range.lowerBound)
                entry["observed_max"] = .metric(range.upperBound)
            }
            if let range = layer.chosenRange {
                entry["range_min"] = .metric(range.lowerBound)
                entry["range_max"] = .metric(range.upperBound)
            }
            if let scale = layer.scale { entry["scale"] = .metric(scale) }
            if let zero = layer.zeroPoint { entry["zero_point"] = .int(Int(zero)) }
            if report.evaluationExamples > 0 {
                entry["output_sqnr_db"] = decibels(layer.outputSQNR)
                entry["non_finite_inputs"] = .int(layer.nonFiniteInputs)
            }
            return .object(entry)
        }
        let sorted = report.sortedLayerSQNRs
        let kind = report.evaluationExamples > 0 ? "output" : "weight"
        let worst = report.layers.min { a, b in
            let (x, y) = kind == "output" ? (a.outputSQNR ?? .infinity, b.outputSQNR ?? .infinity) : (a.weightSQNR, b.weightSQNR)
            return (x.isNaN ? -Double.infinity : x) < (y.isNaN ? -Double.infinity : y)
        }
        var metrics: [String: Value] = [
            "quantized_modules": .int(quantization.modules.count),
            "skipped_modules": .int(quantization.skipped.count),
            "sqnr_kind": .string(kind),
            "sqnr_min_db": decibels(sorted.first),
            "sqnr_median_db": decibels(sorted.isEmpty ? nil : sorted[sorted.count / 2]),
            "sqnr_worst_module": worst.map { .string($0.module) } ?? .null,
            "warnings": .array(warnings.map(Value.string)),
        ]
        if report.evaluationExamples > 0 {
            metrics["logits_sqnr_db"] = decibels(report.logitsSQNR)
            metrics["prediction_agreement"] = report.predictionAgreement.map(Value.double) ?? .null
            metrics["calibration_examples"] = .int(report.calibrationExamples)
            metrics["sqnr_examples"] = .int(report.evaluationExamples)
            metrics["sqnr_on_held_out"] = .bool(report.evaluatedOnHeldOut)
        }
        for (key, value) in extra { metrics[key] = value }
        var weights: [String: Value] = [
            "bits": .int(quantization.weights.bits), "granularity": .string(quantization.weights.granularity.rawValue),
            "code_range": .array(quantization.weights.codeRange.map(Value.int)),
        ]
        if let groupSize = quantization.weights.groupSize {
            weights["group_size"] = .int(groupSize)
            weights["symmetric"] = .bool(quantization.weights.symmetric)
        }
        var object: [String: Value] = [
            "mode": .string(quantization.mode.rawValue),
            "weights": .object(weights),
            "layers": .array(layers),
            "skipped": .array(report.skipped.map { .object(["module": .string($0.module), "reason": .string($0.reason)]) }),
            "summary": .object(metrics.filter { $0.key != "warnings" }),
            "warnings": .array(warnings.map(Value.string)),
        ]
        if let activations = quantization.activations {
            object["activations"] = .object([
                "bits": .int(activations.bits), "granularity": .string(activations.granularity.rawValue),
                "symmetric": .bool(activations.symmetric), "code_range": .array(activations.codeRange.map(Value.int)),
            ])
        }
        if let observer = quantization.observer { object["observer"] = .string(observer) }
        if let percentile = quantization.percentile { object["percentile"] = .double(percentile) }
        if let bins = quantization.histogramBins { object["histogram_bins"] = .int(bins) }
        if let smoothing = report.smoothing { object["smoothing"] = smoothingReport(smoothing) }
        return (.object(object), metrics)
    }

    /// report.json's `smoothing`: the α used, the search, and each smoothed
    /// module with its fold and the range of its factors.
    static func smoothingReport(_ smoothing: SmoothingReport) -> Value {
        let modules: [Value] = smoothing.groups.flatMap { group in
            group.modules.map { module -> Value in
                var entry: [String: Value] = ["module": .string(module)]
                switch group.fold {
                case .activationQuantization:
                    entry["fold"] = .string("activation_quantization")
                case .valueProjection(let value):
                    entry["fold"] = .string("value_projection")
                    entry["value_projection"] = .string(value)
                }
                if let range = smoothing.factorRanges[module] {
                    entry["factor_min"] = .metric(range.lowerBound)
                    entry["factor_max"] = .metric(range.upperBound)
                }
                return .object(entry)
            }
        }
        var object: [String: Value] = [
            "alpha": .double(smoothing.alpha),
            "alpha_searched": .bool(smoothing.searched),
            "modules": .array(modules),
        ]
        if smoothing.searched {
            object["search"] = .array(smoothing.candidates.map {
                .object(["alpha": .double($0.alpha), "calibration_logits_mse": $0.calibrationLogitsMSE.isFinite ? .double($0.calibrationLogitsMSE) : .null])
            })
        }
        return .object(object)
    }

    /// What every quantize stage outputs: the model directory and report.json.
    static let outputs = ["model": "model", "report": "report.json"]

    /// The common end of every quantize stage: saves `quantized` as `model/`
    /// next to `artifact`'s tokenizer files, writes report.json, and returns
    /// the stage metrics (sizes, the report's summary, then `extra`).
    static func publish(
        _ quantized: QuantizedBertModel, from artifact: ModelArtifact, report: QuantizationReport, warnings: [String],
        extra: [String: Value] = [:], source: String, context: StageContext
    ) throws(StageFailure) -> [String: Value] {
        let modelDirectory = (context.outputDirectory as NSString).appendingPathComponent("model")
        try save(quantized, from: artifact, to: modelDirectory, source: source)
        let sizes = try sizeMetrics(float: artifact, quantizedDirectory: modelDirectory)
        let (reportValue, metrics) = Self.report(
            report, quantization: quantized.quantization, warnings: warnings, extra: sizes.merging(extra) { _, given in given })
        try writeReport(reportValue, context: context)
        return metrics
    }

    /// One log line per quantized module with the SQNR of its weight.
    static func logWeightSQNR(_ report: QuantizationReport, context: StageContext) {
        for layer in report.layers {
            context.log.line("\(layer.module): weight SQNR " + String(format: "%.2f dB", layer.weightSQNR))
        }
    }

    /// Writes report.json into the stage's output directory.
    static func writeReport(_ report: Value, context: StageContext) throws(StageFailure) {
        let path = (context.outputDirectory as NSString).appendingPathComponent("report.json")
        do {
            try AtomicFile.write(Data(report.canonicalJSON.utf8), to: path)
        } catch {
            throw StageFailure("cannot write \(path): \(error)")
        }
    }
}
