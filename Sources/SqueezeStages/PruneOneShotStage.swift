import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport
import SqueezeTensor
import SqueezeYAML

/// `uses: prune/oneshot` — one-shot, layer-wise pruning of a float
/// classifier's encoder linear layers, without retraining: magnitude, Wanda
/// (|W|·‖X‖₂ per output row) or SparseGPT (OBS updates on the Hessian of
/// calibration inputs), unstructured or N:M along the input dimension.
/// Calibrated methods run the sequential protocol: block k is calibrated on
/// the outputs of blocks 0…k−1 as already pruned. Outputs the pruned model
/// artifact, its masks stored sparse, and report.json (per layer: target and
/// realised sparsity, reconstruction error on the calibration inputs).
public struct PruneOneShotStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The float model to prune: a BERT classifier (`${finetuned.model}`) or a decoder (Llama, Mistral, Qwen2, GPT-2); an already quantized model is an error. A model with masks keeps its zeros: they count toward the target, and the method chooses the rest.")
        public static let data = Parameter("data", .optional(.classificationOrTextDataset), doc: "The dataset the calibration samples come from: `${stage.dataset}` of `data/text-classification` for a BERT classifier, of `data/text` for a decoder; required by `wanda`, `sparsegpt` and `allocation: owl`, unused by `magnitude` otherwise.")
        public static let method = Parameter("method", .enumeration(PruningMethod.allCases.map(\.rawValue)), doc: "`magnitude`: the smallest |W| (no calibration); `wanda`: the smallest |W_ij|·‖X_j‖₂ within each output row, no weight update (Sun et al. 2023); `sparsegpt`: mask selection by w²/[H⁻¹]_jj² in blocks of columns with OBS error compensation of the remaining weights (Frantar & Alistarh 2023).")
        public static let sparsity = Parameter("sparsity", .optional(.number), doc: "Unstructured: the fraction of each selected layer's weights set to zero, in [0, 1) (magnitude: per layer, or over all selected layers with `scope: global`; Wanda: per output row; SparseGPT: per block of columns). Give one of `sparsity`, `pattern` and `layer_sparsity`.")
        public static let pattern = Parameter("pattern", .optional(.string), doc: "N:M: keep N weights in every M consecutive inputs of an output row (`\"2:4\"`, `\"4:8\"`; 0 < N < M, M must divide every selected layer's input width). Give one of `sparsity`, `pattern` and `layer_sparsity`.")
        public static let layer_sparsity = Parameter("layer_sparsity", .optional(.array(.number)), doc: "Unstructured sparsity per encoder block (one number in [0, 1) per block, block 0 first), instead of `sparsity`.")
        public static let scope = Parameter("scope", .enumeration(["layer", "global"]), default: "layer", doc: "`layer`: every layer reaches the target; `global` (magnitude with `sparsity` only): one magnitude threshold over all selected layers, so layers end with different sparsities.")
        public static let allocation = Parameter("allocation", .enumeration(["uniform", "owl"]), default: "uniform", doc: "`uniform`: every block gets `sparsity`; `owl`: outlier-weighed layerwise sparsity (Yin et al. 2023): blocks with more outliers of Wanda's metric on the dense model (values above `owl_threshold` × their mean) get lower sparsities, spread over 2 × `owl_lambda`, mean `sparsity`. Needs `sparsity` and calibration data.")
        public static let owl_lambda = Parameter("owl_lambda", .number, default: 0.08, doc: "OWL: half the spread of the block sparsities around `sparsity` (≥ 0).")
        public static let owl_threshold = Parameter("owl_threshold", .number, default: 5, doc: "OWL: a metric value above this multiple of its block's mean is an outlier (> 0).")
        public static let percdamp = Parameter("percdamp", .number, default: 0.01, doc: "SparseGPT: dampening added to the Hessian's diagonal, as a fraction of its mean (≥ 0).")
        public static let blocksize = Parameter("blocksize", .int, default: 128, doc: "SparseGPT: columns per block of mask selection and lazy updates (rounded up to a multiple of M for N:M).")
        public static let calibration = OneShotStages.calibration
        public static let include = OneShotStages.include
        public static let skip = OneShotStages.skip

        public static let parameters: [any ParameterDeclaration] = [
            model, data, method, sparsity, pattern, layer_sparsity, scope, allocation, owl_lambda, owl_threshold, percdamp,
            blocksize, calibration, include, skip,
        ]

        public var model: String
        public var data: String?
        public var method: String
        public var sparsity: Double?
        public var pattern: String?
        public var layer_sparsity: [Double]?
        public var scope: String
        public var allocation: String
        public var owl_lambda: Double
        public var owl_threshold: Double
        public var percdamp: Double
        public var blocksize: Int
        public var calibration: OneShotCalibrationParams?
        public var include: [String]
        public var skip: [String]

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            data = try arguments[Self.data]
            method = try arguments[Self.method]
            sparsity = try arguments[Self.sparsity]
            pattern = try arguments[Self.pattern]
            layer_sparsity = try arguments[Self.layer_sparsity]
            scope = try arguments[Self.scope]
            allocation = try arguments[Self.allocation]
            owl_lambda = try arguments[Self.owl_lambda]
            owl_threshold = try arguments[Self.owl_threshold]
            percdamp = try arguments[Self.percdamp]
            blocksize = try arguments[Self.blocksize]
            calibration = try arguments[Self.calibration]
            include = try arguments[Self.include]
            skip = try arguments[Self.skip]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "prune/oneshot",
        version: 1,
        summary: "One-shot layer-wise pruning of the encoder's linear layers (magnitude, Wanda or SparseGPT; unstructured or N:M), calibrated sequentially block by block; outputs the masked model (stored sparse) and a per-layer report.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The pruned model artifact: its masks recorded and its masked weights stored sparse (docs/sparse-models.md)."),
            OutputSpec("report", kind: "file", doc: "report.json: per layer the target and realised sparsity and the relative reconstruction error on the calibration inputs; the summary."),
        ],
        defaultResources: Resources(allCores: true),
        usesTensorBackend: true,
        seedUse: .whenGiven("data"),
        check: checkParams
    )

    /// The backends a recipe may name.
    let backends: BackendRegistry

    public init(backends: BackendRegistry) { self.backends = backends }

    // MARK: Checks (recipe validation)

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        let given = ["sparsity", "pattern", "layer_sparsity"].filter { with[$0] != nil }
        if given.isEmpty {
            problems.append(Diagnostic(
                "give the target: `sparsity` (unstructured), `pattern` (N:M) or `layer_sparsity` (one per block)", at: with.location,
                hint: "e.g. `sparsity: 0.5` or `pattern: \"2:4\"`"))
        } else if given.count > 1, let node = with[given[1]] {
            problems.append(Diagnostic(
                "give one of `sparsity`, `pattern` and `layer_sparsity`, not \(given.map { "`\($0)`" }.joined(separator: " and "))",
                at: node.location, hint: "remove `\(given[1])`"))
        }
        if let (value, node) = OneShotStages.literalNumber(with, "sparsity"), !(value >= 0 && value < 1) {
            problems.append(Diagnostic(
                "`sparsity` must be in [0, 1), got \(node.scalar ?? "")", at: node.location, hint: "the fraction of weights set to zero, e.g. 0.5"))
        }
        if let node = with["pattern"], let text = node.scalar, !text.contains("${") {
            if case .failure(let problem) = Self.parsePattern(text) {
                problems.append(Diagnostic(problem.message, at: node.location, hint: problem.hint))
            }
        }
        for item in with["layer_sparsity"]?.items ?? [] {
            if let text = item.scalar, !text.contains("${"), let value = Double(text), !(value >= 0 && value < 1) {
                problems.append(Diagnostic("every `layer_sparsity` must be in [0, 1), got \(text)", at: item.location))
            }
        }
        if let list = with["layer_sparsity"], let items = list.items, items.isEmpty {
            problems.append(Diagnostic("`layer_sparsity` needs one sparsity per encoder block", at: list.location))
        }
        let method = literal(with, "method")
        if let scope = with["scope"], scope.scalar == "global" {
            if let method, method != PruningMethod.magnitude.rawValue {
                problems.append(Diagnostic(
                    "`scope: global` is for `method: magnitude`; \(method) compares weights within each layer", at: scope.location,
                    hint: "remove `scope: global`, or use `method: magnitude`"))
            }
            if with["sparsity"] == nil && !given.isEmpty {
                problems.append(Diagnostic(
                    "`scope: global` needs an unstructured `sparsity` (one threshold over all layers)", at: scope.location,
                    hint: "use `sparsity:` instead of `\(given[0])`"))
            }
            if with["allocation"]?.scalar == "owl" {
                problems.append(Diagnostic("`scope: global` and `allocation: owl` both decide the layers' sparsities; give one", at: scope.location))
            }
        }
        if let allocation = with["allocation"], allocation.scalar == "owl", with["sparsity"] == nil, !given.isEmpty {
            problems.append(Diagnostic(
                "`allocation: owl` spreads an unstructured `sparsity` over the blocks; it does not take `\(given[0])`", at: allocation.location,
                hint: "use `sparsity:` (the mean over the blocks)"))
        }
        if let (value, node) = OneShotStages.literalNumber(with, "owl_lambda"), !(value >= 0) {
            problems.append(Diagnostic("`owl_lambda` must not be negative, got \(node.scalar ?? "")", at: node.location, hint: "e.g. 0.08"))
        }
        if let (value, node) = OneShotStages.literalNumber(with, "owl_threshold"), !(value > 0) {
            problems.append(Diagnostic("`owl_threshold` must be positive, got \(node.scalar ?? "")", at: node.location, hint: "e.g. 5"))
        }
        if let (value, node) = OneShotStages.literalNumber(with, "percdamp"), !(value >= 0) {
            problems.append(Diagnostic("`percdamp` must not be negative, got \(node.scalar ?? "")", at: node.location, hint: "e.g. 0.01"))
        }
        problems += ParamChecks.atLeast(with, [(Params.blocksize, 1)])
        let needsData = (method != nil && method != PruningMethod.magnitude.rawValue) || with["allocation"]?.scalar == "owl"
        if needsData, with["data"] == nil {
            let node = with["allocation"]?.scalar == "owl" ? with["allocation"] : with["method"]
            problems.append(Diagnostic(
                "\(method.map { "`method: \($0)`" } ?? "`allocation: owl`") needs calibration data: give `data`", at: (node ?? with).location,
                hint: "e.g. `data: ${sst2.dataset}` with `calibration: {split: train, samples: 128}`"))
        }
        return problems + OneShotStages.checkCalibration(with) + OneShotStages.checkPatterns(with)
    }

    /// A literal scalar of `with[key]`, not a reference.
    static func literal(_ with: YAMLNode, _ key: String) -> String? {
        guard let text = with[key]?.scalar, !text.contains("${") else { return nil }
        return text
    }

    struct PatternProblem: Error {
        var message: String
        var hint: String
    }

    /// `"N:M"` with 0 < N < M.
    static func parsePattern(_ text: String) -> Result<(n: Int, m: Int), PatternProblem> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[0].trimmingCharacters(in: .whitespaces)),
            let m = Int(parts[1].trimmingCharacters(in: .whitespaces))
        else {
            return .failure(PatternProblem(
                message: "`pattern` must be N:M (two integers), got `\(text)`", hint: "e.g. `pattern: \"2:4\"` keeps 2 weights in every 4 inputs"))
        }
        guard n > 0, n < m else {
            return .failure(PatternProblem(
                message: "`pattern` \(n):\(m) must keep 0 < N < M weights in every M inputs",
                hint: n >= m ? "N is what is kept: `2:4` keeps 2 of 4 (50% sparse)" : "e.g. `2:4`"))
        }
        return .success((n, m))
    }

    // MARK: Run

    /// The sparsity target of every block, from the parameters.
    enum Targets {
        case uniform(SparsityTarget)
        case perBlock([Double])
        case owl(Double)
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let started = ContinuousClock.now
        let backend = try backends.make(context)
        // Everything that can be wrong is checked before any forward pass.
        guard let method = PruningMethod(rawValue: params.method) else {
            throw StageFailure("`method` must be one of \(PruningMethod.allCases.map(\.rawValue).joined(separator: ", ")), got `\(params.method)`")
        }
        let targets = try Self.targets(params)
        let global = params.scope == "global"
        if global && (method != .magnitude || params.sparsity == nil || params.allocation != "uniform") {
            throw StageFailure("`scope: global` is for `method: magnitude` with an unstructured `sparsity` and `allocation: uniform`")
        }
        let calibrated = method != .magnitude || params.allocation == "owl"
        if calibrated && params.data == nil {
            throw StageFailure("`method: \(method.rawValue)`\(params.allocation == "owl" ? " with `allocation: owl`" : "") needs calibration data: give `data`", parameter: "method")
        }
        if try OneShotStages.isDecoder(params.model) {
            let subject = try OneShotStages.decoderSubject(
                model: params.model, data: params.data, calibration: params.calibration, calibrated: calibrated, seed: context.seed)
            return try prune(subject, method: method, targets: targets, params: params, backend: backend, context: context, started: started)
        }
        let subject = try OneShotStages.bertSubject(
            model: params.model, data: params.data, calibration: params.calibration, calibrated: calibrated, seed: context.seed)
        return try prune(subject, method: method, targets: targets, params: params, backend: backend, context: context, started: started)
    }

    /// Prunes the selected layers of `subject`'s model, writes it and the report.
    func prune<Model: LinearLayerModel>(
        _ subject: OneShotStages.Subject<Model>, method: PruningMethod, targets: Targets, params: Params, backend: any Backend,
        context: StageContext, started: ContinuousClock.Instant
    ) throws -> StageResult {
        let global = params.scope == "global"
        let calibrated = subject.calibration != nil
        let selection = try OneShotStages.selection(subject.model, include: params.include, skip: params.skip)
        let blocks = subject.model.linearBlocks
        if case .uniform(.nOfM(let n, let m)) = targets, let layer = selection.layers.first(where: { $0.inFeatures % m != 0 }) {
            throw StageFailure("""
                `pattern` \(n):\(m): M = \(m) does not divide the input width \(layer.inFeatures) of `\(layer.name)`; \
                use an M dividing every selected width (e.g. 4), or skip the layer
                """, parameter: "pattern")
        }
        if case .perBlock(let list) = targets, list.count != blocks.count {
            throw StageFailure("`layer_sparsity` has \(list.count) entries; the model has \(blocks.count) encoder blocks: give one sparsity per block", parameter: "layer_sparsity")
        }
        let sample = subject.calibration
        let warnings = selection.warnings + (sample?.warnings ?? []) + subject.warnings
        for warning in warnings { context.log.line("warning: " + warning) }

        var model = subject.model
        let priorMasks = model.linearMasks
        var originals: [String: [Float]] = [:]
        for layer in selection.layers {
            originals[layer.name] = try Self.view { () throws(LinearViewError) in try model.linearWeight(layer.name).contiguous().floats }
        }
        let batches = sample?.batches ?? []
        let tokens = sample?.tokens ?? 0
        context.log.line("""
            prune/oneshot: \(method.rawValue) \(Self.describe(targets)), scope \(params.scope), \(selection.layers.count) of \
            \(selection.candidates.count) block layers\(priorMasks.isEmpty ? "" : ", \(priorMasks.count) already masked (their zeros kept)"); \
            \(sample.map { "calibration: " + $0.describe(unit: subject.sampleUnit) } ?? "no calibration"); \
            backend \(backend.id) with \(context.threads) threads
            """)

        // Per-block sparsity (OWL: from Wanda's metric on the dense model).
        var blockTargets: [Int: SparsityTarget] = [:]
        var owlRatios: [Int: Double] = [:]
        switch targets {
        case .uniform(let target):
            for block in blocks { blockTargets[block.index] = target }
        case .perBlock(let list):
            for block in blocks { blockTargets[block.index] = .unstructured(list[block.index]) }
        case .owl(let mean):
            (blockTargets, owlRatios) = try Self.owlTargets(
                model, batches: batches, selection: selection, originals: originals, mean: mean, params: params, backend: backend)
        }

        var results: [String: LayerResult] = [:]
        let blockOf = Dictionary(blocks.flatMap { block in block.layers.map { ($0.name, block.index) } }, uniquingKeysWith: { first, _ in first })
        func prune(_ layer: LinearLayer, statistics: LayerInputStatistics?) throws -> LayerResult {
            let start = ContinuousClock.now
            let weight = originals[layer.name] ?? []
            let target = blockTargets[blockOf[layer.name] ?? 0] ?? .unstructured(0)
            let options = OneShotPruningOptions(
                blockSize: params.blocksize, dampening: params.percdamp, priorMask: priorMasks[layer.name].map(Self.keep))
            let pruned: PrunedLayer
            do {
                pruned = try OneShotPruning.prune(
                    weight: weight, rows: layer.outFeatures, cols: layer.inFeatures, statistics: statistics, method: method, target: target,
                    options: options)
            } catch {
                throw StageFailure("`\(layer.name)`: \(error.description)")
            }
            let error = statistics.flatMap {
                OneShotStages.ReconstructionError(
                    original: weight, rows: layer.outFeatures, cols: layer.inFeatures, statistics: $0, backend: backend
                ).relative(pruned.weights)
            }
            return LayerResult(
                layer: layer, block: blockOf[layer.name] ?? 0, target: target, pruned: pruned, relativeError: error,
                seconds: OneShotStages.seconds(since: start))
        }

        if global, let fraction = params.sparsity {
            let start = ContinuousClock.now
            let layers = selection.layers.map {
                OneShotPruning.LayerWeight(weight: originals[$0.name] ?? [], rows: $0.outFeatures, cols: $0.inFeatures)
            }
            let pruned: [PrunedLayer]
            do {
                pruned = try OneShotPruning.globalMagnitude(layers: layers, fraction: fraction)
            } catch {
                throw StageFailure(error.description)
            }
            let seconds = OneShotStages.seconds(since: start) / Double(max(pruned.count, 1))
            for (layer, var result) in zip(selection.layers, pruned) {
                if let prior = priorMasks[layer.name].map(Self.keep) {
                    for index in result.mask.indices where !prior[index] { result.mask[index] = false }
                }
                results[layer.name] = LayerResult(
                    layer: layer, block: blockOf[layer.name] ?? 0, target: .unstructured(fraction), pruned: result, relativeError: nil,
                    seconds: seconds)
            }
        } else if calibrated {
            let collector = OneShotStages.StatisticsCollector(backend: backend)
            let selected = Set(selection.names)
            try SequentialCalibration.run(
                &model, batches: batches, select: selection.names, backend: backend,
                observe: { block, inputs in try collector.observe(block, selected: selected, inputs: inputs) },
                compressBlock: { block, layers in
                    var updates: [String: Tensor] = [:]
                    for layer in layers {
                        guard let statistics = collector.statistics(of: layer.name) else {
                            throw StageFailure("no calibration statistics for `\(layer.name)`")
                        }
                        let result = try prune(layer, statistics: statistics)
                        results[layer.name] = result
                        updates[layer.name] = Tensor(shape: [layer.outFeatures, layer.inFeatures], floats: result.pruned.weights)
                    }
                    collector.release(block)
                    context.progress.report(fraction: Double(block.index + 1) / Double(blocks.count), "block \(block.index + 1)/\(blocks.count)")
                    return updates
                })
        } else {
            for layer in selection.layers { results[layer.name] = try prune(layer, statistics: nil) }
        }

        for layer in selection.layers {
            guard let result = results[layer.name] else { throw StageFailure("`\(layer.name)` was not pruned") }
            let mask = try StageFailure.wrapping { () throws(ModelFileError) in
                try WeightMask(shape: [layer.outFeatures, layer.inFeatures], pattern: result.maskPattern, keep: result.pruned.mask)
            }
            try Self.view { () throws(LinearViewError) in
                try model.setLinearWeight(layer.name, to: Tensor(shape: [layer.outFeatures, layer.inFeatures], floats: result.pruned.weights))
                try model.setLinearMask(layer.name, to: mask)
            }
        }
        let seconds = OneShotStages.seconds(since: started)

        let modelDirectory = (context.outputDirectory as NSString).appendingPathComponent("model")
        try subject.save(model, modelDirectory, "prune/oneshot")
        let ordered = selection.layers.compactMap { results[$0.name] }
        let pruned = ordered.reduce(0) { $0 + $1.pruned.prunedCount }
        let total = ordered.reduce(0) { $0 + $1.pruned.mask.count }
        let realised = Double(pruned) / Double(max(total, 1))
        let errors = ordered.compactMap(\.relativeError)
        let meanError = errors.isEmpty ? nil : errors.reduce(0, +) / Double(errors.count)
        var summary: [String: Value] = [
            "method": .string(method.rawValue),
            "pattern": .string(Self.patternName(targets)),
            "scope": .string(params.scope),
            "allocation": .string(params.allocation),
            "target_sparsity": OneShotStages.rounded(Self.meanTarget(ordered)),
            "realised_sparsity": .double(realised),
            "pruned_layers": .int(ordered.count),
            "pruned_weights": .int(pruned),
            "selected_weights": .int(total),
            "relative_error_mean": OneShotStages.rounded(meanError),
            "calibration_samples": .int(sample?.samples ?? 0),
            "calibration_tokens": .int(tokens),
            "kept_prior_masks": .int(ordered.filter { priorMasks[$0.layer.name] != nil }.count),
        ]
        if case .owl = targets {
            summary["block_sparsities"] = .array(blocks.map { OneShotStages.rounded(blockTargets[$0.index]?.fraction) })
            summary["block_outlier_ratios"] = .array(blocks.map { OneShotStages.rounded(owlRatios[$0.index]) })
        }
        let report: Value = .object([
            "stage": .string("prune/oneshot"),
            "summary": .object(summary),
            "calibration": sample?.reportEntry ?? .null,
            "layers": .array(ordered.map(\.reportEntry)),
            "warnings": .array(warnings.map(Value.string)),
        ])
        try QuantizeStages.writeReport(report, context: context)
        for result in ordered {
            context.log.line(String(
                format: "%@: %@ → sparsity %.4f, relative error %@, %.3f s", result.layer.name, result.target.description,
                result.pruned.sparsity, result.relativeError.map { String(format: "%.5f", $0) } ?? "n/a", result.seconds))
        }
        context.log.line(String(format: "realised sparsity %.4f over %d layers in %.2f s", realised, ordered.count, seconds))
        var metrics = summary
        metrics["seconds"] = .double((seconds * 1000).rounded() / 1000)
        metrics["seconds_per_layer"] = OneShotStages.secondsMetric(ordered.map { ($0.layer.name, $0.seconds) })
        metrics["size_bytes"] = .int(OneShotStages.fileSize(modelDirectory))
        metrics["warnings"] = .array(warnings.map(Value.string))
        return StageResult(metrics: metrics, outputs: QuantizeStages.outputs, warnings: warnings)
    }

    /// One pruned layer.
    struct LayerResult {
        var layer: LinearLayer
        var block: Int
        var target: SparsityTarget
        var pruned: PrunedLayer
        var relativeError: Double?
        var seconds: Double

        var maskPattern: SparsityPattern {
            if case .nOfM(let n, let m) = target { return .nOfM(n: n, m: m) }
            return .unstructured
        }

        var reportEntry: Value {
            .object([
                "layer": .string(layer.name),
                "block": .int(block),
                "shape": .array([.int(layer.outFeatures), .int(layer.inFeatures)]),
                "target": .string(target.description),
                "target_sparsity": OneShotStages.rounded(target.fraction),
                "sparsity": .double(pruned.sparsity),
                "relative_error": OneShotStages.rounded(relativeError),
            ])
        }
    }

    static func targets(_ params: Params) throws(StageFailure) -> Targets {
        let given = [params.sparsity != nil, params.pattern != nil, params.layer_sparsity != nil].filter { $0 }.count
        guard given == 1 else { throw StageFailure("give exactly one of `sparsity`, `pattern` and `layer_sparsity`") }
        if let pattern = params.pattern {
            switch parsePattern(pattern) {
            case .failure(let problem): throw StageFailure(problem.message)
            case .success(let (n, m)):
                guard params.allocation == "uniform" else { throw StageFailure("`allocation: owl` needs an unstructured `sparsity`, not `pattern`") }
                return .uniform(.nOfM(n: n, m: m))
            }
        }
        if let list = params.layer_sparsity {
            if let bad = list.first(where: { !($0 >= 0 && $0 < 1) }) { throw StageFailure("every `layer_sparsity` must be in [0, 1), got \(bad)") }
            guard params.allocation == "uniform" else { throw StageFailure("`allocation: owl` needs `sparsity`, not `layer_sparsity`") }
            return .perBlock(list)
        }
        let sparsity = params.sparsity ?? 0
        guard sparsity >= 0, sparsity < 1 else { throw StageFailure("`sparsity` must be in [0, 1), got \(sparsity)") }
        if params.allocation == "owl" {
            guard params.owl_lambda >= 0, params.owl_threshold > 0 else {
                throw StageFailure("`owl_lambda` must be ≥ 0 and `owl_threshold` > 0")
            }
            return .owl(sparsity)
        }
        return .uniform(.unstructured(sparsity))
    }

    /// Block sparsities by OWL: each block's outlier ratio of Wanda's metric
    /// (its selected layers together) on the dense model's calibration inputs.
    static func owlTargets<Model: LinearLayerModel>(
        _ model: Model, batches: [Model.Batch], selection: LinearLayerSelection, originals: [String: [Float]], mean: Double,
        params: Params, backend: any Backend
    ) throws -> (targets: [Int: SparsityTarget], ratios: [Int: Double]) {
        var dense = model
        var squares: [String: [Double]] = [:]
        try SequentialCalibration.run(
            &dense, batches: batches, select: selection.names, backend: backend,
            observe: { _, inputs in
                for (name, x) in inputs {
                    let width = x.shape[1]
                    var sums = squares[name] ?? [Double](repeating: 0, count: width)
                    x.contiguous().withUnsafeFloats { values in
                        for row in 0..<x.shape[0] {
                            for j in 0..<width {
                                let value = Double(values[row * width + j])
                                sums[j] += value * value
                            }
                        }
                    }
                    squares[name] = sums
                }
            },
            compressBlock: { _, _ in [:] })
        var indices: [Int] = []
        var ratios: [Double] = []
        for block in model.linearBlocks {
            let layers = block.layers.filter { selection.names.contains($0.name) }
            guard !layers.isEmpty else { continue }
            var metric: [Double] = []
            for layer in layers {
                let norms = (squares[layer.name] ?? []).map { $0.squareRoot() }
                do {
                    metric += try Wanda.metric(
                        weight: originals[layer.name] ?? [], rows: layer.outFeatures, cols: layer.inFeatures, columnNorms: norms)
                } catch {
                    throw StageFailure("`\(layer.name)`: \(error.description)")
                }
            }
            do {
                ratios.append(try OutlierWeighedSparsity.outlierRatio(metric, threshold: params.owl_threshold))
            } catch {
                throw StageFailure(error.description)
            }
            indices.append(block.index)
        }
        let sparsities: [Double]
        do {
            sparsities = try OutlierWeighedSparsity.layerSparsities(outlierRatios: ratios, target: mean, lambda: params.owl_lambda)
        } catch {
            throw StageFailure(error.description)
        }
        var targets: [Int: SparsityTarget] = [:]
        var byBlock: [Int: Double] = [:]
        for (position, index) in indices.enumerated() {
            targets[index] = .unstructured(sparsities[position])
            byBlock[index] = ratios[position]
        }
        for block in model.linearBlocks where targets[block.index] == nil { targets[block.index] = .unstructured(mean) }
        return (targets, byBlock)
    }

    static func keep(_ mask: WeightMask) -> [Bool] {
        (0..<mask.elementCount).map { mask.isKept($0) }
    }

    static func describe(_ targets: Targets) -> String {
        switch targets {
        case .uniform(let target): target.description
        case .perBlock(let list): "unstructured per block \(list)"
        case .owl(let mean): "unstructured \(mean) (OWL per block)"
        }
    }

    static func patternName(_ targets: Targets) -> String {
        if case .uniform(.nOfM(let n, let m)) = targets { return "\(n):\(m)" }
        return "unstructured"
    }

    /// The weight-averaged target of the selected layers.
    static func meanTarget(_ layers: [LayerResult]) -> Double {
        let total = layers.reduce(0) { $0 + $1.pruned.mask.count }
        let weighted = layers.reduce(0.0) { $0 + $1.target.fraction * Double($1.pruned.mask.count) }
        return total == 0 ? 0 : weighted / Double(total)
    }

    /// Runs a view call, its error as a stage failure.
    static func view<T>(_ body: () throws(LinearViewError) -> T) throws(StageFailure) -> T {
        do {
            return try body()
        } catch {
            throw StageFailure(error.message)
        }
    }
}
