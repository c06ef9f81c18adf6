// Int8 matrix products for quantised linear layers (see sq_kernels.h):
// u8 activations × s8 weights, exact s32 sums, one float rescale per output.
//
// Kernels:
// - "avx2-maddubs": vpmaddubsw (u8·s8 pairs → s16, saturating) + vpmaddwd
//   with ones (→ s32). Used only when no pair sum can saturate for the
//   activations at hand (see `sq_i8_pack_weights`), so it is exact.
// - "avx2-wide": both operands widened to s16 and multiplied with vpmaddwd
//   (s16·s16 pairs → s32, exact for every input); for the other cases.
// - "avx512-vnni": vpdpbusd (four u8·s8 products added straight into s32,
//   no int16 step, so exact for every input) on 512-bit registers, where the
//   CPU has AVX-512 VNNI (Zen 4, Ice Lake and later); one register holds a
//   whole packed group of a panel.
// - "portable": plain loops over the same packed weights (non-x86, or forced).
// All four give bit-identical results: the sums are exact integers and the
// epilogue is the same sequence of correctly rounded float operations.

#include "sq_kernels.h"
#include "cpu_features.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define SQ_I8_INLINE static inline __attribute__((always_inline))
/// k values per packed group: 4 bytes of a row of activations, one s32 lane.
#define GROUP 4
/// Bytes of one packed group of a panel: SQ_I8_PANEL columns × GROUP.
#define GROUP_BYTES (SQ_I8_PANEL * GROUP)

static ptrdiff_t groups_of(ptrdiff_t k) { return (k + GROUP - 1) / GROUP; }
static ptrdiff_t panels_of(ptrdiff_t n) { return (n + SQ_I8_PANEL - 1) / SQ_I8_PANEL; }

ptrdiff_t sq_i8_packed_bytes(ptrdiff_t n, ptrdiff_t k) { return panels_of(n) * groups_of(k) * GROUP_BYTES; }

int32_t sq_i8_pack_weights(const int8_t *w, ptrdiff_t n, ptrdiff_t k, int8_t *packed, int32_t *column_sums) {
    ptrdiff_t groups = groups_of(k), panels = panels_of(n);
    memset(packed, 0, (size_t)(panels * groups * GROUP_BYTES));
    int32_t positive = 0, negative = 0;
    for (ptrdiff_t col = 0; col < n; col++) {
        const int8_t *row = w + col * k;
        int8_t *panel = packed + (col / SQ_I8_PANEL) * groups * GROUP_BYTES + (col % SQ_I8_PANEL) * GROUP;
        int32_t sum = 0;
        for (ptrdiff_t i = 0; i < k; i++) {
            panel[(i / GROUP) * GROUP_BYTES + i % GROUP] = row[i];
            sum += row[i];
        }
        column_sums[col] = sum;
        // vpmaddubsw adds the products of k = 2j and 2j + 1 in int16.
        for (ptrdiff_t i = 0; i < k; i += 2) {
            int32_t w0 = row[i], w1 = i + 1 < k ? row[i + 1] : 0;
            int32_t up = (w0 > 0 ? w0 : 0) + (w1 > 0 ? w1 : 0);
            int32_t down = -((w0 < 0 ? w0 : 0) + (w1 < 0 ? w1 : 0));
            if (up > positive) positive = up;
            if (down > negative) negative = down;
        }
    }
    // a·(w0 + w1) over the same-signed parts must stay inside [−32768, 32767].
    int32_t limit = 255;
    if (positive > 0 && 32767 / positive < limit) limit = 32767 / positive;
    if (negative > 0 && 32768 / negative < limit) limit = 32768 / negative;
    return limit;
}

// MARK: Portable

/// The four activations of group g of a row (zeros past k), as vpbroadcastd would read them.
SQ_I8_INLINE uint32_t group_bytes(const uint8_t *row, ptrdiff_t g, ptrdiff_t k) {
    uint32_t value = 0;
    ptrdiff_t first = g * GROUP;
    if (first + GROUP <= k) {
        memcpy(&value, row + first, GROUP);
    } else {
        uint8_t bytes[GROUP] = {0};
        memcpy(bytes, row + first, (size_t)(k - first));
        memcpy(&value, bytes, GROUP);
    }
    return value;
}

