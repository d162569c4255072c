// se_e2_a environment matrix and its derivative chain: plain C++ kernels.
// Layout: centers are flat over frames, c = f * nloc + i; ext_coord [nf, nall, 3];
// nlist [nf, nloc, nnei] (-1 = padding, else an index < nall); atype [nf, nloc];
// davg, dstd [ntypes, nnei, 4]. Every per-center routine handles c in [begin, end) so the
// caller can split centers across threads; per-slot results go to a buffer that
// scatter_slots folds into [nf, nall, 3] (deterministic, no atomics).
#pragma once
#include <cstdint>

namespace dpx::cpu {

struct EnvMatShape {
  int64_t nf, nloc, nall, nnei;
  double rcut, rcut_smth, protection;
};

template <typename T>
void env_mat_se_a(const T* ext_coord, const int64_t* nlist, const int64_t* atype, const T* davg,
                  const T* dstd, T* em, const EnvMatShape& s, int64_t begin, int64_t end);

// grad of <grad_em, em> wrt d = x_j - x_i, per slot: g_slot [nf, nloc, nnei, 3]
template <typename T>
void env_mat_se_a_vjp_slots(const T* grad_em, const T* ext_coord, const int64_t* nlist,
                            const int64_t* atype, const T* dstd, T* g_slot, const EnvMatShape& s,
                            int64_t begin, int64_t end);

// J t: out [nf, nloc, nnei, 4]
template <typename T>
void env_mat_se_a_jvp(const T* tangent, const T* ext_coord, const int64_t* nlist,
                      const int64_t* atype, const T* dstd, T* out, const EnvMatShape& s,
                      int64_t begin, int64_t end);

// sum_a grad_em_a H_a (t_j - t_i) per slot: h_slot [nf, nloc, nnei, 3]
template <typename T>
void env_mat_se_a_hvp_slots(const T* grad_em, const T* tangent, const T* ext_coord,
                            const int64_t* nlist, const int64_t* atype, const T* dstd, T* h_slot,
                            const EnvMatShape& s, int64_t begin, int64_t end);

// out[f, j] += slot, out[f, i] -= slot for every filled slot; out [nf, nall, 3] pre-zeroed
template <typename T>
void scatter_slots(const T* slot, const int64_t* nlist, T* out, const EnvMatShape& s);

}  // namespace dpx::cpu
