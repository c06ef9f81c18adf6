import Foundation
import SqueezeModels
import SqueezeTensor

/// Tensor names of a quantized Linear `<module>` (with the checkpoint's
/// `bert.` prefix outside the classifier) besides `<module>.weight` and
/// `<module>.bias` (F32). W8A8 and int8 weight-only weights are I8 `[out, in]`;
/// int4 weight-only weights are U8 `[⌈out·in/2⌉]`, the signed codes in
/// row-major order two per byte, element 2i in the low nibble of byte i.
enum QuantizedTensorNames {
    /// F32: W8A8 `[out]`, the scale of each output row; weight-only
    /// `[out, in / group_size]`, the scale of each group.
    static let weightScale = "weight_scale"
    /// I8 `[out, in / group_size]`: the signed zero point of each group
    /// (asymmetric weight-only only; absent when all are 0).
    static let weightZeroPoint = "weight_zero_point"
    /// F32 `[1]`: the static activation scale.
    static let inputScale = "input_scale"
    /// I32 `[1]`: the static activation zero point.
    static let inputZeroPoint = "input_zero_point"
    /// F32 `[in]`: SmoothQuant's `1/s_j`, the multiplier of input channel `j`
    /// in the static activation quantization (smoothed modules only).
    static let inputSmoothing = "input_smoothing"
    static let all = [weightScale, weightZeroPoint, inputScale, inputZeroPoint, inputSmoothing]
}

extension QuantizedBertModel {
    /// Loads `config.json` (with its `quantization` section) and
    /// `model.safetensors` from a model directory.
    public init(directory: String) throws(ModelFileError) {
        let configPath = directory + "/" + BertModel.configFileName
        let config = try BertConfig(contentsOfFile: configPath)
        guard let quantization = try ModelQuantization.read(configFile: configPath) else {
            throw ModelFileError(file: configPath, "has no `quantization` section: this is not a quantized model")
        }
        let file = try SafetensorsFile(path: directory + "/" + BertModel.weightsFileName)
        try self.init(config: config, quantization: quantization, file: file)
    }

