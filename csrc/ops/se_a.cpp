// dpx::se_a_reduce / se_a_gram families on CPU. Leading dimensions are flattened into atoms.
// DPX_CPU_KERNEL picks the kernels' AVX2 or baseline build (kernels/cpu/isa.h).
#include <torch/library.h>

#include "kernels/cpu/se_a.h"
#include "ops/checks.h"

namespace dpx::ops {
namespace {

// x must be [..., rows, cols] with the given leading shape (dtype/device of ref)
void check_tail(const char* op, const at::Tensor& x, const char* name, const at::Tensor& ref,
                const char* ref_name, at::IntArrayRef lead, int64_t rows, int64_t cols) {
  check_float(x, op, name);
  TORCH_CHECK(x.scalar_type() == ref.scalar_type(), "dpx::", op, ": ", name, " has dtype ",
              x.scalar_type(), " but ", ref_name, " has ", ref.scalar_type());
  TORCH_CHECK(x.device() == ref.device(), "dpx::", op, ": ", name, " is on ", x.device(), " but ",
              ref_name, " is on ", ref.device());
  TORCH_CHECK(x.dim() == (int64_t)lead.size() + 2 && x.sizes().slice(0, lead.size()) == lead &&
                  (rows < 0 || x.size(-2) == rows) && (cols < 0 || x.size(-1) == cols),
              "dpx::", op, ": ", name, " must be [", lead, ", ", rows < 0 ? "*" : std::to_string(rows),
              ", ", cols < 0 ? "*" : std::to_string(cols), "], got ", x.sizes());
}

at::IntArrayRef lead_of(const char* op, const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() >= 2, "dpx::", op, ": ", name, " must have at least 2 dimensions, got ",
              x.sizes());
  return x.sizes().slice(0, x.dim() - 2);
}

template <typename Kernel>
at::Tensor run(const char* /*op*/, at::Tensor out, int64_t n, Kernel&& k) {
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "dpx_se_a", [&] {
    parallel_centers(n, [&](int64_t b, int64_t e) { k(scalar_t{}, b, e); });
  });
  return out;
}

at::Tensor se_a_reduce(const at::Tensor& em, const at::Tensor& g) {
  const char* op = "se_a_reduce";
  auto lead = lead_of(op, em, "em");
  check_tail(op, em, "em", em, "em", lead, -1, 4);
  const int64_t nnei = em.size(-2), m = g.dim() ? g.size(-1) : 0;
  check_tail(op, g, "g", em, "em", lead, nnei, -1);
  auto e = em.contiguous(), gc = g.contiguous();
  auto shape = lead.vec();
  shape.insert(shape.end(), {4, m});
  auto t = at::empty(shape, em.options());
  const int64_t n = nnei ? e.numel() / (nnei * 4) : t.numel() / std::max<int64_t>(4 * m, 1);
  if (nnei == 0) return t.zero_();
  return run(op, t, n, [&](auto z, int64_t b, int64_t en) {
    using T = decltype(z);
    DPX_CPU_KERNEL(se_a_reduce<T>)(e.data_ptr<T>(), gc.data_ptr<T>(), t.data_ptr<T>(), nnei, m, b,
                                   en);
  });
}

at::Tensor se_a_reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& g) {
  const char* op = "se_a_reduce_grad_em";
  auto lead = lead_of(op, g, "g");
  const int64_t nnei = g.size(-2), m = g.size(-1);
  check_float(g, op, "g");
  check_tail(op, grad_t, "grad_t", g, "g", lead, 4, m);
  auto gt = grad_t.contiguous(), gc = g.contiguous();
  auto shape = lead.vec();
  shape.insert(shape.end(), {nnei, 4});
  auto out = at::empty(shape, g.options());
  return run(op, out, gt.numel() / std::max<int64_t>(4 * m, 1), [&](auto z, int64_t b, int64_t e) {
    using T = decltype(z);
    DPX_CPU_KERNEL(se_a_reduce_grad_em<T>)(gt.data_ptr<T>(), gc.data_ptr<T>(), out.data_ptr<T>(),
                                           nnei, m, b, e);
  });
}

