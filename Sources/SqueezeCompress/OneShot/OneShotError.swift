/// Why a one-shot (calibration-based, layer-wise) compression request cannot
/// run. Sparsities, N:M patterns, bit widths and group sizes come from
/// recipes, weights from model files: every bad value is an error that says
/// what to change, never a crash.
public enum OneShotError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `rows` or `cols` below 1, or a weight (mask) that does not hold `rows · cols` values.
    case invalidShape(name: String, count: Int, rows: Int, cols: Int)
    /// An unstructured sparsity outside `[0, 1)`.
    case invalidSparsity(Double)
    /// An N:M pattern without `0 < N < M`.
    case invalidNOfM(n: Int, m: Int)
    /// M does not divide the layer's input width.
    case nOfMDoesNotDivide(m: Int, cols: Int)
    /// A NaN or infinite weight.
    case nonFiniteWeight(row: Int, column: Int)
    /// A NaN or infinite calibration input.
    case nonFiniteInput(row: Int, column: Int)
    /// Calibration inputs that are not an f32 `[tokens, cols]` tensor.
    case invalidCalibrationInputs(dtype: String, shape: [Int])
    /// The error compensation produced a NaN or infinite weight (an
    /// ill-conditioned Hessian); more dampening helps.
    case nonFiniteResult(method: String, dampening: Double)
    /// Calibration inputs, statistics or a Hessian of another width than the layer's inputs.
    case widthMismatch(expected: Int, got: Int)
    /// The method needs calibration statistics and none (or no tokens) were given.
    case missingCalibration(method: String)
    /// A `blockSize` below 1.
    case invalidBlockSize(Int)
    /// A dampening fraction that is negative or not finite.
    case invalidDampening(Double)
    /// The damped Hessian has no Cholesky factor (not positive definite).
    case hessianNotPositiveDefinite(column: Int, dampening: Double)
    /// A bit width the GPTQ grid does not support.
    case unsupportedBits(Int)
    /// A group size that is neither −1 (per output row) nor positive.
    case invalidGroupSize(Int)
    /// The group size does not divide the layer's input width.
    case groupSizeDoesNotDivide(groupSize: Int, cols: Int)
    /// OWL: an outlier threshold M that is not positive and finite.
    case invalidOutlierThreshold(Double)
    /// OWL: a λ that is negative or not finite.
    case invalidLambda(Double)
    /// OWL: no layers, or a layer with no metric values.
    case emptyLayers
    /// OWL: the deviation pushed a layer's sparsity outside `[0, 1)`.
    case layerSparsityOutOfRange(layer: Int, sparsity: Double, lambda: Double)

    public var description: String {
        switch self {
        case .invalidShape(let name, let count, let rows, let cols):
            "\(name) has \(count) values; a [\(rows), \(cols)] layer (rows and cols at least 1) needs \(rows * cols)"
        case .invalidSparsity(let value):
            "sparsity \(value) must be in [0, 1): the fraction of weights set to zero (0.5 zeroes half)"
        case .invalidNOfM(let n, let m):
            "N:M sparsity \(n):\(m) must keep 0 < N < M non-zeros in every M consecutive inputs (e.g. 2:4); "
                + "for a dense layer use an unstructured sparsity of 0"
        case .nOfMDoesNotDivide(let m, let cols):
            "the N:M group size M = \(m) does not divide the layer's input width \(cols); choose an M that divides it (e.g. 4)"
        case .nonFiniteWeight(let row, let column):
            "weight [\(row), \(column)] is not finite"
        case .nonFiniteInput(let row, let column):
            "calibration input [\(row), \(column)] is not finite"
        case .invalidCalibrationInputs(let dtype, let shape):
            "calibration inputs must be an f32 [tokens, cols] tensor, got a \(dtype) tensor of shape \(shape)"
        case .nonFiniteResult(let method, let dampening):
            "\(method) produced a non-finite weight with dampening \(dampening); raise the dampening (e.g. 0.1)"
        case .widthMismatch(let expected, let got):
            "calibration data has width \(got), but the layer has \(expected) inputs"
        case .missingCalibration(let method):
            "\(method) needs calibration statistics of the layer's inputs with at least one token"
        case .invalidBlockSize(let size):
            "block size \(size) must be at least 1 (128 is the usual choice)"
        case .invalidDampening(let value):
            "dampening \(value) must be a finite fraction >= 0 of the Hessian's mean diagonal (0.01 is the usual choice)"
        case .hessianNotPositiveDefinite(let column, let dampening):
            "the damped Hessian is not positive definite (Cholesky failed at column \(column) with dampening \(dampening)); "
                + "raise the dampening or calibrate on more tokens"
        case .unsupportedBits(let bits):
            "GPTQ supports 2 to 8 bits, got \(bits)"
        case .invalidGroupSize(let size):
            "group size \(size) must be -1 (one scale per output row) or positive"
        case .groupSizeDoesNotDivide(let size, let cols):
            "group size \(size) does not divide the layer's input width \(cols); use a divisor (e.g. 128, 64, 32) or -1"
        case .invalidOutlierThreshold(let value):
            "OWL outlier threshold M = \(value) must be positive and finite (5 is the usual choice)"
        case .invalidLambda(let value):
            "OWL lambda \(value) must be finite and >= 0 (0.08 is the usual choice)"
        case .emptyLayers:
            "OWL needs at least one layer, each with at least one metric value"
        case .layerSparsityOutOfRange(let layer, let sparsity, let lambda):
            "OWL gives layer \(layer) the sparsity \(sparsity), outside [0, 1); lower lambda (\(lambda)) or the target sparsity"
        }
    }
}

