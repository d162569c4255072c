// dpx::se_a_embed_reduce family in ATen operations (ops/se_a_embed_generic.h).
//
// Notation per chunk of n slots: R [n, K] the contracted columns of em, s its column js
// (Args::lay), H [n, K, M] = grad_t of each slot's center, q = grad_grad_em (em's shape),
// q_K its first K columns, q_s its column js; G, G' [n, M] the net and its d/ds.
//   T[c]           += scale sum_p R_p (x) G_p
//   grad_em        =  scale (H G) in the first K columns + [column js] scale R . (H G')
//   grad_params    =  scale d/dparams sum_p u_p . G_p,               u = R^T H
//   grad_em_grad:     L = scale sum_p (q_K^T H_p) . G_p + q_s (R_p^T H_p) . G'_p, so
//     d/dH[a, m]   =  scale (q_K[a] G[m] + q_s R[a] G'[m])  (segment sums into grad_t's shape)
//     d/dR         =  scale q_s (H G'),  d/ds = d/ds of L,  d/dparams of L
//   where d/ds and d/dparams of sum_p u_p . G_p + v_p . G'_p are one reverse pass.
#include "ops/se_a_embed_generic.h"

#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cmath>
#include <utility>
#include <vector>

#include "ops/se_a_embed_args.h"
#include "ops/se_a_embed_schemas.h"

