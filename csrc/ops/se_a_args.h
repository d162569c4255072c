// Argument checks and output allocation of the dpx::se_a_reduce / se_a_gram families, shared
// by the CPU and CUDA registrations. Leading dimensions are flattened into n atoms; each
// prepare_* returns the contiguous operands, the output and the sizes the kernels take.
#pragma once
#include <c10/util/accumulate.h>

#include <string>

#include "ops/checks.h"

namespace dpx::ops::se_a_args {

// x must be [..., rows, cols] with the given leading shape (dtype/device of ref)
inline void check_tail(const char* op, const at::Tensor& x, const char* name,
                       const at::Tensor& ref, const char* ref_name, at::IntArrayRef lead,
                       int64_t rows, int64_t cols) {
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

inline at::IntArrayRef lead_of(const char* op, const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() >= 2, "dpx::", op, ": ", name, " must have at least 2 dimensions, got ",
              x.sizes());
  return x.sizes().slice(0, x.dim() - 2);
}

// x, y: the kernel's two operands (contiguous); out: allocated, not initialized;
// n atoms; rows, cols: the two sizes the kernel takes (nnei, m or m, k)
struct Prepared {
  at::Tensor x, y, out;
  int64_t n, rows, cols;
};

inline at::Tensor alloc(at::IntArrayRef lead, int64_t rows, int64_t cols, const at::Tensor& like) {
  auto shape = lead.vec();
  shape.insert(shape.end(), {rows, cols});
  return at::empty(shape, like.options());
}

inline int64_t atoms(at::IntArrayRef lead) { return c10::multiply_integers(lead); }

// t [.., 4, m] from em [.., nnei, 4], g [.., nnei, m]: rows nnei, cols m
inline Prepared reduce(const at::Tensor& em, const at::Tensor& g) {
  const char* op = "se_a_reduce";
  auto lead = lead_of(op, em, "em");
  check_tail(op, em, "em", em, "em", lead, -1, 4);
  const int64_t nnei = em.size(-2), m = g.dim() ? g.size(-1) : 0;
  check_tail(op, g, "g", em, "em", lead, nnei, -1);
  return {em.contiguous(), g.contiguous(), alloc(lead, 4, m, em), atoms(lead), nnei, m};
}

// ge [.., nnei, 4] from grad_t [.., 4, m], g [.., nnei, m]: rows nnei, cols m
inline Prepared reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& g) {
  const char* op = "se_a_reduce_grad_em";
  auto lead = lead_of(op, g, "g");
  const int64_t nnei = g.size(-2), m = g.size(-1);
  check_float(g, op, "g");
  check_tail(op, grad_t, "grad_t", g, "g", lead, 4, m);
  return {grad_t.contiguous(), g.contiguous(), alloc(lead, nnei, 4, g), atoms(lead), nnei, m};
}

// gg [.., nnei, m] from grad_t [.., 4, m], em [.., nnei, 4]: rows nnei, cols m
inline Prepared reduce_grad_g(const at::Tensor& grad_t, const at::Tensor& em) {
  const char* op = "se_a_reduce_grad_g";
  auto lead = lead_of(op, em, "em");
  check_tail(op, em, "em", em, "em", lead, -1, 4);
  const int64_t nnei = em.size(-2);
  check_tail(op, grad_t, "grad_t", em, "em", lead, 4, -1);
  const int64_t m = grad_t.size(-1);
  return {grad_t.contiguous(), em.contiguous(), alloc(lead, nnei, m, em), atoms(lead), nnei, m};
}

// d [.., m, k] from a, b [.., 4, m]: rows m, cols k = axis_neuron
inline Prepared gram(const at::Tensor& a, const at::Tensor& b, int64_t axis_neuron) {
  const char* op = "se_a_gram";
  auto lead = lead_of(op, a, "a");
  check_tail(op, a, "a", a, "a", lead, 4, -1);
  const int64_t m = a.size(-1);
  check_tail(op, b, "b", a, "a", lead, 4, m);
  TORCH_CHECK(axis_neuron >= 1 && axis_neuron <= m, "dpx::se_a_gram: axis_neuron must lie in [1, ",
              m, "], got ", axis_neuron);
  return {a.contiguous(), b.contiguous(), alloc(lead, m, axis_neuron, a), atoms(lead), m,
          axis_neuron};
}

// the two gram gradients: grad_d [.., m, k], x [.., 4, m] -> [.., 4, m]; rows m, cols k;
// Prepared::x is grad_d, Prepared::y is x
inline Prepared gram_grad(const char* op, const at::Tensor& grad_d, const at::Tensor& x,
                          const char* xname) {
  auto lead = lead_of(op, x, xname);
  check_tail(op, x, xname, x, xname, lead, 4, -1);
  const int64_t m = x.size(-1);
  check_tail(op, grad_d, "grad_d", x, xname, lead, m, -1);
  const int64_t k = grad_d.size(-1);
  TORCH_CHECK(k >= 1 && k <= m, "dpx::", op, ": grad_d must be [..., M, K] with 1 <= K <= M = ", m,
              ", got ", grad_d.sizes());
  auto xc = x.contiguous();
  return {grad_d.contiguous(), xc, at::empty_like(xc), atoms(lead), m, k};
}

}  // namespace dpx::ops::se_a_args
