#include "kernels/cpu/nlist_count.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "kernels/cpu/simd.h"

namespace dpx::cpu::DPX_KERNEL_ISA {
namespace {

// The widest vectors of the build: the sums are of integers and the minimum is exact, so
// every build gives the same numbers. r^2 is (dx dx + dy dy) + dz dz, as search computes it,
// and this file is compiled without contraction into FMAs (CMakeLists.txt).
template <typename T>
using Vec = simd::Vec<T, simd::kMaxBytes>;
// each type's segment is padded to this many slots, a multiple of every build's lanes, with
// +inf coordinates: r^2 is then +inf or NaN there, never within rcut
constexpr int64_t kPad = 16;

// near_seg[t + 1] = how many atoms of type t the ranges hold. Four histograms, slot by slot
// in turn: one count's increments would wait on each other through memory.
template <typename T>
void count_types(const CellList<T>& cl, int64_t ntypes, Scratch<T>& sc) {
  auto& hist = sc.filled;
  hist.assign(4 * ntypes, 0);
  const int32_t* type = cl.type.data();
  for (const auto& [p0, p1] : sc.ranges) {
    int64_t p = p0;
    for (; p + 4 <= p1; p += 4) {
      ++hist[type[p]];
      ++hist[ntypes + type[p + 1]];
      ++hist[2 * ntypes + type[p + 2]];
      ++hist[3 * ntypes + type[p + 3]];
    }
    for (; p < p1; ++p) ++hist[type[p]];
  }
  for (int64_t t = 0; t < ntypes; ++t)
    sc.near_seg[t + 1] = hist[t] + hist[ntypes + t] + hist[2 * ntypes + t] + hist[3 * ntypes + t];
}

// The candidates of the centers in the block of bins [lo, hi] (per axis) into
// scratch.near_{x,y,z}: the atoms of every bin whose closest point to the block is within
// reach_r, which holds every atom the search scans around any center in the block. Type t's
// atoms are [near_seg[t], near_seg[t + 1]).
template <typename T>
void gather_block(const CellList<T>& cl, const int64_t* lo, const int64_t* hi, int64_t ntypes,
                  Scratch<T>& sc) {
  const int64_t n1 = cl.n[1], n2 = cl.n[2], reach = cl.reach;
  const double h = cl.edge, r2 = cl.reach_r * cl.reach_r;
  // along axis k, bin v comes no closer to the block than this
  auto gap = [&](int k, int64_t v) {
    return static_cast<double>(std::max({lo[k] - v - 1, v - hi[k] - 1, int64_t{0}})) * h;
  };
  auto& seg = sc.near_seg;
  seg.assign(ntypes + 1, 0);
  sc.ranges.clear();
  for (int64_t x = std::max(lo[0] - reach, int64_t{0}); x <= std::min(hi[0] + reach, cl.n[0] - 1);
       ++x)
    for (int64_t y = std::max(lo[1] - reach, int64_t{0}); y <= std::min(hi[1] + reach, n1 - 1);
         ++y) {
      const double rem = r2 - gap(0, x) * gap(0, x) - gap(1, y) * gap(1, y);
      if (rem < 0) continue;
      const int64_t dz = std::min(reach, 1 + static_cast<int64_t>(std::sqrt(rem) / h));
      const int64_t row = (x * n1 + y) * n2;
      const int64_t p0 = cl.start[row + std::max(lo[2] - dz, int64_t{0})];
      const int64_t p1 = cl.start[row + std::min(hi[2] + dz, n2 - 1) + 1];
      sc.ranges.emplace_back(p0, p1);
    }
  count_types(cl, ntypes, sc);
  for (int64_t t = 0; t < ntypes; ++t) seg[t + 1] = seg[t] + (seg[t + 1] + kPad - 1) / kPad * kPad;
  const T inf = std::numeric_limits<T>::infinity();
  sc.near_x.assign(seg[ntypes], inf);
  sc.near_y.assign(seg[ntypes], inf);
  sc.near_z.assign(seg[ntypes], inf);
  sc.filled.assign(seg.begin(), seg.end() - 1);
  for (const auto& [p0, p1] : sc.ranges)
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t k = sc.filled[cl.type[p]]++;
      sc.near_x[k] = cl.pos[3 * p];
      sc.near_y[k] = cl.pos[3 * p + 1];
      sc.near_z[k] = cl.pos[3 * p + 2];
    }
}

// The centers [begin, end) in blocks of g^3 bins: scratch.near_centers holds them block by
// block, and the return value's entry k + 1 is where block k's end (entry 0 is 0).
template <typename T>
const std::vector<int64_t>& group_centers(const CellList<T>& cl, int64_t begin, int64_t end,
                                          int64_t g, const int64_t* nb, Scratch<T>& sc) {
  auto block = [&](int64_t b) {
    const int64_t z = b % cl.n[2], y = (b / cl.n[2]) % cl.n[1], x = b / (cl.n[1] * cl.n[2]);
    return ((x / g) * nb[1] + y / g) * nb[2] + z / g;
  };
  auto& first = sc.bucket;  // a counting sort by block
  first.assign(nb[0] * nb[1] * nb[2] + 1, 0);
  for (int64_t c = begin; c < end; ++c) ++first[block(cl.center_bin[c]) + 1];
  for (size_t k = 1; k < first.size(); ++k) first[k] += first[k - 1];
  sc.near_centers.resize(end - begin);
  sc.filled.assign(first.begin(), first.end() - 1);
  for (int64_t c = begin; c < end; ++c) sc.near_centers[sc.filled[block(cl.center_bin[c])]++] = c;
  return first;
}

// Over near[k0, k1): how many are within rc2 of (xi, yi, zi), how many of those at r^2 = 0,
// and the smallest r^2 > 0 among them (+inf if none)
template <typename T>
void count_segment(const Scratch<T>& sc, int64_t k0, int64_t k1, const T* xi, T rc2,
                   int64_t& within, int64_t& zeros, T& best) {
  using V = Vec<T>;
  using M = decltype(V{} <= V{});
  constexpr int64_t kLanes = simd::kLanes<T, simd::kMaxBytes>;
  const T inf = std::numeric_limits<T>::infinity();
  const V cx = V{} + xi[0], cy = V{} + xi[1], cz = V{} + xi[2], cut = V{} + rc2;
  const V vinf = V{} + inf, zero = V{};
  M in_v = M{}, zero_v = M{};
  V best_v = vinf;
  for (int64_t k = k0; k < k1; k += kLanes) {
    const V dx = simd::load<V>(sc.near_x.data() + k) - cx;
    const V dy = simd::load<V>(sc.near_y.data() + k) - cy;
    const V dz = simd::load<V>(sc.near_z.data() + k) - cz;
    const V d2 = (dx * dx + dy * dy) + dz * dz;
    const M in = d2 <= cut;
    in_v -= in;  // a true lane is -1
    zero_v -= d2 == zero;
    const V positive = (in & (d2 > zero)) ? d2 : vinf;
    best_v = positive < best_v ? positive : best_v;
  }
  for (int64_t l = 0; l < kLanes; ++l) {
    within += in_v[l];
    zeros += zero_v[l];
    best = std::min(best, best_v[l]);
  }
}

}  // namespace

