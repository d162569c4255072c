#include "kernels/cpu/embed.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/tile_gemm.h"

// The BLAS inside torch's library (MKL or OpenBLAS): weak, so a torch without it still loads
// this library and the kernels multiply with a plain loop.
extern "C" {
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
}

namespace dpx::cpu::DPX_KERNEL_ISA {
namespace {

// slots per tile: 2 x 64 rows of the widest layer (100 doubles) and their pre-activations
// stay in L2 through the forward and backward passes of a tile
constexpr int64_t kTile = 64;

// ------------------------------------------------------------------ matrix products
// column-major C[m, n] = alpha op(A) op(B) + beta C, BLAS's convention
template <typename T>
void gemm(bool ta, bool tb, int m, int n, int k, const T* a, int lda, const T* b, int ldb, T beta,
          T* c, int ldc, T alpha = T(1)) {
  if (m == 0 || n == 0) return;
  const char sa = ta ? 'T' : 'N', sb = tb ? 'T' : 'N';
  if constexpr (std::is_same_v<T, double>) {
    if (dgemm_) return dgemm_(&sa, &sb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
  } else {
    if (sgemm_) return sgemm_(&sa, &sb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      T acc = 0;
      for (int q = 0; q < k; ++q)
        acc += (ta ? a[q + i * lda] : a[i + q * lda]) * (tb ? b[j + q * ldb] : b[q + j * ldb]);
      c[i + j * ldc] = alpha * acc + (beta == T(0) ? T(0) : beta * c[i + j * ldc]);
    }
}

// The tile products below, row-major: tile_gemm.h's kernel in AVX-512 builds (MKL's packing
// costs more than these small products), the BLAS elsewhere. beta is 0 or 1.
// z [r, out] = x [r, in] w [in, out] (+ b [out] on every row when b): a layer; with w^T
// (Tile::wt) in place of w, its input cotangent
template <typename T>
void mm_xw(int64_t r, int64_t in, int64_t out, const T* x, const T* w, const T* b, T* z) {
#if defined(__AVX512F__)
  tile_gemm::product<T>(r, out, in, x, in, 1, w, out, z, out, 1, false, b);
#else
  gemm<T>(false, false, out, r, in, w, out, x, in, T(0), z, out);
  if (b)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < out; ++j) z[i * out + j] += b[j];
#endif
}

// the contractions with the environment matrix, row-major with leading dimensions:
// c [m, n] = alpha a [m, k] b [k, n] + beta c
template <typename T>
void mm_ab(int64_t m, int64_t k, int64_t n, const T* a, int64_t lda, const T* b, int64_t ldb,
           T* c, int64_t ldc, T alpha, T beta) {
#if defined(__AVX512F__)
  tile_gemm::product<T>(m, n, k, a, lda, 1, b, ldb, c, ldc, alpha, beta != T(0));
#else
  gemm<T>(false, false, n, m, k, b, ldb, a, lda, beta, c, ldc, alpha);
#endif
}
// c [m, n] = alpha a^T b + beta c with a [k, m], b [k, n]
template <typename T>
void mm_atb(int64_t k, int64_t m, int64_t n, const T* a, int64_t lda, const T* b, int64_t ldb,
            T* c, int64_t ldc, T alpha, T beta) {
#if defined(__AVX512F__)
  tile_gemm::product<T>(m, n, k, a, 1, lda, b, ldb, c, ldc, alpha, beta != T(0));
#else
  gemm<T>(false, true, n, m, k, b, ldb, a, lda, beta, c, ldc, alpha);
#endif
}
// wb [in, out] += x^T [in, r] zb [r, out]: a layer's weight gradient
template <typename T>
void mm_xtz(int64_t r, int64_t in, int64_t out, const T* x, const T* zb, T* wb) {
  mm_atb<T>(r, in, out, x, in, zb, out, wb, out, T(1), T(1));
}
// bt [k, n] = b^T of b [n, k]: the layers' W^T and gT_c^T, so that the input cotangent
// (zb W^T) and the products with gT_c^T are plain a b products
template <typename T>
void transpose(int64_t n, int64_t k, const T* b, T* bt) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t q = 0; q < k; ++q) bt[q * n + i] = b[i * k + q];
}

// ------------------------------------------------------------------ activations
// Vectors of this build's full width (kernels/cpu/simd.h): 16 bytes baseline, 32 with AVX2,
// 64 with AVX-512. These loops are elementwise, so the width changes no sum; the tile buffers
// are padded to whole vectors (kPad), so the loops run past n into slack entries.
constexpr int kVectorBytes = simd::kMaxBytes;
template <typename T>
using Vec = simd::Vec<T, kVectorBytes>;
template <typename T>
constexpr int64_t kLanes = simd::kLanes<T, kVectorBytes>;
constexpr int64_t kPad = 16;  // >= the lanes of any build
static_assert(kPad >= kLanes<float>);

// exp by range reduction (x = k ln2 + r, |r| <= ln2 / 2), a Taylor polynomial (degree 13 in
// double, 7 in float: below an ulp on that interval) and 2^k from the exponent bits
template <typename T>
inline Vec<T> exp_v(Vec<T> x) {
  using V = Vec<T>;
  using VI = simd::Vec<simd::IntOf<T>, kVectorBytes>;
  constexpr bool dbl = std::is_same_v<T, double>;
  const T lo = dbl ? T(-700) : T(-87), hi = -lo;
  x = x < lo ? V{} + lo : x;
  x = x > hi ? V{} + hi : x;
  const T shift = dbl ? T(0x1.8p52) : T(0x1.8p23f);
  const V kk = x * T(1.4426950408889634) + shift;
  const V k = kk - shift;
  V r, p;
  if constexpr (dbl) {
    r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    p = V{} + 1.0 / 6227020800.0;
    for (double c : {1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320,
                     1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0})
      p = p * r + c;
  } else {
    r = (x - k * 0.693145752f) - k * 1.42860677e-06f;
    p = V{} + 1.0f / 40320;
    for (float c : {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
      p = p * r + c;
  }
  const simd::IntOf<T> bias = dbl ? 1023 : 127, mant = dbl ? 52 : 23;
  const VI e = (simd::bits_as<VI>(kk) - simd::bits_as<simd::IntOf<T>>(shift) + bias) << mant;
  return p * simd::bits_as<V>(e);
}

template <typename T>
inline Vec<T> abs_v(Vec<T> x) {
  return x < T(0) ? -x : x;
}

template <typename T>
inline Vec<T> tanh_v(Vec<T> x) {
  const Vec<T> t = exp_v<T>(T(-2) * abs_v<T>(x));
  const Vec<T> y = (T(1) - t) / (T(1) + t);
  return x < T(0) ? -y : y;
}

template <typename T>
inline Vec<T> sigmoid_v(Vec<T> x) {
  const Vec<T> e = exp_v<T>(-abs_v<T>(x));
  const Vec<T> d = T(1) / (T(1) + e);
  return x >= T(0) ? d : e * d;
}

// a = f(z) and d1 = f'(z) over n entries, rounded up to whole vectors (DeePMD-kit's
// definitions: torch's softplus with threshold 20, gelu with the tanh approximation)
template <typename T>
void activate(int act, const T* z, T* a, T* d1, int64_t n) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  constexpr T k0 = T(0.7978845608028654), k1 = T(0.044715);
  if (act == kSoftplus) {  // log1p has no vector form here; a rare choice
    for (int64_t i = 0; i < n; ++i) {
      const bool big = z[i] > T(20);
      a[i] = big ? z[i] : std::log1p(std::exp(z[i]));
      d1[i] = big ? T(1) : T(1) / (T(1) + std::exp(-z[i]));
    }
    return;
  }
  for (int64_t i = 0; i < n; i += L) {
    const V x = simd::load<V>(z + i);
    V f, g;
    switch (act) {
      case kTanh:
        f = tanh_v<T>(x);
        g = T(1) - f * f;
        break;
      case kSigmoid:
        f = sigmoid_v<T>(x);
        g = f * (T(1) - f);
        break;
      case kRelu:
        f = x > T(0) ? x : V{};
        g = x > T(0) ? V{} + T(1) : V{};
        break;
      case kGelu: {
        const V t = tanh_v<T>(k0 * (x + k1 * x * x * x));
        f = T(0.5) * x * (T(1) + t);
        g = T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * (k0 * (T(1) + T(3) * k1 * x * x));
        break;
      }
      default:  // linear
        f = x;
        g = V{} + T(1);
    }
    simd::store(a + i, f);
    simd::store(d1 + i, g);
  }
}

// d2 = f''(z) over n entries (whole vectors), from z, a = f(z) and d1 = f'(z)
template <typename T>
void second_derivative(int act, const T* z, const T* a, const T* d1, T* d2, int64_t n) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  constexpr T k0 = T(0.7978845608028654), k1 = T(0.044715);
  for (int64_t i = 0; i < n; i += L) {
    const V x = simd::load<V>(z + i), f = simd::load<V>(a + i), g = simd::load<V>(d1 + i);
    V h;
    switch (act) {
      case kTanh:
        h = T(-2) * f * g;
        break;
      case kSigmoid:
        h = g * (T(1) - T(2) * f);
        break;
      case kSoftplus:
        h = x > T(20) ? V{} : g * (T(1) - g);
        break;
      case kGelu: {
        const V t = tanh_v<T>(k0 * (x + k1 * x * x * x)), sech2 = T(1) - t * t;
        const V du = k0 * (T(1) + T(3) * k1 * x * x), ddu = k0 * T(6) * k1 * x;
        h = sech2 * du - x * t * sech2 * du * du + T(0.5) * x * sech2 * ddu;
        break;
      }
      default:  // linear, relu
        h = V{};
    }
    simd::store(d2 + i, h);
  }
}

// y[j] += x[j % in] for j < out (out = in or 2 in): the skip connection
template <typename T>
inline void add_skip(T* y, const T* x, int64_t in, int64_t out) {
  for (int64_t j = 0; j < in; ++j) y[j] += x[j];
  if (out == 2 * in)
    for (int64_t j = 0; j < in; ++j) y[in + j] += x[j];
}
// x[j] += y[j] (+ y[in + j]): its transpose
template <typename T>
inline void add_skip_t(T* x, const T* y, int64_t in, int64_t out) {
  for (int64_t j = 0; j < in; ++j) x[j] += y[j];
  if (out == 2 * in)
    for (int64_t j = 0; j < in; ++j) x[j] += y[in + j];
}

// ------------------------------------------------------------------ the net on a tile
struct Layer {
  int64_t in, out, w, b, idt;  // offsets into params; idt -1 when absent
  bool skip;
};

template <typename T>
std::vector<Layer> layers_of(const EmbedNet<T>& net) {
  std::vector<Layer> ls;
  int64_t off = 0;
  for (int64_t l = 0; l < net.nlayer; ++l) {
    Layer y{net.widths[l], net.widths[l + 1], 0, 0, -1, false};
    y.skip = y.out == y.in || y.out == 2 * y.in;
    y.w = off;
    y.b = off += y.in * y.out;
    off += y.out;
    if (net.resnet_dt && y.skip) {
      y.idt = off;
      off += y.out;
    }
    ls.push_back(y);
  }
  return ls;
}

// Activations of one tile of n slots: h[l] [rows, widths[l]] (h[0] = s, h[nlayer] = G), z[l],
// a[l] = f(z), d1[l] = f'(z) of layer l's output. With the tangent, rows n..2n-1 of h and z
// carry d/ds (h[0] = 1 there): the products of a layer take both halves in one call.
template <typename T>
struct Tile {
  const EmbedNet<T>& net;
  std::vector<Layer> ls;
  int64_t width_max = 1;
  std::vector<std::vector<T>> h, z, a, d1, wt;  // wt[l]: layer l's matrix transposed
  std::vector<T> hb0, hb1, zb, d2, sbar;

