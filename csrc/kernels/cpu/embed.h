// The fused embedding + reduction (ops/se_a_embed.cpp): one embedding net G(s) run on the
// filled slots p of its (center type, neighbor type) pair, contracted with their
// environment-matrix rows R_p = em[p, :K] into the center c_p's
//   T[c, a, m] = scale * sum_{p: c_p = c} R_p[a] G(s_p)[m],  a < K         (embed_reduce)
// and the derivatives a force loss needs (gT = dL/dT, ggem = dL/d(gem)). The net's input s
// is a column js of em's rows (EmLayout): js = 0 for se_e2_a (s = R[0], K = 4), or a column
// of its own after the K contracted ones (s apart, js = K). For every column j of em:
//   gem[p, j]  = [j < K] scale * (gT[c_p] G_p)[j] + [j = js] scale * R_p . (gT[c_p] G'_p)
//                                                                (embed_reduce_grad_em)
//   gparams    = d/dparams of sum_p scale * R_p^T gT[c_p] G_p      (embed_reduce_grad_params)
//   d/d(gT, em, params) of sum_p ggem[p] . gem[p]                 (embed_reduce_grad_em_grad)
// G' = dG/ds is carried forward beside G (forward-mode in s); the last op back-propagates
// through both. Slots go through the net in tiles of kTile rows whose activations stay in
// cache; nothing G-sized is kept between calls. Matrix products call the BLAS that torch
// carries (dgemm_/sgemm_), a plain loop where there is none.
#pragma once
#include <cstdint>

#include "kernels/cpu/isa.h"

namespace dpx::cpu {

// The activations the fused kernels implement (others take the unfused path):
// the codes of dpx.ops.se_a_embed.ACTIVATIONS
enum EmbedActivation : int { kLinear = 0, kTanh = 1, kRelu = 2, kSoftplus = 3, kSigmoid = 4, kGelu = 5 };

// One embedding net: widths[0] = 1 -> widths[1] -> ... -> widths[nlayer]; params packs, per
// layer l (in = widths[l-1], out = widths[l]): matrix [in, out] row-major, bias [out], and idt
// [out] when resnet_dt and out is in or 2 in. The skip (y += x, or y += (x, x)) is there when
// out is in or 2 in (DeePMD-kit's embedding-net rule).
template <typename T>
struct EmbedNet {
  int64_t nlayer;
  const int64_t* widths;
  const T* params;
  int act;
  bool resnet_dt;
};

// em's rows: ld entries each (em [nslot, ld], row-major), the first k of them contracted
// into T, entry js the net's input s: js = 0 with k = ld (s also contracted, se_e2_a), or
// js = k = ld - 1 (s apart: the net's input only).
struct EmLayout {
  int64_t ld, k, js;
};

// Entries of params for these widths.
inline int64_t embed_nparams(int64_t nlayer, const int64_t* widths, bool resnet_dt) {
  int64_t n = 0;
  for (int64_t l = 0; l < nlayer; ++l) {
    const int64_t in = widths[l], out = widths[l + 1];
    n += in * out + out + ((resnet_dt && (out == in || out == 2 * in)) ? out : 0);
  }
  return n;
}

}  // namespace dpx::cpu

namespace dpx::cpu::generic {
#include "kernels/cpu/embed.inc"
}  // namespace dpx::cpu::generic

namespace dpx::cpu::avx2 {
#include "kernels/cpu/embed.inc"
}  // namespace dpx::cpu::avx2

namespace dpx::cpu::avx512 {
#include "kernels/cpu/embed.inc"
}  // namespace dpx::cpu::avx512
