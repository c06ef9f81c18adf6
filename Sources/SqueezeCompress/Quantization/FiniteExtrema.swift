/// The smallest and largest finite values of a buffer, and how many values
/// were NaN or infinite (skipped). `nil` extrema when nothing was finite.
struct FiniteExtrema: Sendable, Hashable {
    var minimum: Float
    var maximum: Float
    var nonFiniteCount: Int

    /// True when at least one finite value was seen.
    var hasValues: Bool { minimum <= maximum }

    static let empty = FiniteExtrema(minimum: .infinity, maximum: -.infinity, nonFiniteCount: 0)

    /// One pass, eight lanes at a time (LLVM does not vectorise a scalar
    /// floating-point min/max reduction without fast-math flags).
    init(_ values: UnsafeBufferPointer<Float>) {
        self = .empty
        guard let base = values.baseAddress else { return }
        let count = values.count
        let exponentMask = SIMD8<UInt32>(repeating: 0x7F80_0000)
        var low = SIMD8<Float>(repeating: .infinity)
        var high = SIMD8<Float>(repeating: -.infinity)
        var nonFinite = SIMD8<UInt32>(repeating: 0)
        var index = 0
        let raw = UnsafeRawPointer(base)
        while index + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: index * 4, as: SIMD8<Float>.self)
            let bits = unsafeBitCast(v, to: SIMD8<UInt32>.self)
            let finite = (bits & exponentMask) .!= exponentMask
            low.replace(with: v, where: finite .& (v .< low))
            high.replace(with: v, where: finite .& (v .> high))
            nonFinite &+= SIMD8<UInt32>(repeating: 0).replacing(with: 1, where: .!finite)
            index += 8
        }
        var minimum = low.min()
        var maximum = high.max()
        var skipped = Int(nonFinite.wrappedSum())
        while index < count {
            let v = base[index]
            if v.isFinite {
                minimum = Swift.min(minimum, v)
                maximum = Swift.max(maximum, v)
            } else {
                skipped += 1
            }
            index += 1
        }
        self.init(minimum: minimum, maximum: maximum, nonFiniteCount: skipped)
    }

    init(minimum: Float, maximum: Float, nonFiniteCount: Int) {
        self.minimum = minimum
        self.maximum = maximum
        self.nonFiniteCount = nonFiniteCount
    }

    /// The extrema of both.
    func merged(with other: FiniteExtrema) -> FiniteExtrema {
        FiniteExtrema(
            minimum: Swift.min(minimum, other.minimum), maximum: Swift.max(maximum, other.maximum),
            nonFiniteCount: nonFiniteCount + other.nonFiniteCount)
    }
}