  explicit Tile(const EmbedNet<T>& n) : net(n), ls(layers_of(n)) {
    for (int64_t l = 0; l <= n.nlayer; ++l) width_max = std::max(width_max, n.widths[l]);
    for (const Layer& y : ls) {
      wt.emplace_back(y.in * y.out);
      transpose(y.in, y.out, param(y.w), wt.back().data());
    }
    for (int64_t l = 0; l <= n.nlayer; ++l) h.emplace_back(2 * kTile * n.widths[l]);
    for (const Layer& y : ls) {
      z.emplace_back(2 * kTile * y.out + kPad);
      a.emplace_back(kTile * y.out + kPad);
      d1.emplace_back(kTile * y.out + kPad);
    }
    for (auto* v : {&hb0, &hb1, &zb}) v->resize(2 * kTile * width_max);
    d2.resize(kTile * width_max + kPad);
    sbar.resize(kTile);
  }

  const T* param(int64_t off) const { return net.params + off; }
  int64_t m() const { return net.widths[net.nlayer]; }
  const T* g() const { return h.back().data(); }                    // [n, M]
  const T* dg(int64_t n) const { return h.back().data() + n * m(); }  // [n, M] (tangent)

  // G of the n slots of em's rows (s in column lay.js); and G' when tangent
  void forward(const T* em, const EmLayout& lay, int64_t n, bool tangent) {
    const int64_t rows = tangent ? 2 * n : n;
    for (int64_t r = 0; r < n; ++r) h[0][r] = em[lay.ld * r + lay.js];
    for (int64_t r = n; r < rows; ++r) h[0][r] = T(1);
    for (size_t l = 0; l < ls.size(); ++l) {
      const Layer& y = ls[l];
      const T *x = h[l].data(), *w = param(y.w), *b = param(y.b);
      T* zl = z[l].data();
      // z = x W + b on the value rows, z' = x' W on the tangent rows
      if (y.in == 1) {  // an outer product; the tangent rows get w itself
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < y.out; ++j) zl[r * y.out + j] = x[r] * w[j] + b[j];
        for (int64_t r = n; r < rows; ++r)
          for (int64_t j = 0; j < y.out; ++j) zl[r * y.out + j] = x[r] * w[j];
      } else {
        mm_xw(n, y.in, y.out, x, w, b, zl);
        mm_xw(rows - n, y.in, y.out, x + n * y.in, w, static_cast<const T*>(nullptr),
              zl + n * y.out);
      }
      activate(net.act, zl, a[l].data(), d1[l].data(), n * y.out);
      T* out = h[l + 1].data();
      const T* idt = y.idt >= 0 ? param(y.idt) : nullptr;
      const T *al = a[l].data(), *dl = d1[l].data();
      for (int64_t r = 0; r < n; ++r) {  // y = f(z) idt + skip(x)
        T* o = out + r * y.out;
        const T* ar = al + r * y.out;
        if (idt)
          for (int64_t j = 0; j < y.out; ++j) o[j] = ar[j] * idt[j];
        else
          std::memcpy(o, ar, y.out * sizeof(T));
        if (y.skip) add_skip(o, x + r * y.in, y.in, y.out);
      }
      for (int64_t r = n; r < rows; ++r) {  // y' = f'(z) z' idt + skip(x')
        T* o = out + r * y.out;
        const T *dr = dl + (r - n) * y.out, *zr = zl + r * y.out;
        if (idt)
          for (int64_t j = 0; j < y.out; ++j) o[j] = dr[j] * zr[j] * idt[j];
        else
          for (int64_t j = 0; j < y.out; ++j) o[j] = dr[j] * zr[j];
        if (y.skip) add_skip(o, x + r * y.in, y.in, y.out);
      }
    }
  }