namespace dpx::ops::generic {
namespace {

using embed_args::Args;

// slots per chunk: large enough that the gemms fill a GPU, small enough that a chunk's
// activations (4 tensors per layer, ~90 MB at neuron [25, 50, 100] in float64) stay modest
constexpr int64_t kGenericChunk = 8192;

// One layer of the packed net (views into params): y = act(x W + b) [* idt] [+ x or (x, x)]
struct Layer {
  at::Tensor w, b, idt;  // idt undefined without resnet_dt or skip
  int64_t in, out;
  bool skip;
};

std::vector<Layer> layers_of(const Args& a) {
  std::vector<Layer> net;
  int64_t off = 0;
  for (size_t l = 0; l + 1 < a.widths.size(); ++l) {
    Layer L{{}, {}, {}, a.widths[l], a.widths[l + 1], false};
    L.skip = L.out == L.in || L.out == 2 * L.in;
    L.w = a.params.narrow(0, off, L.in * L.out).view({L.in, L.out});
    off += L.in * L.out;
    L.b = a.params.narrow(0, off, L.out);
    off += L.out;
    if (a.resnet_dt && L.skip) {
      L.idt = a.params.narrow(0, off, L.out);
      off += L.out;
    }
    net.push_back(L);
  }
  return net;
}

at::Tensor activate(const at::Tensor& z, int64_t act) {
  switch (act) {
    case cpu::kTanh: return at::tanh(z);
    case cpu::kRelu: return at::relu(z);
    case cpu::kSoftplus: return at::softplus(z, 1, 20);
    case cpu::kSigmoid: return at::sigmoid(z);
    case cpu::kGelu: return at::gelu(z, "tanh");
    default: return z;
  }
}

// (sigma'(z), sigma''(z)) given a = sigma(z) (tanh and sigmoid take theirs from it); the
// second only when `second`. Each matches the derivative torch's autograd takes of the
// activation above (softplus is linear beyond its threshold 20).
std::pair<at::Tensor, at::Tensor> derivatives(const at::Tensor& z, const at::Tensor& a,
                                              int64_t act, bool second) {
  at::Tensor d1, d2;
  switch (act) {
    case cpu::kTanh: {
      const auto& t = a;
      d1 = 1 - t * t;
      if (second) d2 = -2 * t * d1;
      break;
    }
    case cpu::kRelu:
      d1 = (z > 0).to(z.scalar_type());
      if (second) d2 = at::zeros_like(z);
      break;
    case cpu::kSoftplus: {
      auto big = z > 20;
      auto sg = at::sigmoid(z);
      d1 = at::where(big, at::ones_like(z), sg);
      if (second) d2 = at::where(big, at::zeros_like(z), sg * (1 - sg));
      break;
    }
    case cpu::kSigmoid: {
      const auto& sg = a;
      d1 = sg * (1 - sg);
      if (second) d2 = d1 * (1 - 2 * sg);
      break;
    }
    case cpu::kGelu: {  // 0.5 z (1 + tanh(u)), u = k (z + c z^3)
      const double k = std::sqrt(2.0 / M_PI), c = 0.044715;
      auto z2 = z * z;
      auto t = at::tanh(k * z * (1 + c * z2));
      auto sech2 = 1 - t * t;
      auto du = k * (1 + 3 * c * z2);
      d1 = 0.5 * (1 + t) + 0.5 * z * sech2 * du;
      if (second) d2 = sech2 * du + 0.5 * z * sech2 * (6 * k * c * z - 2 * t * du * du);
      break;
    }
    default:
      d1 = at::ones_like(z);
      if (second) d2 = at::zeros_like(z);
  }
  return {d1, d2};
}

// A chunk's forward pass: the output G and its d/ds dg (with `tangent`), and when `keep`,
// each layer's input x, dx and pre-activation z, dz for the reverse pass.
struct Pass {
  std::vector<at::Tensor> x, dx, z, dz;
  at::Tensor g, dg;
};

at::Tensor doubled(const at::Tensor& x, const Layer& L) {
  return L.out == L.in ? x : at::cat({x, x}, 1);
}

Pass forward(const std::vector<Layer>& net, const at::Tensor& s, int64_t act, bool tangent,
             bool keep) {
  Pass f;
  at::Tensor x = s, dx = tangent ? at::ones_like(s) : at::Tensor();
  for (const Layer& L : net) {
    auto z = at::addmm(L.b, x, L.w);
    auto y = activate(z, act);
    at::Tensor dz, dy;
    if (tangent) {
      dz = at::mm(dx, L.w);
      dy = derivatives(z, y, act, false).first * dz;
    }
    if (L.idt.defined()) {
      y = y * L.idt;
      if (tangent) dy = dy * L.idt;
    }
    if (L.skip) {
      y = y + doubled(x, L);
      if (tangent) dy = dy + doubled(dx, L);
    }
    if (keep) {
      f.x.push_back(x);
      f.dx.push_back(dx);
      f.z.push_back(z);
      f.dz.push_back(dz);
    }
    x = y;
    dx = dy;
  }
  f.g = x;
  f.dg = dx;
  return f;
}

// The skip's share of an input's gradient: y's gradient, its two halves added when out = 2 in
at::Tensor folded(const at::Tensor& gy, const Layer& L) {
  return L.out == L.in ? gy : gy.narrow(1, 0, L.in) + gy.narrow(1, L.in, L.in);
}

// d/ds [n, 1] and d/dparams [np] of sum(gy * G) + sum(gdy * G') through a kept pass (gdy
// undefined: the G' term is absent, and the pass may lack its tangent).
std::pair<at::Tensor, at::Tensor> reverse(const std::vector<Layer>& net, const Pass& f,
                                          at::Tensor gy, at::Tensor gdy, int64_t act) {
  const bool second = gdy.defined();
  std::vector<std::vector<at::Tensor>> pieces(net.size());
  for (int64_t l = (int64_t)net.size() - 1; l >= 0; --l) {
    const Layer& L = net[l];
    const auto& z = f.z[l];
    // the activation recomputed once (not kept: one tensor less per layer and chunk)
    auto a = activate(z, act);
    auto [d1, d2] = derivatives(z, a, act, second);
    at::Tensor ga = gy, gda = gdy, gidt;
    if (L.idt.defined()) {
      gidt = (gy * a).sum(0);
      if (second) gidt = gidt + (gdy * d1 * f.dz[l]).sum(0);
      ga = gy * L.idt;
      if (second) gda = gdy * L.idt;
    }
    auto gz = ga * d1;
    at::Tensor gdz;
    if (second) {
      gz = gz + gda * d2 * f.dz[l];
      gdz = gda * d1;
    }
    auto gw = at::mm(f.x[l].t(), gz);
    if (second) gw.addmm_(f.dx[l].t(), gdz);
    pieces[l] = {gw.reshape(-1), gz.sum(0)};
    if (gidt.defined()) pieces[l].push_back(gidt);
    auto gx = at::mm(gz, L.w.t());
    at::Tensor gdx;
    if (second) gdx = at::mm(gdz, L.w.t());
    if (L.skip) {
      gx = gx + folded(gy, L);
      if (second) gdx = gdx + folded(gdy, L);
    }
    gy = gx;
    gdy = gdx;
  }
  std::vector<at::Tensor> flat;
  for (auto& p : pieces) flat.insert(flat.end(), p.begin(), p.end());
  return {gy, at::cat(flat)};
}

struct Chunk {
  int64_t b, e;
  at::Tensor rows, center, s;  // R [n, K] (em's first K columns), the centers, s [n, 1]
};

Chunk chunk_of(const Args& a, int64_t k) {
  const int64_t b = a.bounds[k], e = a.bounds[k + 1];
  auto em = a.em.slice(0, b, e);
  return {b, e, em.narrow(1, 0, a.lay.k), a.center.slice(0, b, e), em.narrow(1, a.lay.js, 1)};
}

// [n, K] -> em's shape [n, ld]: s's own column (s apart) appended as zeros
at::Tensor widened(const at::Tensor& x, const Args& a) {
  return a.lay.ld == a.lay.k ? x : at::constant_pad_nd(x, {0, a.lay.ld - a.lay.k});
}

// out[c] += scale * sum over the chunk's slots p of center c of data[p]: one segment sum
// over the chunk's centers (a center's slots all lie in one chunk)
void add_by_center(at::Tensor& out, const at::Tensor& data, const Args& a, const Chunk& ch,
                   double scale) {
  const int64_t* c = a.center_host.data_ptr<int64_t>();
  const int64_t lo = c[ch.b], hi = c[ch.e - 1];
  std::vector<int64_t> lengths(hi - lo + 1, 0);
  for (int64_t p = ch.b; p < ch.e; ++p) ++lengths[c[p] - lo];
  auto len = at::tensor(lengths, at::TensorOptions().dtype(at::kLong)).to(data.device());
  auto sums = at::segment_reduce(data, "sum", len, {}, {}, 0, true);
  out.narrow(0, lo, hi - lo + 1).add_(sums, scale);
}

// [n, K] = (H G)[a] for each slot: H [n, K, M], g [n, M]
at::Tensor contract(const at::Tensor& h, const at::Tensor& g) {
  return at::bmm(h, g.unsqueeze(2)).squeeze(2);
}

// [n, M] = R^T H for each slot
at::Tensor weigh(const at::Tensor& r, const at::Tensor& h) {
  return at::bmm(r.unsqueeze(1), h).squeeze(1);
}

Args prepare(const char* op, const at::Tensor& em, const at::Tensor& center,
             const at::Tensor& params, at::IntArrayRef widths, int64_t act, bool resnet_dt,
             int64_t ncenter, bool s_last) {
  return embed_args::prepare(op, em, center, params, widths, act, resnet_dt, ncenter, s_last,
                             kGenericChunk);
}

// the checks, chunk plan and layers of a derivative op, whose grad_t is [ncenter, K, M]
std::pair<Args, std::vector<Layer>> prepare_grad(const char* op, const at::Tensor& grad_t,
                                                 const at::Tensor& em, const at::Tensor& center,
                                                 const at::Tensor& params, at::IntArrayRef widths,
                                                 int64_t act, bool resnet_dt, bool s_last) {
  auto a = prepare(op, em, center, params, widths, act, resnet_dt, grad_t.size(0), s_last);
  embed_args::check_grad_t(op, grad_t, a);
  auto net = layers_of(a);
  return {std::move(a), std::move(net)};
}

}  // namespace

at::Tensor embed_reduce(const at::Tensor& em, const at::Tensor& center, const at::Tensor& params,
                        at::IntArrayRef widths, int64_t act, bool resnet_dt, int64_t ncenter,
                        double scale, bool s_last) {
  TORCH_CHECK(ncenter >= 0, "dpx::se_a_embed_reduce: ncenter must be >= 0, got ", ncenter);
  c10::OptionalDeviceGuard guard(em.device());
  auto a = prepare("se_a_embed_reduce", em, center, params, widths, act, resnet_dt, ncenter,
                   s_last);
  auto net = layers_of(a);
  auto t = at::zeros({ncenter, a.lay.k, widths.back()}, em.options());
  for (int64_t k = 0; k < a.nchunks(); ++k) {
    auto ch = chunk_of(a, k);
    auto g = forward(net, ch.s, act, false, false).g;
    add_by_center(t, ch.rows.unsqueeze(2) * g.unsqueeze(1), a, ch, scale);
  }
  return t;
}

at::Tensor embed_reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& em,
                                const at::Tensor& center, const at::Tensor& params,
                                at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                double scale, bool s_last) {
  c10::OptionalDeviceGuard guard(em.device());
  auto [a, net] = prepare_grad("se_a_embed_reduce_grad_em", grad_t, em, center, params, widths,
                               act, resnet_dt, s_last);
  auto gem = at::empty_like(a.em);
  for (int64_t k = 0; k < a.nchunks(); ++k) {
    auto ch = chunk_of(a, k);
    auto f = forward(net, ch.s, act, true, false);
    auto h = grad_t.index_select(0, ch.center);
    auto part = widened(contract(h, f.g), a);
    part.select(1, a.lay.js).add_((ch.rows * contract(h, f.dg)).sum(1));
    gem.slice(0, ch.b, ch.e).copy_(part.mul_(scale));
  }
  return gem;
}

