// The per-slot math of the se_e2_a environment matrix and its derivative chain, shared by the
// CPU kernels (kernels/cpu/env_mat.cpp) and the CUDA kernels (kernels/cuda/env_mat.cu), so
// both devices run the same expressions in the same order. Plain C++ (no torch headers).
//
// Every function is `static inline`: internal linkage in each translation unit, because
// kernels/cpu/env_mat.cpp is compiled twice (baseline and -mavx2 -mfma, kernels/cpu/isa.h)
// and an externally visible inline function could be merged across the two builds.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define DPX_HD __host__ __device__
#else
#define DPX_HD
#endif

namespace dpx {

struct EnvMatShape {
  int64_t nf, nloc, nall, nnei;
  double rcut, rcut_smth, protection;
};

namespace slot {

// Radial parts of one slot: g0 = sw/rho and g1 = sw/rho^2 (rho = r + protection) with their
// first and second derivatives in r. sw = u^3(-6u^2 + 15u - 10) + 1, u = (r - rs)/(rc - rs)
// clamped to [0, 1]: dsw/du = -30 u^2 (u - 1)^2, d2sw/du2 = -60 u (2u - 1)(u - 1); both are
// zero outside (rs, rc), where the clamp is flat.
template <typename T>
struct Radial {
  T r, g0, dg0, ddg0, g1, dg1, ddg1;
};

template <typename T>
static inline DPX_HD Radial<T> radial(T r2, const EnvMatShape& s) {
  using std::sqrt;
  Radial<T> q;
  q.r = sqrt(r2);
  const T r = q.r;
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
  q.g0 = sw * i1;
  q.dg0 = dsw * i1 - sw * i2;
  q.ddg0 = ddsw * i1 - T(2) * dsw * i2 + T(2) * sw * i3;
  q.g1 = sw * i2;
  q.dg1 = dsw * i2 - T(2) * sw * i3;
  q.ddg1 = ddsw * i2 - T(4) * dsw * i3 + T(6) * sw * i4;
  return q;
}

// d = x_j - x_i and r^2 of the pair (f, i) -> j
template <typename T>
static inline DPX_HD void pair_vector(const T* ext_coord, const EnvMatShape& s, int64_t f,
                                      int64_t i, int64_t j, T d[3], T& r2) {
  const T* xi = ext_coord + (f * s.nall + i) * 3;
  const T* xj = ext_coord + (f * s.nall + j) * 3;
  r2 = 0;
  for (int a = 0; a < 3; ++a) {
    d[a] = xj[a] - xi[a];
    r2 += d[a] * d[a];
  }
}

// t_j - t_i of the pair
template <typename T>
static inline DPX_HD void pair_tangent(const T* tangent, const EnvMatShape& s, int64_t f,
                                       int64_t i, int64_t j, T u[3]) {
  for (int a = 0; a < 3; ++a)
    u[a] = tangent[(f * s.nall + j) * 3 + a] - tangent[(f * s.nall + i) * 3 + a];
}

// normalized row of a filled slot: out = (raw - avg) / std, raw = (g0, g1 d)
template <typename T>
static inline DPX_HD void em_row(const T d[3], T r2, const T* avg, const T* std,
                                 const EnvMatShape& s, T out[4]) {
  const Radial<T> q = radial(r2, s);
  T raw[4] = {q.g0, q.g1 * d[0], q.g1 * d[1], q.g1 * d[2]};
  for (int a = 0; a < 4; ++a) out[a] = (raw[a] - avg[a]) / std[a];
}

// grad of <ge, em_row> wrt d (ge the slot's 4 entries of grad_em, std its 4 of dstd)
template <typename T>
static inline DPX_HD void vjp_row(const T* ge, const T d[3], T r2, const T* std,
                                  const EnvMatShape& s, T g[3]) {
  const Radial<T> q = radial(r2, s);
  T w[4];
  for (int a = 0; a < 4; ++a) w[a] = ge[a] / std[a];
  const T wd = w[1] * d[0] + w[2] * d[1] + w[3] * d[2];
  const T b = (w[0] * q.dg0 + wd * q.dg1) / q.r;
  for (int a = 0; a < 3; ++a) g[a] = b * d[a] + q.g1 * w[a + 1];
}

// J u for the slot (u = t_j - t_i): 4 entries
template <typename T>
static inline DPX_HD void jvp_row(const T u[3], const T d[3], T r2, const T* std,
                                  const EnvMatShape& s, T o[4]) {
  const Radial<T> q = radial(r2, s);
  const T du = (d[0] * u[0] + d[1] * u[1] + d[2] * u[2]) / q.r;
  o[0] = q.dg0 * du / std[0];
  for (int a = 0; a < 3; ++a) o[a + 1] = (q.dg1 * du * d[a] + q.g1 * u[a]) / std[a + 1];
}

// sum_a ge_a H_a u for the slot: 3 entries
template <typename T>
static inline DPX_HD void hvp_row(const T* ge, const T u[3], const T d[3], T r2, const T* std,
                                  const EnvMatShape& s, T h[3]) {
  const Radial<T> q = radial(r2, s);
  T w[4];
  for (int a = 0; a < 4; ++a) w[a] = ge[a] / std[a];
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

}  // namespace slot
}  // namespace dpx
