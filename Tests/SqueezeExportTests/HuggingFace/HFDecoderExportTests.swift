import Foundation
import SqueezeCompress
import SqueezeExport
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeSupport
import SqueezeTensor
import Testing

/// Tiny random decoders of every family exported to Hugging Face and run by
/// `transformers`: dense, sparse and weight-only (compressed-tensors int4
/// symmetric/asymmetric, int8, 3-bit codes in int4) logits against
/// Squeeze's, and `AutoTokenizer` on the exported `tokenizer.json`.
@Suite struct HFDecoderExportTests {
    static let texts = [
        "the movie was good and the plot was fun", "a very dull movie", "it is not bad", "great", "the the the plot",
        "Mixed Case, punctuation! and digits 42?",
    ]
    static let vocabularySize = 320

    /// A byte-level BPE tokenizer (vocabulary ≤ `vocabularySize`) trained on the texts.
    static func writeTokenizer(to directory: String) throws {
        let trained = try BPETrainer(vocabularySize: 300, minimumFrequency: 1, specialTokens: ["<|endoftext|>"])
            .train(texts + texts.map { $0.uppercased() })
        try trained.write(toDirectory: directory)
    }

    static func config(_ family: DecoderFamily, tied: Bool = false) -> DecoderConfig {
        switch family {
        case .gpt2:
            DecoderConfig(
                family: .gpt2, vocabSize: vocabularySize, hiddenSize: 16, intermediateSize: 64, numHiddenLayers: 2,
                numAttentionHeads: 4, maxPositionEmbeddings: 32, normEpsilon: 1e-5, positions: .learned, queryKeyValueBias: true,
                outputBias: true, mlpBias: true, tieWordEmbeddings: true, initializerRange: 0.3)
        case .llama, .mistral, .qwen2:
            DecoderConfig(
                family: family, vocabSize: vocabularySize, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2,
                numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 64, queryKeyValueBias: family == .qwen2,
                tieWordEmbeddings: tied, initializerRange: 0.3, slidingWindow: family == .mistral ? 64 : nil)
        }
    }

    /// A random model (weights of σ 0.3: logits of order 1, so a wrong sum shows) with non-zero biases (so Qwen2's and GPT-2's biases count).
    static func model(_ config: DecoderConfig, seed: UInt64) throws -> DecoderModel {
        var model = try DecoderModel(randomWithConfig: config, seed: seed)
        model.updateParameters { parameters in
            for index in parameters.indices where parameters[index].rank == 1 {
                let count = parameters[index].count
                parameters[index] = Tensor(shape: [count], floats: (0..<count).map { 0.9 + Float(($0 * 5 + index) % 7) * 0.03 })
            }
        }
        return model
    }

    static func artifact(_ save: (String) throws -> Void, family: DecoderFamily, in directory: String) throws -> ModelArtifact {
        try save(directory)
        try writeTokenizer(to: directory)
        return try ModelArtifact.seal(directory: directory, architecture: family.rawValue, source: "test")
    }

    /// Every `_proj` Linear quantized weight-only with `bits`/`groupSize`; `codeBits` 3 puts GPTQ's 3-bit grid in the int4 container.
    static func quantized(
        _ model: DecoderModel, bits: Int, groupSize: Int, symmetric: Bool, codeBits: Int? = nil
    ) throws -> QuantizedDecoderModel {
        var linears: [String: WeightOnlyLinear] = [:]
        var modules: [String] = []
        let high = (1 << ((codeBits ?? bits) - 1)) - 1
        for (name, tensor) in zip(model.weights.names, model.weights.elements) where name.hasSuffix("_proj.weight") {
            let module = String(name.dropLast(".weight".count))
            var packed = try PackedGroupWeights(quantizing: tensor, bits: bits, groupSize: groupSize, mapping: symmetric ? .symmetric : .asymmetric)
            if codeBits != nil {
                // Narrower codes: clamp to the 3-bit grid (what GPTQ's int3 stores), same scales.
                let codes = packed.codes.contiguous()
                let clamped: [Int8] = codes.withUnsafeElements(Int8.self) { source in
                    source.map { Swift.min(Swift.max($0, Int8(symmetric ? -high : -high - 1)), Int8(high)) }
                }
                let zeros = packed.zeroPoints.map { $0.map { Swift.min(Swift.max($0, Int32(-high - 1)), Int32(high)) } }
                packed = try PackedGroupWeights(
                    codes: Tensor(shape: codes.shape, int8s: clamped), bits: bits, groupSize: groupSize, scales: packed.scales,
                    zeroPoints: zeros)
            }
            linears[module] = WeightOnlyLinear(weights: packed)
            modules.append(module)
        }
        let codeRange = symmetric ? [-high, high] : [-high - 1, high]
        let quantization = ModelQuantization(
            mode: .weightOnly,
            weights: ModelQuantization.WeightScheme(
                bits: bits, granularity: .perGroup, symmetric: symmetric, codeRange: codeRange, groupSize: groupSize, codeBits: codeBits),
            activations: nil, modules: modules, skipped: [ModelQuantization.SkippedModule(module: "lm_head", reason: "test")])
        return try QuantizedDecoderModel(model, linears: linears, quantization: quantization)
    }

