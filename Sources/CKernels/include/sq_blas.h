// The BLAS behind the CPU backend's fp32 matrix products, loaded at run time.
//
// OpenBLAS picks its kernels once, when the library initialises, from a table
// of CPU models; a CPU newer than the table gets generic SSE3 kernels
// (`Prescott`), three to five times slower. Squeeze therefore loads OpenBLAS
// itself (dlopen, on first use) after choosing the core type from the CPU's
// instruction-set tier — AVX-512 -> SkylakeX, AVX2+FMA -> Haswell — which
// covers CPUs the table has never seen, and gives every CPU of one tier the
// same kernels and so the same bits. OPENBLAS_CORETYPE set by the user wins.
// SQUEEZE_BLAS_LIBRARY, when set, names the one library file to load (a
// path, or a name the dynamic loader searches for) instead of the first
// libopenblas the loader finds; if it cannot be loaded, the BLAS is
// unavailable and the message names it.
#ifndef SQ_BLAS_H
#define SQ_BLAS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Loads the BLAS if it is not loaded yet (thread-safe, once per process).
/// Returns 0 when it is usable, else non-zero; `sq_blas_error` says why.
int sq_blas_load(void);
/// Why loading failed, or NULL.
const char *sq_blas_error(void);

/// The library's version line, e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH
/// NO_AFFINITY SkylakeX MAX_THREADS=64" (empty before a successful load).
const char *sq_blas_config(void);
/// The kernel family OpenBLAS runs, e.g. "SkylakeX", "Haswell", "Prescott".
const char *sq_blas_core(void);
/// The core type Squeeze asks for on this CPU ("SkylakeX", "Haswell"), or ""
/// when it leaves the choice to the library (no AVX2, or not x86_64).
const char *sq_blas_preferred_core(void);
/// Who chose the core: "squeeze" (from the CPU's tier), "environment"
/// (OPENBLAS_CORETYPE was set before Squeeze loaded the library) or "library".
const char *sq_blas_core_source(void);
/// The instruction-set tier of a core type's fp32 GEMM kernels: 2 AVX-512,
/// 1 AVX2+FMA, 0 older or unknown.
int sq_blas_core_tier(const char *core);

/// Row-major C = alpha·op(A)·op(B) + beta·C (cblas_sgemm); loads the BLAS first if
/// needed, and aborts with the reason if it cannot (check sq_blas_load first).
void sq_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);
/// Row-major y = alpha·op(A)·x + beta·y (cblas_sgemv); loads as sq_sgemm does.
void sq_sgemv(int transpose, int m, int n, float alpha, const float *a, int lda, const float *x, int incx, float beta,
              float *y, int incy);
int sq_blas_threads(void);
void sq_blas_set_threads(int threads);

#ifdef __cplusplus
}
#endif

#endif
