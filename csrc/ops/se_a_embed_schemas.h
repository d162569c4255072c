// The schemas of the dpx::se_a_embed_reduce family (ops/schemas.cpp declares them in dpx; the
// device-generic implementation, ops/se_a_embed_generic.cpp, exposes itself under the same
// schemas in dpx_generic for the tests). em [nslot, K] with s = em[:, 0] (se_e2_a: K = 4), or
// with s_last [nslot, K + 1], s = em[:, K] the net's input only; T [ncenter, K, M]. Every
// derivative w.r.t. em has em's shape (with s_last, d/ds in its last column).
#pragma once

namespace dpx::ops::embed_schemas {

inline constexpr const char* kReduce =
    "se_a_embed_reduce(Tensor em, Tensor center, Tensor params, int[] widths, int activation, "
    "bool resnet_dt, int ncenter, float scale, bool s_last=False) -> Tensor";
inline constexpr const char* kGradEm =
    "se_a_embed_reduce_grad_em(Tensor grad_t, Tensor em, Tensor center, Tensor params, "
    "int[] widths, int activation, bool resnet_dt, float scale, bool s_last=False) -> Tensor";
inline constexpr const char* kGradParams =
    "se_a_embed_reduce_grad_params(Tensor grad_t, Tensor em, Tensor center, Tensor params, "
    "int[] widths, int activation, bool resnet_dt, float scale, bool s_last=False) -> Tensor";
inline constexpr const char* kGradEmGrad =
    "se_a_embed_reduce_grad_em_grad(Tensor grad_grad_em, Tensor grad_t, Tensor em, "
    "Tensor center, Tensor params, int[] widths, int activation, bool resnet_dt, float scale, "
    "bool s_last=False) -> (Tensor grad_grad_t, Tensor grad_em, Tensor grad_params)";

}  // namespace dpx::ops::embed_schemas
