// Neighbor search on CUDA; see nlist.h for the steps and kernels/cpu/nlist.cpp for the CPU
// twin. Where the CPU decides something by a floating-point comparison (which shifts pass,
// r^2 <= rcut^2, ties in r^2), the same expression is evaluated here in the same order without
// fused multiply-adds (nlist_plan.h: mul, add, dot3, dist2), so that both devices make the
// same decisions bit for bit. The arithmetic shared with the host lives in nlist_plan.h.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nlist.h"

namespace dpx::cuda {
namespace {

template <typename T>
__device__ inline T infinity() {  // (std::numeric_limits is host-only without a flag)
  return T(INFINITY);
}

__device__ inline void atomic_inc(int64_t* p) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), 1ull);
}

// ---------------------------------------------------------------------------------------
// extended system
// ---------------------------------------------------------------------------------------
template <typename T>
__global__ void plan_ghosts_kernel(const T* coord, const int64_t* atype, const FrameGeom<T>* geom,
                                   NlistShape s, T* wrap, int32_t* range) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= s.nf * s.nloc) return;
  const FrameGeom<T>& g = geom[c / s.nloc];
  plan_atom(g, coord + 3 * c, atype[c], wrap + 3 * c, range + 6 * c);
}

constexpr int kScanThreads = 256;

// One block per frame: (shift, atom) pairs in the CPU's order (shift index lexicographic in
// (s0, s1, s2), atoms ascending), a ghost where the shift is not 0 and within the atom's
// range on every axis; its row is nloc + (number of ghosts before it).
template <typename T>
__global__ void extend_kernel(const int64_t* atype, const FrameGeom<T>* geom, NlistShape s,
                              const T* wrap, const int32_t* range, int64_t* nall_f, bool write,
                              int64_t* mapping, int64_t* ext_atype, T* shift) {
  using Scan = cub::BlockScan<int64_t, kScanThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int64_t carry;
  const int64_t f = blockIdx.x, nloc = s.nloc;
  const FrameGeom<T>& g = geom[f];
  const int64_t* types = atype + f * nloc;
  const T* wr = wrap + 3 * f * nloc;
  const int32_t* rg = range + 6 * f * nloc;
  if (write) {
    for (int64_t i = threadIdx.x; i < nloc; i += blockDim.x) {
      const int64_t e = f * s.nall + i;
      mapping[e] = i;
      ext_atype[e] = types[i];
      for (int k = 0; k < 3; ++k) shift[3 * e + k] = g.periodic ? -wr[3 * i + k] : T(0);
    }
  }
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  const int64_t total = g.nshift * nloc;
  for (int64_t base = 0; base < total; base += blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    int64_t flag = 0, sv[3] = {0, 0, 0}, i = 0;
    if (idx < total) {
      i = ghost_candidate(g, nloc, idx, sv);
      flag = (sv[0] != 0 || sv[1] != 0 || sv[2] != 0);
      for (int k = 0; k < 3; ++k)
        flag &= (sv[k] >= rg[6 * i + 2 * k] && sv[k] <= rg[6 * i + 2 * k + 1]);
    }
    int64_t pos, sum;
    Scan(tmp).ExclusiveSum(flag, pos, sum);
    if (write && flag) {
      const int64_t e = f * s.nall + nloc + carry + pos;
      mapping[e] = i;
      ext_atype[e] = types[i];
      for (int k = 0; k < 3; ++k) shift[3 * e + k] = static_cast<T>(sv[k]) - wr[3 * i + k];
    }
    __syncthreads();  // every thread has read carry (and tmp is free again)
    if (threadIdx.x == 0) carry += sum;
    __syncthreads();
  }
  if (!write && threadIdx.x == 0) nall_f[f] = nloc + carry;
}

template <typename T>
__global__ void ext_coord_kernel(const T* coord, const T* box, const int64_t* mapping,
                                 const T* shift, NlistShape s, T* ext) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= s.nf * s.nall) return;
  const int64_t f = e / s.nall;
  const T* x = coord + 3 * (f * s.nloc + mapping[e]);
  for (int k = 0; k < 3; ++k)
    ext[3 * e + k] = box ? x[k] + dot3(shift + 3 * e, box + 9 * f + k, 3) : x[k];
}

