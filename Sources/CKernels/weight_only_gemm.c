// Weight-only quantised matrix products (see sq_weight_only.h): f32
// activations × int4/int8 weights with per-group scales, dequantised on the fly.
//
// Every kernel computes each output the same way: ŵ = fl(s · (q − z)), then
// acc = fma(x[k], ŵ, acc) for k = 0, 1, … from acc = 0, then acc + bias.
// Vectors run across 16 output columns (a panel), never across k, so one
// output is one lane of one accumulator and the portable loops, the AVX2
// kernels and any split of the work give the same bits.
//
// AVX2 kernels:
// - one row (batch-1 decode): four panels at once, dequantised in registers
//   and consumed at once (eight independent FMA chains);
// - more rows: blocks of 4 panels × 96 k are dequantised into a 24 KiB
//   buffer (L1), then every row of the block (up to 32) passes over it,
//   4 rows × 16 columns or 1 row × 64 columns at a time.

#include "sq_weight_only.h"
#include "cpu_features.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PANEL SQ_WO_PANEL
#define WO_INLINE static inline __attribute__((always_inline))
/// Panels dequantised together (64 output columns).
#define BLOCK_PANELS 4
/// k per dequantised chunk: BLOCK_PANELS × CHUNK × 16 floats = 24 KiB.
#define CHUNK 96
/// Rows that share one dequantised chunk (their accumulators: 8 KiB).
#define ROW_BLOCK 32

static ptrdiff_t panels_of(ptrdiff_t n) { return (n + PANEL - 1) / PANEL; }
/// Bytes of one k of one panel.
static ptrdiff_t k_bytes(int bits) { return bits == 4 ? PANEL / 2 : PANEL; }

ptrdiff_t sq_wo_code_bytes(int bits, ptrdiff_t n, ptrdiff_t k) { return panels_of(n) * k * k_bytes(bits); }

ptrdiff_t sq_wo_parameter_count(ptrdiff_t n, ptrdiff_t k, ptrdiff_t group) {
    return group > 0 ? panels_of(n) * (k / group) * PANEL : 0;
}

void sq_wo_pack(int bits, ptrdiff_t n, ptrdiff_t k, ptrdiff_t group, const int8_t *codes, const float *scales,
                const int8_t *zeros, uint8_t *packed, float *packed_scales, int8_t *packed_zeros) {
    ptrdiff_t groups = k / group, stride = k * k_bytes(bits), parameters = sq_wo_parameter_count(n, k, group);
    memset(packed, 0, (size_t)sq_wo_code_bytes(bits, n, k));
    memset(packed_scales, 0, (size_t)parameters * sizeof(float));
    if (zeros) memset(packed_zeros, 0, (size_t)parameters);
    for (ptrdiff_t c = 0; c < n; c++) {
        ptrdiff_t panel = c / PANEL;
        int j = (int)(c % PANEL);
        const int8_t *row = codes + c * k;
        if (bits == 8) {
            uint8_t *out = packed + panel * stride + j;
            for (ptrdiff_t i = 0; i < k; i++) out[i * PANEL] = (uint8_t)row[i];
        } else {
            uint8_t *out = packed + panel * stride + (j & 7);
            int shift = j < 8 ? 0 : 4;
            for (ptrdiff_t i = 0; i < k; i++) out[i * (PANEL / 2)] |= (uint8_t)(((uint8_t)row[i] & 0x0F) << shift);
        }
        for (ptrdiff_t g = 0; g < groups; g++) {
            packed_scales[(panel * groups + g) * PANEL + j] = scales[c * groups + g];
            if (zeros) packed_zeros[(panel * groups + g) * PANEL + j] = zeros[c * groups + g];
        }
    }
}

/// The signed code of column j (0…15) of a panel at k.
WO_INLINE int32_t code_at(int bits, const uint8_t *panel_codes, ptrdiff_t k, int j) {
    if (bits == 8) return (int8_t)panel_codes[k * PANEL + j];
    uint8_t byte = panel_codes[k * (PANEL / 2) + (j & 7)];
    uint8_t nibble = j < 8 ? (byte & 0x0F) : (byte >> 4);
    return (int8_t)(uint8_t)(nibble << 4) >> 4;
}

