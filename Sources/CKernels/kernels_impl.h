// Kernel bodies, included twice by kernels.c: once as the baseline variant
// and (on x86_64) once with AVX2+FMA enabled. SQ_NAME(x) gives the variant's
// symbol, SQ_TARGET its target attribute. Not a public header. The
// element-wise maps (kernels_maps.h) also get an AVX-512 variant.

#include "vector_math.h"

SQ_TARGET static void SQ_NAME(binary)(int op, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb,
                                      float *restrict out, ptrdiff_t n, float fill) {
    switch (op) {
    case 0:
        for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i * sa] + b[i * sb];
        break;
    case 1:
        for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i * sa] - b[i * sb];
        break;
    case 2:
        for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i * sa] * b[i * sb];
        break;
    default:
        for (ptrdiff_t i = 0; i < n; i++) out[i] = b[i * sb] != 0.0f ? fill : a[i * sa];
        break;
    }
}

/// The binary loop specialised on the stride pattern, so each case vectorises.
SQ_TARGET static void SQ_NAME(binary_dispatch)(int op, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb,
                                               float *out, ptrdiff_t n, float fill) {
    if (sa == 1 && sb == 1) SQ_NAME(binary)(op, a, 1, b, 1, out, n, fill);
    else if (sa == 1 && sb == 0) SQ_NAME(binary)(op, a, 1, b, 0, out, n, fill);
    else if (sa == 0 && sb == 1) SQ_NAME(binary)(op, a, 0, b, 1, out, n, fill);
    else SQ_NAME(binary)(op, a, 0, b, 0, out, n, fill);
}

SQ_TARGET static void SQ_NAME(affine)(const float *restrict x, float *restrict out, ptrdiff_t n, float scale,
                                      float shift) {
    for (ptrdiff_t i = 0; i < n; i++) out[i] = x[i] * scale + shift;
}

SQ_TARGET static void SQ_NAME(accumulate)(float *restrict acc, const float *restrict x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) acc[i] += x[i];
}

#include "kernels_maps.h"

/// Maximum of a row (NaN-free inputs).
SQ_TARGET static float SQ_NAME(row_max)(const float *x, ptrdiff_t n) {
    f8 m = splat8(-INFINITY);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) m = __builtin_elementwise_max(m, load8(x + i));
    float best = reduce_max8(m);
    for (; i < n; i++) best = x[i] > best ? x[i] : best;
    return best;
}

/// Σ e^(x − shift) over a row, storing the exponentials when `out` is non-null.
SQ_TARGET static double SQ_NAME(row_exp_sum)(const float *x, float *out, ptrdiff_t n, float shift) {
    f8 s = splat8(0.0f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 e = exp8(load8(x + i) - shift);
        if (out) store8(out + i, e);
        s += e;
    }
    if (i < n) {
        float bx[8];
        for (int j = 0; j < 8; j++) bx[j] = -INFINITY;
        __builtin_memcpy(bx, x + i, (size_t)(n - i) * sizeof(float));
        f8 e = exp8(load8(bx) - shift);
        float be[8];
        store8(be, e);
        if (out) __builtin_memcpy(out + i, be, (size_t)(n - i) * sizeof(float));
        s += e;
    }
    return reduce_sum8(s);
}

SQ_TARGET static void SQ_NAME(softmax_rows)(const float *x, float *out, float *lse, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = out + r * cols;
        float top = SQ_NAME(row_max)(xr, cols);
        double total = SQ_NAME(row_exp_sum)(xr, yr, cols, top);
        float inverse = (float)(1.0 / total);
        for (ptrdiff_t j = 0; j < cols; j++) yr[j] *= inverse;
        if (lse) lse[r] = (float)((double)top + log(total));
    }
}

SQ_TARGET static void SQ_NAME(log_softmax_rows)(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = out + r * cols;
        float top = SQ_NAME(row_max)(xr, cols);
        float log_total = (float)log(SQ_NAME(row_exp_sum)(xr, NULL, cols, top));
        for (ptrdiff_t j = 0; j < cols; j++) yr[j] = (xr[j] - top) - log_total;
    }
}

