// se_e2_a environment matrix and its derivative chain: CUDA kernels. Same layout and math as
// kernels/cpu/env_mat.h (the per-slot expressions are shared: kernels/common/env_mat_slot.h).
// Each function enqueues its kernels on `stream` and returns; none synchronizes. One thread
// per slot (c, k), c = f * nloc + i. vjp and hvp accumulate into out [nf, nall, 3] with
// atomicAdd (out must be zeroed by the caller): the sum order, hence the last bits, may differ
// from run to run and from the CPU, which folds slots in a fixed order.
// Inputs are not range-checked on the device (that would need a host round trip): a slot
// whose nlist entry is >= nall or < -1, or a center whose type is outside [0, ntypes), gets
// NaN in its outputs instead of an out-of-bounds read.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/common/env_mat_slot.h"

namespace dpx::cuda {

template <typename T>
void env_mat_se_a(const T* ext_coord, const int64_t* nlist, const int64_t* atype, const T* davg,
                  const T* dstd, T* em, const EnvMatShape& s, int64_t ntypes, cudaStream_t stream);

template <typename T>
void env_mat_se_a_vjp(const T* grad_em, const T* ext_coord, const int64_t* nlist,
                      const int64_t* atype, const T* dstd, T* out, const EnvMatShape& s,
                      int64_t ntypes, cudaStream_t stream);

template <typename T>
void env_mat_se_a_jvp(const T* tangent, const T* ext_coord, const int64_t* nlist,
                      const int64_t* atype, const T* dstd, T* out, const EnvMatShape& s,
                      int64_t ntypes, cudaStream_t stream);

template <typename T>
void env_mat_se_a_hvp(const T* grad_em, const T* tangent, const T* ext_coord,
                      const int64_t* nlist, const int64_t* atype, const T* dstd, T* out,
                      const EnvMatShape& s, int64_t ntypes, cudaStream_t stream);

}  // namespace dpx::cuda