/// The float epilogue of one output (the portable reference the vector code matches bit for bit).
SQ_I8_INLINE float epilogue_value(int32_t acc, int32_t a_zero, int32_t column_sum, float a_scale, float w_scale,
                                  float bias) {
    int32_t corrected = (int32_t)((uint32_t)acc - (uint32_t)a_zero * (uint32_t)column_sum);
    return fmaf((float)corrected, a_scale * w_scale, bias);
}

SQ_I8_INLINE uint8_t quantize_value(float x, float inverse_scale, float low, float high, int32_t zero) {
    float v = x * inverse_scale;
    v = v > low ? v : low; // NaN → low, as maxps
    v = v < high ? v : high;
    return (uint8_t)((int32_t)nearbyintf(v) + zero);
}

/// Stores row `row`, columns col ..< col + cols of the product from their sums.
static void store_portable(const sq_i8_gemm_problem *p, ptrdiff_t row, ptrdiff_t col, ptrdiff_t cols,
                           const int32_t *acc) {
    if (p->output == SQ_I8_OUT_S32) {
        memcpy((int32_t *)p->c + row * p->ldc + col, acc, (size_t)cols * sizeof(int32_t));
        return;
    }
    float a_scale = p->a_scale[row * p->a_param_stride];
    int32_t a_zero = p->a_zero[row * p->a_param_stride];
    float low = (float)(p->out_min - p->out_zero), high = (float)(p->out_max - p->out_zero);
    for (ptrdiff_t j = 0; j < cols; j++) {
        float y = epilogue_value(acc[j], a_zero, p->column_sums[col + j], a_scale, p->w_scale[col + j],
                                 p->bias ? p->bias[col + j] : 0.0f);
        if (p->output == SQ_I8_OUT_F32)
            ((float *)p->c)[row * p->ldc + col + j] = y;
        else
            ((uint8_t *)p->c)[row * p->ldc + col + j] =
                quantize_value(y, p->out_inverse_scale, low, high, p->out_zero);
    }
}

static void gemm_portable(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end,
                          ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    ptrdiff_t groups = groups_of(p->k);
    for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
        const int8_t *w = p->packed + panel * groups * GROUP_BYTES;
        ptrdiff_t col = panel * SQ_I8_PANEL;
        ptrdiff_t cols = p->n - col < SQ_I8_PANEL ? p->n - col : SQ_I8_PANEL;
        for (ptrdiff_t row = row_begin; row < row_end; row++) {
            const uint8_t *a = p->a + row * p->lda;
            int32_t acc[SQ_I8_PANEL] = {0};
            for (ptrdiff_t g = 0; g < groups; g++) {
                uint32_t packed_a = group_bytes(a, g, p->k);
                uint8_t x[GROUP];
                memcpy(x, &packed_a, GROUP);
                const int8_t *wg = w + g * GROUP_BYTES;
                for (int j = 0; j < SQ_I8_PANEL; j++)
                    for (int i = 0; i < GROUP; i++) acc[j] += (int32_t)x[i] * (int32_t)wg[j * GROUP + i];
            }
            store_portable(p, row, col, cols, acc);
        }
    }
}

void sq_f32_range(const float *x, ptrdiff_t n, float *min, float *max) {
    float low = 0.0f, high = 0.0f;
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = fabsf(x[i]) <= 3.40282347e38f ? x[i] : 0.0f; // NaN and ±∞ count as 0
        low = v < low ? v : low;
        high = v > high ? v : high;
    }
    *min = low;
    *max = high;
}

uint8_t sq_u8_max(const uint8_t *x, ptrdiff_t n) {
    uint8_t high = 0;
    for (ptrdiff_t i = 0; i < n; i++) high = x[i] > high ? x[i] : high;
    return high;
}

void sq_quantize_u8_portable(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero,
                             int32_t q_min, int32_t q_max) {
    float low = (float)(q_min - zero), high = (float)(q_max - zero);
    for (ptrdiff_t i = 0; i < n; i++) out[i] = quantize_value(x[i], inverse_scale, low, high, zero);
}