/// Σ a·b over a row with 8 float lanes, lanes added in double.
SQ_TARGET static double SQ_NAME(row_dot)(const float *a, const float *b, ptrdiff_t n) {
    f8 s = splat8(0.0f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) s += load8(a + i) * load8(b + i);
    double total = reduce_sum8(s);
    for (; i < n; i++) total += (double)a[i] * (double)b[i];
    return total;
}

/// Σ a over a row with 8 float lanes, lanes added in double.
SQ_TARGET static double SQ_NAME(row_sum)(const float *a, ptrdiff_t n) {
    f8 s = splat8(0.0f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) s += load8(a + i);
    double total = reduce_sum8(s);
    for (; i < n; i++) total += (double)a[i];
    return total;
}

SQ_TARGET static void SQ_NAME(softmax_backward_rows)(const float *y, const float *dy, float *out, ptrdiff_t rows,
                                                     ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols;
        const float *dr = dy + r * cols;
        float *o = out + r * cols;
        float dot = (float)SQ_NAME(row_dot)(yr, dr, cols);
        for (ptrdiff_t j = 0; j < cols; j++) o[j] = yr[j] * (dr[j] - dot);
    }
}

SQ_TARGET static void SQ_NAME(log_softmax_backward_rows)(const float *y, const float *dy, float *out, ptrdiff_t rows,
                                                         ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols;
        const float *dr = dy + r * cols;
        float *o = out + r * cols;
        float total = (float)SQ_NAME(row_sum)(dr, cols);
        ptrdiff_t j = 0;
        for (; j + 8 <= cols; j += 8) store8(o + j, load8(dr + j) - exp8(load8(yr + j)) * total);
        if (j < cols) {
            float by[8] = {0}, bd[8] = {0}, bo[8];
            __builtin_memcpy(by, yr + j, (size_t)(cols - j) * sizeof(float));
            __builtin_memcpy(bd, dr + j, (size_t)(cols - j) * sizeof(float));
            store8(bo, load8(bd) - exp8(load8(by)) * total);
            __builtin_memcpy(o + j, bo, (size_t)(cols - j) * sizeof(float));
        }
    }
}

SQ_TARGET static void SQ_NAME(layer_norm_rows)(const float *x, const float *restrict gamma,
                                               const float *restrict beta, float epsilon, float *out,
                                               float *mean, float *inverse_std, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *o = out + r * cols;
        float mu = (float)(SQ_NAME(row_sum)(xr, cols) / (double)cols);
        f8 s = splat8(0.0f);
        ptrdiff_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            f8 d = load8(xr + j) - mu;
            s += d * d;
        }
        double squares = reduce_sum8(s);
        for (; j < cols; j++) {
            double d = (double)(xr[j] - mu);
            squares += d * d;
        }
        float inv = (float)(1.0 / sqrt(squares / (double)cols + (double)epsilon));
        for (j = 0; j < cols; j++) o[j] = (xr[j] - mu) * inv * gamma[j] + beta[j];
        mean[r] = mu;
        inverse_std[r] = inv;
    }
}

SQ_TARGET static void SQ_NAME(layer_norm_backward_rows)(const float *dy, const float *x, const float *restrict gamma,
                                                        const float *mean, const float *inverse_std, float *dx,
                                                        float *restrict gamma_partial, float *restrict beta_partial,
                                                        ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *dr = dy + r * cols;
        const float *xr = x + r * cols;
        float *o = dx + r * cols;
        float mu = mean[r];
        float inv = inverse_std[r];
        f8 s1 = splat8(0.0f), s2 = splat8(0.0f);
        ptrdiff_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            f8 d = load8(dr + j);
            f8 xh = (load8(xr + j) - mu) * inv;
            f8 dxh = d * load8(gamma + j);
            s1 += dxh;
            s2 += dxh * xh;
            store8(gamma_partial + j, load8(gamma_partial + j) + d * xh);
            store8(beta_partial + j, load8(beta_partial + j) + d);
        }
        double sum1 = reduce_sum8(s1), sum2 = reduce_sum8(s2);
        for (; j < cols; j++) {
            float xh = (xr[j] - mu) * inv;
            float dxh = dr[j] * gamma[j];
            sum1 += dxh;
            sum2 += (double)dxh * xh;
            gamma_partial[j] += dr[j] * xh;
            beta_partial[j] += dr[j];
        }
        float mean1 = (float)(sum1 / (double)cols);
        float mean2 = (float)(sum2 / (double)cols);
        for (j = 0; j < cols; j++) {
            // Separate statements: the product is rounded exactly as in the sums above.
            float dxh = dr[j] * gamma[j];
            float xh = (xr[j] - mu) * inv;
            o[j] = inv * (dxh - mean1 - xh * mean2);
        }
    }
}

