import Foundation
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// A float decoder as its family's `…ForCausalLM` (GPT-2 as
/// `GPT2LMHeadModel`, its `Conv1D` weights fused and transposed back): the
/// layout `DecoderModel.save` writes, with every weight dense, so a sparse
/// model's pruned positions are stored zeros that any loader reads.
enum DecoderHFExport {
    static func write(_ model: DecoderModel, into directory: inout ExportDirectory) throws(HFExportError) -> HFCheckpointExport.Written {
        let masks = model.masks
        var dense = model
        try HFCheckpointExport.wrapping { () throws(ModelFileError) in
            for name in masks.keys.sorted() { try dense.setMask(nil, forParameter: name) }
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-hf-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try HFCheckpointExport.wrapping { () throws(ModelFileError) in
            try dense.save(toDirectory: scratch)
            try directory.copy(scratch + "/" + ModelArtifact.weightsFileName, as: ModelArtifact.weightsFileName)
            try directory.write(ModelArtifact.configFileName, model.config.jsonData())
        }
        var details: [String: Value] = [
            "architecture": .string(architecture(model.config.family)),
            "auto_class": .string("AutoModelForCausalLM"),
            "tie_word_embeddings": .bool(model.config.tieWordEmbeddings),
            "parameters": .int(model.parameterCount),
        ]
        if !masks.isEmpty { details["sparsity"] = HFSparsity.details(masks) }
        let guarantee = """
            transformers' \(architecture(model.config.family)) (float32, eval) computes Squeeze's forward on the same weights: \
            logits equal up to float rounding (tested ≤ 1e-4)
            """
        return HFCheckpointExport.Written(sourceKind: masks.isEmpty ? "dense" : "sparse", details: details, guarantee: guarantee)
    }

    static func architecture(_ family: DecoderFamily) -> String {
        switch family {
        case .llama: "LlamaForCausalLM"
        case .mistral: "MistralForCausalLM"
        case .qwen2: "Qwen2ForCausalLM"
        case .gpt2: "GPT2LMHeadModel"
        }
    }
}
