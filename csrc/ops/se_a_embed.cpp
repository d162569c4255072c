// dpx::se_a_embed_reduce family on CPU (kernels/cpu/embed.h): argument checks, the chunks of
// the slot list (whole centers, a fixed size, so that the sums do not depend on the thread
// count), the chunks split across threads, and the parameter gradients of the chunks summed
// in chunk order.
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "kernels/cpu/embed.h"
#include "ops/checks.h"

namespace dpx::ops {
namespace {

// slots per chunk (about; a chunk ends where a center does)
constexpr int64_t kChunk = 256;

struct Args {
  at::Tensor em, center, params;
  std::vector<int64_t> widths, bounds;
  int64_t act, np;
  bool resnet_dt;
};

Args prepare(const char* op, const at::Tensor& em, const at::Tensor& center,
             const at::Tensor& params, at::IntArrayRef widths, int64_t act, bool resnet_dt,
             int64_t ncenter) {
  check_float(em, op, "em");
  TORCH_CHECK(em.dim() == 2 && em.size(1) == 4, "dpx::", op, ": em must be [nslot, 4], got ",
              em.sizes());
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
  Args a{em.contiguous(), center.contiguous(), params.contiguous(), widths.vec(), {}, act, 0,
         resnet_dt};
  a.np = cpu::embed_nparams((int64_t)widths.size() - 1, widths.data(), resnet_dt);
  TORCH_CHECK(params.dim() == 1 && params.size(0) == a.np, "dpx::", op, ": params must be [",
              a.np, "] for widths ", widths, " (resnet_dt ", resnet_dt, "), got ", params.sizes());
  const int64_t n = em.size(0);
  const int64_t* c = a.center.data_ptr<int64_t>();
  for (int64_t p = 0; p < n; ++p)
    TORCH_CHECK(c[p] >= 0 && c[p] < ncenter && (p == 0 || c[p] >= c[p - 1]), "dpx::", op,
                ": center must be sorted, with values in [0, ", ncenter, "); entry ", p, " is ",
                c[p]);
  a.bounds.push_back(0);
  for (int64_t p = kChunk; p < n;) {
    while (p < n && c[p] == c[p - 1]) ++p;
    if (p < n) a.bounds.push_back(p);
    p += kChunk;
  }
  if (n > 0) a.bounds.push_back(n);
  return a;
}

template <typename T>
cpu::EmbedNet<T> net_of(const Args& a) {
  return {(int64_t)a.widths.size() - 1, a.widths.data(), a.params.data_ptr<T>(), (int)a.act,
          a.resnet_dt};
}

int64_t nchunks(const Args& a) { return (int64_t)a.bounds.size() - 1; }

template <typename F>
void over_chunks(const Args& a, F&& f) {
  if (nchunks(a) > 0) at::parallel_for(0, nchunks(a), 1, f);
}

// the per-chunk parameter gradients [nchunks, np] summed over chunks in order
at::Tensor sum_chunks(const at::Tensor& per_chunk, int64_t np) {
  auto out = at::zeros({np}, per_chunk.options());
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "dpx_embed_sum", [&] {
    const scalar_t* src = per_chunk.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const int64_t rows = per_chunk.size(0);
    at::parallel_for(0, np, 512, [&](int64_t b, int64_t e) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = b; j < e; ++j) dst[j] += src[r * np + j];
    });
  });
  return out;
}

void check_grad_t(const char* op, const at::Tensor& grad_t, const Args& a) {
  TORCH_CHECK(grad_t.dim() == 3 && grad_t.size(1) == 4 && grad_t.size(2) == a.widths.back(),
              "dpx::", op, ": grad_t must be [ncenter, 4, ", a.widths.back(), "], got ",
              grad_t.sizes());
  TORCH_CHECK(grad_t.scalar_type() == a.em.scalar_type(), "dpx::", op, ": grad_t has dtype ",
              grad_t.scalar_type(), " but em has ", a.em.scalar_type());
}

