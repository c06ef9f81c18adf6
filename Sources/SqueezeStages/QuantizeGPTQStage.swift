import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: quantize/gptq` — GPTQ weight-only quantization (Frantar et al.
/// 2022) of a float classifier's encoder linear layers: each weight is
/// quantized column by column on its group-wise grid with the error
/// compensated through the inverse Hessian of the layer's calibration
/// inputs, block by block in the sequential protocol (block k calibrated on
/// blocks 0…k−1 already quantized). The output is the weight-only model
/// format of `quantize/weight-only` (f32 activations, codes dequantized on
/// the fly), so `eval/classification` scores and times it. 3-bit codes are
/// stored in the 4-bit container. A masked (sparse) input keeps its zeros.
public struct QuantizeGPTQStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The float model to quantize: a BERT classifier (`${finetuned.model}`) or a decoder, or a pruned one (its masked zeros stay exactly zero); an already quantized model is an error.")
        public static let data = Parameter("data", .classificationOrTextDataset, doc: "The dataset the calibration samples come from: `${stage.dataset}` of `data/text-classification` for a BERT classifier, of `data/text` for a decoder (windows of `calibration.seq_len` tokens, default the dataset's block_size, drawn by the stage seed).")
        public static let bits = Parameter("bits", .int, default: 4, doc: "Code width: 4 or 8, or 3 (3-bit codes stored in the 4-bit container: the file is the size of int4).")
        public static let group_size = Parameter("group_size", .int, default: 128, doc: "Inputs of an output row sharing a scale (and zero point): 128, 64, 32, … dividing every selected layer's input width; -1: one per output row (the weight-only format has one group size per model, so the selected layers must then share one input width).")
        public static let act_order = Parameter("act_order", .bool, default: false, doc: "Quantize the columns in order of decreasing Hessian diagonal (the reference's `actorder`); the groups stay the consecutive columns, their scales fixed from the original weights.")
        public static let symmetric = Parameter("symmetric", .bool, default: true, doc: "`true`: zero point 0, codes [−q, q]; `false`: a zero point per group and the whole signed code range.")
        public static let damp = Parameter("damp", .number, default: 0.01, doc: "Dampening added to the Hessian's diagonal, as a fraction of its mean (≥ 0; the reference's `percdamp`).")
        public static let blocksize = Parameter("blocksize", .int, default: 128, doc: "Columns per block of lazy batch updates.")
        public static let calibration = OneShotStages.calibration
        public static let include = OneShotStages.include
        public static let skip = OneShotStages.skip

        public static let parameters: [any ParameterDeclaration] = [
            model, data, bits, group_size, act_order, symmetric, damp, blocksize, calibration, include, skip,
        ]

        public var model: String
        public var data: String
        public var bits: Int
        public var group_size: Int
        public var act_order: Bool
        public var symmetric: Bool
        public var damp: Double
        public var blocksize: Int
        public var calibration: OneShotCalibrationParams?
        public var include: [String]
        public var skip: [String]

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            data = try arguments[Self.data]
            bits = try arguments[Self.bits]
            group_size = try arguments[Self.group_size]
            act_order = try arguments[Self.act_order]
            symmetric = try arguments[Self.symmetric]
            damp = try arguments[Self.damp]
            blocksize = try arguments[Self.blocksize]
            calibration = try arguments[Self.calibration]
            include = try arguments[Self.include]
            skip = try arguments[Self.skip]
        }
    }

    static let supportedBits = [3, 4, 8]

    public static let descriptor = StageTypeDescriptor(
        type: "quantize/gptq",
        version: 1,
        summary: "GPTQ weight-only quantization (int4/int8, int3 in the int4 container) of the encoder's linear layers with error compensation on calibration inputs, sequential block by block; outputs the weight-only model and a per-layer report (error vs round-to-nearest).",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The quantized model artifact (weight-only Linears; see docs/quantized-models.md and docs/oneshot.md)."),
            OutputSpec("report", kind: "file", doc: "report.json: per layer the relative reconstruction error of GPTQ and of round-to-nearest on the same grid, kept zeros; the summary."),
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
        if let (value, node) = OneShotStages.literalNumber(with, "bits"), !supportedBits.contains(Int(value)) || value != value.rounded() {
            problems.append(Diagnostic(
                "`bits` must be 3, 4 or 8, got \(node.scalar ?? "")", at: node.location,
                hint: "the weight-only format stores int4 or int8 codes (3-bit codes in the int4 container)"))
        }
        if let (value, node) = OneShotStages.literalNumber(with, "group_size"), value != -1 && value < 1 {
            problems.append(Diagnostic(
                "`group_size` must be -1 (one scale per output row) or positive, got \(node.scalar ?? "")", at: node.location,
                hint: "e.g. 128, 64 or 32"))
        }
        if let (value, node) = OneShotStages.literalNumber(with, "damp"), !(value >= 0) {
            problems.append(Diagnostic("`damp` must not be negative, got \(node.scalar ?? "")", at: node.location, hint: "e.g. 0.01"))
        }
        problems += ParamChecks.atLeast(with, [(Params.blocksize, 1)])
        return problems + OneShotStages.checkCalibration(with) + OneShotStages.checkPatterns(with)
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let started = ContinuousClock.now
        let backend = try backends.make(context)
        // Everything that can be wrong is checked before any forward pass.
        guard Self.supportedBits.contains(params.bits) else { throw StageFailure("`bits` must be 3, 4 or 8, got \(params.bits)") }
        guard params.group_size == -1 || params.group_size >= 1 else {
            throw StageFailure("`group_size` must be -1 or positive, got \(params.group_size)")
        }
        guard params.damp >= 0, params.damp.isFinite, params.blocksize >= 1 else {
            throw StageFailure("`damp` must be ≥ 0 and `blocksize` ≥ 1")
        }
        let storageBits = params.bits == 3 ? 4 : params.bits
        if try OneShotStages.isDecoder(params.model) {
            let subject = try OneShotStages.decoderSubject(
                model: params.model, data: params.data, calibration: params.calibration, calibrated: true, seed: context.seed)
            let source = params.model
            return try quantize(subject, params: params, storageBits: storageBits, backend: backend, context: context, started: started) {
                model, layers, section, directory throws(StageFailure) in
                let linears = try Self.weightOnlyLinears(layers, storageBits: storageBits, groupSize: section.weights.groupSize ?? 0)
                var section = section
                section.skipped = Self.skippedModules(
                    model.linearLayers.map(\.name), of: model, quantized: section.modules, outside: "outside the decoder blocks")
                try StageFailure.wrapping("cannot write the quantized model: ") { () throws(ModelFileError) in
                    let quantized = try QuantizedDecoderModel(model, linears: linears, quantization: section)
                    try quantized.save(toDirectory: directory)
                    try ModelArtifact(directory: source).copy([ModelArtifact.tokenizerFileName], into: directory)
                    _ = try ModelArtifact.seal(directory: directory, architecture: model.config.family.rawValue, source: "quantize/gptq")
                }
                return (section.skipped, Self.fileSizes(float: source, quantized: directory))
            }
        }
        let subject = try OneShotStages.bertSubject(
            model: params.model, data: params.data, calibration: params.calibration, calibrated: true, seed: context.seed)
        let artifact = try StageFailure.wrapping("cannot load the model: ", parameter: "model") { () throws(ModelFileError) in
            try ModelArtifact(directory: params.model)
        }
        return try quantize(subject, params: params, storageBits: storageBits, backend: backend, context: context, started: started) {
            model, layers, section, directory throws(StageFailure) in
            let quantizedModel = try Self.weightOnlyModel(model, layers: layers, section: section, storageBits: storageBits)
            try QuantizeStages.save(quantizedModel, from: artifact, to: directory, source: "quantize/gptq")
            return (quantizedModel.quantization.skipped, try QuantizeStages.sizeMetrics(float: artifact, quantizedDirectory: directory))
        }
    }

    /// Writes the quantized model into a directory and returns the skipped modules and the size metrics.
    typealias Writer<Model> = (
        _ model: Model, _ layers: [LayerResult], _ section: ModelQuantization, _ directory: String
    ) throws(StageFailure) -> (skipped: [ModelQuantization.SkippedModule], sizes: [String: Value])

    /// GPTQ on the selected layers of `subject`'s model, sequentially; `write` stores the result.
    func quantize<Model: LinearLayerModel>(
        _ subject: OneShotStages.Subject<Model>, params: Params, storageBits: Int, backend: any Backend, context: StageContext,
        started: ContinuousClock.Instant, write: Writer<Model>
    ) throws -> StageResult {
        guard let sample = subject.calibration else { throw StageFailure("GPTQ needs calibration data: give `data`", parameter: "data") }
        let selection = try OneShotStages.selection(subject.model, include: params.include, skip: params.skip)
        let groupSize = try Self.storedGroupSize(params.group_size, layers: selection.layers)
        let grid = WeightGrid(bits: params.bits, groupSize: params.group_size, symmetric: params.symmetric)
        let warnings = selection.warnings + sample.warnings + subject.warnings
        for warning in warnings { context.log.line("warning: " + warning) }

        var model = subject.model
        let masks = model.linearMasks
        var originals: [String: [Float]] = [:]
        for layer in selection.layers {
            originals[layer.name] = try PruneOneShotStage.view { () throws(LinearViewError) in
                try model.linearWeight(layer.name).contiguous().floats
            }
        }
        let batches = sample.batches
        let tokens = sample.tokens
        let blocks = model.linearBlocks
        context.log.line("""
            quantize/gptq: \(selection.layers.count) of \(selection.candidates.count) block layers to int\(params.bits)\
            \(params.bits == 3 ? " (in the int4 container)" : "") in groups of \(params.group_size == -1 ? "a row" : "\(params.group_size)") \
            (\(params.symmetric ? "symmetric" : "asymmetric")\(params.act_order ? ", act order" : "")), damp \(params.damp), blocksize \(params.blocksize)\
            \(masks.isEmpty ? "" : "; \(masks.count) masked layers keep their zeros"); calibration: \(sample.describe(unit: subject.sampleUnit)); backend \(backend.id) with \(context.threads) threads
            """)

        var results: [String: LayerResult] = [:]
        let collector = OneShotStages.StatisticsCollector(backend: backend)
        let selected = Set(selection.names)
        try SequentialCalibration.run(
            &model, batches: batches, select: selection.names, backend: backend,
            observe: { block, inputs in try collector.observe(block, selected: selected, inputs: inputs) },
            compressBlock: { block, layers in
                var updates: [String: Tensor] = [:]
                for layer in layers {
                    let start = ContinuousClock.now
                    guard let statistics = collector.statistics(of: layer.name) else {
                        throw StageFailure("no calibration statistics for `\(layer.name)`")
                    }
                    let weight = originals[layer.name] ?? []
                    let options = GPTQOptions(
                        grid: grid, actOrder: params.act_order, dampening: params.damp, blockSize: params.blocksize,
                        keepZeros: masks[layer.name] != nil)
                    let quantized: QuantizedLayer
                    let rtn: QuantizedLayer
                    do {
                        quantized = try GPTQ.quantize(
                            weight: weight, rows: layer.outFeatures, cols: layer.inFeatures, statistics: statistics, options: options)
                        rtn = try grid.roundToNearest(weight: weight, rows: layer.outFeatures, cols: layer.inFeatures)
                    } catch {
                        throw StageFailure("`\(layer.name)`: \(error)")
                    }
                    let seconds = OneShotStages.seconds(since: start)
                    let error = OneShotStages.ReconstructionError(
                        original: weight, rows: layer.outFeatures, cols: layer.inFeatures, statistics: statistics, backend: backend)
                    results[layer.name] = LayerResult(
                        layer: layer, block: block.index, quantized: quantized, gptqError: error.relative(quantized.dequantized),
                        rtnError: error.relative(rtn.dequantized), maskPattern: masks[layer.name]?.pattern,
                        keptZeros: masks[layer.name].map { mask in (0..<mask.elementCount).filter { !mask.isKept($0) }.count },
                        seconds: seconds)
                    updates[layer.name] = Tensor(shape: [layer.outFeatures, layer.inFeatures], floats: quantized.dequantized)
                }
                collector.release(block)
                context.progress.report(fraction: Double(block.index + 1) / Double(blocks.count), "block \(block.index + 1)/\(blocks.count)")
                return updates
            })
        let seconds = OneShotStages.seconds(since: started)

        let ordered = selection.layers.compactMap { results[$0.name] }
        guard ordered.count == selection.layers.count else { throw StageFailure("not every selected layer was quantized") }
        let modelDirectory = (context.outputDirectory as NSString).appendingPathComponent("model")
        let written = try write(model, ordered, Self.section(layers: ordered, grid: grid, storageBits: storageBits, groupSize: groupSize), modelDirectory)
        let sizes = written.sizes

        let gptqErrors = ordered.compactMap(\.gptqError)
        let rtnErrors = ordered.compactMap(\.rtnError)
        func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
        let codeRange = grid.codeRange
        var summary: [String: Value] = [
            "bits": .int(params.bits),
            "storage_bits": .int(storageBits),
            "code_range": .array([.int(Int(codeRange.lowerBound)), .int(Int(codeRange.upperBound))]),
            "group_size": .int(params.group_size),
            "stored_group_size": .int(groupSize),
            "symmetric": .bool(params.symmetric),
            "act_order": .bool(params.act_order),
            "damp": .double(params.damp),
            "quantized_layers": .int(ordered.count),
            "relative_error_mean": OneShotStages.rounded(mean(gptqErrors)),
            "rtn_relative_error_mean": OneShotStages.rounded(mean(rtnErrors)),
            "layers_better_than_rtn": .int(ordered.filter { ($0.gptqError ?? .infinity) <= ($0.rtnError ?? .infinity) }.count),
            "kept_zero_layers": .int(ordered.filter { $0.keptZeros != nil }.count),
            "calibration_samples": .int(sample.samples),
            "calibration_tokens": .int(tokens),
        ]
        if params.bits == 3 {
            summary["storage_note"] = .string("3-bit codes in [\(codeRange.lowerBound), \(codeRange.upperBound)] stored in the int4 container: the file is the size of int4")
        }
        let report: Value = .object([
            "stage": .string("quantize/gptq"),
            "mode": .string("weight_only"),
            "summary": .object(summary),
            "calibration": sample.reportEntry,
            "layers": .array(ordered.map(\.reportEntry)),
            "skipped": .array(written.skipped.map { .object(["module": .string($0.module), "reason": .string($0.reason)]) }),
            "warnings": .array(warnings.map(Value.string)),
        ])
        try QuantizeStages.writeReport(report, context: context)
        for result in ordered {
            context.log.line(String(
                format: "%@: relative error GPTQ %@ vs RTN %@, %.3f s", result.layer.name,
                result.gptqError.map { String(format: "%.5f", $0) } ?? "n/a", result.rtnError.map { String(format: "%.5f", $0) } ?? "n/a",
                result.seconds))
        }
        context.log.line(String(format: "%d layers in %.2f s", ordered.count, seconds))
        var metrics = summary.merging(sizes) { first, _ in first }
        metrics["seconds"] = .double((seconds * 1000).rounded() / 1000)
        metrics["seconds_per_layer"] = OneShotStages.secondsMetric(ordered.map { ($0.layer.name, $0.seconds) })
        metrics["warnings"] = .array(warnings.map(Value.string))
        return StageResult(metrics: metrics, outputs: QuantizeStages.outputs, warnings: warnings)
    }

    /// One quantized layer.
    struct LayerResult {
        var layer: LinearLayer
        var block: Int
        var quantized: QuantizedLayer
        var gptqError: Double?
        var rtnError: Double?
        /// The input's mask pattern, when the layer was masked (its zeros kept).
        var maskPattern: SparsityPattern?
        var keptZeros: Int?
        var seconds: Double

        var reportEntry: Value {
            var entry: [String: Value] = [
                "layer": .string(layer.name),
                "block": .int(block),
                "shape": .array([.int(layer.outFeatures), .int(layer.inFeatures)]),
                "relative_error": OneShotStages.rounded(gptqError),
                "rtn_relative_error": OneShotStages.rounded(rtnError),
            ]
            if let maskPattern, let keptZeros {
                entry["mask_pattern"] = .string(maskPattern.description)
                entry["kept_zeros"] = .int(keptZeros)
            }
            return .object(entry)
        }
    }

    /// The group size the weight-only format stores: `groupSize`, which must
    /// divide every selected width, or for −1 the one input width all
    /// selected layers share.
    static func storedGroupSize(_ groupSize: Int, layers: [LinearLayer]) throws(StageFailure) -> Int {
        let widths = layers.map(\.inFeatures)
        if groupSize == -1 {
            let distinct = Array(Set(widths)).sorted()
            guard distinct.count == 1, let width = distinct.first else {
                throw StageFailure("""
                    `group_size: -1` (one scale per output row) needs selected layers of one input width: the weight-only format stores one \
                    group size per model, and the selected layers have input widths \(distinct.map(String.init).joined(separator: ", ")); \
                    use a group size dividing them all (e.g. \(WeightOnlyQuantizer.largestDivisor(of: widths.reduce(0, WeightOnlyQuantizer.greatestCommonDivisor), atMost: 128))), \
                    or select layers of one width with `include`
                    """, parameter: "group_size")
            }
            return width
        }
        if let bad = layers.first(where: { $0.inFeatures % groupSize != 0 }) {
            let fitting = WeightOnlyQuantizer.largestDivisor(of: widths.reduce(0, WeightOnlyQuantizer.greatestCommonDivisor), atMost: groupSize)
            throw StageFailure("""
                group_size \(groupSize) does not divide the input width \(bad.inFeatures) of `\(bad.name)`; \
                use a group_size dividing every selected width, e.g. \(fitting), or skip the layer
                """, parameter: "group_size")
        }
        return groupSize
    }

    /// The GPTQ layers as weight-only Linears (their codes in the
    /// `storageBits` container), by module.
    static func weightOnlyLinears(_ layers: [LayerResult], storageBits: Int, groupSize: Int) throws(StageFailure) -> [String: WeightOnlyLinear] {
        var linears: [String: WeightOnlyLinear] = [:]
        for result in layers {
            let layer = result.quantized
            var codes = Tensor(zeros: [layer.rows, layer.cols], dtype: .i8)
            codes.withUnsafeMutableElements(Int8.self) { target in
                for index in 0..<(layer.rows * layer.cols) { target[index] = layer.codes[index] }
            }
            do {
                let packed = try PackedGroupWeights(
                    codes: codes, bits: storageBits, groupSize: groupSize, scales: layer.scales,
                    zeroPoints: layer.zeroPoints.isEmpty ? nil : layer.zeroPoints)
                linears[result.layer.name] = WeightOnlyLinear(weights: packed)
            } catch {
                throw StageFailure("`\(result.layer.name)`: \(error.description)")
            }
        }
        return linears
    }

    /// The weight-only quantization section of the GPTQ layers (the
    /// section's `code_bits` says when the grid is narrower than the
    /// container); `skipped` is the writer's to fill.
    static func section(layers: [LayerResult], grid: WeightGrid, storageBits: Int, groupSize: Int) -> ModelQuantization {
        let codes = grid.codeRange
        let scheme = ModelQuantization.WeightScheme(
            bits: storageBits, granularity: .perGroup, symmetric: grid.symmetric, codeRange: [Int(codes.lowerBound), Int(codes.upperBound)],
            groupSize: groupSize, codeBits: grid.bits == storageBits ? nil : grid.bits)
        return ModelQuantization(mode: .weightOnly, weights: scheme, activations: nil, modules: layers.map(\.layer.name), skipped: [])
    }

    /// The `modules` GPTQ left f32, each with why: not selected, or outside
    /// the model's blocks (`outside`).
    static func skippedModules<Model: LinearLayerModel>(
        _ modules: [String], of model: Model, quantized: [String], outside: String
    ) -> [ModelQuantization.SkippedModule] {
        let quantized = Set(quantized)
        let blockLayers = Set(model.linearBlocks.flatMap(\.layers).map(\.name))
        return modules.filter { !quantized.contains($0) }.map { module in
            ModelQuantization.SkippedModule(module: module, reason: blockLayers.contains(module) ? "not selected (include/skip)" : outside)
        }
    }

    /// `model` with the GPTQ layers as weight-only Linears and every other Linear f32.
    static func weightOnlyModel(
        _ model: BertModel, layers: [LayerResult], section: ModelQuantization, storageBits: Int
    ) throws(StageFailure) -> QuantizedBertModel {
        let linears = try weightOnlyLinears(layers, storageBits: storageBits, groupSize: section.weights.groupSize ?? 0)
        var section = section
        section.skipped = skippedModules(
            model.weights.linearModules, of: model, quantized: section.modules, outside: "outside the encoder blocks")
        let weights = model.inferenceWeights.map { _, value -> InferenceValue in
            guard case .linear(let linear) = value, let weightOnly = linears[linear.module] else { return value }
            return .linear(InferenceLinear(module: linear.module, kernel: .weightOnly(weightOnly)))
        }
        do {
            return try QuantizedBertModel(config: model.config, weights: weights, pooling: model.pooling, quantization: section)
        } catch {
            throw StageFailure("the quantized model is inconsistent: \(error.message)")
        }
    }

    /// `size_bytes` of the float and the quantized `model.safetensors` (artifact directories).
    static func fileSizes(float: String, quantized: String) -> [String: Value] {
        let before = OneShotStages.fileSize(float)
        let after = OneShotStages.fileSize(quantized)
        return [
            "float_size_bytes": .int(before), "size_bytes": .int(after),
            "compression": .double(after == 0 ? 0 : Double(before) / Double(after)),
        ]
    }
}
