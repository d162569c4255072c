// dpx::env_mat_se_a and its derivative ops on CUDA: the checks and outputs of the CPU
// registration (ops/env_mat_args.h; index values are not checked on the device, see
// checks.h), then the kernels of kernels/cuda/env_mat.h on the current stream.
#include <torch/library.h>

#include "kernels/cuda/env_mat.h"
#include "ops/cuda/common.h"
#include "ops/env_mat_args.h"

namespace dpx::ops {
namespace {

namespace args = env_mat_args;

// kernel(scalar_t{}, in, a, b, out, ntypes, stream) for the dtype of in.x; returns out
template <typename Kernel>
at::Tensor run(const args::Prepared& p, Kernel&& kernel) {
  cuda::OnDevice on(p.in.x);
  AT_DISPATCH_FLOATING_TYPES(p.in.x.scalar_type(), "dpx_env_mat", [&] {
    kernel(scalar_t{}, p.in, p.a.defined() ? p.a.data_ptr<scalar_t>() : nullptr,
           p.b.defined() ? p.b.data_ptr<scalar_t>() : nullptr, p.out.data_ptr<scalar_t>(),
           p.in.dstd.size(0), on.stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return p.out;
}

template <typename T>
const T* x_of(const args::Inputs& in) {
  return in.x.data_ptr<T>();
}

// coords_second_order: an autograd-only flag (see schemas.cpp); the kernel does not read it
at::Tensor env_mat_se_a(const at::Tensor& ext_coord, const at::Tensor& nlist,
                        const at::Tensor& atype, const at::Tensor& davg, const at::Tensor& dstd,
                        double rcut, double rcut_smth, double protection,
                        bool /*coords_second_order*/) {
  return run(args::forward(ext_coord, nlist, atype, davg, dstd, rcut, rcut_smth, protection),
             [](auto z, const args::Inputs& in, auto* avg, auto*, auto* out,
                int64_t ntypes, cudaStream_t stream) {
               using T = decltype(z);
               dpx::cuda::env_mat_se_a<T>(x_of<T>(in), in.nlist.data_ptr<int64_t>(),
                                          in.atype.data_ptr<int64_t>(), avg,
                                          in.dstd.data_ptr<T>(), out, in.s, ntypes, stream);
             });
}

at::Tensor env_mat_se_a_vjp(const at::Tensor& grad_em, const at::Tensor& ext_coord,
                            const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& dstd, double rcut, double rcut_smth,
                            double protection) {
  return run(args::vjp(grad_em, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection),
             [](auto z, const args::Inputs& in, auto* ge, auto*, auto* out,
                int64_t ntypes, cudaStream_t stream) {
               using T = decltype(z);
               dpx::cuda::env_mat_se_a_vjp<T>(ge, x_of<T>(in), in.nlist.data_ptr<int64_t>(),
                                              in.atype.data_ptr<int64_t>(),
                                              in.dstd.data_ptr<T>(), out, in.s, ntypes, stream);
             });
}

at::Tensor env_mat_se_a_jvp(const at::Tensor& tangent, const at::Tensor& ext_coord,
                            const at::Tensor& nlist, const at::Tensor& atype,
                            const at::Tensor& dstd, double rcut, double rcut_smth,
                            double protection) {
  return run(args::jvp(tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection),
             [](auto z, const args::Inputs& in, auto* tg, auto*, auto* out,
                int64_t ntypes, cudaStream_t stream) {
               using T = decltype(z);
               dpx::cuda::env_mat_se_a_jvp<T>(tg, x_of<T>(in), in.nlist.data_ptr<int64_t>(),
                                              in.atype.data_ptr<int64_t>(),
                                              in.dstd.data_ptr<T>(), out, in.s, ntypes, stream);
             });
}

at::Tensor env_mat_se_a_hvp(const at::Tensor& grad_em, const at::Tensor& tangent,
                            const at::Tensor& ext_coord, const at::Tensor& nlist,
                            const at::Tensor& atype, const at::Tensor& dstd, double rcut,
                            double rcut_smth, double protection) {
  return run(
      args::hvp(grad_em, tangent, ext_coord, nlist, atype, dstd, rcut, rcut_smth, protection),
      [](auto z, const args::Inputs& in, auto* ge, auto* tg, auto* out,
         int64_t ntypes, cudaStream_t stream) {
        using T = decltype(z);
        dpx::cuda::env_mat_se_a_hvp<T>(ge, tg, x_of<T>(in), in.nlist.data_ptr<int64_t>(),
                                       in.atype.data_ptr<int64_t>(), in.dstd.data_ptr<T>(), out,
                                       in.s, ntypes, stream);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CUDA, m) {
  m.impl("env_mat_se_a", &env_mat_se_a);
  m.impl("env_mat_se_a_vjp", &env_mat_se_a_vjp);
  m.impl("env_mat_se_a_jvp", &env_mat_se_a_jvp);
  m.impl("env_mat_se_a_hvp", &env_mat_se_a_hvp);
}

}  // namespace dpx::ops