void sq_quantize_u8_columns_portable(const float *x, uint8_t *out, ptrdiff_t rows, ptrdiff_t columns,
                                     const float *inverse_scales, int32_t zero, int32_t q_min, int32_t q_max) {
    float low = (float)(q_min - zero), high = (float)(q_max - zero);
    for (ptrdiff_t row = 0; row < rows; row++) {
        const float *in = x + row * columns;
        uint8_t *codes = out + row * columns;
        for (ptrdiff_t j = 0; j < columns; j++) codes[j] = quantize_value(in[j], inverse_scales[j], low, high, zero);
    }
}

// MARK: AVX2

#if defined(__x86_64__)
#define SQ_AVX2 __attribute__((target("avx2,fma")))

/// Rows per micro-tile of the maddubs kernel (× 16 columns: 2·MR accumulators).
#define UBS_MR 4
/// Rows per micro-tile of the wide kernel (× 16 columns: 4·MR accumulators).
#define WIDE_MR 2

SQ_AVX2 SQ_I8_INLINE __m256i broadcast_group(const uint8_t *row, ptrdiff_t g, ptrdiff_t k) {
    return _mm256_set1_epi32((int32_t)group_bytes(row, g, k));
}

/// acc[r][h] += maddubs(x, w)·1 for one broadcast group x of row r.
SQ_AVX2 SQ_I8_INLINE void ubs_step(__m256i acc[2], __m256i x, __m256i w0, __m256i w1, __m256i ones) {
    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones));
    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones));
}

/// Σ a·w over k for `mr` rows × 16 columns: acc[r][h] holds columns 8h ..< 8h + 8.
SQ_AVX2 SQ_I8_INLINE void ubs_tile(int mr, const uint8_t *a, ptrdiff_t lda, const int8_t *w, ptrdiff_t k,
                                   __m256i acc[][2]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    ptrdiff_t full = k / GROUP;
    for (ptrdiff_t g = 0; g < full; g++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + g * GROUP_BYTES));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + g * GROUP_BYTES + 32));
        for (int r = 0; r < mr; r++) {
            int32_t v;
            memcpy(&v, a + r * lda + g * GROUP, sizeof v);
            ubs_step(acc[r], _mm256_set1_epi32(v), w0, w1, ones);
        }
    }
    if (full * GROUP < k) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + full * GROUP_BYTES));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + full * GROUP_BYTES + 32));
        for (int r = 0; r < mr; r++) ubs_step(acc[r], broadcast_group(a + r * lda, full, k), w0, w1, ones);
    }
}

/// acc[r][q] += x·w_q for one group x of row r widened to int16 (a₀ a₁ a₂ a₃ repeated).
SQ_AVX2 SQ_I8_INLINE void wide_step(__m256i acc[4], int32_t group, const __m256i w[4]) {
    __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32(group));
    for (int q = 0; q < 4; q++) acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(x, w[q]));
}

SQ_AVX2 SQ_I8_INLINE void wide_weights(const int8_t *wg, __m256i w[4]) {
    for (int q = 0; q < 4; q++) w[q] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wg + 16 * q)));
}

/// As `ubs_tile` with both operands widened to s16 (exact for every input).
/// Lanes of acc[r][q] hold partial sums [c0 even, c0 odd, c1 even, ...] of
/// columns 4q ..< 4q + 4, folded by `fold_wide`.
SQ_AVX2 SQ_I8_INLINE void wide_tile(int mr, const uint8_t *a, ptrdiff_t lda, const int8_t *w, ptrdiff_t k,
                                    __m256i acc[][4]) {
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm256_setzero_si256();
    ptrdiff_t full = k / GROUP;
    __m256i wv[4];
    for (ptrdiff_t g = 0; g < full; g++) {
        wide_weights(w + g * GROUP_BYTES, wv);
        for (int r = 0; r < mr; r++) {
            int32_t v;
            memcpy(&v, a + r * lda + g * GROUP, sizeof v);
            wide_step(acc[r], v, wv);
        }
    }
    if (full * GROUP < k) {
        wide_weights(w + full * GROUP_BYTES, wv);
        for (int r = 0; r < mr; r++) wide_step(acc[r], (int32_t)group_bytes(a + r * lda, full, k), wv);
    }
}

