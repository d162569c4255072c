// Every dpx op schema, declared once. Device implementations live beside this file
// (TORCH_LIBRARY_IMPL per device); autograd and fake kernels are registered in Python
// (python/dpx/ops/), where each op also has a pure-PyTorch twin (reference.py).
#include <torch/library.h>

#include "ops/se_a_embed_schemas.h"

TORCH_LIBRARY(dpx, m) {
  // Neighbor search with a cell list. coord [nf, nloc, 3], atype [nf, nloc] (int64, <0 =
  // virtual), box [nf, 9] or None. Returns the extended system as integer data:
  //   mapping [nf, nall] (int64), ext_atype [nf, nall] (int64, -1 for frame padding),
  //   shift [nf, nall, 3] (coord dtype, integer lattice vectors: ext = coord[mapping] + shift @ box),
  //   nlist [nf, nloc, sum(sel)] (int64, DeePMD-kit layout), nnei_max [nf, ntypes] (int64, the
  //   fullest atom's count per neighbor type), min_dist [nf] (coord dtype, +inf if no pair).
  m.def(
      "neighbor_list(Tensor coord, Tensor atype, Tensor? box, float rcut, int[] sel) -> "
      "(Tensor mapping, Tensor ext_atype, Tensor shift, Tensor nlist, Tensor nnei_max, Tensor min_dist)");
  // The counting pass of neighbor statistics (sel "auto", min_nbor_dist): neighbor_list's
  // nnei_max [nf, ntypes] and min_dist [nf] for the same arguments (sel = ntypes zeros),
  // without the list; frames in parallel. CPU only: it runs where the data is read.
  m.def("neighbor_stat(Tensor coord, Tensor atype, Tensor? box, float rcut, int ntypes) -> "
        "(Tensor nnei_max, Tensor min_dist)");

  // se_e2_a environment matrix [nf, nloc, nnei, 4] and its derivative chain.
  // _vjp: grad_em -> grad of ext_coord; _jvp: tangent of ext_coord -> tangent of em;
  // _hvp: second derivative contracted with grad_em and a tangent of ext_coord.
  // coords_second_order is read by the autograd formula only (python/dpx/ops/env_mat.py):
  // false makes the backward (forces) constant in ext_coord, so that differentiating forces
  // again (a force loss, by the weights) skips the _hvp term it would only multiply by zero.
  m.def(
      "env_mat_se_a(Tensor ext_coord, Tensor nlist, Tensor atype, Tensor davg, Tensor dstd, "
      "float rcut, float rcut_smth, float protection, bool coords_second_order=True) -> Tensor");
  m.def(
      "env_mat_se_a_vjp(Tensor grad_em, Tensor ext_coord, Tensor nlist, Tensor atype, Tensor dstd, "
      "float rcut, float rcut_smth, float protection) -> Tensor");
  m.def(
      "env_mat_se_a_jvp(Tensor tangent, Tensor ext_coord, Tensor nlist, Tensor atype, Tensor dstd, "
      "float rcut, float rcut_smth, float protection) -> Tensor");
  m.def(
      "env_mat_se_a_hvp(Tensor grad_em, Tensor tangent, Tensor ext_coord, Tensor nlist, Tensor atype, "
      "Tensor dstd, float rcut, float rcut_smth, float protection) -> Tensor");

  // se_e2_a reductions. T = em^T g / nnei over the slot axis: em [.., nnei, 4], g [.., nnei, M]
  // -> [.., 4, M]; its two partial derivatives close the family (each op's backward is made of
  // these three), so every order of derivative is available.
  m.def("se_a_reduce(Tensor em, Tensor g) -> Tensor");
  m.def("se_a_reduce_grad_em(Tensor grad_t, Tensor g) -> Tensor");
  m.def("se_a_reduce_grad_g(Tensor grad_t, Tensor em) -> Tensor");
  // D = a^T b[..., :axis_neuron] over the 4-axis: a, b [.., 4, M] -> [.., M, axis_neuron];
  // the descriptor is se_a_gram(T, T, axis_neuron). Same closed family.
  m.def("se_a_gram(Tensor a, Tensor b, int axis_neuron) -> Tensor");
  m.def("se_a_gram_grad_a(Tensor grad_d, Tensor b) -> Tensor");
  m.def("se_a_gram_grad_b(Tensor grad_d, Tensor a) -> Tensor");

  // The fused se_e2_a embedding + reduction (kernels/cpu/embed.h): one embedding net (params
  // packed per layer: matrix, bias, idt; widths [1, neuron...]; activation code of
  // dpx.ops.se_a_embed.ACTIVATIONS) on the slots em [nslot, K] (s = em[:, 0]; with s_last,
  // em [nslot, K + 1] and s = em[:, K]) of sorted centers center [nslot], contracted into
  // T [ncenter, K, M] with T = scale sum R (x) G(s), R = em[:, :K]. Its derivative for the
  // forces, for the energy's parameter gradient, and the derivative of the first for a force
  // loss (d/d(grad_t, em, params)); with s_last, d/ds is em's last column of each.
  m.def(dpx::ops::embed_schemas::kReduce);
  m.def(dpx::ops::embed_schemas::kGradEm);
  m.def(dpx::ops::embed_schemas::kGradParams);
  m.def(dpx::ops::embed_schemas::kGradEmGrad);

  // DeePMD-kit's compressed se_e2_a embedding (deepmd::tabulate_fusion_se_a, kernels/cpu/
  // tabulate.h): table [nrow, 6 M] and table_info of one net, em_x [nloc * nnei, 1] the
  // tables' inputs, em [nloc, nnei, 4] -> [nloc, 4, M]; _grad: d/d(em_x, em) of sum(grad_out
  // * out). CPU only; higher derivatives come from the PyTorch twin (dpx.ops.tabulate).
  m.def("tabulate_se_a(Tensor table, Tensor table_info, Tensor em_x, Tensor em, "
        "int last_layer_size) -> Tensor");
  m.def("tabulate_se_a_grad(Tensor grad_out, Tensor table, Tensor table_info, Tensor em_x, "
        "Tensor em) -> (Tensor, Tensor)");
}