  // Back-propagates hbar [rows, M] (rows n..2n-1: the cotangent of G', with tangent) through
  // the forward of this tile: parameter gradients added to gp; sbar[r] = d/ds_r when ds.
  void backward(T* hbar, int64_t n, bool tangent, T* gp, bool ds) {
    const int64_t rows = tangent ? 2 * n : n;
    T* yb = hbar;
    for (size_t l = ls.size(); l-- > 0;) {
      const Layer& y = ls[l];
      const T* zl = z[l].data();
      const T* idt = y.idt >= 0 ? param(y.idt) : nullptr;
      if (tangent) second_derivative(net.act, zl, a[l].data(), d1[l].data(), d2.data(), n * y.out);
      T* gidt = y.idt >= 0 ? gp + y.idt : nullptr;
      T* gb = gp + y.b;
      const T *al = a[l].data(), *dl = d1[l].data();
      for (int64_t r = 0; r < n; ++r) {
        const int64_t q = r * y.out, qt = (r + n) * y.out;
        const T *ybr = yb + q, *ar = al + q, *dr = dl + q;
        T* zbr = zb.data() + q;
        if (gidt)
          for (int64_t j = 0; j < y.out; ++j) gidt[j] += ybr[j] * ar[j];
        if (idt)
          for (int64_t j = 0; j < y.out; ++j) zbr[j] = dr[j] * ybr[j] * idt[j];
        else
          for (int64_t j = 0; j < y.out; ++j) zbr[j] = dr[j] * ybr[j];
        if (tangent) {  // z' = x' W: zbar += f''(z) z' a'bar, z'bar = f'(z) a'bar
          const T *ytr = yb + qt, *ztr = zl + qt, *d2r = d2.data() + q;
          T* ztb = zb.data() + qt;
          if (gidt)
            for (int64_t j = 0; j < y.out; ++j) gidt[j] += ytr[j] * dr[j] * ztr[j];
          for (int64_t j = 0; j < y.out; ++j) {
            const T atb = idt ? ytr[j] * idt[j] : ytr[j];
            zbr[j] += d2r[j] * ztr[j] * atb;
            ztb[j] = dr[j] * atb;
          }
        }
        for (int64_t j = 0; j < y.out; ++j) gb[j] += zbr[j];
      }
      const T* x = h[l].data();
      const T* w = param(y.w);
      T* gw = gp + y.w;
      if (l == 0) {  // the input is s (widths[0] = 1): an outer product, and d/ds
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < y.out; ++j) gw[j] += x[r] * zb[r * y.out + j];
        if (ds)
          for (int64_t r = 0; r < n; ++r) {
            T acc = 0;
            for (int64_t j = 0; j < y.out; ++j) acc += zb[r * y.out + j] * w[j];
            if (y.skip)  // a first layer of width 1 or 2 keeps s itself too
              for (int64_t j = 0; j < y.out; ++j) acc += yb[r * y.out + j];
            sbar[r] = acc;
          }
        break;
      }
      mm_xtz(rows, y.in, y.out, x, zb.data(), gw);
      T* xb = (yb == hb0.data()) ? hb1.data() : hb0.data();
      mm_xw(rows, y.out, y.in, zb.data(), wt[l].data(), static_cast<const T*>(nullptr), xb);
      if (y.skip)
        for (int64_t r = 0; r < rows; ++r) add_skip_t(xb + r * y.in, yb + r * y.out, y.in, y.out);
      yb = xb;
    }
  }
};

