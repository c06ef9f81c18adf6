import Foundation
import SqueezeModels
import SqueezeTensor

/// How the masks' `log α` start: coarse masks (layers, heads) almost surely
/// on, fine-grained ones (FFN units, hidden dimensions) from a drop rate, as
/// the reference initialises them (`Normal(log(1 − p) − log p, σ)`).
public struct CoFiInitialization: Sendable, Hashable {
    public var coarseLogAlpha: Double
    public var fineDropRate: Double
    public var standardDeviation: Double

    public init(coarseLogAlpha: Double = 10, fineDropRate: Double = 0.5, standardDeviation: Double = 0.01) {
        self.coarseLogAlpha = coarseLogAlpha
        self.fineDropRate = fineDropRate
        self.standardDeviation = standardDeviation
    }
}

/// One training sample of the masks: the values to feed the forward pass
/// and `dz/dlog α` per parameter (`CoFiMasks.logAlpha` order).
public struct CoFiMaskSample: Sendable, Hashable {
    public var values: CoFiMaskValues
    public var derivatives: [Double]
}

/// The Lagrangian sparsity term `λ1·(ŝparsity − t) + λ2·(ŝparsity − t)²` and
/// its gradients: descend on `log α`, ascend on `λ1`, `λ2`.
public struct CoFiLagrangian: Sendable, Hashable {
    public var value: Double
    public var expectedSparsity: Double
    public var target: Double
    public var logAlphaGradient: [Double]
    public var lambda1Gradient: Double
    public var lambda2Gradient: Double
}

/// CoFi's masks for one encoder (Xia et al. 2022): hard-concrete `z_MHA`,
/// `z_head`, `z_FFN`, `z_int` and `z_hidden` with learned `log α`.
///
/// The masks stay outside the autodiff tape: each step samples `z`, feeds
/// the values into the forward pass as tape leaves, reads `dL/dz` back after
/// the backward and applies `dz/dlog α` here (`logAlphaGradient`). The
/// parameters are one flat vector so one optimiser can update them.
public struct CoFiMasks: Sendable, Hashable {
    public let structure: CoFiStructure
    public let units: Set<CoFiUnit>
    /// The learned `log α` of the chosen units, in this order: `z_MHA` then
    /// `z_FFN` (layers), `z_head` by layer (heads), `z_int` by layer
    /// (ffn_units), `z_hidden` (hidden).
    public var logAlpha: [Double]

    /// Masks initialised as `initialization` says, from `seed`.
    public init(structure: CoFiStructure, units: Set<CoFiUnit>, initialization: CoFiInitialization = .init(), seed: UInt64) throws(CoFiError) {
        let drop = initialization.fineDropRate
        guard drop > 0, drop < 1 else { throw CoFiError("initial drop rate must be in (0, 1), got \(drop)") }
        guard initialization.standardDeviation >= 0, initialization.coarseLogAlpha.isFinite else {
            throw CoFiError("initial log α must be finite with a non-negative spread")
        }
        self.structure = structure
        self.units = units
        var generator = SeededGenerator(seed: seed)
        let coarse = initialization.coarseLogAlpha
        let fine = Foundation.log(1 - drop) - Foundation.log(drop)
        let means = CoFiMaskValues(
            attentionLayers: structure.layers.map { _ in coarse }, heads: structure.layers.map { Array(repeating: coarse, count: $0.heads) },
            ffnLayers: structure.layers.map { _ in coarse },
            intermediate: structure.layers.map { Array(repeating: fine, count: $0.intermediateSize) },
            hidden: Array(repeating: fine, count: structure.hiddenSize))
        logAlpha = []
        logAlpha = gather(means).map {
            $0 + initialization.standardDeviation * Double(generator.normal())
        }
    }

    /// Masks with the given parameters (e.g. restored), checked against the layout.
    public init(structure: CoFiStructure, units: Set<CoFiUnit>, logAlpha: [Double]) throws(CoFiError) {
        self.structure = structure
        self.units = units
        self.logAlpha = []
        let expected = gather(CoFiMaskValues(structure: structure, repeating: 0)).count
        guard logAlpha.count == expected, logAlpha.allSatisfy(\.isFinite) else {
            throw CoFiError("\(logAlpha.count) mask parameters for a layout of \(expected), or a non-finite one")
        }
        self.logAlpha = logAlpha
    }

    /// The entries of the chosen units, in `logAlpha` order.
    public func gather(_ values: CoFiMaskValues) -> [Double] {
        var flat: [Double] = []
        if units.contains(.layers) { flat += values.attentionLayers + values.ffnLayers }
        if units.contains(.heads) { flat += values.heads.flatMap { $0 } }
        if units.contains(.ffnUnits) { flat += values.intermediate.flatMap { $0 } }
        if units.contains(.hidden) { flat += values.hidden }
        return flat
    }

