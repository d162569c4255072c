// Row-major matrix products of the fused embedding's tiles (kernels/cpu/embed.cpp), AVX-512
// builds only:
//   C [m, n] = alpha sum_q A(i, q) B[q, :] (+ C) (+ bias),   A(i, q) = a[i * sai + q * sak]
// A is read through strides, so one kernel takes a row-major matrix or its transpose; B is
// row-major with its rows read in place. The tile products are small (64-128 rows, 4-200
// columns): MKL's dgemm_ packs both operands on every call, and on these shapes that cost
// more than the product (on the EPYC of benchmarks/RESULTS.md, fourth session: 17-31 GFLOP/s
// against 40-47 here, one thread). Here R rows x NV vectors of C stay in registers while q
// runs; masked loads and stores take the columns past the last whole vector. Each entry of
// C is one sum over q in order, so results do not depend on threads or tiling.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

// The loops over a block's rows and vectors must unroll before GCC places the accumulators:
// left to itself it keeps acc[][] on the stack and stores all of it on every q.
#define DPX_UNROLL _Pragma("GCC unroll 16")

namespace dpx::cpu::DPX_KERNEL_ISA::tile_gemm {

template <typename T>
struct Simd;
template <>
struct Simd<double> {
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int64_t L = 8;
  static Mask mask(int64_t n) {
    return n >= L ? Mask(0xff) : n <= 0 ? Mask(0) : Mask((1u << n) - 1);
  }
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V load(const double* p, Mask m) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(double* p, V v, Mask m) { _mm512_mask_storeu_pd(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
};
template <>
struct Simd<float> {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int64_t L = 16;
  static Mask mask(int64_t n) {
    return n >= L ? Mask(0xffff) : n <= 0 ? Mask(0) : Mask((1u << n) - 1);
  }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
};

// C's rows [0, R) x columns [j, j + NV L) (masked to n)
template <typename T, int R, int NV>
inline void block(int64_t j, int64_t n, int64_t k, const T* a, int64_t sai, int64_t sak,
                  const T* b, int64_t ldb, T* c, int64_t ldc, T alpha, bool accumulate,
                  const T* bias) {
  using S = Simd<T>;
  typename S::Mask mk[NV];
  typename S::V acc[R][NV];
  DPX_UNROLL for (int v = 0; v < NV; ++v) mk[v] = S::mask(n - j - v * S::L);
  DPX_UNROLL for (int r = 0; r < R; ++r)
    DPX_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = S::zero();
  for (int64_t q = 0; q < k; ++q) {
    typename S::V bq[NV];
    DPX_UNROLL for (int v = 0; v < NV; ++v) bq[v] = S::load(b + q * ldb + j + v * S::L, mk[v]);
    DPX_UNROLL for (int r = 0; r < R; ++r) {
      const typename S::V x = S::set1(a[r * sai + q * sak]);
      DPX_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(x, bq[v], acc[r][v]);
    }
  }
  const typename S::V al = S::set1(alpha);
  typename S::V bv[NV];
  DPX_UNROLL for (int v = 0; v < NV; ++v) bv[v] = bias ? S::load(bias + j + v * S::L, mk[v])
                                                       : S::zero();
  DPX_UNROLL for (int r = 0; r < R; ++r)
    DPX_UNROLL for (int v = 0; v < NV; ++v) {
      T* cr = c + r * ldc + j + v * S::L;
      typename S::V out = accumulate ? S::fma(al, acc[r][v], S::load(cr, mk[v]))
                                     : S::mul(al, acc[r][v]);
      if (bias) out = S::add(out, bv[v]);  // after the sum, as a separate pass would add it
      S::store(cr, out, mk[v]);
    }
}

// rows [0, R) of C, two vectors of columns at a time, one for the last vector's worth
template <typename T, int R>
inline void panel(int64_t n, int64_t k, const T* a, int64_t sai, int64_t sak, const T* b,
                  int64_t ldb, T* c, int64_t ldc, T alpha, bool accumulate, const T* bias) {
  constexpr int64_t L = Simd<T>::L;
  for (int64_t j = 0; j < n; j += 2 * L) {
    if (n - j > L)
      block<T, R, 2>(j, n, k, a, sai, sak, b, ldb, c, ldc, alpha, accumulate, bias);
    else
      block<T, R, 1>(j, n, k, a, sai, sak, b, ldb, c, ldc, alpha, accumulate, bias);
  }
}

// C [m, n] = alpha A B (+ C when accumulate) (+ the row bias [n] when given); see the top
// of this file. The layers' bias joins the store: no separate pass over the tile.
template <typename T>
void product(int64_t m, int64_t n, int64_t k, const T* a, int64_t sai, int64_t sak,
             const T* b, int64_t ldb, T* c, int64_t ldc, T alpha, bool accumulate,
             const T* bias = nullptr) {
  if (m <= 0 || n <= 0) return;
  constexpr int R = 6;  // 6 rows x 2 vectors: 12 accumulators, 2 rows of B, 1 broadcast
  int64_t i = 0;
  for (; i + R <= m; i += R)
    panel<T, R>(n, k, a + i * sai, sai, sak, b, ldb, c + i * ldc, ldc, alpha, accumulate, bias);
  const T* ai = a + i * sai;
  T* ci = c + i * ldc;
  switch (m - i) {
    case 5: return panel<T, 5>(n, k, ai, sai, sak, b, ldb, ci, ldc, alpha, accumulate, bias);
    case 4: return panel<T, 4>(n, k, ai, sai, sak, b, ldb, ci, ldc, alpha, accumulate, bias);
    case 3: return panel<T, 3>(n, k, ai, sai, sak, b, ldb, ci, ldc, alpha, accumulate, bias);
    case 2: return panel<T, 2>(n, k, ai, sai, sak, b, ldb, ci, ldc, alpha, accumulate, bias);
    case 1: return panel<T, 1>(n, k, ai, sai, sak, b, ldb, ci, ldc, alpha, accumulate, bias);
    default: return;
  }
}

}  // namespace dpx::cpu::DPX_KERNEL_ISA::tile_gemm
#undef DPX_UNROLL
#endif
