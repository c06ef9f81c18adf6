import Foundation
import SqueezeModels

/// The `quantization` section of a quantized model's `config.json`: how the
/// model was quantized and which Linear modules run in int8. Its presence is
/// what makes a model artifact quantized (see docs/quantized-models.md).
public struct ModelQuantization: Sendable, Hashable, Codable {
    /// The format of sections without smoothing (read and written as before).
    public static let currentFormat = "squeeze.quantized/1"
    /// The format of sections with `smoothing`: files whose int8 inputs carry
    /// `input_smoothing` factors, which a `/1` reader would not apply.
    public static let smoothedFormat = "squeeze.quantized/2"
    public static let formats = [currentFormat, smoothedFormat]
    /// The key of this section in `config.json`.
    public static let configKey = "quantization"
    /// The `__metadata__` key of `model.safetensors` marking a quantized
    /// checkpoint (value: the mode), so float loaders refuse it by name.
    public static let metadataKey = BertModel.quantizationMetadataKey

    public enum Mode: String, Sendable, Hashable, Codable, CaseIterable {
        /// W8A8, activation parameters fixed by calibration.
        case `static`
        /// W8A8, activation ranges measured per batch at run time.
        case dynamic
        /// Int4 or int8 weights per group, f32 activations (no `activations`
        /// section), through the dequantize-on-the-fly product.
        case weightOnly = "weight_only"
    }

    public enum Granularity: String, Sendable, Hashable, Codable, CaseIterable {
        /// One scale (and zero point) for the whole tensor.
        case perTensor = "per_tensor"
        /// One per output row of a weight.
        case perChannel = "per_channel"
        /// One per row of an activation (token), measured at run time.
        case perRow = "per_row"
        /// One per `group_size` consecutive inputs of an output row (weight-only).
        case perGroup = "per_group"
    }

    /// The weights' integers. W8A8: symmetric (zero point 0), one scale per
    /// output row (`per_channel`) or one shared by every row (`per_tensor`).
    /// Weight-only: 4 or 8 bits, `per_group` with `group_size`, symmetric or
    /// with a zero point per group.
    public struct WeightScheme: Sendable, Hashable, Codable {
        /// The storage width (weight-only: the container, 4 or 8).
        public var bits: Int
        public var granularity: Granularity
        public var symmetric: Bool
        /// `[low, high]`: the signed codes the weights use.
        public var codeRange: [Int]
        /// Inputs sharing a scale (`per_group` only).
        public var groupSize: Int?
        /// Weight-only: the codes' own width when it is narrower than the
        /// storage (`quantize/gptq`'s 3-bit codes in the 4-bit container;
        /// `code_range` is then the narrower grid's); nil when the codes use
        /// the storage width. Files without it read as before; a reader that
        /// predates it refuses such a file by its `code_range`.
        public var codeBits: Int?

        public init(
            bits: Int = 8, granularity: Granularity, symmetric: Bool = true, codeRange: [Int], groupSize: Int? = nil,
            codeBits: Int? = nil
        ) {
            self.bits = bits
            self.granularity = granularity
            self.symmetric = symmetric
            self.codeRange = codeRange
            self.groupSize = groupSize
            self.codeBits = codeBits
        }

        enum CodingKeys: String, CodingKey {
            case bits, granularity, symmetric, codeRange = "code_range", groupSize = "group_size", codeBits = "code_bits"
        }
    }

    /// The activations' integers (u8 storage): asymmetric, or with a range
    /// made symmetric around 0 before its scale and zero point were derived.
    public struct ActivationScheme: Sendable, Hashable, Codable {
        public var bits: Int
        public var granularity: Granularity
        public var symmetric: Bool
        /// `[low, high]` inside 0…255: the codes the activations use.
        public var codeRange: [Int]

        public init(bits: Int = 8, granularity: Granularity, symmetric: Bool, codeRange: [Int]) {
            self.bits = bits
            self.granularity = granularity
            self.symmetric = symmetric
            self.codeRange = codeRange
        }

