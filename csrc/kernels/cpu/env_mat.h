// se_e2_a environment matrix and its derivative chain: plain C++ kernels.
// Layout: centers are flat over frames, c = f * nloc + i; ext_coord [nf, nall, 3];
// nlist [nf, nloc, nnei] (-1 = padding, else an index < nall); atype [nf, nloc];
// davg, dstd [ntypes, nnei, 4]. Every per-center routine handles c in [begin, end) so the
// caller can split centers across threads; per-slot results go to a buffer that
// scatter_slots folds into [nf, nall, 3] (deterministic, no atomics).
// One set per instruction-set build (kernels/cpu/isa.h); the op layer calls DPX_CPU_KERNEL.
#pragma once
#include <cstdint>

#include "kernels/common/env_mat_slot.h"
#include "kernels/cpu/isa.h"

namespace dpx::cpu {

using ::dpx::EnvMatShape;  // shared with the CUDA kernels (kernels/common/env_mat_slot.h)

namespace generic {
#include "kernels/cpu/env_mat.inc"
}  // namespace generic

namespace avx2 {
#include "kernels/cpu/env_mat.inc"
}  // namespace avx2

namespace avx512 {
#include "kernels/cpu/env_mat.inc"
}  // namespace avx512

}  // namespace dpx::cpu