at::Tensor embed_reduce_grad_params(const at::Tensor& grad_t, const at::Tensor& em,
                                    const at::Tensor& center, const at::Tensor& params,
                                    at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                    double scale, bool s_last) {
  c10::OptionalDeviceGuard guard(em.device());
  auto [a, net] = prepare_grad("se_a_embed_reduce_grad_params", grad_t, em, center, params,
                               widths, act, resnet_dt, s_last);
  auto gp = at::zeros({a.np}, em.options());
  for (int64_t k = 0; k < a.nchunks(); ++k) {
    auto ch = chunk_of(a, k);
    auto f = forward(net, ch.s, act, false, true);
    auto u = weigh(ch.rows, grad_t.index_select(0, ch.center));
    gp.add_(reverse(net, f, u, {}, act).second);
  }
  return gp.mul_(scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> embed_reduce_grad_em_grad(
    const at::Tensor& grad_grad_em, const at::Tensor& grad_t, const at::Tensor& em,
    const at::Tensor& center, const at::Tensor& params, at::IntArrayRef widths, int64_t act,
    bool resnet_dt, double scale, bool s_last) {
  const char* op = "se_a_embed_reduce_grad_em_grad";
  c10::OptionalDeviceGuard guard(em.device());
  auto [a, net] = prepare_grad(op, grad_t, em, center, params, widths, act, resnet_dt, s_last);
  embed_args::check_grad_grad_em(op, grad_grad_em, a);
  auto gge = grad_grad_em.contiguous();
  auto g_gt = at::zeros(grad_t.sizes(), grad_t.options());
  auto g_em = at::empty_like(a.em);
  auto g_p = at::zeros({a.np}, em.options());
  for (int64_t k = 0; k < a.nchunks(); ++k) {
    auto ch = chunk_of(a, k);
    auto f = forward(net, ch.s, act, true, true);
    auto h = grad_t.index_select(0, ch.center);
    auto q = gge.slice(0, ch.b, ch.e);
    auto qk = q.narrow(1, 0, a.lay.k), qs = q.narrow(1, a.lay.js, 1);
    auto qsr = qs * ch.rows;
    add_by_center(g_gt,
                  qk.unsqueeze(2) * f.g.unsqueeze(1) + qsr.unsqueeze(2) * f.dg.unsqueeze(1), a,
                  ch, scale);
    auto [gs, gpar] = reverse(net, f, weigh(qk, h), weigh(qsr, h), act);
    auto part = widened(qs * contract(h, f.dg), a);
    part.select(1, a.lay.js).add_(gs.squeeze(1));
    g_em.slice(0, ch.b, ch.e).copy_(part.mul_(scale));
    g_p.add_(gpar);
  }
  return {g_gt, g_em, g_p.mul_(scale)};
}

}  // namespace dpx::ops::generic

// The same code under the same schemas for every device: what the tests call on a CPU.
TORCH_LIBRARY(dpx_generic, m) {
  m.def(dpx::ops::embed_schemas::kReduce);
  m.def(dpx::ops::embed_schemas::kGradEm);
  m.def(dpx::ops::embed_schemas::kGradParams);
  m.def(dpx::ops::embed_schemas::kGradEmGrad);
}

TORCH_LIBRARY_IMPL(dpx_generic, CompositeExplicitAutograd, m) {
  m.impl("se_a_embed_reduce", &dpx::ops::generic::embed_reduce);
  m.impl("se_a_embed_reduce_grad_em", &dpx::ops::generic::embed_reduce_grad_em);
  m.impl("se_a_embed_reduce_grad_params", &dpx::ops::generic::embed_reduce_grad_params);
  m.impl("se_a_embed_reduce_grad_em_grad", &dpx::ops::generic::embed_reduce_grad_em_grad);
}