/// Columns 0..7 of a wide tile from the partial sums of columns 0..3 (p) and 4..7 (q).
SQ_AVX2 SQ_I8_INLINE __m256i fold_wide(__m256i p, __m256i q) {
    // hadd per 128-bit lane: [c0 c1 c4 c5 | c2 c3 c6 c7]
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(p, q), 0xD8);
}

/// Up to 8 int32 or float values from `source` (zeros past `count`).
SQ_AVX2 SQ_I8_INLINE __m256i load_partial(const void *source, int count) {
    if (count == 8) return _mm256_loadu_si256((const __m256i *)source);
    int32_t buffer[8] = {0};
    memcpy(buffer, source, (size_t)count * 4);
    return _mm256_loadu_si256((const __m256i *)buffer);
}

/// Stores the first `count` of 8 int32 or float values.
SQ_AVX2 SQ_I8_INLINE void store_partial(void *target, __m256i value, int count) {
    if (count == 8) {
        _mm256_storeu_si256((__m256i *)target, value);
        return;
    }
    int32_t buffer[8];
    _mm256_storeu_si256((__m256i *)buffer, value);
    memcpy(target, buffer, (size_t)count * 4);
}

/// The per-column operands of the epilogue for 8 columns (zeros past `count`).
typedef struct {
    __m256i sums;
    __m256 w_scale, bias;
    int count;
} columns8;

SQ_AVX2 SQ_I8_INLINE columns8 load_columns8(const sq_i8_gemm_problem *p, ptrdiff_t col, int count) {
    columns8 c = {_mm256_setzero_si256(), _mm256_setzero_ps(), _mm256_setzero_ps(), count};
    if (count <= 0 || p->output == SQ_I8_OUT_S32) return c;
    c.sums = load_partial(p->column_sums + col, count);
    c.w_scale = _mm256_castsi256_ps(load_partial(p->w_scale + col, count));
    if (p->bias) c.bias = _mm256_castsi256_ps(load_partial(p->bias + col, count));
    return c;
}

/// The epilogue of row `row`, columns col ..< col + c.count (≤ 8), from their sums.
SQ_AVX2 SQ_I8_INLINE void store8_avx2(const sq_i8_gemm_problem *p, ptrdiff_t row, ptrdiff_t col, columns8 c,
                                      __m256i acc) {
    if (p->output == SQ_I8_OUT_S32) {
        store_partial((int32_t *)p->c + row * p->ldc + col, acc, c.count);
        return;
    }
    __m256i zero = _mm256_set1_epi32(p->a_zero[row * p->a_param_stride]);
    __m256 a_scale = _mm256_set1_ps(p->a_scale[row * p->a_param_stride]);
    __m256i corrected = _mm256_sub_epi32(acc, _mm256_mullo_epi32(zero, c.sums));
    __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(corrected), _mm256_mul_ps(a_scale, c.w_scale), c.bias);
    if (p->output == SQ_I8_OUT_F32) {
        store_partial((float *)p->c + row * p->ldc + col, _mm256_castps_si256(y), c.count);
        return;
    }
    __m256 v = _mm256_mul_ps(y, _mm256_set1_ps(p->out_inverse_scale));
    v = _mm256_max_ps(v, _mm256_set1_ps((float)(p->out_min - p->out_zero)));
    v = _mm256_min_ps(v, _mm256_set1_ps((float)(p->out_max - p->out_zero)));
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(p->out_zero));
    __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    __m128i bytes = _mm_packus_epi16(words, words);
    uint8_t buffer[16];
    _mm_storeu_si128((__m128i *)buffer, bytes);
    memcpy((uint8_t *)p->c + row * p->ldc + col, buffer, (size_t)c.count);
}

