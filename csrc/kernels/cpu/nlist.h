// Neighbor search on CPU: periodic images (ghosts) and DeePMD-kit's typed neighbor list,
// plain C++ on raw pointers, templated on the coordinate type T (float or double).
//
// One frame goes through these steps, each linear in the number of atoms:
//   plan_ghosts      wrap into the cell; per atom and axis, the range of image shifts whose
//                    fractional coordinates stay within rcut/d_k of the cell (d_k = face
//                    distance): gives nall before anything is written
//   write_extended   mapping, ext_atype, shift: local wrapped atoms first, then the ghosts,
//                    shifts in lexicographic order, atoms ascending within a shift
//   extended_coord   ext = coord[mapping] + shift @ box
//   CellList::build  bins of edge rcut/2 over the extended atoms (virtual ones left out),
//                    atoms sorted by bin (counting sort) so that a bin column is contiguous
//   search           per center: candidates from the bins that meet its sphere, the nearest
//                    sum(sel) by (r^2, extended index), then the first sel[t] of each type
//                    (or, for neighbor statistics, count in nlist_count.h: the counts only)
// search handles the centers [begin, end) of the cell list's center order, so the caller
// splits it across threads, each with its own Scratch. The spec is reference.neighbor_list.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace dpx::cpu {

// A periodic cell, rows = cell vectors, in double whatever T is.
struct Cell {
  double h[9];
  double inv[9];
  double det;
  double face[3];  // distance between the two faces spanned by the other two vectors
};

// false when the cell is singular or not finite
bool make_cell(const double* h, Cell& c);

template <typename T>
struct Ghosts {
  int64_t nloc = 0;
  bool periodic = false;
  int64_t nb[3] = {0, 0, 0};  // shifts along axis k range over [-nb_k, nb_k]
  T rc[3] = {0, 0, 0};        // rcut / d_k, the slab half-width in fractional units
  std::vector<T> wrap;        // [nloc, 3] integer w with frac = f + w, f in [0, 1)
  std::vector<int64_t> lo, hi;  // [nloc, 3] shifts s_k in [lo, hi] pass along axis k
  int64_t nall = 0;
};

// coord [nloc, 3], atype [nloc]; cell nullptr for open boundaries (no ghosts, no wrap)
template <typename T>
void plan_ghosts(const T* coord, const int64_t* atype, int64_t nloc, const Cell* cell,
                 double rcut, Ghosts<T>& g);

// mapping, ext_atype [g.nall]; shift [g.nall, 3]; returns the number written (g.nall)
template <typename T>
int64_t write_extended(const Ghosts<T>& g, const int64_t* atype, int64_t* mapping,
                       int64_t* ext_atype, T* shift);

// ext [nall, 3] = coord[mapping] + shift @ box (box nullptr: coord[mapping])
template <typename T>
void extended_coord(const T* coord, const T* box, const int64_t* mapping, const T* shift,
                    int64_t nall, T* ext);

template <typename T>
struct CellList;

// A planned frame's extended system (mapping, ext_atype, shift [g.nall(, 3)], ext) and the
// cell list over it: write_extended, extended_coord and CellList::build in turn. Returns the
// number of extended atoms written (g.nall unless the plan is inconsistent).
template <typename T>
int64_t extend_and_bin(const Ghosts<T>& g, const T* coord, const int64_t* atype, const T* box,
                       double rcut, int64_t* mapping, int64_t* ext_atype, T* shift,
                       std::vector<T>& ext, CellList<T>& cl);

template <typename T>
struct CellList {
  int64_t n[3] = {1, 1, 1};   // bins per axis, z fastest
  double lo[3] = {0, 0, 0};
  double edge = 1, inv_edge = 1;
  double reach_r = 0;          // rcut with a margin for rounding: the search radius of bins
  int64_t reach = 1;           // bins to scan on each side of the center's bin
  std::vector<int64_t> start;  // [nbins + 1], atoms of bin b are [start[b], start[b + 1])
  std::vector<T> pos;          // [m, 3] binned atoms in bin order
  std::vector<int64_t> index;  // [m] their extended index
  std::vector<int32_t> type;   // [m]
  std::vector<int64_t> centers;      // slots (positions in the sorted arrays) of the real
  std::vector<int64_t> center_bin;   // local atoms, in bin order, and their bins

  // ext [nall, 3], ext_atype [nall]; atoms with ext_atype < 0 are left out; the first nloc
  // extended atoms are the centers. Bins are rcut/2 wide (wider where the atoms are sparse,
  // so that there are at most ~8 bins per atom).
  void build(const T* ext, const int64_t* ext_atype, int64_t nall, int64_t nloc, double rcut);
  int64_t bin_of(const T* x) const;
};

// a neighbor of the current center, as sorted
template <typename T>
struct Candidate {
  T d2;
  int32_t type;
  int64_t index;
};

// an atom scanned around the current center: its r^2 and slot in the cell list
template <typename T>
struct Hit {
  T d2;
  int64_t slot;
};

// per-thread buffers of search, grown on demand and reused from center to center
template <typename T>
struct Scratch {
  std::vector<Hit<T>> hits;
  std::vector<Candidate<T>> cand, sorted;
  std::vector<int64_t> bucket, filled;
  std::vector<std::pair<int64_t, int64_t>> ranges;  // slot ranges of the bins scanned
  // the counting pass (nlist_count.h): a bin's candidates by type, padded with +inf
  std::vector<T> near_x, near_y, near_z;
  std::vector<int64_t> near_seg;  // [ntypes + 1]
  std::vector<int64_t> near_centers;  // centers grouped by block of bins
};

struct NlistShape {
  int64_t nloc, ntypes, nnei;
  double rcut;
};

// For the centers cl.index[cl.centers[begin, end)]: nlist rows [nloc, nnei] (DeePMD-kit
// layout, -1 padded), counts [nloc, ntypes] (neighbors within rcut per type, before
// truncation) and min_d2 [nloc] (smallest r^2, +inf if none). sel [ntypes].
template <typename T>
void search(const CellList<T>& cl, const int64_t* sel, const NlistShape& s,
            int64_t begin, int64_t end, Scratch<T>& scratch, int64_t* nlist, int64_t* counts,
            T* min_d2);

// Rows of the centers that are not in the cell list (virtual atoms): all -1, counts 0, +inf
// (nlist may be nullptr when s.nnei is 0).
template <typename T>
void virtual_rows(const int64_t* atype, const NlistShape& s, int64_t* nlist, int64_t* counts,
                  T* min_d2);

// nnei_max [ntypes] = max over centers of counts; min_dist = sqrt(min over centers of min_d2)
template <typename T>
void reduce_stats(const int64_t* counts, const T* min_d2, const NlistShape& s,
                  int64_t* nnei_max, T* min_dist);

}  // namespace dpx::cpu
