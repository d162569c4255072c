#include "kernels/cpu/se_a.h"

#include "kernels/cpu/simd.h"

namespace dpx::cpu::DPX_KERNEL_ISA {
namespace {

// The hot loops run over the embedding width m (contiguous) in vectors (kernels/cpu/simd.h)
// of 16 bytes in the generic build (SSE2 or NEON) and 32 in the AVX2 and AVX-512 builds. Not
// 64 with AVX-512: the register blocks below were sized for the 16 registers of SSE2 and AVX2
// (dots4's 8 accumulators) and timed at these widths only, and dots4's sums split over the
// lanes, so 32 bytes keeps the AVX-512 build's numbers those of the AVX2 build. Going wider is
// a change of its own, to be measured.
constexpr int kVectorBytes = simd::kMaxBytes < 32 ? simd::kMaxBytes : 32;
template <typename T>
using Vec = simd::Vec<T, kVectorBytes>;
template <typename T>
constexpr int64_t kLanes = simd::kLanes<T, kVectorBytes>;

// t for one atom, columns [x0, x0 + NV W): slots [j0, j1) added to what slots [0, j0) left
// there, scaled by inv after the last slot. The 4 NV vector accumulators stay in registers
// while the slots stream past, instead of a load and a store of t per multiply-add. Each
// output sums j = 0, 1, ... in order, whatever the chunks.
// (always_inline here and on dots4: GCC otherwise calls them out of line in some builds)
template <typename T, int NV>
[[gnu::always_inline]] inline void reduce_block(const T* en, const T* gn, T* tn, int64_t nnei,
                                                int64_t m, int64_t x0, int64_t j0, int64_t j1,
                                                T inv) {
  constexpr int64_t W = kLanes<T>;
  Vec<T> acc[4][NV] = {};
  if (j0 > 0)
    for (int a = 0; a < 4; ++a)
      for (int v = 0; v < NV; ++v) acc[a][v] = simd::load<Vec<T>>(tn + a * m + x0 + v * W);
  for (int64_t j = j0; j < j1; ++j) {
    const T* e = en + j * 4;
    const T* gj = gn + j * m + x0;
    for (int v = 0; v < NV; ++v) {
      const Vec<T> gv = simd::load<Vec<T>>(gj + v * W);
      for (int a = 0; a < 4; ++a) acc[a][v] += e[a] * gv;
    }
  }
  const T scale = j1 == nnei ? inv : T(1);
  for (int a = 0; a < 4; ++a)
    for (int v = 0; v < NV; ++v) simd::store(tn + a * m + x0 + v * W, acc[a][v] * scale);
}

// s[r][a] = sum_x u[a * ldu + x] v[r * ldv + x] over x < len: the dot products of R rows of
// v with 4 rows of u, sharing their loads. One scalar accumulator per dot product would be
// a chain of dependent adds that the compiler may not reorder. Here each is a vector
// accumulator whose lane l sums x = l, l + W, l + 2W, ... (4 R independent chains of one
// multiply-add per vector); the lanes are added at the end, then the tail x. The order
// depends on W, so the avx2 and generic builds differ in the last bits.
template <typename T, int R>
[[gnu::always_inline]] inline void dots4(const T* u, int64_t ldu, const T* v, int64_t ldv,
                                         int64_t len, T s[R][4]) {
  constexpr int64_t W = kLanes<T>;
  Vec<T> acc[R][4] = {};
  int64_t x = 0;
  for (; x + W <= len; x += W) {
    Vec<T> ua[4];
    for (int a = 0; a < 4; ++a) ua[a] = simd::load<Vec<T>>(u + a * ldu + x);
    for (int r = 0; r < R; ++r) {
      const Vec<T> vr = simd::load<Vec<T>>(v + r * ldv + x);
      for (int a = 0; a < 4; ++a) acc[r][a] += ua[a] * vr;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < 4; ++a) s[r][a] = simd::lane_sum(acc[r][a]);
  for (; x < len; ++x)
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < 4; ++a) s[r][a] += u[a * ldu + x] * v[r * ldv + x];
}

}  // namespace

template <typename T>
void se_a_reduce(const T* em, const T* g, T* t, int64_t nnei, int64_t m, int64_t begin, int64_t end) {
  // Slots in chunks of J rows of g (a few kB, in L1 while every column block passes over
  // them), so that g is read from memory about in order: one pass over all nnei rows per
  // column block asks for a line of every row at once and measured 1.5x slower at
  // nnei 138, m 100. Column blocks two vectors wide: 8 accumulators, 2 loads of g and
  // 4 broadcasts of em per slot.
  constexpr int64_t W = kLanes<T>, J = 8;
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    const T* en = em + n * nnei * 4;
    const T* gn = g + n * nnei * m;
    T* tn = t + n * 4 * m;
    for (int64_t j0 = 0; j0 < nnei; j0 += J) {
      const int64_t j1 = j0 + J < nnei ? j0 + J : nnei;
      int64_t x0 = 0;
      for (; x0 + 2 * W <= m; x0 += 2 * W)
        reduce_block<T, 2>(en, gn, tn, nnei, m, x0, j0, j1, inv);
      for (; x0 + W <= m; x0 += W) reduce_block<T, 1>(en, gn, tn, nnei, m, x0, j0, j1, inv);
    }
    // the last m % W columns: a block over all slots that ends at m (its first columns are
    // done already and get the same values again: the same terms in the same order)
    const int64_t tail = m % W;
    if (tail && m >= W) {
      reduce_block<T, 1>(en, gn, tn, nnei, m, m - W, 0, nnei, inv);
    } else if (tail) {  // m < W
      for (int64_t x = 0; x < m; ++x)
        for (int a = 0; a < 4; ++a) {
          T sum = 0;
          for (int64_t j = 0; j < nnei; ++j) sum += en[j * 4 + a] * gn[j * m + x];
          tn[a * m + x] = sum * inv;
        }
    }
  }
}

