// dpx::se_a_reduce / se_a_gram families on CUDA: the checks and outputs of the CPU
// registration (ops/se_a_args.h), then one kernel of kernels/cuda/se_a.h on the current stream.
#include <torch/library.h>

#include "kernels/cuda/se_a.h"
#include "ops/cuda/common.h"
#include "ops/se_a_args.h"

namespace dpx::ops {
namespace {

using se_a_args::Prepared;

// kernel(T{}, x, y, out, n, rows, cols, stream)
template <typename Kernel>
at::Tensor run(const Prepared& p, Kernel&& kernel) {
  if (p.out.numel() == 0) return p.out;
  cuda::OnDevice on(p.out);
  AT_DISPATCH_FLOATING_TYPES(p.out.scalar_type(), "dpx_se_a", [&] {
    kernel(scalar_t{}, p.x.data_ptr<scalar_t>(), p.y.data_ptr<scalar_t>(),
           p.out.data_ptr<scalar_t>(), p.n, p.rows, p.cols, on.stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return p.out;
}

at::Tensor se_a_reduce(const at::Tensor& em, const at::Tensor& g) {
  auto p = se_a_args::reduce(em, g);
  if (p.rows == 0) return p.out.zero_();  // no slots: T = 0
  return run(p, [](auto z, auto... args) { dpx::cuda::se_a_reduce<decltype(z)>(args...); });
}

at::Tensor se_a_reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& g) {
  return run(se_a_args::reduce_grad_em(grad_t, g), [](auto z, auto... args) {
    dpx::cuda::se_a_reduce_grad_em<decltype(z)>(args...);
  });
}

at::Tensor se_a_reduce_grad_g(const at::Tensor& grad_t, const at::Tensor& em) {
  return run(se_a_args::reduce_grad_g(grad_t, em), [](auto z, auto... args) {
    dpx::cuda::se_a_reduce_grad_g<decltype(z)>(args...);
  });
}

at::Tensor se_a_gram(const at::Tensor& a, const at::Tensor& b, int64_t axis_neuron) {
  return run(se_a_args::gram(a, b, axis_neuron),
             [](auto z, auto... args) { dpx::cuda::se_a_gram<decltype(z)>(args...); });
}

at::Tensor se_a_gram_grad_a(const at::Tensor& grad_d, const at::Tensor& b) {
  return run(se_a_args::gram_grad("se_a_gram_grad_a", grad_d, b, "b"), [](auto z, auto... args) {
    dpx::cuda::se_a_gram_grad_x<decltype(z)>(args...);
  });
}

at::Tensor se_a_gram_grad_b(const at::Tensor& grad_d, const at::Tensor& a) {
  return run(se_a_args::gram_grad("se_a_gram_grad_b", grad_d, a, "a"), [](auto z, auto... args) {
    dpx::cuda::se_a_gram_grad_y<decltype(z)>(args...);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CUDA, m) {
  m.impl("se_a_reduce", &se_a_reduce);
  m.impl("se_a_reduce_grad_em", &se_a_reduce_grad_em);
  m.impl("se_a_reduce_grad_g", &se_a_reduce_grad_g);
  m.impl("se_a_gram", &se_a_gram);
  m.impl("se_a_gram_grad_a", &se_a_gram_grad_a);
  m.impl("se_a_gram_grad_b", &se_a_gram_grad_b);
}

}  // namespace dpx::ops
