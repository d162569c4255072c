// dpx::env_mat_se_a and its derivative ops on CPU: checks and outputs (ops/env_mat_args.h,
// shared with CUDA), then the plain kernels (their AVX2 or baseline build, as DPX_CPU_KERNEL
// picks: kernels/cpu/isa.h), centers split over threads.
#include <torch/library.h>

#include "kernels/cpu/env_mat.h"
#include "ops/env_mat_args.h"

namespace dpx::ops {
namespace {

namespace args = env_mat_args;

// coords_second_order: an autograd-only flag (see schemas.cpp); the kernel does not read it
at::Tensor env_mat_se_a(const at::Tensor& ext_coord, const at::Tensor& nlist,
                        const at::Tensor& atype, const at::Tensor& davg, const at::Tensor& dstd,
                        double rcut, double rcut_smth, double protection,
                        bool /*coords_second_order*/) {
  auto p = args::forward(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth, protection);
  const auto& in = p.in;
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a<scalar_t>)(
          in.x.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(), in.atype.data_ptr<int64_t>(),
          p.a.data_ptr<scalar_t>(), in.dstd.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(),
          in.s, b, e);
    });
  });
  return p.out;
}

// per-slot results into a buffer, then folded into [nf, nall, 3] in a fixed order
at::Tensor env_mat_se_a_vjp(const at::Tensor& grad_em, const at::Tensor& ext_coord,
                            const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& dstd, double rcut, double rcut_smth,
                            double protection) {
  auto p = args::vjp(grad_em, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  const auto& in = p.in;
  auto slot = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 3}, ext_coord.options());
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a_vjp", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a_vjp_slots<scalar_t>)(
          p.a.data_ptr<scalar_t>(), in.x.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(),
          in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<scalar_t>(), slot.data_ptr<scalar_t>(),
          in.s, b, e);
    });
    DPX_CPU_KERNEL(scatter_slots<scalar_t>)(
        slot.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(), p.out.data_ptr<scalar_t>(), in.s);
  });
  return p.out;
}

at::Tensor env_mat_se_a_jvp(const at::Tensor& tangent, const at::Tensor& ext_coord,
                            const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& dstd, double rcut, double rcut_smth,
                            double protection) {
  auto p = args::jvp(tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  const auto& in = p.in;
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a_jvp", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a_jvp<scalar_t>)(
          p.a.data_ptr<scalar_t>(), in.x.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(),
          in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(),
          in.s, b, e);
    });
  });
  return p.out;
}

at::Tensor env_mat_se_a_hvp(const at::Tensor& grad_em, const at::Tensor& tangent,
                            const at::Tensor& ext_coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& dstd, double rcut,
                            double rcut_smth, double protection) {
  auto p = args::hvp(grad_em, tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth,
                     protection);
  const auto& in = p.in;
  auto slot = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 3}, ext_coord.options());
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a_hvp", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a_hvp_slots<scalar_t>)(
          p.a.data_ptr<scalar_t>(), p.b.data_ptr<scalar_t>(), in.x.data_ptr<scalar_t>(),
          in.nlist.data_ptr<int64_t>(), in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<scalar_t>(),
          slot.data_ptr<scalar_t>(), in.s, b, e);
    });
    DPX_CPU_KERNEL(scatter_slots<scalar_t>)(
        slot.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(), p.out.data_ptr<scalar_t>(), in.s);
  });
  return p.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CPU, m) {
  m.impl("env_mat_se_a", &env_mat_se_a);
  m.impl("env_mat_se_a_vjp", &env_mat_se_a_vjp);
  m.impl("env_mat_se_a_jvp", &env_mat_se_a_jvp);
  m.impl("env_mat_se_a_hvp", &env_mat_se_a_hvp);
}

}  // namespace dpx::ops
