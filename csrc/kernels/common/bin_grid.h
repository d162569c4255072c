// The bin grid of a cell list, shared by the CPU search (kernels/cpu/nlist.cpp) and the CUDA
// one (kernels/cuda/nlist_plan.h): plain C++.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dpx {

// Bins per axis nd over [lo, hi] for m atoms, starting from bins of edge `edge` and widening
// them where the atoms are sparse and spread wide, so that there are at most max(64, 8 m) bins
// (memory linear in the atoms). Updates edge; nd is 1 per axis if no finite grid is found.
inline void fit_bin_grid(const double lo[3], const double hi[3], int64_t m, double& edge,
                         double nd[3]) {
  const double max_bins = std::max(64.0, 8.0 * static_cast<double>(m));
  nd[0] = nd[1] = nd[2] = 1.0;
  for (int iter = 0; m > 0 && iter < 64; ++iter) {
    for (int k = 0; k < 3; ++k) nd[k] = std::floor((hi[k] - lo[k]) / edge) + 1.0;
    const double total = nd[0] * nd[1] * nd[2];
    if (total <= max_bins) break;
    edge *= std::cbrt(total / max_bins) * 1.01;
    if (!std::isfinite(edge) || iter == 63) nd[0] = nd[1] = nd[2] = 1.0;
  }
}

}  // namespace dpx
