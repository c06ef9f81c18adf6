import SqueezeEngine
import SqueezeModels
import SqueezeTensor

/// The splits a training stage reads from a `data/text-classification`
/// artifact: the training split (never empty) and the evaluation split
/// (empty when the dataset has no such split).
struct TrainingData {
    var dataset: TextClassificationDataset
    var train: [TextClassificationDataset.Example]
    var eval: [TextClassificationDataset.Example]

    init(directory: String, trainSplit: String, evalSplit: String) throws(StageFailure) {
        let dataset = try StageFailure.wrapping("cannot read the dataset: ") { () throws(ModelFileError) in
            try TextClassificationDataset(directory: directory)
        }
        let train = try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(trainSplit) }
        guard !train.isEmpty else { throw StageFailure("the `\(trainSplit)` split is empty") }
        self.dataset = dataset
        self.train = train
        eval = dataset.splitNames.contains(evalSplit)
            ? try StageFailure.wrapping { () throws(ModelFileError) in try dataset.split(evalSplit) } : []
    }

    /// Both splits tokenized, with their labels.
    func encode(with classifier: LoadedClassifier, maxLength: Int, context: StageContext) -> EncodedTrainingData {
        context.progress.report(StageProgress(message: "tokenizing \(train.count) examples"))
        return EncodedTrainingData(
            train: classifier.encode(train.map(\.text), maxLength: maxLength), trainLabels: train.map(\.label),
            eval: classifier.encode(eval.map(\.text), maxLength: maxLength), evalLabels: eval.map(\.label))
    }
}

extension LoadedClassifier {
    /// The teacher of a distilling stage (`task`: what the stage does with
    /// it): a classifier whose labels are the dataset's.
    init(teacher directory: String, of dataset: TextClassificationDataset, task: String) throws(StageFailure) {
        self = try LoadedClassifier(directory: directory, seed: 0)
        guard try DistillStage.hasClassifier(artifact) else {
            throw StageFailure("the teacher has no classifier head; fine-tune it on this dataset first (`train/finetune`)")
        }
        guard model.config.labels == dataset.labels else {
            throw StageFailure("""
                the teacher's labels \(model.config.labels) differ from the dataset's \(dataset.labels); \
                \(task) a teacher fine-tuned on this dataset
                """)
        }
    }
}

/// The training and evaluation splits tokenized, with their labels.
struct EncodedTrainingData {
    var train: TokenSequences
    var trainLabels: [Int]
    var eval: TokenSequences
    var evalLabels: [Int]
}

/// What a classifier trains on in one update: padded token ids and the examples' labels.
struct ClassificationBatch {
    var tokens: TokenBatch
    /// i32 `[B]`, the labels of `tokens.indices`.
    var labels: Tensor

    /// The token ids and attention mask as a BERT model reads them.
    var bert: BertBatch { BertBatch(inputIDs: tokens.ids, attentionMask: tokens.attentionMask) }
}

extension TrainingLoop where Batch == ClassificationBatch {
    /// The loop over `sequences` with their `labels`: each epoch shuffled by
    /// `orderSeed` (the epoch's `RandomStream.batchOrder` bits), grouped by
    /// length (`batching` `bucketed`) or drawn uniformly (`random`).
    init(
        sequences: TokenSequences, labels: [Int], padID: Int32, length: TrainingLength, orderSeed: UInt64, batching: String,
        logEvery: Int, evalEvery: Int
    ) {
        let batchSize = length.batchSize
        let poolBatches = batching == "random" ? 1 : LengthBucketing.defaultPoolBatches
        self.init(
            batches: { epoch in
                LengthBucketing.batches(
                    sequences, batchSize: batchSize, padID: padID, shuffle: true,
                    seed: RandomStream.batchOrder.bits(of: orderSeed, index: UInt64(epoch)), poolBatches: poolBatches
                ).map { batch in
                    ClassificationBatch(tokens: batch, labels: Tensor(shape: [batch.size], int32s: batch.indices.map { Int32(labels[$0]) }))
                }
            },
            examples: sequences.count, length: length, logEvery: logEvery, evalEvery: evalEvery)
    }
}

/// A classifier scored on the evaluation split, tokenized, in the training
/// batches: accuracy first (ties by the lower loss), recorded as
/// `<split>_accuracy`, `<split>_macro_f1` and `<split>_loss`.
struct ClassificationEvaluation: ModelEvaluation {
    var split: String
    var sequences: TokenSequences
    var labels: [Int]
    var batchSize: Int
    var padID: Int32
    var backend: any Backend

    var primaryName: String { "accuracy" }

    /// `model`'s scores on the split; `nil` when the dataset has no such split.
    func scores(of model: BertModel) throws -> ClassificationScores? {
        guard sequences.count > 0 else { return nil }
        return try model.evaluate(sequences, labels: labels, batchSize: batchSize, padID: padID, backend: backend)
    }

    func score(of model: BertModel) throws -> EvaluationScore? {
        try scores(of: model).map(Self.score)
    }

    /// Classification scores as model selection compares and records them.
    static func score(_ scores: ClassificationScores) -> EvaluationScore {
        EvaluationScore(
            primary: scores.accuracy, higherIsBetter: true, loss: scores.loss,
            metrics: [("accuracy", scores.accuracy), ("macro_f1", scores.macroF1), ("loss", scores.loss)],
            logText: String(format: "accuracy %.4f macro-F1 %.4f loss %.4f", scores.accuracy, scores.macroF1, scores.loss))
    }
}

extension TrainingOptions {
    /// The training and evaluation splits of the dataset in `directory`.
    func data(in directory: String) throws(StageFailure) -> TrainingData {
        try TrainingData(directory: directory, trainSplit: trainSplit, evalSplit: evalSplit)
    }

    /// The update loop over the training split of `encoded`, its batch order drawn from `orderSeed`.
    func loop(over encoded: EncodedTrainingData, padID: Int32, length: TrainingLength, orderSeed: UInt64) -> TrainingLoop<ClassificationBatch> {
        var loop = TrainingLoop(
            sequences: encoded.train, labels: encoded.trainLabels, padID: padID, length: length, orderSeed: orderSeed,
            batching: batching, logEvery: logEvery, evalEvery: evalEvery)
        loop.checkpointEvery = checkpointEvery
        return loop
    }

    /// The evaluation split of `encoded`, scored in the training batches of `length`.
    func evaluation(of encoded: EncodedTrainingData, padID: Int32, length: TrainingLength, backend: any Backend) -> ClassificationEvaluation {
        ClassificationEvaluation(
            split: evalSplit, sequences: encoded.eval, labels: encoded.evalLabels, batchSize: length.batchSize, padID: padID,
            backend: backend)
    }
}
