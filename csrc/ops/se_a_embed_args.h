// Argument checks and the chunk plan of the dpx::se_a_embed_reduce family, shared by the CPU
// kernels (ops/se_a_embed.cpp) and the device-generic implementation the CUDA registration
// runs (ops/se_a_embed_generic.cpp).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "kernels/cpu/embed.h"
#include "ops/checks.h"

namespace dpx::ops::embed_args {

struct Args {
  at::Tensor em, center, params;  // contiguous, on the op's device
  at::Tensor center_host;         // center on the CPU (the same tensor there)
  std::vector<int64_t> widths;
  // chunk starts, then nslot: chunks of about `chunk` slots that end where a center does, so
  // that a center's sum lies in one chunk and no sum depends on how chunks are scheduled
  std::vector<int64_t> bounds;
  int64_t act, np;
  bool resnet_dt;
  // em's columns: K = lay.k contracted into T [ncenter, K, M], s in column lay.js
  cpu::EmLayout lay;

  int64_t nchunks() const { return (int64_t)bounds.size() - 1; }
};

// s_last: s is em's last column, apart from the K = em.size(1) - 1 contracted ones; else
// s = em[:, 0] and all K = em.size(1) columns are contracted
inline Args prepare(const char* op, const at::Tensor& em, const at::Tensor& center,
                    const at::Tensor& params, at::IntArrayRef widths, int64_t act, bool resnet_dt,
                    int64_t ncenter, bool s_last, int64_t chunk) {
  check_float(em, op, "em");
  TORCH_CHECK(em.dim() == 2 && em.size(1) >= 1 + s_last, "dpx::", op, ": em must be [nslot, ",
              s_last ? "K + 1] (K >= 1, s last" : "K] (K >= 1", "), got ", em.sizes());
  check_dtype(center, at::kLong, op, "center");
  TORCH_CHECK(center.dim() == 1 && center.size(0) == em.size(0), "dpx::", op,
              ": center must be [nslot] with nslot = ", em.size(0), ", got ", center.sizes());
  check_same_device(center, em, op, "center");
  check_same_device(params, em, op, "params");
  TORCH_CHECK(params.scalar_type() == em.scalar_type(), "dpx::", op, ": params has dtype ",
              params.scalar_type(), " but em has ", em.scalar_type());
  TORCH_CHECK(widths.size() >= 2 && widths[0] == 1, "dpx::", op,
              ": widths must be [1, neuron...] (the net's input is s), got ", widths);
  for (int64_t w : widths) TORCH_CHECK(w >= 1, "dpx::", op, ": widths must be positive, got ", widths);
  TORCH_CHECK(act >= cpu::kLinear && act <= cpu::kGelu, "dpx::", op,
              ": activation code must be in [0, 5], got ", act);
  const int64_t ld = em.size(1), k = ld - s_last;
  Args a{em.contiguous(), center.contiguous(), params.contiguous(), {}, widths.vec(), {}, act, 0,
         resnet_dt, {ld, k, s_last ? k : 0}};
  a.np = cpu::embed_nparams((int64_t)widths.size() - 1, widths.data(), resnet_dt);
  TORCH_CHECK(params.dim() == 1 && params.size(0) == a.np, "dpx::", op, ": params must be [",
              a.np, "] for widths ", widths, " (resnet_dt ", resnet_dt, "), got ", params.sizes());
  // on a GPU this copy is the op's one host round trip: the chunk plan needs the centers
  a.center_host = a.center.is_cpu() ? a.center : a.center.cpu();
  const int64_t n = em.size(0);
  const int64_t* c = a.center_host.data_ptr<int64_t>();
  for (int64_t p = 0; p < n; ++p)
    TORCH_CHECK(c[p] >= 0 && c[p] < ncenter && (p == 0 || c[p] >= c[p - 1]), "dpx::", op,
                ": center must be sorted, with values in [0, ", ncenter, "); entry ", p, " is ",
                c[p]);
  a.bounds.push_back(0);
  for (int64_t p = chunk; p < n;) {
    while (p < n && c[p] == c[p - 1]) ++p;
    if (p < n) a.bounds.push_back(p);
    p += chunk;
  }
  if (n > 0) a.bounds.push_back(n);
  return a;
}

inline void check_grad_t(const char* op, const at::Tensor& grad_t, const Args& a) {
  TORCH_CHECK(grad_t.dim() == 3 && grad_t.size(1) == a.lay.k &&
                  grad_t.size(2) == a.widths.back(),
              "dpx::", op, ": grad_t must be [ncenter, ", a.lay.k, ", ", a.widths.back(),
              "], got ", grad_t.sizes());
  TORCH_CHECK(grad_t.scalar_type() == a.em.scalar_type(), "dpx::", op, ": grad_t has dtype ",
              grad_t.scalar_type(), " but em has ", a.em.scalar_type());
  TORCH_CHECK(grad_t.device() == a.em.device(), "dpx::", op, ": grad_t is on ", grad_t.device(),
              " but em is on ", a.em.device());
}

inline void check_grad_grad_em(const char* op, const at::Tensor& grad_grad_em, const Args& a) {
  TORCH_CHECK(grad_grad_em.sizes() == a.em.sizes() &&
                  grad_grad_em.scalar_type() == a.em.scalar_type(),
              "dpx::", op, ": grad_grad_em must be like em ", a.em.sizes(), ", got ",
              grad_grad_em.sizes(), " ", grad_grad_em.scalar_type());
  TORCH_CHECK(grad_grad_em.device() == a.em.device(), "dpx::", op, ": grad_grad_em is on ",
              grad_grad_em.device(), " but em is on ", a.em.device());
}

}  // namespace dpx::ops::embed_args
