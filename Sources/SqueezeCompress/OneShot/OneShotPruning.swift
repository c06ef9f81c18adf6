/// The one-shot pruning methods for one linear layer.
public enum PruningMethod: String, Sendable, Hashable, CaseIterable {
    /// Smallest |W| (no calibration).
    case magnitude
    /// Smallest |W_ij| · ‖X_j‖₂ per output row (Sun et al. 2023); no weight update.
    case wanda
    /// Adaptive mask selection with OBS error compensation (Frantar & Alistarh 2023).
    case sparseGPT = "sparsegpt"
}

/// Settings of the one-shot pruning methods beyond the target.
public struct OneShotPruningOptions: Sendable, Hashable {
    /// SparseGPT: columns per block (mask selection and lazy batch updates);
    /// rounded up to a multiple of M for N:M targets.
    public var blockSize: Int
    /// SparseGPT: `λ = dampening · mean(diag H)` is added to the Hessian's diagonal.
    public var dampening: Double
    /// A kept-mask from an earlier pruning (`rows · cols`, row-major, true =
    /// kept): the weights it prunes stay exactly zero. They count toward the
    /// target and the method adds its own choices until each comparison set
    /// (layer, row, SparseGPT block, N:M group) reaches its count; where the
    /// prior mask already prunes more, all of its zeros stay and the layer
    /// ends sparser than the target (an N:M group then keeps fewer than N).
    public var priorMask: [Bool]?

    public static let defaultBlockSize = 128
    public static let defaultDampening = 0.01

    public init(blockSize: Int = Self.defaultBlockSize, dampening: Double = Self.defaultDampening, priorMask: [Bool]? = nil) {
        self.blockSize = blockSize
        self.dampening = dampening
        self.priorMask = priorMask
    }
}

/// A pruned layer: the weights (`rows × cols`, row-major; pruned weights are
/// exactly 0) and the kept-mask (true = kept; a kept weight may still be 0).
public struct PrunedLayer: Sendable, Hashable {
    public let rows: Int
    public let cols: Int
    public var weights: [Float]
    public var mask: [Bool]

    public init(rows: Int, cols: Int, weights: [Float], mask: [Bool]) {
        self.rows = rows
        self.cols = cols
        self.weights = weights
        self.mask = mask
    }

    /// Weights the mask prunes.
    public var prunedCount: Int { mask.reduce(0) { $0 + ($1 ? 0 : 1) } }
    /// The fraction of pruned weights.
    public var sparsity: Double { Double(prunedCount) / Double(mask.count) }
}

/// One-shot, calibration-based pruning of one linear layer `W` (`rows` =
/// outputs × `cols` = inputs, row-major, PyTorch `Linear.weight` layout),
/// given statistics of its input X. Model-agnostic: the caller supplies the
/// weight and the statistics of whatever feeds it.
///
/// What each method compares (unstructured `fraction`; counts are
/// ⌊fraction · size⌋ of the comparison set, ties broken by position):
/// - magnitude: |W| over the whole layer (`scope: layer`; `globalMagnitude`
///   for one threshold across layers);
/// - Wanda: `|W_ij| · ‖X_j‖₂` within each output row (Sun et al. 2023, Eq. 1
///   and the per-output comparison group of §3);
/// - SparseGPT: `w²/[H⁻¹]_jj²` within each block of columns (Algorithm 1),
///   ⌊fraction · rows · c⌋ pruned among the first c columns after each block,
///   so the layer reaches ⌊fraction · rows · cols⌋ exactly.
/// An N:M target keeps the N largest scores in every group of M consecutive
/// inputs of a row, for every method.
public enum OneShotPruning {
    public static func prune(
        weight: [Float], rows: Int, cols: Int, statistics: LayerInputStatistics?, method: PruningMethod,
        target: SparsityTarget, options: OneShotPruningOptions = OneShotPruningOptions()
    ) throws(OneShotError) -> PrunedLayer {
        try OneShotValidation.checkWeight(weight, rows: rows, cols: cols)
        try OneShotValidation.checkMask(options.priorMask, rows: rows, cols: cols)
        try target.validate(cols: cols)
        switch method {
        case .magnitude:
            let scores = weight.map { Double(abs($0)) }
            return apply(selectMask(scores: scores, rows: rows, cols: cols, target: target, scope: .layer, prior: options.priorMask),
                to: weight, rows: rows, cols: cols)
        case .wanda:
            let statistics = try calibrated(statistics, cols: cols, method: "Wanda")
            let scores = try Wanda.metric(weight: weight, rows: rows, cols: cols, columnNorms: statistics.columnNorms)
            return apply(selectMask(scores: scores, rows: rows, cols: cols, target: target, scope: .row, prior: options.priorMask),
                to: weight, rows: rows, cols: cols)
        case .sparseGPT:
            let statistics = try calibrated(statistics, cols: cols, method: "SparseGPT")
            return try SparseGPT.prune(
                weight: weight, rows: rows, cols: cols, hessian: statistics.hessian, target: target, options: options)
        }
    }

    /// A layer for `globalMagnitude`.
    public struct LayerWeight: Sendable, Hashable {
        public var weight: [Float]
        public var rows: Int
        public var cols: Int
        public init(weight: [Float], rows: Int, cols: Int) {
            self.weight = weight
            self.rows = rows
            self.cols = cols
        }
    }