    static let prompts: [[Int32]] = [[5, 17, 42, 99, 3, 250, 7], [11, 200, 31, 64, 8, 1, 300]]

    static func ids(_ rows: [[Int32]]) -> Tensor { Tensor(shape: [rows.count, rows[0].count], int32s: rows.flatMap { $0 }) }

    @Test func everyFamilyAndWeightOnlySchemeMatchesTransformers() throws {
        guard PythonPeers.available(HFPeer.modules, for: "HF decoder export") else { return }
        let root = try TempDir()
        let backend = CPUBackend(threads: 1)
        var cases: [(name: String, output: String, expected: [Float], dequantize: Bool, architecture: String)] = []
        func add(_ name: String, _ artifact: ModelArtifact, expected: Tensor, dequantize: Bool = false, architecture: String) throws {
            let output = root.path + "/export-" + name
            try HFCheckpointExport.export(artifact, to: output, sourceDigest: "sha256:test")
            cases.append((name, output, expected.floats, dequantize, architecture))
        }
        let families: [(String, DecoderConfig, String)] = [
            ("llama", Self.config(.llama), "LlamaForCausalLM"), ("llama-tied", Self.config(.llama, tied: true), "LlamaForCausalLM"),
            ("mistral", Self.config(.mistral), "MistralForCausalLM"), ("qwen2", Self.config(.qwen2), "Qwen2ForCausalLM"),
            ("gpt2", Self.config(.gpt2), "GPT2LMHeadModel"),
        ]
        for (index, (name, config, architecture)) in families.enumerated() {
            let model = try Self.model(config, seed: UInt64(20 + index))
            let artifact = try Self.artifact({ try model.save(toDirectory: $0) }, family: config.family, in: root.path + "/" + name)
            try add(name, artifact, expected: try model.logits(Self.ids(Self.prompts), backend: backend), architecture: architecture)
        }
        // Sparse: 2:4 masks on every block Linear, stored zeros in the export.
        var sparse = try Self.model(Self.config(.llama), seed: 40)
        for (name, tensor) in zip(sparse.weights.names, sparse.weights.elements) where name.hasSuffix("_proj.weight") {
            let values = tensor.contiguous().floats
            let keep = values.indices.map { index in
                let group = index / 4 * 4
                let rank = (group..<(group + 4)).filter { abs(values[$0]) > abs(values[index]) || (abs(values[$0]) == abs(values[index]) && $0 < index) }.count
                return rank < 2
            }
            try sparse.setMask(try WeightMask(shape: tensor.shape, pattern: .nOfM(n: 2, m: 4), keep: keep), forParameter: name)
        }
        let sparseArtifact = try Self.artifact({ try sparse.save(toDirectory: $0) }, family: .llama, in: root.path + "/sparse")
        try add("sparse", sparseArtifact, expected: try sparse.logits(Self.ids(Self.prompts), backend: backend), architecture: "LlamaForCausalLM")

        // Weight-only schemes on Llama and Qwen2 (biases); the reference is Squeeze's weight-only forward of the reloaded artifact.
        let schemes: [(String, DecoderConfig, Int, Int, Bool, Int?)] = [
            ("int4-sym-g8", Self.config(.llama), 4, 8, true, nil), ("int4-asym-g16", Self.config(.llama), 4, 16, false, nil),
            ("int8-sym-g32", Self.config(.qwen2), 8, 32, true, nil), ("int8-asym-g8", Self.config(.llama), 8, 8, false, nil),
            ("int3-in-4-asym-g16", Self.config(.llama), 4, 16, false, 3),
        ]
        var asymmetricInt4: QuantizedDecoderModel?
        for (index, (name, config, bits, group, symmetric, codeBits)) in schemes.enumerated() {
            let float = try Self.model(config, seed: UInt64(50 + index))
            let quantized = try Self.quantized(float, bits: bits, groupSize: group, symmetric: symmetric, codeBits: codeBits)
            let artifact = try Self.artifact({ try quantized.save(toDirectory: $0) }, family: config.family, in: root.path + "/" + name)
            let reloaded = try QuantizedDecoderModel(directory: artifact.directory)
            var cache: DecoderKVCache?
            let expected = reloaded.forward(backend: backend)(Self.ids(Self.prompts), &cache)
            try add(name, artifact, expected: expected, dequantize: !symmetric, architecture: DecoderHFExportName.of(config.family))
            if name == "int4-asym-g16" { asymmetricInt4 = reloaded }
        }

        // The 2:4 model quantized: its zero codes keep the pattern, declared as a dense-format sparsity_config.
        let sparseInt4 = try Self.quantized(sparse, bits: 4, groupSize: 8, symmetric: false)
        let sparseInt4Artifact = try Self.artifact({ try sparseInt4.save(toDirectory: $0) }, family: .llama, in: root.path + "/int4-2of4")
        var sparseCache: DecoderKVCache?
        let sparseExpected = try QuantizedDecoderModel(directory: sparseInt4Artifact.directory).forward(backend: backend)(Self.ids(Self.prompts), &sparseCache)
        try add("int4-asym-g8-2of4", sparseInt4Artifact, expected: sparseExpected, dequantize: true, architecture: "LlamaForCausalLM")
        for (name, declared) in [("int4-asym-g8-2of4", true), ("int4-sym-g8", false)] {
            let config = try Value(json: Array(Data(contentsOf: URL(fileURLWithPath: root.path + "/export-\(name)/config.json"))))
            let sparsity = config["quantization_config"]?["sparsity_config"]
            #expect((sparsity?["sparsity_structure"] == .string("2:4")) == declared, "\(name): \(sparsity.map { "\($0)" } ?? "none")")
        }

        var jobs: [HFPeer.Job] = cases.map { entry in
            .logits(
                directory: entry.output, auto: "causal-lm", batches: [["input_ids": Self.prompts.map { $0.map(Int.init) }]],
                dequantize: entry.dequantize)
        }
        let int4 = try #require(asymmetricInt4)
        jobs.append(.dequantize(directory: root.path + "/export-int4-asym-g16", modules: int4.quantization.modules))
        jobs.append(.tokenize(directory: root.path + "/export-llama", texts: Self.texts, maxLength: nil))
        jobs.append(.tokenize(directory: root.path + "/export-gpt2", texts: Self.texts, maxLength: nil))
        let results = try HFPeer.run(jobs)

        for (index, entry) in cases.enumerated() {
            #expect(results[index]["class"] == .string(entry.architecture), "\(entry.name)")
            let logits = HFPeer.logits(results[index]).first
            #expect(logits?.shape == [2, 7, Self.vocabularySize], "\(entry.name)")
            let difference = HFPeer.maxDifference(logits?.data ?? [], entry.expected)
            #expect(difference <= 1e-4, "\(entry.name): transformers vs Squeeze logits differ by \(difference)")
            print("HF decoder \(entry.name): max |transformers − Squeeze| = \(difference), max |logit| = \(entry.expected.map(abs).max() ?? 0)")
        }
        let dequantized = results[cases.count]["weights"]
        for (name, value) in zip(int4.weights.names, int4.weights.elements) {
            guard case .linear(let linear) = value, case .weightOnly(let weightOnly) = linear.kernel else { continue }
            let stored = HFPeer.floats(dequantized?[linear.module])
            #expect(stored.data.map(\.bitPattern) == weightOnly.weights.dequantized().floats.map(\.bitPattern), "\(name)")
        }
        let tokenizer = try BPETokenizer(contentsOfFile: root.path + "/export-llama/tokenizer.json")
        let expectedIDs = Self.texts.map { tokenizer.encode($0, addSpecialTokens: true) }
        for offset in 1...2 {
            #expect(HFPeer.ids(results[cases.count + offset]) == expectedIDs)
        }
    }

    @Test func weightOnlyGPT2IsRefused() throws {
        let root = try TempDir()
        let float = try Self.model(Self.config(.gpt2), seed: 3)
        let quantized = try Self.quantized(float, bits: 4, groupSize: 16, symmetric: true)
        let artifact = try Self.artifact({ try quantized.save(toDirectory: $0) }, family: .gpt2, in: root.path + "/gpt2")
        #expect {
            try HFCheckpointExport.export(artifact, to: root.path + "/out", sourceDigest: "sha256:test")
        } throws: { "\($0)".contains("Conv1D") }
        #expect(!FileManager.default.fileExists(atPath: root.path + "/out"))
    }
}

/// The class name transformers reports for a family.
enum DecoderHFExportName {
    static func of(_ family: DecoderFamily) -> String {
        switch family {
        case .llama: "LlamaForCausalLM"
        case .mistral: "MistralForCausalLM"
        case .qwen2: "Qwen2ForCausalLM"
        case .gpt2: "GPT2LMHeadModel"
        }
    }
}
