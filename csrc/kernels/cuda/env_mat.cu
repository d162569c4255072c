// se_e2_a environment matrix and its derivative chain on CUDA; see env_mat.h.
#include <cmath>

#include "kernels/cuda/env_mat.h"
#include "kernels/cuda/launch.cuh"

namespace dpx::cuda {
namespace {

// A slot's pair, or why it has none. Valid: 0 <= j < nall and 0 <= type < ntypes.
enum class Slot { kPad, kPair, kBad };

template <typename T>
struct SlotInfo {
  Slot kind;
  int64_t f, i, j, type;
};

template <typename T>
__device__ inline SlotInfo<T> slot_info(int64_t idx, const int64_t* nlist, const int64_t* atype,
                                        const EnvMatShape& s, int64_t ntypes) {
  const int64_t c = idx / s.nnei;
  SlotInfo<T> out{Slot::kPair, c / s.nloc, c % s.nloc, nlist[idx], atype[c]};
  if (out.type < 0 || out.type >= ntypes || out.j < -1 || out.j >= s.nall)
    out.kind = Slot::kBad;
  else if (out.j < 0)
    out.kind = Slot::kPad;
  return out;
}

template <typename T>
__device__ inline T quiet_nan() {
  return T(NAN);
}

template <typename T>
__global__ void env_mat_kernel(const T* ext_coord, const int64_t* nlist, const int64_t* atype,
                               const T* davg, const T* dstd, T* em, EnvMatShape s,
                               int64_t ntypes) {
  const int64_t n = s.nf * s.nloc * s.nnei;
  DPX_GRID_LOOP(idx, n) {
    const SlotInfo<T> q = slot_info<T>(idx, nlist, atype, s, ntypes);
    T* out = em + idx * 4;
    if (q.kind == Slot::kBad) {
      for (int a = 0; a < 4; ++a) out[a] = quiet_nan<T>();
      continue;
    }
    const int64_t k = idx % s.nnei;
    const T* avg = davg + (q.type * s.nnei + k) * 4;
    const T* std = dstd + (q.type * s.nnei + k) * 4;
    if (q.kind == Slot::kPad) {  // raw row 0, as on CPU
      for (int a = 0; a < 4; ++a) out[a] = (T(0) - avg[a]) / std[a];
      continue;
    }
    T d[3], r2;
    slot::pair_vector(ext_coord, s, q.f, q.i, q.j, d, r2);
    slot::em_row(d, r2, avg, std, s, out);
  }
}

// out[f, j] += g, out[f, i] -= g
template <typename T>
__device__ inline void scatter(T* out, const EnvMatShape& s, const SlotInfo<T>& q, const T g[3]) {
  T* oj = out + (q.f * s.nall + q.j) * 3;
  T* oi = out + (q.f * s.nall + q.i) * 3;
  for (int a = 0; a < 3; ++a) {
    atomicAdd(oj + a, g[a]);
    atomicAdd(oi + a, -g[a]);
  }
}

// a bad slot poisons its center's row of out, so that bad input is visible
template <typename T>
__device__ inline void poison(T* out, const EnvMatShape& s, const SlotInfo<T>& q) {
  for (int a = 0; a < 3; ++a) out[(q.f * s.nall + q.i) * 3 + a] = quiet_nan<T>();
}

template <typename T>
__global__ void vjp_kernel(const T* grad_em, const T* ext_coord, const int64_t* nlist,
                           const int64_t* atype, const T* dstd, T* out, EnvMatShape s,
                           int64_t ntypes) {
  const int64_t n = s.nf * s.nloc * s.nnei;
  DPX_GRID_LOOP(idx, n) {
    const SlotInfo<T> q = slot_info<T>(idx, nlist, atype, s, ntypes);
    if (q.kind == Slot::kBad) poison(out, s, q);
    if (q.kind != Slot::kPair) continue;
    T d[3], r2, g[3];
    slot::pair_vector(ext_coord, s, q.f, q.i, q.j, d, r2);
    slot::vjp_row(grad_em + idx * 4, d, r2, dstd + (q.type * s.nnei + idx % s.nnei) * 4, s, g);
    scatter(out, s, q, g);
  }
}

template <typename T>
__global__ void jvp_kernel(const T* tangent, const T* ext_coord, const int64_t* nlist,
                           const int64_t* atype, const T* dstd, T* out, EnvMatShape s,
                           int64_t ntypes) {
  const int64_t n = s.nf * s.nloc * s.nnei;
  DPX_GRID_LOOP(idx, n) {
    const SlotInfo<T> q = slot_info<T>(idx, nlist, atype, s, ntypes);
    T* o = out + idx * 4;
    if (q.kind != Slot::kPair) {
      const T v = q.kind == Slot::kPad ? T(0) : quiet_nan<T>();
      for (int a = 0; a < 4; ++a) o[a] = v;
      continue;
    }
    T d[3], r2, u[3];
    slot::pair_vector(ext_coord, s, q.f, q.i, q.j, d, r2);
    slot::pair_tangent(tangent, s, q.f, q.i, q.j, u);
    slot::jvp_row(u, d, r2, dstd + (q.type * s.nnei + idx % s.nnei) * 4, s, o);
  }
}

template <typename T>
__global__ void hvp_kernel(const T* grad_em, const T* tangent, const T* ext_coord,
                           const int64_t* nlist, const int64_t* atype, const T* dstd, T* out,
                           EnvMatShape s, int64_t ntypes) {
  const int64_t n = s.nf * s.nloc * s.nnei;
  DPX_GRID_LOOP(idx, n) {
    const SlotInfo<T> q = slot_info<T>(idx, nlist, atype, s, ntypes);
    if (q.kind == Slot::kBad) poison(out, s, q);
    if (q.kind != Slot::kPair) continue;
    T d[3], r2, u[3], h[3];
    slot::pair_vector(ext_coord, s, q.f, q.i, q.j, d, r2);
    slot::pair_tangent(tangent, s, q.f, q.i, q.j, u);
    slot::hvp_row(grad_em + idx * 4, u, d, r2, dstd + (q.type * s.nnei + idx % s.nnei) * 4, s, h);
    scatter(out, s, q, h);
  }
}

}  // namespace

// one thread per slot
template <typename T>
void env_mat_se_a(const T* ext_coord, const int64_t* nlist, const int64_t* atype, const T* davg,
                  const T* dstd, T* em, const EnvMatShape& s, int64_t ntypes,
                  cudaStream_t stream) {
  launch(env_mat_kernel<T>, s.nf * s.nloc * s.nnei, kThreads, stream, ext_coord, nlist, atype,
         davg, dstd, em, s, ntypes);
}

template <typename T>
void env_mat_se_a_vjp(const T* grad_em, const T* ext_coord, const int64_t* nlist,
                      const int64_t* atype, const T* dstd, T* out, const EnvMatShape& s,
                      int64_t ntypes, cudaStream_t stream) {
  launch(vjp_kernel<T>, s.nf * s.nloc * s.nnei, kThreads, stream, grad_em, ext_coord, nlist,
         atype, dstd, out, s, ntypes);
}

template <typename T>
void env_mat_se_a_jvp(const T* tangent, const T* ext_coord, const int64_t* nlist,
                      const int64_t* atype, const T* dstd, T* out, const EnvMatShape& s,
                      int64_t ntypes, cudaStream_t stream) {
  launch(jvp_kernel<T>, s.nf * s.nloc * s.nnei, kThreads, stream, tangent, ext_coord, nlist,
         atype, dstd, out, s, ntypes);
}

template <typename T>
void env_mat_se_a_hvp(const T* grad_em, const T* tangent, const T* ext_coord,
                      const int64_t* nlist, const int64_t* atype, const T* dstd, T* out,
                      const EnvMatShape& s, int64_t ntypes, cudaStream_t stream) {
  launch(hvp_kernel<T>, s.nf * s.nloc * s.nnei, kThreads, stream, grad_em, tangent, ext_coord,
         nlist, atype, dstd, out, s, ntypes);
}

#define DPX_INSTANTIATE(T)                                                                     \
  template void env_mat_se_a<T>(const T*, const int64_t*, const int64_t*, const T*, const T*,  \
                                T*, const EnvMatShape&, int64_t, cudaStream_t);                \
  template void env_mat_se_a_vjp<T>(const T*, const T*, const int64_t*, const int64_t*,        \
                                    const T*, T*, const EnvMatShape&, int64_t, cudaStream_t);  \
  template void env_mat_se_a_jvp<T>(const T*, const T*, const int64_t*, const int64_t*,        \
                                    const T*, T*, const EnvMatShape&, int64_t, cudaStream_t);  \
  template void env_mat_se_a_hvp<T>(const T*, const T*, const T*, const int64_t*,              \
                                    const int64_t*, const T*, T*, const EnvMatShape&, int64_t, \
                                    cudaStream_t);
DPX_INSTANTIATE(float)
DPX_INSTANTIATE(double)
#undef DPX_INSTANTIATE

}  // namespace dpx::cuda
