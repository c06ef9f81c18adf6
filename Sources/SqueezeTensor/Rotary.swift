import Foundation

/// Rotary position embeddings (RoPE) in Hugging Face's "rotate half"
/// convention: the frequencies and angle tables that `Backend.rotary` takes,
/// computed in f32 the way `transformers`' default rotary embedding does.
public enum Rotary {
    /// `1 / θ^(2i/d)` for `i` in `0..<d/2`, as Hugging Face computes
    /// `inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`:
    /// the exponent `Float(2i) / Float(d)` divided in f32, the power
    /// `powf(Float(θ), exponent)` in f32, then `1 / power` in f32. PyTorch's
    /// f32 power (SLEEF, ≤ 1 ulp) and the C library's `powf` (correctly
    /// rounded or nearly) can differ in the last bit, so a frequency can
    /// differ from PyTorch's by 1 ulp; everything else is the same rounding.
    /// `d` must be even and positive.
    public static func inverseFrequencies(headDimension d: Int, theta: Double) -> [Float] {
        precondition(d > 0 && d % 2 == 0, "rotary: the head dimension must be even and positive, got \(d)")
        let base = Float(theta)
        return (0..<(d / 2)).map { i in
            let exponent = Float(2 * i) / Float(d)
            return 1 / Foundation.powf(base, exponent)
        }
    }

    /// The `[T, d/2]` cosines and sines of the angles `Float(position) ·
    /// inverseFrequencies[i]` (the f32 product, as HF's f32 outer product
    /// `inv_freq @ position_ids` rounds it) for each position in `positions`
    /// (T of them, in order: e.g. `offset..<offset + T` when decoding with a
    /// KV cache). The cosine and sine of each f32 angle are computed in
    /// double and rounded to f32 (PyTorch's f32 `cos`/`sin` are within 1 ulp
    /// of that). Positions must be below 2²⁴, where f32 counts exactly.
    public static func rotaryTables(
        positions: Range<Int>, headDimension d: Int, inverseFrequencies: [Float]
    ) -> (cos: Tensor, sin: Tensor) {
        precondition(d > 0 && d % 2 == 0, "rotary: the head dimension must be even and positive, got \(d)")
        precondition(
            inverseFrequencies.count == d / 2,
            "rotary: \(inverseFrequencies.count) inverse frequencies for head dimension \(d) (needs \(d / 2))")
        precondition(
            positions.lowerBound >= 0 && positions.upperBound <= 1 << 24, "rotary: positions \(positions) outside 0..<2^24")
        var cosines: [Float] = []
        var sines: [Float] = []
        cosines.reserveCapacity(positions.count * d / 2)
        sines.reserveCapacity(positions.count * d / 2)
        for position in positions {
            for frequency in inverseFrequencies {
                let angle = Double(Float(position) * frequency)
                cosines.append(Float(Foundation.cos(angle)))
                sines.append(Float(Foundation.sin(angle)))
            }
        }
        let shape = [positions.count, d / 2]
        return (Tensor(shape: shape, floats: cosines), Tensor(shape: shape, floats: sines))
    }

    /// `(B, T, H, d/2)` of a rotary op's input after checking that `x` is
    /// f32 `[B, T, H, d]` with d even and the tables f32 `[T, d/2]`.
    static func checkedShape(_ x: Tensor, cos: Tensor, sin: Tensor) -> (batch: Int, tokens: Int, heads: Int, half: Int) {
        x.requireFloat("rotary")
        cos.requireFloat("rotary")
        sin.requireFloat("rotary")
        precondition(x.rank == 4 && x.shape[3] % 2 == 0, "rotary: x must be [B, T, H, d] with d even, got \(x.shape)")
        let (tokens, half) = (x.shape[1], x.shape[3] / 2)
        precondition(
            cos.shape == [tokens, half] && sin.shape == [tokens, half],
            "rotary: cos \(cos.shape) and sin \(sin.shape) must be [\(tokens), \(half)] for x \(x.shape)")
        return (x.shape[0], tokens, x.shape[2], half)
    }
}
