#include "kernels/cpu/env_mat.h"

#include <cmath>

namespace dpx::cpu::DPX_KERNEL_ISA {
namespace {

// Radial parts of one slot: g0 = sw/rho and g1 = sw/rho^2 (rho = r + protection) with their
// first and second derivatives in r. sw = u^3(-6u^2 + 15u - 10) + 1, u = (r - rs)/(rc - rs)
// clamped to [0, 1]: dsw/du = -30 u^2 (u - 1)^2, d2sw/du2 = -60 u (2u - 1)(u - 1); both are
// zero outside (rs, rc), where the clamp is flat.
template <typename T>
struct Radial {
  T r, g0, dg0, ddg0, g1, dg1, ddg1;

  Radial(T r2, const EnvMatShape& s) {
    r = std::sqrt(r2);
    const T rs = T(s.rcut_smth), rc = T(s.rcut), w = rc - rs;
    const T rcl = r < rs ? rs : (r > rc ? rc : r);
    const T u = (rcl - rs) / w;
    const T sw = u * u * u * (T(-6) * u * u + T(15) * u - T(10)) + T(1);
    T dsw = 0, ddsw = 0;
    if (r > rs && r < rc) {
      dsw = T(-30) * u * u * (u - T(1)) * (u - T(1)) / w;
      ddsw = T(-60) * u * (T(2) * u - T(1)) * (u - T(1)) / (w * w);
    }
    const T rho = r + T(s.protection), i1 = T(1) / rho, i2 = i1 * i1, i3 = i2 * i1, i4 = i2 * i2;
    g0 = sw * i1;
    dg0 = dsw * i1 - sw * i2;
    ddg0 = ddsw * i1 - T(2) * dsw * i2 + T(2) * sw * i3;
    g1 = sw * i2;
    dg1 = dsw * i2 - T(2) * sw * i3;
    ddg1 = ddsw * i2 - T(4) * dsw * i3 + T(6) * sw * i4;
  }
};

// d = x_j - x_i of slot (c, k); returns false for padding
template <typename T>
inline bool slot_vector(const T* ext_coord, const int64_t* nlist, const EnvMatShape& s, int64_t c,
                        int64_t k, T d[3], T& r2) {
  const int64_t j = nlist[c * s.nnei + k];
  if (j < 0) return false;
  const int64_t f = c / s.nloc, i = c % s.nloc;
  const T* xi = ext_coord + (f * s.nall + i) * 3;
  const T* xj = ext_coord + (f * s.nall + j) * 3;
  r2 = 0;
  for (int a = 0; a < 3; ++a) {
    d[a] = xj[a] - xi[a];
    r2 += d[a] * d[a];
  }
  return true;
}

// t_j - t_i for the slot's pair
template <typename T>
inline void slot_tangent(const T* tangent, const int64_t* nlist, const EnvMatShape& s, int64_t c,
                         int64_t k, T u[3]) {
  const int64_t f = c / s.nloc, i = c % s.nloc, j = nlist[c * s.nnei + k];
  for (int a = 0; a < 3; ++a) u[a] = tangent[(f * s.nall + j) * 3 + a] - tangent[(f * s.nall + i) * 3 + a];
}

}  // namespace

template <typename T>
void env_mat_se_a(const T* ext_coord, const int64_t* nlist, const int64_t* atype, const T* davg,
                  const T* dstd, T* em, const EnvMatShape& s, int64_t begin, int64_t end) {
  for (int64_t c = begin; c < end; ++c) {
    const T* avg = davg + atype[c] * s.nnei * 4;
    const T* std = dstd + atype[c] * s.nnei * 4;
    for (int64_t k = 0; k < s.nnei; ++k) {
      T raw[4] = {0, 0, 0, 0}, d[3], r2;
      if (slot_vector(ext_coord, nlist, s, c, k, d, r2)) {
        const Radial<T> q(r2, s);
        raw[0] = q.g0;
        for (int a = 0; a < 3; ++a) raw[a + 1] = q.g1 * d[a];
      }
      T* out = em + (c * s.nnei + k) * 4;
      for (int a = 0; a < 4; ++a) out[a] = (raw[a] - avg[k * 4 + a]) / std[k * 4 + a];
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
      const Radial<T> q(r2, s);
      const T* ge = grad_em + (c * s.nnei + k) * 4;
      T w[4];
      for (int a = 0; a < 4; ++a) w[a] = ge[a] / std[k * 4 + a];
      const T wd = w[1] * d[0] + w[2] * d[1] + w[3] * d[2];
      const T b = (w[0] * q.dg0 + wd * q.dg1) / q.r;
      for (int a = 0; a < 3; ++a) g[a] = b * d[a] + q.g1 * w[a + 1];
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
      const Radial<T> q(r2, s);
      slot_tangent(tangent, nlist, s, c, k, u);
      const T du = (d[0] * u[0] + d[1] * u[1] + d[2] * u[2]) / q.r;
      o[0] = q.dg0 * du / std[k * 4];
      for (int a = 0; a < 3; ++a) o[a + 1] = (q.dg1 * du * d[a] + q.g1 * u[a]) / std[k * 4 + a + 1];
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
      const Radial<T> q(r2, s);
      slot_tangent(tangent, nlist, s, c, k, u);
      const T* ge = grad_em + (c * s.nnei + k) * 4;
      T w[4];
      for (int a = 0; a < 4; ++a) w[a] = ge[a] / std[k * 4 + a];
      const T wd = w[1] * d[0] + w[2] * d[1] + w[3] * d[2];
      const T wu = w[1] * u[0] + w[2] * u[1] + w[3] * u[2];
      const T du = d[0] * u[0] + d[1] * u[1] + d[2] * u[2];
      // h_e = A du d_e / r^2 + B (u_e / r - du d_e / r^3) + g1'/r (du w_e + d_e wu)
      const T A = w[0] * q.ddg0 + wd * q.ddg1, B = w[0] * q.dg0 + wd * q.dg1;
      const T ir = T(1) / q.r, ir2 = ir * ir;
      for (int e = 0; e < 3; ++e)
        h[e] = A * du * d[e] * ir2 + B * (u[e] * ir - du * d[e] * ir2 * ir) +
               q.dg1 * ir * (du * w[e + 1] + d[e] * wu);
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
