import SqueezeTensor

/// Quality of a classifier on labelled, tokenised examples.
public struct ClassificationScores: Sendable, Hashable {
    public var examples: Int
    public var accuracy: Double
    /// Unweighted mean of per-class F1 over the classes that occur in the
    /// labels or the predictions (scikit-learn's `f1_score(average="macro")`).
    public var macroF1: Double
    /// Mean cross-entropy.
    public var loss: Double
    /// `confusion[label][prediction]` counts.
    public var confusion: [[Int]]

    /// Scores from predictions and mean loss.
    public init(labels: [Int], predictions: [Int], classes: Int, loss: Double) {
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (label, prediction) in zip(labels, predictions) where label < classes && prediction < classes {
            confusion[label][prediction] += 1
        }
        let correct = (0..<classes).reduce(0) { $0 + confusion[$1][$1] }
        var f1Sum = 0.0
        var present = 0
        for c in 0..<classes {
            let truePositives = Double(confusion[c][c])
            let actual = Double(confusion[c].reduce(0, +))
            let predicted = Double((0..<classes).reduce(0) { $0 + confusion[$1][c] })
            guard actual + predicted > 0 else { continue }
            present += 1
            f1Sum += 2 * truePositives / (actual + predicted)
        }
        self.examples = labels.count
        self.accuracy = labels.isEmpty ? 0 : Double(correct) / Double(labels.count)
        self.macroF1 = present == 0 ? 0 : f1Sum / Double(present)
        self.loss = loss
        self.confusion = confusion
    }
}

/// A classifier inference runs: a float `BertModel` or SqueezeCompress's `QuantizedBertModel`.
public protocol SequenceClassifier: Sendable {
    var config: BertConfig { get }
    /// Classification logits `[B, labels]`, without dropout.
    func logits(_ batch: BertBatch, backend: any Backend) throws(BertInputError) -> Tensor
    /// Every parameter with its Hugging Face name (no `bert.` prefix): f32
    /// tensors, and the int8 values of quantized Linear weights.
    var namedParameters: [(name: String, tensor: Tensor)] { get }
}

extension BertModel: SequenceClassifier {
    public var namedParameters: [(name: String, tensor: Tensor)] { Array(zip(weights.names, weights.elements)) }
}

extension SequenceClassifier {
    /// Accuracy, macro-F1 and mean loss of the classifier on `sequences`
    /// (already tokenised, `[CLS] … [SEP]`) with `labels`, in length-sorted
    /// batches of `batchSize` without dropout.
    public func evaluate(
        _ sequences: TokenSequences, labels: [Int], batchSize: Int, padID: Int32, backend: any Backend
    ) throws(BertInputError) -> ClassificationScores {
        precondition(labels.count == sequences.count, "one label per sequence")
        var predictions = [Int](repeating: 0, count: sequences.count)
        var lossSum = 0.0
        let classes = config.labels.count
        for batch in LengthBucketing.batches(sequences, batchSize: batchSize, padID: padID, shuffle: false, seed: 0) {
            let logits = try self.logits(BertBatch(inputIDs: batch.ids, attentionMask: batch.attentionMask), backend: backend)
            let batchLabels = Tensor(shape: [batch.size], int32s: batch.indices.map { Int32(clamping: labels[$0]) })
            lossSum += Double(backend.crossEntropy(logits, labels: batchLabels).loss.scalarValue) * Double(batch.size)
            logits.withUnsafeFloats { values in
                for (row, index) in batch.indices.enumerated() {
                    var best = 0
                    for c in 1..<max(classes, 1) where values[row * classes + c] > values[row * classes + best] { best = c }
                    predictions[index] = best
                }
            }
        }
        return ClassificationScores(
            labels: labels, predictions: predictions, classes: classes,
            loss: sequences.count == 0 ? 0 : lossSum / Double(sequences.count))
    }
}
