import Foundation
import SqueezeTensor

/// A language model's perplexity on a token stream.
public struct PerplexityResult: Sendable, Hashable {
    /// Mean negative log-likelihood (nats) per predicted token.
    public var meanNLL: Double
    /// `exp(meanNLL)`.
    public var perplexity: Double { Foundation.exp(meanNLL) }
    /// Tokens predicted (each counted once).
    public var predictedTokens: Int
    /// Windows the stream was cut into.
    public var windows: Int
    /// Tokens run through the model (with the sliding windows' overlaps).
    public var processedTokens: Int
    public var seconds: Double
}

/// How a stream is cut into windows for perplexity.
public struct PerplexityProtocol: Sendable, Hashable {
    /// Tokens per window.
    public var sequenceLength: Int
    /// Start of one window to the next; `nil` (or `sequenceLength`) is the
    /// GPTQ/SparseGPT protocol: `⌊N / seq_len⌋` non-overlapping windows, the
    /// tail dropped, every position but each window's first predicted. A
    /// smaller stride is Hugging Face's sliding window: every window
    /// predicts only the tokens the previous one did not, with up to
    /// `seq_len − stride` tokens of context before them.
    public var stride: Int?
    /// Windows per forward pass (non-overlapping protocol).
    public var batchSize: Int
    /// Score only the first windows (a quick estimate); nil: all.
    public var maxWindows: Int?

    public init(sequenceLength: Int, stride: Int? = nil, batchSize: Int = 1, maxWindows: Int? = nil) {
        self.sequenceLength = sequenceLength
        self.stride = stride
        self.batchSize = batchSize
        self.maxWindows = maxWindows
    }

    var slides: Bool { stride.map { $0 < sequenceLength } ?? false }
}

extension DecoderModel {
    /// The perplexity of `tokens` under `protocol` (see `DecoderInference.perplexity`).
    public func perplexity(
        of tokens: [Int32], protocol settings: PerplexityProtocol, backend: any Backend,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws(DecoderInputError) -> PerplexityResult {
        try DecoderInference.perplexity(
            config: config, of: tokens, protocol: settings, forward: forward(backend: backend), progress: progress)
    }
}

extension DecoderInference {
    /// The perplexity of `tokens` under `protocol`; `progress(done, total)`
    /// after each forward pass. Errors before any work when a window does
    /// not fit the model or the stream is too short for one.
    public static func perplexity(
        config: DecoderConfig, of tokens: [Int32], protocol settings: PerplexityProtocol, forward: Forward,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws(DecoderInputError) -> PerplexityResult {
        let length = settings.sequenceLength
        guard length >= 2 else { throw DecoderInputError("seq_len must be at least 2, got \(length)") }
        guard length <= config.maximumSequenceLength else {
            throw DecoderInputError("seq_len \(length) is longer than the model's context of \(config.maximumSequenceLength) tokens")
        }
        guard settings.batchSize >= 1 else { throw DecoderInputError("batch_size must be at least 1, got \(settings.batchSize)") }
        if let stride = settings.stride, !(1...length).contains(stride) {
            throw DecoderInputError("stride must be between 1 and seq_len \(length), got \(stride)")
        }
        guard tokens.count >= length else {
            throw DecoderInputError("the split has \(tokens.count) tokens, fewer than one window of seq_len \(length)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw DecoderInputError("token id \(bad) is outside the model's vocabulary of \(config.vocabSize)")
        }
        // Windows: (start, length, first predicted position within the window).
        var windows: [(start: Int, count: Int, firstTarget: Int)] = []
        if settings.slides, let stride = settings.stride {
            var previousEnd = 0
            var begin = 0
            while begin < tokens.count {
                let end = Swift.min(begin + length, tokens.count)
                let targets = end - previousEnd
                windows.append((begin, end - begin, Swift.max(1, end - begin - targets)))
                previousEnd = end
                if end == tokens.count { break }
                begin += stride
            }
        } else {
            windows = (0..<(tokens.count / length)).map { ($0 * length, length, 1) }
        }
        if let limit = settings.maxWindows { windows = Array(windows.prefix(Swift.max(limit, 1))) }

        let started = DispatchTime.now().uptimeNanoseconds
        let batch = settings.slides ? 1 : settings.batchSize
        var total = 0.0
        var predicted = 0
        var processed = 0
        var done = 0
        while done < windows.count {
            let group = Array(windows[done..<Swift.min(done + batch, windows.count)])
            let count = group[0].count
            var ids: [Int32] = []
            ids.reserveCapacity(group.count * count)
            for window in group { ids.append(contentsOf: tokens[window.start..<(window.start + count)]) }
            var cache: DecoderKVCache?
            let logits = forward(Tensor(shape: [group.count, count], int32s: ids), &cache)
            let vocabulary = config.vocabSize
            logits.contiguous().withUnsafeFloats { values in
                for (row, window) in group.enumerated() {
                    for position in (window.firstTarget - 1)..<(count - 1) {
                        let base = (row * count + position) * vocabulary
                        let target = Int(ids[row * count + position + 1])
                        total += Self.negativeLogLikelihood(values, base: base, count: vocabulary, target: target)
                        predicted += 1
                    }
                }
            }
            processed += group.count * count
            done += group.count
            progress(done, windows.count)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return PerplexityResult(
            meanNLL: total / Double(Swift.max(predicted, 1)), predictedTokens: predicted, windows: windows.count,
            processedTokens: processed, seconds: seconds)
    }

    /// `logsumexp(row) − row[target]` in double precision.
    static func negativeLogLikelihood(_ values: UnsafeBufferPointer<Float>, base: Int, count: Int, target: Int) -> Double {
        var top = -Double.infinity
        for index in base..<(base + count) { top = Swift.max(top, Double(values[index])) }
        var sum = 0.0
        for index in base..<(base + count) { sum += Foundation.exp(Double(values[index]) - top) }
        return Foundation.log(sum) + top - Double(values[base + target])
    }
}
