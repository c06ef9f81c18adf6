// Vectorised fp32 kernels for SqueezeTensor's CPU backend.
//
// Every function is single-threaded and works on the range it is given; the
// Swift side splits work into fixed chunks and runs them on its threads. On
// x86_64 each kernel has an AVX2+FMA variant chosen at run time and a
// baseline variant; other architectures (aarch64) build the baseline only.
// Within one process the same variant is always used, so results are
// reproducible run to run.
#ifndef SQ_KERNELS_H
#define SQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Name of the variant in use ("avx2-fma" or "baseline").
const char *sq_kernel_variant(void);

/// The instruction-set tier the kernels (and the BLAS core, see sq_blas.h)
/// use: 2 AVX-512 (F/BW/DQ/VL), 1 AVX2+FMA, 0 baseline. It is the CPU's own
/// tier, lowered by SQUEEZE_KERNELS=avx2|baseline (to measure or reproduce
/// the kernels of older CPUs); decided once per process.
int sq_cpu_tier(void);
/// The tier this CPU and OS support, whatever SQUEEZE_KERNELS says.
int sq_cpu_tier_detected(void);
/// 0 when SQUEEZE_KERNELS is set to something other than avx512, avx2 or baseline.
int sq_kernel_request_valid(void);

/// The element-wise maps, which have a variant per tier (AVX-512: 16 lanes).
enum {
    SQ_MAP_GELU = 0,
    /// y is dy.
    SQ_MAP_GELU_BACKWARD = 1,
    SQ_MAP_TANH = 2,
    /// x is the tanh output, y is dy.
    SQ_MAP_TANH_BACKWARD = 3,
    SQ_MAP_EXP = 4,
    /// out gets GELU, second its derivative.
    SQ_MAP_GELU_WITH_DERIVATIVE = 5,
    SQ_MAP_GELU_TANH = 6,
    /// y is dy.
    SQ_MAP_GELU_TANH_BACKWARD = 7,
    /// x is the gate, y the up projection.
    SQ_MAP_GATED_SILU = 8,
};
/// One map with the variant of `tier` (lowered to the CPU's own tier), for
/// tests and benchmarks that compare tiers; `y` and `second` may be NULL
/// where the map has none.
void sq_map_with_tier(int tier, int map, const float *x, const float *y, float *out, float *second, ptrdiff_t n);

/// `sq_gated_silu_backward` with the variant of `tier` (as `sq_map_with_tier`).
void sq_gated_silu_backward_with_tier(int tier, const float *dy, const float *gate, const float *up, float *dgate,
                                      float *dup, ptrdiff_t n);

/// Binary element-wise op over `n` elements. `stride_a`/`stride_b` are 1
/// (contiguous) or 0 (one repeated value). op: 0 add, 1 subtract, 2 multiply,
/// 3 select: `b != 0 ? fill : a` (masked fill).
void sq_binary(int op, const float *a, ptrdiff_t stride_a, const float *b, ptrdiff_t stride_b,
               float *out, ptrdiff_t n, float fill);
/// out = x * scale + shift
void sq_affine(const float *x, float *out, ptrdiff_t n, float scale, float shift);
/// acc += x
void sq_accumulate(float *acc, const float *x, ptrdiff_t n);

/// GELU, exact erf form x·Φ(x), with a vectorised erfc (relative error ~1e-7).
void sq_gelu(const float *x, float *out, ptrdiff_t n);
/// dy · (Φ(x) + x·φ(x))
void sq_gelu_backward(const float *x, const float *dy, float *out, ptrdiff_t n);
void sq_tanh(const float *x, float *out, ptrdiff_t n);
/// dy · (1 − y²)
void sq_tanh_backward(const float *y, const float *dy, float *out, ptrdiff_t n);
/// e^x (for tests of the vector exponential).
void sq_exp(const float *x, float *out, ptrdiff_t n);

/// Row-wise softmax of `rows` rows of `cols`; `log_sum_exp` (nullable) gets
/// max + log Σ e^(x − max) per row.
void sq_softmax_rows(const float *x, float *out, float *log_sum_exp, ptrdiff_t rows, ptrdiff_t cols);
void sq_log_softmax_rows(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols);
/// y ⊙ (dy − Σ dy ⊙ y) per row.
void sq_softmax_backward_rows(const float *y, const float *dy, float *out, ptrdiff_t rows, ptrdiff_t cols);
/// dy − e^y · Σ dy per row.
void sq_log_softmax_backward_rows(const float *y, const float *dy, float *out, ptrdiff_t rows, ptrdiff_t cols);