/// The epilogue operands of one panel's columns (col ..< col + cols, cols ≤ 16).
typedef struct {
    columns8 low, high;
} panel_columns;

SQ_AVX2 SQ_I8_INLINE panel_columns load_panel_columns(const sq_i8_gemm_problem *p, ptrdiff_t col, ptrdiff_t cols) {
    panel_columns c;
    c.low = load_columns8(p, col, cols < 8 ? (int)cols : 8);
    c.high = load_columns8(p, col + 8, cols > 8 ? (int)cols - 8 : 0);
    return c;
}

SQ_AVX2 SQ_I8_INLINE void store16_avx2(const sq_i8_gemm_problem *p, ptrdiff_t row, ptrdiff_t col,
                                       const panel_columns *c, __m256i low, __m256i high) {
    store8_avx2(p, row, col, c->low, low);
    if (c->high.count > 0) store8_avx2(p, row, col + 8, c->high, high);
}

/// Rows per block whose activations stay in L2 while every panel passes over them.
static ptrdiff_t block_rows(ptrdiff_t k, ptrdiff_t mr) {
    ptrdiff_t rows = (96 * 1024) / (k > 0 ? k : 1);
    rows = rows / mr * mr;
    return rows < mr ? mr : rows;
}

/// Asks for the output lines a micro-tile will write (a large output misses
/// every cache level; its latency then hides behind the tile's sums).
SQ_I8_INLINE void prefetch_output(const sq_i8_gemm_problem *p, int mr, ptrdiff_t row, ptrdiff_t col,
                                  ptrdiff_t cols) {
    ptrdiff_t size = p->output == SQ_I8_OUT_U8 ? 1 : 4;
    for (int r = 0; r < mr; r++) {
        const char *first = (const char *)p->c + ((row + r) * p->ldc + col) * size;
        __builtin_prefetch(first, 1, 3);
        __builtin_prefetch(first + cols * size - 1, 1, 3);
    }
}

SQ_AVX2 SQ_I8_INLINE void ubs_rows(const sq_i8_gemm_problem *p, int mr, ptrdiff_t row, const int8_t *w,
                                   ptrdiff_t col, ptrdiff_t cols, const panel_columns *c) {
    __m256i acc[UBS_MR][2];
    prefetch_output(p, mr, row, col, cols);
    ubs_tile(mr, p->a + row * p->lda, p->lda, w, p->k, acc);
    for (int r = 0; r < mr; r++) store16_avx2(p, row + r, col, c, acc[r][0], acc[r][1]);
}

SQ_AVX2 static void gemm_ubs(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end,
                             ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    ptrdiff_t groups = groups_of(p->k), block = block_rows(p->k, UBS_MR);
    for (ptrdiff_t first = row_begin; first < row_end; first += block) {
        ptrdiff_t last = first + block < row_end ? first + block : row_end;
        for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
            const int8_t *w = p->packed + panel * groups * GROUP_BYTES;
            ptrdiff_t col = panel * SQ_I8_PANEL;
            ptrdiff_t cols = p->n - col < SQ_I8_PANEL ? p->n - col : SQ_I8_PANEL;
            panel_columns c = load_panel_columns(p, col, cols);
            ptrdiff_t row = first;
            for (; row + UBS_MR <= last; row += UBS_MR) ubs_rows(p, UBS_MR, row, w, col, cols, &c);
            switch (last - row) {
            case 5: ubs_rows(p, 5, row, w, col, cols, &c); break;
            case 4: ubs_rows(p, 4, row, w, col, cols, &c); break;
            case 3: ubs_rows(p, 3, row, w, col, cols, &c); break;
            case 2: ubs_rows(p, 2, row, w, col, cols, &c); break;
            case 1: ubs_rows(p, 1, row, w, col, cols, &c); break;
            default: break;
            }
        }
    }
}

