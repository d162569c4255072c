// Neighbor search on CPU; see nlist.h for the steps and reference.neighbor_list for the spec.
#include "kernels/cpu/nlist.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/common/bin_grid.h"

namespace dpx::cpu {

bool make_cell(const double* h, Cell& c) {
  for (int k = 0; k < 9; ++k) c.h[k] = h[k];
  const double* a = h;
  const double* b = h + 3;
  const double* d = h + 6;
  // cofactors: row k of the adjugate's transpose is the cross product of the other two rows
  const double bxd[3] = {b[1] * d[2] - b[2] * d[1], b[2] * d[0] - b[0] * d[2],
                         b[0] * d[1] - b[1] * d[0]};
  const double dxa[3] = {d[1] * a[2] - d[2] * a[1], d[2] * a[0] - d[0] * a[2],
                         d[0] * a[1] - d[1] * a[0]};
  const double axb[3] = {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                         a[0] * b[1] - a[1] * b[0]};
  c.det = a[0] * bxd[0] + a[1] * bxd[1] + a[2] * bxd[2];
  if (!std::isfinite(c.det) || c.det == 0.0) return false;
  // H^-1 = [b x d, d x a, a x b]^T / det as columns: inv[l][k] = cross_k[l] / det
  const double* cr[3] = {bxd, dxa, axb};
  for (int k = 0; k < 3; ++k) {
    for (int l = 0; l < 3; ++l) c.inv[l * 3 + k] = cr[k][l] / c.det;
    const double n = std::sqrt(cr[k][0] * cr[k][0] + cr[k][1] * cr[k][1] + cr[k][2] * cr[k][2]);
    c.face[k] = std::abs(c.det) / n;
  }
  return true;
}

template <typename T>
void plan_ghosts(const T* coord, const int64_t* atype, int64_t nloc, const Cell* cell,
                 double rcut, Ghosts<T>& g) {
  g.nloc = nloc;
  g.periodic = cell != nullptr;
  g.nall = nloc;
  if (!g.periodic) return;
  T inv[9];
  for (int k = 0; k < 9; ++k) inv[k] = static_cast<T>(cell->inv[k]);
  T upper[3];
  for (int k = 0; k < 3; ++k) {
    g.rc[k] = static_cast<T>(rcut / cell->face[k]);
    g.nb[k] = static_cast<int64_t>(std::ceil(static_cast<double>(g.rc[k])));
    upper[k] = T(1) + g.rc[k];
  }
  g.wrap.assign(3 * nloc, T(0));
  g.lo.assign(3 * nloc, 0);
  g.hi.assign(3 * nloc, -1);
  for (int64_t i = 0; i < nloc; ++i) {
    const T* x = coord + 3 * i;
    int64_t n_img = 1;
    bool has_zero = true;
    for (int k = 0; k < 3; ++k) {
      const T frac = (x[0] * inv[k] + x[1] * inv[3 + k]) + x[2] * inv[6 + k];
      T w = std::floor(frac);
      T f = frac - w;
      // frac = -1e-18 gives f = 1 after rounding: fold it back into [0, 1)
      if (f >= T(1)) {
        f -= T(1);
        w += T(1);
      }
      g.wrap[3 * i + k] = w;
      if (atype[i] < 0) continue;  // virtual atoms have no ghosts: empty ranges
      // g = f + s lies in [-rc, 1 + rc]; f + s is monotone in s even after rounding, so the
      // passing shifts form an interval, which holds s = 0 for any finite f in [0, 1)
      const T rc = g.rc[k], up = upper[k];
      auto pass = [&](int64_t s) {
        const T gs = f + static_cast<T>(s);
        return gs >= -rc && gs <= up;
      };
      int64_t lo = 0, hi = -1;
      if (pass(0)) {
        hi = 0;
        while (lo > -g.nb[k] && pass(lo - 1)) --lo;
        while (hi < g.nb[k] && pass(hi + 1)) ++hi;
      } else {
        has_zero = false;
      }
      g.lo[3 * i + k] = lo;
      g.hi[3 * i + k] = hi;
      n_img *= hi - lo + 1;
    }
    if (atype[i] >= 0 && n_img > 0) g.nall += n_img - (has_zero ? 1 : 0);
  }
}

template <typename T>
int64_t write_extended(const Ghosts<T>& g, const int64_t* atype, int64_t* mapping,
                       int64_t* ext_atype, T* shift) {
  const int64_t nloc = g.nloc;
  for (int64_t i = 0; i < nloc; ++i) {
    mapping[i] = i;
    ext_atype[i] = atype[i];
    for (int k = 0; k < 3; ++k) shift[3 * i + k] = g.periodic ? -g.wrap[3 * i + k] : T(0);
  }
  if (!g.periodic) return nloc;
  int64_t e = nloc;
  std::vector<int64_t> l0, l01;
  l0.reserve(nloc);
  l01.reserve(nloc);
  // shifts in lexicographic order; atoms filtered axis by axis so the work follows the output
  for (int64_t s0 = -g.nb[0]; s0 <= g.nb[0]; ++s0) {
    l0.clear();
    for (int64_t i = 0; i < nloc; ++i)
      if (g.lo[3 * i] <= s0 && s0 <= g.hi[3 * i]) l0.push_back(i);
    for (int64_t s1 = -g.nb[1]; s1 <= g.nb[1]; ++s1) {
      l01.clear();
      for (int64_t i : l0)
        if (g.lo[3 * i + 1] <= s1 && s1 <= g.hi[3 * i + 1]) l01.push_back(i);
      for (int64_t s2 = -g.nb[2]; s2 <= g.nb[2]; ++s2) {
        if (s0 == 0 && s1 == 0 && s2 == 0) continue;
        const T sv[3] = {static_cast<T>(s0), static_cast<T>(s1), static_cast<T>(s2)};
        for (int64_t i : l01) {
          if (s2 < g.lo[3 * i + 2] || s2 > g.hi[3 * i + 2]) continue;
          mapping[e] = i;
          ext_atype[e] = atype[i];
          for (int k = 0; k < 3; ++k) shift[3 * e + k] = sv[k] - g.wrap[3 * i + k];
          ++e;
        }
      }
    }
  }
  return e;
}

template <typename T>
void extended_coord(const T* coord, const T* box, const int64_t* mapping, const T* shift,
                    int64_t nall, T* ext) {
  for (int64_t e = 0; e < nall; ++e) {
    const T* x = coord + 3 * mapping[e];
    const T* s = shift + 3 * e;
    for (int k = 0; k < 3; ++k)
      ext[3 * e + k] =
          box ? x[k] + ((s[0] * box[k] + s[1] * box[3 + k]) + s[2] * box[6 + k]) : x[k];
  }
}

template <typename T>
int64_t extend_and_bin(const Ghosts<T>& g, const T* coord, const int64_t* atype, const T* box,
                       double rcut, int64_t* mapping, int64_t* ext_atype, T* shift,
                       std::vector<T>& ext, CellList<T>& cl) {
  const int64_t written = write_extended<T>(g, atype, mapping, ext_atype, shift);
  if (written != g.nall) return written;
  ext.resize(3 * g.nall);
  extended_coord<T>(coord, box, mapping, shift, g.nall, ext.data());
  cl.build(ext.data(), ext_atype, g.nall, g.nloc, rcut);
  return written;
}

template <typename T>
int64_t CellList<T>::bin_of(const T* x) const {
  int64_t b[3];
  for (int k = 0; k < 3; ++k) {
    const double v = (static_cast<double>(x[k]) - lo[k]) * inv_edge;
    // clamped, and NaN lands in bin 0: never an index out of range
    b[k] = v >= 0 ? (v < static_cast<double>(n[k]) ? static_cast<int64_t>(v) : n[k] - 1) : 0;
  }
  return (b[0] * n[1] + b[1]) * n[2] + b[2];
}

template <typename T>
void CellList<T>::build(const T* ext, const int64_t* ext_atype, int64_t nall, int64_t nloc,
                        double rcut) {
  int64_t m = 0;
  double hi[3];
  for (int k = 0; k < 3; ++k) {
    lo[k] = std::numeric_limits<double>::infinity();
    hi[k] = -lo[k];
  }
  for (int64_t e = 0; e < nall; ++e) {
    if (ext_atype[e] < 0) continue;
    ++m;
    for (int k = 0; k < 3; ++k) {
      const double v = static_cast<double>(ext[3 * e + k]);
      lo[k] = std::min(lo[k], v);
      hi[k] = std::max(hi[k], v);
    }
  }
  // A pair accepted by the rounded test r^2 <= rcut^2 is at most ~1e-7 rcut beyond rcut in
  // float; the bins are searched out to reach_r, comfortably above that.
  reach_r = rcut * (1.0 + 1e-4);
  // Half-rcut bins: the bins scanned around a center hug its sphere more tightly than
  // rcut bins do (fewer distances computed), at the price of 25 instead of 9 bin columns.
  edge = reach_r / 2;
  double nd[3];
  fit_bin_grid(lo, hi, m, edge, nd);  // wider where the atoms are sparse
  for (int k = 0; k < 3; ++k) {
    n[k] = (m > 0 && std::isfinite(nd[k])) ? static_cast<int64_t>(nd[k]) : 1;
    if (!std::isfinite(lo[k])) lo[k] = 0;
  }
  const bool finite = m > 0 && std::isfinite(edge);
  inv_edge = finite ? 1.0 / edge : 0.0;
  reach = finite ? std::max<int64_t>(1, static_cast<int64_t>(std::ceil(reach_r / edge))) : 1;
  const int64_t nbins = n[0] * n[1] * n[2];

  // counting sort by bin, stable: ascending extended index within a bin
  std::vector<int64_t> bin(m);
  start.assign(nbins + 1, 0);
  for (int64_t e = 0, a = 0; e < nall; ++e) {
    if (ext_atype[e] < 0) continue;
    bin[a] = bin_of(ext + 3 * e);
    ++start[bin[a] + 1];
    ++a;
  }
  for (int64_t b = 0; b < nbins; ++b) start[b + 1] += start[b];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  pos.resize(3 * m);
  index.resize(m);
  type.resize(m);
  for (int64_t e = 0, a = 0; e < nall; ++e) {
    if (ext_atype[e] < 0) continue;
    const int64_t p = next[bin[a++]]++;
    for (int k = 0; k < 3; ++k) pos[3 * p + k] = ext[3 * e + k];
    index[p] = e;
    type[p] = static_cast<int32_t>(ext_atype[e]);
  }
  centers.clear();
  center_bin.clear();
  centers.reserve(nloc);
  center_bin.reserve(nloc);
  for (int64_t b = 0; b < nbins; ++b)
    for (int64_t p = start[b]; p < start[b + 1]; ++p)
      if (index[p] < nloc) {
        centers.push_back(p);
        center_bin.push_back(b);
      }
}

namespace {

// distance from v to the interval [a, a + w]
inline double gap(double v, double a, double w) {
  return std::max({0.0, a - v, v - (a + w)});
}

template <typename T>
inline bool before(const Candidate<T>& a, const Candidate<T>& b) {
  return a.d2 < b.d2 || (a.d2 == b.d2 && a.index < b.index);
}

// Sorts cand[0, n) by (d2, index) into out: a counting sort into n buckets of d2 in
// [0, d2_max] (neighbors fill a sphere, so the buckets hold about one each), then one
// insertion sort, which finds few inversions left. Linear where std::sort is n log n; a
// crowded bucket (atoms on a shell of a crystal) is sorted on its own first.
template <typename T>
void sort_candidates(const Candidate<T>* cand, int64_t n, T d2_max, std::vector<int64_t>& bucket,
                     Candidate<T>* out) {
  if (n == 0) return;
  bucket.assign(n + 1, 0);
  const T scale = d2_max > T(0) ? static_cast<T>(n) / d2_max : T(0);
  auto which = [&](T d2) {
    // monotone in d2, so the buckets are in order; the clamp holds rounding at d2_max
    const T v = d2 * scale;
    return v < static_cast<T>(n - 1) ? static_cast<int64_t>(v) : n - 1;
  };
  for (int64_t c = 0; c < n; ++c) ++bucket[which(cand[c].d2) + 1];
  int64_t crowded = 0;
  for (int64_t b = 0; b < n; ++b) {
    crowded = std::max(crowded, bucket[b + 1]);
    bucket[b + 1] += bucket[b];
  }
  for (int64_t c = 0; c < n; ++c) out[bucket[which(cand[c].d2)]++] = cand[c];
  if (crowded > 16) {  // bucket[b] is now the end of bucket b
    for (int64_t b = 0, first = 0; b < n; first = bucket[b++])
      if (bucket[b] - first > 16) std::sort(out + first, out + bucket[b], before<T>);
  }
  for (int64_t k = 1; k < n; ++k) {
    if (!before(out[k], out[k - 1])) continue;
    const Candidate<T> v = out[k];
    int64_t j = k;
    for (; j > 0 && before(v, out[j - 1]); --j) out[j] = out[j - 1];
    out[j] = v;
  }
}

// The slots of the bins that meet the sphere of radius reach_r around center c: per (x, y)
// column one z range, contiguous in the sorted arrays. Returns the number of slots.
template <typename T>
int64_t sphere_ranges(const CellList<T>& cl, int64_t c,
                      std::vector<std::pair<int64_t, int64_t>>& ranges) {
  const int64_t n0 = cl.n[0], n1 = cl.n[1], n2 = cl.n[2], reach = cl.reach;
  const double h = cl.edge, r2 = cl.reach_r * cl.reach_r;
  const int64_t self = cl.centers[c], b = cl.center_bin[c];
  const int64_t bz = b % n2, by = (b / n2) % n1, bx = b / (n1 * n2);
  const double xd = cl.pos[3 * self], yd = cl.pos[3 * self + 1], zd = cl.pos[3 * self + 2];
  const int64_t* start = cl.start.data();
  ranges.clear();
  int64_t scan = 0;
  for (int64_t x = std::max(bx - reach, int64_t{0}); x <= std::min(bx + reach, n0 - 1); ++x) {
    const double gx = gap(xd, cl.lo[0] + x * h, h);
    for (int64_t y = std::max(by - reach, int64_t{0}); y <= std::min(by + reach, n1 - 1); ++y) {
      const double gy = gap(yd, cl.lo[1] + y * h, h);
      const double rem = r2 - gx * gx - gy * gy;
      if (rem < 0) continue;
      const double dz = std::sqrt(rem);
      const double zlo = (zd - dz - cl.lo[2]) * cl.inv_edge;
      const double zhi = (zd + dz - cl.lo[2]) * cl.inv_edge;
      const int64_t z0 = std::max(bz - reach, zlo > 0 ? static_cast<int64_t>(zlo) : 0);
      const int64_t z1 = std::min({bz + reach, n2 - 1, zhi > 0 ? static_cast<int64_t>(zhi) : 0});
      if (z0 > z1) continue;
      const int64_t row = (x * n1 + y) * n2;
      ranges.emplace_back(start[row + z0], start[row + z1 + 1]);
      scan += start[row + z1 + 1] - start[row + z0];
    }
  }
  return scan;
}

// The neighbors of center c (r^2 <= rc2, itself left out) as the first n hits of scratch,
// in slot order; returns n. Every scanned atom is written and the count advances only for
// neighbors: no branch to mispredict on the cut-off test.
template <typename T>
int64_t gather_neighbors(const CellList<T>& cl, int64_t c, T rc2, Scratch<T>& scratch) {
  const int64_t scan = sphere_ranges(cl, c, scratch.ranges);
  if (static_cast<int64_t>(scratch.hits.size()) < scan) scratch.hits.resize(scan);
  const T* pos = cl.pos.data();
  const int64_t self = cl.centers[c];
  const T xi = pos[3 * self], yi = pos[3 * self + 1], zi = pos[3 * self + 2];
  Hit<T>* hits = scratch.hits.data();
  int64_t n = 0;
  for (const auto& [p0, p1] : scratch.ranges)
    for (int64_t p = p0; p < p1; ++p) {
      const T dx = pos[3 * p] - xi, dy = pos[3 * p + 1] - yi, dz = pos[3 * p + 2] - zi;
      const T d2 = (dx * dx + dy * dy) + dz * dz;
      hits[n] = {d2, p};
      n += static_cast<int64_t>((d2 <= rc2) & (p != self));
    }
  return n;
}

}  // namespace

template <typename T>
void search(const CellList<T>& cl, const int64_t* sel, const NlistShape& s,
            int64_t begin, int64_t end, Scratch<T>& scratch, int64_t* nlist, int64_t* counts,
            T* min_d2) {
  const int64_t ntypes = s.ntypes, nnei = s.nnei;
  // compared in T like reference's `d2 <= rcut * rcut` on a T tensor
  const T rc2 = static_cast<T>(s.rcut * s.rcut);
  auto& cand = scratch.cand;
  auto& filled = scratch.filled;
  filled.resize(2 * ntypes);  // [next free slot, end of section] per type
  const int64_t* index = cl.index.data();
  const int32_t* type = cl.type.data();

  for (int64_t c = begin; c < end; ++c) {
    // the center's own copy in the sorted arrays: near its neighbors in memory
    const int64_t i = index[cl.centers[c]];
    const int64_t n = gather_neighbors(cl, c, rc2, scratch);
    const Hit<T>* hits = scratch.hits.data();
    if (static_cast<int64_t>(cand.size()) < n) {
      cand.resize(n);
      scratch.sorted.resize(n);
    }
    int64_t* cnt = counts + i * ntypes;
    std::fill(cnt, cnt + ntypes, int64_t{0});
    for (int64_t k = 0; k < n; ++k) {
      const int64_t p = hits[k].slot;
      cand[k] = {hits[k].d2, type[p], index[p]};
      ++cnt[type[p]];
    }

    // DeePMD-kit: the nearest nnei by (r^2, extended index), then per type the first sel[t]
    Candidate<T>* sorted = scratch.sorted.data();
    sort_candidates(cand.data(), n, rc2, scratch.bucket, sorted);
    min_d2[i] = n > 0 ? sorted[0].d2 : std::numeric_limits<T>::infinity();
    int64_t* row = nlist + i * nnei;
    std::fill(row, row + nnei, int64_t{-1});
    for (int64_t t = 0, off = 0; t < ntypes; off += sel[t], ++t) {
      filled[2 * t] = off;
      filled[2 * t + 1] = off + sel[t];
    }
    for (int64_t k = 0, keep = std::min(n, nnei); k < keep; ++k) {
      int64_t& slot = filled[2 * sorted[k].type];
      if (slot < filled[2 * sorted[k].type + 1]) row[slot++] = sorted[k].index;
    }
  }
}

template <typename T>
void virtual_rows(const int64_t* atype, const NlistShape& s, int64_t* nlist, int64_t* counts,
                  T* min_d2) {
  for (int64_t i = 0; i < s.nloc; ++i) {
    if (atype[i] >= 0) continue;
    if (nlist) std::fill(nlist + i * s.nnei, nlist + (i + 1) * s.nnei, int64_t{-1});
    std::fill(counts + i * s.ntypes, counts + (i + 1) * s.ntypes, int64_t{0});
    min_d2[i] = std::numeric_limits<T>::infinity();
  }
}

template <typename T>
void reduce_stats(const int64_t* counts, const T* min_d2, const NlistShape& s,
                  int64_t* nnei_max, T* min_dist) {
  std::fill(nnei_max, nnei_max + s.ntypes, int64_t{0});
  T best = std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < s.nloc; ++i) {
    for (int64_t t = 0; t < s.ntypes; ++t)
      nnei_max[t] = std::max(nnei_max[t], counts[i * s.ntypes + t]);
    best = std::min(best, min_d2[i]);
  }
  *min_dist = std::sqrt(best);
}

