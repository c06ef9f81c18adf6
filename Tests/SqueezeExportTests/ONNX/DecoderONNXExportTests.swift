import Foundation
import SqueezeCompress
import SqueezeExport
import SqueezeModels
import SqueezeONNXProto
import SqueezeSupport
import SqueezeTensor
import Testing

/// Tiny random decoders of every family the ONNX export supports, with norms
/// and biases away from 1 and 0 so that every parameter matters.
enum TinyDecoders {
    enum Kind: String, CaseIterable, CustomStringConvertible, Sendable {
        case llamaGQA, llama3Tied, mistral, qwen2MQA, gpt2
        var description: String { rawValue }
    }

    static func config(_ kind: Kind) -> DecoderConfig {
        switch kind {
        case .llamaGQA:
            DecoderConfig(
                family: .llama, vocabSize: 23, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
                numKeyValueHeads: 2, maxPositionEmbeddings: 32, initializerRange: 0.4)
        case .llama3Tied:
            DecoderConfig(
                family: .llama, vocabSize: 23, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 2, numAttentionHeads: 2,
                maxPositionEmbeddings: 32,
                positions: .rotary(
                    theta: 500, scaling: .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8)),
                tieWordEmbeddings: true, initializerRange: 0.4)
        case .mistral:
            DecoderConfig(
                family: .mistral, vocabSize: 23, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
                numKeyValueHeads: 2, maxPositionEmbeddings: 32, initializerRange: 0.4, slidingWindow: 12)
        case .qwen2MQA:
            DecoderConfig(
                family: .qwen2, vocabSize: 23, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
                numKeyValueHeads: 1, maxPositionEmbeddings: 32, queryKeyValueBias: true, initializerRange: 0.4)
        case .gpt2:
            DecoderConfig(
                family: .gpt2, vocabSize: 19, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 2,
                maxPositionEmbeddings: 32, normEpsilon: 1e-5, positions: .learned, queryKeyValueBias: true, outputBias: true,
                mlpBias: true, tieWordEmbeddings: true, attentionDropout: 0.1, residualDropout: 0.1, initializerRange: 0.4)
        }
    }

    static func model(_ kind: Kind, seed: UInt64? = nil) throws -> DecoderModel {
        let seed = seed ?? 7 + UInt64(Kind.allCases.firstIndex(of: kind) ?? 0)
        let model = try DecoderModel(randomWithConfig: config(kind), seed: seed)
        let weights = model.weights.map { name, tensor -> Tensor in
            guard name.contains("norm") || name.hasSuffix(".bias") else { return tensor }
            var generator = SeededGenerator(seed: UInt64(name.utf8.count) + seed)
            return Tensor.uniform(shape: tensor.shape, in: 0.5..<1.5, generator: &generator)
        }
        return try DecoderModel(config: model.config, weights: weights)
    }

    /// Deterministic token ids of `count` tokens for row `row`.
    static func ids(_ count: Int, row: Int, vocabulary: Int) -> [Int] {
        (0..<count).map { (($0 + 1) * 7 + row * 5 + $0 * $0) % vocabulary }
    }
}

/// Runs `onnx_decoder_loop.py`: for each model, sequences of steps whose
/// `present` is fed back as `past`. Several models share one Python start.
enum DecoderLoopPeer {
    struct Step: Codable {
        var input_ids: [[Int]]
        var attention_mask: [[Int]]
    }

    struct Sequence: Codable { var steps: [Step] }

    struct Model: Codable {
        var path: String
        var sequences: [Sequence]
        var session_config: [String: String]

        init(_ file: URL, _ sequences: [Sequence], sessionConfig: [String: String] = [:]) {
            self.path = file.path
            self.sequences = sequences
            self.session_config = sessionConfig
        }
    }

    struct Request: Codable {
        var models: [Model]
        var optimization: String
        var threads: Int
    }

    struct StepResult: Codable {
        var logits: ONNXRuntimePeer.Output
        var present_length: Int
    }

