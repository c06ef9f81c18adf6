// Vector math helpers, included (through kernels_impl.h) once per variant
// so each copy is compiled with that variant's target features. Names go
// through the macros in kernels.c (load8 -> sq_base_load8 / sq_avx2_load8).

SQ_INLINE SQ_TARGET f8 load8(const float *p) {
    f8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

SQ_INLINE SQ_TARGET void store8(float *p, f8 v) { memcpy(p, &v, sizeof v); }

SQ_INLINE SQ_TARGET f8 splat8(float x) { return (f8)x; }

/// Lane-wise `mask ? a : b` (mask lanes are all ones or all zeros).
SQ_INLINE SQ_TARGET f8 select8(i8v mask, f8 a, f8 b) { return (f8)((mask & (i8v)a) | (~mask & (i8v)b)); }

SQ_INLINE SQ_TARGET f8 abs8(f8 x) { return (f8)((i8v)x & 0x7fffffff); }

// Whole-vector reductions exist for 8 lanes only; the AVX-512 variant has
// maps alone (kernels_maps.h).
#ifndef SQ_MAPS_ONLY
SQ_INLINE SQ_TARGET float reduce_max8(f8 v) {
    float best = v[0];
    for (int i = 1; i < 8; i++) best = v[i] > best ? v[i] : best;
    return best;
}

SQ_INLINE SQ_TARGET double reduce_sum8(f8 v) {
    double total = 0;
    for (int i = 0; i < 8; i++) total += (double)v[i];
    return total;
}
#endif

/// floor(x) as integers, for |x| < 2³¹ (truncate, then step down where that rounded up).
SQ_INLINE SQ_TARGET i8v floor_int8(f8 x) {
    i8v t = __builtin_convertvector(x, i8v);
    return t + (__builtin_convertvector(t, f8) > x);
}

/// e^x (Cephes expf: range reduction by ln 2 and a degree-6 polynomial, ~1 ulp).
/// Below −87.3 the result is 0; above 88 it saturates at e^88.
SQ_INLINE SQ_TARGET f8 exp8(f8 x) {
    i8v underflow = x < -87.3f;
    x = __builtin_elementwise_min(__builtin_elementwise_max(x, splat8(-87.3f)), splat8(88.0f));
    i8v n = floor_int8(x * 1.44269504088896341f + 0.5f);
    f8 fx = __builtin_convertvector(n, f8);
    f8 r = x - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    f8 y = splat8(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    f8 scale = (f8)((n + 127) << 23);
    return select8(underflow, splat8(0.0f), y * scale);
}

/// Φ(x), the standard normal CDF. For |x|/√2 < 0.5 it is ½ + ½·erf from the
/// Taylor series of erf (7 terms, truncation < 1e-9); beyond, it goes through
/// erfc(|x|/√2) (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7),
/// so both tails keep relative accuracy. Absolute error ≲ 1e-7 everywhere.
SQ_INLINE SQ_TARGET f8 phi8(f8 x) {
    f8 z = abs8(x) * 0.707106781186547524f;
    f8 t = 1.0f / (1.0f + 0.5f * z);
    f8 p = splat8(0.17087277f);
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    f8 half_erfc = 0.5f * t * exp8(p - z * z);
    f8 tail = select8(x < 0.0f, half_erfc, 1.0f - half_erfc);
    // erf(s) = 2/√π · (s − s³/3 + s⁵/10 − s⁷/42 + s⁹/216 − s¹¹/1320 + s¹³/9360), s = x/√2.
    f8 s = x * 0.707106781186547524f;
    f8 s2 = s * s;
    f8 q = splat8(1.0f / 9360.0f);
    q = q * s2 - 1.0f / 1320.0f;
    q = q * s2 + 1.0f / 216.0f;
    q = q * s2 - 1.0f / 42.0f;
    q = q * s2 + 1.0f / 10.0f;
    q = q * s2 - 1.0f / 3.0f;
    q = q * s2 + 1.0f;
    f8 centre = 0.5f + (0.564189583547756287f * s) * q;
    return select8(z < 0.5f, centre, tail);
}

/// tanh: Cephes' odd polynomial below 0.625, 1 − 2/(e^{2|x|} + 1) above.
SQ_INLINE SQ_TARGET f8 tanh8(f8 x) {
    f8 a = abs8(x);
    f8 z = x * x;
    f8 small = splat8(-5.70498872745e-3f);
    small = small * z + 2.06390887954e-2f;
    small = small * z - 5.37397155531e-2f;
    small = small * z + 1.33314422036e-1f;
    small = small * z - 3.33332819422e-1f;
    small = small * z * x + x;
    f8 e = exp8(2.0f * __builtin_elementwise_min(a, splat8(9.0f)));
    f8 large = 1.0f - 2.0f / (e + 1.0f);
    large = (f8)((i8v)large | ((i8v)x & (int32_t)0x80000000));
    return select8(a > 0.625f, large, small);
}


/// σ(x) = 1/(1 + e^−x), with 1 − σ(x) in `*complement`, both from e = e^−|x|
/// ∈ [0, 1]: for x ≥ 0, σ = 1/(1 + e) and 1 − σ = e/(1 + e); mirrored for
/// x < 0. Nothing overflows and neither side cancels, whatever |x|.
SQ_INLINE SQ_TARGET f8 sigmoid8(f8 x, f8 *complement) {
    f8 e = exp8(-abs8(x));
    f8 r = 1.0f / (1.0f + e);
    f8 er = e * r;
    i8v positive = x >= 0.0f;
    *complement = select8(positive, er, r);
    return select8(positive, r, er);
}

/// SiLU, x·σ(x).
SQ_INLINE SQ_TARGET f8 silu8(f8 x) {
    f8 complement;
    return x * sigmoid8(x, &complement);
}

#define SQ_GELU_TANH_K 0.797884560802865355f /* √(2/π) */
#define SQ_GELU_TANH_C 0.044715f

/// GPT-2's gelu_new, ½·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³),
/// computed as x·σ(2u) (the same function: ½(1 + tanh u) = σ(2u)), which
/// does not cancel in 1 + tanh(u) for negative x.
SQ_INLINE SQ_TARGET f8 gelu_tanh8(f8 x) {
    f8 complement;
    f8 twice_u = (2.0f * SQ_GELU_TANH_K) * (x + SQ_GELU_TANH_C * x * x * x);
    return x * sigmoid8(twice_u, &complement);
}

/// d/dx of gelu_tanh8: s + x·s·(1 − s)·2√(2/π)·(1 + 3·0.044715·x²), s = σ(2u).
/// Beyond |x| = 10⁴ the product s·(1 − s) is exactly 0; x is clamped there
/// in the second term so that x² cannot overflow into 0·∞.
SQ_INLINE SQ_TARGET f8 gelu_tanh_derivative8(f8 x) {
    f8 complement;
    f8 twice_u = (2.0f * SQ_GELU_TANH_K) * (x + SQ_GELU_TANH_C * x * x * x);
    f8 s = sigmoid8(twice_u, &complement);
    f8 c = __builtin_elementwise_min(__builtin_elementwise_max(x, splat8(-1.0e4f)), splat8(1.0e4f));
    return s + c * (s * complement) * ((2.0f * SQ_GELU_TANH_K) * (1.0f + (3.0f * SQ_GELU_TANH_C) * c * c));
}
