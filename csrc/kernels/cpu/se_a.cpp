#include "kernels/cpu/se_a.h"

namespace dpx::cpu {

// Inner loops run over the embedding width m (contiguous) so the compiler vectorizes them.

template <typename T>
void se_a_reduce(const T* em, const T* g, T* t, int64_t nnei, int64_t m, int64_t begin, int64_t end) {
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    T* tn = t + n * 4 * m;
    for (int64_t x = 0; x < 4 * m; ++x) tn[x] = 0;
    for (int64_t j = 0; j < nnei; ++j) {
      const T* e = em + (n * nnei + j) * 4;
      const T* gj = g + (n * nnei + j) * m;
      for (int a = 0; a < 4; ++a) {
        const T ea = e[a];
        T* ta = tn + a * m;
        for (int64_t x = 0; x < m; ++x) ta[x] += ea * gj[x];
      }
    }
    for (int64_t x = 0; x < 4 * m; ++x) tn[x] *= inv;
  }
}

template <typename T>
void se_a_reduce_grad_em(const T* gt, const T* g, T* ge, int64_t nnei, int64_t m, int64_t begin,
                         int64_t end) {
  const T inv = T(1) / T(nnei);
  for (int64_t n = begin; n < end; ++n) {
    const T* gtn = gt + n * 4 * m;
    for (int64_t j = 0; j < nnei; ++j) {
      const T* gj = g + (n * nnei + j) * m;
      T* out = ge + (n * nnei + j) * 4;
      for (int a = 0; a < 4; ++a) {
        const T* ga = gtn + a * m;
        T acc = 0;
        for (int64_t x = 0; x < m; ++x) acc += ga[x] * gj[x];
        out[a] = acc * inv;
      }
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

template <typename T>
void se_a_gram_grad_x(const T* gd, const T* y, T* gx, int64_t m, int64_t k, int64_t begin,
                      int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    const T* gdn = gd + n * m * k;
    const T* yn = y + n * 4 * m;
    T* out = gx + n * 4 * m;
    for (int a = 0; a < 4; ++a)
      for (int64_t p = 0; p < m; ++p) {
        T acc = 0;
        for (int64_t q = 0; q < k; ++q) acc += gdn[p * k + q] * yn[a * m + q];
        out[a * m + p] = acc;
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
