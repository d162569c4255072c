// dpx::neighbor_list on CUDA: the checks of the CPU registration (ops/nlist_args.h), then the
// steps of kernels/cuda/nlist.h. The only op with data-dependent output sizes, so the only one
// that waits for the device: three small copies to the host (the cells are validated there;
// nall per frame sizes the outputs; the bounds of the extended atoms size the bins).
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/nlist.h"
#include "ops/cuda/common.h"
#include "ops/nlist_args.h"

namespace dpx::ops {
namespace {

using nlist_args::kOp;
using nlist_args::Result;

// a vector of plain structs as a device tensor of bytes (the copy is done on return)
template <typename S>
at::Tensor to_device(const std::vector<S>& v, const at::Device& device) {
  auto host = at::empty({static_cast<int64_t>(v.size() * sizeof(S))}, at::kByte);
  std::copy_n(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(S),
              host.data_ptr<uint8_t>());
  return host.to(device);
}

template <typename T>
Result run(const at::Tensor& coord_in, const at::Tensor& atype_in,
           const std::optional<at::Tensor>& box_in, double rcut, at::IntArrayRef sel_in) {
  cuda::OnDevice on(coord_in);
  const at::Tensor coord = coord_in.contiguous();
  const at::Tensor atype = atype_in.contiguous();
  const at::Tensor box = box_in.has_value() ? box_in->contiguous() : at::Tensor();
  const int64_t nf = coord.size(0), nloc = coord.size(1), ntypes = sel_in.size();
  std::vector<int64_t> sec(ntypes);
  int64_t nnei = 0;
  for (int64_t t = 0; t < ntypes; ++t) {
    sec[t] = nnei;
    nnei += sel_in[t];
  }
  TORCH_CHECK(coord.numel() == 0 || at::isfinite(coord).all().item<bool>(), "dpx::", kOp,
              ": coord has non-finite entries");
  const auto dev = coord.device();
  const auto long_opts = coord.options().dtype(at::kLong);

  // the cells, validated on the host exactly as on CPU
  std::vector<dpx::cuda::FrameGeom<T>> geom(nf);
  if (box.defined()) {
    const at::Tensor box_h = box.to(at::kCPU, at::kDouble).contiguous();
    const auto cells = nlist_args::make_cells(box_h.data_ptr<double>(), nf, rcut);
    for (int64_t f = 0; f < nf; ++f)
      geom[f] = dpx::cuda::plan_frame<T>(cells[f].inv, cells[f].face, rcut);
  } else {
    std::fill(geom.begin(), geom.end(), dpx::cuda::open_frame<T>());
  }
  const at::Tensor geom_d = to_device(geom, dev);
  const auto* geom_p = reinterpret_cast<const dpx::cuda::FrameGeom<T>*>(geom_d.data_ptr<uint8_t>());

  // ghosts: plan, count, then nall = max over frames (copy 1 to the host)
  dpx::cuda::NlistShape s{nf, nloc, nloc, ntypes, nnei, rcut};
  at::Tensor wrap = at::empty({nf, nloc, 3}, coord.options());
  at::Tensor range = at::empty({nf, nloc, 3, 2}, coord.options().dtype(at::kInt));
  at::Tensor nall_f = at::empty({nf}, long_opts);
  dpx::cuda::NlistBuffers<T> buf{};
  buf.wrap = wrap.data_ptr<T>();
  buf.range = range.data_ptr<int32_t>();
  buf.nall_f = nall_f.data_ptr<int64_t>();
  const int64_t* types = atype.data_ptr<int64_t>();
  dpx::cuda::plan_ghosts<T>(coord.data_ptr<T>(), types, geom_p, s, buf, on.stream);
  dpx::cuda::extend<T>(types, geom_p, s, buf, false, nullptr, nullptr, nullptr, on.stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  s.nall = nf ? std::max(nloc, nall_f.max().item<int64_t>()) : nloc;
  const int64_t nall = s.nall;

  // the extended system, padded: mapping 0, ext_atype -1, shift 0
  at::Tensor mapping = at::zeros({nf, nall}, long_opts);
  at::Tensor ext_atype = at::full({nf, nall}, -1, long_opts);
  at::Tensor shift = at::zeros({nf, nall, 3}, coord.options());
  at::Tensor nlist = at::empty({nf, nloc, nnei}, long_opts);
  at::Tensor nnei_max = at::empty({nf, ntypes}, long_opts);
  at::Tensor min_dist = at::empty({nf}, coord.options());
  at::Tensor ext = at::empty({nf, nall, 3}, coord.options());
  at::Tensor bounds = at::empty({nf, 7}, coord.options().dtype(at::kDouble));
  buf.ext = ext.data_ptr<T>();
  buf.bounds = bounds.data_ptr<double>();
  dpx::cuda::extend<T>(types, geom_p, s, buf, true, mapping.data_ptr<int64_t>(),
                       ext_atype.data_ptr<int64_t>(), shift.data_ptr<T>(), on.stream);
  dpx::cuda::extended_coord<T>(coord.data_ptr<T>(), box.defined() ? box.data_ptr<T>() : nullptr,
                               mapping.data_ptr<int64_t>(), shift.data_ptr<T>(),
                               ext_atype.data_ptr<int64_t>(), s, buf, on.stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // the grids (copy 2 to the host), then bins and the search
  const at::Tensor bounds_h = bounds.cpu();
  std::vector<dpx::cuda::Grid> grids(nf);
  int64_t total_bins = 0;
  for (int64_t f = 0; f < nf; ++f) {
    const double* b = bounds_h.data_ptr<double>() + 7 * f;
    grids[f].bin_offset = total_bins;
    total_bins += dpx::cuda::plan_grid(b, b + 3, static_cast<int64_t>(b[6]), rcut, grids[f]);
  }
  const at::Tensor grids_d = to_device(grids, dev);
  const at::Tensor sel_d = at::tensor(std::vector<int64_t>(sel_in.begin(), sel_in.end()),
                                      at::kLong).to(dev);
  const at::Tensor sec_d = at::tensor(sec, at::kLong).to(dev);
  at::Tensor bin = at::empty({nf, nall}, long_opts);
  at::Tensor bin_count = at::zeros({total_bins}, long_opts);
  at::Tensor bin_start = at::empty({dpx::cuda::bin_start_size(total_bins, nf)}, long_opts);
  at::Tensor sorted_pos = at::empty({nf, nall, 3}, coord.options());
  at::Tensor sorted_index = at::empty({nf, nall}, long_opts);
  at::Tensor sorted_type = at::empty({nf, nall}, coord.options().dtype(at::kInt));
  at::Tensor counts = at::zeros({nf, nloc, ntypes}, long_opts);
  at::Tensor min_d2 = at::empty({nf, nloc}, coord.options());
  buf.bin = bin.data_ptr<int64_t>();
  buf.bin_count = bin_count.data_ptr<int64_t>();
  buf.bin_start = bin_start.data_ptr<int64_t>();
  buf.sorted_pos = sorted_pos.data_ptr<T>();
  buf.sorted_index = sorted_index.data_ptr<int64_t>();
  buf.sorted_type = sorted_type.data_ptr<int32_t>();
  buf.counts = counts.data_ptr<int64_t>();
  buf.min_d2 = min_d2.data_ptr<T>();
  dpx::cuda::search<T>(reinterpret_cast<const dpx::cuda::Grid*>(grids_d.data_ptr<uint8_t>()),
                       types, ext_atype.data_ptr<int64_t>(), sel_d.data_ptr<int64_t>(),
                       sec_d.data_ptr<int64_t>(), s, buf, nlist.data_ptr<int64_t>(),
                       nnei_max.data_ptr<int64_t>(), min_dist.data_ptr<T>(), on.stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {mapping, ext_atype, shift, nlist, nnei_max, min_dist};
}

Result neighbor_list(const at::Tensor& coord, const at::Tensor& atype,
                     const std::optional<at::Tensor>& box, double rcut, at::IntArrayRef sel) {
  return nlist_args::checked_run(coord, atype, box, rcut, sel, [&](auto z) {
    return run<decltype(z)>(coord, atype, box, rcut, sel);
  });
}

}  // namespace
}  // namespace dpx::ops

TORCH_LIBRARY_IMPL(dpx, CUDA, m) { m.impl("neighbor_list", &dpx::ops::neighbor_list); }