// x y + z, in one rounding where the build has a fast FMA (the AVX2 and AVX-512 builds)
template <typename T>
inline T madd(T x, T y, T z) {
#if defined(__FP_FAST_FMA) && defined(__FP_FAST_FMAF)
  return std::fma(x, y, z);
#else
  return x * y + z;
#endif
}

// e . v over k entries, in the roundings GCC gave the expression e0 v0 + e1 v1 + e2 v2 + e3 v3
// of se_e2_a's kernel before K was general: e1 v1, then e0 v0 and each next product added in
// an FMA. Spelled out: left to the compiler, a loop over k is vectorized into products and
// ordered sums without FMA, and se_e2_a's forces would change in their last bits.
template <typename T>
inline T dot_em(const T* e, const T* v, int64_t k) {
  T acc = madd(e[0], v[0], k > 1 ? e[1] * v[1] : T(0));
  for (int64_t a = 2; a < k; ++a) acc = madd(e[a], v[a], acc);
  return acc;
}

// f(chunk, first slot p0, n slots) over the tiles of chunks [cb, ce)
template <typename F>
void for_tiles(const int64_t* bounds, int64_t cb, int64_t ce, F&& f) {
  for (int64_t c = cb; c < ce; ++c)
    for (int64_t p = bounds[c]; p < bounds[c + 1]; p += kTile)
      f(c, p, std::min(kTile, bounds[c + 1] - p));
}