SQ_TARGET static void SQ_NAME(sum_rows)(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double total = 0;
        for (ptrdiff_t j = 0; j < cols; j++) total += (double)xr[j];
        out[r] = (float)total;
    }
}

SQ_TARGET static void SQ_NAME(sum_columns)(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols,
                                           ptrdiff_t row_stride) {
    double acc[SQ_COLUMN_BLOCK];
    for (ptrdiff_t c = 0; c < cols; c++) acc[c] = 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * row_stride;
        for (ptrdiff_t c = 0; c < cols; c++) acc[c] += (double)xr[c];
    }
    for (ptrdiff_t c = 0; c < cols; c++) out[c] = (float)acc[c];
}

/// Σ x² in 4 double lanes per 8 floats (each lane sums every 4th product), lanes added in order.
SQ_TARGET static double SQ_NAME(sum_of_squares)(const float *x, ptrdiff_t n) {
    d4 s0 = (d4)0.0, s1 = (d4)0.0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 v = load8(x + i);
        d4 lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), d4);
        d4 hi = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), d4);
        s0 += lo * lo;
        s1 += hi * hi;
    }
    d4 s = s0 + s1;
    double total = ((s[0] + s[1]) + s[2]) + s[3];
    for (; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}

/// RMS norm of each row (Llama's RMSNorm): inverse_rms = 1/√(mean(x²) + ε)
/// with Σx² in double, out = (x·inverse_rms)·γ, rounded in that order as
/// Hugging Face's LlamaRMSNorm does.
SQ_TARGET static void SQ_NAME(rms_norm_rows)(const float *x, const float *restrict gamma, float epsilon, float *out,
                                             float *inverse_rms, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *o = out + r * cols;
        double squares = SQ_NAME(sum_of_squares)(xr, cols);
        float inv = (float)(1.0 / sqrt(squares / (double)cols + (double)epsilon));
        for (ptrdiff_t j = 0; j < cols; j++) {
            float normalised = xr[j] * inv;
            o[j] = normalised * gamma[j];
        }
        inverse_rms[r] = inv;
    }
}

/// Input gradient of each row, dx = r·(γ⊙dy − x̂·mean(γ⊙dy⊙x̂)) with x̂ = x·r,
/// and Σ over these rows of dy⊙x̂ ADDED to `gamma_partial` (`cols` floats).
SQ_TARGET static void SQ_NAME(rms_norm_backward_rows)(const float *dy, const float *x, const float *restrict gamma,
                                                      const float *inverse_rms, float *dx,
                                                      float *restrict gamma_partial, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *dr = dy + r * cols;
        const float *xr = x + r * cols;
        float *o = dx + r * cols;
        float inv = inverse_rms[r];
        f8 s = splat8(0.0f);
        ptrdiff_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            f8 d = load8(dr + j);
            f8 xh = load8(xr + j) * inv;
            f8 dxh = d * load8(gamma + j);
            s += dxh * xh;
            store8(gamma_partial + j, load8(gamma_partial + j) + d * xh);
        }
        double sum = reduce_sum8(s);
        for (; j < cols; j++) {
            float xh = xr[j] * inv;
            float dxh = dr[j] * gamma[j];
            sum += (double)dxh * xh;
            gamma_partial[j] += dr[j] * xh;
        }
        float mean = (float)(sum / (double)cols);
        for (j = 0; j < cols; j++) {
            // Separate statements: the products are rounded exactly as in the sum above.
            float dxh = dr[j] * gamma[j];
            float xh = xr[j] * inv;
            o[j] = inv * (dxh - xh * mean);
        }
    }
}

