// DeePMD-kit's tabulated se_e2_a embedding (deepmd::tabulate_fusion_se_a, 3.2.0) with the
// arithmetic of its PyTorch twin, dpx.compress.tabulate: per center n over its nnei slots,
//   out[n, a, m] = sum_j w_j em[n, j, a] G_m(em_x[n, j])
// G_m a quintic per interval of the table [nrow, 6 M] (coefficients of channel m at 6m..6m+5,
// intervals of stride0 on [lower, upper), of stride1 on [upper, top)), extended linearly
// outside [lower, top), the rows counted in T. w_j: the first slot whose em_x equals the
// last slot's and whose em[1:4] is 0 (padding) stands for it and every slot after it
// (w = nnei - j there, 0 beyond): a sorted list's trailing padding costs one slot.
// grad: d/d em_x and d/d em of sum(dy * out). Plain C++, no torch headers.
#pragma once
#include <cstdint>

namespace dpx::cpu {

struct TableInfo {
  double lower, upper, top, stride0, stride1;
  int64_t nrow;  // rows of the table
};

template <typename T>
void tabulate_se_a(const T* table, const TableInfo& info, const T* em_x, const T* em,
                   int64_t nnei, int64_t m, T* out, int64_t begin, int64_t end);

template <typename T>
void tabulate_se_a_grad(const T* table, const TableInfo& info, const T* em_x, const T* em,
                        const T* dy, int64_t nnei, int64_t m, T* dem_x, T* dem, int64_t begin,
                        int64_t end);

}  // namespace dpx::cpu
