import Foundation
import SqueezeEngine
import SqueezeModels
import SqueezeSupport
import SqueezeTensor

/// What a stage that trains a decoder (`train/causal-lm`, `distill/kd`)
/// reads from a `data/text` dataset: the training split cut into blocks of
/// the dataset's `block_size`, and the evaluation split's stream (empty when
/// the dataset has no such split), checked against the model first.
struct LanguageModelData {
    /// `[N, block_size]` i32.
    var blocks: Tensor
    var blockSize: Int
    var evalTokens: [Int32]

    var blockCount: Int { blocks.shape[0] }

    /// The `data/text` dataset in `directory` (errors at `data`).
    static func dataset(_ directory: String) throws(StageFailure) -> TextTokenDataset {
        try StageFailure.wrapping("cannot read the dataset: ", parameter: "data") { () throws(ModelFileError) in
            try TextTokenDataset(directory: directory)
        }
    }

    /// The tokenizer at `path` must be the one the dataset was made with.
    static func checkTokenizer(_ path: String, dataset: TextTokenDataset, parameter: String) throws(StageFailure) {
        let digest = try StageFailure.wrapping("cannot read the tokenizer: ", parameter: parameter) { () throws(ModelFileError) in
            try ModelFiles.sha256(of: path)
        }
        guard digest == dataset.manifest.tokenizerSHA256 else {
            throw StageFailure(
                "the dataset was tokenized with another tokenizer (sha256 \(dataset.manifest.tokenizerSHA256.prefix(12))…, this one \(digest.prefix(12))…); make the dataset with this model's tokenizer",
                parameter: parameter)
        }
    }

    /// The dataset's token ids must index the model's embedding (errors at `data`).
    static func checkVocabulary(of dataset: TextTokenDataset, fits config: DecoderConfig) throws(StageFailure) {
        guard dataset.vocabularySize <= config.vocabSize else {
            throw StageFailure(
                "the dataset's tokenizer has \(dataset.vocabularySize) tokens, more than the model's vocabulary of \(config.vocabSize)",
                parameter: "data")
        }
    }

    /// Whether `directory` holds a `data/text` token dataset (its manifest's
    /// format says so), to tell it from a `data/text-classification` one.
    static func isTokenDataset(_ directory: String) -> Bool {
        let path = (directory as NSString).appendingPathComponent(TextTokenDataset.manifestFileName)
        guard let data = FileManager.default.contents(atPath: path), case .object(let fields)? = try? Value(json: data) else { return false }
        return fields["format"] == .string(TextTokenDataset.format)
    }

    /// The splits of `dataset` for a model of `config`: its tokens must fit
    /// the vocabulary and a block the context.
    init(_ dataset: TextTokenDataset, model config: DecoderConfig, trainSplit: String, evalSplit: String) throws(StageFailure) {
        try Self.checkVocabulary(of: dataset, fits: config)
        let blockSize = dataset.blockSize
        guard blockSize <= config.maximumSequenceLength else {
            throw StageFailure(
                "the dataset's block_size \(blockSize) is longer than the model's context of \(config.maximumSequenceLength) tokens",
                parameter: "data")
        }
        guard dataset.splits.contains(trainSplit) else {
            throw StageFailure("the dataset has no `\(trainSplit)` split (it has \(dataset.splits.joined(separator: ", ")))", parameter: "train_split")
        }
        blocks = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.blocks(trainSplit, length: blockSize) }
        guard blocks.shape[0] > 0 else { throw StageFailure("the `\(trainSplit)` split has fewer tokens than one block of \(blockSize)") }
        self.blockSize = blockSize
        evalTokens = dataset.splits.contains(evalSplit)
            ? try StageFailure.wrapping { () throws(ModelFileError) in try dataset.tokens(evalSplit) } : []
    }

    /// The update loop over the blocks, each epoch shuffled by its
    /// `RandomStream.batchOrder` bits of `orderSeed` into batches of `length.batchSize`.
    func loop(length: TrainingLength, orderSeed: UInt64, logEvery: Int, evalEvery: Int, checkpointEvery: CheckpointInterval?) -> TrainingLoop<Tensor> {
        let (blocks, batchSize) = (blocks, length.batchSize)
        return TrainingLoop<Tensor>(
            batches: { epoch in Self.batches(blocks, batchSize: batchSize, seed: RandomStream.batchOrder.bits(of: orderSeed, index: UInt64(epoch))) },
            examples: blockCount, length: length, logEvery: logEvery, evalEvery: evalEvery, checkpointEvery: checkpointEvery)
    }

    /// The perplexity of the evaluation stream in windows of `block_size`.
    func evaluation(split: String, batchSize: Int, maxWindows: Int?, backend: any Backend) -> PerplexityEvaluation {
        PerplexityEvaluation(
            split: split, tokens: evalTokens,
            settings: PerplexityProtocol(sequenceLength: blockSize, batchSize: batchSize, maxWindows: maxWindows), backend: backend)
    }

    /// `blocks` `[N, T]` shuffled by `seed` into batches of `batchSize` (the last may be smaller).
    static func batches(_ blocks: Tensor, batchSize: Int, seed: UInt64) -> [Tensor] {
        let (count, length) = (blocks.shape[0], blocks.shape[1])
        var order = Array(0..<count)
        var generator = SeededGenerator(seed: seed)
        order.shuffle(using: &generator)
        let ids = blocks.int32s
        return stride(from: 0, to: count, by: batchSize).map { first in
            let rows = order[first..<min(first + batchSize, count)]
            return Tensor(shape: [rows.count, length], int32s: rows.flatMap { ids[($0 * length)..<(($0 + 1) * length)] })
        }
    }
}

/// Validation perplexity during training: lower is better, ties by the lower mean NLL.
struct PerplexityEvaluation: ModelEvaluation {
    var split: String
    var primaryName: String { "perplexity" }
    var tokens: [Int32]
    var settings: PerplexityProtocol
    var backend: any Backend

    func score(of model: DecoderModel) throws -> EvaluationScore? {
        guard tokens.count >= settings.sequenceLength else { return nil }
        let result = try model.perplexity(of: tokens, protocol: settings, backend: backend)
        return EvaluationScore(
            primary: result.perplexity, higherIsBetter: false, loss: result.meanNLL,
            metrics: [("perplexity", result.perplexity), ("loss", result.meanNLL)],
            logText: String(format: "perplexity %.3f loss %.4f (%d tokens)", result.perplexity, result.meanNLL, result.predictedTokens))
    }
}