SQ_AVX2 SQ_I8_INLINE void wide_rows(const sq_i8_gemm_problem *p, int mr, ptrdiff_t row, const int8_t *w,
                                    ptrdiff_t col, ptrdiff_t cols, const panel_columns *c) {
    __m256i acc[WIDE_MR][4];
    prefetch_output(p, mr, row, col, cols);
    wide_tile(mr, p->a + row * p->lda, p->lda, w, p->k, acc);
    for (int r = 0; r < mr; r++)
        store16_avx2(p, row + r, col, c, fold_wide(acc[r][0], acc[r][1]), fold_wide(acc[r][2], acc[r][3]));
}

SQ_AVX2 static void gemm_wide(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end,
                              ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    ptrdiff_t groups = groups_of(p->k), block = block_rows(p->k, WIDE_MR);
    for (ptrdiff_t first = row_begin; first < row_end; first += block) {
        ptrdiff_t last = first + block < row_end ? first + block : row_end;
        for (ptrdiff_t panel = panel_begin; panel < panel_end; panel++) {
            const int8_t *w = p->packed + panel * groups * GROUP_BYTES;
            ptrdiff_t col = panel * SQ_I8_PANEL;
            ptrdiff_t cols = p->n - col < SQ_I8_PANEL ? p->n - col : SQ_I8_PANEL;
            panel_columns c = load_panel_columns(p, col, cols);
            ptrdiff_t row = first;
            for (; row + WIDE_MR <= last; row += WIDE_MR) wide_rows(p, WIDE_MR, row, w, col, cols, &c);
            if (row < last) wide_rows(p, 1, row, w, col, cols, &c);
        }
    }
}

// MARK: AVX-512 VNNI

#define SQ_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

/// Rows per micro-tile of the VNNI kernel (× 2 panels of 16 columns: 2·MR accumulators).
#define VNNI_MR 6

/// Σ a·w over k for `mr` rows × `np` (1 or 2) panels: acc[r][q] holds the 16
/// columns of panel q; the second panel's weights start `panel_bytes` after the first's.
SQ_VNNI SQ_I8_INLINE void vnni_tile(int mr, int np, const uint8_t *a, ptrdiff_t lda, const int8_t *w,
                                    ptrdiff_t panel_bytes, ptrdiff_t k, __m512i acc[][2]) {
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    ptrdiff_t full = k / GROUP;
    for (ptrdiff_t g = 0; g < full; g++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(w + g * GROUP_BYTES));
        __m512i w1 = np > 1 ? _mm512_loadu_si512((const void *)(w + panel_bytes + g * GROUP_BYTES)) : w0;
        for (int r = 0; r < mr; r++) {
            int32_t v;
            memcpy(&v, a + r * lda + g * GROUP, sizeof v);
            __m512i x = _mm512_set1_epi32(v);
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, w0);
            if (np > 1) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, w1);
        }
    }
    if (full * GROUP < k) {
        __m512i w0 = _mm512_loadu_si512((const void *)(w + full * GROUP_BYTES));
        __m512i w1 = np > 1 ? _mm512_loadu_si512((const void *)(w + panel_bytes + full * GROUP_BYTES)) : w0;
        for (int r = 0; r < mr; r++) {
            __m512i x = _mm512_set1_epi32((int32_t)group_bytes(a + r * lda, full, k));
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, w0);
            if (np > 1) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, w1);
        }
    }
}

/// The epilogue operands of up to two panels (np of them) starting at column `col`.
SQ_VNNI SQ_I8_INLINE void load_vnni_columns(const sq_i8_gemm_problem *p, ptrdiff_t col, int np,
                                            panel_columns c[2]) {
    for (int q = 0; q < np; q++) {
        ptrdiff_t first = col + q * SQ_I8_PANEL;
        c[q] = load_panel_columns(p, first, p->n - first < SQ_I8_PANEL ? p->n - first : SQ_I8_PANEL);
    }
}

SQ_VNNI SQ_I8_INLINE void vnni_rows(const sq_i8_gemm_problem *p, int mr, int np, ptrdiff_t row, const int8_t *w,
                                    ptrdiff_t panel_bytes, ptrdiff_t col, const panel_columns c[2]) {
    __m512i acc[VNNI_MR][2];
    ptrdiff_t cols = p->n - col < np * SQ_I8_PANEL ? p->n - col : np * SQ_I8_PANEL;
    prefetch_output(p, mr, row, col, cols);
    vnni_tile(mr, np, p->a + row * p->lda, p->lda, w, panel_bytes, p->k, acc);
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < np; q++)
            store16_avx2(p, row + r, col + q * SQ_I8_PANEL, &c[q], _mm512_castsi512_si256(acc[r][q]),
                         _mm512_extracti64x4_epi64(acc[r][q], 1));
}

