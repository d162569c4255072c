// Launch geometry shared by the CUDA kernels.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dpx::cuda {

constexpr int kThreads = 256;  // threads per block
constexpr int kWarp = 32;

// blocks for n work items, per_block of them per block; at most 2^31 - 1 (the grid's x
// limit: the kernels loop over their work with a grid stride or bound-check it)
inline int64_t blocks_for(int64_t n, int64_t per_block = kThreads) {
  const int64_t b = (n + per_block - 1) / per_block;
  return b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b);
}

// kernel<<<blocks for `work` items, kThreads>>>(args...) on stream; nothing for no work
template <typename... Params, typename... Args>
inline void launch(void (*kernel)(Params...), int64_t work, int64_t per_block,
                   cudaStream_t stream, Args&&... args) {
  if (work <= 0) return;
  kernel<<<blocks_for(work, per_block), kThreads, 0, stream>>>(static_cast<Params>(args)...);
}

// for (idx = this thread; idx < n; idx += all threads)
#define DPX_GRID_LOOP(idx, n)                                                   \
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < (n); \
       idx += int64_t(gridDim.x) * blockDim.x)

}  // namespace dpx::cuda
