// OpenBLAS (Debian: libopenblas-dev): CBLAS GEMM and its thread-count control.
#include <cblas.h>
