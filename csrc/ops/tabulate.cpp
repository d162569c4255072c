// dpx::tabulate_se_a family on CPU (kernels/cpu/tabulate.h): DeePMD-kit's compressed se_e2_a
// embedding, for files whose deepmd::tabulate_fusion_se_a dpx provides (dpx.io.deepmd_ops).
#include <torch/library.h>

#include "kernels/cpu/tabulate.h"
#include "ops/checks.h"

namespace dpx::ops {
namespace {

struct Prepared {
  cpu::TableInfo info;
  int64_t nloc, nnei, m;
  at::Tensor table, em_x, em;
};

// table [nrow, 6 M], table_info [>= 5] (lower, upper, top, stride0, stride1), em_x [nloc *
// nnei, 1] (or [nloc, nnei]), em [nloc, nnei, 4]: one dtype, CPU
Prepared prepare(const char* op, const at::Tensor& table, const at::Tensor& table_info,
                 const at::Tensor& em_x, const at::Tensor& em, int64_t m) {
  check_float(em, op, "em");
  check_dim(em, 3, op, "em");
  TORCH_CHECK(em.size(2) == 4, "dpx::", op, ": em must be [nloc, nnei, 4], got ", em.sizes());
  check_dtype(table, em.scalar_type(), op, "table");
  check_dtype(em_x, em.scalar_type(), op, "em_x");
  check_dim(table, 2, op, "table");
  TORCH_CHECK(m > 0 && table.size(1) == 6 * m, "dpx::", op, ": table must be [nrow, 6 * ",
              "last_layer_size = ", 6 * m, "], got ", table.sizes());
  const int64_t nloc = em.size(0), nnei = em.size(1);
  TORCH_CHECK(em_x.numel() == nloc * nnei, "dpx::", op, ": em_x must hold one value per slot of ",
              "em (", nloc * nnei, "), got shape ", em_x.sizes());
  TORCH_CHECK(table_info.dim() == 1 && table_info.numel() >= 5, "dpx::", op,
              ": table_info must be [lower, upper, max, stride0, stride1, ...], got shape ",
              table_info.sizes());
  auto info = table_info.to(at::kCPU, at::kDouble).contiguous();
  const double* v = info.data_ptr<double>();
  cpu::TableInfo ti{v[0], v[1], v[2], v[3], v[4], table.size(0)};
  TORCH_CHECK(ti.stride0 > 0 && ti.stride1 > 0 && ti.lower < ti.upper && ti.upper <= ti.top,
              "dpx::", op, ": table_info needs lower < upper <= max and strides > 0, got ",
              info);
  const int64_t rows = (int64_t)((ti.upper - ti.lower) / ti.stride0) +
                       (int64_t)((ti.top - ti.upper) / ti.stride1);
  TORCH_CHECK(table.size(0) >= rows, "dpx::", op, ": table_info spans ", rows,
              " intervals but the table has ", table.size(0), " rows");
  for (const auto* t : {&table, &em_x})
    check_same_device(*t, em, op, t == &table ? "table" : "em_x");
  TORCH_CHECK(em.is_cpu(), "dpx::", op, ": CPU tensors only, got ", em.device());
  return {ti, nloc, nnei, m, table.contiguous(), em_x.contiguous(), em.contiguous()};
}

at::Tensor tabulate_se_a(const at::Tensor& table, const at::Tensor& table_info,
                         const at::Tensor& em_x, const at::Tensor& em, int64_t m) {
  auto p = prepare("tabulate_se_a", table, table_info, em_x, em, m);
  auto out = at::empty({p.nloc, 4, m}, em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_tabulate_se_a", [&] {
    parallel_centers(p.nloc, [&](int64_t b, int64_t e) {
      cpu::tabulate_se_a<scalar_t>(p.table.data_ptr<scalar_t>(), p.info,
                                   p.em_x.data_ptr<scalar_t>(), p.em.data_ptr<scalar_t>(),
                                   p.nnei, m, out.data_ptr<scalar_t>(), b, e);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> tabulate_se_a_grad(const at::Tensor& grad_out,
                                                      const at::Tensor& table,
                                                      const at::Tensor& table_info,
                                                      const at::Tensor& em_x,
                                                      const at::Tensor& em) {
  const char* op = "tabulate_se_a_grad";
  check_dtype(grad_out, em.scalar_type(), op, "grad_out");
  const int64_t m = table.dim() == 2 ? table.size(1) / 6 : 0;
  auto p = prepare(op, table, table_info, em_x, em, m);
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == p.nloc && grad_out.size(1) == 4 &&
                  grad_out.size(2) == m,
              "dpx::", op, ": grad_out must be [nloc, 4, M] = [", p.nloc, ", 4, ", m, "], got ",
              grad_out.sizes());
  auto dy = grad_out.contiguous();
  auto dem_x = at::empty(em_x.sizes(), em.options());
  auto dem = at::empty(em.sizes(), em.options());
  AT_DISPATCH_FLOATING_TYPES(em.scalar_type(), "dpx_tabulate_se_a_grad", [&] {
    parallel_centers(p.nloc, [&](int64_t b, int64_t e) {
      cpu::tabulate_se_a_grad<scalar_t>(
          p.table.data_ptr<scalar_t>(), p.info, p.em_x.data_ptr<scalar_t>(),
          p.em.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(), p.nnei, m,
          dem_x.data_ptr<scalar_t>(), dem.data_ptr<scalar_t>(), b, e);
    });
  });
  return {dem_x, dem};
}

}  // namespace

TORCH_LIBRARY_IMPL(dpx, CPU, m) {
  m.impl("tabulate_se_a", &tabulate_se_a);
  m.impl("tabulate_se_a_grad", &tabulate_se_a_grad);
}

}  // namespace dpx::ops
