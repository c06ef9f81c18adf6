import SqueezeTensor

/// Calibration: watches one activation over batches of a float model, then
/// picks the real range `[min, max]` to quantize it to.
///
/// NaN and ±∞ values are counted in `nonFiniteCount` and otherwise ignored,
/// so they never reach a range or a scale.
public protocol RangeObserver: Sendable {
    /// Adds one batch of values.
    mutating func observe(_ values: UnsafeBufferPointer<Float>)

    /// The chosen range, a sub-range of the observed finite values' range.
    ///
    /// - Throws: `QuantizationError.noData` when no finite value was observed.
    func range() throws(QuantizationError) -> ClosedRange<Float>

    /// Finite values observed so far.
    var observedCount: Int { get }

    /// NaN and infinite values observed (and skipped) so far.
    var nonFiniteCount: Int { get }
}

extension RangeObserver {
    /// Adds the values of an f32 tensor.
    public mutating func observe(_ tensor: Tensor) {
        precondition(tensor.dtype == .f32, "observe: a \(tensor.dtype) tensor; observers take f32 activations")
        tensor.withUnsafeFloats { observe($0) }
    }

    public mutating func observe(_ values: [Float]) {
        values.withUnsafeBufferPointer { observe($0) }
    }

    /// The quantizer `scheme` gives for `range()`.
    public func quantizer(for scheme: QuantizationScheme) throws(QuantizationError) -> AffineQuantizer {
        let chosen = try range()
        return try scheme.quantizer(min: chosen.lowerBound, max: chosen.upperBound)
    }
}

/// The calibration methods, as a recipe names them.
public enum ObserverKind: Sendable, Hashable, Codable {
    /// Running min and max: `MinMaxObserver`.
    case minMax
    /// The (100 − p)-th and p-th percentiles: `PercentileObserver`.
    case percentile(Double)
    /// The range minimising the squared quantization error: `MSEObserver`.
    case mse
    /// TensorRT-style KL-divergence calibration: `EntropyObserver`.
    case entropy

    /// A fresh observer of this kind. `scheme` matters to `mse` and `entropy`
    /// (they search ranges for it); `bins` to every kind but `minMax`.
    public func makeObserver(scheme: QuantizationScheme, bins: Int = 2048) throws(QuantizationError) -> any RangeObserver {
        switch self {
        case .minMax: MinMaxObserver()
        case .percentile(let p): try PercentileObserver(percentile: p, bins: bins)
        case .mse: try MSEObserver(scheme: scheme, bins: bins)
        case .entropy: try EntropyObserver(scheme: scheme, bins: bins)
        }
    }
}

/// Bin counts histogram observers accept.
enum HistogramBins {
    static let minimum = 16
    static let maximum = 1 << 20

    static func validate(_ bins: Int, minimum: Int = HistogramBins.minimum) throws(QuantizationError) {
        guard bins >= minimum, bins <= maximum else { throw .invalidBinCount(bins, minimum: minimum) }
    }
}
