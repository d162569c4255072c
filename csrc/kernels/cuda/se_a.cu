// se_e2_a reductions on CUDA; see se_a.h. Grid-stride loops over output elements (or output
// rows, one warp each) so any n fits one launch.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/se_a.h"

namespace dpx::cuda {
namespace {

// one thread per (atom, column x): the 4 sums over the slots share the loads of g
// (consecutive threads read consecutive columns of a row of g: coalesced)
template <typename T>
__global__ void reduce_kernel(const T* em, const T* g, T* t, int64_t n, int64_t nnei, int64_t m) {
  DPX_GRID_LOOP(idx, n * m) {
    const int64_t a_n = idx / m, x = idx % m;
    const T* en = em + a_n * nnei * 4;
    const T* gn = g + a_n * nnei * m + x;
    T acc[4] = {0, 0, 0, 0};
    for (int64_t j = 0; j < nnei; ++j) {
      const T gv = gn[j * m];
      for (int a = 0; a < 4; ++a) acc[a] += en[j * 4 + a] * gv;
    }
    const T inv = T(1) / T(nnei);
    for (int a = 0; a < 4; ++a) t[(a_n * 4 + a) * m + x] = acc[a] * inv;
  }
}

// one warp per (atom, slot j): lanes stride over the m columns, then a warp sum of the
// 4 dot products
template <typename T>
__global__ void reduce_grad_em_kernel(const T* gt, const T* g, T* ge, int64_t n, int64_t nnei,
                                      int64_t m) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp; row < n * nnei;
       row += warps) {
    const int64_t a_n = row / nnei;
    const T* gtn = gt + a_n * 4 * m;
    const T* gj = g + row * m;
    T acc[4] = {0, 0, 0, 0};
    for (int64_t x = lane; x < m; x += kWarp) {
      const T gv = gj[x];
      for (int a = 0; a < 4; ++a) acc[a] += gtn[a * m + x] * gv;
    }
    for (int a = 0; a < 4; ++a)
      for (int off = kWarp / 2; off > 0; off /= 2)
        acc[a] += __shfl_down_sync(0xffffffffu, acc[a], off);
    if (lane == 0) {
      const T inv = T(1) / T(nnei);
      for (int a = 0; a < 4; ++a) ge[row * 4 + a] = acc[a] * inv;
    }
  }
}

// one thread per output element (atom, slot j, column x)
template <typename T>
__global__ void reduce_grad_g_kernel(const T* gt, const T* em, T* gg, int64_t n, int64_t nnei,
                                     int64_t m) {
  DPX_GRID_LOOP(idx, n * nnei * m) {
    const int64_t row = idx / m, x = idx % m, a_n = row / nnei;
    const T* e = em + row * 4;
    const T* gtn = gt + a_n * 4 * m + x;
    const T inv = T(1) / T(nnei);
    gg[idx] = (e[0] * inv) * gtn[0] + (e[1] * inv) * gtn[m] + (e[2] * inv) * gtn[2 * m] +
              (e[3] * inv) * gtn[3 * m];
  }
}

// one thread per output element (atom, p, q)
template <typename T>
__global__ void gram_kernel(const T* x, const T* y, T* d, int64_t n, int64_t m, int64_t k) {
  DPX_GRID_LOOP(idx, n * m * k) {
    const int64_t a_n = idx / (m * k), p = (idx / k) % m, q = idx % k;
    const T* xn = x + a_n * 4 * m;
    const T* yn = y + a_n * 4 * m;
    d[idx] = xn[p] * yn[q] + xn[m + p] * yn[m + q] + xn[2 * m + p] * yn[2 * m + q] +
             xn[3 * m + p] * yn[3 * m + q];
  }
}

