// Host check of the CUDA neighbor search's planning and index arithmetic
// (csrc/kernels/cuda/nlist_plan.h) against the CPU search (csrc/kernels/cpu/nlist.h), built
// and run by test_cuda_plan.py with the host compiler: no GPU, no CUDA. For random frames it
// replays, sequentially, what the CUDA kernels compute with these functions (the ghost scan
// in kernel order, the cell list with atoms placed in an arbitrary order within their bins,
// the search's columns and rank rule) and requires the CPU's results bit for bit.
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/nlist.h"
#include "kernels/cuda/nlist_plan.h"

namespace {

int failures = 0;
#define CHECK(cond, ...)                                 \
  do {                                                   \
    if (!(cond)) {                                       \
      if (++failures <= 20) {                            \
        std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
        std::printf(__VA_ARGS__);                        \
        std::printf("\n");                               \
      }                                                  \
    }                                                    \
  } while (0)

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0 || (a == 0 && b == 0);
}

template <typename T>
void check_frame(int seed, bool periodic) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int64_t nloc = 1 + rng() % 40, ntypes = 2;
  const double rcut = 1.5 + 3.0 * u(rng);
  const int64_t sel[2] = {static_cast<int64_t>(rng() % 30), static_cast<int64_t>(rng() % 30)};
  const int64_t nnei = sel[0] + sel[1];
  double h[9] = {0};
  for (int k = 0; k < 3; ++k) h[4 * k] = 3.0 + 6.0 * u(rng);  // some thinner than rcut
  for (int k : {1, 2, 3, 5, 6, 7}) h[k] = (u(rng) - 0.5) * 3.0;
  std::vector<T> coord(3 * nloc), box(9);
  for (int k = 0; k < 9; ++k) box[k] = static_cast<T>(h[k]);
  for (int64_t i = 0; i < nloc; ++i) {
    double f[3];
    for (double& v : f) v = -0.2 + 1.4 * u(rng);
    if (rng() % 5 == 0) f[rng() % 3] = (rng() % 2) ? 0.0 : 1.0;  // on a face
    for (int k = 0; k < 3; ++k)
      coord[3 * i + k] = static_cast<T>(f[0] * h[k] + f[1] * h[3 + k] + f[2] * h[6 + k]);
  }
  std::vector<int64_t> atype(nloc);
  for (auto& t : atype) t = static_cast<int64_t>(rng() % 7) - 1 < 0 ? -1 : rng() % ntypes;

  // the CPU search
  dpx::cpu::Cell cell;
  CHECK(dpx::cpu::make_cell(h, cell), "singular cell");
  dpx::cpu::Ghosts<T> gc;
  dpx::cpu::plan_ghosts<T>(coord.data(), atype.data(), nloc, periodic ? &cell : nullptr, rcut, gc);
  const int64_t nall = gc.nall;
  std::vector<int64_t> map_c(nall), type_c(nall);
  std::vector<T> shift_c(3 * nall), ext_c(3 * nall);
  dpx::cpu::write_extended<T>(gc, atype.data(), map_c.data(), type_c.data(), shift_c.data());
  dpx::cpu::extended_coord<T>(coord.data(), periodic ? box.data() : nullptr, map_c.data(),
                              shift_c.data(), nall, ext_c.data());
  dpx::cpu::CellList<T> cl;
  cl.build(ext_c.data(), type_c.data(), nall, nloc, rcut);
  const dpx::cpu::NlistShape shape{nloc, ntypes, nnei, rcut};
  std::vector<int64_t> nlist_c(nloc * nnei), counts_c(nloc * ntypes);
  std::vector<T> min_c(nloc);
  dpx::cpu::virtual_rows<T>(atype.data(), shape, nlist_c.data(), counts_c.data(), min_c.data());
  dpx::cpu::Scratch<T> scratch;
  dpx::cpu::search<T>(cl, sel, shape, 0, static_cast<int64_t>(cl.centers.size()), scratch,
                      nlist_c.data(), counts_c.data(), min_c.data());

  // the CUDA path, replayed: plan_frame, plan_atom, the ghost scan (extend_kernel)
  const auto g = periodic ? dpx::cuda::plan_frame<T>(cell.inv, cell.face, rcut)
                          : dpx::cuda::open_frame<T>();
  for (int k = 0; periodic && k < 3; ++k)
    CHECK(g.rc[k] == gc.rc[k] && g.nb[k] == gc.nb[k], "rc/nb axis %d", k);
  std::vector<T> wrap(3 * nloc);
  std::vector<int32_t> range(6 * nloc);
  for (int64_t i = 0; i < nloc; ++i)
    dpx::cuda::plan_atom(g, coord.data() + 3 * i, atype[i], wrap.data() + 3 * i,
                         range.data() + 6 * i);
  std::vector<int64_t> map_g, type_g;
  std::vector<T> shift_g;
  for (int64_t i = 0; i < nloc; ++i) {
    map_g.push_back(i);
    type_g.push_back(atype[i]);
    for (int k = 0; k < 3; ++k) shift_g.push_back(g.periodic ? -wrap[3 * i + k] : T(0));
  }
  for (int64_t idx = 0; idx < g.nshift * nloc; ++idx) {
    int64_t sv[3];
    const int64_t i = dpx::cuda::ghost_candidate(g, nloc, idx, sv);
    bool flag = sv[0] != 0 || sv[1] != 0 || sv[2] != 0;
    for (int k = 0; k < 3; ++k)
      flag &= sv[k] >= range[6 * i + 2 * k] && sv[k] <= range[6 * i + 2 * k + 1];
    if (!flag) continue;
    map_g.push_back(i);
    type_g.push_back(atype[i]);
    for (int k = 0; k < 3; ++k) shift_g.push_back(static_cast<T>(sv[k]) - wrap[3 * i + k]);
  }
  CHECK(static_cast<int64_t>(map_g.size()) == nall, "nall %zu vs %ld", map_g.size(), (long)nall);
  if (static_cast<int64_t>(map_g.size()) != nall) return;
  std::vector<T> ext(3 * nall);
  for (int64_t e = 0; e < nall; ++e) {
    CHECK(map_g[e] == map_c[e] && type_g[e] == type_c[e], "row %ld", (long)e);
    for (int k = 0; k < 3; ++k) {
      CHECK(same_bits(shift_g[3 * e + k], shift_c[3 * e + k]), "shift %ld", (long)e);
      const T* x = coord.data() + 3 * map_g[e];
      ext[3 * e + k] = periodic ? x[k] + dpx::cuda::dot3(shift_g.data() + 3 * e, box.data() + k, 3)
                                : x[k];
      CHECK(same_bits(ext[3 * e + k], ext_c[3 * e + k]), "ext %ld", (long)e);
    }
  }

  // bounds_kernel, plan_grid, bin_kernel / bin_start_kernel / place_kernel
  double lo[3], hi[3];
  for (int k = 0; k < 3; ++k) {
    lo[k] = std::numeric_limits<double>::infinity();
    hi[k] = -lo[k];
  }
  int64_t m = 0;
  for (int64_t e = 0; e < nall; ++e) {
    if (type_g[e] < 0) continue;
    ++m;
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::min(lo[k], static_cast<double>(ext[3 * e + k]));
      hi[k] = std::max(hi[k], static_cast<double>(ext[3 * e + k]));
    }
  }
  dpx::cuda::Grid grid{};
  const int64_t nbins = dpx::cuda::plan_grid(lo, hi, m, rcut, grid);
  CHECK(nbins <= std::max<int64_t>(64, 8 * m) * 2 || nbins == 1, "nbins %ld", (long)nbins);
  CHECK(grid.reach == 1 || m == 0, "reach %ld", (long)grid.reach);
  std::vector<int64_t> bin(nall, -1), count(nbins, 0), start(nbins + 1, 0);
  for (int64_t e = 0; e < nall; ++e) {
    if (type_g[e] < 0) continue;
    int64_t b[3];
    dpx::cuda::bin_xyz(grid, ext.data() + 3 * e, b);
    bin[e] = (b[0] * grid.n[1] + b[1]) * grid.n[2] + b[2];
    ++count[bin[e]];
  }
  for (int64_t b = 0; b < nbins; ++b) start[b + 1] = start[b] + count[b];
  std::vector<T> pos(3 * m);
  std::vector<int64_t> index(m);
  std::vector<int32_t> stype(m);
  std::vector<int64_t> order;  // atoms take their places in an arbitrary order (atomics)
  for (int64_t e = 0; e < nall; ++e) order.push_back(e);
  std::shuffle(order.begin(), order.end(), rng);
  for (int64_t e : order) {
    if (bin[e] < 0) continue;
    const int64_t p = start[bin[e]] + --count[bin[e]];
    for (int k = 0; k < 3; ++k) pos[3 * p + k] = ext[3 * e + k];
    index[p] = e;
    stype[p] = static_cast<int32_t>(type_g[e]);
  }

  // search_kernel, one center at a time
  const int64_t sec[2] = {0, sel[0]};
  const T rc2 = static_cast<T>(rcut * rcut);
  for (int64_t i = 0; i < nloc; ++i) {
    std::vector<int64_t> row(nnei, -1), cnt(ntypes, 0);
    T best = std::numeric_limits<T>::infinity();
    if (atype[i] >= 0) {
      int64_t b[3];
      dpx::cuda::bin_xyz(grid, ext.data() + 3 * i, b);
      const T xi = ext[3 * i], yi = ext[3 * i + 1], zi = ext[3 * i + 2];
      auto is_neighbor = [&](int64_t p, T& d2) {
        d2 = dpx::cuda::dist2(pos.data() + 3 * p, xi, yi, zi);
        return d2 <= rc2 && index[p] != i;
      };
      dpx::cuda::for_each_column(grid, b, start.data(), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          T d2p;
          if (!is_neighbor(p, d2p)) continue;
          ++cnt[stype[p]];
          best = d2p < best ? d2p : best;
          const int32_t t = stype[p];
          int64_t rank = 0, rank_t = 0;
          bool kept = nnei > 0 && sel[t] > 0;
          dpx::cuda::for_each_column(grid, b, start.data(), [&](int64_t q0, int64_t q1) {
            for (int64_t q = q0; q < q1 && kept; ++q) {
              T d2q;
              if (!is_neighbor(q, d2q) || !dpx::cuda::before(d2q, index[q], d2p, index[p]))
                continue;
              ++rank;
              rank_t += stype[q] == t;
              kept = rank < nnei && rank_t < sel[t];
            }
          });
          if (kept) row[sec[t] + rank_t] = index[p];
        }
      });
    }
    for (int64_t k = 0; k < nnei; ++k)
      CHECK(row[k] == nlist_c[i * nnei + k], "seed %d center %ld slot %ld: %ld vs %ld", seed,
            (long)i, (long)k, (long)row[k], (long)nlist_c[i * nnei + k]);
    for (int64_t t = 0; t < ntypes; ++t) CHECK(cnt[t] == counts_c[i * ntypes + t], "counts");
    CHECK(same_bits(best, min_c[i]), "min_d2 center %ld", (long)i);
  }
}

}  // namespace

int main() {
  for (int seed = 0; seed < 300; ++seed) {
    check_frame<double>(seed, seed % 4 != 0);
    check_frame<float>(seed, seed % 4 != 0);
  }
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
