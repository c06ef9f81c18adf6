import Foundation
import SqueezeCompress
import SqueezeEngine
import SqueezeModels
import SqueezeRecipe
import SqueezeYAML

/// `uses: model/select-layers` — a shallower copy of a model artifact that
/// keeps only the listed encoder layers (with the embeddings, pooler and
/// classifier). The same construction as `distill/kd`'s
/// `init: {from: teacher, layers: …}`, so a student fine-tuned without
/// distillation starts from exactly the weights the distilled one starts from.
public struct SelectLayersStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The model to take layers from (`${finetuned.model}`).")
        public static let layers = Parameter("layers", .array(.int), doc: "The encoder layers to keep, 0-based and increasing, e.g. `[0, 2, 4]`.")

        public static let parameters: [any ParameterDeclaration] = [
            model, layers,
        ]

        public var model: String
        public var layers: [Int]

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            layers = try arguments[Self.layers]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "model/select-layers",
        version: 1,
        summary: "Keep only some encoder layers of a BERT model artifact (e.g. every other one), with its embeddings, pooler and classifier.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "model", doc: "The model with only those layers (same vocabulary and tokenizer)."),
        ],
        seedUse: .never,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        guard let layers = with["layers"], let items = layers.items else { return [] }
        guard !items.isEmpty else {
            return [Diagnostic("`layers` is empty", at: layers.location, hint: "list the layers to keep, e.g. `[0, 2, 4]`")]
        }
        var problems: [Diagnostic] = []
        var previous: Int?
        for item in items {
            guard let index = item.scalar.flatMap(Int.init) else { continue }
            if index < 0 {
                problems.append(Diagnostic("layer numbers start at 0, got \(index)", at: item.location))
            } else if let previous, index == previous {
                problems.append(Diagnostic("layer \(index) is listed twice in `layers`", at: item.location))
            } else if let previous, index < previous {
                problems.append(Diagnostic("`layers` must be in increasing order: \(index) after \(previous)", at: item.location))
            }
            previous = index
        }
        return problems
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let source = try LoadedClassifier(directory: params.model, seed: 0)
        let selected: BertModel
        do {
            selected = try source.model.selectingLayers(params.layers)
        } catch {
            throw StageFailure(error.message)
        }
        try LoadedClassifier.save(selected, from: source.artifact, to: context.outputDirectory, source: "model/select-layers")
        context.log.line("kept layers \(params.layers) of \(source.model.config.numHiddenLayers): \(selected.parameterCount) of \(source.model.parameterCount) parameters")
        return StageResult(
            metrics: [
                "layers": .int(selected.config.numHiddenLayers),
                "parameters": .int(selected.parameterCount),
                "source_parameters": .int(source.model.parameterCount),
            ],
            outputs: ["model": "."])
    }
}
