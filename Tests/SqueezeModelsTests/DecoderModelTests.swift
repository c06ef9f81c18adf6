import Foundation
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeTensor
import Testing

/// Tiny decoder configs for tests.
enum TinyDecoder {
    static func llama(tied: Bool = false, kvHeads: Int = 2) -> DecoderConfig {
        DecoderConfig(
            family: .llama, vocabSize: 23, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 2, numAttentionHeads: 4,
            numKeyValueHeads: kvHeads, maxPositionEmbeddings: 16, tieWordEmbeddings: tied, initializerRange: 0.4)
    }

    static var gpt2: DecoderConfig {
        DecoderConfig(
            family: .gpt2, vocabSize: 19, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 2, numAttentionHeads: 2,
            maxPositionEmbeddings: 16, normEpsilon: 1e-5, positions: .learned, queryKeyValueBias: true, outputBias: true,
            mlpBias: true, tieWordEmbeddings: true, attentionDropout: 0.1, residualDropout: 0.1, initializerRange: 0.4)
    }

    static let ids = Tensor(shape: [2, 5], int32s: [1, 4, 7, 2, 9, 3, 3, 0, 11, 5])
}

@Suite struct DecoderModelTests {
    let backend = ReferenceBackend()

    @Test(arguments: [TinyDecoder.llama(), TinyDecoder.llama(tied: true, kvHeads: 4), TinyDecoder.gpt2])
    func wholeModelGradientsMatchFiniteDifferences(_ config: DecoderConfig) throws {
        let model = try DecoderModel(randomWithConfig: config, seed: 5)
        // Norm weights away from one and biases away from zero, so their gradients matter.
        let weights = model.weights.map { name, tensor -> Tensor in
            guard name.contains("norm") || name.hasSuffix(".bias") else { return tensor }
            var generator = SeededGenerator(seed: UInt64(name.utf8.count))
            return Tensor.uniform(shape: tensor.shape, in: 0.5..<1.5, generator: &generator)
        }
        let worst = checkGradients(inputs: weights.elements, backend: backend, dropoutSeed: 4, elementsPerInput: 5) { tape, variables in
            DecoderModel.languageModelLoss(
                tape, weights.replacing(with: variables), config: config, inverseFrequencies: model.inverseFrequencies,
                ids: TinyDecoder.ids)
        }
        let names = weights.names
        #expect(worst.ratio <= 1, "\(names[worst.input])[\(worst.element)]: analytic \(worst.analytic), numeric \(worst.numeric)")
    }