/// Rotary position embedding, Hugging Face's "rotate half" convention, of
/// rows `first ..< first + rows` of a contiguous [B, T, H, 2·half] tensor
/// (row = (b·T + t)·H + h), with angle tables `cosines`, `sines` [T, half]:
/// out₁ = x₁·cos − x₂·sin, out₂ = x₂·cos + x₁·sin, where sin is multiplied
/// by `sine_sign` (−1 rotates back, the backward).
SQ_TARGET static void SQ_NAME(rotary_rows)(const float *x, const float *cosines, const float *sines,
                                           float sine_sign, float *out, ptrdiff_t first, ptrdiff_t rows,
                                           ptrdiff_t heads, ptrdiff_t tokens, ptrdiff_t half) {
    for (ptrdiff_t r = first; r < first + rows; r++) {
        ptrdiff_t t = (r / heads) % tokens;
        const float *restrict c = cosines + t * half;
        const float *restrict s = sines + t * half;
        const float *restrict x1 = x + r * 2 * half;
        const float *restrict x2 = x1 + half;
        float *restrict o1 = out + r * 2 * half;
        float *restrict o2 = o1 + half;
        for (ptrdiff_t i = 0; i < half; i++) {
            float sine = sine_sign * s[i];
            o1[i] = x1[i] * c[i] - x2[i] * sine;
            o2[i] = x2[i] * c[i] + x1[i] * sine;
        }
    }
}

// Dropout's keep decision: element `index` of a stream keeps when the top 24
// bits of splitmix64(key + (index + 1)·golden) are at least `threshold`.
#define SQ_GOLDEN 0x9E3779B97F4A7C15ull

SQ_INLINE SQ_TARGET float SQ_NAME(dropout_factor)(uint64_t key, uint64_t index, uint64_t threshold, float scale) {
    uint64_t z = key + (index + 1) * SQ_GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (z >> 40) >= threshold ? scale : 0.0f;
}

/// The factors (0 or `scale`) of elements `index ..< index + 8`, bit-identical to `dropout_factor`.
SQ_INLINE SQ_TARGET f8 SQ_NAME(dropout_factors8)(uint64_t key, uint64_t index, uint64_t threshold, float scale) {
    u4v step = {1, 2, 3, 4};
    u4v z0 = key + ((u4v)index + step) * SQ_GOLDEN;
    u4v z1 = key + ((u4v)index + step + 4) * SQ_GOLDEN;
    z0 = (z0 ^ (z0 >> 30)) * 0xBF58476D1CE4E5B9ull;
    z1 = (z1 ^ (z1 >> 30)) * 0xBF58476D1CE4E5B9ull;
    z0 = (z0 ^ (z0 >> 27)) * 0x94D049BB133111EBull;
    z1 = (z1 ^ (z1 >> 27)) * 0x94D049BB133111EBull;
    z0 ^= z0 >> 31;
    z1 ^= z1 >> 31;
    i4v top0 = __builtin_convertvector(z0 >> 40, i4v);
    i4v top1 = __builtin_convertvector(z1 >> 40, i4v);
    i8v top = __builtin_shufflevector(top0, top1, 0, 1, 2, 3, 4, 5, 6, 7);
    return select8(top >= (int32_t)threshold, splat8(scale), splat8(0.0f));
}

SQ_TARGET static void SQ_NAME(dropout)(const float *restrict x, float *restrict out, float *restrict mask,
                                       ptrdiff_t n, uint64_t first_index, uint64_t key, uint64_t threshold,
                                       float scale) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        f8 m = SQ_NAME(dropout_factors8)(key, first_index + (uint64_t)i, threshold, scale);
        if (mask) store8(mask + i, m);
        store8(out + i, load8(x + i) * m);
    }
    for (; i < n; i++) {
        float m = SQ_NAME(dropout_factor)(key, first_index + (uint64_t)i, threshold, scale);
        if (mask) mask[i] = m;
        out[i] = x[i] * m;
    }
}

SQ_TARGET static void SQ_NAME(adamw)(float *restrict p, const float *restrict g, float *restrict m,
                                     float *restrict v, ptrdiff_t n, float learning_rate, float beta1, float beta2,
                                     float epsilon, float weight_decay, float step_size, float root_correction2,
                                     float gradient_scale) {
    float decay = 1.0f - learning_rate * weight_decay;
    float inverse_root = 1.0f / root_correction2;
    for (ptrdiff_t i = 0; i < n; i++) {
        float gi = g[i] * gradient_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denominator = __builtin_sqrtf(vi) * inverse_root + epsilon;
        p[i] = p[i] * decay - step_size * mi / denominator;
    }
}