    /// Reads a quantized checkpoint, validating every tensor before use: the
    /// int8 modules' weights are I8 of the expected shape with values in the
    /// code range, their scales F32, finite and positive, static input scales
    /// positive normal floats and zero points inside the activation code
    /// range; every other tensor F32 of the expected shape. Any problem is a
    /// `ModelFileError`.
    public init(config: BertConfig, quantization: ModelQuantization, file: SafetensorsFile) throws(ModelFileError) {
        try config.validate(file: file.path)
        try quantization.validate(file: file.path)
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file.path, message) }
        let prefix = file.entries["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        try BertModel.checkLayerCount(file, prefix: prefix, expected: config.numHiddenLayers)
        func stored(_ name: String) -> String { name.hasPrefix("classifier") ? name : prefix + name }
        let hasPooler = file.entries[prefix + "pooler.dense.weight"] != nil
        let skeleton = BertWeights<Bool>(repeating: true, layerCount: config.numHiddenLayers, hasPooler: hasPooler)
        let missing = skeleton.names.filter { file.entries[stored($0)] == nil }
        if let first = missing.first {
            let more = missing.count > 1 ? " and \(missing.count - 1) more" : ""
            throw fail("missing tensors: `\(stored(first))`\(more)")
        }
        let quantized = Set(quantization.modules)
        var expectedNames: Set<String> = []
        let weights = try skeleton.map { (name, _) throws(ModelFileError) -> InferenceValue in
            let path = stored(name)
            guard let module = BertWeights<Bool>.linearModule(ofParameter: name) else {
                return .tensor(try Self.floatTensor(file, path))
            }
            guard quantized.contains(module) else {
                return .linear(InferenceLinear(module: module, kernel: .float(try Self.floatTensor(file, path))))
            }
            let base = stored(module)
            let names = QuantizedTensorNames.self
            expectedNames.insert(base + "." + names.weightScale)
            let smoothed = quantization.smoothing?.modules.contains(module) ?? false
            if quantization.mode == .static {
                expectedNames.insert(base + "." + names.inputScale)
                expectedNames.insert(base + "." + names.inputZeroPoint)
                if smoothed { expectedNames.insert(base + "." + names.inputSmoothing) }
            }
            if quantization.mode == .weightOnly {
                if !quantization.weights.symmetric { expectedNames.insert(base + "." + names.weightZeroPoint) }
                return .linear(InferenceLinear(
                    module: module, kernel: .weightOnly(try Self.weightOnlyLinear(file, base: base, quantization: quantization))))
            }
            return .linear(InferenceLinear(
                module: module, kernel: .int8(try Self.int8Linear(file, base: base, quantization: quantization, smoothed: smoothed))))
        }
        for name in file.names {
            guard QuantizedTensorNames.all.contains(where: { name.hasSuffix("." + $0) }), !expectedNames.contains(name) else { continue }
            throw fail(
                name.hasSuffix("." + QuantizedTensorNames.inputSmoothing)
                    ? "unexpected tensor `\(name)`: its module is not listed in `smoothing.modules`"
                    : "unexpected tensor `\(name)`: its module is not quantized \(quantization.mode.rawValue)")
        }
        let pooling = config.pooling ?? (hasPooler ? .pooler : .mean)
        try self.init(config: config, weights: weights, pooling: pooling, quantization: quantization, file: file.path)
    }

    /// An F32 tensor (F16/BF16 widened); any other dtype is an error.
    static func floatTensor(_ file: SafetensorsFile, _ name: String) throws(ModelFileError) -> Tensor {
        guard let entry = file.entries[name], [.f32, .f16, .bf16].contains(entry.dtype) else {
            throw ModelFileError(file: file.path, "`\(name)` must be a floating-point tensor, got \(file.entries[name]?.dtype.rawValue ?? file.skipped[name] ?? "nothing")")
        }
        return try file.tensor(name)
    }

    /// The weight-only Linear stored under `base`, validated: the scales F32
    /// `[N, G]` (finite, positive) give N and K = G · group_size; the codes
    /// are I8 `[N, K]` (8 bits) or U8 `[⌈N·K/2⌉]` (4 bits) inside the signed
    /// range; zero points, when stored, I8 `[N, G]` inside it too.
    static func weightOnlyLinear(_ file: SafetensorsFile, base: String, quantization: ModelQuantization) throws(ModelFileError) -> WeightOnlyLinear {
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file.path, message) }
        func entry(_ suffix: String, _ dtype: SafetensorsDType, required: Bool = true) throws(ModelFileError) -> SafetensorsEntry? {
            let name = base + "." + suffix
            guard let entry = file.entries[name] else {
                if let raw = file.skipped[name] { throw fail("`\(name)` has dtype \(raw), expected \(dtype.rawValue)") }
                if required { throw fail("missing tensor `\(name)` of the weight-only module `\(base)`") }
                return nil
            }
            guard entry.dtype == dtype else { throw fail("`\(name)` has dtype \(entry.dtype.rawValue), expected \(dtype.rawValue)") }
            return entry
        }
        let bits = quantization.weights.bits
        let groupSize = quantization.weights.groupSize ?? 0
        guard let scaleEntry = try entry(QuantizedTensorNames.weightScale, .f32) else { throw fail("missing `\(base).weight_scale`") }
        guard scaleEntry.shape.count == 2, scaleEntry.shape[0] > 0, scaleEntry.shape[1] > 0 else {
            throw fail("`\(scaleEntry.name)` has shape \(scaleEntry.shape), expected [out, in / group_size] (non-empty)")
        }
        let (rows, groups) = (scaleEntry.shape[0], scaleEntry.shape[1])
        let (columns, overflow) = groups.multipliedReportingOverflow(by: groupSize)
        let (count, countOverflow) = rows.multipliedReportingOverflow(by: columns)
        guard !overflow, !countOverflow else { throw fail("`\(scaleEntry.name)` has shape \(scaleEntry.shape): too many weights for groups of \(groupSize)") }
        let scales = try file.floats(scaleEntry.name)
        if let bad = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw fail("`\(scaleEntry.name)`[\(bad)] is \(scales[bad]); weight scales must be finite and positive")
        }
        var zeroPoints: [Int32]?
        if !quantization.weights.symmetric, let zeroEntry = try entry(QuantizedTensorNames.weightZeroPoint, .i8, required: false) {
            guard zeroEntry.shape == scaleEntry.shape else {
                throw fail("`\(zeroEntry.name)` has shape \(zeroEntry.shape), expected \(scaleEntry.shape) like the scales")
            }
            zeroPoints = try file.int64s(zeroEntry.name).map { Int32(clamping: $0) }
        }
        let packed: PackedGroupWeights
        do {
            if bits == 4 {
                guard let codes = try entry("weight", .u8) else { throw fail("missing `\(base).weight`") }
                guard codes.shape == [(count + 1) / 2] else {
                    throw fail("`\(codes.name)` has shape \(codes.shape), expected [\((count + 1) / 2)]: \(rows)×\(columns) int4 codes two per byte")
                }
                let bytes = try file.int64s(codes.name).map { UInt8(truncatingIfNeeded: $0) }
                packed = try PackedGroupWeights(
                    int4Codes: bytes, signed: true, outputCount: rows, inputCount: columns, groupSize: groupSize, scales: scales,
                    zeroPoints: zeroPoints)
            } else {
                guard let codes = try entry("weight", .i8) else { throw fail("missing `\(base).weight`") }
                guard codes.shape == [rows, columns] else {
                    throw fail("`\(codes.name)` has shape \(codes.shape), expected [\(rows), \(columns)] from its scales and group size \(groupSize)")
                }
                packed = try PackedGroupWeights(
                    codes: try file.tensor(codes.name), bits: 8, groupSize: groupSize, scales: scales, zeroPoints: zeroPoints)
            }
        } catch let error as WeightOnlyQuantizationError {
            throw fail("`\(base)`: \(error.description)")
        } catch let error as ModelFileError {
            throw error
        } catch {
            throw fail("`\(base)`: \(error)")
        }
        return WeightOnlyLinear(weights: packed)
    }

    /// The int8 Linear stored under `base`, validated (shapes against each
    /// other here; against the config in `init(config:weights:…)`);
    /// `smoothed`: it has `input_smoothing` multipliers.
    static func int8Linear(
        _ file: SafetensorsFile, base: String, quantization: ModelQuantization, smoothed: Bool
    ) throws(ModelFileError) -> Int8Linear {
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file.path, message) }
        func entry(_ suffix: String, _ dtype: SafetensorsDType) throws(ModelFileError) -> SafetensorsEntry {
            let name = base + "." + suffix
            guard let entry = file.entries[name] else {
                if let raw = file.skipped[name] { throw fail("`\(name)` has dtype \(raw), expected \(dtype.rawValue)") }
                throw fail("missing tensor `\(name)` of the quantized module `\(base)`")
            }
            guard entry.dtype == dtype else { throw fail("`\(name)` has dtype \(entry.dtype.rawValue), expected \(dtype.rawValue)") }
            return entry
        }
        let weight = try entry("weight", .i8)
        guard weight.shape.count == 2 else { throw fail("`\(base).weight` has shape \(weight.shape), expected [out, in]") }
        let (rows, columns) = (weight.shape[0], weight.shape[1])
        guard rows > 0, columns > 0 else { throw fail("`\(base).weight` is empty (\(weight.shape)); empty Linears stay f32") }
        guard columns <= PackedInt8Weights.maxInputCount else {
            throw fail("`\(base).weight` has \(columns) inputs; the int8 product takes at most \(PackedInt8Weights.maxInputCount)")
        }
        let scaleEntry = try entry(QuantizedTensorNames.weightScale, .f32)
        guard scaleEntry.shape == [rows] else {
            throw fail("`\(base).\(QuantizedTensorNames.weightScale)` has shape \(scaleEntry.shape), expected [\(rows)]")
        }
        let scales = try file.floats(scaleEntry.name)
        if let bad = scales.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw fail("`\(scaleEntry.name)`[\(bad)] is \(scales[bad]); weight scales must be finite and positive")
        }
        let values = try file.tensor(weight.name)
        let codes = quantization.weightCodes
        let outside = values.withUnsafeElements(Int8.self) { $0.first { !codes.contains(Int32($0)) } }
        if let outside { throw fail("`\(weight.name)` holds \(outside), outside the weights' code range \(codes)") }
        let packed = PackedInt8Weights(values: values, scales: scales)
        let activationCodes = quantization.activationCodes
        switch quantization.mode {
        case .dynamic:
            return Int8Linear(weights: packed, activations: .dynamic(perRow: quantization.activations?.granularity == .perRow, range: activationCodes))
        case .weightOnly:
            throw fail("`\(base)`: a weight-only model has no int8 W8A8 Linears")
        case .static:
            let scaleTensor = try entry(QuantizedTensorNames.inputScale, .f32)
            let zeroTensor = try entry(QuantizedTensorNames.inputZeroPoint, .i32)
            guard scaleTensor.shape == [1], zeroTensor.shape == [1] else {
                throw fail("`\(base).\(QuantizedTensorNames.inputScale)` and `.\(QuantizedTensorNames.inputZeroPoint)` must have shape [1], got \(scaleTensor.shape) and \(zeroTensor.shape)")
            }
            let scale = try file.floats(scaleTensor.name)[0]
            let zero = try file.int64s(zeroTensor.name)[0]
            guard scale.isNormal, scale > 0 else {
                throw fail("`\(scaleTensor.name)` is \(scale); activation scales must be positive normal numbers")
            }
            guard zero >= Int64(activationCodes.lowerBound), zero <= Int64(activationCodes.upperBound) else {
                throw fail("`\(zeroTensor.name)` is \(zero), outside the activations' code range \(activationCodes)")
            }
            guard smoothed else {
                return Int8Linear(weights: packed, activations: .fixed(ActivationQuantization(scale: scale, zeroPoint: Int32(zero), range: activationCodes)))
            }
            let smoothingTensor = try entry(QuantizedTensorNames.inputSmoothing, .f32)
            guard smoothingTensor.shape == [columns] else {
                throw fail("`\(smoothingTensor.name)` has shape \(smoothingTensor.shape), expected [\(columns)], one multiplier per input")
            }
            let multipliers = try file.floats(smoothingTensor.name)
            if let bad = multipliers.firstIndex(where: { !($0.isNormal && $0 > 0) }) {
                throw fail("`\(smoothingTensor.name)`[\(bad)] is \(multipliers[bad]); smoothing multipliers must be positive normal numbers")
            }
            let parameters = ActivationQuantization(scale: scale, zeroPoint: Int32(zero), range: activationCodes, channelMultipliers: multipliers)
            return Int8Linear(weights: packed, activations: .fixed(parameters))
        }
    }

    /// Writes `model.safetensors` (int8 modules as I8 weights with F32 scales,
    /// and static activation parameters; the rest F32; encoder tensors
    /// prefixed `bert.`) and `config.json` (with the `quantization` section)
    /// into `directory`, creating it. Equal models give byte-identical files.
    public func save(toDirectory directory: String) throws(ModelFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create directory: \(error.localizedDescription)")
        }
        func stored(_ name: String) -> String { name.hasPrefix("classifier") ? name : "bert." + name }
        var tensors: [(name: String, tensor: Tensor)] = []
        _ = weights.map { name, value in
            switch value {
            case .tensor(let tensor):
                tensors.append((stored(name), tensor))
            case .linear(let linear):
                switch linear.kernel {
                case .float(let weight):
                    tensors.append((stored(name), weight))
                case .int8(let int8):
                    let base = stored(linear.module)
                    tensors.append((stored(name), int8.weights.values))
                    tensors.append((base + "." + QuantizedTensorNames.weightScale, Tensor(shape: [int8.weights.outputCount], floats: int8.weights.scales)))
                    if case .fixed(let parameters) = int8.activations {
                        tensors.append((base + "." + QuantizedTensorNames.inputScale, Tensor(shape: [1], floats: [parameters.scales[0]])))
                        tensors.append((base + "." + QuantizedTensorNames.inputZeroPoint, Tensor(shape: [1], int32s: [parameters.zeroPoints[0]])))
                        if let multipliers = parameters.channelMultipliers {
                            tensors.append((base + "." + QuantizedTensorNames.inputSmoothing, Tensor(shape: [multipliers.count], floats: multipliers)))
                        }
                    }
                case .weightOnly(let weightOnly):
                    let base = stored(linear.module)
                    let weights = weightOnly.weights
                    if let packed = weights.int4PackedCodes() {
                        tensors.append((stored(name), Tensor(shape: [packed.count], uint8s: packed)))
                    } else {
                        tensors.append((stored(name), weightOnly.codes))
                    }
                    let parameterShape = [weights.outputCount, weights.groupsPerRow]
                    tensors.append((base + "." + QuantizedTensorNames.weightScale, Tensor(shape: parameterShape, floats: weights.scales)))
                    if let zeroPoints = weights.zeroPoints {
                        tensors.append((base + "." + QuantizedTensorNames.weightZeroPoint, Tensor(shape: parameterShape, int8s: zeroPoints.map { Int8(clamping: $0) })))
                    }
                }
            }
        }
        try SafetensorsWriter.write(
            tensors: tensors, metadata: ["format": "pt", ModelQuantization.metadataKey: quantization.mode.rawValue],
            to: directory + "/" + BertModel.weightsFileName)
        var saved = config
        saved.pooling = pooling
        let writer = try AtomicFileWriter(path: directory + "/" + BertModel.configFileName)
        try writer.write(Array(try quantization.configJSON(saved)))
        try writer.commit()
    }
}
