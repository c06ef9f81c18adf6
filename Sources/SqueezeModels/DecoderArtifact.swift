import Foundation
import SqueezeSupport
import SqueezeTensor

extension ModelArtifact {
    /// Checks a decoder checkpoint directory before any work: the config is a
    /// supported decoder, `tokenizer.json` loads and its ids fit `vocab_size`,
    /// the weights (one file or shards) hold every parameter the config
    /// implies with the right shapes (f32, f16 or bf16).
    static func validateDecoderFiles(in directory: String) throws(ModelFileError) -> Summary {
        let config = try DecoderConfig(contentsOfFile: join(directory, configFileName))
        let tokenizerPath = join(directory, tokenizerFileName)
        guard ModelFiles.isRegularFile(tokenizerPath) else {
            throw ModelFileError(file: tokenizerPath, "missing; a decoder model directory needs \(decoderRequiredFiles.joined(separator: ", "))")
        }
        let tokenizer = try BPETokenizer(contentsOfFile: tokenizerPath)
        try DecoderModel.checkTokenizer(tokenizer, config: config, file: tokenizerPath)
        let model = try DecoderModel(config: config, checkpoint: try CheckpointTensors(directory: directory))
        return Summary(
            architecture: config.family.rawValue, parameterCount: model.parameterCount, vocabularySize: tokenizer.count,
            files: decoderRequiredFiles)
    }

    /// Imports the decoder checkpoint in `source` into the artifact directory
    /// `directory`: the weights are read (shards joined, f16/bf16 widened to
    /// f32) and written as one f32 `model.safetensors` in the family's layout,
    /// with `config.json` rewritten and `tokenizer.json` copied.
    public static func importDecoder(from source: String, to directory: String, provenance: String) throws(ModelFileError) -> ModelArtifact {
        _ = try validateDecoderFiles(in: source)
        let model = try DecoderModel(directory: source)
        try model.save(toDirectory: directory)
        _ = try ModelFiles.copy(join(source, tokenizerFileName), to: join(directory, tokenizerFileName))
        return try seal(directory: directory, architecture: model.config.family.rawValue, source: provenance)
    }

    /// The decoder model of a decoder artifact.
    public func decoderModel() throws(ModelFileError) -> DecoderModel {
        guard isDecoder else {
            throw ModelFileError(file: directory, "is a \(manifest.architecture) model, not a decoder (\(DecoderFamily.supportedList))")
        }
        return try DecoderModel(directory: directory)
    }

    /// The BPE tokenizer of a decoder artifact (`tokenizer.json`).
    public func bpeTokenizer() throws(ModelFileError) -> BPETokenizer {
        guard let tokenizerPath else { throw ModelFileError(file: directory, "has no \(Self.tokenizerFileName)") }
        return try BPETokenizer(contentsOfFile: tokenizerPath)
    }
}

extension DecoderModel {
    /// A tokenizer whose ids reach past the embedding table would index out
    /// of it: refused. A smaller tokenizer is fine (vocabularies are often
    /// padded to a multiple of 64).
    public static func checkTokenizer(_ tokenizer: BPETokenizer, config: DecoderConfig, file: String) throws(ModelFileError) {
        guard tokenizer.count <= config.vocabSize else {
            throw ModelFileError(
                file: file, "the tokenizer has \(tokenizer.count) tokens, more than the model's vocab_size \(config.vocabSize)")
        }
    }
}
