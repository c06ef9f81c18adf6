// Which instruction-set variant the kernels of this target run (internal to
// CKernels; defined in kernels.c).
#pragma once

/// 1 when the kernels run their AVX2+FMA variants (sq_cpu_tier() ≥ 1); decided
/// once (relaxed atomics: every thread computes the same answer). Always 0
/// off x86_64.
int sq_use_avx2(void);