        enum CodingKeys: String, CodingKey {
            case bits, granularity, symmetric, codeRange = "code_range"
        }
    }

    /// A Linear module left in f32, and why.
    public struct SkippedModule: Sendable, Hashable, Codable {
        public var module: String
        public var reason: String

        public init(module: String, reason: String) {
            self.module = module
            self.reason = reason
        }
    }

    /// SmoothQuant's factors in a static model (docs/quantized-models.md).
    public struct Smoothing: Sendable, Hashable, Codable {
        /// The migration strength the factors were computed with.
        public var alpha: Double
        /// The int8 Linears whose input quantization divides each input
        /// channel by its factor (`<module>.input_smoothing`, F32 `[in]`);
        /// their int8 weights hold `W · diag(s)`.
        public var modules: [String]
        /// The int8 Linears whose factors are folded into the preceding
        /// value projection's output rows and bias (no tensor of their own).
        public var foldedIntoValue: [String]

        public init(alpha: Double, modules: [String], foldedIntoValue: [String]) {
            self.alpha = alpha
            self.modules = modules
            self.foldedIntoValue = foldedIntoValue
        }

        enum CodingKeys: String, CodingKey {
            case alpha, modules, foldedIntoValue = "folded_into_value"
        }
    }

    public var format: String
    public var mode: Mode
    public var weights: WeightScheme
    /// The activations' integers; nil for weight-only models (f32 activations).
    public var activations: ActivationScheme?
    /// The calibration observer (`minmax`, `percentile`, `mse`, `entropy`); static only.
    public var observer: String?
    /// The percentile of the `percentile` observer.
    public var percentile: Double?
    /// Histogram bins of the `percentile`, `mse` and `entropy` observers.
    public var histogramBins: Int?
    /// Examples the calibration ran over; static only.
    public var calibrationExamples: Int?
    /// The Linear modules that run quantized (int8 or weight-only), in model order.
    public var modules: [String]
    /// The Linear modules kept in f32.
    public var skipped: [SkippedModule]
    /// SmoothQuant's factors (static only; format `/2`); nil: not smoothed.
    public var smoothing: Smoothing?

    public static let observers = ["minmax", "percentile", "mse", "entropy"]

    public init(
        mode: Mode, weights: WeightScheme, activations: ActivationScheme?, observer: String? = nil, percentile: Double? = nil,
        histogramBins: Int? = nil, calibrationExamples: Int? = nil, modules: [String], skipped: [SkippedModule], smoothing: Smoothing? = nil
    ) {
        self.format = smoothing == nil ? Self.currentFormat : Self.smoothedFormat
        self.smoothing = smoothing
        self.mode = mode
        self.weights = weights
        self.activations = activations
        self.observer = observer
        self.percentile = percentile
        self.histogramBins = histogramBins
        self.calibrationExamples = calibrationExamples
        self.modules = modules
        self.skipped = skipped
    }

    enum CodingKeys: String, CodingKey {
        case format, mode, weights, activations, observer, percentile, histogramBins = "histogram_bins"
        case calibrationExamples = "calibration_examples", modules, skipped, smoothing
    }

    /// The weights' code range as integers (`[−q, q]`), once validated.
    public var weightCodes: ClosedRange<Int32> {
        let low = weights.codeRange.first ?? -127
        let high = weights.codeRange.last ?? 127
        return Int32(clamping: low)...Int32(clamping: Swift.max(low, high))
    }

    /// The activations' code range, once validated.
    public var activationCodes: ClosedRange<Int32> {
        let low = activations?.codeRange.first ?? 0
        let high = activations?.codeRange.last ?? 255
        return Int32(clamping: low)...Int32(clamping: Swift.max(low, high))
    }

