// dpx::se_a_embed_reduce family on CPU (kernels/cpu/embed.h): argument checks, the chunks of
// the slot list (whole centers, a fixed size, so that the sums do not depend on the thread
// count), the chunks split across threads, and the parameter gradients of the chunks summed
// in chunk order.
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "kernels/cpu/embed.h"
#include "ops/se_a_embed_args.h"

namespace dpx::ops {
namespace {

using embed_args::Args;
using embed_args::check_grad_t;

// slots per chunk (about; a chunk ends where a center does)
constexpr int64_t kChunk = 256;

Args prepare(const char* op, const at::Tensor& em, const at::Tensor& center,
             const at::Tensor& params, at::IntArrayRef widths, int64_t act, bool resnet_dt,
             int64_t ncenter, bool s_last) {
  return embed_args::prepare(op, em, center, params, widths, act, resnet_dt, ncenter, s_last,
                             kChunk);
}

template <typename T>
cpu::EmbedNet<T> net_of(const Args& a) {
  return {(int64_t)a.widths.size() - 1, a.widths.data(), a.params.data_ptr<T>(), (int)a.act,
          a.resnet_dt};
}

int64_t nchunks(const Args& a) { return a.nchunks(); }

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

at::Tensor se_a_embed_reduce(const at::Tensor& em, const at::Tensor& center,
                             const at::Tensor& params, at::IntArrayRef widths, int64_t act,
                             bool resnet_dt, int64_t ncenter, double scale, bool s_last) {
  TORCH_CHECK(ncenter >= 0, "dpx::se_a_embed_reduce: ncenter must be >= 0, got ", ncenter);
  auto a = prepare("se_a_embed_reduce", em, center, params, widths, act, resnet_dt, ncenter,
                   s_last);
  auto t = at::zeros({ncenter, a.lay.k, widths.back()}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_reduce", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce<scalar_t>)(net, a.lay, a.em.data_ptr<scalar_t>(),
                                             a.center.data_ptr<int64_t>(), t.data_ptr<scalar_t>(),
                                             (scalar_t)scale, a.bounds.data(), b, e);
    });
  });
  return t;
}

at::Tensor se_a_embed_reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& em,
                                     const at::Tensor& center, const at::Tensor& params,
                                     at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                     double scale, bool s_last) {
  const char* op = "se_a_embed_reduce_grad_em";
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0), s_last);
  check_grad_t(op, grad_t, a);
  auto gt = grad_t.contiguous();
  auto gem = at::zeros_like(a.em);
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_grad_em", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce_grad_em<scalar_t>)(
          net, a.lay, gt.data_ptr<scalar_t>(), a.em.data_ptr<scalar_t>(),
          a.center.data_ptr<int64_t>(), gem.data_ptr<scalar_t>(), (scalar_t)scale,
          a.bounds.data(), b, e);
    });
  });
  return gem;
}

at::Tensor se_a_embed_reduce_grad_params(const at::Tensor& grad_t, const at::Tensor& em,
                                         const at::Tensor& center, const at::Tensor& params,
                                         at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                         double scale, bool s_last) {
  const char* op = "se_a_embed_reduce_grad_params";
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0), s_last);
  check_grad_t(op, grad_t, a);
  auto gt = grad_t.contiguous();
  auto per_chunk = at::zeros({std::max<int64_t>(nchunks(a), 0), a.np}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_grad_params", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce_grad_params<scalar_t>)(
          net, a.lay, gt.data_ptr<scalar_t>(), a.em.data_ptr<scalar_t>(),
          a.center.data_ptr<int64_t>(), per_chunk.data_ptr<scalar_t>(), (scalar_t)scale,
          a.bounds.data(), b, e);
    });
  });
  return sum_chunks(per_chunk, a.np);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> se_a_embed_reduce_grad_em_grad(
    const at::Tensor& grad_grad_em, const at::Tensor& grad_t, const at::Tensor& em,
    const at::Tensor& center, const at::Tensor& params, at::IntArrayRef widths, int64_t act,
    bool resnet_dt, double scale, bool s_last) {
  const char* op = "se_a_embed_reduce_grad_em_grad";
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0), s_last);
  check_grad_t(op, grad_t, a);
  embed_args::check_grad_grad_em(op, grad_grad_em, a);
  auto gt = grad_t.contiguous();
  auto gge = grad_grad_em.contiguous();
  auto g_gt = at::zeros_like(gt);
  auto g_em = at::zeros_like(a.em);
  auto per_chunk = at::zeros({std::max<int64_t>(nchunks(a), 0), a.np}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_embed_grad_em_grad", [&] {
    const auto net = net_of<scalar_t>(a);
    over_chunks(a, [&](int64_t b, int64_t e) {
      DPX_CPU_KERNEL(embed_reduce_grad_em_grad<scalar_t>)(
          net, a.lay, gge.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(),
          a.em.data_ptr<scalar_t>(), a.center.data_ptr<int64_t>(), g_gt.data_ptr<scalar_t>(),
          g_em.data_ptr<scalar_t>(), per_chunk.data_ptr<scalar_t>(), (scalar_t)scale,
          a.bounds.data(), b, e);
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
