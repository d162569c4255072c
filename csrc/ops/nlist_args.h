// Argument checks of dpx::neighbor_list and the validation of its cells, shared by the CPU and
// CUDA registrations.
#pragma once
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "kernels/cpu/nlist.h"
#include "ops/checks.h"

namespace dpx::ops::nlist_args {

constexpr const char* kOp = "neighbor_list";
// a cell whose images along one axis exceed this is degenerate for the cut-off, not physics
constexpr int64_t kMaxImages = 10000;

using Result = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline void check(const at::Tensor& coord, const at::Tensor& atype,
                  const std::optional<at::Tensor>& box, double rcut, at::IntArrayRef sel) {
  check_float(coord, kOp, "coord");
  check_dim(coord, 3, kOp, "coord");
  TORCH_CHECK(coord.size(2) == 3, "dpx::", kOp, ": coord must be [nf, nloc, 3], got ",
              coord.sizes());
  check_dtype(atype, at::kLong, kOp, "atype");
  check_dim(atype, 2, kOp, "atype");
  TORCH_CHECK(atype.size(0) == coord.size(0) && atype.size(1) == coord.size(1), "dpx::", kOp,
              ": atype must be [nf, nloc] = [", coord.size(0), ", ", coord.size(1), "], got ",
              atype.sizes());
  check_same_device(atype, coord, kOp, "atype");
  if (box.has_value()) {
    const at::Tensor& b = *box;
    TORCH_CHECK(b.scalar_type() == coord.scalar_type(), "dpx::", kOp,
                ": box must have the dtype of coord (", coord.scalar_type(), "), got ",
                b.scalar_type());
    check_dim(b, 2, kOp, "box");
    TORCH_CHECK(b.size(0) == coord.size(0) && b.size(1) == 9, "dpx::", kOp,
                ": box must be [nf, 9] = [", coord.size(0), ", 9], got ", b.sizes());
    check_same_device(b, coord, kOp, "box");
  }
  TORCH_CHECK(std::isfinite(rcut) && rcut > 0, "dpx::", kOp, ": rcut must be finite and > 0, got ",
              rcut);
  TORCH_CHECK(!sel.empty(), "dpx::", kOp, ": sel must have one entry per type, got []");
  for (size_t t = 0; t < sel.size(); ++t)
    TORCH_CHECK(sel[t] >= 0, "dpx::", kOp, ": sel must be non-negative, got sel[", t, "] = ",
                sel[t]);
  // virtual atoms (< 0) are allowed; a type has a section of the list, so it must be < len(sel)
  TORCH_CHECK(atype.numel() == 0 || atype.max().item<int64_t>() < static_cast<int64_t>(sel.size()),
              "dpx::", kOp, ": atype values must be < len(sel) = ", sel.size(),
              " (one sel entry per type), got ", atype.max().item<int64_t>());
}

// The cells of box [nf, 9] (as double), each checked: finite, of non-zero volume, not so thin
// for rcut that its images would be absurdly many.
inline std::vector<cpu::Cell> make_cells(const double* box, int64_t nf, double rcut) {
  std::vector<cpu::Cell> cells(nf);
  for (int64_t f = 0; f < nf; ++f) {
    const double* h = box + 9 * f;
    bool finite = true;
    for (int k = 0; k < 9; ++k) finite &= std::isfinite(h[k]);
    TORCH_CHECK(finite, "dpx::", kOp, ": box of frame ", f, " has non-finite entries");
    const double na = std::sqrt(h[0] * h[0] + h[1] * h[1] + h[2] * h[2]);
    const double nb = std::sqrt(h[3] * h[3] + h[4] * h[4] + h[5] * h[5]);
    const double nc = std::sqrt(h[6] * h[6] + h[7] * h[7] + h[8] * h[8]);
    // relative to the product of the lengths: a flat cell, whatever its size
    const bool ok = cpu::make_cell(h, cells[f]) && std::abs(cells[f].det) > 1e-10 * na * nb * nc;
    TORCH_CHECK(ok, "dpx::", kOp, ": box of frame ", f,
                " has a cell of zero volume (rows of box are the three cell vectors)");
    for (int k = 0; k < 3; ++k)
      TORCH_CHECK(rcut / cells[f].face[k] <= kMaxImages, "dpx::", kOp, ": box of frame ", f,
                  " is too thin for rcut = ", rcut, ": face distance ", cells[f].face[k],
                  " along cell vector ", k);
  }
  return cells;
}

// The op: check, then run(float{}) or run(double{}) for the dtype of coord.
template <typename Run>
inline Result checked_run(const at::Tensor& coord, const at::Tensor& atype,
                          const std::optional<at::Tensor>& box, double rcut, at::IntArrayRef sel,
                          Run&& run) {
  check(coord, atype, box, rcut, sel);
  if (coord.scalar_type() == at::kFloat) return run(float{});
  return run(double{});
}

}  // namespace dpx::ops::nlist_args
