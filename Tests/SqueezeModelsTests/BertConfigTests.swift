import Foundation
import Testing
@testable import SqueezeModels

@Suite struct BertConfigTests {
    static let minimal = #"{"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16}"#

    private func decode(_ json: String) throws(ModelFileError) -> BertConfig {
        try BertConfig(json: Data(json.utf8), file: "config.json")
    }

    /// The error message for `json`, or nil when it decodes.
    private func failure(_ json: String) -> String? {
        do {
            _ = try decode(json)
            return nil
        } catch {
            return error.description
        }
    }

    /// `minimal` with `key` set to the JSON `value` (or removed when nil).
    private func minimal(_ key: String, _ value: String?) -> String {
        var object = (try? JSONSerialization.jsonObject(with: Data(Self.minimal.utf8))) as? [String: Any] ?? [:]
        object[key] = nil
        var text = String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data(), as: UTF8.self)
        if let value { text = String(text.dropLast()) + #","\#(key)":\#(value)}"# }
        return text
    }

    @Test func defaultsFollowTransformers() throws {
        let config = try decode(Self.minimal)
        #expect(config.headDimension == 4)
        #expect(config.maxPositionEmbeddings == 512 && config.typeVocabSize == 2)
        #expect(config.layerNormEpsilon == 1e-12 && config.initializerRange == 0.02)
        #expect(config.hiddenDropoutProbability == 0.1 && config.attentionDropoutProbability == 0.1)
        #expect(config.labels == ["LABEL_0", "LABEL_1"])
        #expect(config.pooling == nil && config.classifierDropoutProbability == nil)
    }

    @Test func realMiniLMConfigDecodes() throws {
        let file = BertParityTests.modelDirectory.appendingPathComponent("config.json").path
        guard FileManager.default.fileExists(atPath: file) else {
            return BertParityTests.skip("\(file) is missing (run scripts/fetch-model)")
        }
        let config = try BertConfig(contentsOfFile: file)
        #expect(config.hiddenSize == 384 && config.numHiddenLayers == 6 && config.numAttentionHeads == 12)
        #expect(config.intermediateSize == 1536 && config.vocabSize == 30522 && config.headDimension == 32)
    }

    @Test func labelsFromID2LabelOrNumLabels() throws {
        #expect(try decode(minimal("id2label", #"{"1": "pos", "0": "neg"}"#)).labels == ["neg", "pos"])
        #expect(try decode(minimal("num_labels", "3")).labels == ["LABEL_0", "LABEL_1", "LABEL_2"])
        #expect(failure(minimal("id2label", #"{"0": "a", "2": "b"}"#))?.contains("keys must be 0..<2") == true)
        #expect(failure(minimal("id2label", #"{"0": "a", "00": "b"}"#)) == "config.json: `id2label` has duplicate label ids")
        #expect(failure(minimal("num_labels", "0"))?.contains("positive") == true)
    }

    @Test func rejectsBadFieldsWithTheKey() {
        #expect(failure(minimal("hidden_size", nil)) == "config.json: missing required field `hidden_size`")
        #expect(failure(minimal("hidden_size", #""8""#)) == "config.json: `hidden_size` must be an integer")
        #expect(failure(minimal("hidden_size", "true")) == "config.json: `hidden_size` must be an integer")
        #expect(failure(minimal("hidden_size", "8.5")) == "config.json: `hidden_size` must be an integer")
        #expect(failure(minimal("num_hidden_layers", "0")) == "config.json: `num_hidden_layers` must be positive, got 0")
        #expect(failure(minimal("num_attention_heads", "3")) == "config.json: hidden_size 8 is not divisible by num_attention_heads 3")
        #expect(failure(minimal("hidden_act", #""relu""#))?.contains("hidden_act `relu` is not supported") == true)
        #expect(failure(minimal("layer_norm_eps", "-1")) == "config.json: `layer_norm_eps` must be a positive number, got -1.0")
        #expect(failure(minimal("layer_norm_eps", #""small""#)) == "config.json: `layer_norm_eps` must be a number")
        #expect(failure(minimal("hidden_dropout_prob", "1.0"))?.contains("must be in [0, 1)") == true)
        #expect(failure(minimal("model_type", #""roberta""#))?.contains("model_type `roberta`") == true)
        #expect(failure(minimal("position_embedding_type", #""relative_key""#))?.contains("not supported") == true)
        #expect(failure(minimal("squeeze_pooling", #""max""#)) == "config.json: `squeeze_pooling` must be one of `pooler`, `mean`")
        #expect(failure(minimal("pad_token_id", "30"))?.contains("outside the vocabulary") == true)
        #expect(failure("[1, 2]") == "config.json: config is not a JSON object")
        #expect(failure("{") == "config.json: config is not valid JSON")
    }

    @Test func missingFileIsAModelFileError() {
        #expect(throws: ModelFileError.self) { try BertConfig(contentsOfFile: "/nonexistent/config.json") }
    }

    @Test func jsonRoundTripsAndIsDeterministic() throws {
        var config = try decode(minimal("id2label", #"{"0": "neg", "1": "pos"}"#))
        config.pooling = .mean
        config.classifierDropoutProbability = 0.2
        let data = config.jsonData()
        #expect(try BertConfig(json: data, file: "saved") == config)
        #expect(config.jsonData() == data)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["num_labels"] as? Int == 2)
        #expect(object["label2id"] as? [String: Int] == ["neg": 0, "pos": 1])
        #expect(object["model_type"] as? String == "bert")
    }
}
