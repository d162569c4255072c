// Host-side planning of the CUDA neighbor search (kernels/cuda/nlist.h) and the index
// arithmetic its kernels share with it: plain C++ (no CUDA headers), so that
// tests/nlist/test_cuda_plan.py compiles it with the host compiler and checks it against the
// CPU search (kernels/cpu/nlist.h) without a GPU.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/common/bin_grid.h"

#ifdef __CUDACC__
#define DPX_NLIST_HD __host__ __device__
#else
#define DPX_NLIST_HD
#endif

namespace dpx::cuda {

// Products and sums that are never fused into a multiply-add: the _rn intrinsics on the device
// (which nvcc does not contract), plain operators on the host (the CPU build of
// kernels/cpu/nlist.cpp has no FMA either). Every comparison that decides the result (which
// shifts pass, r^2 <= rcut^2, ties in r^2) is made on values computed in the CPU's order.
#ifdef __CUDA_ARCH__
__device__ inline float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add(double a, double b) { return __dadd_rn(a, b); }
#else
template <typename T>
inline T mul(T a, T b) {
  return a * b;
}
template <typename T>
inline T add(T a, T b) {
  return a + b;
}
#endif

// (a0 b0 + a1 b1) + a2 b2 with the b's strided: the CPU's expression for x H^-1 and s H
template <typename T>
DPX_NLIST_HD inline T dot3(const T* a, const T* b, int stride) {
  return add(add(mul(a[0], b[0]), mul(a[1], b[stride])), mul(a[2], b[2 * stride]));
}

// r^2 of p - (xi, yi, zi) as the CPU's search computes it
template <typename T>
DPX_NLIST_HD inline T dist2(const T* p, T xi, T yi, T zi) {
  const T dx = p[0] - xi, dy = p[1] - yi, dz = p[2] - zi;
  return add(add(mul(dx, dx), mul(dy, dy)), mul(dz, dz));
}

// One frame's periodic geometry, in T as the CPU's plan_ghosts uses it.
template <typename T>
struct FrameGeom {
  T inv[9];         // H^-1 (frac = x H^-1), rows of H = cell vectors
  T rc[3];          // rcut / face distance k
  T up[3];          // 1 + rc[k]
  int64_t nb[3];    // shifts along axis k range over [-nb_k, nb_k]
  int64_t nshift;   // (2 nb_0 + 1)(2 nb_1 + 1)(2 nb_2 + 1), 0 for open boundaries
  int32_t periodic;
};

// from the cell (as cpu::make_cell computes it: inv and face distances in double); the same
// rc and nb as cpu::plan_ghosts
template <typename T>
inline FrameGeom<T> plan_frame(const double inv[9], const double face[3], double rcut) {
  FrameGeom<T> g{};
  for (int k = 0; k < 9; ++k) g.inv[k] = static_cast<T>(inv[k]);
  g.nshift = 1;
  for (int k = 0; k < 3; ++k) {
    g.rc[k] = static_cast<T>(rcut / face[k]);
    g.nb[k] = static_cast<int64_t>(std::ceil(static_cast<double>(g.rc[k])));
    g.up[k] = T(1) + g.rc[k];
    g.nshift *= 2 * g.nb[k] + 1;
  }
  g.periodic = 1;
  return g;
}

template <typename T>
inline FrameGeom<T> open_frame() {
  FrameGeom<T> g{};
  g.periodic = 0;
  g.nshift = 0;
  return g;
}

// Candidate idx in [0, nshift nloc) of the ghost scan: shift index idx / nloc in
// lexicographic order of (s0, s1, s2) in [-nb, nb]^3, atom idx % nloc (the CPU's order of
// write_extended). Writes the shift to sv, returns the atom.
template <typename T>
DPX_NLIST_HD inline int64_t ghost_candidate(const FrameGeom<T>& g, int64_t nloc, int64_t idx,
                                            int64_t sv[3]) {
  const int64_t n1 = 2 * g.nb[1] + 1, n2 = 2 * g.nb[2] + 1, sh = idx / nloc;
  sv[0] = sh / (n1 * n2) - g.nb[0];
  sv[1] = (sh / n2) % n1 - g.nb[1];
  sv[2] = sh % n2 - g.nb[2];
  return idx % nloc;
}

// One frame's cell list: bins of edge `edge` from lo, n[k] per axis, z fastest.
struct Grid {
  double lo[3];
  double inv_edge;
  int64_t n[3];
  int64_t reach;       // bins scanned on each side of a center's bin
  int64_t bin_offset;  // this frame's first bin in the batch's bin arrays
};

// lo/hi: bounds of the frame's m real extended atoms. Bins at least reach_r = rcut (1 + 1e-4)
// wide (so reach 1), widened like the CPU's cell list where atoms are sparse (<= max(64, 8 m)
// bins). Returns the number of bins.
inline int64_t plan_grid(const double lo[3], const double hi[3], int64_t m, double rcut,
                         Grid& g) {
  const double reach_r = rcut * (1.0 + 1e-4);
  double edge = reach_r;  // one bin of reach each side: 27 columns' worth of bins
  double nd[3];
  fit_bin_grid(lo, hi, m, edge, nd);
  for (int k = 0; k < 3; ++k) {
    g.n[k] = (m > 0 && std::isfinite(nd[k])) ? static_cast<int64_t>(nd[k]) : 1;
    g.lo[k] = std::isfinite(lo[k]) ? lo[k] : 0.0;
  }
  const bool finite = m > 0 && std::isfinite(edge);
  g.inv_edge = finite ? 1.0 / edge : 0.0;
  g.reach = finite ? std::max<int64_t>(1, static_cast<int64_t>(std::ceil(reach_r / edge))) : 1;
  return g.n[0] * g.n[1] * g.n[2];
}

// the bin_start buffer: per frame nbins + 1 entries (frame f's start at bin_offset + f)
inline int64_t bin_start_size(int64_t total_bins, int64_t nf) { return total_bins + nf; }

// bin of x along each axis, clamped (NaN lands in bin 0), as cpu::CellList::bin_of
template <typename T>
DPX_NLIST_HD inline void bin_xyz(const Grid& g, const T* x, int64_t b[3]) {
  for (int k = 0; k < 3; ++k) {
    const double v = (static_cast<double>(x[k]) - g.lo[k]) * g.inv_edge;
    b[k] = v >= 0 ? (v < static_cast<double>(g.n[k]) ? static_cast<int64_t>(v) : g.n[k] - 1) : 0;
  }
}

// One local atom x of type t: its wrap (frac = f + wrap, f in [0, 1)) and, per axis k, the
// interval range[2k], range[2k + 1] of image shifts whose fractional coordinate f + s lies
// within [-rc_k, 1 + rc_k] (empty for virtual atoms and open boundaries): cpu::plan_ghosts.
template <typename T>
DPX_NLIST_HD inline void plan_atom(const FrameGeom<T>& g, const T* x, int64_t t, T wrap[3],
                                   int32_t range[6]) {
  for (int k = 0; k < 3; ++k) {
    range[2 * k] = 0;
    range[2 * k + 1] = -1;
    if (!g.periodic) {
      wrap[k] = T(0);
      continue;
    }
    const T frac = dot3(x, g.inv + k, 3);
    using std::floor;
    T w = floor(frac);
    T f = frac - w;
    if (f >= T(1)) {  // frac = -1e-18 gives f = 1 after rounding: fold it back into [0, 1)
      f -= T(1);
      w += T(1);
    }
    wrap[k] = w;
    if (t < 0) continue;
    // the passing shifts form an interval holding 0 for any finite f in [0, 1) (nlist.cpp)
    const T rc = g.rc[k], up = g.up[k];
    auto pass = [&](int64_t sh) {
      const T gs = f + static_cast<T>(sh);
      return gs >= -rc && gs <= up;
    };
    if (!pass(0)) continue;
    int64_t lo = 0, hi = 0;
    while (lo > -g.nb[k] && pass(lo - 1)) --lo;
    while (hi < g.nb[k] && pass(hi + 1)) ++hi;
    range[2 * k] = static_cast<int32_t>(lo);
    range[2 * k + 1] = static_cast<int32_t>(hi);
  }
}

// Calls fn(p0, p1) for the contiguous range of binned atoms of each (x, y) bin column within
// reach of bin b (the z bins of a column are contiguous in the sorted arrays); start is the
// frame's [nbins + 1] bin starts.
template <typename F>
DPX_NLIST_HD inline void for_each_column(const Grid& g, const int64_t b[3], const int64_t* start,
                                         F&& fn) {
  int64_t lo[3], hi[3];  // the bins within reach, clamped to the grid
  for (int k = 0; k < 3; ++k) {
    lo[k] = b[k] - g.reach > 0 ? b[k] - g.reach : 0;
    hi[k] = b[k] + g.reach < g.n[k] - 1 ? b[k] + g.reach : g.n[k] - 1;
  }
  for (int64_t x = lo[0]; x <= hi[0]; ++x)
    for (int64_t y = lo[1]; y <= hi[1]; ++y) {
      const int64_t row = (x * g.n[1] + y) * g.n[2];
      fn(start[row + lo[2]], start[row + hi[2] + 1]);
    }
}

// DeePMD-kit's order of neighbors: by r^2, then by extended index
template <typename T>
DPX_NLIST_HD inline bool before(T d2a, int64_t ia, T d2b, int64_t ib) {
  return d2a < d2b || (d2a == d2b && ia < ib);
}

}  // namespace dpx::cuda
