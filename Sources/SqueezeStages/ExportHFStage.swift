import Foundation
import SqueezeEngine
import SqueezeExport
import SqueezeModels
import SqueezeRecipe
import SqueezeSupport

/// `uses: export/hf` — a model artifact as a Hugging Face checkpoint
/// directory (`config.json`, `model.safetensors`, tokenizer files and
/// `squeeze-export.json`) that `transformers` loads with
/// `AutoModelForSequenceClassification` / `AutoModelForCausalLM` and that
/// computes what Squeeze computes: dense and sparse models as they are,
/// CoFi-pruned BERT zero-padded to one layer shape, weight-only models as
/// compressed-tensors. What the format cannot express (W8A8, mean pooling,
/// a pruned hidden size that is not a whole number of heads, weight-only
/// GPT-2) is refused before anything is written (docs/export-hf.md).
public struct ExportHFStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The model artifact to export (`${finetuned.model}`, `${pruned.model}`, `${gptq.model}`): a BERT classifier (dense, sparse, CoFi-pruned, weight-only) or a decoder (dense, sparse, weight-only). W8A8 models are refused (use `export/onnx`).")

        public static let destination = ExportStages.destination

        public static let parameters: [any ParameterDeclaration] = [model, destination]

        public var model: String
        /// Published by the engine (`ExportStages.publication`), not by `run`.
        public var destination: String?

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            destination = try arguments[Self.destination]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "export/hf",
        version: 1,
        summary: "Export to a Hugging Face checkpoint directory that transformers loads (compressed-tensors for weight-only models), with the tokenizer and squeeze-export.json.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "directory", doc: "The checkpoint directory: config.json, model.safetensors, the tokenizer files, tokenizer_config.json and squeeze-export.json (docs/export-hf.md)."),
        ],
        usesTensorBackend: false,
        seedUse: .never,
        publication: ExportStages.publication
    )

    public init() {}

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        let artifact: ModelArtifact
        do {
            artifact = try ModelArtifact(directory: params.model)
        } catch {
            throw StageFailure("cannot read the model: \(error.description)", parameter: "model")
        }
        guard let sourceDigest = context.inputDigests[params.model] else {
            throw StageFailure("the store has no digest for the model `\(params.model)`; pass a stage output (`${stage.model}`)", parameter: "model")
        }
        let output = context.outputDirectory + "/model"
        let manifest: ExportManifest
        do {
            manifest = try HFCheckpointExport.export(artifact, to: output, sourceDigest: sourceDigest)
        } catch {
            throw StageFailure("cannot export to Hugging Face: \(error.description)", parameter: "model")
        }
        let bytes = manifest.files.keys.reduce(0) { total, name in
            total + (((try? FileManager.default.attributesOfItem(atPath: output + "/" + name))?[.size] as? NSNumber)?.intValue ?? 0)
        }
        context.log.line("export/hf: \(manifest.source.architecture) \(manifest.source.kind) → \(manifest.files.count) files, \(bytes) bytes")
        return StageResult(
            metrics: [
                "source_kind": .string(manifest.source.kind),
                "files": .int(manifest.files.count),
                "size_bytes": .int(bytes),
            ],
            outputs: ["model": "model"])
    }
}
