import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeTensor
import SqueezeYAML

/// `uses: quantize/weight-only` — weight-only quantization of a float
/// classifier: every selected Linear's weight rounded to int4 or int8 codes
/// with one scale (and, asymmetric, one zero point) per group of inputs;
/// activations stay f32 and the product dequantizes the codes on the fly.
/// Needs no data. Outputs the quantized model artifact and a report of the
/// weights' SQNR per layer.
public struct QuantizeWeightOnlyStage: Stage {
    public struct WeightParams: Decodable, Sendable {
        public var bits: Int?
        public var group_size: Int?
        public var symmetric: Bool?
    }

    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The float classifier to quantize (`${finetuned.model}`); an already quantized model is an error.")
        public static let weights = Parameter("weights", .mapping(WeightParams.self), doc: "`{bits: 4, group_size: 128, symmetric: true}`: `bits` (required) 4 or 8; one scale per `group_size` consecutive inputs of an output row (it must divide the input width of every quantized module); `symmetric: false` adds a zero point per group and uses the whole signed code range.")
        public static let skip = Parameter("skip", .array(.string), default: [], doc: "Linear modules kept in f32, by pattern: `*` matches any characters, `?` one; a pattern matches a run of whole dot-separated name components (`classifier`, `pooler`, `layer.0.*`, `attention.output.dense`). A pattern matching nothing is a warning.")

        public static let parameters: [any ParameterDeclaration] = [
            model, weights, skip,
        ]

        public var model: String
        public var weights: WeightParams
        public var skip: [String]

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            weights = try arguments[Self.weights]
            skip = try arguments[Self.skip]
        }
    }

    static let weightKeys = ["bits", "group_size", "symmetric"]

    public static let descriptor = StageTypeDescriptor(
        type: "quantize/weight-only",
        version: 1,
        summary: "Weight-only quantization: int4 or int8 weights per group (round to nearest), f32 activations, dequantized on the fly; no calibration data.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The quantized model artifact (weight-only Linears; see docs/quantized-models.md)."),
            OutputSpec("report", kind: "file", doc: "report.json: per-layer weight SQNR, skipped modules, summary."),
        ],
        usesTensorBackend: false,
        seedUse: .never,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        var problems: [Diagnostic] = []
        if let node = with["weights"] {
            problems += QuantizeStages.unknownKeys(node, parameter: "weights", known: weightKeys)
            if node.entries != nil {
                if node["bits"] == nil {
                    problems.append(Diagnostic("`weights.bits` is required: 4 or 8", at: node.location, hint: "e.g. `weights: {bits: 4, group_size: 128}`"))
                }
                if let (text, location) = QuantizeStages.literal(node, "bits"), !["4", "8"].contains(text) {
                    problems.append(Diagnostic("`weights.bits` must be 4 or 8, got `\(text)`", at: location, hint: "weight-only codes are int4 or int8"))
                }
                problems += QuantizeStages.checkInteger(node, "group_size", parameter: "weights", minimum: 1)
                problems += QuantizeStages.checkBool(node, "symmetric", parameter: "weights")
            }
        }
        return problems + QuantizeStages.checkSkip(with)
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        guard let bits = params.weights.bits else { throw StageFailure("`weights.bits` is required: 4 or 8") }
        guard PackedGroupWeights.supportedBits.contains(bits) else { throw StageFailure("`weights.bits` must be 4 or 8, got \(bits)") }
        let options = WeightOnlyOptions(
            bits: bits, groupSize: params.weights.group_size ?? WeightOnlyOptions.defaultGroupSize,
            symmetric: params.weights.symmetric ?? true, skip: params.skip)
        let loaded = try LoadedClassifier(directory: params.model, seed: 0)
        let selection = ModuleSelection(model: loaded.model, skip: params.skip)
        try QuantizeStages.requireModules(selection)
        do {
            try WeightOnlyQuantizer.validate(loaded.model, options: options)
        } catch {
            throw StageFailure(error.message)
        }
        let warnings = try QuantizeStages.unmatchedPatternWarnings(selection) + QuantizeStages.headWarnings(loaded.artifact)
        for warning in warnings { context.log.line("warning: " + warning) }
        context.log.line("""
            quantize/weight-only: \(selection.quantized.count) Linear modules to int\(bits) in groups of \(options.groupSize) \
            (\(options.symmetric ? "symmetric" : "asymmetric")), \(selection.skipped.count) kept f32; activations f32
            """)
        let quantized: QuantizedBertModel
        do {
            quantized = try WeightOnlyQuantizer.quantize(loaded.model, options: options)
        } catch {
            throw StageFailure(error.message)
        }
        let report = WeightOnlyQuantizer.weightReport(loaded.model, quantized, skip: params.skip)
        let metrics = try QuantizeStages.publish(
            quantized, from: loaded.artifact, report: report, warnings: warnings, source: "quantize/weight-only", context: context)
        QuantizeStages.logWeightSQNR(report, context: context)
        return StageResult(metrics: metrics, outputs: QuantizeStages.outputs)
    }
}
