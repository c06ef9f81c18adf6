import Foundation
import SqueezeTensor

/// How the next token is chosen from the logits.
public struct SamplingOptions: Sendable, Hashable {
    /// 0 is greedy (the arg-max, the lowest id on ties); otherwise logits are divided by it.
    public var temperature: Double
    /// Keep only the `topK` most likely tokens (0: all).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (1: all).
    public var topP: Double
    /// Seeds the draws: the same seed, model and prompt give the same tokens.
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingOptions()

    public var isGreedy: Bool { temperature == 0 }

    /// Checks the ranges: temperature ≥ 0, top-k ≥ 0, top-p in (0, 1].
    public func validate() throws(DecoderInputError) {
        guard temperature >= 0, temperature.isFinite else { throw DecoderInputError("temperature must be ≥ 0, got \(temperature)") }
        guard topK >= 0 else { throw DecoderInputError("top_k must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw DecoderInputError("top_p must be in (0, 1], got \(topP)") }
    }

    /// The next token from one row of logits; `draw` is a uniform number in [0, 1).
    func choose(_ logits: UnsafeBufferPointer<Float>, draw: () -> Double) -> Int {
        if isGreedy {
            var best = 0
            for index in 1..<logits.count where logits[index] > logits[best] { best = index }
            return best
        }
        var candidates = (0..<logits.count).map { (id: $0, logit: Double(logits[$0]) / temperature) }
        candidates.sort { $0.logit != $1.logit ? $0.logit > $1.logit : $0.id < $1.id }
        if topK > 0, topK < candidates.count { candidates.removeLast(candidates.count - topK) }
        let top = candidates[0].logit
        var weights = candidates.map { Foundation.exp($0.logit - top) }
        let total = weights.reduce(0, +)
        if topP < 1 {
            var cumulative = 0.0
            var keep = 0
            while keep < weights.count {
                cumulative += weights[keep] / total
                keep += 1
                if cumulative >= topP { break }
            }
            weights.removeLast(weights.count - keep)
        }
        let kept = weights.reduce(0, +)
        var target = draw() * kept
        for (index, weight) in weights.enumerated() {
            target -= weight
            if target < 0 { return candidates[index].id }
        }
        return candidates[weights.count - 1].id
    }
}

/// A generated continuation and how long it took.
public struct Generation: Sendable, Hashable {
    /// The new tokens (the prompt not included).
    public var tokens: [Int]
    /// Seconds for the prompt's forward pass (filling the cache) and the first token.
    public var prefillSeconds: Double
    /// Seconds for the tokens after the first, one forward pass each.
    public var decodeSeconds: Double
    /// Bytes the KV cache holds.
    public var cacheBytes: Int
    /// Whether generation stopped at an end token.
    public var stoppedAtEnd: Bool
}

extension DecoderModel {
    /// Continues `prompt` (ids) by up to `maxNewTokens` tokens at batch 1 with
    /// a KV cache: one forward pass over the prompt, then one per token.
    /// Stops after a token in `stopTokens`. The prompt plus the new tokens
    /// must fit the context.
    public func generate(
        prompt: [Int], maxNewTokens: Int, sampling: SamplingOptions = .greedy, stopTokens: Set<Int> = [], backend: any Backend
    ) throws(DecoderInputError) -> Generation {
        try DecoderInference.generate(
            config: config, prompt: prompt, maxNewTokens: maxNewTokens, sampling: sampling, stopTokens: stopTokens,
            forward: forward(backend: backend))
    }
}

/// The inference loops every decoder shares — float or quantized — over its
/// forward pass: `forward(ids [B, T], cache) → logits [B, T, vocab]`, which
/// reads and extends the cache when there is one.
public enum DecoderInference {
    public typealias Forward = (_ ids: Tensor, _ cache: inout DecoderKVCache?) -> Tensor

    /// Checks `ids` (`[B, T]` i32, in the vocabulary) and that `past + T` fits the context of `config`.
    public static func check(_ ids: Tensor, past: Int, config: DecoderConfig) throws(DecoderInputError) {
        guard ids.dtype == .i32, ids.rank == 2, ids.shape[0] > 0, ids.shape[1] > 0 else {
            throw DecoderInputError("token ids must be a non-empty i32 [batch, length] tensor, got \(ids)")
        }
        let total = past + ids.shape[1]
        guard total <= config.maximumSequenceLength else {
            throw DecoderInputError(
                "a sequence of \(total) tokens is longer than the model's context of \(config.maximumSequenceLength) (max_position_embeddings"
                    + (config.slidingWindow == nil ? ")" : " / sliding_window)"))
        }
        if let bad = ids.int32s.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw DecoderInputError("token id \(bad) is outside the vocabulary of \(config.vocabSize)")
        }
    }

    /// The generation loop at batch 1 (see `DecoderModel.generate`). The
    /// cache is passed `inout` and never copied, so appending writes in place.
    public static func generate(
        config: DecoderConfig, prompt: [Int], maxNewTokens: Int, sampling: SamplingOptions, stopTokens: Set<Int>,
        forward step: Forward
    ) throws(DecoderInputError) -> Generation {
        try sampling.validate()
        guard !prompt.isEmpty else { throw DecoderInputError("the prompt is empty") }
        guard maxNewTokens >= 1 else { throw DecoderInputError("max_new_tokens must be at least 1, got \(maxNewTokens)") }
        let total = prompt.count + maxNewTokens
        guard total <= config.maximumSequenceLength else {
            throw DecoderInputError(
                "the prompt (\(prompt.count) tokens) plus \(maxNewTokens) new tokens exceed the model's context of \(config.maximumSequenceLength)")
        }
        let ids = Tensor(shape: [1, prompt.count], int32s: prompt.map { Int32(truncatingIfNeeded: $0) })
        try check(ids, past: 0, config: config)

        var cache: DecoderKVCache? = DecoderKVCache(config: config, batch: 1, capacity: total)
        var generator = SeededGenerator(seed: sampling.seed)
        let draw = { Double(generator.uniform()) }
        func next(_ logits: Tensor) -> Int {
            let vocabulary = config.vocabSize
            let rows = logits.count / vocabulary
            return logits.contiguous().withUnsafeFloats { values in
                let last = UnsafeBufferPointer(rebasing: values[((rows - 1) * vocabulary)..<(rows * vocabulary)])
                return sampling.choose(last, draw: draw)
            }
        }
        let start = DispatchTime.now().uptimeNanoseconds
        var token = next(step(ids, &cache))
        let prefilled = DispatchTime.now().uptimeNanoseconds
        var tokens = [token]
        var stopped = stopTokens.contains(token)
        while !stopped && tokens.count < maxNewTokens {
            token = next(step(Tensor(shape: [1, 1], int32s: [Int32(token)]), &cache))
            tokens.append(token)
            stopped = stopTokens.contains(token)
        }
        let finished = DispatchTime.now().uptimeNanoseconds
        return Generation(
            tokens: tokens, prefillSeconds: Double(prefilled - start) / 1e9, decodeSeconds: Double(finished - prefilled) / 1e9,
            cacheBytes: cache?.byteCount ?? 0, stoppedAtEnd: stopped)
    }
}
