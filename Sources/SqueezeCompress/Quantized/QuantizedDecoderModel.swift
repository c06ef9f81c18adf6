import Foundation
import SqueezeModels
import SqueezeTensor

/// A decoder language model whose selected Linear layers hold int4/int8
/// per-group weights (weight-only: f32 activations, `Backend.weightOnlyLinear`
/// dequantizes on the fly) and the rest f32. The forward pass is
/// `DecoderModel`'s over `InferenceOperations`; there is no training path.
///
/// Stored as `squeeze.quantized/1` weight-only: the float tensors under the
/// decoder layout's names (`model.layers.0.mlp.up_proj.weight`, GPT-2's too),
/// each quantized module `<m>` as `<m>.weight` (int4 packed in U8, int8 in
/// I8) with `<m>.weight_scale` (and `<m>.weight_zero_point` when
/// asymmetric), and `config.json` with its `quantization` section.
public struct QuantizedDecoderModel: Sendable {
    public let config: DecoderConfig
    public let weights: DecoderWeights<InferenceValue>
    public let quantization: ModelQuantization
    let inverseFrequencies: [Float]

    /// `model` with the layers named in `linears` replaced by their
    /// weight-only form; `quantization` lists exactly those modules.
    public init(_ model: DecoderModel, linears: [String: WeightOnlyLinear], quantization: ModelQuantization) throws(ModelFileError) {
        try quantization.validate(file: "<quantized decoder>")
        guard quantization.mode == .weightOnly else {
            throw ModelFileError(file: "<quantized decoder>", "decoders are quantized weight-only; \(quantization.mode.rawValue) is not supported")
        }
        guard Set(linears.keys) == Set(quantization.modules) else {
            throw ModelFileError(file: "<quantized decoder>", "the weight-only modules differ from the quantization section's")
        }
        let weights = model.weights.map { name, tensor -> InferenceValue in
            let module = String(name.dropLast(".weight".count))
            guard name.hasSuffix(".weight"), let linear = linears[module] else {
                return name == "lm_head.weight" || name.hasSuffix("_proj.weight")
                    ? .linear(InferenceLinear(module: module, kernel: .float(tensor))) : .tensor(tensor)
            }
            return .linear(InferenceLinear(module: module, kernel: .weightOnly(linear)))
        }
        for (name, value) in zip(model.weights.names, weights.elements) {
            guard case .linear(let linear) = value, case .weightOnly(let quantized) = linear.kernel else { continue }
            let expected = model.weights.elements[model.weights.names.firstIndex(of: name) ?? 0].shape
            guard quantized.codes.shape == expected else {
                throw ModelFileError(file: "<quantized decoder>", "`\(name)`: codes \(quantized.codes.shape), expected \(expected)")
            }
        }
        self.config = model.config
        self.weights = weights
        self.quantization = quantization
        self.inverseFrequencies = model.inverseFrequencies
    }

    /// The forward pass `DecoderInference` runs (perplexity, generation).
    public func forward(backend: any Backend) -> DecoderInference.Forward {
        let (weights, config, frequencies) = (weights, config, inverseFrequencies)
        return { ids, cache in
            DecoderModel.logits(
                InferenceOperations(backend: backend), weights, config: config, inverseFrequencies: frequencies, ids: ids,
                cache: &cache
            ).tensor
        }
    }

    /// Parameters counted as their float shapes (a tied head once).
    public var parameterCount: Int { weights.elements.reduce(0) { $0 + $1.tensor.count } }

    /// Writes `model.safetensors` and `config.json` (with the `quantization`
    /// section) into `directory`. Equal models give byte-identical files.
    public func save(toDirectory directory: String) throws(ModelFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelFileError(file: directory, "cannot create directory: \(error.localizedDescription)")
        }
        var tensors: [(name: String, tensor: Tensor)] = []
        _ = weights.map { name, value in
            guard case .linear(let linear) = value, case .weightOnly(let weightOnly) = linear.kernel else {
                tensors.append((name, value.tensor))
                return
            }
            let packed = weightOnly.weights
            if let bytes = packed.int4PackedCodes() {
                tensors.append((name, Tensor(shape: [bytes.count], uint8s: bytes)))
            } else {
                tensors.append((name, weightOnly.codes))
            }
            let parameterShape = [packed.outputCount, packed.groupsPerRow]
            tensors.append((linear.module + "." + QuantizedTensorNames.weightScale, Tensor(shape: parameterShape, floats: packed.scales)))
            if let zeroPoints = packed.zeroPoints {
                tensors.append((
                    linear.module + "." + QuantizedTensorNames.weightZeroPoint,
                    Tensor(shape: parameterShape, int8s: zeroPoints.map { Int8(clamping: $0) })
                ))
            }
        }
        try SafetensorsWriter.write(
            tensors: tensors, metadata: ["format": "pt", ModelQuantization.metadataKey: quantization.mode.rawValue],
            to: directory + "/" + ModelArtifact.weightsFileName)
        let writer = try AtomicFileWriter(path: directory + "/" + ModelArtifact.configFileName)
        try writer.write(Array(try quantization.configJSON(configData: config.jsonData())))
        try writer.commit()
    }

    /// Reads a weight-only decoder checkpoint, validating every quantized
    /// module (codes in range, scales finite and positive, shapes against the
    /// config) and every float tensor's shape.
    public init(directory: String) throws(ModelFileError) {
        let configPath = directory + "/" + ModelArtifact.configFileName
        let config = try DecoderConfig(contentsOfFile: configPath)
        guard let quantization = try ModelQuantization.read(configFile: configPath) else {
            throw ModelFileError(file: configPath, "has no `quantization` section: not a quantized model")
        }
        guard quantization.mode == .weightOnly else {
            throw ModelFileError(file: configPath, "decoders are quantized weight-only; \(quantization.mode.rawValue) is not supported")
        }
        let file = try SafetensorsFile(path: directory + "/" + ModelArtifact.weightsFileName)
        let modules = Set(quantization.modules)
        var linears: [String: WeightOnlyLinear] = [:]
        for module in quantization.modules {
            linears[module] = try QuantizedBertModel.weightOnlyLinear(file, base: module, quantization: quantization)
        }
        let float = try DecoderWeights<Bool>(repeating: true, config: config).map { (name, _) throws(ModelFileError) -> Tensor in
            let module = String(name.dropLast(".weight".count))
            if name.hasSuffix(".weight"), modules.contains(module), let linear = linears[module] {
                return linear.weights.dequantized()
            }
            return try QuantizedBertModel.floatTensor(file, name)
        }
        let model = try DecoderModel(config: config, weights: float, file: file.path)
        try self.init(model, linears: linears, quantization: quantization)
    }
}
