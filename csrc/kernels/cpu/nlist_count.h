// The counting pass of neighbor statistics (dpx::neighbor_stat): per center, the neighbors of
// each type within rcut and the closest one, the numbers kernels/cpu/nlist.h's search gives,
// in vectors. The centers of one bin share their candidates: the atoms of every bin within
// reach of that bin, copied once, grouped by type, as x, y, z arrays. A center then counts a
// type's neighbors as one masked sum over that type's segment, with no branch and no list.
// One set per instruction-set build (kernels/cpu/isa.h); the op layer calls DPX_CPU_KERNEL.
#pragma once
#include <cstdint>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/nlist.h"

namespace dpx::cpu::generic {
#include "kernels/cpu/nlist_count.inc"
}  // namespace dpx::cpu::generic

namespace dpx::cpu::avx2 {
#include "kernels/cpu/nlist_count.inc"
}  // namespace dpx::cpu::avx2

namespace dpx::cpu::avx512 {
#include "kernels/cpu/nlist_count.inc"
}  // namespace dpx::cpu::avx512