// ge[j, a]: dot products over m of slot j's row of g with the four rows of gt, two slots at
// a time: 8 vector accumulators of the 16 registers that SSE2 and AVX2 have (four slots'
// 16 would spill).
template <typename T>
void se_a_reduce_grad_em(const T* gt, const T* g, T* ge, int64_t nnei, int64_t m, int64_t begin,
                         int64_t end) {
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    const T* gtn = gt + n * 4 * m;
    T s[2][4];
    int64_t j = 0;
    for (; j + 2 <= nnei; j += 2) {
      dots4<T, 2>(gtn, m, g + (n * nnei + j) * m, m, m, s);
      T* out = ge + (n * nnei + j) * 4;
      for (int r = 0; r < 2; ++r)
        for (int a = 0; a < 4; ++a) out[r * 4 + a] = s[r][a] * inv;
    }
    for (; j < nnei; ++j) {
      dots4<T, 1>(gtn, m, g + (n * nnei + j) * m, m, m, s);
      for (int a = 0; a < 4; ++a) ge[(n * nnei + j) * 4 + a] = s[0][a] * inv;
    }
  }
}

// gg[j, :]: streams the rows of gg (the compiler vectorizes the loop over m)
template <typename T>
void se_a_reduce_grad_g(const T* gt, const T* em, T* gg, int64_t nnei, int64_t m, int64_t begin,
                        int64_t end) {
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    const T* gtn = gt + n * 4 * m;
    for (int64_t j = 0; j < nnei; ++j) {
      const T* e = em + (n * nnei + j) * 4;
      T* out = gg + (n * nnei + j) * m;
      const T e0 = e[0] * inv, e1 = e[1] * inv, e2 = e[2] * inv, e3 = e[3] * inv;
      for (int64_t x = 0; x < m; ++x)
        out[x] = e0 * gtn[x] + e1 * gtn[m + x] + e2 * gtn[2 * m + x] + e3 * gtn[3 * m + x];
    }
  }
}

template <typename T>
void se_a_gram(const T* x, const T* y, T* d, int64_t m, int64_t k, int64_t begin, int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    const T* xn = x + n * 4 * m;
    const T* yn = y + n * 4 * m;
    T* dn = d + n * m * k;
    for (int64_t p = 0; p < m; ++p)
      for (int64_t q = 0; q < k; ++q)
        dn[p * k + q] = xn[p] * yn[q] + xn[m + p] * yn[m + q] + xn[2 * m + p] * yn[2 * m + q] +
                        xn[3 * m + p] * yn[3 * m + q];
  }
}

// gx[a, p]: dot products over k of row p of gd with the four rows of y, two rows at a time.
template <typename T>
void se_a_gram_grad_x(const T* gd, const T* y, T* gx, int64_t m, int64_t k, int64_t begin,
                      int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    const T* gdn = gd + n * m * k;
    const T* yn = y + n * 4 * m;
    T* out = gx + n * 4 * m;
    T s[2][4];
    int64_t p = 0;
    for (; p + 2 <= m; p += 2) {
      dots4<T, 2>(yn, m, gdn + p * k, k, k, s);
      for (int r = 0; r < 2; ++r)
        for (int a = 0; a < 4; ++a) out[a * m + p + r] = s[r][a];
    }
    for (; p < m; ++p) {
      dots4<T, 1>(yn, m, gdn + p * k, k, k, s);
      for (int a = 0; a < 4; ++a) out[a * m + p] = s[0][a];
    }
  }
}

template <typename T>
void se_a_gram_grad_y(const T* gd, const T* x, T* gy, int64_t m, int64_t k, int64_t begin,
                      int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    const T* gdn = gd + n * m * k;
    const T* xn = x + n * 4 * m;
    T* out = gy + n * 4 * m;
    for (int64_t x4 = 0; x4 < 4 * m; ++x4) out[x4] = 0;
    for (int64_t p = 0; p < m; ++p)
      for (int a = 0; a < 4; ++a) {
        const T xa = xn[a * m + p];
        for (int64_t q = 0; q < k; ++q) out[a * m + q] += gdn[p * k + q] * xa;
      }
  }
}

#define DPX_INSTANTIATE(T)                                                                        \
  template void se_a_reduce<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t);        \
  template void se_a_reduce_grad_em<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void se_a_reduce_grad_g<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void se_a_gram<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t);          \
  template void se_a_gram_grad_x<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t);   \
  template void se_a_gram_grad_y<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t);
DPX_INSTANTIATE(float)
DPX_INSTANTIATE(double)
#undef DPX_INSTANTIATE

}  // namespace dpx::cpu::DPX_KERNEL_ISA
