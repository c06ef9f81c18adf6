// Kernel bodies, included twice by kernels.c: once as the baseline variant
// and (on x86_64) once with AVX2+FMA enabled. SQ_NAME(x) gives the variant's
// symbol, SQ_TARGET its target attribute. Not a public header.

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

// Element-wise transcendental kernels: 8 lanes at a time; the tail goes
// through the same vector code on a padded copy, so every element gets
// exactly the same arithmetic wherever it sits.
#define SQ_MAP1(name, expression)                                                                  \
    SQ_TARGET static void SQ_NAME(name)(const float *restrict x, float *restrict out, ptrdiff_t n) { \
        ptrdiff_t i = 0;                                                                           \
        for (; i + 8 <= n; i += 8) {                                                               \
            f8 v = load8(x + i);                                                                   \
            store8(out + i, expression);                                                           \
        }                                                                                          \
        if (i < n) {                                                                               \
            float bx[8] = {0};                                                                     \
            float bo[8];                                                                           \
            __builtin_memcpy(bx, x + i, (size_t)(n - i) * sizeof(float));                          \
            f8 v = load8(bx);                                                                      \
            store8(bo, expression);                                                                \
            __builtin_memcpy(out + i, bo, (size_t)(n - i) * sizeof(float));                        \
        }                                                                                          \
    }

#define SQ_MAP2(name, expression)                                                                  \
    SQ_TARGET static void SQ_NAME(name)(const float *restrict x, const float *restrict y,         \
                                        float *restrict out, ptrdiff_t n) {                        \
        ptrdiff_t i = 0;                                                                           \
        for (; i + 8 <= n; i += 8) {                                                               \
            f8 v = load8(x + i);                                                                   \
            f8 w = load8(y + i);                                                                   \
            store8(out + i, expression);                                                           \
        }                                                                                          \
        if (i < n) {                                                                               \
            float bx[8] = {0}, by[8] = {0};                                                        \
            float bo[8];                                                                           \
            __builtin_memcpy(bx, x + i, (size_t)(n - i) * sizeof(float));                          \
            __builtin_memcpy(by, y + i, (size_t)(n - i) * sizeof(float));                          \
            f8 v = load8(bx);                                                                      \
            f8 w = load8(by);                                                                      \
            store8(bo, expression);                                                                \
            __builtin_memcpy(out + i, bo, (size_t)(n - i) * sizeof(float));                        \
        }                                                                                          \
    }

SQ_MAP1(gelu, v * phi8(v))
SQ_MAP2(gelu_backward, w * (phi8(v) + v * exp8(-0.5f * v * v) * 0.398942280401432678f))
SQ_MAP1(tanh, tanh8(v))
SQ_MAP2(tanh_backward, w * (1.0f - v * v))
SQ_MAP1(exp, exp8(v))

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

SQ_TARGET static double SQ_NAME(sum_of_squares)(const float *x, ptrdiff_t n) {
    double total = 0;
    for (ptrdiff_t i = 0; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}

SQ_TARGET static void SQ_NAME(dropout)(const float *restrict x, float *restrict out, float *restrict mask,
                                       ptrdiff_t n, uint64_t first_index, uint64_t key, uint64_t threshold,
                                       float scale) {
    for (ptrdiff_t i = 0; i < n; i++) {
        uint64_t z = key + (first_index + (uint64_t)i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float m = (z >> 40) >= threshold ? scale : 0.0f;
        mask[i] = m;
        out[i] = x[i] * m;
    }
}

SQ_TARGET static void SQ_NAME(adamw)(float *restrict p, const float *restrict g, float *restrict m,
                                     float *restrict v, ptrdiff_t n, float learning_rate, float beta1, float beta2,
                                     float epsilon, float weight_decay, float step_size, float root_correction2) {
    float decay = 1.0f - learning_rate * weight_decay;
    float inverse_root = 1.0f / root_correction2;
    for (ptrdiff_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denominator = __builtin_sqrtf(vi) * inverse_root + epsilon;
        p[i] = p[i] * decay - step_size * mi / denominator;
    }
}
