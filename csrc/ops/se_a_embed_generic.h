// The dpx::se_a_embed_reduce family written in ATen operations on chunks of slots: the CUDA
// implementation (ops/cuda/se_a_embed.cpp), correct on any device. Same formulas as the CPU
// kernels (kernels/cpu/embed.h): per chunk of ~kGenericChunk slots, the net runs forward with
// d/ds carried beside the value, and the weight derivatives come back by one reverse pass
// through both. What a chunk keeps (each layer's input, pre-activation and their d/ds) lives
// for that chunk only, so memory is bounded by the chunk, not by G. Layer products are BLAS
// gemms (cuBLAS on a GPU); a center's sum is a segment sum over its sorted slots in one chunk
// and the chunks add up in order: no atomics, the same numbers at every launch.
// The same functions are registered as dpx_generic::se_a_embed_reduce* for every device, so
// the CPU test suite checks this code against the reference twins.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace dpx::ops::generic {

at::Tensor embed_reduce(const at::Tensor& em, const at::Tensor& center, const at::Tensor& params,
                        at::IntArrayRef widths, int64_t act, bool resnet_dt, int64_t ncenter,
                        double scale, bool s_last);
at::Tensor embed_reduce_grad_em(const at::Tensor& grad_t, const at::Tensor& em,
                                const at::Tensor& center, const at::Tensor& params,
                                at::IntArrayRef widths, int64_t act, bool resnet_dt, double scale,
                                bool s_last);
at::Tensor embed_reduce_grad_params(const at::Tensor& grad_t, const at::Tensor& em,
                                    const at::Tensor& center, const at::Tensor& params,
                                    at::IntArrayRef widths, int64_t act, bool resnet_dt,
                                    double scale, bool s_last);
std::tuple<at::Tensor, at::Tensor, at::Tensor> embed_reduce_grad_em_grad(
    const at::Tensor& grad_grad_em, const at::Tensor& grad_t, const at::Tensor& em,
    const at::Tensor& center, const at::Tensor& params, at::IntArrayRef widths, int64_t act,
    bool resnet_dt, double scale, bool s_last);

}  // namespace dpx::ops::generic
