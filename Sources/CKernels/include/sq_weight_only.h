// Weight-only quantised matrix products (weight_only_gemm.c): f32 activations
// times int4 or int8 weights with one scale (and optionally one zero point)
// per group of consecutive k, dequantised on the fly.
#ifndef SQ_WEIGHT_ONLY_H
#define SQ_WEIGHT_ONLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Output columns (weight rows) per packed panel.
#define SQ_WO_PANEL 16

/// Bytes of packed codes for `n` weight rows of `k` codes of `bits` (4 or 8):
/// ⌈n / 16⌉ panels × k × (8 or 16) bytes.
ptrdiff_t sq_wo_code_bytes(int bits, ptrdiff_t n, ptrdiff_t k);
/// Entries of the packed scales (and zero points): ⌈n / 16⌉ panels × (k / group) groups × 16.
ptrdiff_t sq_wo_parameter_count(ptrdiff_t n, ptrdiff_t k, ptrdiff_t group);

/// Packs signed codes `codes` ([n, k] row-major; int4: −8…7, int8: −128…127)
/// with `scales` and `zeros` ([n, k / group] row-major; `zeros` may be NULL)
/// into panels of 16 weight rows: for each panel, each k holds the 16 rows'
/// codes (int8: 16 bytes; int4: 8 bytes, byte j = row j in the low nibble,
/// row j + 8 in the high nibble), and each group the 16 rows' scales and zero
/// points. Rows past n get code 0, scale 0 and zero point 0. `packed_zeros`
/// is written only when `zeros` is not NULL.
void sq_wo_pack(int bits, ptrdiff_t n, ptrdiff_t k, ptrdiff_t group, const int8_t *codes, const float *scales,
                const int8_t *zeros, uint8_t *packed, float *packed_scales, int8_t *packed_zeros);
/// The inverse of `sq_wo_pack` (`zeros` and `packed_zeros` both NULL or both not).
void sq_wo_unpack(int bits, ptrdiff_t n, ptrdiff_t k, ptrdiff_t group, const uint8_t *packed,
                  const float *packed_scales, const int8_t *packed_zeros, int8_t *codes, float *scales, int8_t *zeros);

/// Which kernel runs (tests and benchmarks force one).
enum {
    SQ_WO_KERNEL_AUTO = 0,
    /// Plain C loops (the only kernel off x86_64 or without AVX2+FMA).
    SQ_WO_KERNEL_PORTABLE = 1,
    SQ_WO_KERNEL_AVX2 = 2,
};

/// y = x · ŵᵀ + bias with ŵ[c, k] = scale · (q − zero) of k's group: f32
/// activations x ([m, k], rows ldx apart) and packed weights ([n, k]).
typedef struct {
    ptrdiff_t m, n, k, group;
    int bits;
    const float *x;
    ptrdiff_t ldx;
    const uint8_t *codes;
    const float *scales;
    /// NULL: every zero point is 0 (symmetric).
    const int8_t *zeros;
    /// [n], or NULL.
    const float *bias;
    float *y;
    ptrdiff_t ldy;
    int kernel;
} sq_wo_problem;

/// Rows row_begin ..< row_end × panels panel_begin ..< panel_end of the
/// product, fused: the weights are dequantised into small blocks in cache
/// and never written out. Each output is `fl(Σ_k fma(x, ŵ) in ascending k,
/// from 0) + bias`, with ŵ = fl(scale · (q − zero)); so every kernel, and
/// every split into rows and panels, gives the same bits. Returns the kernel
/// that ran.
int sq_wo_gemm(const sq_wo_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t panel_begin,
               ptrdiff_t panel_end);

/// ŵ of panels panel_begin ..< panel_end and k in k_begin ..< k_end, written
/// transposed: out[(k − k_begin) · ldo + (panel − panel_begin) · 16 + j] for
/// the panel's 16 rows (0 past n). For an f32 product (sgemm) on a tile.
void sq_wo_dequantize(const sq_wo_problem *p, ptrdiff_t panel_begin, ptrdiff_t panel_end, ptrdiff_t k_begin,
                      ptrdiff_t k_end, float *out, ptrdiff_t ldo);

#ifdef __cplusplus
}
#endif

#endif