// one thread per (atom, p): gx[a, p] = sum_q gd[p, q] y[a, q] for the 4 a
template <typename T>
__global__ void gram_grad_x_kernel(const T* gd, const T* y, T* gx, int64_t n, int64_t m,
                                   int64_t k) {
  DPX_GRID_LOOP(idx, n * m) {
    const int64_t a_n = idx / m, p = idx % m;
    const T* gdp = gd + (a_n * m + p) * k;
    const T* yn = y + a_n * 4 * m;
    T acc[4] = {0, 0, 0, 0};
    for (int64_t q = 0; q < k; ++q)
      for (int a = 0; a < 4; ++a) acc[a] += gdp[q] * yn[a * m + q];
    for (int a = 0; a < 4; ++a) gx[(a_n * 4 + a) * m + p] = acc[a];
  }
}

// one thread per output element (atom, a, q): sum over p, 0 for q >= k
template <typename T>
__global__ void gram_grad_y_kernel(const T* gd, const T* x, T* gy, int64_t n, int64_t m,
                                   int64_t k) {
  DPX_GRID_LOOP(idx, n * 4 * m) {
    const int64_t a_n = idx / (4 * m), a = (idx / m) % 4, q = idx % m;
    T acc = 0;
    if (q < k) {
      const T* gdn = gd + a_n * m * k + q;
      const T* xa = x + (a_n * 4 + a) * m;
      for (int64_t p = 0; p < m; ++p) acc += gdn[p * k] * xa[p];
    }
    gy[idx] = acc;
  }
}

}  // namespace

template <typename T>
void se_a_reduce(const T* em, const T* g, T* t, int64_t n, int64_t nnei, int64_t m,
                 cudaStream_t stream) {
  launch(reduce_kernel<T>, n * m, kThreads, stream, em, g, t, n, nnei, m);
}

template <typename T>
void se_a_reduce_grad_em(const T* gt, const T* g, T* ge, int64_t n, int64_t nnei, int64_t m,
                         cudaStream_t stream) {  // a warp per row
  launch(reduce_grad_em_kernel<T>, n * nnei, kThreads / kWarp, stream, gt, g, ge, n, nnei, m);
}

template <typename T>
void se_a_reduce_grad_g(const T* gt, const T* em, T* gg, int64_t n, int64_t nnei, int64_t m,
                        cudaStream_t stream) {
  launch(reduce_grad_g_kernel<T>, n * nnei * m, kThreads, stream, gt, em, gg, n, nnei, m);
}

template <typename T>
void se_a_gram(const T* x, const T* y, T* d, int64_t n, int64_t m, int64_t k,
               cudaStream_t stream) {
  launch(gram_kernel<T>, n * m * k, kThreads, stream, x, y, d, n, m, k);
}

template <typename T>
void se_a_gram_grad_x(const T* gd, const T* y, T* gx, int64_t n, int64_t m, int64_t k,
                      cudaStream_t stream) {
  launch(gram_grad_x_kernel<T>, n * m, kThreads, stream, gd, y, gx, n, m, k);
}

template <typename T>
void se_a_gram_grad_y(const T* gd, const T* x, T* gy, int64_t n, int64_t m, int64_t k,
                      cudaStream_t stream) {
  launch(gram_grad_y_kernel<T>, n * 4 * m, kThreads, stream, gd, x, gy, n, m, k);
}

#define DPX_INSTANTIATE(T)                                                                    \
  template void se_a_reduce<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,             \
                               cudaStream_t);                                                 \
  template void se_a_reduce_grad_em<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,     \
                                       cudaStream_t);                                         \
  template void se_a_reduce_grad_g<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,      \
                                      cudaStream_t);                                          \
  template void se_a_gram<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, cudaStream_t); \
  template void se_a_gram_grad_x<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,        \
                                    cudaStream_t);                                            \
  template void se_a_gram_grad_y<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,        \
                                    cudaStream_t);
DPX_INSTANTIATE(float)
DPX_INSTANTIATE(double)
#undef DPX_INSTANTIATE

}  // namespace dpx::cuda
