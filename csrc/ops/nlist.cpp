// dpx::neighbor_list on CPU: checks (ops/nlist_args.h, shared with CUDA), then two passes
// over the frames: the ghosts of every frame (serial, linear) fix nall = max over frames; then
// per frame the extended system is written and its centers are searched in parallel. Spec: reference.neighbor_list.
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "kernels/cpu/nlist.h"
#include "kernels/cpu/nlist_count.h"
#include "ops/nlist_args.h"

namespace dpx::ops {
namespace {

using nlist_args::kOp;
using Result = nlist_args::Result;

template <typename T>
bool all_finite(const T* x, int64_t n) {
  bool ok = true;
  for (int64_t k = 0; k < n; ++k) ok &= std::isfinite(x[k]);
  return ok;
}

template <typename T>
Result run(const at::Tensor& coord_in, const at::Tensor& atype_in,
           const std::optional<at::Tensor>& box_in, double rcut, at::IntArrayRef sel_in) {
  const at::Tensor coord = coord_in.contiguous();
  const at::Tensor atype = atype_in.contiguous();
  const at::Tensor box = box_in.has_value() ? box_in->contiguous() : at::Tensor();
  const int64_t nf = coord.size(0), nloc = coord.size(1);
  const std::vector<int64_t> sel(sel_in.begin(), sel_in.end());
  int64_t nnei = 0;
  for (int64_t s : sel) nnei += s;
  const cpu::NlistShape shape{nloc, static_cast<int64_t>(sel.size()), nnei, rcut};
  const T* x = coord.data_ptr<T>();
  const int64_t* types = atype.data_ptr<int64_t>();
  const T* bx = box.defined() ? box.data_ptr<T>() : nullptr;
  TORCH_CHECK(all_finite(x, coord.numel()), "dpx::", kOp, ": coord has non-finite entries");

  // pass 1: cells and ghost counts of every frame
  const std::vector<cpu::Cell> cells =
      bx ? nlist_args::make_cells(box.to(at::kDouble).contiguous().data_ptr<double>(), nf, rcut)
         : std::vector<cpu::Cell>();
  std::vector<cpu::Ghosts<T>> ghosts(nf);
  int64_t nall = nloc;
  for (int64_t f = 0; f < nf; ++f) {
    cpu::plan_ghosts<T>(x + 3 * nloc * f, types + nloc * f, nloc, bx ? &cells[f] : nullptr, rcut,
                        ghosts[f]);
    nall = std::max(nall, ghosts[f].nall);
  }

  // frame padding: mapping 0, ext_atype -1, shift 0
  const auto long_opts = coord.options().dtype(at::kLong);
  at::Tensor mapping = at::zeros({nf, nall}, long_opts);
  at::Tensor ext_atype = at::full({nf, nall}, -1, long_opts);
  at::Tensor shift = at::zeros({nf, nall, 3}, coord.options());
  at::Tensor nlist = at::empty({nf, nloc, nnei}, long_opts);
  at::Tensor nnei_max = at::empty({nf, shape.ntypes}, long_opts);
  at::Tensor min_dist = at::empty({nf}, coord.options());

  // pass 2: per frame, the extended system, its cell list and the search. Many frames (the
  // statistics' chunks, batches): whole frames per thread, no barrier per frame; few frames
  // (a training step's): each frame's centers split over the threads.
  const bool by_frame = nf >= 2 * at::get_num_threads();
  auto frame = [&](int64_t f, std::vector<T>& ext, std::vector<int64_t>& counts,
                   std::vector<T>& min_d2, cpu::CellList<T>& cl, cpu::Scratch<T>& scratch) {
    const cpu::Ghosts<T>& g = ghosts[f];
    int64_t* map_f = mapping.data_ptr<int64_t>() + nall * f;
    int64_t* type_f = ext_atype.data_ptr<int64_t>() + nall * f;
    T* shift_f = shift.data_ptr<T>() + 3 * nall * f;
    const int64_t written = cpu::extend_and_bin<T>(g, x + 3 * nloc * f, types + nloc * f,
                                                   bx ? bx + 9 * f : nullptr, rcut, map_f,
                                                   type_f, shift_f, ext, cl);
    TORCH_CHECK(written == g.nall, "dpx::", kOp, ": internal error, ", written,
                " extended atoms written for ", g.nall, " planned");
    int64_t* nlist_f = nlist.data_ptr<int64_t>() + nloc * nnei * f;
    cpu::virtual_rows<T>(types + nloc * f, shape, nlist_f, counts.data(), min_d2.data());
    const int64_t ncenter = static_cast<int64_t>(cl.centers.size());
    if (by_frame) {
      cpu::search<T>(cl, sel.data(), shape, 0, ncenter, scratch, nlist_f, counts.data(),
                     min_d2.data());
    } else {
      at::parallel_for(0, ncenter, 32, [&](int64_t begin, int64_t end) {
        cpu::Scratch<T> mine;
        cpu::search<T>(cl, sel.data(), shape, begin, end, mine, nlist_f, counts.data(),
                       min_d2.data());
      });
    }
    cpu::reduce_stats<T>(counts.data(), min_d2.data(), shape,
                         nnei_max.data_ptr<int64_t>() + shape.ntypes * f,
                         min_dist.data_ptr<T>() + f);
  };
  auto frames = [&](int64_t begin, int64_t end) {
    std::vector<T> ext, min_d2(nloc);
    std::vector<int64_t> counts(nloc * shape.ntypes);
    cpu::CellList<T> cl;
    cpu::Scratch<T> scratch;
    for (int64_t f = begin; f < end; ++f) frame(f, ext, counts, min_d2, cl, scratch);
  };
  if (by_frame) {
    at::parallel_for(0, nf, 1, frames);
  } else {
    frames(0, nf);
  }
  return {mapping, ext_atype, shift, nlist, nnei_max, min_dist};
}

// neighbor_stat: each thread takes whole frames (ghosts, extended system, cell list, count)
// with its own buffers; a frame's centers are not split, so there is no per-frame barrier.
template <typename T>
std::tuple<at::Tensor, at::Tensor> run_stat(const at::Tensor& coord_in,
                                            const at::Tensor& atype_in,
                                            const std::optional<at::Tensor>& box_in,
                                            double rcut, int64_t ntypes) {
  const at::Tensor coord = coord_in.contiguous();
  const at::Tensor atype = atype_in.contiguous();
  const at::Tensor box = box_in.has_value() ? box_in->contiguous() : at::Tensor();
  const int64_t nf = coord.size(0), nloc = coord.size(1);
  const cpu::NlistShape shape{nloc, ntypes, 0, rcut};
  const T* x = coord.data_ptr<T>();
  const int64_t* types = atype.data_ptr<int64_t>();
  const T* bx = box.defined() ? box.data_ptr<T>() : nullptr;
  TORCH_CHECK(all_finite(x, coord.numel()), "dpx::neighbor_stat: coord has non-finite entries");
  const std::vector<cpu::Cell> cells =
      bx ? nlist_args::make_cells(box.to(at::kDouble).contiguous().data_ptr<double>(), nf, rcut)
         : std::vector<cpu::Cell>();
  at::Tensor nnei_max = at::empty({nf, ntypes}, coord.options().dtype(at::kLong));
  at::Tensor min_dist = at::empty({nf}, coord.options());
  at::parallel_for(0, nf, 1, [&](int64_t begin, int64_t end) {
    cpu::Ghosts<T> g;
    cpu::CellList<T> cl;
    cpu::Scratch<T> scratch;
    std::vector<T> ext, shift, min_d2(nloc);
    std::vector<int64_t> mapping, ext_atype, counts(nloc * ntypes);
    for (int64_t f = begin; f < end; ++f) {
      const int64_t* type_f = types + nloc * f;
      cpu::plan_ghosts<T>(x + 3 * nloc * f, type_f, nloc, bx ? &cells[f] : nullptr, rcut, g);
      mapping.resize(g.nall);
      ext_atype.resize(g.nall);
      shift.resize(3 * g.nall);
      const int64_t written = cpu::extend_and_bin<T>(
          g, x + 3 * nloc * f, type_f, bx ? bx + 9 * f : nullptr, rcut, mapping.data(),
          ext_atype.data(), shift.data(), ext, cl);
      TORCH_CHECK(written == g.nall, "dpx::neighbor_stat: internal error, ", written,
                  " extended atoms written for ", g.nall, " planned");
      cpu::virtual_rows<T>(type_f, shape, nullptr, counts.data(), min_d2.data());
      DPX_CPU_KERNEL(count<T>)(cl, shape, 0, static_cast<int64_t>(cl.centers.size()), scratch,
                               counts.data(), min_d2.data());
      cpu::reduce_stats<T>(counts.data(), min_d2.data(), shape,
                           nnei_max.data_ptr<int64_t>() + ntypes * f, min_dist.data_ptr<T>() + f);
    }
  });
  return {nnei_max, min_dist};
}

std::tuple<at::Tensor, at::Tensor> neighbor_stat(const at::Tensor& coord, const at::Tensor& atype,
                                                 const std::optional<at::Tensor>& box,
                                                 double rcut, int64_t ntypes) {
  TORCH_CHECK(ntypes > 0, "dpx::neighbor_stat: ntypes must be > 0, got ", ntypes);
  const std::vector<int64_t> zeros(ntypes, 0);  // neighbor_list's checks, sel = ntypes zeros
  nlist_args::check(coord, atype, box, rcut, zeros);
  TORCH_CHECK(coord.device().is_cpu(), "dpx::neighbor_stat: runs on CPU tensors");
  if (coord.scalar_type() == at::kFloat) return run_stat<float>(coord, atype, box, rcut, ntypes);
  return run_stat<double>(coord, atype, box, rcut, ntypes);
}

Result neighbor_list(const at::Tensor& coord, const at::Tensor& atype,
                     const std::optional<at::Tensor>& box, double rcut, at::IntArrayRef sel) {
  return nlist_args::checked_run(coord, atype, box, rcut, sel, [&](auto z) {
    return run<decltype(z)>(coord, atype, box, rcut, sel);
  });
}

}  // namespace
}  // namespace dpx::ops

TORCH_LIBRARY_IMPL(dpx, CPU, m) {
  m.impl("neighbor_list", &dpx::ops::neighbor_list);
  m.impl("neighbor_stat", &dpx::ops::neighbor_stat);
}
