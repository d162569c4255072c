// dpx::se_a_embed_reduce family on CUDA: the device-generic implementation
// (ops/se_a_embed_generic.h), whose layer products run on cuBLAS and whose sums are segment
// sums on the current stream. Each call copies the centers to the host once (the chunk plan).
#include <torch/library.h>

#include "ops/se_a_embed_generic.h"

TORCH_LIBRARY_IMPL(dpx, CUDA, m) {
  m.impl("se_a_embed_reduce", &dpx::ops::generic::embed_reduce);
  m.impl("se_a_embed_reduce_grad_em", &dpx::ops::generic::embed_reduce_grad_em);
  m.impl("se_a_embed_reduce_grad_params", &dpx::ops::generic::embed_reduce_grad_params);
  m.impl("se_a_embed_reduce_grad_em_grad", &dpx::ops::generic::embed_reduce_grad_em_grad);
}
