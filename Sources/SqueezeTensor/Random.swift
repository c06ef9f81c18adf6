import Foundation

/// The splitmix64 output function: a bijective 64-bit mix.
@inline(__always)
func splitMix64Finalize(_ value: UInt64) -> UInt64 {
    var z = value
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The 64-bit golden-ratio increment of splitmix64.
let splitMixIncrement: UInt64 = 0x9E37_79B9_7F4A_7C15

/// A per-(seed, stream) key for `randomBits`; hoisted out of element loops.
@inline(__always)
func randomStreamKey(seed: UInt64, stream: UInt64) -> UInt64 {
    splitMix64Finalize(splitMix64Finalize(seed) ^ splitMix64Finalize(stream &+ 0x6A09_E667_F3BC_C909))
}

/// `randomBits` given a precomputed `randomStreamKey`.
@inline(__always)
func randomBits(key: UInt64, index: UInt64) -> UInt64 {
    splitMix64Finalize(key &+ (index &+ 1) &* splitMixIncrement)
}

/// Counter-based random bits: a pure function of `(seed, stream, index)`.
///
/// Element `index` of stream `stream` is the `index`-th output of a splitmix64
/// sequence whose starting state is a hash of `(seed, stream)`. Because nothing
/// is carried from one element to the next, any split of the indices across
/// threads produces the same values (dropout masks do not depend on threading).
public func randomBits(seed: UInt64, stream: UInt64, index: UInt64) -> UInt64 {
    randomBits(key: randomStreamKey(seed: seed, stream: stream), index: index)
}

/// A small, fast, seedable generator: xoshiro256** seeded by splitmix64.
///
/// The same seed gives the same sequence on every platform, which is what
/// reproducible initialisation and shuffling need (the system generator is
/// not seedable).
public struct SeededGenerator: RandomNumberGenerator, Sendable, Hashable {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    public init(seed: UInt64) {
        var state = seed
        func next() -> UInt64 {
            state &+= splitMixIncrement
            return splitMix64Finalize(state)
        }
        s0 = next()
        s1 = next()
        s2 = next()
        s3 = next()
    }

    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// A uniform `Float` in `[0, 1)` with 24 random bits.
    public mutating func uniform() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    /// A uniform `Float` in `range` (lower bound included, upper excluded).
    public mutating func uniform(in range: Range<Float>) -> Float {
        range.lowerBound + uniform() * (range.upperBound - range.lowerBound)
    }

    /// A normally distributed `Float` (Box–Muller in `Double`).
    public mutating func normal(mean: Float = 0, standardDeviation: Float = 1) -> Float {
        // 53-bit uniform in (0, 1]: never 0, so the logarithm is finite.
        let u1 = Double((next() >> 11) + 1) * 0x1p-53
        let u2 = Double(next() >> 11) * 0x1p-53
        let z = (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
        return mean + standardDeviation * Float(z)
    }
}

extension Tensor {
    /// An f32 tensor of independent uniform values in `range`.
    public static func uniform(shape: [Int], in range: Range<Float> = -1..<1, generator: inout SeededGenerator) -> Tensor {
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        for index in values.indices { values[index] = generator.uniform(in: range) }
        return Tensor(shape: shape, floats: values)
    }

    /// An f32 tensor of independent normal values.
    public static func normal(
        shape: [Int], mean: Float = 0, standardDeviation: Float = 1, generator: inout SeededGenerator
    ) -> Tensor {
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        for index in values.indices { values[index] = generator.normal(mean: mean, standardDeviation: standardDeviation) }
        return Tensor(shape: shape, floats: values)
    }
}

/// Dropout's keep decision for one element, shared by every backend so their
/// masks agree exactly: keep when the top 24 bits, as a fraction of 2²⁴, are
/// at least `p`.
@inline(__always)
func dropoutKeeps(_ bits: UInt64, threshold: UInt64) -> Bool {
    bits >> 40 >= threshold
}

/// The 24-bit threshold for drop probability `p` in `[0, 1)`.
func dropoutThreshold(_ p: Float) -> UInt64 {
    precondition(p >= 0 && p < 1, "dropout probability \(p) outside [0, 1)")
    return UInt64((Double(p) * 0x1p24).rounded())
}