    /// Checks that the section describes something this version runs; `file` names it in errors.
    public func validate(file: String) throws(ModelFileError) {
        func fail(_ message: String) -> ModelFileError { ModelFileError(file: file, "`quantization`: " + message) }
        guard Self.formats.contains(format) else {
            throw fail("format is \"\(format)\", expected \"\(Self.currentFormat)\" (or \"\(Self.smoothedFormat)\" with `smoothing`)")
        }
        if let smoothing {
            guard format == Self.smoothedFormat else { throw fail("`smoothing` needs format \"\(Self.smoothedFormat)\", got \"\(format)\"") }
            guard mode == .static else { throw fail("`smoothing` applies to static quantization, not \(mode.rawValue)") }
            guard smoothing.alpha.isFinite, (0...1).contains(smoothing.alpha) else {
                throw fail("smoothing.alpha must be in [0, 1], got \(smoothing.alpha)")
            }
            let quantized = Set(modules)
            var seen: Set<String> = []
            for module in smoothing.modules + smoothing.foldedIntoValue {
                guard quantized.contains(module) else { throw fail("smoothing lists `\(module)`, which is not an int8 module") }
                guard seen.insert(module).inserted else { throw fail("smoothing lists `\(module)` twice") }
            }
            for module in smoothing.foldedIntoValue where !module.hasSuffix(".attention.output.dense") {
                throw fail("smoothing.folded_into_value lists `\(module)`; only attention output projections fold into the value projection")
            }
            for module in smoothing.modules where module.hasSuffix(".output.dense") && !module.hasSuffix(".attention.output.dense") {
                throw fail("smoothing lists `\(module)`; a feed-forward output projection's GELU input is not smoothed")
            }
        }
        if mode == .weightOnly {
            try validateWeightOnly(fail)
        } else {
            try validateW8A8(fail)
        }
        var seen: Set<String> = []
        for module in modules + skipped.map(\.module) where !seen.insert(module).inserted {
            throw fail("module `\(module)` is listed twice in `modules` and `skipped`")
        }
    }

    /// The weight-only rules: 4 or 8 bits per group, the codes of the mapping
    /// (`[−7, 7]` / `[−127, 127]` symmetric, the whole signed range otherwise),
    /// no activation section, no calibration.
    private func validateWeightOnly(_ fail: (String) -> ModelFileError) throws(ModelFileError) {
        guard [4, 8].contains(weights.bits) else { throw fail("weights.bits is \(weights.bits); weight-only models have 4- or 8-bit weights") }
        guard weights.granularity == .perGroup else {
            throw fail("weight-only weights are per_group, got \(weights.granularity.rawValue)")
        }
        guard let groupSize = weights.groupSize, groupSize >= 1 else {
            throw fail("weight-only weights need a positive `group_size`, got \(weights.groupSize.map(String.init) ?? "none")")
        }
        if let codeBits = weights.codeBits, !(2..<weights.bits).contains(codeBits) {
            throw fail("weights.code_bits is \(codeBits); narrower codes must have 2 to \(weights.bits - 1) bits in \(weights.bits)-bit storage")
        }
        let codeBits = weights.codeBits ?? weights.bits
        let high = (1 << (codeBits - 1)) - 1
        let expected = weights.symmetric ? [-high, high] : [-high - 1, high]
        guard weights.codeRange == expected else {
            throw fail("weights.code_range must be \(expected) for \(weights.symmetric ? "symmetric" : "asymmetric") \(codeBits)-bit weights, got \(weights.codeRange)")
        }
        if activations != nil { throw fail("weight-only models have f32 activations and no `activations` section") }
        if observer != nil || percentile != nil || histogramBins != nil || calibrationExamples != nil {
            throw fail("weight-only quantization has no calibration settings")
        }
    }

