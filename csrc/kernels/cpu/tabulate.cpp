#include "kernels/cpu/tabulate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace dpx::cpu {
namespace {

// where x falls: the table row, the offset t within its interval, and how far beyond the
// table x lies (0 inside). Counted in T as DeePMD-kit's locate_xx / locate_high_tail_xx
// (tabulate.cc): in float32 2 / 0.1f is 20 where float64 gives 19.99..., and the last row
// is the one holding nextafter(top, lower), also where top is off the stride1 grid. The
// operations and their order are dpx.ops.reference._locate's.
template <typename T>
struct Locate {
  int64_t first, last;
  T lower, upper, top, stride0, stride1, end_offset;

  explicit Locate(const TableInfo& info)
      : lower(T(info.lower)), upper(T(info.upper)), top(T(info.top)), stride0(T(info.stride0)),
        stride1(T(info.stride1)) {
    first = (int64_t)((upper - lower) / stride0);
    last = first + (int64_t)((std::nextafter(top, lower) - upper) / stride1);
    end_offset = top - (T(last - first) * stride1 + upper);
    last = std::min(last, info.nrow - 1);
  }

  int64_t operator()(T x, T& t, T& beyond) const {
    if (x < lower) {
      t = T(0), beyond = x - lower;
      return 0;
    }
    if (x >= top) {
      t = end_offset, beyond = x - top;
      return last;
    }
    beyond = T(0);
    // the start of the interval in the part x fell in, even where a rounded quotient names
    // the first stride1 row from below upper
    int64_t idx;
    T start;
    if (x < upper) {
      idx = (int64_t)std::floor((x - lower) / stride0);
      start = T(idx) * stride0 + lower;
    } else {
      idx = first + (int64_t)std::floor((x - upper) / stride1);
      start = T(idx - first) * stride1 + upper;
    }
    t = x - start;
    return std::clamp<int64_t>(idx, 0, last);
  }
};

// the slot that stands for itself and every slot after it (nnei where none does): the first
// padding slot, whose s repeats the last slot's and whose direction em[1:4] is 0. A real
// neighbor's direction is never 0, so one tied with the last slot (a symmetric shell that
// fills sel) is summed as itself.
template <typename T>
int64_t repeat_of(const T* x, const T* e, int64_t nnei) {
  int64_t j = 0;
  while (j < nnei &&
         !(x[j] == x[nnei - 1] && e[4 * j + 1] == 0 && e[4 * j + 2] == 0 && e[4 * j + 3] == 0))
    ++j;
  return j;
}

// G_m(x) (and dG_m/dx into d when d is not null) for m < M, at row coefficients a [M, 6]
template <typename T>
void values(const T* a, T t, T beyond, int64_t m, T* g, T* d) {
  for (int64_t k = 0; k < m; ++k, a += 6) {
    const T value = a[0] + (a[1] + (a[2] + (a[3] + (a[4] + a[5] * t) * t) * t) * t) * t;
    const T slope = a[1] + (2 * a[2] + (3 * a[3] + (4 * a[4] + 5 * a[5] * t) * t) * t) * t;
    g[k] = value + slope * beyond;
    if (d) d[k] = slope;
  }
}

}  // namespace

template <typename T>
void tabulate_se_a(const T* table, const TableInfo& info, const T* em_x, const T* em,
                   int64_t nnei, int64_t m, T* out, int64_t begin, int64_t end) {
  const Locate<T> locate(info);
  std::vector<T> g(m);
  for (int64_t n = begin; n < end; ++n) {
    T* o = out + n * 4 * m;
    std::fill(o, o + 4 * m, T(0));
    const T *x = em_x + n * nnei, *e = em + n * nnei * 4;
    const int64_t rep = nnei > 0 ? repeat_of(x, e, nnei) : 0;
    for (int64_t j = 0; j <= rep && j < nnei; ++j) {
      T t, beyond;
      const int64_t row = locate(x[j], t, beyond);
      values(table + row * 6 * m, t, beyond, m, g.data(), (T*)nullptr);
      const T w = j < rep ? T(1) : T(nnei - rep);
      for (int a = 0; a < 4; ++a) {
        const T c = w * e[4 * j + a];
        T* oa = o + a * m;
        for (int64_t k = 0; k < m; ++k) oa[k] += c * g[k];
      }
    }
  }
}

template <typename T>
void tabulate_se_a_grad(const T* table, const TableInfo& info, const T* em_x, const T* em,
                        const T* dy, int64_t nnei, int64_t m, T* dem_x, T* dem, int64_t begin,
                        int64_t end) {
  const Locate<T> locate(info);
  std::vector<T> g(m), d(m);
  for (int64_t n = begin; n < end; ++n) {
    const T *x = em_x + n * nnei, *e = em + n * nnei * 4, *dyn = dy + n * 4 * m;
    T *gx = dem_x + n * nnei, *ge = dem + n * nnei * 4;
    std::fill(gx, gx + nnei, T(0));
    std::fill(ge, ge + 4 * nnei, T(0));
    const int64_t rep = nnei > 0 ? repeat_of(x, e, nnei) : 0;
    for (int64_t j = 0; j <= rep && j < nnei; ++j) {
      T t, beyond;
      const int64_t row = locate(x[j], t, beyond);
      values(table + row * 6 * m, t, beyond, m, g.data(), d.data());
      const T w = j < rep ? T(1) : T(nnei - rep);
      T sx = 0;
      for (int a = 0; a < 4; ++a) {
        const T* dya = dyn + a * m;
        T se = 0, sd = 0;
        for (int64_t k = 0; k < m; ++k) {
          se += dya[k] * g[k];
          sd += dya[k] * d[k];
        }
        ge[4 * j + a] = w * se;
        sx += e[4 * j + a] * sd;
      }
      gx[j] = w * sx;
    }
  }
}

#define DPX_TABULATE_INSTANTIATE(T)                                                          \
  template void tabulate_se_a<T>(const T*, const TableInfo&, const T*, const T*, int64_t,   \
                                 int64_t, T*, int64_t, int64_t);                            \
  template void tabulate_se_a_grad<T>(const T*, const TableInfo&, const T*, const T*,       \
                                      const T*, int64_t, int64_t, T*, T*, int64_t, int64_t);
DPX_TABULATE_INSTANTIATE(float)
DPX_TABULATE_INSTANTIATE(double)

}  // namespace dpx::cpu
