#include "sq_kernels.h"
#include "cpu_features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Clang vector extensions: portable 8-lane vectors that lower to one AVX
// register, two SSE registers or two NEON registers depending on the target.
typedef float f8 __attribute__((ext_vector_type(8)));
typedef int32_t i8v __attribute__((ext_vector_type(8)));
typedef int32_t i4v __attribute__((ext_vector_type(4)));
typedef uint64_t u4v __attribute__((ext_vector_type(4)));
typedef double d4 __attribute__((ext_vector_type(4)));

// Helpers are always inlined, so 256-bit vectors never cross a call boundary
// in the baseline variant either; the ABI note does not apply.
#pragma clang diagnostic ignored "-Wpsabi"
#define SQ_INLINE static inline __attribute__((always_inline))

// Per-variant helper names (see vector_math.h).
#define load8 SQ_NAME(load8)
#define store8 SQ_NAME(store8)
#define splat8 SQ_NAME(splat8)
#define select8 SQ_NAME(select8)
#define abs8 SQ_NAME(abs8)
#define reduce_max8 SQ_NAME(reduce_max8)
#define reduce_sum8 SQ_NAME(reduce_sum8)
#define floor_int8 SQ_NAME(floor_int8)
#define exp8 SQ_NAME(exp8)
#define phi8 SQ_NAME(phi8)
#define tanh8 SQ_NAME(tanh8)
#define sigmoid8 SQ_NAME(sigmoid8)
#define silu8 SQ_NAME(silu8)
#define gelu_tanh8 SQ_NAME(gelu_tanh8)
#define gelu_tanh_derivative8 SQ_NAME(gelu_tanh_derivative8)

#define SQ_TARGET
#define SQ_NAME(x) sq_base_##x
#include "kernels_impl.h"
#undef SQ_TARGET
#undef SQ_NAME

#if defined(__x86_64__)
#define SQ_TARGET __attribute__((target("avx2,fma")))
#define SQ_NAME(x) sq_avx2_##x
#include "kernels_impl.h"
#undef SQ_TARGET
#undef SQ_NAME

// AVX-512: the element-wise maps only, 16 lanes at a time. Each lane runs the
// same operations as in the AVX2 variant, so the bits are the same; where it
// pays is the transcendental maps (GELU above all), which are compute-bound.
typedef float f16v __attribute__((ext_vector_type(16)));
typedef int32_t i16v __attribute__((ext_vector_type(16)));
#define f8 f16v
#define i8v i16v
#define SQ_LANES 16
#define SQ_MAPS_ONLY
#define SQ_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define SQ_NAME(x) sq_avx512_##x
#include "vector_math.h"
#include "kernels_maps.h"
#undef SQ_TARGET
#undef SQ_NAME
#undef SQ_MAPS_ONLY
#undef i8v
#undef f8