// one block per frame: lo[3], hi[3] and the count of the real extended atoms
template <typename T>
__global__ void bounds_kernel(const T* ext, const int64_t* ext_atype, NlistShape s,
                              double* bounds) {
  using Reduce = cub::BlockReduce<double, kScanThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t f = blockIdx.x;
  const double inf = infinity<double>();
  double lo[3] = {inf, inf, inf}, hi[3] = {-inf, -inf, -inf}, m = 0;
  for (int64_t e = f * s.nall + threadIdx.x; e < (f + 1) * s.nall; e += blockDim.x) {
    if (ext_atype[e] < 0) continue;
    m += 1;
    for (int k = 0; k < 3; ++k) {
      const double v = static_cast<double>(ext[3 * e + k]);
      lo[k] = fmin(lo[k], v);
      hi[k] = fmax(hi[k], v);
    }
  }
  double out[7];
  for (int k = 0; k < 3; ++k) {
    out[k] = Reduce(tmp).Reduce(lo[k], [](double a, double b) { return fmin(a, b); });
    __syncthreads();
    out[3 + k] = Reduce(tmp).Reduce(hi[k], [](double a, double b) { return fmax(a, b); });
    __syncthreads();
  }
  out[6] = Reduce(tmp).Sum(m);
  if (threadIdx.x == 0)
    for (int k = 0; k < 7; ++k) bounds[7 * f + k] = out[k];
}

// ---------------------------------------------------------------------------------------
// cell list
// ---------------------------------------------------------------------------------------
template <typename T>
__global__ void bin_kernel(const T* ext, const int64_t* ext_atype, const Grid* grids,
                           NlistShape s, int64_t* bin, int64_t* bin_count) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= s.nf * s.nall) return;
  if (ext_atype[e] < 0) {
    bin[e] = -1;
    return;
  }
  const Grid& g = grids[e / s.nall];
  int64_t b[3];
  bin_xyz(g, ext + 3 * e, b);
  const int64_t flat = g.bin_offset + (b[0] * g.n[1] + b[1]) * g.n[2] + b[2];
  bin[e] = flat;
  atomic_inc(bin_count + flat);
}

// one block per frame: start[f + bin_offset + b] = atoms in the frame's bins before b, for
// b = 0 .. nbins (the last is the frame's count of real atoms)
__global__ void bin_start_kernel(const Grid* grids, const int64_t* bin_count, int64_t* start) {
  using Scan = cub::BlockScan<int64_t, kScanThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int64_t carry;
  const Grid& g = grids[blockIdx.x];
  const int64_t nbins = g.n[0] * g.n[1] * g.n[2];
  const int64_t* cnt = bin_count + g.bin_offset;
  int64_t* st = start + g.bin_offset + blockIdx.x;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int64_t base = 0; base <= nbins; base += blockDim.x) {
    const int64_t b = base + threadIdx.x;
    const int64_t v = b < nbins ? cnt[b] : 0;
    int64_t pos, sum;
    Scan(tmp).ExclusiveSum(v, pos, sum);
    if (b <= nbins) st[b] = carry + pos;
    __syncthreads();
    if (threadIdx.x == 0) carry += sum;
    __syncthreads();
  }
}

// counting sort: each atom takes a free place in its bin (counting the bin's count down, so
// bin_count ends at 0); the order within a bin is arbitrary, which the search does not see
template <typename T>
__global__ void place_kernel(const T* ext, const int64_t* ext_atype, const Grid* grids,
                             NlistShape s, const int64_t* bin, int64_t* bin_count,
                             const int64_t* start, T* pos, int64_t* index, int32_t* type) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= s.nf * s.nall || bin[e] < 0) return;
  const int64_t f = e / s.nall;
  const int64_t left = static_cast<int64_t>(
      atomicAdd(reinterpret_cast<unsigned long long*>(bin_count + bin[e]),
                static_cast<unsigned long long>(-1ll)));
  const int64_t p = f * s.nall + start[bin[e] + f] + left - 1;
  for (int k = 0; k < 3; ++k) pos[3 * p + k] = ext[3 * e + k];
  index[p] = e - f * s.nall;
  type[p] = static_cast<int32_t>(ext_atype[e]);
}

