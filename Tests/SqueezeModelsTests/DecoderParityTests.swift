import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

/// Logits and greedy continuations of tiny random checkpoints written by
/// `transformers` (`Fixtures/decoders/generate.py`), checked without PyTorch.
@Suite struct DecoderParityTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/decoders").path

    struct Expected: Decodable {
        var prompts: [[Int]]
        var logits: [[[Float]]]
        var greedy: [[Int]]
    }

    static func expected(_ name: String) throws -> Expected {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + name + "/expected.json"))
        return try JSONDecoder().decode(Expected.self, from: data)
    }

    static let checkpoints = [
        "llama-gqa", "llama-tied", "llama-linear-rope", "qwen2", "mistral", "gpt2", "llama-gqa-sharded", "llama-gqa-bf16",
    ]

    @Test(arguments: checkpoints)
    func logitsMatchTransformers(_ name: String) throws {
        let model = try DecoderModel(directory: Self.fixtures + "/" + name)
        let expected = try Self.expected(name)
        for backend in [CPUBackend(threads: 2) as any Backend, ReferenceBackend()] {
            for (prompt, rows) in zip(expected.prompts, expected.logits) {
                let ids = Tensor(shape: [1, prompt.count], int32s: prompt.map { Int32($0) })
                let logits = try model.logits(ids, backend: backend).floats
                let want = rows.flatMap { $0 }
                #expect(logits.count == want.count)
                let worst = zip(logits, want).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
                #expect(worst <= 1e-4, "\(name), prompt of \(prompt.count) tokens: max |Δ| \(worst)")
            }
        }
    }

    @Test(arguments: checkpoints)
    func greedyGenerationMatchesTransformers(_ name: String) throws {
        let model = try DecoderModel(directory: Self.fixtures + "/" + name)
        let expected = try Self.expected(name)
        for (prompt, continuation) in zip(expected.prompts, expected.greedy) {
            let generated = try model.generate(prompt: prompt, maxNewTokens: continuation.count, backend: CPUBackend(threads: 2))
            #expect(generated.tokens == continuation, "\(name), prompt of \(prompt.count) tokens")
        }
    }

    @Test func shardedCheckpointLoadsLikeTheSingleFile() throws {
        let single = try DecoderModel(directory: Self.fixtures + "/llama-gqa")
        let sharded = try DecoderModel(directory: Self.fixtures + "/llama-gqa-sharded")
        #expect(single.weights.names == sharded.weights.names)
        for (a, b) in zip(single.weights.elements, sharded.weights.elements) {
            #expect(a.floats == b.floats)
        }
    }

    /// The cache changes nothing: the logits of a prompt fed whole equal
    /// those of the same tokens fed one at a time through the cache.
    @Test(arguments: ["llama-gqa", "gpt2"])
    func cachedDecodingMatchesTheFullForward(_ name: String) throws {
        let model = try DecoderModel(directory: Self.fixtures + "/" + name)
        let backend = CPUBackend(threads: 2)
        let prompt: [Int32] = [3, 17, 5, 60, 2, 41, 9]
        let full = try model.logits(Tensor(shape: [1, prompt.count], int32s: prompt), backend: backend).floats
        var cache: DecoderKVCache? = DecoderKVCache(config: model.config, batch: 1, capacity: prompt.count)
        var stepped: [Float] = []
        let head = 3
        stepped += DecoderModel.logits(
            Eager(backend: backend), model.weights, config: model.config, inverseFrequencies: model.inverseFrequencies,
            ids: Tensor(shape: [1, head], int32s: Array(prompt[..<head])), cache: &cache).floats
        for token in prompt[head...] {
            stepped += DecoderModel.logits(
                Eager(backend: backend), model.weights, config: model.config, inverseFrequencies: model.inverseFrequencies,
                ids: Tensor(shape: [1, 1], int32s: [token]), cache: &cache).floats
        }
        let worst = zip(full, stepped).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(full.count == stepped.count)
        #expect(worst <= 1e-5, "max |Δ| \(worst)")
    }

    @Test func savedCheckpointReloadsIdentically() throws {
        let directory = try TempDir()
        for name in ["llama-tied", "gpt2", "qwen2"] {
            let model = try DecoderModel(directory: Self.fixtures + "/" + name)
            try model.save(toDirectory: directory.path + "/" + name)
            let reloaded = try DecoderModel(directory: directory.path + "/" + name)
            #expect(reloaded.config == model.config, "\(name)")
            #expect(reloaded.weights.names == model.weights.names)
            for (a, b) in zip(model.weights.elements, reloaded.weights.elements) { #expect(a.floats == b.floats, "\(name)") }
        }
    }
}
