import Foundation
import SqueezeModels
import Testing

/// The decoder stages end to end through the CLI on a tiny Llama: a BPE
/// tokenizer and a token dataset from small text files, pre-training from a
/// config, one-shot pruning and GPTQ on the decoder, perplexity and
/// generation of the float and quantized models, and importing the trained
/// checkpoint back as a model directory.
@Suite struct DecoderStagesTests {
    static let text = (0..<120).map { index in
        "the cat \(["sat", "ran", "slept"][index % 3]) on the \(["mat", "log", "rug", "bed"][index % 4]) and the dog saw it .\n"
    }.joined()

    static let recipe = """
        version: 1
        name: decoder
        backend: cpu
        seed: 7
        stages:
          bpe:
            uses: tokenizer/train-bpe
            with: {files: [train.txt], vocab_size: 300}
          text:
            uses: data/text
            with: {tokenizer: "${bpe.tokenizer}", train: [train.txt], test: [test.txt], valid_fraction: 0.2, block_size: 16}
          pretrain:
            uses: train/causal-lm
            with:
              config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: true}
              tokenizer: ${bpe.tokenizer}
              data: ${text.dataset}
              steps: 60
              lr: 0.01
              batch_size: 8
              eval_every: 20
              log_every: 10
          wanda:
            uses: prune/oneshot
            with: {model: "${pretrain.model}", data: "${text.dataset}", method: wanda, sparsity: 0.5, calibration: {samples: 8, seq_len: 16, batch_size: 4}}
          gptq:
            uses: quantize/gptq
            with: {model: "${pretrain.model}", data: "${text.dataset}", bits: 4, group_size: 16, calibration: {samples: 8, seq_len: 16, batch_size: 4}}
          recover:
            uses: train/causal-lm
            with: {model: "${wanda.model}", data: "${text.dataset}", steps: 10, lr: 0.003, batch_size: 8}
          ppl:
            uses: eval/perplexity
            with: {models: {dense: "${pretrain.model}", wanda: "${wanda.model}", gptq: "${gptq.model}", recovered: "${recover.model}"}, data: "${text.dataset}", seq_len: 16}
          generate:
            uses: eval/generate
            with: {models: {dense: "${pretrain.model}", gptq: "${gptq.model}"}, prompts: ["the cat", "the dog saw"], max_new_tokens: 6, repeats: 1}
        """