// f(center, r0, r1) over the runs of one center among a tile's rows [0, n) (centers sorted):
// each run's contraction is one small matrix product
template <typename F>
void for_runs(const int64_t* center, int64_t n, F&& f) {
  for (int64_t r0 = 0, r1; r0 < n; r0 = r1) {
    for (r1 = r0 + 1; r1 < n && center[r1] == center[r0];) ++r1;
    f(center[r0], r0, r1);
  }
}

}  // namespace

template <typename T>
void embed_reduce(const EmbedNet<T>& net, const EmLayout& lay, const T* em,
                  const int64_t* center, T* t, T scale, const int64_t* bounds, int64_t cb,
                  int64_t ce) {
  Tile<T> tile(net);
  const int64_t m = tile.m(), ld = lay.ld, k = lay.k;
  for_tiles(bounds, cb, ce, [&](int64_t, int64_t p0, int64_t n) {
    tile.forward(em + ld * p0, lay, n, false);
    for_runs(center + p0, n, [&](int64_t c, int64_t r0, int64_t r1) {  // T_c += scale R^T G
      mm_atb(r1 - r0, k, m, em + ld * (p0 + r0), ld, tile.g() + r0 * m, m, t + c * k * m, m,
             scale, T(1));
    });
  });
}

template <typename T>
void embed_reduce_grad_em(const EmbedNet<T>& net, const EmLayout& lay, const T* gt, const T* em,
                          const int64_t* center, T* gem, T scale, const int64_t* bounds,
                          int64_t cb, int64_t ce) {
  Tile<T> tile(net);
  const int64_t m = tile.m(), ld = lay.ld, k = lay.k;
  std::vector<T> v(k * kTile), gct(k * m);
  for_tiles(bounds, cb, ce, [&](int64_t, int64_t p0, int64_t n) {
    tile.forward(em + ld * p0, lay, n, true);
    for_runs(center + p0, n, [&](int64_t c, int64_t r0, int64_t r1) {
      transpose<T>(k, m, gt + c * k * m, gct.data());
      // gem[:, :K] = scale G gT_c^T, v = scale G' gT_c^T; gem[:, js] += R . v
      mm_ab(r1 - r0, m, k, tile.g() + r0 * m, m, gct.data(), k, gem + ld * (p0 + r0), ld,
            scale, T(0));
      mm_ab(r1 - r0, m, k, tile.dg(n) + r0 * m, m, gct.data(), k, v.data(), k, scale, T(0));
      for (int64_t r = r0; r < r1; ++r) {
        const T *e = em + ld * (p0 + r), *vr = v.data() + k * (r - r0);
        gem[ld * (p0 + r) + lay.js] += dot_em(e, vr, k);
      }
    });
  });
}