at::Tensor se_a_reduce_grad_g(const at::Tensor& grad_t, const at::Tensor& em) {
  const char* op = "se_a_reduce_grad_g";
  auto lead = lead_of(op, em, "em");
  check_tail(op, em, "em", em, "em", lead, -1, 4);
  const int64_t nnei = em.size(-2);
  check_tail(op, grad_t, "grad_t", em, "em", lead, 4, -1);
  const int64_t m = grad_t.size(-1);
  auto gt = grad_t.contiguous(), e = em.contiguous();
  auto shape = lead.vec();
  shape.insert(shape.end(), {nnei, m});
  auto out = at::empty(shape, em.options());
  return run(op, out, gt.numel() / std::max<int64_t>(4 * m, 1), [&](auto z, int64_t b, int64_t en) {
    using T = decltype(z);
    DPX_CPU_KERNEL(se_a_reduce_grad_g<T>)(gt.data_ptr<T>(), e.data_ptr<T>(), out.data_ptr<T>(),
                                          nnei, m, b, en);
  });
}

at::Tensor se_a_gram(const at::Tensor& a, const at::Tensor& b, int64_t axis_neuron) {
  const char* op = "se_a_gram";
  auto lead = lead_of(op, a, "a");
  check_tail(op, a, "a", a, "a", lead, 4, -1);
  const int64_t m = a.size(-1);
  check_tail(op, b, "b", a, "a", lead, 4, m);
  TORCH_CHECK(axis_neuron >= 1 && axis_neuron <= m, "dpx::se_a_gram: axis_neuron must lie in [1, ",
              m, "], got ", axis_neuron);
  auto ac = a.contiguous(), bc = b.contiguous();
  auto shape = lead.vec();
  shape.insert(shape.end(), {m, axis_neuron});
  auto d = at::empty(shape, a.options());
  return run(op, d, ac.numel() / std::max<int64_t>(4 * m, 1), [&](auto z, int64_t s, int64_t e) {
    using T = decltype(z);
    DPX_CPU_KERNEL(se_a_gram<T>)(ac.data_ptr<T>(), bc.data_ptr<T>(), d.data_ptr<T>(), m,
                                 axis_neuron, s, e);
  });
}

// shared by the two gram gradients: grad_d [..., M, K], x [..., 4, M] -> [..., 4, M]
template <typename Kernel>
at::Tensor gram_grad(const char* op, const at::Tensor& grad_d, const at::Tensor& x,
                     const char* xname, Kernel&& kernel) {
  auto lead = lead_of(op, x, xname);
  check_tail(op, x, xname, x, xname, lead, 4, -1);
  const int64_t m = x.size(-1);
  check_tail(op, grad_d, "grad_d", x, xname, lead, m, -1);
  const int64_t k = grad_d.size(-1);
  TORCH_CHECK(k >= 1 && k <= m, "dpx::", op, ": grad_d must be [..., M, K] with 1 <= K <= M = ", m,
              ", got ", grad_d.sizes());
  auto gd = grad_d.contiguous(), xc = x.contiguous();
  auto out = at::empty_like(xc);
  return run(op, out, xc.numel() / std::max<int64_t>(4 * m, 1), [&](auto z, int64_t b, int64_t e) {
    using T = decltype(z);
    kernel(z, gd.data_ptr<T>(), xc.data_ptr<T>(), out.data_ptr<T>(), m, k, b, e);
  });
}

at::Tensor se_a_gram_grad_a(const at::Tensor& grad_d, const at::Tensor& b) {
  return gram_grad("se_a_gram_grad_a", grad_d, b, "b", [](auto z, auto... args) {
    DPX_CPU_KERNEL(se_a_gram_grad_x<decltype(z)>)(args...);
  });
}

at::Tensor se_a_gram_grad_b(const at::Tensor& grad_d, const at::Tensor& a) {
  return gram_grad("se_a_gram_grad_b", grad_d, a, "a", [](auto z, auto... args) {
    DPX_CPU_KERNEL(se_a_gram_grad_y<decltype(z)>)(args...);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CPU, m) {
  m.impl("se_a_reduce", &se_a_reduce);
  m.impl("se_a_reduce_grad_em", &se_a_reduce_grad_em);
  m.impl("se_a_reduce_grad_g", &se_a_reduce_grad_g);
  m.impl("se_a_gram", &se_a_gram);
  m.impl("se_a_gram_grad_a", &se_a_gram_grad_a);
  m.impl("se_a_gram_grad_b", &se_a_gram_grad_b);
}

}  // namespace dpx::ops
