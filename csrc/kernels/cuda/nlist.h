// Neighbor search on CUDA: the result of kernels/cpu/nlist.h (same extended system, same
// DeePMD-kit list, same tie-breaking) from a GPU cell list. Frames are processed together.
//
//   host:  plan_frame (per frame, from the cell: image ranges) ............ FrameGeom
//   plan_ghosts       per local atom: wrap, per-axis ranges of passing image shifts, and the
//                     local part of mapping / ext_atype / shift
//   extend (count)    per frame, one block: nall = nloc + the passing (shift, atom) pairs
//   host:  allocate [nf, nall_max] outputs
//   extend (write)    the same scan again, writing the ghosts in the CPU's order (shifts
//                     lexicographic, atoms ascending within a shift)
//   extended_coord    ext = coord[mapping] + shift @ box
//   bounds            per frame: bounding box and count of the real extended atoms
//   host:  plan_grid (per frame: bins of edge >= rcut, as sparse as the CPU's) ...... Grid
//   bin_atoms         counting sort of the real extended atoms by bin
//   search            one warp per center: the candidates within rcut in the 27 (or more)
//                     bins around it; each candidate's rank by (r^2, extended index) among
//                     all candidates and among those of its type gives its slot directly
//                     (kept if rank < nnei and type rank < sel[t]): no sort, no scratch
//   stats             nnei_max and min_dist per frame
// Every function enqueues kernels on `stream` and returns; none synchronizes. The host
// steps (plan_frame, plan_grid) and the index arithmetic the kernels use are plain C++ in
// nlist_plan.h, checked against the CPU search without a GPU (tests/nlist/test_cuda_plan.py).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/nlist_plan.h"

namespace dpx::cuda {

// Temporary space that the kernels need, per frame f of nf (nall = the padded extended size).
template <typename T>
struct NlistBuffers {
  T* wrap;              // [nf, nloc, 3]
  int32_t* range;       // [nf, nloc, 3, 2] passing shifts [lo, hi] per axis
  int64_t* nall_f;      // [nf] extended atoms per frame
  T* ext;               // [nf, nall, 3]
  double* bounds;       // [nf, 7]: lo[3], hi[3], m (real extended atoms)
  int64_t* bin;         // [nf, nall] bin of each extended atom (batch numbering), -1 virtual
  int64_t* bin_count;   // [total_bins] zeroed by the caller
  int64_t* bin_start;   // [total_bins + nf] (per frame nbins + 1 entries, offset f + bin_offset)
  T* sorted_pos;        // [nf, nall, 3] real extended atoms in bin order
  int64_t* sorted_index;
  int32_t* sorted_type;
  int64_t* counts;      // [nf, nloc, ntypes] zeroed by the caller
  T* min_d2;            // [nf, nloc]
};

struct NlistShape {
  int64_t nf, nloc, nall, ntypes, nnei;
  double rcut;
};


// buf.wrap and buf.range of every local atom (s.nall is not needed yet)
template <typename T>
void plan_ghosts(const T* coord, const int64_t* atype, const FrameGeom<T>* geom,
                 const NlistShape& s, NlistBuffers<T>& buf, cudaStream_t stream);

// count (write = false): buf.nall_f. write: the rows of mapping / ext_atype / shift, locals
// then ghosts (s.nall the padded size; padding rows were filled by the caller: mapping 0,
// ext_atype -1, shift 0)
template <typename T>
void extend(const int64_t* atype, const FrameGeom<T>* geom, const NlistShape& s,
            NlistBuffers<T>& buf, bool write, int64_t* mapping, int64_t* ext_atype, T* shift,
            cudaStream_t stream);

// ext coordinates and per-frame bounds (buf.ext, buf.bounds); box nullptr for open frames
template <typename T>
void extended_coord(const T* coord, const T* box, const int64_t* mapping, const T* shift,
                    const int64_t* ext_atype, const NlistShape& s, NlistBuffers<T>& buf,
                    cudaStream_t stream);

// bins, the sorted arrays and the search: nlist [nf, nloc, nnei], nnei_max [nf, ntypes],
// min_dist [nf]; grids [nf] on the device, sel and sec (section starts) [ntypes] on the device
template <typename T>
void search(const Grid* grids, const int64_t* atype, const int64_t* ext_atype, const int64_t* sel,
            const int64_t* sec, const NlistShape& s, NlistBuffers<T>& buf, int64_t* nlist,
            int64_t* nnei_max, T* min_dist, cudaStream_t stream);

}  // namespace dpx::cuda