/// out = dropout(x) + residual (dropout off when `dropout` is 0); the dropout
/// factor and the sum are rounded separately, as the two ops would.
SQ_TARGET static void SQ_NAME(dropout_add)(const float *restrict x, const float *restrict residual,
                                           float *restrict out, ptrdiff_t n, uint64_t first_index, uint64_t key,
                                           uint64_t threshold, float scale, int dropout) {
    ptrdiff_t i = 0;
    if (!dropout) {
        for (; i < n; i++) out[i] = x[i] + residual[i];
        return;
    }
    for (; i + 8 <= n; i += 8) {
        f8 dropped = load8(x + i) * SQ_NAME(dropout_factors8)(key, first_index + (uint64_t)i, threshold, scale);
        store8(out + i, dropped + load8(residual + i));
    }
    for (; i < n; i++) {
        float dropped = x[i] * SQ_NAME(dropout_factor)(key, first_index + (uint64_t)i, threshold, scale);
        out[i] = dropped + residual[i];
    }
}

// ---- Small matrix products (attention heads) ----

/// c[m×n] = alpha · a[m×k] · b[k×n]: element (i, p) of a at a[i·a_row + p·a_col]
/// (so a may be read transposed), b and c row-major with row strides ldb and
/// ldc; c is overwritten. Register tiles of 4 rows × 16 columns; sums run over
/// p in order, so results do not depend on where an element sits.
SQ_TARGET static void SQ_NAME(small_gemm)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a,
                                          ptrdiff_t a_row, ptrdiff_t a_col, const float *b, ptrdiff_t ldb,
                                          float *c, ptrdiff_t ldc) {
    ptrdiff_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *a0 = a + i * a_row, *a1 = a0 + a_row, *a2 = a1 + a_row, *a3 = a2 + a_row;
        float *c0 = c + i * ldc, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;
        ptrdiff_t j = 0;
        for (; j + 16 <= n; j += 16) {
            f8 s00 = splat8(0.0f), s01 = splat8(0.0f), s10 = splat8(0.0f), s11 = splat8(0.0f);
            f8 s20 = splat8(0.0f), s21 = splat8(0.0f), s30 = splat8(0.0f), s31 = splat8(0.0f);
            const float *bp = b + j;
            for (ptrdiff_t p = 0; p < k; p++, bp += ldb) {
                f8 b0 = load8(bp), b1 = load8(bp + 8);
                ptrdiff_t at = p * a_col;
                f8 x0 = splat8(a0[at]), x1 = splat8(a1[at]), x2 = splat8(a2[at]), x3 = splat8(a3[at]);
                s00 += x0 * b0;
                s01 += x0 * b1;
                s10 += x1 * b0;
                s11 += x1 * b1;
                s20 += x2 * b0;
                s21 += x2 * b1;
                s30 += x3 * b0;
                s31 += x3 * b1;
            }
            store8(c0 + j, s00 * alpha);
            store8(c0 + j + 8, s01 * alpha);
            store8(c1 + j, s10 * alpha);
            store8(c1 + j + 8, s11 * alpha);
            store8(c2 + j, s20 * alpha);
            store8(c2 + j + 8, s21 * alpha);
            store8(c3 + j, s30 * alpha);
            store8(c3 + j + 8, s31 * alpha);
        }
        for (; j + 8 <= n; j += 8) {
            f8 s0 = splat8(0.0f), s1 = splat8(0.0f), s2 = splat8(0.0f), s3 = splat8(0.0f);
            const float *bp = b + j;
            for (ptrdiff_t p = 0; p < k; p++, bp += ldb) {
                f8 b0 = load8(bp);
                ptrdiff_t at = p * a_col;
                s0 += splat8(a0[at]) * b0;
                s1 += splat8(a1[at]) * b0;
                s2 += splat8(a2[at]) * b0;
                s3 += splat8(a3[at]) * b0;
            }
            store8(c0 + j, s0 * alpha);
            store8(c1 + j, s1 * alpha);
            store8(c2 + j, s2 * alpha);
            store8(c3 + j, s3 * alpha);
        }
        for (; j < n; j++) {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (ptrdiff_t p = 0; p < k; p++) {
                float bv = b[p * ldb + j];
                ptrdiff_t at = p * a_col;
                s0 += a0[at] * bv;
                s1 += a1[at] * bv;
                s2 += a2[at] * bv;
                s3 += a3[at] * bv;
            }
            c0[j] = s0 * alpha;
            c1[j] = s1 * alpha;
            c2[j] = s2 * alpha;
            c3[j] = s3 * alpha;
        }
    }
    for (; i < m; i++) {
        const float *a0 = a + i * a_row;
        float *c0 = c + i * ldc;
        ptrdiff_t j = 0;
        for (; j + 8 <= n; j += 8) {
            f8 s0 = splat8(0.0f);
            const float *bp = b + j;
            for (ptrdiff_t p = 0; p < k; p++, bp += ldb) s0 += splat8(a0[p * a_col]) * load8(bp);
            store8(c0 + j, s0 * alpha);
        }
        for (; j < n; j++) {
            float s0 = 0;
            for (ptrdiff_t p = 0; p < k; p++) s0 += a0[p * a_col] * b[p * ldb + j];
            c0[j] = s0 * alpha;
        }
    }
}

