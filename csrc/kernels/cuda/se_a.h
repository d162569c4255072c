// se_e2_a reductions on CUDA: the kernels of kernels/cpu/se_a.h (same formulas, same layout)
// over all n atoms at once. Each function enqueues one kernel on `stream` and returns; none
// synchronizes. Every output element is written by one thread (no atomics): results do not
// depend on the launch, but the sum order differs from the CPU's vectorized loops.
// reduce:     t[n, a, m]  = (1/nnei) sum_j em[n, j, a] g[n, j, m]          em [N, nnei, 4], g [N, nnei, M]
// grad_em:    ge[n, j, a] = (1/nnei) sum_m gt[n, a, m] g[n, j, m]
// grad_g:     gg[n, j, m] = (1/nnei) sum_a gt[n, a, m] em[n, j, a]
// gram:       d[n, m, k]  = sum_a x[n, a, m] y[n, a, k], k < K             x, y [N, 4, M]
// gram_grad_x gx[n, a, m] = sum_k gd[n, m, k] y[n, a, k]
// gram_grad_y gy[n, a, k] = sum_m gd[n, m, k] x[n, a, m] (k < K), 0 for k >= K
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dpx::cuda {

template <typename T>
void se_a_reduce(const T* em, const T* g, T* t, int64_t n, int64_t nnei, int64_t m,
                 cudaStream_t stream);
template <typename T>
void se_a_reduce_grad_em(const T* gt, const T* g, T* ge, int64_t n, int64_t nnei, int64_t m,
                         cudaStream_t stream);
template <typename T>
void se_a_reduce_grad_g(const T* gt, const T* em, T* gg, int64_t n, int64_t nnei, int64_t m,
                        cudaStream_t stream);
template <typename T>
void se_a_gram(const T* x, const T* y, T* d, int64_t n, int64_t m, int64_t k, cudaStream_t stream);
template <typename T>
void se_a_gram_grad_x(const T* gd, const T* y, T* gx, int64_t n, int64_t m, int64_t k,
                      cudaStream_t stream);
template <typename T>
void se_a_gram_grad_y(const T* gd, const T* x, T* gy, int64_t n, int64_t m, int64_t k,
                      cudaStream_t stream);

}  // namespace dpx::cuda
