import Foundation
import SqueezeModels
import SqueezeTensor
import Testing
@testable import SqueezeCompress

/// W8A8 quantization of tiny random BERTs: dense and CoFi-shaped, static
/// with every observer and dynamic, skip patterns, the activation range.
@Suite struct QuantizedBertTests {
    let backend = CPUBackend(threads: 2)

    /// Every selected Linear becomes int8; logits and each layer's output stay close to float.
    @Test func denseModelStaysCloseToFloat() throws {
        let model = try TinyQuantBert.dense()
        let (quantized, report) = try TinyQuantBert.calibrated(model)
        #expect(quantized.quantization.modules == model.weights.linearModules)
        #expect(quantized.quantization.skipped.isEmpty)
        #expect(quantized.int8Linears.count == 2 * 6 + 2)
        #expect(report.layers.count == 14 && report.evaluatedOnHeldOut && report.evaluationExamples == 18)
        #expect(report.calibrationExamples == 24)
        for layer in report.layers {
            let sqnr = try #require(layer.outputSQNR)
            #expect(sqnr > 25, "\(layer.module): output SQNR \(sqnr) dB")
            #expect(layer.weightSQNR > 25, "\(layer.module): weight SQNR \(layer.weightSQNR) dB")
            let (observed, chosen) = (try #require(layer.observedRange), try #require(layer.chosenRange))
            #expect(chosen == min(observed.lowerBound, 0)...max(observed.upperBound, 0), "minmax keeps the observed range")
        }
        let logits = try #require(report.logitsSQNR)
        #expect(logits > 25, "logits SQNR \(logits) dB")
        #expect(try TinyQuantBert.logitsSQNR(model, quantized, TinyQuantBert.batches(3, seed: 8), backend: backend) == logits)
        #expect((report.predictionAgreement ?? 0) >= 0.9)
    }

    /// Pruned layers (no heads, no FFN), a pruned hidden size and an unused
    /// pooler: empty and unused Linears stay f32, the rest run in int8.
    @Test(arguments: [false, true])
    func coFiShapedModelQuantizes(dynamic: Bool) throws {
        let model = try TinyQuantBert.heterogeneous()
        let quantized = dynamic
            ? try W8A8Quantizer.quantizeDynamic(model) : try TinyQuantBert.calibrated(model).model
        let skipped = Dictionary(uniqueKeysWithValues: quantized.quantization.skipped.map { ($0.module, $0.reason) })
        #expect(Set(skipped.keys) == [
            "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense", "encoder.layer.1.attention.self.query",
            "encoder.layer.1.attention.self.key", "encoder.layer.1.attention.self.value", "encoder.layer.1.attention.output.dense",
            "pooler.dense",
        ])
        #expect(skipped["encoder.layer.0.output.dense"]?.contains("empty") == true)
        #expect(skipped["pooler.dense"]?.contains("mean") == true)
        #expect(quantized.int8Linears.count == 4 + 2 + 4 + 2 + 1)
        let sqnr = try TinyQuantBert.logitsSQNR(model, quantized, TinyQuantBert.batches(3, seed: 9), backend: backend)
        #expect(sqnr > 25, "logits SQNR \(sqnr) dB")
    }

    /// The fused int8 forward (codes shared by the query, key and value
    /// projections, GELU codes straight from the pre-activation) gives the
    /// op-by-op forward's logits bit for bit: dense and CoFi-shaped, static and
    /// dynamic, on the CPU and the reference backend, with the pooler's
    /// first-token-only last layer and with padding.
    @Test(arguments: [false, true])
    func fusedForwardMatchesOpByOp(dynamic: Bool) throws {
        let reference = ReferenceBackend()
        for model in [try TinyQuantBert.dense(seed: 5), try TinyQuantBert.heterogeneous(seed: 6)] {
            let quantized = dynamic
                ? try W8A8Quantizer.quantizeDynamic(model) : try TinyQuantBert.calibrated(model, observer: .mse).model
            for batch in TinyQuantBert.batches(2, size: 5, seed: 11) {
                for backend in [backend as any Backend, reference] {
                    let fused = try quantized.logits(batch, backend: backend)
                    let opByOp = try quantized.logits(batch, backend: backend, fusing: false)
                    #expect(fused.floats == opByOp.floats, "\(backend.id), dynamic \(dynamic)")
                }
            }
        }
    }

    @Test(arguments: [ObserverKind.minMax, .percentile(99.9), .mse, .entropy])
    func everyObserverCalibrates(observer: ObserverKind) throws {
        let model = try TinyQuantBert.dense(seed: 3)
        let (quantized, report) = try TinyQuantBert.calibrated(model, observer: observer, options: W8A8Options(skip: ["layer.1"]))
        #expect(quantized.quantization.observer == CalibrationSettings(observer: observer).observerName)
        for layer in report.layers {
            let (observed, chosen) = (try #require(layer.observedRange), try #require(layer.chosenRange))
            #expect(chosen.lowerBound >= min(observed.lowerBound, 0) && chosen.upperBound <= max(observed.upperBound, 0), "\(layer.module)")
            #expect(chosen.lowerBound <= 0 && chosen.upperBound >= 0, "ranges include 0")
            let scale = try #require(layer.scale)
            #expect(scale.isNormal && scale > 0)
            #expect((0...255).contains(try #require(layer.zeroPoint)))
        }
        let logits = try #require(report.logitsSQNR)
        #expect(logits > 15, "\(observer): logits SQNR \(logits) dB")
        if case .percentile = observer { #expect(quantized.quantization.percentile == 99.9) }
    }

    @Test func dynamicQuantizationNeedsNoData() throws {
        let model = try TinyQuantBert.dense()
        let quantized = try W8A8Quantizer.quantizeDynamic(model, options: W8A8Options(activationGranularity: .perRow))
        #expect(quantized.quantization.mode == .dynamic && quantized.quantization.observer == nil)
        #expect(quantized.int8Linears.values.allSatisfy { $0.activations == .dynamic(perRow: true, range: W8A8Options.defaultActivationCodes) })
        let sqnr = try TinyQuantBert.logitsSQNR(model, quantized, TinyQuantBert.batches(3, seed: 8), backend: backend)
        #expect(sqnr > 25, "logits SQNR \(sqnr) dB")
        let report = W8A8Quantizer.weightReport(model, quantized, skip: [])
        #expect(report.layers.count == 14 && report.layers.allSatisfy { $0.weightSQNR > 25 && $0.outputSQNR == nil })
        #expect(throws: BertQuantizationError.self) {
            try W8A8Quantizer.quantizeStatic(
                model, calibration: TinyQuantBert.batches(1, seed: 1), evaluation: [], evaluatedOnHeldOut: false,
                settings: CalibrationSettings(observer: .minMax), options: W8A8Options(activationGranularity: .perRow), backend: backend)
        }
    }

    @Test func skipPatternsKeepModulesFloat() throws {
        let model = try TinyQuantBert.dense()
        let options = W8A8Options(skip: ["classifier", "layer.0.*", "attention.output.dense", "clasifier"])
        let (quantized, report) = try TinyQuantBert.calibrated(model, options: options)
        let skipped = quantized.quantization.skipped.map(\.module)
        #expect(skipped == [
            "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "encoder.layer.0.attention.self.value",
            "encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense",
            "encoder.layer.1.attention.output.dense", "classifier",
        ])
        #expect(quantized.quantization.skipped.first?.reason == "skip pattern `layer.0.*`")
        #expect(report.unmatchedPatterns == ["clasifier"])
        #expect(Set(quantized.int8Linears.keys) == Set(quantized.quantization.modules))
        #expect(quantized.quantization.modules.count == 6)
        #expect(report.layers.map(\.module) == quantized.quantization.modules)
    }

    @Test func modulePatternsMatchWholeComponents() {
        let cases: [(String, String, Bool)] = [
            ("classifier", "classifier", true),
            ("pooler", "pooler.dense", true),
            ("query", "encoder.layer.3.attention.self.query", true),
            ("layer.1", "encoder.layer.1.output.dense", true),
            ("layer.1", "encoder.layer.10.output.dense", false),
            ("layer.1*", "encoder.layer.10.output.dense", true),
            ("layer.?.output.*", "encoder.layer.4.output.dense", true),
            ("encoder.*.intermediate.dense", "encoder.layer.0.intermediate.dense", true),
            ("*dense", "encoder.layer.0.attention.output.dense", true),
            ("output", "encoder.layer.0.attention.output.dense", true),
            ("attention.output", "encoder.layer.0.output.dense", false),
            ("ery", "encoder.layer.0.attention.self.query", false),
            ("classifiers", "classifier", false),
        ]
        for (pattern, module, expected) in cases {
            #expect(ModulePattern(pattern).matches(module) == expected, "`\(pattern)` on `\(module)`")
        }
    }

    /// The activation range choice, measured. The fast kernel runs with 7-bit
    /// activations (0…127) and any int8 weights, or with 8-bit activations
    /// and weights in ±63. On a model with BERT's outlier dimensions (which
    /// stretch each per-tensor activation range), 8-bit activations with ±63
    /// weights lose much less than 7-bit activations with ±127 weights, and
    /// about as little as the slow u8 × s8 product: the default. (Measured on
    /// the SST-2 teacher too; see docs/quantized-models.md.)
    @Test func defaultRangeIsTheMoreAccurateFastOne() throws {
        let model = try TinyQuantBert.withOutlierDimensions(TinyQuantBert.dense(seed: 4))
        let evaluation = TinyQuantBert.batches(3, seed: 8)
        func sqnr(_ codes: ClosedRange<Int32>, _ limit: Int32) throws -> Double {
            let quantized = try TinyQuantBert.calibrated(model, options: W8A8Options(activationCodes: codes, weightLimit: limit)).model
            return try TinyQuantBert.logitsSQNR(model, quantized, evaluation, backend: backend)
        }
        let sevenBitActivations = try sqnr(0...127, 127)
        let sevenBitWeights = try sqnr(0...255, 63)
        let slowFullRange = try sqnr(0...255, 127)
        print("activation range choice: logits SQNR u7×s8 \(sevenBitActivations) dB, u8×s7 \(sevenBitWeights) dB, u8×s8 (slow kernel) \(slowFullRange) dB")
        #expect(W8A8Options.defaultActivationCodes == 0...255 && W8A8Options.defaultWeightLimit == 63)
        #expect(sevenBitWeights > sevenBitActivations + 2)
        #expect(slowFullRange - sevenBitWeights < (sevenBitWeights - sevenBitActivations) / 2, "a weight bit costs far less than an activation bit")
        let quantized = try TinyQuantBert.calibrated(model).model
        for (module, linear) in quantized.int8Linears {
            #expect(linear.weights.fastActivationLimit >= linear.activations.range.upperBound, "\(module) runs the fast kernel")
        }
    }

    @Test func quantizationIsDeterministic() throws {
        let model = try TinyQuantBert.dense()
        let first = try TinyQuantBert.calibrated(model, observer: .entropy)
        let second = try TinyQuantBert.calibrated(model, observer: .entropy, backend: CPUBackend(threads: 2))
        #expect(first.report == second.report)
        let (a, b) = (try TinyQuantBert.temporaryDirectory("det-a"), try TinyQuantBert.temporaryDirectory("det-b"))
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

    @Test func evaluationRunsOnQuantizedModels() throws {
        let model = try TinyQuantBert.dense()
        let quantized = try TinyQuantBert.calibrated(model).model
        let sequences = TokenSequences((0..<10).map { [2, Int32(5 + $0), Int32(6 + $0), 3] })
        let labels = (0..<10).map { $0 % 3 }
        let float = try model.evaluate(sequences, labels: labels, batchSize: 4, padID: 0, backend: backend)
        let int8 = try quantized.evaluate(sequences, labels: labels, batchSize: 4, padID: 0, backend: backend)
        #expect(int8.examples == 10)
        #expect(abs(int8.loss - float.loss) < 0.05 * max(float.loss, 1))
    }
}