/// out[c×r] = in[r×c]ᵀ (in rows at stride ld; out packed), written in order.
SQ_INLINE SQ_TARGET void SQ_NAME(transpose)(const float *in, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols, float *out) {
    for (ptrdiff_t c = 0; c < cols; c++)
        for (ptrdiff_t r = 0; r < rows; r++) out[c * rows + r] = in[r * ld + c];
}

/// Copies rows × cols from rows `ld` apart into a packed block (strided
/// operands spread over many pages; packed, the product streams them).
SQ_INLINE SQ_TARGET void SQ_NAME(pack)(const float *in, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols, float *out) {
    for (ptrdiff_t r = 0; r < rows; r++) __builtin_memcpy(out + r * cols, in + r * ld, (size_t)cols * sizeof(float));
}

/// The dropout factors (0 or scale) of elements first_index ..< first_index + n.
SQ_INLINE SQ_TARGET void SQ_NAME(dropout_factors)(float *out, ptrdiff_t n, uint64_t first_index,
                                                  const sq_attention_problem *p) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        store8(out + i, SQ_NAME(dropout_factors8)(p->dropout_key, first_index + (uint64_t)i, p->dropout_threshold,
                                                  p->dropout_scale));
    for (; i < n; i++)
        out[i] = SQ_NAME(dropout_factor)(p->dropout_key, first_index + (uint64_t)i, p->dropout_threshold,
                                         p->dropout_scale);
}

/// scores += bias for one (batch, head): rows of `bias` at bias_row, columns at bias_column.
SQ_INLINE SQ_TARGET void SQ_NAME(add_bias)(float *scores, const float *bias, ptrdiff_t rows, ptrdiff_t cols,
                                           ptrdiff_t bias_row, ptrdiff_t bias_column) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        float *row = scores + i * cols;
        const float *b = bias + i * bias_row;
        if (bias_column == 1) {
            for (ptrdiff_t j = 0; j < cols; j++) row[j] += b[j];
        } else {
            for (ptrdiff_t j = 0; j < cols; j++) row[j] += b[j * bias_column];
        }
    }
}