/// Layer norm of each row; writes the row mean and 1/σ.
void sq_layer_norm_rows(const float *x, const float *gamma, const float *beta, float epsilon,
                        float *out, float *mean, float *inverse_std, ptrdiff_t rows, ptrdiff_t cols);
/// Input gradient of each row, and Σ over these rows of dy·x̂ and dy, ADDED
/// to `gamma_partial` and `beta_partial` (`cols` floats each).
void sq_layer_norm_backward_rows(const float *dy, const float *x, const float *gamma, const float *mean,
                                 const float *inverse_std, float *dx, float *gamma_partial,
                                 float *beta_partial, ptrdiff_t rows, ptrdiff_t cols);

/// out[r] = Σ_c x[r·cols + c], accumulated in double.
void sq_sum_rows(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols);
/// out[c] = Σ_r x[r·row_stride + c] for c < cols (cols ≤ SQ_COLUMN_BLOCK), accumulated in double.
void sq_sum_columns(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row_stride);
#define SQ_COLUMN_BLOCK 256
/// Σ x², accumulated in double.
double sq_sum_of_squares(const float *x, ptrdiff_t n);

/// Inverted dropout over elements `first_index ..< first_index + n` of a
/// stream: element i keeps when the top 24 bits of
/// splitmix64(key + (i + 1)·golden) are ≥ threshold. `mask` may be NULL.
void sq_dropout(const float *x, float *out, float *mask, ptrdiff_t n, uint64_t first_index, uint64_t key,
                uint64_t threshold, float scale);

/// AdamW on n elements with gradient g·gradient_scale: p −= lr·wd·p; m, v moments;
/// p −= step_size · m / (√v / root_correction2 + ε), where step_size = lr / (1 − β1^t)
/// and root_correction2 = √(1 − β2^t).
void sq_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float learning_rate, float beta1,
              float beta2, float epsilon, float weight_decay, float step_size, float root_correction2,
              float gradient_scale);

/// out = dropout(x) + residual over elements `first_index ..< first_index + n`
/// (dropout as `sq_dropout`; none when `dropout` is 0).
void sq_dropout_add(const float *x, const float *residual, float *out, ptrdiff_t n, uint64_t first_index,
                    uint64_t key, uint64_t threshold, float scale, int dropout);

/// GPT-2's gelu_new, ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), computed as
/// x·σ(2·√(2/π)·(x + 0.044715·x³)) (the same function, stable for any |x|).
void sq_gelu_tanh(const float *x, float *out, ptrdiff_t n);
/// dy · gelu_tanh'(x)
void sq_gelu_tanh_backward(const float *x, const float *dy, float *out, ptrdiff_t n);
/// SwiGLU: silu(gate)·up with silu(g) = g·σ(g), σ stable for any |g|.
void sq_gated_silu(const float *gate, const float *up, float *out, ptrdiff_t n);
/// dgate = dy·up·silu'(gate), dup = dy·silu(gate).
void sq_gated_silu_backward(const float *dy, const float *gate, const float *up, float *dgate, float *dup,
                            ptrdiff_t n);

/// RMS norm of each row: inverse_rms = 1/√(mean(x²) + ε) (Σx² in double),
/// out = (x·inverse_rms)·γ.
void sq_rms_norm_rows(const float *x, const float *gamma, float epsilon, float *out, float *inverse_rms,
                      ptrdiff_t rows, ptrdiff_t cols);
/// Input gradient of each row, and Σ over these rows of dy·x̂ ADDED to
/// `gamma_partial` (`cols` floats).
void sq_rms_norm_backward_rows(const float *dy, const float *x, const float *gamma, const float *inverse_rms,
                               float *dx, float *gamma_partial, ptrdiff_t rows, ptrdiff_t cols);
/// Rotary embedding ("rotate half") of rows `first ..< first + rows` of a
/// contiguous [B, T, H, 2·half] `x` into `out` (same layout; row r is token
/// (r / heads) % tokens), with [T, half] tables; `sine_sign` −1 rotates back.
void sq_rotary_rows(const float *x, const float *cosines, const float *sines, float sine_sign, float *out,
                    ptrdiff_t first, ptrdiff_t rows, ptrdiff_t heads, ptrdiff_t tokens, ptrdiff_t half);

/// GELU (as `sq_gelu`) and its derivative (as `sq_gelu_backward` with dy = 1).
void sq_gelu_with_derivative(const float *x, float *out, float *derivative, ptrdiff_t n);

/// c[m×n] = alpha · a[m×k] · b[k×n] for small matrices (row-major, row strides lda, ldb, ldc).
void sq_small_gemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a, ptrdiff_t lda,
                   const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc);