/// The tier the CPU (and OS) supports: 2 AVX-512 F/BW/DQ/VL with AVX2+FMA,
/// 1 AVX2+FMA, 0 neither. The runtime's feature bits include the OS's XSAVE
/// support of the AVX and AVX-512 state.
static int detected_tier(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return 2;
    return 1;
}
int sq_cpu_tier_detected(void) {
    static int cached = -1;
    int value = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (value < 0) {
        value = detected_tier();
        __atomic_store_n(&cached, value, __ATOMIC_RELAXED);
    }
    return value;
}
int sq_use_avx512_vnni(void) {
    static int cached = -1;
    int value = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (value < 0) {
        __builtin_cpu_init();
        value = sq_cpu_tier() >= 2 && __builtin_cpu_supports("avx512vnni");
        __atomic_store_n(&cached, value, __ATOMIC_RELAXED);
    }
    return value;
}
#define SQ_CALL(x, args) (sq_use_avx2() ? sq_avx2_##x args : sq_base_##x args)
#define SQ_CALL_MAP(x, args)                                                                                           \
    (sq_cpu_tier() >= 2 ? sq_avx512_##x args : sq_use_avx2() ? sq_avx2_##x args : sq_base_##x args)
#else
int sq_cpu_tier_detected(void) { return 0; }
int sq_use_avx512_vnni(void) { return 0; }
#define SQ_CALL(x, args) (sq_base_##x args)
#define SQ_CALL_MAP(x, args) (sq_base_##x args)
#endif

int sq_use_avx2(void) { return sq_cpu_tier() >= 1; }

/// SQUEEZE_KERNELS as a tier: -1 unset, -2 not a tier name.
static int requested_tier(void) {
    const char *value = getenv("SQUEEZE_KERNELS");
    if (!value || !*value) return -1;
    if (strcmp(value, "avx512") == 0) return 2;
    if (strcmp(value, "avx2") == 0) return 1;
    if (strcmp(value, "baseline") == 0) return 0;
    return -2;
}
int sq_kernel_request_valid(void) { return requested_tier() != -2; }
int sq_cpu_tier(void) {
    static int cached = -1;
    int value = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (value < 0) {
        int requested = requested_tier();
        value = sq_cpu_tier_detected();
        if (requested >= 0 && requested < value) value = requested;
        __atomic_store_n(&cached, value, __ATOMIC_RELAXED);
    }
    return value;
}

const char *sq_kernel_variant(void) { return sq_use_avx2() ? "avx2-fma" : "baseline"; }

void sq_binary(int op, const float *a, ptrdiff_t stride_a, const float *b, ptrdiff_t stride_b, float *out,
               ptrdiff_t n, float fill) {
    SQ_CALL(binary_dispatch, (op, a, stride_a, b, stride_b, out, n, fill));
}
void sq_affine(const float *x, float *out, ptrdiff_t n, float scale, float shift) {
    SQ_CALL(affine, (x, out, n, scale, shift));
}
void sq_accumulate(float *acc, const float *x, ptrdiff_t n) { SQ_CALL(accumulate, (acc, x, n)); }
void sq_gelu(const float *x, float *out, ptrdiff_t n) { SQ_CALL_MAP(gelu, (x, out, n)); }
void sq_gelu_backward(const float *x, const float *dy, float *out, ptrdiff_t n) {
    SQ_CALL_MAP(gelu_backward, (x, dy, out, n));
}
void sq_tanh(const float *x, float *out, ptrdiff_t n) { SQ_CALL_MAP(tanh, (x, out, n)); }
void sq_tanh_backward(const float *y, const float *dy, float *out, ptrdiff_t n) {
    SQ_CALL_MAP(tanh_backward, (y, dy, out, n));
}
void sq_exp(const float *x, float *out, ptrdiff_t n) { SQ_CALL_MAP(exp, (x, out, n)); }
void sq_softmax_rows(const float *x, float *out, float *log_sum_exp, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(softmax_rows, (x, out, log_sum_exp, rows, cols));
}
void sq_log_softmax_rows(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(log_softmax_rows, (x, out, rows, cols));
}
void sq_softmax_backward_rows(const float *y, const float *dy, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(softmax_backward_rows, (y, dy, out, rows, cols));
}
void sq_log_softmax_backward_rows(const float *y, const float *dy, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(log_softmax_backward_rows, (y, dy, out, rows, cols));
}
void sq_layer_norm_rows(const float *x, const float *gamma, const float *beta, float epsilon, float *out,
                        float *mean, float *inverse_std, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(layer_norm_rows, (x, gamma, beta, epsilon, out, mean, inverse_std, rows, cols));
}
void sq_layer_norm_backward_rows(const float *dy, const float *x, const float *gamma, const float *mean,
                                 const float *inverse_std, float *dx, float *gamma_partial, float *beta_partial,
                                 ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(layer_norm_backward_rows, (dy, x, gamma, mean, inverse_std, dx, gamma_partial, beta_partial, rows, cols));
}
void sq_sum_rows(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(sum_rows, (x, out, rows, cols));
}
void sq_sum_columns(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row_stride) {
    SQ_CALL(sum_columns, (x, out, rows, cols, row_stride));
}
double sq_sum_of_squares(const float *x, ptrdiff_t n) { return SQ_CALL(sum_of_squares, (x, n)); }
void sq_dropout(const float *x, float *out, float *mask, ptrdiff_t n, uint64_t first_index, uint64_t key,
                uint64_t threshold, float scale) {
    SQ_CALL(dropout, (x, out, mask, n, first_index, key, threshold, scale));
}
void sq_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float learning_rate, float beta1,
              float beta2, float epsilon, float weight_decay, float step_size, float root_correction2,
              float gradient_scale) {
    SQ_CALL(adamw, (p, g, m, v, n, learning_rate, beta1, beta2, epsilon, weight_decay, step_size, root_correction2,
                    gradient_scale));
}
void sq_dropout_add(const float *x, const float *residual, float *out, ptrdiff_t n, uint64_t first_index,
                    uint64_t key, uint64_t threshold, float scale, int dropout) {
    SQ_CALL(dropout_add, (x, residual, out, n, first_index, key, threshold, scale, dropout));
}
void sq_gelu_with_derivative(const float *x, float *out, float *derivative, ptrdiff_t n) {
    SQ_CALL_MAP(gelu_with_derivative, (x, out, derivative, n));
}
void sq_gelu_tanh(const float *x, float *out, ptrdiff_t n) { SQ_CALL_MAP(gelu_tanh, (x, out, n)); }
void sq_gelu_tanh_backward(const float *x, const float *dy, float *out, ptrdiff_t n) {
    SQ_CALL_MAP(gelu_tanh_backward, (x, dy, out, n));
}
void sq_gated_silu(const float *gate, const float *up, float *out, ptrdiff_t n) {
    SQ_CALL_MAP(gated_silu, (gate, up, out, n));
}
void sq_gated_silu_backward(const float *dy, const float *gate, const float *up, float *dgate, float *dup,
                            ptrdiff_t n) {
    SQ_CALL_MAP(gated_silu_backward, (dy, gate, up, dgate, dup, n));
}
void sq_rms_norm_rows(const float *x, const float *gamma, float epsilon, float *out, float *inverse_rms,
                      ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(rms_norm_rows, (x, gamma, epsilon, out, inverse_rms, rows, cols));
}
void sq_rms_norm_backward_rows(const float *dy, const float *x, const float *gamma, const float *inverse_rms,
                               float *dx, float *gamma_partial, ptrdiff_t rows, ptrdiff_t cols) {
    SQ_CALL(rms_norm_backward_rows, (dy, x, gamma, inverse_rms, dx, gamma_partial, rows, cols));
}
void sq_rotary_rows(const float *x, const float *cosines, const float *sines, float sine_sign, float *out,
                    ptrdiff_t first, ptrdiff_t rows, ptrdiff_t heads, ptrdiff_t tokens, ptrdiff_t half) {
    SQ_CALL(rotary_rows, (x, cosines, sines, sine_sign, out, first, rows, heads, tokens, half));
}
void sq_small_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a, ptrdiff_t lda,
                   const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc) {
    SQ_CALL(small_gemm, (m, n, k, alpha, a, lda, 1, b, ldb, c, ldc));
}
ptrdiff_t sq_attention_forward_scratch(const sq_attention_problem *p) {
    return p->depth * p->keys + p->queries * p->keys + p->keys * p->value_depth;
}
ptrdiff_t sq_attention_backward_scratch(const sq_attention_problem *p) {
    ptrdiff_t rows = p->queries > p->keys ? p->queries : p->keys;
    ptrdiff_t depth = p->depth > p->value_depth ? p->depth : p->value_depth;
    return 3 * p->queries * p->keys + p->value_depth * p->keys + rows * depth;
}
void sq_attention_forward(const sq_attention_problem *p, ptrdiff_t first, ptrdiff_t count, float *probabilities,
                          float *out, float *scratch) {
    SQ_CALL(attention_forward, (p, first, count, probabilities, out, scratch));
}
void sq_attention_backward(const sq_attention_problem *p, ptrdiff_t first, ptrdiff_t count,
                           const float *probabilities, const float *dout, ptrdiff_t dout_batch, ptrdiff_t dout_head,
                           ptrdiff_t dout_row, float *dq, float *dk, float *dv, float *scratch) {
    SQ_CALL(attention_backward, (p, first, count, probabilities, dout, dout_batch, dout_head, dout_row, dq, dk, dv,
                                 scratch));
}