// ---------------------------------------------------------------------------------------
// search
// ---------------------------------------------------------------------------------------
// One warp per center. Pass 1: counts per type and the smallest r^2. Pass 2: each lane takes
// candidates p and counts, over all candidates q, those before p (by (r^2, index)) overall
// and of p's type: DeePMD-kit keeps p iff fewer than nnei are before it overall, and puts
// it in slot (number of its type before it) of its section if that is < sel[type].
template <typename T>
__global__ void search_kernel(const Grid* grids, const int64_t* atype, const int64_t* sel,
                              const int64_t* sec, NlistShape s, const T* ext, const T* sorted_pos,
                              const int64_t* sorted_index, const int32_t* sorted_type,
                              const int64_t* bin_start, int64_t* nlist, int64_t* counts,
                              T* min_d2) {
  const int lane = threadIdx.x % kWarp;
  const int64_t c = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp;
  if (c >= s.nf * s.nloc) return;  // the whole warp
  const int64_t f = c / s.nloc, i = c % s.nloc;
  int64_t* row = nlist + c * s.nnei;
  for (int64_t k = lane; k < s.nnei; k += kWarp) row[k] = -1;
  if (atype[c] < 0) {  // virtual: no neighbors (counts were zeroed by the caller)
    if (lane == 0) min_d2[c] = infinity<T>();
    return;
  }
  const Grid& g = grids[f];
  const T* xc = ext + 3 * (f * s.nall + i);
  const T xi = xc[0], yi = xc[1], zi = xc[2];
  int64_t b[3];
  bin_xyz(g, xc, b);
  const T* pos = sorted_pos + 3 * f * s.nall;
  const int64_t* index = sorted_index + f * s.nall;
  const int32_t* type = sorted_type + f * s.nall;
  const int64_t* start = bin_start + g.bin_offset + f;
  const T rc2 = static_cast<T>(s.rcut * s.rcut);
  auto is_neighbor = [&](int64_t p, T& d2) {
    d2 = dist2(pos + 3 * p, xi, yi, zi);
    return d2 <= rc2 && index[p] != i;
  };

  T best = infinity<T>();
  for_each_column(g, b, start, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0 + lane; p < p1; p += kWarp) {
      T d2;
      if (!is_neighbor(p, d2)) continue;
      atomic_inc(counts + c * s.ntypes + type[p]);
      best = d2 < best ? d2 : best;
    }
  });
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const T o = __shfl_xor_sync(0xffffffffu, best, off);
    best = o < best ? o : best;
  }
  if (lane == 0) min_d2[c] = best;
  __syncwarp();  // the -1 fill is visible before any slot is written

  for_each_column(g, b, start, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0 + lane; p < p1; p += kWarp) {
      T d2p;
      if (!is_neighbor(p, d2p)) continue;
      const int32_t t = type[p];
      const int64_t ip = index[p];
      int64_t rank = 0, rank_t = 0;
      bool kept = s.nnei > 0 && sel[t] > 0;  // (a type may have no slots at all)
      for_each_column(g, b, start, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1 && kept; ++q) {
          T d2q;
          if (!is_neighbor(q, d2q) || !before(d2q, index[q], d2p, ip)) continue;
          ++rank;
          rank_t += type[q] == t;
          kept = rank < s.nnei && rank_t < sel[t];
        }
      });
      if (kept) row[sec[t] + rank_t] = ip;
    }
  });
}

