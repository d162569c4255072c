// dpx::env_mat_se_a and its derivative ops on CPU: checks, then the plain kernels (their AVX2
// or baseline build, as DPX_CPU_KERNEL picks: kernels/cpu/isa.h).
#include <torch/library.h>

#include "kernels/cpu/env_mat.h"
#include "ops/checks.h"

namespace dpx::ops {
namespace {

struct Inputs {
  at::Tensor x, nlist, atype, dstd;
  cpu::EnvMatShape s;
};

Inputs check(const char* op, const at::Tensor& ext_coord, const at::Tensor& nlist,
             const at::Tensor& atype, const at::Tensor& dstd, double rcut, double rcut_smth,
             double protection) {
  check_float(ext_coord, op, "ext_coord");
  check_dim(ext_coord, 3, op, "ext_coord");
  TORCH_CHECK(ext_coord.size(2) == 3, "dpx::", op, ": ext_coord must be [nf, nall, 3], got ",
              ext_coord.sizes());
  check_dtype(nlist, at::kLong, op, "nlist");
  check_dim(nlist, 3, op, "nlist");
  check_dtype(atype, at::kLong, op, "atype");
  check_dim(atype, 2, op, "atype");
  check_dim(dstd, 3, op, "dstd");
  TORCH_CHECK(dstd.scalar_type() == ext_coord.scalar_type(), "dpx::", op,
              ": dstd must have the dtype of ext_coord (", ext_coord.scalar_type(), "), got ",
              dstd.scalar_type());
  for (auto [t, name] : {std::pair{&nlist, "nlist"}, {&atype, "atype"}, {&dstd, "dstd"}})
    check_same_device(*t, ext_coord, op, name);
  const int64_t nf = nlist.size(0), nloc = nlist.size(1), nnei = nlist.size(2);
  const int64_t nall = ext_coord.size(1);
  TORCH_CHECK(ext_coord.size(0) == nf && nall >= nloc, "dpx::", op,
              ": ext_coord must be [nf, nall >= nloc, 3] for nlist ", nlist.sizes(), ", got ",
              ext_coord.sizes());
  TORCH_CHECK(atype.size(0) == nf && atype.size(1) == nloc, "dpx::", op,
              ": atype must be [nf, nloc] = [", nf, ", ", nloc, "], got ", atype.sizes());
  TORCH_CHECK(dstd.size(1) == nnei && dstd.size(2) == 4, "dpx::", op,
              ": dstd must be [ntypes, nnei = ", nnei, ", 4], got ", dstd.sizes());
  TORCH_CHECK(rcut > 0 && rcut_smth >= 0 && rcut_smth < rcut, "dpx::", op,
              ": need 0 <= rcut_smth < rcut, got rcut = ", rcut, ", rcut_smth = ", rcut_smth);
  TORCH_CHECK(protection >= 0, "dpx::", op, ": protection must be >= 0, got ", protection);
  check_range(atype, 0, dstd.size(0), op, "atype");
  check_range(nlist, -1, nall, op, "nlist");
  return {ext_coord.contiguous(), nlist.contiguous(), atype.contiguous(), dstd.contiguous(),
          cpu::EnvMatShape{nf, nloc, nall, nnei, rcut, rcut_smth, protection}};
}

void check_like(const char* op, const at::Tensor& t, at::IntArrayRef want, const at::Tensor& x,
                const char* name) {
  TORCH_CHECK(t.sizes() == want, "dpx::", op, ": ", name, " must have shape ", want, ", got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "dpx::", op, ": ", name,
              " must have the dtype of ext_coord, got ", t.scalar_type());
  check_same_device(t, x, op, name);
}

at::Tensor env_mat_se_a(const at::Tensor& ext_coord, const at::Tensor& nlist,
                        const at::Tensor& atype, const at::Tensor& davg, const at::Tensor& dstd,
                        double rcut, double rcut_smth, double protection) {
  auto in = check("env_mat_se_a", ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like("env_mat_se_a", davg, dstd.sizes(), ext_coord, "davg");
  auto avg = davg.contiguous();
  auto em = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord.options());
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a<scalar_t>)(
          in.x.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(), in.atype.data_ptr<int64_t>(),
          avg.data_ptr<scalar_t>(), in.dstd.data_ptr<scalar_t>(), em.data_ptr<scalar_t>(), in.s, b,
          e);
    });
  });
  return em;
}

at::Tensor env_mat_se_a_vjp(const at::Tensor& grad_em, const at::Tensor& ext_coord,
                            const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& dstd, double rcut, double rcut_smth,
                            double protection) {
  auto in = check("env_mat_se_a_vjp", ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like("env_mat_se_a_vjp", grad_em, {in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord, "grad_em");
  auto ge = grad_em.contiguous();
  auto slot = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 3}, ext_coord.options());
  auto out = at::zeros_like(in.x);
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a_vjp", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a_vjp_slots<scalar_t>)(
          ge.data_ptr<scalar_t>(), in.x.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(),
          in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<scalar_t>(), slot.data_ptr<scalar_t>(),
          in.s, b, e);
    });
    DPX_CPU_KERNEL(scatter_slots<scalar_t>)(
        slot.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), in.s);
  });
  return out;
}

at::Tensor env_mat_se_a_jvp(const at::Tensor& tangent, const at::Tensor& ext_coord,
                            const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& dstd, double rcut, double rcut_smth,
                            double protection) {
  auto in = check("env_mat_se_a_jvp", ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like("env_mat_se_a_jvp", tangent, ext_coord.sizes(), ext_coord, "tangent");
  auto tg = tangent.contiguous();
  auto out = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord.options());
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a_jvp", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a_jvp<scalar_t>)(
          tg.data_ptr<scalar_t>(), in.x.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(),
          in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
          in.s, b, e);
    });
  });
  return out;
}

at::Tensor env_mat_se_a_hvp(const at::Tensor& grad_em, const at::Tensor& tangent,
                            const at::Tensor& ext_coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& dstd, double rcut,
                            double rcut_smth, double protection) {
  auto in = check("env_mat_se_a_hvp", ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like("env_mat_se_a_hvp", grad_em, {in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord, "grad_em");
  check_like("env_mat_se_a_hvp", tangent, ext_coord.sizes(), ext_coord, "tangent");
  auto ge = grad_em.contiguous();
  auto tg = tangent.contiguous();
  auto slot = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 3}, ext_coord.options());
  auto out = at::zeros_like(in.x);
  AT_DISPATCH_FLOATING_TYPES(ext_coord.scalar_type(), "env_mat_se_a_hvp", [&] {
    parallel_centers(in.s.nf * in.s.nloc, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(env_mat_se_a_hvp_slots<scalar_t>)(
          ge.data_ptr<scalar_t>(), tg.data_ptr<scalar_t>(), in.x.data_ptr<scalar_t>(),
          in.nlist.data_ptr<int64_t>(), in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<scalar_t>(),
          slot.data_ptr<scalar_t>(), in.s, b, e);
    });
    DPX_CPU_KERNEL(scatter_slots<scalar_t>)(
        slot.data_ptr<scalar_t>(), in.nlist.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), in.s);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CPU, m) {
  m.impl("env_mat_se_a", &env_mat_se_a);
  m.impl("env_mat_se_a_vjp", &env_mat_se_a_vjp);
  m.impl("env_mat_se_a_jvp", &env_mat_se_a_jvp);
  m.impl("env_mat_se_a_hvp", &env_mat_se_a_hvp);
}

}  // namespace dpx::ops