    struct SequenceResult: Codable { var steps: [StepResult] }
    struct ModelResult: Codable { var sequences: [SequenceResult] }
    struct Report: Codable { var models: [ModelResult] }

    /// The results of every model's sequences, in order.
    static func run(_ models: [Model], in directory: URL, optimized: Bool = true) throws -> [ModelResult] {
        let request = directory.appendingPathComponent("loop-request-\(UUID().uuidString).json")
        let result = directory.appendingPathComponent("loop-result-\(UUID().uuidString).json")
        defer {
            try? FileManager.default.removeItem(at: request)
            try? FileManager.default.removeItem(at: result)
        }
        try JSONEncoder().encode(Request(models: models, optimization: optimized ? "all" : "disabled", threads: 1)).write(to: request)
        let outcome = try PythonPeers.run([PythonPeers.script("onnx_decoder_loop.py").path, request.path, result.path])
        guard outcome.status == 0 else {
            throw ONNXRuntimePeer.Failure(description: "onnx_decoder_loop.py exited with \(outcome.status): \(outcome.stderr.suffix(2000))")
        }
        let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: result))
        guard report.models.count == models.count else {
            throw ONNXRuntimePeer.Failure(description: "\(report.models.count) results for \(models.count) models")
        }
        return report.models
    }

    /// One model's sequences.
    static func run(model file: URL, _ sequences: [Sequence], sessionConfig: [String: String] = [:]) throws -> [SequenceResult] {
        try run([Model(file, sequences, sessionConfig: sessionConfig)], in: file.deletingLastPathComponent()).first?.sequences ?? []
    }
}

@Suite struct DecoderONNXExportTests {
    static let backend = CPUBackend(threads: 1)
    static let tolerance: Float = 1e-4

    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-decoder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func write(_ model: Onnx_ModelProto, in directory: URL, as name: String = "model.onnx") throws -> URL {
        let file = directory.appendingPathComponent(name)
        try model.serializedBytes().write(to: file)
        return file
    }

    /// Squeeze's logits `[T, vocab]` of one unpadded row.
    static func squeezeLogits(_ forward: DecoderInference.Forward, _ ids: [Int]) -> [Float] {
        var cache: DecoderKVCache?
        return forward(Tensor(shape: [1, ids.count], int32s: ids.map { Int32($0) }), &cache).floats
    }

    /// A padded batch of `rows` (left or right padding with id 0), with its mask.
    static func padded(_ rows: [[Int]], left: Bool) -> (ids: [[Int]], mask: [[Int]]) {
        let width = rows.map(\.count).max() ?? 0
        var ids: [[Int]] = [], mask: [[Int]] = []
        for row in rows {
            let padding = Array(repeating: 0, count: width - row.count)
            ids.append(left ? padding + row : row + padding)
            let ones = Array(repeating: 1, count: row.count)
            mask.append(left ? padding + ones : ones + padding)
        }
        return (ids, mask)
    }

    /// The largest |ORT − Squeeze| over the real tokens of each row: `output`
    /// is `[B, W, vocab]` for the padded batch of `rows`.
    static func worstDifference(
        _ output: ONNXRuntimePeer.Output, rows: [[Int]], left: Bool, vocabulary: Int, forward: DecoderInference.Forward
    ) -> Float {
        let width = rows.map(\.count).max() ?? 0
        let got = output.floats
        var worst: Float = 0
        for (index, row) in rows.enumerated() {
            let expected = squeezeLogits(forward, row)
            let offset = left ? width - row.count : 0
            for position in 0..<row.count {
                for token in 0..<vocabulary {
                    let a = got[(index * width + offset + position) * vocabulary + token]
                    let b = expected[position * vocabulary + token]
                    worst = max(worst, abs(a - b))
                }
            }
        }
        return worst
    }

