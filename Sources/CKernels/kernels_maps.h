// Element-wise maps (GELU, tanh, exp, GELU-tanh, gated SiLU and their derivatives), included by
// kernels_impl.h for the baseline and AVX2 variants (8 lanes) and by
// kernels.c for the AVX-512 variant (16 lanes). Every lane runs the same
// operations whatever the width, so all widths give the same bits. Not a
// public header.

#ifndef SQ_LANES
#define SQ_LANES 8
#endif

// SQ_LANES lanes at a time (in the AVX-512 variant f8 names a 16-lane
// vector); the tail goes through the same vector code on a padded copy, so
// every element gets exactly the same arithmetic wherever it sits.
#define SQ_MAP1(name, expression)                                                                   \
    SQ_TARGET static void SQ_NAME(name)(const float *restrict x, float *restrict out, ptrdiff_t n) { \
        ptrdiff_t i = 0;                                                                            \
        for (; i + SQ_LANES <= n; i += SQ_LANES) {                                                  \
            f8 v = load8(x + i);                                                                    \
            store8(out + i, expression);                                                            \
        }                                                                                           \
        if (i < n) {                                                                                \
            float bx[SQ_LANES] = {0};                                                               \
            float bo[SQ_LANES];                                                                     \
            __builtin_memcpy(bx, x + i, (size_t)(n - i) * sizeof(float));                           \
            f8 v = load8(bx);                                                                       \
            store8(bo, expression);                                                                 \
            __builtin_memcpy(out + i, bo, (size_t)(n - i) * sizeof(float));                         \
        }                                                                                           \
    }

#define SQ_MAP2(name, expression)                                                                   \
    SQ_TARGET static void SQ_NAME(name)(const float *restrict x, const float *restrict y,           \
                                        float *restrict out, ptrdiff_t n) {                         \
        ptrdiff_t i = 0;                                                                            \
        for (; i + SQ_LANES <= n; i += SQ_LANES) {                                                  \
            f8 v = load8(x + i);                                                                    \
            f8 w = load8(y + i);                                                                    \
            store8(out + i, expression);                                                            \
        }                                                                                           \
        if (i < n) {                                                                                \
            float bx[SQ_LANES] = {0}, by[SQ_LANES] = {0};                                           \
            float bo[SQ_LANES];                                                                     \
            __builtin_memcpy(bx, x + i, (size_t)(n - i) * sizeof(float));                           \
            __builtin_memcpy(by, y + i, (size_t)(n - i) * sizeof(float));                           \
            f8 v = load8(bx);                                                                       \
            f8 w = load8(by);                                                                       \
            store8(bo, expression);                                                                 \
            __builtin_memcpy(out + i, bo, (size_t)(n - i) * sizeof(float));                         \
        }                                                                                           \
    }

SQ_MAP1(gelu, v * phi8(v))
SQ_MAP2(gelu_backward, w * (phi8(v) + v * exp8(-0.5f * v * v) * 0.398942280401432678f))
SQ_MAP1(tanh, tanh8(v))
SQ_MAP2(tanh_backward, w * (1.0f - v * v))
SQ_MAP1(exp, exp8(v))

/// GELU and its derivative Φ(x) + x·φ(x) in one pass.
SQ_TARGET static void SQ_NAME(gelu_with_derivative)(const float *restrict x, float *restrict out,
                                                    float *restrict derivative, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + SQ_LANES <= n; i += SQ_LANES) {
        f8 v = load8(x + i);
        f8 phi = phi8(v);
        store8(out + i, v * phi);
        store8(derivative + i, phi + v * exp8(-0.5f * v * v) * 0.398942280401432678f);
    }
    if (i < n) {
        float bx[SQ_LANES] = {0};
        float bo[SQ_LANES], bd[SQ_LANES];
        __builtin_memcpy(bx, x + i, (size_t)(n - i) * sizeof(float));
        f8 v = load8(bx);
        f8 phi = phi8(v);
        store8(bo, v * phi);
        store8(bd, phi + v * exp8(-0.5f * v * v) * 0.398942280401432678f);
        __builtin_memcpy(out + i, bo, (size_t)(n - i) * sizeof(float));
        __builtin_memcpy(derivative + i, bd, (size_t)(n - i) * sizeof(float));
    }
}

SQ_MAP1(gelu_tanh, gelu_tanh8(v))
SQ_MAP2(gelu_tanh_backward, w * gelu_tanh_derivative8(v))
/// SwiGLU's gate: x is the gate, y the up projection.
SQ_MAP2(gated_silu, silu8(v) * w)

/// Both gradients of silu(gate)·up: dgate = dy·up·σ(g)·(1 + g·(1 − σ(g))), dup = dy·silu(g).
SQ_INLINE SQ_TARGET void SQ_NAME(gated_silu_backward_lanes)(f8 d, f8 g, f8 u, f8 *dgate, f8 *dup) {
    f8 complement;
    f8 s = sigmoid8(g, &complement);
    *dgate = d * u * (s * (1.0f + g * complement));
    *dup = d * (g * s);
}

SQ_TARGET static void SQ_NAME(gated_silu_backward)(const float *restrict dy, const float *restrict gate,
                                                   const float *restrict up, float *restrict dgate,
                                                   float *restrict dup, ptrdiff_t n) {
    ptrdiff_t i = 0;
    f8 a, b;
    for (; i + SQ_LANES <= n; i += SQ_LANES) {
        SQ_NAME(gated_silu_backward_lanes)(load8(dy + i), load8(gate + i), load8(up + i), &a, &b);
        store8(dgate + i, a);
        store8(dup + i, b);
    }
    if (i < n) {
        float bd[SQ_LANES] = {0}, bg[SQ_LANES] = {0}, bu[SQ_LANES] = {0};
        float ba[SQ_LANES], bb[SQ_LANES];
        __builtin_memcpy(bd, dy + i, (size_t)(n - i) * sizeof(float));
        __builtin_memcpy(bg, gate + i, (size_t)(n - i) * sizeof(float));
        __builtin_memcpy(bu, up + i, (size_t)(n - i) * sizeof(float));
        SQ_NAME(gated_silu_backward_lanes)(load8(bd), load8(bg), load8(bu), &a, &b);
        store8(ba, a);
        store8(bb, b);
        __builtin_memcpy(dgate + i, ba, (size_t)(n - i) * sizeof(float));
        __builtin_memcpy(dup + i, bb, (size_t)(n - i) * sizeof(float));
    }
}

#undef SQ_LANES