at::Tensor se_a_embed_reduce(const at::Tensor& em, const at::Tensor& center,
                             const at::Tensor& params, at::IntArrayRef widths, int64_t act,
                             bool resnet_dt, int64_t ncenter, double scale) {
  TORCH_CHECK(ncenter >= 0, "dpx::se_a_embed_reduce: ncenter must be >= 0, got ", ncenter);
  auto a = prepare("se_a_embed_reduce", em, center, params, widths, act, resnet_dt, ncenter);
  auto t = at::zeros({ncenter, 4, widths.back()}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_reduce", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce<scalar_t>)(net, a.em.data_ptr<scalar_t>(),
                                             a.center.data_ptr<int64_t>(), t.data_ptr<scalar_t>(),
                                             (scalar_t)scale, a.bounds.data(), b, e);
    });
  });
  return t;
}

at::Tensor se_a_embed_reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& em,
                                     const at::Tensor& center, const at::Tensor& params,
                                     at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                     double scale) {
  const char* op = "se_a_embed_reduce_grad_em";
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0));
  check_grad_t(op, grad_t, a);
  auto gt = grad_t.contiguous();
  auto gem = at::zeros_like(a.em);
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_grad_em", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce_grad_em<scalar_t>)(
          net, gt.data_ptr<scalar_t>(), a.em.data_ptr<scalar_t>(), a.center.data_ptr<int64_t>(),
          gem.data_ptr<scalar_t>(), (scalar_t)scale, a.bounds.data(), b, e);
    });
  });
  return gem;
}

at::Tensor se_a_embed_reduce_grad_params(const at::Tensor& grad_t, const at::Tensor& em,
                                         const at::Tensor& center, const at::Tensor& params,
                                         at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                         double scale) {
  const char* op = "se_a_embed_reduce_grad_params";
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0));
  check_grad_t(op, grad_t, a);
  auto gt = grad_t.contiguous();
  auto per_chunk = at::zeros({std::max<int64_t>(nchunks(a), 0), a.np}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_grad_params", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce_grad_params<scalar_t>)(
          net, gt.data_ptr<scalar_t>(), a.em.data_ptr<scalar_t>(), a.center.data_ptr<int64_t>(),
          per_chunk.data_ptr<scalar_t>(), (scalar_t)scale, a.bounds.data(), b, e);
    });
  });
  return sum_chunks(per_chunk, a.np);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> se_a_embed_reduce_grad_em_grad(
    const at::Tensor& grad_grad_em, const at::Tensor& grad_t, const at::Tensor& em,
    const at::Tensor& center, const at::Tensor& params, at::IntArrayRef widths, int64_t act,
    bool resnet_dt, double scale) {
  const char* op = "se_a_embed_reduce_grad_em_grad";
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0));
  check_grad_t(op, grad_t, a);
  TORCH_CHECK(grad_grad_em.sizes() == a.em.sizes() &&
                  grad_grad_em.scalar_type() == a.em.scalar_type(),
              "dpx::", op, ": grad_grad_em must be like em ", a.em.sizes(), ", got ",
              grad_grad_em.sizes(), " ", grad_grad_em.scalar_type());
  auto gt = grad_t.contiguous();
  auto gge = grad_grad_em.contiguous();
  auto g_gt = at::zeros_like(gt);
  auto g_em = at::zeros_like(a.em);
  auto per_chunk = at::zeros({std::max<int64_t>(nchunks(a), 0), a.np}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_grad_em_grad", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce_grad_em_grad<scalar_t>)(
          net, gge.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(), a.em.data_ptr<scalar_t>(),
          a.center.data_ptr<int64_t>(), g_gt.data_ptr<scalar_t>(), g_em.data_ptr<scalar_t>(),
          per_chunk.data_ptr<scalar_t>(), (scalar_t)scale, a.bounds.data(), b, e);
    });
  });
  return {g_gt, g_em, sum_chunks(per_chunk, a.np)};
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CPU, m) {
  m.impl("se_a_embed_reduce", &se_a_embed_reduce);
  m.impl("se_a_embed_reduce_grad_em", &se_a_embed_reduce_grad_em);
  m.impl("se_a_embed_reduce_grad_params", &se_a_embed_reduce_grad_params);
  m.impl("se_a_embed_reduce_grad_em_grad", &se_a_embed_reduce_grad_em_grad);
}

}  // namespace dpx::ops
