// Input checks for the op layer: every message names the op and the argument, so a bad call
// from Python or C++ is an error, never an out-of-bounds read.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <string>

namespace dpx::ops {

inline void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "dpx::", op, ": ",
              name, " must be float32 or float64, got ", t.scalar_type());
}

inline void check_dtype(const at::Tensor& t, at::ScalarType want, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == want, "dpx::", op, ": ", name, " must be ", want, ", got ",
              t.scalar_type());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == dim, "dpx::", op, ": ", name, " must be ", dim, "-d, got shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                              const char* name) {
  TORCH_CHECK(t.device() == ref.device(), "dpx::", op, ": ", name, " is on ", t.device(),
              " but the first argument is on ", ref.device());
}

// Every entry of idx in [lo, hi): O(n), far cheaper than the kernel it protects. On CPU only:
// on a GPU the min and max would be a host round trip (a device synchronization) per call on
// the training path; the CUDA kernels guard their reads instead and write NaN for bad entries.
inline void check_range(const at::Tensor& idx, int64_t lo, int64_t hi, const char* op,
                        const char* name) {
  if (idx.numel() == 0 || !idx.is_cpu()) return;
  const int64_t mn = idx.min().item<int64_t>(), mx = idx.max().item<int64_t>();
  TORCH_CHECK(mn >= lo && mx < hi, "dpx::", op, ": ", name, " values must lie in [", lo, ", ", hi,
              "), got [", mn, ", ", mx, "]");
}

// Centers split over torch's intra-op pool; grain keeps tiny inputs on one thread.
template <typename F>
inline void parallel_centers(int64_t n, F&& f) {
  at::parallel_for(0, n, 16, [&](int64_t b, int64_t e) { f(b, e); });
}

}  // namespace dpx::ops