void sq_wo_unpack(int bits, ptrdiff_t n, ptrdiff_t k, ptrdiff_t group, const uint8_t *packed,
                  const float *packed_scales, const int8_t *packed_zeros, int8_t *codes, float *scales,
                  int8_t *zeros) {
    ptrdiff_t groups = k / group, stride = k * k_bytes(bits);
    for (ptrdiff_t c = 0; c < n; c++) {
        ptrdiff_t panel = c / PANEL;
        int j = (int)(c % PANEL);
        for (ptrdiff_t i = 0; i < k; i++) codes[c * k + i] = (int8_t)code_at(bits, packed + panel * stride, i, j);
        for (ptrdiff_t g = 0; g < groups; g++) {
            scales[c * groups + g] = packed_scales[(panel * groups + g) * PANEL + j];
            if (zeros) zeros[c * groups + g] = packed_zeros[(panel * groups + g) * PANEL + j];
        }
    }
}

// MARK: Portable

static void dequantize_portable(const sq_wo_problem *p, ptrdiff_t panel, ptrdiff_t k_begin, ptrdiff_t k_end,
                                float *out, ptrdiff_t ldo) {
    ptrdiff_t groups = p->k / p->group;
    const uint8_t *codes = p->codes + panel * p->k * k_bytes(p->bits);
    for (ptrdiff_t i = k_begin; i < k_end; i++) {
        ptrdiff_t parameters = (panel * groups + i / p->group) * PANEL;
        for (int j = 0; j < PANEL; j++) {
            int32_t zero = p->zeros ? p->zeros[parameters + j] : 0;
            float w = p->scales[parameters + j] * (float)(code_at(p->bits, codes, i, j) - zero);
            out[(i - k_begin) * ldo + j] = w;
        }
    }
}

static void gemm_portable(const sq_wo_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t panel_begin,
                          ptrdiff_t panel_end) {
    ptrdiff_t groups = p->k / p->group;
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        const uint8_t *codes = p->codes + panel * p->k * k_bytes(p->bits);
        ptrdiff_t first = panel * PANEL;
        int columns = (int)(p->n - first < PANEL ? p->n - first : PANEL);
        for (ptrdiff_t row = row_begin; row < row_end; row++) {
            const float *x = p->x + row * p->ldx;
            for (int j = 0; j < columns; j++) {
                float acc = 0;
                for (ptrdiff_t i = 0; i < p->k; i++) {
                    ptrdiff_t parameter = (panel * groups + i / p->group) * PANEL + j;
                    int32_t zero = p->zeros ? p->zeros[parameter] : 0;
                    float w = p->scales[parameter] * (float)(code_at(p->bits, codes, i, j) - zero);
                    acc = fmaf(x[i], w, acc);
                }
                p->y[row * p->ldy + first + j] = p->bias ? acc + p->bias[first + j] : acc;
            }
        }
    }
}

// MARK: AVX2

#if defined(__x86_64__)
#define WO_AVX2 __attribute__((target("avx2,fma")))

/// 2²³ as float bits: OR-ing an integer u < 2²³ into its mantissa gives the float 2²³ + u.
#define MAGIC 0x4B000000
#define MAGIC_FLOAT 8388608.0f

/// One k of a panel as floats: q − z for columns 0…7 and 8…15. `offset`
/// holds z as floats (int8) or 2²³ + 8 + z (int4, whose codes are read as
/// u = q + 8 through the mantissa of 2²³ + u; every step is exact).
WO_AVX2 WO_INLINE void codes_one(int bits, int zeroed, const uint8_t *codes, ptrdiff_t k, __m256 offset0,
                                 __m256 offset1, __m256 *low, __m256 *high) {
    if (bits == 8) {
        const uint8_t *c = codes + k * PANEL;
        *low = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)c)));
        *high = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(c + 8))));
        if (zeroed) {
            *low = _mm256_sub_ps(*low, offset0);
            *high = _mm256_sub_ps(*high, offset1);
        }
        return;
    }
    // Byte j holds column j (low nibble) and j + 8 (high), two's complement;
    // flipping bit 3 of each nibble gives u = q + 8.
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(codes + k * (PANEL / 2))));
    b = _mm256_xor_si256(b, _mm256_set1_epi32(0x88));
    __m256i u0 = _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x0F)), _mm256_set1_epi32(MAGIC));
    __m256i u1 = _mm256_or_si256(_mm256_srli_epi32(b, 4), _mm256_set1_epi32(MAGIC));
    *low = _mm256_sub_ps(_mm256_castsi256_ps(u0), offset0);
    *high = _mm256_sub_ps(_mm256_castsi256_ps(u1), offset1);
}

