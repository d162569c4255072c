#include "kernels/cpu/se_a.h"

namespace dpx::cpu {

// Inner loops run over the embedding width m (contiguous) so the compiler vectorizes them.

// T for one atom in column blocks of B: the 4 x B accumulators stay in registers while the
// slots stream past (the atom's g block is read once per column block, from cache), instead
// of a load and a store of T per multiply-add. Each output sums j = 0, 1, ... in order.
template <typename T, int64_t B>
inline void reduce_block(const T* en, const T* gn, T* tn, int64_t nnei, int64_t m, int64_t x0,
                         T inv) {
  T acc[4][B] = {};
  for (int64_t j = 0; j < nnei; ++j) {
    const T* e = en + j * 4;
    const T* gj = gn + j * m + x0;
    const T e0 = e[0], e1 = e[1], e2 = e[2], e3 = e[3];
    for (int64_t x = 0; x < B; ++x) {
      const T v = gj[x];
      acc[0][x] += e0 * v;
      acc[1][x] += e1 * v;
      acc[2][x] += e2 * v;
      acc[3][x] += e3 * v;
    }
  }
  for (int a = 0; a < 4; ++a)
    for (int64_t x = 0; x < B; ++x) tn[a * m + x0 + x] = acc[a][x] * inv;
}

template <typename T>
void se_a_reduce(const T* em, const T* g, T* t, int64_t nnei, int64_t m, int64_t begin, int64_t end) {
  constexpr int64_t B = 8;
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    const T* en = em + n * nnei * 4;
    const T* gn = g + n * nnei * m;
    T* tn = t + n * 4 * m;
    int64_t x0 = 0;
    for (; x0 + B <= m; x0 += B) reduce_block<T, B>(en, gn, tn, nnei, m, x0, inv);
    for (; x0 < m; ++x0) reduce_block<T, 1>(en, gn, tn, nnei, m, x0, inv);
  }
}

// Dot products over m. A single accumulator is a chain of dependent adds (one add latency
// per element); two rows times the four components give eight independent chains. Each
// output still sums x = 0, 1, ..., m - 1 in order, so the result is that of the plain loop.
template <typename T>
void se_a_reduce_grad_em(const T* gt, const T* g, T* ge, int64_t nnei, int64_t m, int64_t begin,
                         int64_t end) {
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    const T* g0 = gt + n * 4 * m;
    const T *g1 = g0 + m, *g2 = g0 + 2 * m, *g3 = g0 + 3 * m;
    int64_t j = 0;
    for (; j + 2 <= nnei; j += 2) {
      const T* ga = g + (n * nnei + j) * m;
      const T* gb = ga + m;
      T a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
      for (int64_t x = 0; x < m; ++x) {
        const T u = ga[x], v = gb[x];
        a0 += g0[x] * u;
        a1 += g1[x] * u;
        a2 += g2[x] * u;
        a3 += g3[x] * u;
        b0 += g0[x] * v;
        b1 += g1[x] * v;
        b2 += g2[x] * v;
        b3 += g3[x] * v;
      }
      T* out = ge + (n * nnei + j) * 4;
      out[0] = a0 * inv, out[1] = a1 * inv, out[2] = a2 * inv, out[3] = a3 * inv;
      out[4] = b0 * inv, out[5] = b1 * inv, out[6] = b2 * inv, out[7] = b3 * inv;
    }
    for (; j < nnei; ++j) {
      const T* ga = g + (n * nnei + j) * m;
      T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (int64_t x = 0; x < m; ++x) {
        const T u = ga[x];
        a0 += g0[x] * u;
        a1 += g1[x] * u;
        a2 += g2[x] * u;
        a3 += g3[x] * u;
      }
      T* out = ge + (n * nnei + j) * 4;
      out[0] = a0 * inv, out[1] = a1 * inv, out[2] = a2 * inv, out[3] = a3 * inv;
    }
  }
}

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

// Dot products over k with the four components as independent chains (order kept, as above).
template <typename T>
void se_a_gram_grad_x(const T* gd, const T* y, T* gx, int64_t m, int64_t k, int64_t begin,
                      int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    const T* gdn = gd + n * m * k;
    const T* y0 = y + n * 4 * m;
    const T *y1 = y0 + m, *y2 = y0 + 2 * m, *y3 = y0 + 3 * m;
    T* out = gx + n * 4 * m;
    for (int64_t p = 0; p < m; ++p) {
      const T* row = gdn + p * k;
      T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (int64_t q = 0; q < k; ++q) {
        const T w = row[q];
        a0 += w * y0[q];
        a1 += w * y1[q];
        a2 += w * y2[q];
        a3 += w * y3[q];
      }
      out[p] = a0, out[m + p] = a1, out[2 * m + p] = a2, out[3 * m + p] = a3;
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

}  // namespace dpx::cpu
