/// OWL, "Outlier Weighed Layerwise sparsity" (Yin et al. 2023, §4): layers
/// (or blocks) holding more outliers of the Wanda metric get a lower
/// sparsity, the mean sparsity staying at the target.
///
/// For layer l with metric values A_l (e.g. `Wanda.metric` of all its linear
/// layers together), the outlier ratio is `D_l = |{a ∈ A_l : a > M · mean(A_l)}| / |A_l|`
/// (the paper's LOD, Eq. 2). As in the authors' code, the ratios are
/// min-max normalised onto `[0, 2λ]`, centred, and subtracted from the
/// target: `S_l = S − (2λ · (D_l − D_min)/(D_max − D_min) − mean)`, so the
/// mean of the S_l is S and max − min = 2λ (λ bounds the spread; all S_l
/// equal S when every D_l is equal).
public enum OutlierWeighedSparsity {
    public static let defaultOutlierThreshold = 5.0
    public static let defaultLambda = 0.08

    /// The share of `metric` values above `threshold · mean(metric)`.
    public static func outlierRatio(_ metric: [Double], threshold: Double = defaultOutlierThreshold) throws(OneShotError) -> Double {
        guard !metric.isEmpty else { throw .emptyLayers }
        guard threshold.isFinite, threshold > 0 else { throw .invalidOutlierThreshold(threshold) }
        let mean = metric.reduce(0, +) / Double(metric.count)
        let limit = threshold * mean
        let outliers = metric.reduce(0) { $0 + ($1 > limit ? 1 : 0) }
        return Double(outliers) / Double(metric.count)
    }

    /// Per-layer sparsities from the layers' outlier ratios.
    ///
    /// - Throws: `invalidSparsity` unless `target` is in `[0, 1)`,
    ///   `invalidLambda`, `emptyLayers`, and `layerSparsityOutOfRange` when a
    ///   layer's sparsity leaves `[0, 1)`.
    public static func layerSparsities(
        outlierRatios: [Double], target: Double, lambda: Double = defaultLambda
    ) throws(OneShotError) -> [Double] {
        try SparsityTarget.unstructured(target).validate(cols: 1)
        guard lambda.isFinite, lambda >= 0 else { throw .invalidLambda(lambda) }
        guard !outlierRatios.isEmpty else { throw .emptyLayers }
        let low = outlierRatios.min() ?? 0
        let high = outlierRatios.max() ?? 0
        let normalised = outlierRatios.map { high > low ? ($0 - low) / (high - low) * 2 * lambda : 0 }
        let mean = normalised.reduce(0, +) / Double(normalised.count)
        var sparsities: [Double] = []
        for (layer, value) in normalised.enumerated() {
            let sparsity = target - (value - mean)
            guard sparsity >= 0, sparsity < 1 else { throw .layerSparsityOutOfRange(layer: layer, sparsity: sparsity, lambda: lambda) }
            sparsities.append(sparsity)
        }
        return sparsities
    }

    /// Per-layer sparsities from each layer's metric values.
    public static func layerSparsities(
        metrics: [[Double]], target: Double, threshold: Double = defaultOutlierThreshold, lambda: Double = defaultLambda
    ) throws(OneShotError) -> [Double] {
        var ratios: [Double] = []
        for metric in metrics { ratios.append(try outlierRatio(metric, threshold: threshold)) }
        return try layerSparsities(outlierRatios: ratios, target: target, lambda: lambda)
    }
}