/// Scaled dot-product attention over (batch, head) pairs. Matrix rows are
/// `*_row` floats apart with contiguous elements; pair (b, h) starts at
/// `b·*_batch + h·*_head`. `bias` (nullable) is read at
/// `b·bias_batch + h·bias_head + i·bias_row + j·bias_column` (0 strides broadcast).
/// Dropout of the probabilities numbers elements as a contiguous
/// [batch, heads, queries, keys] tensor (as `sq_dropout` would).
typedef struct {
    ptrdiff_t heads, queries, keys, depth, value_depth;
    const float *q;
    ptrdiff_t q_batch, q_head, q_row;
    const float *k;
    ptrdiff_t k_batch, k_head, k_row;
    const float *v;
    ptrdiff_t v_batch, v_head, v_row;
    const float *bias;
    ptrdiff_t bias_batch, bias_head, bias_row, bias_column;
    float scale;
    int dropout;
    uint64_t dropout_key, dropout_threshold;
    float dropout_scale;
} sq_attention_problem;

/// Floats of scratch `sq_attention_forward` / `sq_attention_backward` need.
ptrdiff_t sq_attention_forward_scratch(const sq_attention_problem *p);
ptrdiff_t sq_attention_backward_scratch(const sq_attention_problem *p);

/// Pairs `first ..< first + count`: probabilities (contiguous [pairs, queries,
/// keys], before dropout) and out = dropout(probabilities) · v, written as a
/// contiguous [batch, queries, heads, value_depth] tensor.
void sq_attention_forward(const sq_attention_problem *p, ptrdiff_t first, ptrdiff_t count, float *probabilities,
                          float *out, float *scratch);

/// Gradients of pairs `first ..< first + count` given the forward's
/// probabilities and the output gradient `dout` (pair (b, h) at
/// `b·dout_batch + h·dout_head`, rows `dout_row` apart). dq, dk and dv are
/// written as contiguous [batch, rows, heads, depth] tensors; any of them may
/// be NULL (not computed).
void sq_attention_backward(const sq_attention_problem *p, ptrdiff_t first, ptrdiff_t count,
                           const float *probabilities, const float *dout, ptrdiff_t dout_batch, ptrdiff_t dout_head,
                           ptrdiff_t dout_row, float *dq, float *dk, float *dv, float *scratch);

// MARK: Int8 matrix products (int8_gemm.c)

/// Columns per panel of packed int8 weights; a product's column tiles start on panel boundaries.
#define SQ_I8_PANEL 16

/// Bytes `sq_i8_pack_weights` writes for `n` rows of `k` weights.
ptrdiff_t sq_i8_packed_bytes(ptrdiff_t n, ptrdiff_t k);
/// Packs s8 weights `w` ([n, k] row-major, one row per output column of the
/// product) into panels of SQ_I8_PANEL columns × groups of 4 k (zero-padded),
/// and writes each row's sum to `column_sums` ([n]). Returns the largest
/// activation value (≤ 255) for which no vpmaddubsw pair sum a₀w₀ + a₁w₁ of
/// these weights can leave int16 (the condition for the maddubs kernel).
int32_t sq_i8_pack_weights(const int8_t *w, ptrdiff_t n, ptrdiff_t k, int8_t *packed, int32_t *column_sums);

enum {
    /// Fastest exact kernel for the problem.
    SQ_I8_KERNEL_AUTO = 0,
    /// Plain loops (the only kernel off x86_64 or without AVX2+FMA).
    SQ_I8_KERNEL_PORTABLE = 1,
    /// AVX2, operands widened to int16 (vpmaddwd): exact for every input.
    SQ_I8_KERNEL_WIDE = 2,
    /// AVX2 vpmaddubsw + vpmaddwd (twice the rate of _WIDE); runs only where
    /// every activation ≤ fast_activation_limit, so no pair sum saturates.
    SQ_I8_KERNEL_MADDUBS = 3,
    /// AVX-512 VNNI vpdpbusd (u8·s8 quadruples straight into int32): exact
    /// for every input; where the CPU has it, the automatic choice.
    SQ_I8_KERNEL_VNNI = 4,
    /// The automatic choice without VNNI: _MADDUBS where the activations
    /// allow it, else _WIDE (tests, and benchmarks against VNNI).
    SQ_I8_KERNEL_AVX2 = 5,
};