// Bins per block edge. Blocks about rcut wide (reach bins) hold a few hundred candidates
// per center beyond its sphere, each copied for a few dozen centers; where the centers span
// at most two blocks of twice that per axis (small cells, the usual DFT frame: 192 water
// atoms in 12.4 A at rcut 6), the wider blocks copy the ghost shell fewer times and the
// grid's edge clips their candidates. Timed on water (one thread, AVX-512, best of 15):
// 192 atoms 124 -> 109 us a frame; 1536 atoms 105 -> 103 us per 192 atoms; 5184 atoms, where
// the centers span more, 88 us at rcut-wide blocks against 106 at the wider ones.
template <typename T>
int64_t block_bins(const CellList<T>& cl, int64_t begin, int64_t end) {
  int64_t lo[3] = {cl.n[0], cl.n[1], cl.n[2]}, hi[3] = {-1, -1, -1};
  for (int64_t c = begin; c < end; ++c) {
    const int64_t b = cl.center_bin[c];
    const int64_t v[3] = {b / (cl.n[1] * cl.n[2]), (b / cl.n[2]) % cl.n[1], b % cl.n[2]};
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::min(lo[k], v[k]);
      hi[k] = std::max(hi[k], v[k]);
    }
  }
  const int64_t span = std::max({hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]}) + 1;
  return span <= 4 * cl.reach ? 2 * cl.reach : cl.reach;
}

template <typename T>
void count(const CellList<T>& cl, const NlistShape& s, int64_t begin, int64_t end,
           Scratch<T>& scratch, int64_t* counts, T* min_d2) {
  const int64_t ntypes = s.ntypes;
  const T rc2 = static_cast<T>(s.rcut * s.rcut);  // the test search makes, in T
  const int64_t g = block_bins(cl, begin, end);
  const int64_t nb[3] = {(cl.n[0] + g - 1) / g, (cl.n[1] + g - 1) / g, (cl.n[2] + g - 1) / g};
  const std::vector<int64_t>& first = group_centers(cl, begin, end, g, nb, scratch);
  for (int64_t k = 0; k + 1 < static_cast<int64_t>(first.size()); ++k) {
    if (first[k] == first[k + 1]) continue;
    const int64_t z = k % nb[2], y = (k / nb[2]) % nb[1], x = k / (nb[1] * nb[2]);
    const int64_t lo[3] = {x * g, y * g, z * g};
    const int64_t hi[3] = {std::min(lo[0] + g, cl.n[0]) - 1, std::min(lo[1] + g, cl.n[1]) - 1,
                           std::min(lo[2] + g, cl.n[2]) - 1};
    gather_block(cl, lo, hi, ntypes, scratch);
    for (int64_t j = first[k]; j < first[k + 1]; ++j) {
      const int64_t self = cl.centers[scratch.near_centers[j]], i = cl.index[self];
      const T* xi = cl.pos.data() + 3 * self;
      int64_t* cnt = counts + i * ntypes;
      int64_t zeros = 0;
      T best = std::numeric_limits<T>::infinity();
      for (int64_t t = 0; t < ntypes; ++t) {
        cnt[t] = 0;
        count_segment(scratch, scratch.near_seg[t], scratch.near_seg[t + 1], xi, rc2, cnt[t],
                      zeros, best);
      }
      // the center met itself at r^2 = 0 where its coordinates are finite; search leaves it
      // out. Another atom at r^2 = 0 makes the minimum 0.
      if (std::isfinite(xi[0]) && std::isfinite(xi[1]) && std::isfinite(xi[2])) {
        --cnt[cl.type[self]];
        --zeros;
      }
      min_d2[i] = zeros > 0 ? T(0) : best;
    }
  }
}

template void count<float>(const CellList<float>&, const NlistShape&, int64_t, int64_t,
                           Scratch<float>&, int64_t*, float*);
template void count<double>(const CellList<double>&, const NlistShape&, int64_t, int64_t,
                            Scratch<double>&, int64_t*, double*);

}  // namespace dpx::cpu::DPX_KERNEL_ISA
