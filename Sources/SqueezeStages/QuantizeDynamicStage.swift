import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeTensor
import SqueezeYAML

/// `uses: quantize/dynamic` — dynamic W8A8 quantization of a float
/// classifier: int8 weights (symmetric per output row), activations
/// quantized to u8 with the range of each batch (per tensor or per token)
/// measured at run time. Needs no data. Outputs the quantized model artifact
/// and a report of the weights' SQNR per layer.
public struct QuantizeDynamicStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The float classifier to quantize (`${finetuned.model}`); an already quantized model is an error.")
        public static let weights = Parameter("weights", .optional(.mapping(QuantizationSchemeParams.self)), doc: "`{bits: 8, granularity: per_channel, symmetric: true}`: int8 weights, symmetric, one scale per output row (`per_channel`) or per matrix (`per_tensor`). 4-bit and per-group weights are weight-only quantization (`quantize/weight-only`), not W8A8.")
        public static let activations = Parameter("activations", .optional(.mapping(QuantizationSchemeParams.self)), doc: "`{bits: 8, granularity: per_row, symmetric: false}`: u8 activations whose range is measured on every batch, per token (`per_row`) or over the whole input (`per_tensor`); `symmetric: true` centres each range on 0.")
        public static let skip = Parameter("skip", .array(.string), default: [], doc: "Linear modules kept in f32, by pattern: `*` matches any characters, `?` one; a pattern matches a run of whole dot-separated name components (`classifier`, `pooler`, `layer.0.*`, `attention.output.dense`). A pattern matching nothing is a warning.")

        public static let parameters: [any ParameterDeclaration] = [
            model, weights, activations, skip,
        ]

        public var model: String
        public var weights: QuantizationSchemeParams?
        public var activations: QuantizationSchemeParams?
        public var skip: [String]

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            weights = try arguments[Self.weights]
            activations = try arguments[Self.activations]
            skip = try arguments[Self.skip]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "quantize/dynamic",
        version: 1,
        summary: "Dynamic W8A8 quantization: int8 weights per channel, activation ranges measured per batch at run time; no calibration data.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The quantized model artifact (int8 Linears; see docs/quantized-models.md)."),
            OutputSpec("report", kind: "file", doc: "report.json: per-layer weight SQNR, skipped modules, summary."),
        ],
        usesTensorBackend: false,
        seedUse: .never,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        QuantizeStages.checkWeights(with)
            + QuantizeStages.checkActivations(
                with, granularities: ["per_row", "per_tensor"], otherwise: "use `per_row` (one range per token) or `per_tensor`")
            + QuantizeStages.checkSkip(with)
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let loaded = try LoadedClassifier(directory: params.model, seed: 0)
        let options = try QuantizeStages.options(
            weights: params.weights, activations: params.activations, skip: params.skip, defaultActivationGranularity: "per_row")
        let selection = ModuleSelection(model: loaded.model, skip: params.skip)
        try QuantizeStages.requireModules(selection)
        let warnings = try QuantizeStages.unmatchedPatternWarnings(selection) + QuantizeStages.headWarnings(loaded.artifact)
        for warning in warnings { context.log.line("warning: " + warning) }
        context.log.line("""
            quantize/dynamic: \(selection.quantized.count) Linear modules to int8, \(selection.skipped.count) kept f32; weights \
            \(options.weightGranularity.rawValue) ±\(options.weightLimit), activations u8 \(options.activationCodes) \
            \(options.activationGranularity.rawValue) \(options.activationSymmetric ? "symmetric" : "asymmetric"), ranges per batch
            """)
        let quantized: QuantizedBertModel
        do {
            quantized = try W8A8Quantizer.quantizeDynamic(loaded.model, options: options)
        } catch {
            throw StageFailure(error.message)
        }
        let report = W8A8Quantizer.weightReport(loaded.model, quantized, skip: params.skip)
        let metrics = try QuantizeStages.publish(
            quantized, from: loaded.artifact, report: report, warnings: warnings, source: "quantize/dynamic", context: context)
        QuantizeStages.logWeightSQNR(report, context: context)
        return StageResult(metrics: metrics, outputs: QuantizeStages.outputs)
    }
}
