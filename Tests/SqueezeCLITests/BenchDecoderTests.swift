import Foundation
import Testing

/// `squeeze bench decoder` runs on a tiny config and prints every field the
/// comparison script reads (no timing is asserted: only that it is there).
@Suite struct BenchDecoderTests {
    static let tinyConfig = """
        {"vocab_size": 40, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32, "tie_word_embeddings": true}
        """

    static let quick = [
        "--repeats", "1", "--warmup", "0", "--batch", "2", "--seq-len", "8", "--prompt-len", "5", "--decode-tokens", "3",
        "--group-size", "16", "--threads", "1",
    ]

    @Test func printsEveryFieldAsJSON() throws {
        let project = try Project("bench-decoder")
        try project.write("tiny.json", Self.tinyConfig)
        let result = try project.squeeze(["bench", "decoder", "tiny.json", "--json"] + Self.quick, timeout: 120)
        #expect(result.status == 0, "\(result)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")

        #expect(object["squeeze"] is String)
        #expect(object["threads"] as? Int == 1)
        let machine = try #require(object["machine"] as? [String: Any])
        for key in ["cpu", "kernel_tier", "kernel_variant", "gemm", "gemm_core"] {
            #expect(machine[key] is String, "machine.\(key)")
        }
        for key in ["load_average_before", "load_average_after"] {
            #expect((object[key] as? [Double])?.count == 3, "\(key)")
        }
        let model = try #require(object["model"] as? [String: Any])
        #expect(model["model_type"] as? String == "llama")
        #expect(model["hidden_size"] as? Int == 16)
        #expect(model["num_key_value_heads"] as? Int == 2)
        #expect(model["intermediate_size"] as? Int == 32)
        #expect(model["tie_word_embeddings"] as? Bool == true)
        // Embeddings 40·16, per layer 4 projections (16·16, 16·16, 16·8, 16·8 → 768) + 3·16·32 + 2 norms, final norm.
        #expect(model["parameters"] as? Int == 40 * 16 + 2 * (768 + 3 * 16 * 32 + 2 * 16) + 16)
        let settings = try #require(object["settings"] as? [String: Any])
        #expect(settings["batch"] as? Int == 2)
        #expect(settings["seq_len"] as? Int == 8)
        #expect(settings["prompt_len"] as? Int == 5)
        #expect(settings["decode_tokens"] as? Int == 3)
        #expect(settings["group_size"] as? Int == 16)

        for key in ["train_step", "prefill"] {
            let timing = try #require(object[key] as? [String: Any], "\(key)")
            #expect(timing["ms"] is Double, "\(key).ms")
            #expect(timing["tokens_per_s"] is Double, "\(key).tokens_per_s")
            #expect((timing["samples_ms"] as? [Double])?.count == 1, "\(key).samples_ms")
        }
        for key in ["decode", "decode_int4", "decode_int8"] {
            let decode = try #require(object[key] as? [String: Any], "\(key)")
            for field in ["ms", "ms_per_token", "tokens_per_s", "prefill_ms"] {
                #expect(decode[field] is Double, "\(key).\(field)")
            }
            #expect((decode["samples_ms"] as? [Double])?.count == 1, "\(key).samples_ms")
            #expect((decode["block_linear_bytes"] as? Int ?? 0) > 0, "\(key).block_linear_bytes")
            if key == "decode" {
                #expect(decode["speedup_over_fp32"] == nil && decode["same_tokens_as_fp32"] == nil)
            } else {
                #expect(decode["speedup_over_fp32"] is Double, "\(key).speedup_over_fp32")
                #expect((0...4).contains(decode["same_tokens_as_fp32"] as? Int ?? -1), "\(key).same_tokens_as_fp32")
            }
        }
        let bytes = ["decode", "decode_int4", "decode_int8"].map {
            ((object[$0] as? [String: Any])?["block_linear_bytes"] as? Int) ?? 0
        }
        #expect(bytes[1] < bytes[2] && bytes[2] < bytes[0], "int4 < int8 < fp32 bytes: \(bytes)")
    }

    /// 128 does not divide the tiny config's widths (16, 32): the default is their largest common divisor.
    @Test func theDefaultGroupSizeDividesEveryBlockWidth() throws {
        let project = try Project("bench-decoder-group")
        let result = try project.squeeze(["bench", "decoder", Self.tinyConfig, "--json"] + Self.quick.dropLast(4), timeout: 120)
        #expect(result.status == 0, "\(result)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        #expect((object["settings"] as? [String: Any])?["group_size"] as? Int == 16)
    }

    @Test func theTableNamesTheCPUAndEveryMeasurement() throws {
        let project = try Project("bench-decoder-table")
        let result = try project.squeeze(["bench", "decoder", Self.tinyConfig] + Self.quick, timeout: 120)
        #expect(result.status == 0, "\(result)")
        for text in ["family", "train step", "prefill", "decode fp32", "decode int4", "decode int8", "load average"] {
            #expect(result.stdout.contains(text), "\(text) in \(result.stdout)")
        }
    }

    @Test func badInputIsAUsageError() throws {
        let project = try Project("bench-decoder-errors")
        let long = try project.squeeze(["bench", "decoder", Self.tinyConfig, "--seq-len", "8", "--prompt-len", "30", "--decode-tokens", "8"])
        #expect(long.status == 2, "\(long)")
        #expect(long.stderr.contains("39 positions are needed"), "\(long.stderr)")
        let training = try project.squeeze(["bench", "decoder", Self.tinyConfig, "--prompt-len", "4"])
        #expect(training.status == 2, "\(training)")
        #expect(training.stderr.contains("--seq-len 128 is longer than the config's context of 32"), "\(training.stderr)")
        let group = try project.squeeze(["bench", "decoder", Self.tinyConfig, "--group-size", "24"] + Self.quick.dropLast(4))
        #expect(group.status == 2, "\(group)")
        #expect(group.stderr.contains("model.layers.0.self_attn.q_proj"), "\(group.stderr)")
        let missing = try project.squeeze(["bench", "decoder", "no-such.json"])
        #expect(missing.status == 2, "\(missing)")
        #expect(missing.stderr.contains("no-such.json"), "\(missing.stderr)")
        let bert = try project.squeeze(["bench", "decoder", #"{"model_type": "bert"}"#])
        #expect(bert.status == 2, "\(bert)")
        #expect(bert.stderr.contains("not a supported decoder"), "\(bert.stderr)")
    }
}
