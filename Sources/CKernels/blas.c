// Run-time loading of OpenBLAS (see sq_blas.h).

#include "sq_blas.h"
#include "sq_kernels.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef char *(*string_fn)(void);
typedef int (*get_int_fn)(void);
typedef void (*set_int_fn)(int);

// CBLAS's ABI constants (cblas.h): they never change.
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static sgemm_fn blas_sgemm;
static sgemv_fn blas_sgemv;
static get_int_fn blas_get_threads;
static set_int_fn blas_set_threads;
static char load_error[512];
static char config[256];
static char core[64];
static const char *core_source = "library";

const char *sq_blas_preferred_core(void) {
    switch (sq_cpu_tier()) {
    case 2: return "SkylakeX";
    case 1: return "Haswell";
    default: return "";
    }
}

int sq_blas_core_tier(const char *name) {
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const avx2[] = {"Haswell", "Zen"};
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
        if (strcmp(name, avx512[i]) == 0) return 2;
    for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++)
        if (strcmp(name, avx2[i]) == 0) return 1;
    return 0;
}

/// The library file SQUEEZE_BLAS_LIBRARY names (a path, or a name dlopen
/// searches for), or NULL when it is unset or empty.
static const char *chosen_library(void) {
    const char *chosen = getenv("SQUEEZE_BLAS_LIBRARY");
    return chosen && *chosen ? chosen : NULL;
}

/// Exactly the library SQUEEZE_BLAS_LIBRARY names, else the first OpenBLAS
/// the system's loader finds.
static void *open_library(void) {
    const char *chosen = chosen_library();
    if (chosen) return dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (handle) return handle;
    }
    return NULL;
}

static void copy_string(char *destination, size_t size, const char *source) {
    snprintf(destination, size, "%s", source ? source : "");
}

static void load(void) {
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced) {
        core_source = "environment";
    } else if (*sq_blas_preferred_core()) {
        core_source = "squeeze";
    }
    // OpenBLAS reads OPENBLAS_CORETYPE once, in the constructor that dlopen
    // runs; it is set for that moment only, so child processes (command
    // stages) still see the user's environment.
    int set_here = strcmp(core_source, "squeeze") == 0;
    if (set_here) setenv("OPENBLAS_CORETYPE", sq_blas_preferred_core(), 1);
    void *handle = open_library();
    if (set_here) unsetenv("OPENBLAS_CORETYPE");
    const char *chosen = chosen_library();
    if (!handle) {
        const char *reason = dlerror();
        if (chosen) {
            snprintf(load_error, sizeof load_error,
                     "cannot load the BLAS library SQUEEZE_BLAS_LIBRARY=%s (%s); point it at an OpenBLAS library file or "
                     "unset it",
                     chosen, reason ? reason : "dlopen failed");
        } else {
            snprintf(load_error, sizeof load_error,
                     "cannot load OpenBLAS (%s); install it (Debian: apt-get install libopenblas0-pthread)",
                     reason ? reason : "libopenblas.so.0 not found");
        }
        return;
    }
    blas_sgemm = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    blas_sgemv = (sgemv_fn)dlsym(handle, "cblas_sgemv");
    blas_get_threads = (get_int_fn)dlsym(handle, "openblas_get_num_threads");
    blas_set_threads = (set_int_fn)dlsym(handle, "openblas_set_num_threads");
    string_fn get_config = (string_fn)dlsym(handle, "openblas_get_config");
    string_fn get_core = (string_fn)dlsym(handle, "openblas_get_corename");
    if (!blas_sgemm || !blas_sgemv || !blas_get_threads || !blas_set_threads || !get_config || !get_core) {
        blas_sgemm = NULL;
        snprintf(load_error, sizeof load_error, "the loaded BLAS library %s%s lacks cblas_sgemm or the openblas_* queries",
                 chosen ? "SQUEEZE_BLAS_LIBRARY=" : "", chosen ? chosen : "libopenblas");
        return;
    }
    copy_string(config, sizeof config, get_config());
    copy_string(core, sizeof core, get_core());
}

int sq_blas_load(void) {
    pthread_once(&load_once, load);
    return blas_sgemm ? 0 : 1;
}

const char *sq_blas_error(void) { return sq_blas_load() == 0 ? NULL : load_error; }
const char *sq_blas_config(void) { return sq_blas_load() == 0 ? config : ""; }
const char *sq_blas_core(void) { return sq_blas_load() == 0 ? core : ""; }
const char *sq_blas_core_source(void) {
    sq_blas_load();
    return core_source;
}

/// Every entry point loads first (a pthread_once check): callers are expected
/// to have called sq_blas_load and reported its error, so failing here means
/// one skipped that, and stopping beats jumping through a null pointer.
static void require_blas(void) {
    if (sq_blas_load() == 0) return;
    fprintf(stderr, "squeeze: %s\n", load_error);
    abort();
}

void sq_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    require_blas();
    blas_sgemm(CBLAS_ROW_MAJOR, transpose_a ? CBLAS_TRANS : CBLAS_NO_TRANS, transpose_b ? CBLAS_TRANS : CBLAS_NO_TRANS, m,
               n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sq_sgemv(int transpose, int m, int n, float alpha, const float *a, int lda, const float *x, int incx, float beta,
              float *y, int incy) {
    require_blas();
    blas_sgemv(CBLAS_ROW_MAJOR, transpose ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

int sq_blas_threads(void) {
    require_blas();
    return blas_get_threads();
}
void sq_blas_set_threads(int threads) {
    require_blas();
    blas_set_threads(threads);
}