/// Rows row ..< last of panels `panel` (and `panel + 1` when np is 2), VNNI_MR rows at a time.
SQ_VNNI SQ_I8_INLINE void vnni_panels(const sq_i8_gemm_problem *p, int np, ptrdiff_t row, ptrdiff_t last,
                                      ptrdiff_t panel) {
    ptrdiff_t panel_bytes = groups_of(p->k) * GROUP_BYTES;
    const int8_t *w = p->packed + panel * panel_bytes;
    ptrdiff_t col = panel * SQ_I8_PANEL;
    panel_columns c[2];
    load_vnni_columns(p, col, np, c);
    for (; row + VNNI_MR <= last; row += VNNI_MR) vnni_rows(p, VNNI_MR, np, row, w, panel_bytes, col, c);
    switch (last - row) {
    case 5: vnni_rows(p, 5, np, row, w, panel_bytes, col, c); break;
    case 4: vnni_rows(p, 4, np, row, w, panel_bytes, col, c); break;
    case 3: vnni_rows(p, 3, np, row, w, panel_bytes, col, c); break;
    case 2: vnni_rows(p, 2, np, row, w, panel_bytes, col, c); break;
    case 1: vnni_rows(p, 1, np, row, w, panel_bytes, col, c); break;
    default: break;
    }
}

SQ_VNNI static void gemm_vnni(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end,
                              ptrdiff_t panel_begin, ptrdiff_t panel_end) {
    ptrdiff_t block = block_rows(p->k, VNNI_MR);
    for (ptrdiff_t first = row_begin; first < row_end; first += block) {
        ptrdiff_t last = first + block < row_end ? first + block : row_end;
        ptrdiff_t panel = panel_begin;
        for (; panel + 2 <= panel_end; panel += 2) vnni_panels(p, 2, first, last, panel);
        if (panel < panel_end) vnni_panels(p, 1, first, last, panel);
    }
}

SQ_AVX2 static void quantize_avx2(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero,
                                  int32_t q_min, int32_t q_max) {
    __m256 inverse = _mm256_set1_ps(inverse_scale);
    __m256 low = _mm256_set1_ps((float)(q_min - zero)), high = _mm256_set1_ps((float)(q_max - zero));
    __m256i offset = _mm256_set1_epi32(zero);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), inverse);
        v = _mm256_min_ps(_mm256_max_ps(v, low), high);
        __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), offset);
        __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64((__m128i *)(out + i), _mm_packus_epi16(words, words));
    }
    sq_quantize_u8_portable(x + i, out + i, n - i, inverse_scale, zero, q_min, q_max);
}

/// `quantize_avx2` with one inverse scale per column, loaded alongside the values.
SQ_AVX2 static void quantize_columns_avx2(const float *x, uint8_t *out, ptrdiff_t rows, ptrdiff_t columns,
                                          const float *inverse_scales, int32_t zero, int32_t q_min, int32_t q_max) {
    __m256 low = _mm256_set1_ps((float)(q_min - zero)), high = _mm256_set1_ps((float)(q_max - zero));
    __m256i offset = _mm256_set1_epi32(zero);
    float low1 = (float)(q_min - zero), high1 = (float)(q_max - zero);
    for (ptrdiff_t row = 0; row < rows; row++) {
        const float *in = x + row * columns;
        uint8_t *codes = out + row * columns;
        ptrdiff_t j = 0;
        for (; j + 8 <= columns; j += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(in + j), _mm256_loadu_ps(inverse_scales + j));
            v = _mm256_min_ps(_mm256_max_ps(v, low), high);
            __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), offset);
            __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i *)(codes + j), _mm_packus_epi16(words, words));
        }
        for (; j < columns; j++) codes[j] = quantize_value(in[j], inverse_scales[j], low1, high1, zero);
    }
}