// thread (f, t): nnei_max[f, t] = max over centers of counts; t == ntypes: min_dist[f]
template <typename T>
__global__ void stats_kernel(const int64_t* counts, const T* min_d2, NlistShape s,
                             int64_t* nnei_max, T* min_dist) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= s.nf * (s.ntypes + 1)) return;
  const int64_t f = idx / (s.ntypes + 1), t = idx % (s.ntypes + 1);
  if (t < s.ntypes) {
    int64_t mx = 0;
    for (int64_t i = 0; i < s.nloc; ++i) mx = max(mx, counts[(f * s.nloc + i) * s.ntypes + t]);
    nnei_max[f * s.ntypes + t] = mx;
  } else {
    T best = infinity<T>();
    for (int64_t i = 0; i < s.nloc; ++i) best = min(best, min_d2[f * s.nloc + i]);
    min_dist[f] = sqrt(best);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// host side
// ---------------------------------------------------------------------------------------
template <typename T>
void plan_ghosts(const T* coord, const int64_t* atype, const FrameGeom<T>* geom,
                 const NlistShape& s, NlistBuffers<T>& buf, cudaStream_t stream) {
  if (s.nf * s.nloc == 0) return;
  plan_ghosts_kernel<T><<<blocks_for(s.nf * s.nloc), kThreads, 0, stream>>>(
      coord, atype, geom, s, buf.wrap, buf.range);
}

template <typename T>
void extend(const int64_t* atype, const FrameGeom<T>* geom, const NlistShape& s,
            NlistBuffers<T>& buf, bool write, int64_t* mapping, int64_t* ext_atype, T* shift,
            cudaStream_t stream) {
  if (s.nf == 0) return;
  extend_kernel<T><<<s.nf, kScanThreads, 0, stream>>>(atype, geom, s, buf.wrap, buf.range,
                                                      buf.nall_f, write, mapping, ext_atype,
                                                      shift);
}

template <typename T>
void extended_coord(const T* coord, const T* box, const int64_t* mapping, const T* shift,
                    const int64_t* ext_atype, const NlistShape& s, NlistBuffers<T>& buf,
                    cudaStream_t stream) {
  if (s.nf == 0) return;
  if (s.nall > 0)
    ext_coord_kernel<T><<<blocks_for(s.nf * s.nall), kThreads, 0, stream>>>(coord, box, mapping,
                                                                            shift, s, buf.ext);
  // also without atoms: the bounds are then empty (lo = inf, hi = -inf, m = 0)
  bounds_kernel<T><<<s.nf, kScanThreads, 0, stream>>>(buf.ext, ext_atype, s, buf.bounds);
}

template <typename T>
void search(const Grid* grids, const int64_t* atype, const int64_t* ext_atype, const int64_t* sel,
            const int64_t* sec, const NlistShape& s, NlistBuffers<T>& buf, int64_t* nlist,
            int64_t* nnei_max, T* min_dist, cudaStream_t stream) {
  if (s.nf == 0) return;
  if (s.nall > 0) {
    bin_kernel<T><<<blocks_for(s.nf * s.nall), kThreads, 0, stream>>>(buf.ext, ext_atype, grids,
                                                                      s, buf.bin, buf.bin_count);
    bin_start_kernel<<<s.nf, kScanThreads, 0, stream>>>(grids, buf.bin_count, buf.bin_start);
    place_kernel<T><<<blocks_for(s.nf * s.nall), kThreads, 0, stream>>>(
        buf.ext, ext_atype, grids, s, buf.bin, buf.bin_count, buf.bin_start, buf.sorted_pos,
        buf.sorted_index, buf.sorted_type);
  }
  if (s.nloc > 0)
    search_kernel<T><<<blocks_for(s.nf * s.nloc, kThreads / kWarp), kThreads, 0, stream>>>(
        grids, atype, sel, sec, s, buf.ext, buf.sorted_pos, buf.sorted_index, buf.sorted_type,
        buf.bin_start, nlist, buf.counts, buf.min_d2);
  stats_kernel<T><<<blocks_for(s.nf * (s.ntypes + 1)), kThreads, 0, stream>>>(
      buf.counts, buf.min_d2, s, nnei_max, min_dist);
}

#define DPX_INSTANTIATE(T)                                                                     \
  template void plan_ghosts<T>(const T*, const int64_t*, const FrameGeom<T>*,                  \
                               const NlistShape&, NlistBuffers<T>&, cudaStream_t);             \
  template void extend<T>(const int64_t*, const FrameGeom<T>*, const NlistShape&,              \
                          NlistBuffers<T>&, bool, int64_t*, int64_t*, T*, cudaStream_t);       \
  template void extended_coord<T>(const T*, const T*, const int64_t*, const T*,                \
                                  const int64_t*, const NlistShape&, NlistBuffers<T>&,         \
                                  cudaStream_t);                                               \
  template void search<T>(const Grid*, const int64_t*, const int64_t*, const int64_t*,     \
                          const int64_t*, const NlistShape&, NlistBuffers<T>&, int64_t*,      \
                          int64_t*, T*, cudaStream_t);
DPX_INSTANTIATE(float)
DPX_INSTANTIATE(double)
#undef DPX_INSTANTIATE

}  // namespace dpx::cuda