    @Test func pretrainCompressEvaluateAndGenerate() throws {
        let project = try Project("decoder-stages")
        _ = try project.write("recipe/train.txt", Self.text)
        _ = try project.write("recipe/test.txt", String(Self.text.split(separator: "\n").reversed().joined(separator: "\n")))
        _ = try project.write("recipe/recipe.yaml", Self.recipe)
        let result = try project.run(timeout: 600)
        #expect(result.status == 0, "\(result)")

        let training = try ModelStagesTests.metrics(project, runID: result.runID, stage: "pretrain")
        let loss = training["train_loss"] as? Double ?? .nan
        #expect(loss.isFinite && loss < log(300.0), "\(training)")
        #expect(training["valid_perplexity"] as? Double ?? .infinity < 300, "\(training)")

        let ppl = try ModelStagesTests.metrics(project, runID: result.runID, stage: "ppl")
        let dense = ppl["dense.perplexity"] as? Double ?? .nan
        let gptq = ppl["gptq.perplexity"] as? Double ?? .nan
        let wanda = ppl["wanda.perplexity"] as? Double ?? .nan
        #expect(dense.isFinite && dense > 1 && dense < 300, "\(ppl)")
        #expect(gptq.isFinite && wanda.isFinite, "\(ppl)")
        let sparsity = ppl["wanda.sparsity"] as? Double ?? 0
        #expect(abs(sparsity - 0.5) < 0.02, "\(ppl)")
        // Fine-tuning the pruned model keeps its zeros; a quantized model reports zeros, not sparsity.
        #expect(abs((ppl["recovered.sparsity"] as? Double ?? 0) - sparsity) < 1e-9, "\(ppl)")
        #expect(ppl["gptq.sparsity"] == nil && ppl["gptq.zero_fraction"] is Double, "\(ppl)")

        let json: [String: Any]? = try PruneOneShotStageTests.report(project, result.runID, "generate")
        let samples = (json?["dense"] as? [String: Any])?["samples"] as? [[String: Any]] ?? []
        #expect(samples.count == 2 && samples.allSatisfy { ($0["tokens"] as? [Int])?.count == 6 }, "\(json ?? [:])")
        let generation = try ModelStagesTests.metrics(project, runID: result.runID, stage: "generate")
        #expect((generation["gptq.decode_tokens_per_s"] as? Double ?? 0) > 0, "\(generation)")

        // The trained artifact is a Hugging Face checkpoint directory: it imports as a decoder.
        // … also when its weights are split into shards, as `save_pretrained` writes large models.
        let trained = try ModelStagesTests.outputDirectory(project, runID: result.runID, stage: "pretrain", output: "model")
        let sharded = project.path("sharded")
        try FileManager.default.createDirectory(atPath: sharded, withIntermediateDirectories: true)
        for name in ["config.json", "tokenizer.json"] {
            try FileManager.default.copyItem(atPath: trained + "/" + name, toPath: sharded + "/" + name)
        }
        let model = try DecoderModel(directory: trained)
        let tensors = model.weights.map { name, tensor in (name: name, tensor: tensor) }.elements
        let half = tensors.count / 2
        var weightMap: [String: String] = [:]
        for (index, part) in [Array(tensors[..<half]), Array(tensors[half...])].enumerated() {
            let file = "model-0000\(index + 1)-of-00002.safetensors"
            try SafetensorsWriter.write(tensors: part, to: sharded + "/" + file)
            for tensor in part { weightMap[tensor.name] = file }
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap], options: [.sortedKeys])
        try index.write(to: URL(fileURLWithPath: sharded + "/model.safetensors.index.json"))
        for source in [trained, sharded] {
            _ = try project.write("import/recipe.yaml", """
                version: 1
                name: import
                stages:
                  base:
                    uses: model/import
                    with: {directory: \(source)}
                """)
            let imported = try project.run("import/recipe.yaml", timeout: 120)
            #expect(imported.status == 0, "\(imported)")
            let metrics = try ModelStagesTests.metrics(project, runID: imported.runID, stage: "base")
            #expect(metrics["architecture"] as? String == "llama" && metrics["parameters"] as? Int == model.parameterCount, "\(metrics)")
            let directory = try ModelStagesTests.outputDirectory(project, runID: imported.runID, stage: "base", output: "model")
            let reloaded = try DecoderModel(directory: directory)
            #expect(zip(reloaded.weights.elements, model.weights.elements).allSatisfy { $0.floats == $1.floats })
        }