    private func validateW8A8(_ fail: (String) -> ModelFileError) throws(ModelFileError) {
        guard weights.bits == 8 else { throw fail("weights.bits is \(weights.bits); int8 models have 8-bit weights") }
        guard weights.symmetric else { throw fail("weights must be symmetric (the int8 product has no weight zero point)") }
        guard [.perChannel, .perTensor].contains(weights.granularity) else {
            throw fail("weights.granularity must be per_channel or per_tensor, got \(weights.granularity.rawValue)")
        }
        if weights.groupSize != nil { throw fail("W8A8 weights have no `group_size`") }
        if weights.codeBits != nil { throw fail("W8A8 weights have no `code_bits`") }
        guard weights.codeRange.count == 2, weights.codeRange[0] == -weights.codeRange[1], (1...127).contains(weights.codeRange[1]) else {
            throw fail("weights.code_range must be [-q, q] with 1 <= q <= 127, got \(weights.codeRange)")
        }
        guard let activations else { throw fail("\(mode.rawValue) quantization needs an `activations` section") }
        guard activations.bits == 8 else { throw fail("activations.bits is \(activations.bits); W8A8 models have 8-bit activations") }
        guard activations.codeRange.count == 2, activations.codeRange[0] >= 0, activations.codeRange[1] <= 255,
            activations.codeRange[0] < activations.codeRange[1]
        else {
            throw fail("activations.code_range must be [low, high] with 0 <= low < high <= 255, got \(activations.codeRange)")
        }
        switch mode {
        case .static:
            guard activations.granularity == .perTensor else {
                throw fail("static quantization has per_tensor activations, got \(activations.granularity.rawValue)")
            }
            guard let observer, Self.observers.contains(observer) else {
                throw fail("static quantization needs `observer`, one of \(Self.observers.joined(separator: ", "))")
            }
            if observer == "percentile" {
                guard let percentile, percentile > 50, percentile <= 100 else {
                    throw fail("the percentile observer needs `percentile` in (50, 100]")
                }
            }
            if let histogramBins, histogramBins < 1 {
                throw fail("histogram_bins must be positive, got \(histogramBins)")
            }
            if let calibrationExamples, calibrationExamples < 1 {
                throw fail("calibration_examples must be positive, got \(calibrationExamples)")
            }
        case .dynamic:
            guard [.perTensor, .perRow].contains(activations.granularity) else {
                throw fail("dynamic activations are per_tensor or per_row, got \(activations.granularity.rawValue)")
            }
            if observer != nil { throw fail("dynamic quantization has no calibration `observer`") }
        case .weightOnly:
            throw fail("weight-only quantization has no activation scheme")
        }
    }

    /// The section of the `config.json` at `path`, validated; nil when the
    /// config has none (a float model).
    public static func read(configFile path: String) throws(ModelFileError) -> ModelQuantization? {
        let object = try ModelArtifact.readConfig(path)
        guard let raw = object[configKey], !(raw is NSNull) else { return nil }
        let section: ModelQuantization
        do {
            let data = try JSONSerialization.data(withJSONObject: raw, options: [.fragmentsAllowed])
            section = try JSONDecoder().decode(ModelQuantization.self, from: data)
        } catch {
            throw ModelFileError(file: path, "`quantization` is not a valid quantization section: \(ModelArtifact.describe(error))")
        }
        try section.validate(file: path)
        return section
    }

    /// `config` as `config.json` with this section added (sorted keys, so
    /// equal models give equal bytes).
    func configJSON(_ config: BertConfig) throws(ModelFileError) -> Data {
        try configJSON(configData: config.jsonData())
    }

    /// A `config.json` document (a JSON object) with this section added.
    func configJSON(configData: Data) throws(ModelFileError) -> Data {
        do {
            var object = try JSONSerialization.jsonObject(with: configData) as? [String: Any] ?? [:]
            object[Self.configKey] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self))
            return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]) + Data("\n".utf8)
        } catch {
            throw ModelFileError(file: ModelArtifact.configFileName, "cannot encode the quantized config: \(error)")
        }
    }
}