/// 1 when this CPU (and OS) runs the AVX-512 VNNI int8 kernel; always 0 off x86_64.
int sq_use_avx512_vnni(void);
/// The kernel (SQ_I8_KERNEL_*) `sq_i8_gemm` runs on this CPU when asked for
/// `requested` with activations ≤ activation_max (0...255): VNNI wherever the
/// CPU has it unless an AVX2 kernel is asked for; else maddubs when
/// activation_max ≤ fast_activation_limit; a kernel the CPU lacks falls back
/// to the automatic choice.
int sq_i8_kernel_for(int requested, int32_t fast_activation_limit, int32_t activation_max);

enum {
    /// c[m, n] = Σ_k a[m, k]·w[n, k] (int32), no epilogue.
    SQ_I8_OUT_S32 = 0,
    /// c[m, n] = fma(float(Σ − za·colsum[n]), sa·sw[n], bias[n]) (float).
    SQ_I8_OUT_F32 = 1,
    /// The f32 result requantised: clamp(rint(y·out_inverse_scale) + out_zero, out_min, out_max) (uint8).
    SQ_I8_OUT_U8 = 2,
};

/// One product c = epilogue(a · wᵀ): u8 activations a ([m, k], rows lda
/// apart) times packed s8 weights ([n, k]) with exact int32 sums.
/// Requires k ≤ 65535, so that sums and zero-point corrections fit int32.
typedef struct {
    ptrdiff_t m, n, k;
    const uint8_t *a;
    ptrdiff_t lda;
    const int8_t *packed;
    const int32_t *column_sums;
    /// From `sq_i8_pack_weights`.
    int32_t fast_activation_limit;
    /// An upper bound of every activation, from which the kernel is chosen;
    /// negative: unknown, each call scans its rows for their largest.
    int32_t activation_max;
    /// Activation scale and zero point of row r at `r·a_param_stride` (0: per tensor).
    const float *a_scale;
    const int32_t *a_zero;
    ptrdiff_t a_param_stride;
    /// Per output column ([n]); bias may be NULL.
    const float *w_scale;
    const float *bias;
    int output;
    /// int32, float or uint8 elements by `output`; rows ldc elements apart.
    void *c;
    ptrdiff_t ldc;
    float out_inverse_scale;
    int32_t out_zero, out_min, out_max;
    /// SQ_I8_KERNEL_*: AUTO, or a kernel to force (tests, benchmarks).
    int kernel;
} sq_i8_gemm_problem;

/// Rows row_begin ..< row_end × column panels panel_begin ..< panel_end of
/// the product. Returns the kernel that ran (SQ_I8_KERNEL_PORTABLE, _WIDE,
/// _MADDUBS or _VNNI): the fastest exact one for these rows unless `p->kernel`
/// forces one (a kernel this CPU lacks falls back to the automatic choice).
int sq_i8_gemm(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t panel_begin,
               ptrdiff_t panel_end);

/// out = clamp(rint(x·inverse_scale) + zero, q_min, q_max), NaN → q_min; rint rounds half to even.
void sq_quantize_u8(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero, int32_t q_min,
                    int32_t q_max);
/// The smallest and largest finite values of x, widened to include 0 (so
/// both are 0 when there is none); NaN and ±∞ are skipped.
void sq_f32_range(const float *x, ptrdiff_t n, float *min, float *max);
/// The largest of n bytes (0 when n is 0).
uint8_t sq_u8_max(const uint8_t *x, ptrdiff_t n);
/// `sq_quantize_u8` of `sq_gelu(x)`, a block at a time (the same bits, without
/// the f32 GELU values ever leaving the cache).
void sq_gelu_quantize_u8(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero, int32_t q_min,
                         int32_t q_max);
/// `sq_quantize_u8` without vector instructions (bit-identical; for tests).
void sq_quantize_u8_portable(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero,
                             int32_t q_min, int32_t q_max);
/// Row-major x (rows × columns) with one inverse scale per column (SmoothQuant's
/// per-input-channel factor folded into the activation scale):
/// out[r, j] = clamp(rint(x[r, j]·inverse_scales[j]) + zero, q_min, q_max), NaN → q_min.
void sq_quantize_u8_columns(const float *x, uint8_t *out, ptrdiff_t rows, ptrdiff_t columns, const float *inverse_scales,
                            int32_t zero, int32_t q_min, int32_t q_max);
/// `sq_quantize_u8_columns` without vector instructions (bit-identical; for tests).
void sq_quantize_u8_columns_portable(const float *x, uint8_t *out, ptrdiff_t rows, ptrdiff_t columns,
                                     const float *inverse_scales, int32_t zero, int32_t q_min, int32_t q_max);

#ifdef __cplusplus
}
#endif

#endif