/// How many weights a pruning keeps, and in which pattern.
public enum SparsityTarget: Sendable, Hashable, CustomStringConvertible {
    /// Zero ⌊fraction · count⌋ weights of the comparison set (a layer, a
    /// row, a block: each method says which); `fraction` in `[0, 1)`.
    case unstructured(Double)
    /// Keep exactly `n` non-zeros in every group of `m` consecutive weights
    /// along the input dimension of a row (columns `[g·m, g·m + m)`): the
    /// hardware pattern "2:4" is `nOfM(n: 2, m: 4)`, 50% sparse. `0 < n < m`,
    /// and `m` divides the input width.
    case nOfM(n: Int, m: Int)

    /// The fraction of zeros the target asks for.
    public var fraction: Double {
        switch self {
        case .unstructured(let fraction): fraction
        case .nOfM(let n, let m): 1 - Double(n) / Double(m)
        }
    }

    public var description: String {
        switch self {
        case .unstructured(let fraction): "unstructured \(fraction)"
        case .nOfM(let n, let m): "\(n):\(m)"
        }
    }

    /// Checks the target alone and against a layer of `cols` inputs.
    public func validate(cols: Int) throws(OneShotError) {
        switch self {
        case .unstructured(let fraction):
            guard fraction.isFinite, fraction >= 0, fraction < 1 else { throw .invalidSparsity(fraction) }
        case .nOfM(let n, let m):
            guard n > 0, n < m else { throw .invalidNOfM(n: n, m: m) }
            guard cols % m == 0 else { throw .nOfMDoesNotDivide(m: m, cols: cols) }
        }
    }
}

/// Shape checks shared by the one-shot methods.
enum OneShotValidation {
    static func checkWeight(_ weight: [Float], rows: Int, cols: Int) throws(OneShotError) {
        guard rows >= 1, cols >= 1, weight.count == rows * cols else {
            throw .invalidShape(name: "the weight", count: weight.count, rows: rows, cols: cols)
        }
        if let index = weight.firstIndex(where: { !$0.isFinite }) {
            throw .nonFiniteWeight(row: index / cols, column: index % cols)
        }
    }

    static func checkMask(_ mask: [Bool]?, rows: Int, cols: Int) throws(OneShotError) {
        guard let mask else { return }
        guard mask.count == rows * cols else {
            throw .invalidShape(name: "the prior mask", count: mask.count, rows: rows, cols: cols)
        }
    }

    static func checkBlock(size: Int, dampening: Double) throws(OneShotError) {
        guard size >= 1 else { throw .invalidBlockSize(size) }
        guard dampening.isFinite, dampening >= 0 else { throw .invalidDampening(dampening) }
    }
}