/// A group's 16 offsets for `codes_one`.
WO_AVX2 WO_INLINE void offsets(int bits, int zeroed, const int8_t *zeros, __m256 *offset0, __m256 *offset1) {
    __m256 base = _mm256_set1_ps(bits == 4 ? MAGIC_FLOAT + 8 : 0);
    if (!zeroed) {
        *offset0 = *offset1 = base;
        return;
    }
    *offset0 = _mm256_add_ps(base, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)zeros))));
    *offset1 = _mm256_add_ps(base, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(zeros + 8)))));
}

/// ŵ of one panel for k_begin ..< k_end into rows of 16 floats, ldo apart.
WO_AVX2 WO_INLINE void dequantize_impl(const sq_wo_problem *p, int bits, int zeroed, ptrdiff_t panel,
                                       ptrdiff_t k_begin, ptrdiff_t k_end, float *out, ptrdiff_t ldo) {
    ptrdiff_t groups = p->k / p->group;
    const uint8_t *codes = p->codes + panel * p->k * k_bytes(bits);
    ptrdiff_t i = k_begin;
    while (i < k_end) {
        ptrdiff_t g = i / p->group;
        ptrdiff_t end = (g + 1) * p->group < k_end ? (g + 1) * p->group : k_end;
        ptrdiff_t parameters = (panel * groups + g) * PANEL;
        __m256 s0 = _mm256_loadu_ps(p->scales + parameters), s1 = _mm256_loadu_ps(p->scales + parameters + 8);
        __m256 z0, z1, a0, a1;
        offsets(bits, zeroed, zeroed ? p->zeros + parameters : NULL, &z0, &z1);
        for (; i < end; i++) {
            codes_one(bits, zeroed, codes, i, z0, z1, &a0, &a1);
            float *o = out + (i - k_begin) * ldo;
            _mm256_storeu_ps(o, _mm256_mul_ps(s0, a0));
            _mm256_storeu_ps(o + 8, _mm256_mul_ps(s1, a1));
        }
    }
}

WO_AVX2 static void dequantize_avx2(const sq_wo_problem *p, ptrdiff_t panel, ptrdiff_t k_begin, ptrdiff_t k_end,
                                    float *out, ptrdiff_t ldo) {
    if (p->bits == 4) {
        if (p->zeros) dequantize_impl(p, 4, 1, panel, k_begin, k_end, out, ldo);
        else dequantize_impl(p, 4, 0, panel, k_begin, k_end, out, ldo);
    } else {
        if (p->zeros) dequantize_impl(p, 8, 1, panel, k_begin, k_end, out, ldo);
        else dequantize_impl(p, 8, 0, panel, k_begin, k_end, out, ldo);
    }
}

/// acc (4 rows × 16, rows lda apart) += x (4 rows, ldx apart) · w (kc × 16).
WO_AVX2 WO_INLINE void micro_4x16(const float *x, ptrdiff_t ldx, const float *w, ptrdiff_t kc, float *acc,
                                  ptrdiff_t lda) {
    __m256 c[4][2];
    for (int r = 0; r < 4; r++) {
        c[r][0] = _mm256_loadu_ps(acc + r * lda);
        c[r][1] = _mm256_loadu_ps(acc + r * lda + 8);
    }
    for (ptrdiff_t i = 0; i < kc; i++) {
        __m256 w0 = _mm256_loadu_ps(w + i * PANEL), w1 = _mm256_loadu_ps(w + i * PANEL + 8);
        for (int r = 0; r < 4; r++) {
            __m256 xb = _mm256_broadcast_ss(x + r * ldx + i);
            c[r][0] = _mm256_fmadd_ps(xb, w0, c[r][0]);
            c[r][1] = _mm256_fmadd_ps(xb, w1, c[r][1]);
        }
    }
    for (int r = 0; r < 4; r++) {
        _mm256_storeu_ps(acc + r * lda, c[r][0]);
        _mm256_storeu_ps(acc + r * lda + 8, c[r][1]);
    }
}

