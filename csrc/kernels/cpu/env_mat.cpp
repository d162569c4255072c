#include "kernels/cpu/env_mat.h"

#include <cmath>

namespace dpx::cpu::DPX_KERNEL_ISA {
namespace {

// d = x_j - x_i of slot (c, k); returns false for padding
template <typename T>
inline bool slot_vector(const T* ext_coord, const int64_t* nlist, const EnvMatShape& s, int64_t c,
                        int64_t k, T d[3], T& r2) {
  const int64_t j = nlist[c * s.nnei + k];
  if (j < 0) return false;
  slot::pair_vector(ext_coord, s, c / s.nloc, c % s.nloc, j, d, r2);
  return true;
}

// t_j - t_i for the slot's pair
template <typename T>
inline void slot_tangent(const T* tangent, const int64_t* nlist, const EnvMatShape& s, int64_t c,
                         int64_t k, T u[3]) {
  slot::pair_tangent(tangent, s, c / s.nloc, c % s.nloc, nlist[c * s.nnei + k], u);
}

}  // namespace

template <typename T>
void env_mat_se_a(const T* ext_coord, const int64_t* nlist, const int64_t* atype, const T* davg,
                  const T* dstd, T* em, const EnvMatShape& s, int64_t begin, int64_t end) {
  for (int64_t c = begin; c < end; ++c) {
    const T* avg = davg + atype[c] * s.nnei * 4;
    const T* std = dstd + atype[c] * s.nnei * 4;
    for (int64_t k = 0; k < s.nnei; ++k) {
      T d[3], r2;
      T* out = em + (c * s.nnei + k) * 4;
      if (slot_vector(ext_coord, nlist, s, c, k, d, r2))
        slot::em_row(d, r2, avg + k * 4, std + k * 4, s, out);
      else  // padding: raw row 0
        for (int a = 0; a < 4; ++a) out[a] = (T(0) - avg[k * 4 + a]) / std[k * 4 + a];
    }
  }
}

template <typename T>
void env_mat_se_a_vjp_slots(const T* grad_em, const T* ext_coord, const int64_t* nlist,
                            const int64_t* atype, const T* dstd, T* g_slot, const EnvMatShape& s,
                            int64_t begin, int64_t end) {
  for (int64_t c = begin; c < end; ++c) {
    const T* std = dstd + atype[c] * s.nnei * 4;
    for (int64_t k = 0; k < s.nnei; ++k) {
      T* g = g_slot + (c * s.nnei + k) * 3;
      T d[3], r2;
      if (!slot_vector(ext_coord, nlist, s, c, k, d, r2)) {
        g[0] = g[1] = g[2] = 0;
        continue;
      }
      slot::vjp_row(grad_em + (c * s.nnei + k) * 4, d, r2, std + k * 4, s, g);
    }
  }
}

template <typename T>
void env_mat_se_a_jvp(const T* tangent, const T* ext_coord, const int64_t* nlist,
                      const int64_t* atype, const T* dstd, T* out, const EnvMatShape& s,
                      int64_t begin, int64_t end) {
  for (int64_t c = begin; c < end; ++c) {
    const T* std = dstd + atype[c] * s.nnei * 4;
    for (int64_t k = 0; k < s.nnei; ++k) {
      T* o = out + (c * s.nnei + k) * 4;
      T d[3], r2, u[3];
      if (!slot_vector(ext_coord, nlist, s, c, k, d, r2)) {
        o[0] = o[1] = o[2] = o[3] = 0;
        continue;
      }
      slot_tangent(tangent, nlist, s, c, k, u);
      slot::jvp_row(u, d, r2, std + k * 4, s, o);
    }
  }
}

template <typename T>
void env_mat_se_a_hvp_slots(const T* grad_em, const T* tangent, const T* ext_coord,
                            const int64_t* nlist, const int64_t* atype, const T* dstd, T* h_slot,
                            const EnvMatShape& s, int64_t begin, int64_t end) {
  for (int64_t c = begin; c < end; ++c) {
    const T* std = dstd + atype[c] * s.nnei * 4;
    for (int64_t k = 0; k < s.nnei; ++k) {
      T* h = h_slot + (c * s.nnei + k) * 3;
      T d[3], r2, u[3];
      if (!slot_vector(ext_coord, nlist, s, c, k, d, r2)) {
        h[0] = h[1] = h[2] = 0;
        continue;
      }
      slot_tangent(tangent, nlist, s, c, k, u);
      slot::hvp_row(grad_em + (c * s.nnei + k) * 4, u, d, r2, std + k * 4, s, h);
    }
  }
}

template <typename T>
void scatter_slots(const T* slot, const int64_t* nlist, T* out, const EnvMatShape& s) {
  for (int64_t c = 0; c < s.nf * s.nloc; ++c) {
    const int64_t f = c / s.nloc, i = c % s.nloc;
    T* oi = out + (f * s.nall + i) * 3;
    for (int64_t k = 0; k < s.nnei; ++k) {
      const int64_t j = nlist[c * s.nnei + k];
      if (j < 0) continue;
      const T* g = slot + (c * s.nnei + k) * 3;
      T* oj = out + (f * s.nall + j) * 3;
      for (int a = 0; a < 3; ++a) {
        oj[a] += g[a];
        oi[a] -= g[a];
      }
    }
  }
}

#define DPX_INSTANTIATE(T)                                                                       \
  template void env_mat_se_a<T>(const T*, const int64_t*, const int64_t*, const T*, const T*, T*, \
                                const EnvMatShape&, int64_t, int64_t);                           \
  template void env_mat_se_a_vjp_slots<T>(const T*, const T*, const int64_t*, const int64_t*,    \
                                          const T*, T*, const EnvMatShape&, int64_t, int64_t);   \
  template void env_mat_se_a_jvp<T>(const T*, const T*, const int64_t*, const int64_t*, const T*, \
                                    T*, const EnvMatShape&, int64_t, int64_t);                   \
  template void env_mat_se_a_hvp_slots<T>(const T*, const T*, const T*, const int64_t*,          \
                                          const int64_t*, const T*, T*, const EnvMatShape&,      \
                                          int64_t, int64_t);                                     \
  template void scatter_slots<T>(const T*, const int64_t*, T*, const EnvMatShape&);
DPX_INSTANTIATE(float)
DPX_INSTANTIATE(double)
#undef DPX_INSTANTIATE

}  // namespace dpx::cpu::DPX_KERNEL_ISA