#endif

// MARK: Entry points

int sq_i8_kernel_for(int requested, int32_t fast_activation_limit, int32_t activation_max) {
    if (requested == SQ_I8_KERNEL_PORTABLE || !sq_use_avx2()) return SQ_I8_KERNEL_PORTABLE;
    if (sq_use_avx512_vnni() && (requested == SQ_I8_KERNEL_AUTO || requested == SQ_I8_KERNEL_VNNI))
        return SQ_I8_KERNEL_VNNI;
    if (requested == SQ_I8_KERNEL_WIDE) return SQ_I8_KERNEL_WIDE;
    return activation_max <= fast_activation_limit ? SQ_I8_KERNEL_MADDUBS : SQ_I8_KERNEL_WIDE;
}

/// The kernel for rows row_begin ..< row_end; their largest activation is
/// looked up only when it decides between maddubs and wide.
static int choose_kernel(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end) {
    int32_t activation_max = p->activation_max;
    if (activation_max < 0) {
        int32_t limit = p->fast_activation_limit;
        activation_max = 255;
        if (sq_i8_kernel_for(p->kernel, limit, 255) != sq_i8_kernel_for(p->kernel, limit, 0)) {
            activation_max = 0;
            for (ptrdiff_t row = row_begin; row < row_end; row++) {
                int32_t high = sq_u8_max(p->a + row * p->lda, p->k);
                activation_max = high > activation_max ? high : activation_max;
            }
        }
    }
    return sq_i8_kernel_for(p->kernel, p->fast_activation_limit, activation_max);
}

int sq_i8_gemm(const sq_i8_gemm_problem *p, ptrdiff_t row_begin, ptrdiff_t row_end, ptrdiff_t panel_begin,
               ptrdiff_t panel_end) {
    int kernel = choose_kernel(p, row_begin, row_end);
    switch (kernel) {
#if defined(__x86_64__)
    case SQ_I8_KERNEL_MADDUBS: gemm_ubs(p, row_begin, row_end, panel_begin, panel_end); break;
    case SQ_I8_KERNEL_WIDE: gemm_wide(p, row_begin, row_end, panel_begin, panel_end); break;
    case SQ_I8_KERNEL_VNNI: gemm_vnni(p, row_begin, row_end, panel_begin, panel_end); break;
#endif
    default: gemm_portable(p, row_begin, row_end, panel_begin, panel_end); break;
    }
    return kernel;
}

void sq_quantize_u8(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero, int32_t q_min,
                    int32_t q_max) {
#if defined(__x86_64__)
    if (sq_use_avx2()) {
        quantize_avx2(x, out, n, inverse_scale, zero, q_min, q_max);
        return;
    }
#endif
    sq_quantize_u8_portable(x, out, n, inverse_scale, zero, q_min, q_max);
}

void sq_quantize_u8_columns(const float *x, uint8_t *out, ptrdiff_t rows, ptrdiff_t columns, const float *inverse_scales,
                            int32_t zero, int32_t q_min, int32_t q_max) {
#if defined(__x86_64__)
    if (sq_use_avx2()) {
        quantize_columns_avx2(x, out, rows, columns, inverse_scales, zero, q_min, q_max);
        return;
    }
#endif
    sq_quantize_u8_columns_portable(x, out, rows, columns, inverse_scales, zero, q_min, q_max);
}

void sq_gelu_quantize_u8(const float *x, uint8_t *out, ptrdiff_t n, float inverse_scale, int32_t zero, int32_t q_min,
                         int32_t q_max) {
    // Blocks small enough that the GELU values are still in L1 when quantised.
    enum { BLOCK = 1024 };
    float values[BLOCK];
    for (ptrdiff_t start = 0; start < n; start += BLOCK) {
        ptrdiff_t count = n - start < BLOCK ? n - start : BLOCK;
        sq_gelu(x + start, values, count);
        sq_quantize_u8(values, out + start, count, inverse_scale, zero, q_min, q_max);
    }
}