    /// `base` with the chosen units' entries replaced from `flat` (`logAlpha` order).
    public func scatter(_ flat: [Double], into base: CoFiMaskValues) -> CoFiMaskValues {
        precondition(flat.count == logAlpha.count, "\(flat.count) values for \(logAlpha.count) mask parameters")
        var result = base
        var index = 0
        func take(_ count: Int) -> [Double] {
            defer { index += count }
            return Array(flat[index..<(index + count)])
        }
        let layerCount = structure.layers.count
        if units.contains(.layers) {
            result.attentionLayers = take(layerCount)
            result.ffnLayers = take(layerCount)
        }
        if units.contains(.heads) { result.heads = structure.layers.map { take($0.heads) } }
        if units.contains(.ffnUnits) { result.intermediate = structure.layers.map { take($0.intermediateSize) } }
        if units.contains(.hidden) { result.hidden = take(structure.hiddenSize) }
        return result
    }

    /// The mask values with every learned entry set by `transform(log α)` and the others `fixed`.
    private func values(fixed: Double, _ transform: (Double) -> Double) -> CoFiMaskValues {
        scatter(logAlpha.map(transform), into: CoFiMaskValues(structure: structure, repeating: fixed))
    }

    // MARK: Training

    /// A training sample: `z` for every entry (1 for units not chosen) and `dz/dlog α`.
    public func sample(generator: inout SeededGenerator) -> CoFiMaskSample {
        var z: [Double] = []
        var derivatives: [Double] = []
        z.reserveCapacity(logAlpha.count)
        derivatives.reserveCapacity(logAlpha.count)
        for value in logAlpha {
            let drawn = HardConcrete.sample(logAlpha: value, uniform: HardConcrete.uniform(&generator))
            z.append(drawn.z)
            derivatives.append(drawn.derivative)
        }
        return CoFiMaskSample(values: scatter(z, into: CoFiMaskValues(structure: structure, repeating: 1)), derivatives: derivatives)
    }

    /// `dL/dlog α` from `dL/dz` (read off the tape) by the chain rule.
    public func logAlphaGradient(_ sample: CoFiMaskSample, zGradient: CoFiMaskValues) -> [Double] {
        zip(gather(zGradient), sample.derivatives).map { $0 * $1 }
    }

    /// Clamps every `log α` to `HardConcrete.logAlphaRange` (after each update).
    public mutating func clampLogAlpha() {
        logAlpha = logAlpha.map(HardConcrete.clamp)
    }

    // MARK: Expected size

    /// `P(z ≠ 0)` of every entry (1 for units not chosen).
    public var probabilities: CoFiMaskValues {
        values(fixed: 1, HardConcrete.probabilityNonZero(logAlpha:))
    }

    /// The expected number of remaining prunable parameters and its gradient with respect to `logAlpha`.
    public func expectedRemainingParameters() -> (value: Double, gradient: [Double]) {
        let (value, byProbability) = structure.expectedRemainingParameters(probabilities)
        let chain = logAlpha.map(HardConcrete.probabilityNonZeroDerivative(logAlpha:))
        return (value, zip(gather(byProbability), chain).map { $0 * $1 })
    }

    /// `1 − ŝ / M` and its gradient with respect to `logAlpha`.
    public func expectedSparsity() -> (value: Double, gradient: [Double]) {
        let full = Double(Swift.max(structure.fullPrunableParameterCount, 1))
        let (remaining, gradient) = expectedRemainingParameters()
        return (1 - remaining / full, gradient.map { -$0 / full })
    }

    /// The Lagrangian term for target sparsity `target` and multipliers `λ1`, `λ2`.
    public func lagrangian(target: Double, lambda1: Double, lambda2: Double) -> CoFiLagrangian {
        let (sparsity, gradient) = expectedSparsity()
        let gap = sparsity - target
        let outer = lambda1 + 2 * lambda2 * gap
        return CoFiLagrangian(
            value: lambda1 * gap + lambda2 * gap * gap, expectedSparsity: sparsity, target: target,
            logAlphaGradient: gradient.map { outer * $0 }, lambda1Gradient: gap, lambda2Gradient: gap * gap)
    }

    // MARK: Evaluation

    /// Deterministic masks (the reference's evaluation mode): per group — each
    /// layer's heads, each layer's FFN units, the hidden dimensions, and each
    /// layer mask on its own — the `round(Σ(1 − P(z ≠ 0)))` entries with the
    /// lowest scores are 0 and the others keep `sigmoid(log α / β · 0.8)`.
    /// Units not chosen are 1.
    public func deterministic() -> CoFiMaskValues {
        let all = scatter(logAlpha, into: CoFiMaskValues(structure: structure, repeating: .nan))
        var result = CoFiMaskValues(structure: structure, repeating: 1)
        if units.contains(.layers) {
            result.attentionLayers = all.attentionLayers.map { HardConcrete.deterministic(logAlphas: [$0])[0] }
            result.ffnLayers = all.ffnLayers.map { HardConcrete.deterministic(logAlphas: [$0])[0] }
        }
        if units.contains(.heads) { result.heads = all.heads.map(HardConcrete.deterministic(logAlphas:)) }
        if units.contains(.ffnUnits) { result.intermediate = all.intermediate.map(HardConcrete.deterministic(logAlphas:)) }
        if units.contains(.hidden) { result.hidden = HardConcrete.deterministic(logAlphas: all.hidden) }
        return result
    }
}