    @Test func trainingLossIsTheMeanNextTokenCrossEntropy() throws {
        let model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 1)
        let tape = Tape(backend: backend)
        let loss = try model.trainingLoss(on: tape, ids: TinyDecoder.ids).loss.value.scalarValue
        let logits = try model.logits(TinyDecoder.ids, backend: backend).floats
        let vocabulary = model.config.vocabSize
        let ids = TinyDecoder.ids.int32s
        var total = 0.0
        for row in 0..<2 {
            for position in 0..<4 {
                let start = (row * 5 + position) * vocabulary
                let slice = logits[start..<(start + vocabulary)].map(Double.init)
                let top = slice.max() ?? 0
                let logSum = log(slice.reduce(0) { $0 + exp($1 - top) }) + top
                total += logSum - slice[Int(ids[row * 5 + position + 1])]
            }
        }
        #expect(abs(Double(loss) - total / 8) < 1e-5)
    }

    @Test func cpuMatchesReference() throws {
        for config in [TinyDecoder.llama(), TinyDecoder.gpt2] {
            let model = try DecoderModel(randomWithConfig: config, seed: 2)
            let a = try model.logits(TinyDecoder.ids, backend: backend).floats
            let b = try model.logits(TinyDecoder.ids, backend: CPUBackend(threads: 2)).floats
            #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 })
        }
    }

    /// A later token never changes an earlier position's logits.
    @Test func attentionIsCausal() throws {
        let model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 3)
        let a = try model.logits(Tensor(shape: [1, 4], int32s: [1, 2, 3, 4]), backend: backend).floats
        let b = try model.logits(Tensor(shape: [1, 4], int32s: [1, 2, 3, 9]), backend: backend).floats
        let vocabulary = model.config.vocabSize
        #expect(Array(a[..<(3 * vocabulary)]) == Array(b[..<(3 * vocabulary)]))
        #expect(Array(a[(3 * vocabulary)...]) != Array(b[(3 * vocabulary)...]))
    }

    @Test func samplingIsSeededAndRespectsTopK() throws {
        let model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 4)
        let cpu = CPUBackend(threads: 2)
        let options = SamplingOptions(temperature: 1.5, topK: 3, topP: 0.9, seed: 11)
        let a = try model.generate(prompt: [1, 2], maxNewTokens: 10, sampling: options, backend: cpu)
        let b = try model.generate(prompt: [1, 2], maxNewTokens: 10, sampling: options, backend: cpu)
        #expect(a.tokens == b.tokens)
        var other = options
        other.seed = 12
        let c = try model.generate(prompt: [1, 2], maxNewTokens: 10, sampling: other, backend: cpu)
        #expect(c.tokens.count == 10)
        // top_k 1 is greedy whatever the temperature.
        let greedy = try model.generate(prompt: [1, 2], maxNewTokens: 10, backend: cpu)
        let topOne = try model.generate(prompt: [1, 2], maxNewTokens: 10, sampling: SamplingOptions(temperature: 3, topK: 1, seed: 9), backend: cpu)
        #expect(greedy.tokens == topOne.tokens)
        // A stop token ends generation.
        let stop = try model.generate(prompt: [1, 2], maxNewTokens: 10, stopTokens: [greedy.tokens[0]], backend: cpu)
        #expect(stop.tokens == [greedy.tokens[0]] && stop.stoppedAtEnd)
    }

    /// Non-overlapping windows predict all but each window's first token;
    /// sliding windows predict every token after the first exactly once, each
    /// with the context its window gives, as a direct computation says.
    @Test func perplexityProtocols() throws {
        let model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 8)
        var generator = SeededGenerator(seed: 3)
        let stream = (0..<37).map { _ in Int32(generator.next() % 23) }
        func nll(_ window: ArraySlice<Int32>, targets: Range<Int>) throws -> Double {
            let ids = Tensor(shape: [1, window.count], int32s: Array(window))
            let logits = try model.logits(ids, backend: backend).floats as [Float]
            let vocabulary = model.config.vocabSize
            return targets.reduce(0.0) { total, position in
                let row = logits[((position - 1) * vocabulary)..<(position * vocabulary)].map(Double.init)
                let top = row.max() ?? 0
                return total + log(row.reduce(0) { $0 + exp($1 - top) }) + top - row[Int(window[window.startIndex + position])]
            }
        }
        let plain = try model.perplexity(of: stream, protocol: PerplexityProtocol(sequenceLength: 8, batchSize: 3), backend: backend)
        #expect(plain.windows == 4 && plain.predictedTokens == 4 * 7)
        var expected = 0.0
        for window in 0..<4 { expected += try nll(stream[(window * 8)..<(window * 8 + 8)], targets: 1..<8) }
        #expect(abs(plain.meanNLL - expected / 28) < 1e-5)
        let same = try model.perplexity(of: stream, protocol: PerplexityProtocol(sequenceLength: 8, stride: 8), backend: backend)
        #expect(abs(same.meanNLL - plain.meanNLL) < 1e-6 && same.predictedTokens == 28)

        let sliding = try model.perplexity(of: stream, protocol: PerplexityProtocol(sequenceLength: 8, stride: 4), backend: backend)
        #expect(sliding.predictedTokens == 36)
        // Windows start at 0, 4, …, 28 (the last ends at 36… 37): the first predicts 1..<8, each later one its last 4 (or fewer).
        var slidingExpected = try nll(stream[0..<8], targets: 1..<8)
        var previousEnd = 8
        var begin = 4
        while previousEnd < stream.count {
            let end = min(begin + 8, stream.count)
            let window = stream[begin..<end]
            slidingExpected += try nll(window, targets: (window.count - (end - previousEnd))..<window.count)
            previousEnd = end
            begin += 4
        }
        #expect(abs(sliding.meanNLL - slidingExpected / 36) < 1e-5)
        #expect(throws: DecoderInputError.self) {
            try model.perplexity(of: stream, protocol: PerplexityProtocol(sequenceLength: 17), backend: backend)
        }
        #expect(throws: DecoderInputError.self) {
            try model.perplexity(of: Array(stream.prefix(5)), protocol: PerplexityProtocol(sequenceLength: 8), backend: backend)
        }
    }

    @Test func badInputIsAnErrorNotACrash() throws {
        let model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 1)
        #expect(throws: DecoderInputError.self) { try model.logits(Tensor(shape: [1, 2], int32s: [1, 23]), backend: backend) }
        #expect(throws: DecoderInputError.self) {
            try model.logits(Tensor(shape: [1, 17], int32s: Array(repeating: 1, count: 17)), backend: backend)
        }
        #expect(throws: DecoderInputError.self) { try model.generate(prompt: Array(repeating: 1, count: 10), maxNewTokens: 7, backend: backend) }
        #expect(throws: DecoderInputError.self) { try model.generate(prompt: [], maxNewTokens: 2, backend: backend) }
        #expect(throws: DecoderInputError.self) {
            try model.generate(prompt: [1], maxNewTokens: 2, sampling: SamplingOptions(temperature: 1, topP: 0), backend: backend)
        }
    }

    @Test func configErrorsNameWhatIsSupported() throws {
        func message(_ json: String) -> String {
            do {
                _ = try DecoderConfig(json: Data(json.utf8), file: "config.json")
                return ""
            } catch {
                return error.description
            }
        }
        let base = #""vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2"#
        #expect(message(#"{"model_type": "falcon", \#(base)}"#).contains("`llama`, `mistral`, `qwen2`, `gpt2`"))
        #expect(message(#"{"model_type": "llama", \#(base), "rope_scaling": {"rope_type": "yarn", "factor": 4}}"#)
            .contains("`default`, `linear`, `llama3`"))
        #expect(message(#"{"model_type": "llama", \#(base), "num_key_value_heads": 3}"#).contains("not a multiple"))
        #expect(message(#"{"model_type": "llama", \#(base), "hidden_act": "gelu"}"#).contains("hidden_act"))
        #expect(message(#"{"model_type": "llama", "vocab_size": 10}"#).contains("missing required field"))
        #expect(message(#"{"model_type": "llama", \#(base), "pretraining_tp": 2}"#).contains("`pretraining_tp: 2` is not supported"))
        #expect(message(#"{"model_type": "llama", \#(base), "rope_scaling": {"rope_type": "llama3", "factor": 8}}"#)
            .contains("llama3 rope scaling needs `factor`, `low_freq_factor`, `high_freq_factor` and `original_max_position_embeddings`"))
        let gpt2 = #""model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 16"#
        #expect(message(#"{\#(gpt2)}"#).isEmpty)
        #expect(message(#"{\#(gpt2), "activation_function": "relu"}"#).contains("activation_function `relu` is not supported"))
        #expect(message(#"{\#(gpt2), "scale_attn_by_inverse_layer_idx": true}"#).contains("`scale_attn_by_inverse_layer_idx` is not supported"))
        #expect(message(#"{\#(gpt2), "scale_attn_weights": false}"#).contains("`scale_attn_weights: false` is not supported"))
        #expect(message(#"{\#(gpt2), "resid_pdrop": 0.1, "embd_pdrop": 0.2}"#).contains("`resid_pdrop` and `embd_pdrop` differ"))
        #expect(message(#"{"model_type": "llama", \#(base)}"#).isEmpty)
    }

    @Test func checkpointErrorsAreNamed() throws {
        let directory = try TempDir()
        let model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 1)
        try model.save(toDirectory: directory.path)
        // A config with more layers than the weights.
        var bigger = model.config
        bigger.numHiddenLayers = 3
        try bigger.jsonData().write(to: URL(fileURLWithPath: directory.file("config.json")))
        #expect(throws: ModelFileError.self) { try DecoderModel(directory: directory.path) }
        // A config whose sizes disagree with the weights.
        var wider = model.config
        wider.intermediateSize = 14
        try wider.jsonData().write(to: URL(fileURLWithPath: directory.file("config.json")))
        do {
            _ = try DecoderModel(directory: directory.path)
            Issue.record("a shape mismatch loaded")
        } catch {
            #expect(error.description.contains("shape"))
        }
        // A sharded index naming a missing shard, then a tensor its shard does not hold.
        try model.config.jsonData().write(to: URL(fileURLWithPath: directory.file("config.json")))
        try FileManager.default.moveItem(atPath: directory.file("model.safetensors"), toPath: directory.file("model-00001-of-00001.safetensors"))
        let index = #"{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}"#
        try Data(index.utf8).write(to: URL(fileURLWithPath: directory.file("model.safetensors.index.json")))
        do {
            _ = try DecoderModel(directory: directory.path)
            Issue.record("a missing shard loaded")
        } catch {
            #expect(error.description.contains("missing"))
        }
        let escaping = #"{"weight_map": {"model.embed_tokens.weight": "../model-00001-of-00001.safetensors"}}"#
        try Data(escaping.utf8).write(to: URL(fileURLWithPath: directory.file("model.safetensors.index.json")))
        do {
            _ = try DecoderModel(directory: directory.path)
            Issue.record("a shard outside the directory was read")
        } catch {
            #expect(error.description.contains("must name a shard file in the same directory"))
        }
        // The same tensor in two shards is ambiguous.
        try FileManager.default.copyItem(atPath: directory.file("model-00001-of-00001.safetensors"), toPath: directory.file("copy.safetensors"))
        let twice = #"{"weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors", "lm_head.weight": "copy.safetensors"}}"#
        try Data(twice.utf8).write(to: URL(fileURLWithPath: directory.file("model.safetensors.index.json")))
        do {
            _ = try DecoderModel(directory: directory.path)
            Issue.record("a tensor in two shards loaded")
        } catch {
            #expect(error.description.contains("is also in"))
        }
        try FileManager.default.removeItem(atPath: directory.file("copy.safetensors"))
        let wrong = #"{"weight_map": {"model.nothing.weight": "model-00001-of-00001.safetensors"}}"#
        try Data(wrong.utf8).write(to: URL(fileURLWithPath: directory.file("model.safetensors.index.json")))
        do {
            _ = try DecoderModel(directory: directory.path)
            Issue.record("an index naming a missing tensor loaded")
        } catch {
            #expect(error.description.contains("does not hold it"))
        }
    }

    @Test func linearLayerViewRunsTheForward() throws {
        var model = try DecoderModel(randomWithConfig: TinyDecoder.llama(), seed: 6)
        let blocks = model.linearBlocks
        #expect(blocks.count == 2)
        #expect(blocks[0].layers.map(\.name) == [
            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj",
            "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
            "model.layers.0.mlp.down_proj",
        ])
        #expect(model.linearLayers.last?.name == "lm_head")
        #expect(blocks[0].layers[1].outFeatures == 4)
        // Running every block through the view gives the model's last hidden state before the final norm.
        let state0 = try model.blockInput(for: TinyDecoder.ids, backend: backend)
        let captured = try model.runBlock(0, on: state0, capturing: ["model.layers.0.mlp.down_proj"], backend: backend)
        #expect(captured.inputs["model.layers.0.mlp.down_proj"]?.shape == [10, 12])
        let state2 = try model.runBlock(1, on: captured.output, capturing: [], backend: backend).output
        #expect(state2.hidden.shape == [2, 5, 8])
        // Pruning through the view keeps the mask.
        let mask = try WeightMask(shape: [12, 8], pattern: .unstructured, keep: (0..<96).map { $0 % 2 == 0 })
        try model.setLinearMask("model.layers.1.mlp.up_proj", to: mask)
        #expect(try model.linearWeight("model.layers.1.mlp.up_proj").floats.enumerated().allSatisfy { $0.offset % 2 == 0 || $0.element == 0 })
        #expect(throws: LinearViewError.self) { try model.linearWeight("model.layers.9.mlp.up_proj") }
    }
}