    /// Batches the no-cache test runs: batch 1 at several lengths, batch 3
    /// unpadded, left-padded and right-padded.
    static func noCacheCases(vocabulary: Int, maximum: Int) -> [(rows: [[Int]], left: Bool)] {
        let long = min(11, maximum)
        return [
            ([TinyDecoders.ids(1, row: 0, vocabulary: vocabulary)], true),
            ([TinyDecoders.ids(6, row: 1, vocabulary: vocabulary)], true),
            ([TinyDecoders.ids(long, row: 2, vocabulary: vocabulary)], true),
            ((0..<3).map { TinyDecoders.ids(long, row: $0, vocabulary: vocabulary) }, true),
            ([long, long - 4, 1].enumerated().map { TinyDecoders.ids($1, row: $0 + 3, vocabulary: vocabulary) }, true),
            ([2, long, long - 1].enumerated().map { TinyDecoders.ids($1, row: $0 + 6, vocabulary: vocabulary) }, false),
        ]
    }

    /// One model for `checkWithoutCache`: its graph and Squeeze's forward.
    struct Candidate {
        var label: String
        var graph: Onnx_ModelProto
        var config: DecoderConfig
        var forward: DecoderInference.Forward
        var sessionConfig: [String: String] = [:]
    }

    /// Runs every `noCacheCases` batch through each candidate's graph in one
    /// Python start and compares the real tokens' logits with Squeeze's.
    static func checkWithoutCache(_ candidates: [Candidate]) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var models: [DecoderLoopPeer.Model] = []
        for (index, candidate) in candidates.enumerated() {
            let file = try write(candidate.graph, in: directory, as: "model-\(index).onnx")
            let sequences = noCacheCases(vocabulary: candidate.config.vocabSize, maximum: candidate.config.maximumSequenceLength).map { rows, left in
                let batch = padded(rows, left: left)
                return DecoderLoopPeer.Sequence(steps: [DecoderLoopPeer.Step(input_ids: batch.ids, attention_mask: batch.mask)])
            }
            models.append(DecoderLoopPeer.Model(file, sequences, sessionConfig: candidate.sessionConfig))
        }
        let results = try DecoderLoopPeer.run(models, in: directory)
        for (candidate, result) in zip(candidates, results) {
            let config = candidate.config
            let cases = noCacheCases(vocabulary: config.vocabSize, maximum: config.maximumSequenceLength)
            for ((rows, left), sequence) in zip(cases, result.sequences) {
                let output = try #require(sequence.steps.first).logits
                #expect(output.shape == [rows.count, rows.map(\.count).max() ?? 0, config.vocabSize])
                let worst = worstDifference(output, rows: rows, left: left, vocabulary: config.vocabSize, forward: candidate.forward)
                #expect(
                    worst <= tolerance,
                    "\(candidate.label): batch \(rows.map(\.count)) \(left ? "left" : "right")-padded: max |Δlogit| \(worst)")
            }
        }
    }

    @Test func logitsWithoutCacheMatchSqueeze() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "DecoderONNXExportTests") else { return }
        let candidates = try TinyDecoders.Kind.allCases.map { kind in
            let model = try TinyDecoders.model(kind)
            // GPT-2 at opset 21 takes the Gelu(tanh) op, Llama 3 ReduceMean with an axes input; the others the opset-17 forms.
            let opset = kind == .gpt2 || kind == .llama3Tied ? 21 : 17
            return Candidate(
                label: "\(kind)", graph: try DecoderONNXExport.model(model, opset: opset, kvCache: false), config: model.config,
                forward: model.forward(backend: Self.backend))
        }
        try Self.checkWithoutCache(candidates)
    }

    /// Prefill, then steps fed `present` as `past`: every step's logits equal
    /// the full-sequence logits of Squeeze without a cache and those of
    /// Squeeze's own KV-cache forward. Covers batch 3 (unpadded and
    /// left-padded), batch 1, and a 3-token step after a non-empty past.
    /// Rows of token sequences, left-padded to the longest, and how many
    /// columns of that padded timeline each step feeds (prefill first).
    typealias Scenario = (rows: [[Int]], steps: [Int])

    static func kvScenarios(vocabulary: Int) -> [Scenario] {
        [
            ((0..<3).map { TinyDecoders.ids(8, row: $0, vocabulary: vocabulary) }, [5, 1, 1, 1]),
            ([8, 6, 5].enumerated().map { TinyDecoders.ids($1, row: $0 + 3, vocabulary: vocabulary) }, [5, 1, 1, 1]),
            ([TinyDecoders.ids(7, row: 9, vocabulary: vocabulary)], [3, 3, 1]),
        ]
    }

    /// The loop's steps of `scenario`: each step's ids and the mask of everything so far.
    static func kvSequence(_ scenario: Scenario) -> DecoderLoopPeer.Sequence {
        let (rows, steps) = scenario
        let width = rows.map(\.count).max() ?? 0
        let padding = rows.map { width - $0.count }
        var batchSteps: [DecoderLoopPeer.Step] = []
        var seen = 0
        for length in steps {
            let ids = rows.enumerated().map { row, tokens -> [Int] in
                let paddedRow = Array(repeating: 0, count: padding[row]) + tokens
                return Array(paddedRow[seen..<(seen + length)])
            }
            seen += length
            let mask = rows.indices.map { row in (0..<seen).map { $0 < padding[row] ? 0 : 1 } }
            batchSteps.append(DecoderLoopPeer.Step(input_ids: ids, attention_mask: mask))
        }
        return DecoderLoopPeer.Sequence(steps: batchSteps)
    }

    /// Prefill, then steps fed `present` as `past`: every step's logits equal
    /// the full-sequence logits of Squeeze without a cache and (rows
    /// unpadded) those of Squeeze's own KV-cache forward. Covers batch 3
    /// (unpadded and left-padded), batch 1, and a 3-token step after a
    /// non-empty past, for every family in one Python start.
    @Test func kvCacheLoopMatchesSqueeze() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "DecoderONNXExportTests") else { return }
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let models = try TinyDecoders.Kind.allCases.map { try TinyDecoders.model($0) }
        var requests: [DecoderLoopPeer.Model] = []
        for (kind, model) in zip(TinyDecoders.Kind.allCases, models) {
            let file = try Self.write(try DecoderONNXExport.model(model, opset: 17, kvCache: true), in: directory, as: "\(kind).onnx")
            requests.append(DecoderLoopPeer.Model(file, Self.kvScenarios(vocabulary: model.config.vocabSize).map(Self.kvSequence)))
        }
        let results = try DecoderLoopPeer.run(requests, in: directory)
        for ((kind, model), result) in zip(zip(TinyDecoders.Kind.allCases, models), results) {
            let scenarios = Self.kvScenarios(vocabulary: model.config.vocabSize)
            for (scenario, sequence) in zip(scenarios, result.sequences) {
                Self.checkLoop(kind: kind, model: model, scenario: scenario, results: sequence.steps)
            }
        }
    }

    static func checkLoop(kind: TinyDecoders.Kind, model: DecoderModel, scenario: Scenario, results: [DecoderLoopPeer.StepResult]) {
        let (rows, steps) = scenario
        let config = model.config, vocabulary = config.vocabSize
        let forward = model.forward(backend: Self.backend)
        let width = rows.map(\.count).max() ?? 0
        let padding = rows.map { width - $0.count }
        // Squeeze without a cache, per unpadded row.
        let full = rows.map { Self.squeezeLogits(forward, $0) }
        // Squeeze's KV-cache forward, when the rows are not padded.
        var cached: [[Float]] = []
        if padding.allSatisfy({ $0 == 0 }) {
            var cache: DecoderKVCache? = DecoderKVCache(config: config, batch: rows.count, capacity: width)
            var start = 0
            for step in steps {
                let ids = rows.flatMap { $0[start..<(start + step)].map { Int32($0) } }
                cached.append(forward(Tensor(shape: [rows.count, step], int32s: ids), &cache).floats)
                start += step
            }
        }
        guard results.count == steps.count else {
            Issue.record("\(kind): \(results.count) step results for \(steps.count) steps")
            return
        }
        var start = 0
        var worstFull: Float = 0, worstCached: Float = 0
        for (index, length) in steps.enumerated() {
            let got = results[index].logits.floats
            #expect(results[index].logits.shape == [rows.count, length, vocabulary])
            #expect(results[index].present_length == start + length)
            for row in rows.indices {
                for position in 0..<length {
                    let timeline = start + position - padding[row]
                    guard timeline >= 0 else { continue }
                    for token in 0..<vocabulary {
                        let value = got[(row * length + position) * vocabulary + token]
                        worstFull = max(worstFull, abs(value - full[row][timeline * vocabulary + token]))
                        if !cached.isEmpty {
                            worstCached = max(worstCached, abs(value - cached[index][(row * length + position) * vocabulary + token]))
                        }
                    }
                }
            }
            start += length
        }
        #expect(worstFull <= Self.tolerance, "\(kind) rows \(rows.map(\.count)) steps \(steps): vs no-cache max |Δlogit| \(worstFull)")
        #expect(worstCached <= Self.tolerance, "\(kind) rows \(rows.map(\.count)) steps \(steps): vs KV-cache max |Δlogit| \(worstCached)")
    }

    /// Mistral's sliding window: with one layer and a window of 4, position
    /// `t` sees exactly tokens `t−3…t`, and rotary attention depends only on
    /// relative positions, so its logits are Squeeze's logits of the last
    /// token of those 4 tokens alone (Squeeze itself refuses sequences longer
    /// than the window).
    @Test func mistralSlidingWindowMasksKeysOutsideIt() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "DecoderONNXExportTests") else { return }
        var config = TinyDecoders.config(.mistral)
        config.numHiddenLayers = 1
        config.slidingWindow = 4
        let random = try DecoderModel(randomWithConfig: config, seed: 5)
        let model = try DecoderModel(config: config, weights: random.weights)
        let forward = model.forward(backend: Self.backend)
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try Self.write(try DecoderONNXExport.model(model, kvCache: true), in: directory)
        let tokens = TinyDecoders.ids(10, row: 1, vocabulary: config.vocabSize)
        // The whole sequence at once, and a 6-token prefill followed by 4 one-token steps.
        var steps = [DecoderLoopPeer.Step(input_ids: [Array(tokens.prefix(6))], attention_mask: [Array(repeating: 1, count: 6)])]
        for position in 6..<10 {
            steps.append(DecoderLoopPeer.Step(input_ids: [[tokens[position]]], attention_mask: [Array(repeating: 1, count: position + 1)]))
        }
        let report = try DecoderLoopPeer.run(model: file, [
            DecoderLoopPeer.Sequence(steps: [DecoderLoopPeer.Step(input_ids: [tokens], attention_mask: [tokens.map { _ in 1 }])]),
            DecoderLoopPeer.Sequence(steps: steps),
        ])
        let vocabulary = config.vocabSize
        let whole = try #require(report.first?.steps.first).logits.floats
        let stepped = try #require(report.last).steps.flatMap { $0.logits.floats }
        var worst: Float = 0
        for position in tokens.indices {
            let window = Array(tokens[max(0, position - 3)...position])
            let expected = Self.squeezeLogits(forward, window).suffix(vocabulary)
            for (offset, value) in expected.enumerated() {
                worst = max(worst, abs(whole[position * vocabulary + offset] - value), abs(stepped[position * vocabulary + offset] - value))
            }
        }
        #expect(worst <= Self.tolerance, "max |Δlogit| \(worst) against Squeeze on each window")
    }

    @Test func exportsAreDeterministic() throws {
        for kind in TinyDecoders.Kind.allCases {
            for kvCache in [false, true] {
                let first = try DecoderONNXExport.model(try TinyDecoders.model(kind), kvCache: kvCache).serializedBytes()
                let second = try DecoderONNXExport.model(try TinyDecoders.model(kind), kvCache: kvCache).serializedBytes()
                #expect(first == second, "\(kind) kv \(kvCache)")
            }
        }
    }

    @Test func interfaceFollowsTheOptimumConvention() throws {
        let model = try TinyDecoders.model(.llamaGQA)
        let graph = try DecoderONNXExport.model(model, kvCache: true)
        #expect(graph.graph.input.map(\.name) == ["input_ids", "attention_mask"] + (0..<2).flatMap { ["past_key_values.\($0).key", "past_key_values.\($0).value"] })
        #expect(graph.graph.output.map(\.name) == ["logits"] + (0..<2).flatMap { ["present.\($0).key", "present.\($0).value"] })
        let past = try #require(graph.graph.input.first { $0.name == "past_key_values.1.value" })
        let dims = past.type.tensorType.shape.dim.map { $0.dimParam.isEmpty ? String($0.dimValue) : $0.dimParam }
        #expect(dims == ["batch_size", "2", "past_sequence_length", "4"])
        let plain = try DecoderONNXExport.model(model, kvCache: false)
        #expect(plain.graph.input.map(\.name) == ["input_ids", "attention_mask"])
        #expect(plain.graph.output.map(\.name) == ["logits"])
    }

    @Test func opsetsOutsideTheSupportedRangeAreRefused() throws {
        let model = try TinyDecoders.model(.gpt2)
        #expect(throws: DecoderONNXExportError.unsupportedOpset(16)) { try DecoderONNXExport.model(model, opset: 16, kvCache: false) }
        #expect(throws: DecoderONNXExportError.unsupportedOpset(22)) { try DecoderONNXExport.model(model, opset: 22, kvCache: false) }
    }

    /// A decoder artifact (weights, config and a tokenizer file, which the export copies without reading).
    static func artifact(_ save: (String) throws -> Void, in directory: URL, architecture: String) throws -> ModelArtifact {
        let path = directory.appendingPathComponent("artifact").path
        try save(path)
        try Data(#"{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}"#.utf8)
            .write(to: URL(fileURLWithPath: path + "/tokenizer.json"))
        return try ModelArtifact.seal(directory: path, architecture: architecture, source: "test")
    }

    @Test func exportWritesTheModelTokenizerAndManifest() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = try TinyDecoders.model(.qwen2MQA)
        let artifact = try Self.artifact({ try model.save(toDirectory: $0) }, in: directory, architecture: "qwen2")
        let output = directory.appendingPathComponent("export").path
        let summary = try ONNXExport.export(
            artifactDirectory: artifact.directory, to: output, options: ONNXExport.Options(kvCache: true, sourceDigest: "abc"))
        #expect(summary.kind == .decoder)
        let files = try FileManager.default.contentsOfDirectory(atPath: output).sorted()
        #expect(files == ["config.json", "model.onnx", "squeeze-export.json", "tokenizer.json"])
        let manifest = try SqueezeJSON.decode(ExportManifest.self, from: Data(contentsOf: URL(fileURLWithPath: output + "/squeeze-export.json")))
        #expect(manifest.target == "onnx")
        #expect(manifest.source == ExportManifest.Source(digest: "abc", format: "squeeze.model/1", architecture: "qwen2", kind: "decoder"))
        #expect(manifest.details["decoder_kind"] == .string("dense"))
        #expect(manifest.details["kv_cache"] == .bool(true))
        #expect(manifest.details["opset"] == .int(17))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: output + "/model.onnx"))
        #expect(manifest.files["model.onnx"] == Hashing.sha256(bytes).hex)
        #expect(bytes == (try DecoderONNXExport.model(model, kvCache: true).serializedBytes()))

        // A second export into the same directory is refused.
        #expect(throws: ModelFileError.self) {
            try ONNXExport.export(
                artifactDirectory: artifact.directory, to: output, options: ONNXExport.Options(kvCache: true, sourceDigest: "abc"))
        }
    }

    /// A weight-only artifact at opset 17 fails, naming opset 21, and nothing is written.
    @Test func weightOnlyExportBelowOpset21FailsBeforeWriting() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = try Self.quantized(bits: 4, symmetric: true)
        let artifact = try Self.artifact({ try model.save(toDirectory: $0) }, in: directory, architecture: "llama")
        let output = directory.appendingPathComponent("export").path
        do {
            try ONNXExport.export(artifactDirectory: artifact.directory, to: output, options: ONNXExport.Options(opset: 17, sourceDigest: "abc"))
            Issue.record("opset 17 was accepted for a weight-only decoder")
        } catch {
            #expect(error.description.contains("needs opset 21"), "\(error)")
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).isEmpty)
        let summary = try ONNXExport.export(
            artifactDirectory: artifact.directory, to: directory.appendingPathComponent("export21").path,
            options: ONNXExport.Options(opset: 21, kvCache: false, sourceDigest: "abc"))
        #expect(summary.kind == .decoder)
        #expect(summary.opset == 21)
    }

    // MARK: Weight-only

    static func quantized(bits: Int, symmetric: Bool) throws -> QuantizedDecoderModel {
        let model = try TinyDecoders.model(.llamaGQA)
        return try WeightOnlyQuantizer.quantize(model, options: WeightOnlyOptions(bits: bits, groupSize: 16, symmetric: symmetric))
    }

    @Test func weightOnlyNeedsOpset21() throws {
        let model = try Self.quantized(bits: 4, symmetric: true)
        do {
            _ = try DecoderONNXExport.model(model, opset: 17, kvCache: false)
            Issue.record("opset 17 was accepted for an int4 model")
        } catch {
            guard case .opsetTooLow(let requested, let required, _) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(requested == 17 && required == 21)
            #expect(error.description.contains("needs opset 21"))
        }
    }

    /// The graph keeps the codes: int4 as INT4 tensors, int8 as INT8, with one
    /// scale per group and a blocked DequantizeLinear per quantized layer.
    @Test(arguments: [(4, true), (4, false), (8, true), (8, false)])
    func weightOnlyGraphsStoreCodesAndScales(bits: Int, symmetric: Bool) throws {
        let model = try Self.quantized(bits: bits, symmetric: symmetric)
        let graph = try DecoderONNXExport.model(model, kvCache: false)
        #expect(graph.opsetImport.first?.version == 21)
        let codes = graph.graph.initializer.filter { $0.name.hasSuffix(".codes") }
        #expect(codes.count == model.quantization.modules.count)
        #expect(codes.allSatisfy { $0.dataType == (bits == 4 ? 22 : 3) })
        let zeroPoints = graph.graph.initializer.filter { $0.name.hasSuffix(".zero_points") }
        #expect(zeroPoints.isEmpty == symmetric)
        let dequantize = graph.graph.node.filter { $0.opType == "DequantizeLinear" }
        #expect(dequantize.count == model.quantization.modules.count)
        #expect(dequantize.allSatisfy { $0.attribute.contains { $0.name == "block_size" && $0.i == 16 } })
    }

    /// int4 and int8, symmetric and with zero points, in one Python start.
    @Test func weightOnlyLogitsMatchSqueeze() throws {
        guard PythonPeers.available(ONNXRuntimePeer.modules, for: "DecoderONNXExportTests") else { return }
        let candidates = try [(4, true), (4, false), (8, true), (8, false)].map { bits, symmetric in
            let model = try Self.quantized(bits: bits, symmetric: symmetric)
            // Accuracy level 0: ONNX Runtime's MatMulNBits keeps f32 activations (its default, 4, quantizes them to int8).
            return Candidate(
                label: "int\(bits) \(symmetric ? "symmetric" : "asymmetric")", graph: try DecoderONNXExport.model(model, kvCache: false),
                config: model.config, forward: model.forward(backend: Self.backend),
                sessionConfig: ["session.qdq_matmulnbits_accuracy_level": "0"])
        }
        try Self.checkWithoutCache(candidates)
    }

    // MARK: A real checkpoint (manual)

    /// Set `SQUEEZE_ONNX_REAL_DECODER` to a decoder artifact directory (float
    /// or weight-only) to export it and print ONNX Runtime's largest logit
    /// difference from Squeeze: 2 × 128 tokens without a cache, and a 64-token
    /// prefill plus 16 one-token steps with one. Not run otherwise (CI has no
    /// trained decoder). With `SQUEEZE_ONNX_EXPORT_TO`, the KV-cache export is
    /// also written there (for `Benchmarks/onnx-decoder/ort_decode.py`).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SQUEEZE_ONNX_REAL_DECODER"] != nil))
    func realDecoderMatchesSqueeze() throws {
        let path = try #require(ProcessInfo.processInfo.environment["SQUEEZE_ONNX_REAL_DECODER"])
        let artifact = try ModelArtifact(directory: path)
        let forward: DecoderInference.Forward
        let config: DecoderConfig
        if try ModelQuantization.read(configFile: artifact.configPath) != nil {
            let model = try QuantizedDecoderModel(directory: path)
            (forward, config) = (model.forward(backend: Self.backend), model.config)
        } else {
            let model = try artifact.decoderModel()
            (forward, config) = (model.forward(backend: Self.backend), model.config)
        }
        let vocabulary = config.vocabSize
        let length = min(128, config.maximumSequenceLength)
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let sessionConfig = ["session.qdq_matmulnbits_accuracy_level": ProcessInfo.processInfo.environment["SQUEEZE_ONNX_ACCURACY_LEVEL"] ?? "0"]

        let rows = (0..<2).map { row in (0..<length).map { ($0 * 7919 + row * 104_729 + 13) % vocabulary } }
        let plainFile = try Self.write(try DecoderONNXExport.model(artifact: artifact, kvCache: false), in: directory)
        let plain = try DecoderLoopPeer.run(
            model: plainFile, [DecoderLoopPeer.Sequence(steps: [DecoderLoopPeer.Step(input_ids: rows, attention_mask: rows.map { $0.map { _ in 1 } })])],
            sessionConfig: sessionConfig)
        let worstPlain = Self.worstDifference(
            try #require(plain.first?.steps.first).logits, rows: rows, left: true, vocabulary: vocabulary, forward: forward)

        let cachedDirectory = directory.appendingPathComponent("kv")
        try FileManager.default.createDirectory(at: cachedDirectory, withIntermediateDirectories: true)
        let cachedFile = try Self.write(try DecoderONNXExport.model(artifact: artifact, kvCache: true), in: cachedDirectory)
        let tokens = Array(rows[0].prefix(80))
        var steps = [DecoderLoopPeer.Step(input_ids: [Array(tokens.prefix(64))], attention_mask: [Array(repeating: 1, count: 64)])]
        for position in 64..<80 {
            steps.append(DecoderLoopPeer.Step(input_ids: [[tokens[position]]], attention_mask: [Array(repeating: 1, count: position + 1)]))
        }
        let loop = try DecoderLoopPeer.run(model: cachedFile, [DecoderLoopPeer.Sequence(steps: steps)], sessionConfig: sessionConfig)
        let full = Self.squeezeLogits(forward, tokens)
        var cache: DecoderKVCache? = DecoderKVCache(config: config, batch: 1, capacity: 80)
        var worstFull: Float = 0, worstCached: Float = 0
        var start = 0
        for (step, result) in zip(steps, try #require(loop.first).steps) {
            let ids = step.input_ids[0]
            let squeezeCached = forward(Tensor(shape: [1, ids.count], int32s: ids.map { Int32($0) }), &cache).floats
            let got = result.logits.floats
            for index in got.indices {
                worstFull = max(worstFull, abs(got[index] - full[start * vocabulary + index]))
                worstCached = max(worstCached, abs(got[index] - squeezeCached[index]))
            }
            start += ids.count
        }
        if let destination = ProcessInfo.processInfo.environment["SQUEEZE_ONNX_EXPORT_TO"] {
            try ONNXExport.export(
                artifactDirectory: path, to: destination,
                options: ONNXExport.Options(opset: artifact.isDecoder && (try ModelQuantization.read(configFile: artifact.configPath)) != nil ? 21 : 17, kvCache: true, sourceDigest: "manual"))
        }
        print("real decoder \(path): no cache 2x\(length) max |Δlogit| \(worstPlain); KV cache 64+16 vs Squeeze no-cache \(worstFull), vs Squeeze KV cache \(worstCached)")
        #expect(worstPlain <= Self.tolerance && worstFull <= Self.tolerance && worstCached <= Self.tolerance)
    }
}
