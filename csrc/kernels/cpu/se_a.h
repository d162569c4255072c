// se_e2_a reductions: plain C++ kernels over atoms n in [begin, end).
// reduce:     t[n, a, m]  = (1/nnei) sum_j em[n, j, a] g[n, j, m]          em [N, nnei, 4], g [N, nnei, M]
// grad_em:    ge[n, j, a] = (1/nnei) sum_m gt[n, a, m] g[n, j, m]
// grad_g:     gg[n, j, m] = (1/nnei) sum_a gt[n, a, m] em[n, j, a]
// gram:       d[n, m, k]  = sum_a x[n, a, m] y[n, a, k], k < K             x, y [N, 4, M]
// gram_grad_x gx[n, a, m] = sum_k gd[n, m, k] y[n, a, k]
// gram_grad_y gy[n, a, k] = sum_m gd[n, m, k] x[n, a, m] (k < K), 0 for k >= K
// One set per instruction-set build (kernels/cpu/isa.h); the op layer calls DPX_CPU_KERNEL.
#pragma once
#include <cstdint>

#include "kernels/cpu/isa.h"

namespace dpx::cpu::generic {
#include "kernels/cpu/se_a.inc"
}  // namespace dpx::cpu::generic

namespace dpx::cpu::avx2 {
#include "kernels/cpu/se_a.inc"
}  // namespace dpx::cpu::avx2

namespace dpx::cpu::avx512 {
#include "kernels/cpu/se_a.inc"
}  // namespace dpx::cpu::avx512