    /// Magnitude pruning with one threshold across `layers` (`scope: global`):
    /// the ⌊fraction · total⌋ smallest |W| of all layers together (ties by
    /// layer, then position) are zeroed, so layers end with different sparsities.
    public static func globalMagnitude(layers: [LayerWeight], fraction: Double) throws(OneShotError) -> [PrunedLayer] {
        try SparsityTarget.unstructured(fraction).validate(cols: 1)
        for layer in layers { try OneShotValidation.checkWeight(layer.weight, rows: layer.rows, cols: layer.cols) }
        var entries: [(magnitude: Float, layer: Int, index: Int)] = []
        entries.reserveCapacity(layers.reduce(0) { $0 + $1.weight.count })
        for (layerIndex, layer) in layers.enumerated() {
            for (index, value) in layer.weight.enumerated() { entries.append((abs(value), layerIndex, index)) }
        }
        let count = Int((fraction * Double(entries.count)).rounded(.down))
        entries.sort { ($0.magnitude, $0.layer, $0.index) < ($1.magnitude, $1.layer, $1.index) }
        var masks = layers.map { [Bool](repeating: true, count: $0.weight.count) }
        for entry in entries.prefix(count) { masks[entry.layer][entry.index] = false }
        return layers.indices.map { apply(masks[$0], to: layers[$0].weight, rows: layers[$0].rows, cols: layers[$0].cols) }
    }

    static func calibrated(_ statistics: LayerInputStatistics?, cols: Int, method: String) throws(OneShotError) -> LayerInputStatistics {
        guard let statistics, statistics.tokenCount > 0 else { throw .missingCalibration(method: method) }
        guard statistics.columns == cols else { throw .widthMismatch(expected: cols, got: statistics.columns) }
        return statistics
    }

    enum Scope { case layer, row }

    /// The kept-mask that prunes the lowest `scores` per comparison set.
    static func selectMask(
        scores: [Double], rows: Int, cols: Int, target: SparsityTarget, scope: Scope, prior: [Bool]?
    ) -> [Bool] {
        var mask = [Bool](repeating: true, count: rows * cols)
        switch target {
        case .nOfM(let n, let m):
            for row in 0..<rows {
                for start in stride(from: row * cols, to: (row + 1) * cols, by: m) {
                    pruneLowest(Array(start..<(start + m)), count: m - n, scores: scores, prior: prior, mask: &mask)
                }
            }
        case .unstructured(let fraction):
            switch scope {
            case .layer:
                let count = Int((fraction * Double(rows * cols)).rounded(.down))
                pruneLowest(Array(0..<(rows * cols)), count: count, scores: scores, prior: prior, mask: &mask)
            case .row:
                let count = Int((fraction * Double(cols)).rounded(.down))
                for row in 0..<rows {
                    pruneLowest(Array((row * cols)..<((row + 1) * cols)), count: count, scores: scores, prior: prior, mask: &mask)
                }
            }
        }
        return mask
    }

    /// Marks pruned the `count` entries of `indices` with the lowest score
    /// (ties by index), the prior mask's zeros first; all prior zeros stay
    /// pruned even past `count`.
    static func pruneLowest(_ indices: [Int], count: Int, scores: [Double], prior: [Bool]?, mask: inout [Bool]) {
        pruneLowest(indices, count: count, score: { scores[$0] }, prior: prior, mask: &mask)
    }

    static func pruneLowest(_ indices: [Int], count: Int, score: (Int) -> Double, prior: [Bool]?, mask: inout [Bool]) {
        var forced = 0
        if let prior {
            for index in indices where !prior[index] {
                mask[index] = false
                forced += 1
            }
        }
        let remaining = count - forced
        guard remaining > 0 else { return }
        var candidates: [(score: Double, index: Int)] = []
        candidates.reserveCapacity(indices.count)
        for index in indices where prior?[index] ?? true { candidates.append((score(index), index)) }
        candidates.sort { ($0.score, $0.index) < ($1.score, $1.index) }
        for candidate in candidates.prefix(remaining) { mask[candidate.index] = false }
    }

    static func apply(_ mask: [Bool], to weight: [Float], rows: Int, cols: Int) -> PrunedLayer {
        var pruned = weight
        for index in pruned.indices where !mask[index] { pruned[index] = 0 }
        return PrunedLayer(rows: rows, cols: cols, weights: pruned, mask: mask)
    }
}

/// Wanda's pruning metric (Sun et al. 2023, Eq. 1): `S_ij = |W_ij| · ‖X_j‖₂`.
public enum Wanda {
    /// `rows × cols`, row-major, in Double; `columnNorms` are `‖X_j‖₂` (`LayerInputStatistics.columnNorms`).
    public static func metric(weight: [Float], rows: Int, cols: Int, columnNorms: [Double]) throws(OneShotError) -> [Double] {
        try OneShotValidation.checkWeight(weight, rows: rows, cols: cols)
        guard columnNorms.count == cols else { throw .widthMismatch(expected: cols, got: columnNorms.count) }
        var metric = [Double](repeating: 0, count: rows * cols)
        for row in 0..<rows {
            for j in 0..<cols { metric[row * cols + j] = Double(abs(weight[row * cols + j])) * columnNorms[j] }
        }
        return metric
    }
}