SQ_TARGET static void SQ_NAME(attention_forward)(const sq_attention_problem *p, ptrdiff_t first, ptrdiff_t count,
                                                 float *probabilities, float *out, float *scratch) {
    ptrdiff_t t = p->queries, s = p->keys, d = p->depth, dv = p->value_depth;
    ptrdiff_t out_row = p->heads * dv, out_batch = t * out_row;
    float *kt = scratch;         // d × s
    float *dropped = kt + d * s; // t × s
    float *vp = dropped + t * s; // s × dv, packed
    for (ptrdiff_t pair = first; pair < first + count; pair++) {
        ptrdiff_t b = pair / p->heads, h = pair % p->heads;
        const float *q = p->q + b * p->q_batch + h * p->q_head;
        const float *k = p->k + b * p->k_batch + h * p->k_head;
        const float *v = p->v + b * p->v_batch + h * p->v_head;
        float *prob = probabilities + pair * t * s;
        SQ_NAME(transpose)(k, p->k_row, s, d, kt);
        SQ_NAME(small_gemm)(t, s, d, p->scale, q, p->q_row, 1, kt, s, prob, s);
        if (p->bias)
            SQ_NAME(add_bias)(prob, p->bias + b * p->bias_batch + h * p->bias_head, t, s, p->bias_row,
                              p->bias_column);
        SQ_NAME(softmax_rows)(prob, prob, NULL, t, s);
        const float *weights = prob;
        if (p->dropout) {
            SQ_NAME(dropout_factors)(dropped, t * s, (uint64_t)(pair * t * s), p);
            for (ptrdiff_t i = 0; i < t * s; i++) dropped[i] *= prob[i];
            weights = dropped;
        }
        SQ_NAME(pack)(v, p->v_row, s, dv, vp);
        SQ_NAME(small_gemm)(t, dv, s, 1.0f, weights, s, 1, vp, dv, out + b * out_batch + h * dv, out_row);
    }
}

SQ_TARGET static void SQ_NAME(attention_backward)(const sq_attention_problem *p, ptrdiff_t first, ptrdiff_t count,
                                                  const float *probabilities, const float *dout,
                                                  ptrdiff_t dout_batch, ptrdiff_t dout_head, ptrdiff_t dout_row,
                                                  float *dq, float *dk, float *dv, float *scratch) {
    ptrdiff_t t = p->queries, s = p->keys, d = p->depth, vd = p->value_depth;
    ptrdiff_t row = p->heads * d, value_row = p->heads * vd;
    float *factors = scratch;        // t × s
    float *dropped = factors + t * s; // t × s
    float *grad = dropped + t * s;    // t × s
    float *vt = grad + t * s;         // vd × s
    float *packed = vt + vd * s;      // max(t, s) × max(d, vd)
    for (ptrdiff_t pair = first; pair < first + count; pair++) {
        ptrdiff_t b = pair / p->heads, h = pair % p->heads;
        const float *q = p->q + b * p->q_batch + h * p->q_head;
        const float *k = p->k + b * p->k_batch + h * p->k_head;
        const float *v = p->v + b * p->v_batch + h * p->v_head;
        const float *prob = probabilities + pair * t * s;
        const float *go = dout + b * dout_batch + h * dout_head;
        const float *weights = prob;
        if (p->dropout) {
            SQ_NAME(dropout_factors)(factors, t * s, (uint64_t)(pair * t * s), p);
            for (ptrdiff_t i = 0; i < t * s; i++) dropped[i] = prob[i] * factors[i];
            weights = dropped;
        }
        // dV = dropped(P)ᵀ · dO
        if (dv) {
            SQ_NAME(pack)(go, dout_row, t, vd, packed);
            SQ_NAME(small_gemm)(s, vd, t, 1.0f, weights, 1, s, packed, vd, dv + b * s * value_row + h * vd, value_row);
        }
        if (!dq && !dk) continue;
        // dP = dropout(dO · Vᵀ); dS = P ⊙ (dP − Σ dP ⊙ P)
        SQ_NAME(transpose)(v, p->v_row, s, vd, vt);
        SQ_NAME(small_gemm)(t, s, vd, 1.0f, go, dout_row, 1, vt, s, grad, s);
        if (p->dropout)
            for (ptrdiff_t i = 0; i < t * s; i++) grad[i] *= factors[i];
        SQ_NAME(softmax_backward_rows)(prob, grad, grad, t, s);
        // dQ = scale · dS · K;  dK = scale · dSᵀ · Q
        if (dq) {
            SQ_NAME(pack)(k, p->k_row, s, d, packed);
            SQ_NAME(small_gemm)(t, d, s, p->scale, grad, s, 1, packed, d, dq + b * t * row + h * d, row);
        }
        if (dk) {
            SQ_NAME(pack)(q, p->q_row, t, d, packed);
            SQ_NAME(small_gemm)(s, d, t, p->scale, grad, 1, s, packed, d, dk + b * s * row + h * d, row);
        }
    }
}
