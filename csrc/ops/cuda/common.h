// The CUDA op layer's shared pieces: the device guard and stream of an op, and the launch
// check after its kernels (cudaGetLastError: no synchronization).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace dpx::ops::cuda {

// Runs on x's device, on that device's current stream (the caller's, as torch does).
// c10::cuda::getCurrentCUDAStream is at::cuda::getCurrentCUDAStream without the
// cuBLAS/cuSPARSE headers that ATen/cuda/CUDAContext.h pulls in.
struct OnDevice {
  c10::cuda::CUDAGuard guard;
  cudaStream_t stream;
  explicit OnDevice(const at::Tensor& x)
      : guard(x.device()), stream(c10::cuda::getCurrentCUDAStream(x.device().index()).stream()) {}
};

}  // namespace dpx::ops::cuda
