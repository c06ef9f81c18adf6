import Foundation
import SqueezeEngine
import SqueezeExport
import SqueezeModels
import SqueezeRecipe
import SqueezeYAML

/// `uses: export/onnx` — an ONNX model of a model artifact, for ONNX Runtime
/// (and TensorRT / OpenVINO through ONNX): `model.onnx` with dynamic batch
/// and sequence axes, the tokenizer files and `config.json` beside it, and
/// `squeeze-export.json` recording the source artifact's digest, the files'
/// SHA-256 and the exactness the export guarantees (docs/export.md). Written
/// by squeeze itself, no Python.
public struct ExportONNXStage: Stage {
    public struct Params: StageParameters {
        public static let model = Parameter("model", .artifact("model"), doc: "The model artifact to export (`${stage.model}`): a float BERT classifier — dense, sparse or CoFi-compacted — or a decoder language model (Llama, Mistral, Qwen2, GPT-2; float, sparse, or weight-only int4/int8 at `opset: 21`). An artifact kind the export cannot express is an error naming the kind.")
        public static let opset = Parameter("opset", .int, default: ONNXOpset.default, doc: "The ONNX opset of the default domain, \(ONNXOpset.minimum)…\(ONNXOpset.maximum): \(ONNXOpset.minimum) is the first with `LayerNormalization`; the graph is the same at every opset.")
        public static let kvCache = Parameter("kv_cache", .bool, default: true, doc: "Decoder language models only: whether the graph takes and returns the KV cache (`past_key_values`/`present`) for step-by-step generation. BERT encoders have no cache; the value does not change their export.")

        public static let destination = ExportStages.destination

        public static let parameters: [any ParameterDeclaration] = [
            model, opset, kvCache, destination,
        ]

        public var model: String
        public var opset: Int
        public var kvCache: Bool
        /// Published by the engine (`ExportStages.publication`), not by `run`.
        public var destination: String?

        public init(_ arguments: StageArguments) throws {
            model = try arguments[Self.model]
            opset = try arguments[Self.opset]
            kvCache = try arguments[Self.kvCache]
            destination = try arguments[Self.destination]
        }
    }

    public static let descriptor = StageTypeDescriptor(
        type: "export/onnx",
        // 2: the float BERT graph is BertONNXGraph's (other node names and order, the same values).
        version: 2,
        summary: "Export a model artifact to ONNX (model.onnx with dynamic batch and sequence axes, tokenizer files, squeeze-export.json) for ONNX Runtime.",
        parameters: Params.specs,
        outputs: [
            OutputSpec("model", kind: "directory", doc: "The export: model.onnx, the tokenizer files (vocab.txt, tokenizer.json), config.json and squeeze-export.json (source digest, file hashes, opset, guarantee)."),
        ],
        usesTensorBackend: false,
        seedUse: .never,
        publication: ExportStages.publication,
        check: checkParams
    )

    public init() {}

    static func checkParams(_ with: YAMLNode) -> [Diagnostic] {
        guard let node = with[Params.opset.spec.name], let opset = node.scalar.flatMap(Int.init), !ONNXOpset.supported.contains(opset) else {
            return []
        }
        return [Diagnostic(Self.opsetProblem(opset), at: node.location, hint: "use `opset: \(ONNXOpset.default)` (the default) or up to \(ONNXOpset.maximum)")]
    }

    static func opsetProblem(_ opset: Int) -> String {
        "`opset` must be \(ONNXOpset.minimum)…\(ONNXOpset.maximum), got \(opset): the export needs opset \(ONNXOpset.minimum) (LayerNormalization) and is written up to \(ONNXOpset.maximum)"
    }

    public func run(_ context: StageContext, _ params: Params) async throws -> StageResult {
        guard ONNXOpset.supported.contains(params.opset) else { throw StageFailure(Self.opsetProblem(params.opset), parameter: "opset") }
        guard let digest = context.inputDigests[params.model] else {
            throw StageFailure("the store has no digest for the model `\(params.model)`; pass a stage output (`${stage.model}`)", parameter: "model")
        }
        let started = Date()
        let summary = try StageFailure.wrapping("cannot export the model: ", parameter: "model") { () throws(ModelFileError) in
            try ONNXExport.export(
                artifactDirectory: params.model, to: context.outputDirectory,
                options: ONNXExport.Options(opset: params.opset, kvCache: params.kvCache, sourceDigest: digest))
        }
        let seconds = Date().timeIntervalSince(started)
        context.log.line("""
            export/onnx: \(summary.kind.phrase) → \(ONNXExport.modelFileName), opset \(summary.opset), \(summary.nodeCount) nodes, \
            \(summary.onnxBytes) bytes, files \(summary.files.keys.sorted().joined(separator: ", ")) (\(String(format: "%.2f", seconds)) s)
            """)
        return StageResult(
            metrics: [
                "kind": .string(summary.kind.rawValue),
                "opset": .int(summary.opset),
                "onnx_bytes": .int(summary.onnxBytes),
                "onnx_nodes": .int(summary.nodeCount),
            ],
            outputs: ["model": "."])
    }
}
