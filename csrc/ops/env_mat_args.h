// Argument checks of dpx::env_mat_se_a and its derivative ops, shared by the CPU and CUDA
// registrations: one set of rules and messages for every device.
#pragma once
#include "kernels/common/env_mat_slot.h"
#include "ops/checks.h"

namespace dpx::ops::env_mat_args {

struct Inputs {
  at::Tensor x, nlist, atype, dstd;
  EnvMatShape s;
};

// nlist and atype values are range-checked on CPU only (checks.h: check_range)
inline Inputs check(const char* op, const at::Tensor& ext_coord, const at::Tensor& nlist,
                    const at::Tensor& atype, const at::Tensor& dstd, double rcut,
                    double rcut_smth, double protection) {
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
          EnvMatShape{nf, nloc, nall, nnei, rcut, rcut_smth, protection}};
}

inline void check_like(const char* op, const at::Tensor& t, at::IntArrayRef want,
                       const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.sizes() == want, "dpx::", op, ": ", name, " must have shape ", want, ", got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "dpx::", op, ": ", name,
              " must have the dtype of ext_coord, got ", t.scalar_type());
  check_same_device(t, x, op, name);
}

// Each op's checked, contiguous operands and its output: in (the shared inputs), a and b
// (the op's own: davg for the forward, grad_em and/or tangent for the derivatives), out
// (empty for the per-slot outputs, zeroed for the [nf, nall, 3] sums of vjp and hvp).
struct Prepared {
  Inputs in;
  at::Tensor a, b, out;
};

inline Prepared forward(const at::Tensor& ext_coord, const at::Tensor& nlist,
                        const at::Tensor& atype, const at::Tensor& davg, const at::Tensor& dstd,
                        double rcut, double rcut_smth, double protection) {
  auto in = check("env_mat_se_a", ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like("env_mat_se_a", davg, dstd.sizes(), ext_coord, "davg");
  auto em = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord.options());
  return {in, davg.contiguous(), at::Tensor(), em};
}

inline Prepared vjp(const at::Tensor& grad_em, const at::Tensor& ext_coord,
                    const at::Tensor& nlist, const at::Tensor& atype, const at::Tensor& dstd,
                    double rcut, double rcut_smth, double protection) {
  const char* op = "env_mat_se_a_vjp";
  auto in = check(op, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like(op, grad_em, {in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord, "grad_em");
  return {in, grad_em.contiguous(), at::Tensor(), at::zeros_like(in.x)};
}

inline Prepared jvp(const at::Tensor& tangent, const at::Tensor& ext_coord,
                    const at::Tensor& nlist, const at::Tensor& atype, const at::Tensor& dstd,
                    double rcut, double rcut_smth, double protection) {
  const char* op = "env_mat_se_a_jvp";
  auto in = check(op, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like(op, tangent, ext_coord.sizes(), ext_coord, "tangent");
  auto out = at::empty({in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord.options());
  return {in, tangent.contiguous(), at::Tensor(), out};
}

inline Prepared hvp(const at::Tensor& grad_em, const at::Tensor& tangent,
                    const at::Tensor& ext_coord, const at::Tensor& nlist,
                    const at::Tensor& atype, const at::Tensor& dstd, double rcut,
                    double rcut_smth, double protection) {
  const char* op = "env_mat_se_a_hvp";
  auto in = check(op, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection);
  check_like(op, grad_em, {in.s.nf, in.s.nloc, in.s.nnei, 4}, ext_coord, "grad_em");
  check_like(op, tangent, ext_coord.sizes(), ext_coord, "tangent");
  return {in, grad_em.contiguous(), tangent.contiguous(), at::zeros_like(in.x)};
}

}  // namespace dpx::ops::env_mat_args