/// acc (1 row × 16·np) += x · w (np panels of CHUNK × 16).
WO_AVX2 WO_INLINE void micro_1xn(int np, const float *x, const float *w, ptrdiff_t kc, float *acc) {
    __m256 c[BLOCK_PANELS][2];
    for (int q = 0; q < np; q++) {
        c[q][0] = _mm256_loadu_ps(acc + q * PANEL);
        c[q][1] = _mm256_loadu_ps(acc + q * PANEL + 8);
    }
    for (ptrdiff_t i = 0; i < kc; i++) {
        __m256 xb = _mm256_broadcast_ss(x + i);
        for (int q = 0; q < np; q++) {
            const float *wq = w + q * CHUNK * PANEL + i * PANEL;
            c[q][0] = _mm256_fmadd_ps(xb, _mm256_loadu_ps(wq), c[q][0]);
            c[q][1] = _mm256_fmadd_ps(xb, _mm256_loadu_ps(wq + 8), c[q][1]);
        }
    }
    for (int q = 0; q < np; q++) {
        _mm256_storeu_ps(acc + q * PANEL, c[q][0]);
        _mm256_storeu_ps(acc + q * PANEL + 8, c[q][1]);
    }
}

WO_AVX2 static void micro_1x(int np, const float *x, const float *w, ptrdiff_t kc, float *acc) {
    switch (np) {
    case 4: micro_1xn(4, x, w, kc, acc); break;
    case 3: micro_1xn(3, x, w, kc, acc); break;
    case 2: micro_1xn(2, x, w, kc, acc); break;
    default: micro_1xn(1, x, w, kc, acc); break;
    }
}

/// Writes accumulators (rows × 16·np, 64 apart) plus bias to y.
static void store_block(const sq_wo_problem *p, const float *acc, ptrdiff_t row, ptrdiff_t rows, ptrdiff_t first_panel,
                        int np) {
    ptrdiff_t first = first_panel * PANEL;
    ptrdiff_t columns = p->n - first < np * PANEL ? p->n - first : np * PANEL;
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *y = p->y + (row + r) * p->ldy + first;
        const float *a = acc + r * BLOCK_PANELS * PANEL;
        if (p->bias) {
            for (ptrdiff_t j = 0; j < columns; j++) y[j] = a[j] + p->bias[first + j];
        } else {
            memcpy(y, a, (size_t)columns * sizeof(float));
        }
    }
}

/// One row against np panels, dequantised in registers (batch-1 decode).
WO_AVX2 WO_INLINE void direct_row(const sq_wo_problem *p, int bits, int zeroed, int np, ptrdiff_t row,
                                  ptrdiff_t first_panel) {
    ptrdiff_t groups = p->k / p->group, stride = p->k * k_bytes(bits);
    const float *x = p->x + row * p->ldx;
    const uint8_t *codes = p->codes + first_panel * stride;
    __m256 c[BLOCK_PANELS][2];
    for (int q = 0; q < np; q++) c[q][0] = c[q][1] = _mm256_setzero_ps();
    for (ptrdiff_t g = 0; g < groups; g++) {
        __m256 s[BLOCK_PANELS][2], z[BLOCK_PANELS][2];
        for (int q = 0; q < np; q++) {
            ptrdiff_t parameters = ((first_panel + q) * groups + g) * PANEL;
            s[q][0] = _mm256_loadu_ps(p->scales + parameters);
            s[q][1] = _mm256_loadu_ps(p->scales + parameters + 8);
            offsets(bits, zeroed, zeroed ? p->zeros + parameters : NULL, &z[q][0], &z[q][1]);
        }
        for (ptrdiff_t i = g * p->group, end = (g + 1) * p->group; i < end; i++) {
            __m256 xa = _mm256_broadcast_ss(x + i);
            for (int q = 0; q < np; q++) {
                __m256 a0, a1;
                codes_one(bits, zeroed, codes + q * stride, i, z[q][0], z[q][1], &a0, &a1);
                c[q][0] = _mm256_fmadd_ps(xa, _mm256_mul_ps(s[q][0], a0), c[q][0]);
                c[q][1] = _mm256_fmadd_ps(xa, _mm256_mul_ps(s[q][1], a1), c[q][1]);
            }
        }
    }
    float acc[BLOCK_PANELS * PANEL];
    for (int q = 0; q < np; q++) {
        _mm256_storeu_ps(acc + q * PANEL, c[q][0]);
        _mm256_storeu_ps(acc + q * PANEL + 8, c[q][1]);
    }
    store_block(p, acc, row, 1, first_panel, np);
}