void sq_map_with_tier(int tier, int map, const float *x, const float *y, float *out, float *second, ptrdiff_t n) {
    if (tier > sq_cpu_tier_detected()) tier = sq_cpu_tier_detected();
#if defined(__x86_64__)
#define SQ_TIER_CALL(x, args) (tier >= 2 ? sq_avx512_##x args : tier == 1 ? sq_avx2_##x args : sq_base_##x args)
#else
#define SQ_TIER_CALL(x, args) (sq_base_##x args)
#endif
    switch (map) {
    case SQ_MAP_GELU: SQ_TIER_CALL(gelu, (x, out, n)); break;
    case SQ_MAP_GELU_BACKWARD: SQ_TIER_CALL(gelu_backward, (x, y, out, n)); break;
    case SQ_MAP_TANH: SQ_TIER_CALL(tanh, (x, out, n)); break;
    case SQ_MAP_TANH_BACKWARD: SQ_TIER_CALL(tanh_backward, (x, y, out, n)); break;
    case SQ_MAP_EXP: SQ_TIER_CALL(exp, (x, out, n)); break;
    case SQ_MAP_GELU_WITH_DERIVATIVE: SQ_TIER_CALL(gelu_with_derivative, (x, out, second, n)); break;
    case SQ_MAP_GELU_TANH: SQ_TIER_CALL(gelu_tanh, (x, out, n)); break;
    case SQ_MAP_GELU_TANH_BACKWARD: SQ_TIER_CALL(gelu_tanh_backward, (x, y, out, n)); break;
    case SQ_MAP_GATED_SILU: SQ_TIER_CALL(gated_silu, (x, y, out, n)); break;
    default: break;
    }
#undef SQ_TIER_CALL
}

void sq_gated_silu_backward_with_tier(int tier, const float *dy, const float *gate, const float *up, float *dgate,
                                      float *dup, ptrdiff_t n) {
    if (tier > sq_cpu_tier_detected()) tier = sq_cpu_tier_detected();
#if defined(__x86_64__)
    if (tier >= 2) sq_avx512_gated_silu_backward(dy, gate, up, dgate, dup, n);
    else if (tier == 1) sq_avx2_gated_silu_backward(dy, gate, up, dgate, dup, n);
    else sq_base_gated_silu_backward(dy, gate, up, dgate, dup, n);
#else
    sq_base_gated_silu_backward(dy, gate, up, dgate, dup, n);
#endif
}