        let second = try project.run(timeout: 300)
        #expect(second.status == 0 && second.stderr.contains("ppl: cached"), "\(second)")
    }

    @Test func decoderMistakesAreErrorsAtTheirParameter() throws {
        let project = try Project("decoder-stages-errors")
        _ = try project.write("recipe/train.txt", Self.text)
        _ = try project.write("recipe/test.txt", Self.text)
        let recipe = Self.recipe
            .replacingOccurrences(of: "max_position_embeddings: 64", with: "max_position_embeddings: 8")
        _ = try project.write("recipe/recipe.yaml", recipe)
        let result = try project.run(timeout: 300)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("block_size 16 is longer than the model's context of 8"), "\(result)")
        #expect(result.stderr.range(of: #"recipe\.yaml:\d+:\d+: "#, options: .regularExpression) != nil, "\(result)")

        // A window or a prompt that does not fit the context fails before any work, at its parameter.
        let tooLong = Self.recipe
            .replacingOccurrences(of: "seq_len: 16}", with: "seq_len: 65}")
            .replacingOccurrences(of: "max_new_tokens: 6", with: "max_new_tokens: 70")
        _ = try project.write("recipe/recipe.yaml", tooLong)
        let windows = try project.run("recipe/recipe.yaml", ["--keep-going"], timeout: 300)
        #expect(windows.status == 1, "\(windows)")
        #expect(windows.stderr.range(of: #"recipe\.yaml:\d+:\d+: `seq_len`: 65 is longer than model `dense`'s context of 64 tokens"#, options: .regularExpression) != nil, "\(windows)")
        #expect(windows.stderr.range(of: #"recipe\.yaml:\d+:\d+: `prompts`: prompt 1 has \d+ tokens; with max_new_tokens 70 it exceeds model `dense`'s context of 64"#, options: .regularExpression) != nil, "\(windows)")

        let unsupported = Self.recipe.replacingOccurrences(of: "model_type: llama", with: "model_type: falcon")
        _ = try project.write("recipe/recipe.yaml", unsupported)
        let second = try project.run(timeout: 300)
        #expect(second.status == 1, "\(second)")
        #expect(second.stderr.contains("`llama`, `mistral`, `qwen2`, `gpt2`"), "\(second)")
    }

    /// Mistakes that only the stages' inputs reveal fail those stages before
    /// any work, each at the parameter that caused it; the others still run.
    @Test func inputMistakesFailAtTheirParameter() throws {
        let project = try Project("decoder-input-errors")
        _ = try project.write("recipe/train.txt", Self.text)
        _ = try project.write("recipe/test.txt", Self.text)
        _ = try project.write("recipe/recipe.yaml", """
            version: 1
            name: decoder-errors
            backend: cpu
            seed: 7
            stages:
              bpe:
                uses: tokenizer/train-bpe
                with: {files: [train.txt], vocab_size: 300}
              other_bpe:
                uses: tokenizer/train-bpe
                with: {files: [train.txt], vocab_size: 280}
              text:
                uses: data/text
                with: {tokenizer: "${bpe.tokenizer}", train: [train.txt], test: [test.txt], block_size: 16}
              pretrain:
                uses: train/causal-lm
                with:
                  config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 64}
                  tokenizer: ${bpe.tokenizer}
                  data: ${text.dataset}
                  steps: 2
              wrong_tokenizer:
                uses: train/causal-lm
                with:
                  config: {model_type: llama, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 64}
                  tokenizer: ${other_bpe.tokenizer}
                  data: ${text.dataset}
                  steps: 2
              long_windows:
                uses: prune/oneshot
                with: {model: "${pretrain.model}", data: "${text.dataset}", method: wanda, sparsity: 0.5, calibration: {samples: 2, seq_len: 65}}
              no_split:
                uses: quantize/gptq
                with: {model: "${pretrain.model}", data: "${text.dataset}", calibration: {split: nosuch, samples: 2}}
              ppl:
                uses: eval/perplexity
                with: {models: {dense: "${pretrain.model}"}, data: "${text.dataset}", split: nosuch}
              generate:
                uses: eval/generate
                with: {models: {dense: "${pretrain.model}"}, prompts: [""], max_new_tokens: 2, repeats: 1}
            """)
        let result = try project.run("recipe/recipe.yaml", ["--keep-going"], timeout: 300)
        #expect(result.status == 1, "\(result)")
        for expected in [
            #"recipe\.yaml:26:\d+: `tokenizer`: the dataset was tokenized with another tokenizer"#,
            #"recipe\.yaml:31:\d+: `calibration`: `calibration\.seq_len` 65 is longer than the model's context of 64 tokens"#,
            #"recipe\.yaml:34:\d+: `calibration`: the dataset has no `nosuch` split \(it has train, test\)"#,
            #"recipe\.yaml:37:\d+: `split`: the dataset has no `nosuch` split \(it has train, test\)"#,
            #"recipe\.yaml:40:\d+: `prompts`: prompt 1 is empty after tokenization"#,
        ] {
            #expect(result.stderr.range(of: expected, options: .regularExpression) != nil, "\(expected)\n\(result)")
        }
        #expect(result.stderr.contains("pretrain: done"), "\(result)")
    }
}