WO_AVX2 WO_INLINE void direct_rows_impl(const sq_wo_problem *p, int bits, int zeroed, ptrdiff_t row_begin,
                                        ptrdiff_t row_end, ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    for (ptrdiff_t first = panel_begin; first < panel_end; first += BLOCK_PANELS) {
        ptrdiff_t np = panel_end - first < BLOCK_PANELS ? panel_end - first : BLOCK_PANELS;
        for (ptrdiff_t row = row_begin; row < row_end; row++) {
            switch (np) {
            case 4: direct_row(p, bits, zeroed, 4, row, first); break;
            case 3: direct_row(p, bits, zeroed, 3, row, first); break;
            case 2: direct_row(p, bits, zeroed, 2, row, first); break;
            default: direct_row(p, bits, zeroed, 1, row, first); break;
            }
        }
    }
}

WO_AVX2 static void direct_rows(const sq_wo_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end,
                                ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    if (p->bits == 4) {
        if (p->zeros) direct_rows_impl(p, 4, 1, row_begin, row_end, panel_begin, panel_end);
        else direct_rows_impl(p, 4, 0, row_begin, row_end, panel_begin, panel_end);
    } else {
        if (p->zeros) direct_rows_impl(p, 8, 1, row_begin, row_end, panel_begin, panel_end);
        else direct_rows_impl(p, 8, 0, row_begin, row_end, panel_begin, panel_end);
    }
}

/// Rows whose blocks of dequantised weights are shared (see the top of the file).
WO_AVX2 static void buffered_rows(const sq_wo_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end,
                                  ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    float weights[BLOCK_PANELS * CHUNK * PANEL] __attribute__((aligned(32)));
    float acc[ROW_BLOCK * BLOCK_PANELS * PANEL] __attribute__((aligned(32)));
    for (ptrdiff_t row = row_begin; row < row_end; row += ROW_BLOCK) {
        ptrdiff_t rows = row_end - row < ROW_BLOCK ? row_end - row : ROW_BLOCK;
        for (ptrdiff_t first = panel_begin; first < panel_end; first += BLOCK_PANELS) {
            int np = (int)(panel_end - first < BLOCK_PANELS ? panel_end - first : BLOCK_PANELS);
            memset(acc, 0, sizeof(float) * (size_t)(rows * BLOCK_PANELS * PANEL));
            for (ptrdiff_t k0 = 0; k0 < p->k; k0 += CHUNK) {
                ptrdiff_t kc = p->k - k0 < CHUNK ? p->k - k0 : CHUNK;
                for (int q = 0; q < np; q++) dequantize_avx2(p, first + q, k0, k0 + kc, weights + q * CHUNK * PANEL, PANEL);
                const float *x = p->x + row * p->ldx + k0;
                ptrdiff_t r = 0;
                for (; r + 4 <= rows; r += 4) {
                    for (int q = 0; q < np; q++)
                        micro_4x16(x + r * p->ldx, p->ldx, weights + q * CHUNK * PANEL, kc,
                                   acc + r * BLOCK_PANELS * PANEL + q * PANEL, BLOCK_PANELS * PANEL);
                }
                for (; r < rows; r++) micro_1x(np, x + r * p->ldx, weights, kc, acc + r * BLOCK_PANELS * PANEL);
            }
            store_block(p, acc, row, rows, first, np);
        }
    }
}

#endif

/// Rows below which each row dequantises its weights in registers.
#define DIRECT_ROWS 2

int sq_wo_gemm(const sq_wo_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t panel_begin,
               ptrdiff_t panel_end) {
    if (p->kernel == SQ_WO_KERNEL_PORTABLE || !sq_use_avx2()) {
        gemm_portable(p, row_begin, row_end, panel_begin, panel_end);
        return SQ_WO_KERNEL_PORTABLE;
    }
#if defined(__x86_64__)
    if (row_end - row_begin < DIRECT_ROWS) direct_rows(p, row_begin, row_end, panel_begin, panel_end);
    else buffered_rows(p, row_begin, row_end, panel_begin, panel_end);
#endif
    return SQ_WO_KERNEL_AVX2;
}

void sq_wo_dequantize(const sq_wo_problem *p, ptrdiff_t panel_begin, ptrdiff_t panel_end, ptrdiff_t k_begin,
                      ptrdiff_t k_end, float *out, ptrdiff_t ldo) {
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        float *o = out + (panel - panel_begin) * PANEL;
#if defined(__x86_64__)
        if (p->kernel != SQ_WO_KERNEL_PORTABLE && sq_use_avx2()) {
            dequantize_avx2(p, panel, k_begin, k_end, o, ldo);
            continue;
        }
#endif
        dequantize_portable(p, panel, k_begin, k_end, o, ldo);
    }
}