#define DPX_INSTANTIATE(T)                                                                    \
  template struct CellList<T>;                                                                \
  template void plan_ghosts<T>(const T*, const int64_t*, int64_t, const Cell*, double,        \
                               Ghosts<T>&);                                                   \
  template int64_t write_extended<T>(const Ghosts<T>&, const int64_t*, int64_t*, int64_t*,    \
                                     T*);                                                     \
  template void extended_coord<T>(const T*, const T*, const int64_t*, const T*, int64_t, T*); \
  template int64_t extend_and_bin<T>(const Ghosts<T>&, const T*, const int64_t*, const T*,    \
                                     double, int64_t*, int64_t*, T*, std::vector<T>&,         \
                                     CellList<T>&);                                           \
  template void search<T>(const CellList<T>&, const int64_t*, const NlistShape&,              \
                          int64_t, int64_t, Scratch<T>&, int64_t*, int64_t*, T*);             \
  template void virtual_rows<T>(const int64_t*, const NlistShape&, int64_t*, int64_t*, T*);   \
  template void reduce_stats<T>(const int64_t*, const T*, const NlistShape&, int64_t*, T*);

DPX_INSTANTIATE(float)
DPX_INSTANTIATE(double)
#undef DPX_INSTANTIATE

}  // namespace dpx::cpu