template <typename T>
void embed_reduce_grad_params(const EmbedNet<T>& net, const EmLayout& lay, const T* gt,
                              const T* em, const int64_t* center, T* gparams, T scale,
                              const int64_t* bounds, int64_t cb, int64_t ce) {
  Tile<T> tile(net);
  const int64_t m = tile.m(), ld = lay.ld, k = lay.k;
  const int64_t np = embed_nparams(net.nlayer, net.widths, net.resnet_dt);
  for_tiles(bounds, cb, ce, [&](int64_t c, int64_t p0, int64_t n) {
    tile.forward(em + ld * p0, lay, n, false);
    T* hbar = tile.hb0.data();
    for_runs(center + p0, n, [&](int64_t ci, int64_t r0, int64_t r1) {  // dL/dG = scale R gT_c
      mm_ab(r1 - r0, k, m, em + ld * (p0 + r0), ld, gt + ci * k * m, m, hbar + r0 * m, m,
            scale, T(0));
    });
    tile.backward(hbar, n, false, gparams + c * np, false);
  });
}

template <typename T>
void embed_reduce_grad_em_grad(const EmbedNet<T>& net, const EmLayout& lay, const T* ggem,
                               const T* gt, const T* em, const int64_t* center, T* g_gt,
                               T* g_em, T* gparams, T scale, const int64_t* bounds, int64_t cb,
                               int64_t ce) {
  Tile<T> tile(net);
  const int64_t m = tile.m(), ld = lay.ld, k = lay.k, js = lay.js;
  const int64_t np = embed_nparams(net.nlayer, net.widths, net.resnet_dt);
  std::vector<T> c2(k * kTile), v(k * kTile), gct(k * m);
  for_tiles(bounds, cb, ce, [&](int64_t c, int64_t p0, int64_t n) {
    tile.forward(em + ld * p0, lay, n, true);
    T* hbar = tile.hb0.data();
    for_runs(center + p0, n, [&](int64_t ci, int64_t r0, int64_t r1) {
      const int64_t nr = r1 - r0;
      const T *gc = gt + ci * k * m, *gg = ggem + ld * (p0 + r0), *e = em + ld * (p0 + r0);
      for (int64_t r = 0; r < nr; ++r)  // c2 = ggem[:, js] R: the coefficient of G'
        for (int64_t a = 0; a < k; ++a) c2[k * r + a] = gg[ld * r + js] * e[ld * r + a];
      // the cotangents of G and G' (ggem[:, :K] and c2 against gT_c), and of gT_c
      mm_ab(nr, k, m, gg, ld, gc, m, hbar + r0 * m, m, scale, T(0));
      mm_ab(nr, k, m, c2.data(), k, gc, m, hbar + (n + r0) * m, m, scale, T(0));
      T* ggc = g_gt + ci * k * m;
      mm_atb(nr, k, m, gg, ld, tile.g() + r0 * m, m, ggc, m, scale, T(1));
      mm_atb(nr, k, m, c2.data(), k, tile.dg(n) + r0 * m, m, ggc, m, scale, T(1));
      // g_em (explicit in R) = scale ggem[:, js] G' gT_c^T
      transpose<T>(k, m, gc, gct.data());
      mm_ab(nr, m, k, tile.dg(n) + r0 * m, m, gct.data(), k, v.data(), k, scale, T(0));
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t a = 0; a < k; ++a)
          g_em[ld * (p0 + r0 + r) + a] = gg[ld * r + js] * v[k * r + a];
    });
    // and through s
    tile.backward(hbar, n, true, gparams + c * np, true);
    for (int64_t r = 0; r < n; ++r) g_em[ld * (p0 + r) + js] += tile.sbar[r];
  });
}

#define DPX_EMBED_INSTANTIATE(T)                                                                \
  template void embed_reduce<T>(const EmbedNet<T>&, const EmLayout&, const T*, const int64_t*, \
                                T*, T, const int64_t*, int64_t, int64_t);                       \
  template void embed_reduce_grad_em<T>(const EmbedNet<T>&, const EmLayout&, const T*, const T*, \
                                        const int64_t*, T*, T, const int64_t*, int64_t,         \
                                        int64_t);                                               \
  template void embed_reduce_grad_params<T>(const EmbedNet<T>&, const EmLayout&, const T*,      \
                                            const T*, const int64_t*, T*, T, const int64_t*,    \
                                            int64_t, int64_t);                                  \
  template void embed_reduce_grad_em_grad<T>(const EmbedNet<T>&, const EmLayout&, const T*,     \
                                             const T*, const T*, const int64_t*, T*, T*, T*, T, \
                                             const int64_t*, int64_t, int64_t);
DPX_EMBED_INSTANTIATE(float)
DPX_EMBED_INSTANTIATE(double)

}  // namespace dpx::cpu::DPX_KERNEL_ISA
