"""DPA-1 (dpa1 / se_atten, se_atten_v2) against independent oracles: a per-center brute force of
deepmd-dpa1 §3-§7 (its own neighbor search, switch, type embedding, nets, attention and
contraction, reading only the weights of the state dict), the two evaluation strategies
against each other, finite-difference forces and virials, invariances, smoothness at rcut,
the frozen (scripted) model and its raw-list entry point, compression and float32. DeePMD-kit's
numbers on shared weights: tests/fidelity/test_dpa1_fidelity.py."""
import math

import pytest
import torch

from dpx import ops
from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.export.frozen import FrozenEnergyModel
from dpx.model.energy import EnergyModel, fold
from dpx.ops import deepmd
from tests.export.test_frozen import raw_nlist

TYPE_MAP = ["O", "H", "C"]
RCUT, RCUT_SMTH, SEL = 4.0, 1.0, 14
BASE = {"sel": SEL, "rcut": RCUT, "rcut_smth": RCUT_SMTH, "neuron": [4, 8], "axis_neuron": 3,
        "tebd_dim": 4, "attn": 6, "seed": 1}
SHIFT = 20.0  # deepmd-dpa1 §6.2 step 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Toy models: on a busy 2-core machine a second OpenMP thread only waits on the first (a
    10-atom evaluation: about 1 s with two threads, 10 ms with one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# descriptor variants: together they switch every key of deepmd-dpa1 §3-§7 on and off
VARIANTS = {
    "concat": {},
    # tebd_dim == ntypes (the embedding's residual adds the one-hot), davg not zero (padding
    # rows enter the nets and the sums), a type pair excluded, resnet_dt in the embedding net
    "concat_davg_residual_exclude": {"set_davg_zero": False, "tebd_dim": 3,
                                     "exclude_types": [[0, 2]], "resnet_dt": True},
    "concat_smooth_one_side": {"smooth_type_embedding": True, "type_one_side": True,
                               "attn_layer": 1, "set_davg_zero": False, "normalize": False},
    "concat_no_attention": {"attn_layer": 0, "attn_dotr": False, "concat_output_tebd": False,
                            "set_davg_zero": False},
    "strip": {"tebd_input_mode": "strip", "set_davg_zero": False, "use_tebd_bias": True,
              "temperature": 0.7},
    "strip_smooth_one_side": {"tebd_input_mode": "strip", "smooth_type_embedding": True,
                              "type_one_side": True, "exclude_types": [[1, 1]],
                              "attn_dotr": False, "set_davg_zero": False},
    # tebd_dim == 2 ntypes (the residual adds [one-hot, one-hot]), no normalization of q, k,
    # v, 1/(r + p) in the environment matrix
    "strip_unnormalized": {"tebd_input_mode": "strip", "normalize": False,
                           "scaling_factor": 2.0, "tebd_dim": 6, "concat_output_tebd": False,
                           "env_protection": 0.1},
    # model-level exclusions: a pair's list entry becomes padding (-davg/dstd, the type of
    # atom 0), an atom's energy 0 (deepmd-dpa1 §2.3, §8.3)
    "concat_model_exclusions": {"set_davg_zero": False, "_model": {
        "pair_exclude_types": [[1, 2]], "atom_exclude_types": [0]}},
    "se_atten_v2": {"type": "se_atten_v2", "attn_layer": 0},
    # strip without attention and without the smooth factor, davg not zero, an excluded pair
    "strip_no_attention": {"tebd_input_mode": "strip", "attn_layer": 0, "set_davg_zero": False,
                           "exclude_types": [[0, 2]]},
    "se_atten_v2_attention": {"type": "se_atten_v2", "attn_layer": 2, "ln_eps": 1e-3},
}


def dpa1_model(precision="float64", seed=3, type_map=TYPE_MAP, **descriptor) -> EnergyModel:
    """A DPA-1 energy model with every weight perturbed from its initial value, random
    slot-constant statistics (davg [mu_r, 0, 0, 0] unless set_davg_zero, dstd [s_r, s_a, s_a,
    s_a], one value per center type as the statistics make them) and a random out_bias.
    descriptor["_model"]: keys of the model section (pair_exclude_types, ...)."""
    model_keys = descriptor.pop("_model", {})
    desc = {"type": "dpa1", **BASE, **descriptor, "precision": precision}
    cfg = parse(ModelConfig, {
        "type_map": list(type_map), "descriptor": desc,
        "fitting_net": {"neuron": [8, 8], "seed": seed, "precision": precision}, **model_keys,
    }, "model")
    model = EnergyModel(cfg)
    g = torch.Generator().manual_seed(seed)
    nt = len(type_map)
    block = model.atomic_model.descriptor.se_atten
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
        if not cfg.descriptor.set_davg_zero:
            block.mean[..., 0] = (0.1 + 0.4 * torch.rand(nt, 1, generator=g,
                                                         dtype=torch.float64))
        block.stddev[..., 0] = 0.3 + torch.rand(nt, 1, generator=g, dtype=torch.float64)
        block.stddev[..., 1:] = 0.2 + torch.rand(nt, 1, 1, generator=g, dtype=torch.float64)
        model.atomic_model.out_bias.copy_(torch.randn(1, nt, 1, generator=g,
                                                      dtype=torch.float64))
    model.atomic_model.descriptor.plan()  # statistics written by hand: choose the strategy
    return model.eval()


# ---------------------------------------------------------------- frames
def periodic_frame(natoms=10, box_len=6.0, seed=0):
    """A jittered grid in a triclinic cell, three types; atom 0 is of type 1 (padding slots
    take the type of extended atom 0: not type 0 here)."""
    g = torch.Generator().manual_seed(seed)
    n = math.ceil(natoms ** (1 / 3))
    grid = torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coord = (grid[:natoms].double()
             + 0.35 * torch.rand(natoms, 3, generator=g, dtype=torch.float64)) * (box_len / n)
    atype = torch.tensor([(i + 1) % 3 for i in range(natoms)])
    box = torch.eye(3, dtype=torch.float64) * box_len
    box[1, 0] = 0.7  # a tilt
    return coord[None], atype[None], box.reshape(1, 9)


def cluster_frame(seed=0):
    """Open boundaries: a dense group and a sparse tail (centers with 1 to 9 neighbors), and
    one atom with no neighbor at all (index 7)."""
    g = torch.Generator().manual_seed(seed)
    dense = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, 1.3, 0], [0, 0, 1.1], [1.1, 1.2, 0.9],
                          [-1.0, 0.4, 0.3], [2.6, -0.5, 0.2]], dtype=torch.float64)
    tail = torch.tensor([[20.0, 0, 0], [5.8, 0.3, -0.4], [8.9, 0.1, 0.5], [3.0, 2.2, 1.9]],
                        dtype=torch.float64)
    coord = torch.cat([dense, tail]) + 0.1 * torch.rand(11, 3, generator=g, dtype=torch.float64)
    atype = torch.tensor([1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0])
    return coord[None], atype[None], None


def frames():
    """(name, coord, atype, box): sparse periodic, crowded periodic (30 and more neighbors
    within rcut: sel 14 truncates to the nearest), open with an isolated atom."""
    return [("periodic", *periodic_frame()),
            ("crowded", *periodic_frame(natoms=16, box_len=5.0, seed=1)),
            ("cluster", *cluster_frame())]


# ---------------------------------------------------------------- the oracle
def switch(r: float) -> float:
    u = (min(max(r, RCUT_SMTH), RCUT) - RCUT_SMTH) / (RCUT - RCUT_SMTH)
    return u ** 3 * (-6 * u ** 2 + 15 * u - 10) + 1


def brute_neighbors(coord, box, cutoff=RCUT):
    """Per center: [(r, x_j - x_i, j)] of every atom and periodic image within cutoff,
    nearest first (images of a 5 A cell or larger: two cells each way reach beyond 4)."""
    coord = coord[0]
    if box is None:
        shifts = torch.zeros(1, 3, dtype=torch.float64)
    else:
        reach = torch.arange(-2, 3, dtype=torch.float64)
        cells = torch.stack(torch.meshgrid(reach, reach, reach, indexing="ij"), -1).reshape(-1, 3)
        shifts = cells @ box.view(3, 3)
    out = []
    for i in range(coord.shape[0]):
        d = coord[None, :, :] + shifts[:, None, :] - coord[i]  # [images, natoms, 3]
        r = d.norm(dim=-1)
        found = [(float(r[s, j]), d[s, j], j) for s, j in (r <= cutoff).nonzero().tolist()
                 if float(r[s, j]) > 1e-10]
        out.append(sorted(found, key=lambda x: x[0]))
    return out


def mlp(x, sd, prefix, act=torch.tanh):
    """An embedding net of deepmd-dpa1 §5.1: y = act(x W + b) (* idt), + x when the width is
    kept, + [x, x] when it doubles."""
    k = 0
    while f"{prefix}.layers.{k}.matrix" in sd:
        w = sd[f"{prefix}.layers.{k}.matrix"]
        y = act(x @ w + sd.get(f"{prefix}.layers.{k}.bias", 0.0))
        if f"{prefix}.layers.{k}.idt" in sd:
            y = y * sd[f"{prefix}.layers.{k}.idt"]
        if w.shape[1] == w.shape[0]:
            y = y + x
        elif w.shape[1] == 2 * w.shape[0]:
            y = y + torch.cat([x, x], dim=-1)
        x, k = y, k + 1
    return x


def type_table(sd, nt):
    """[nt + 1, td]: one_hot W (+ b) plus the layer's residual, and a zero row (§4)."""
    w = sd["atomic_model.descriptor.type_embedding.embedding.embedding_net.layers.0.matrix"]
    b = sd.get("atomic_model.descriptor.type_embedding.embedding.embedding_net.layers.0.bias",
               0.0)
    eye = torch.eye(nt, dtype=w.dtype)
    e = eye @ w + b
    if w.shape[1] == nt:
        e = e + eye
    elif w.shape[1] == 2 * nt:
        e = e + torch.cat([eye, eye], dim=1)
    return torch.cat([e, torch.zeros(1, w.shape[1], dtype=w.dtype)])


def attention(g, mask, sw, rhat, sd, cfg):
    """The attn_layer gated self-attention layers over one center's nnei slots (§6.2)."""
    hidden = cfg.attn
    alpha = cfg.temperature if cfg.temperature is not None else \
        (hidden * cfg.scaling_factor) ** -0.5
    eps = 1e-5 if cfg.ln_eps is None else cfg.ln_eps
    pair = sw[:, None] * sw[None, :]
    for layer in range(cfg.attn_layer):
        p = f"atomic_model.descriptor.se_atten.dpa1_attention.attention_layers.{layer}."
        qkv = g @ sd[p + "attention_layer.in_proj.matrix"] + sd[p + "attention_layer.in_proj.bias"]
        q, k, v = qkv[:, :hidden], qkv[:, hidden:2 * hidden], qkv[:, 2 * hidden:]
        if cfg.normalize:
            q, k, v = (x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12) for x in (q, k, v))
        a = (q * alpha) @ k.T
        if cfg.smooth_type_embedding:
            a = (a + SHIFT) * pair - SHIFT
        else:
            a = a.masked_fill(~mask[None, :], -math.inf)
        a = torch.softmax(a, dim=-1)
        a = torch.where(mask[:, None], a, 0.0)  # a row of no neighbor: NaN, zeroed
        if cfg.smooth_type_embedding:
            a = a * pair
        if cfg.attn_dotr:
            a = a * (rhat @ rhat.T)
        o = (a @ v) @ sd[p + "attention_layer.out_proj.matrix"] + \
            sd[p + "attention_layer.out_proj.bias"]
        x = g + o
        mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, unbiased=False, keepdim=True)
        g = (x - mean) / torch.sqrt(var + eps) * sd[p + "attn_layer_norm.matrix"] + \
            sd[p + "attn_layer_norm.bias"]
    return g


def oracle(model, coord, atype, box):
    """(descriptor [nloc, dim], atomic energies [nloc]) by deepmd-dpa1 §3-§8, center by center,
    slot by slot."""
    cfg = model.cfg.descriptor
    sd = {k: v.detach().double() for k, v in model.state_dict().items()}
    nt, nnei = len(model.type_map), sum(cfg.sel_list())
    davg = sd["atomic_model.descriptor.se_atten.mean"]
    dstd = sd["atomic_model.descriptor.se_atten.stddev"]
    tebd = type_table(sd, nt)
    excluded = {tuple(p) for p in cfg.exclude_types} | {tuple(p[::-1]) for p in cfg.exclude_types}
    pairs = model.cfg.pair_exclude_types
    pair_excluded = {tuple(p) for p in pairs} | {tuple(p[::-1]) for p in pairs}
    types = atype[0].tolist()
    strip = cfg.tebd_input_mode == "strip"
    descriptors, energies = [], []
    for i, nbrs in enumerate(brute_neighbors(coord, box)):
        ti = types[i]
        rows = torch.zeros(nnei, 4, dtype=torch.float64)
        sw = torch.zeros(nnei, dtype=torch.float64)
        mask = torch.zeros(nnei, dtype=torch.bool)
        nb_type = [types[0]] * nnei  # padding: the type of extended atom 0 (§5.2)
        for j in range(nnei):
            # padding, and a pair the model excludes (its entry is -1): -davg/dstd (§3.1)
            if j >= len(nbrs) or (ti, types[nbrs[j][2]]) in pair_excluded:
                rows[j] = -davg[ti, j] / dstd[ti, j]
                continue
            r, d, k = nbrs[j]
            if (ti, types[k]) in excluded:  # an excluded pair: a zero row, no neighbor
                continue
            s, rp = switch(r), r + cfg.env_protection
            raw = torch.cat([torch.tensor([s / rp], dtype=torch.float64), s * d / rp ** 2])
            rows[j] = (raw - davg[ti, j]) / dstd[ti, j]
            sw[j], mask[j], nb_type[j] = s, True, types[k]
        # the embedding G [nnei, ng] (§5.3, §5.4)
        e_nb, e_center = tebd[nb_type], tebd[ti].expand(nnei, -1)
        types_in = [e_nb] if cfg.type_one_side else [e_nb, e_center]
        net = "atomic_model.descriptor.se_atten.filter_layers.networks.0"
        if strip:
            g_s = mlp(rows[:, :1], sd, net)
            g_t = mlp(torch.cat(types_in, dim=-1), sd,
                      "atomic_model.descriptor.se_atten.filter_layers_strip.networks.0")
            if cfg.smooth_type_embedding:
                g_t = g_t * sw[:, None]
            g = g_s * g_t + g_s
        else:
            g = mlp(torch.cat([rows[:, :1], *types_in], dim=-1), sd, net)
        xyz = rows[:, 1:]
        rhat = xyz / xyz.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        g = attention(g, mask, sw, rhat, sd, cfg)
        t = rows.T @ g / nnei                       # [4, ng], divided by the full nnei (§7)
        d = (t.T @ t[:, :cfg.axis_neuron]).reshape(-1)
        if cfg.concat_output_tebd:
            d = torch.cat([d, tebd[ti]])
        descriptors.append(d)
        # one fitting net for every type (§8): hidden layers as above, a linear output
        fit = "atomic_model.fitting_net.filter_layers.networks.0"
        last = max(int(k.split(".")[6]) for k in sd if k.startswith(fit + ".layers."))
        hidden = {k: v for k, v in sd.items() if not k.startswith(f"{fit}.layers.{last}.")}
        x = mlp(d, hidden, fit)
        e = x @ sd[f"{fit}.layers.{last}.matrix"] + sd[f"{fit}.layers.{last}.bias"]
        e = e + sd["atomic_model.fitting_net.bias_atom_e"][ti] + \
            sd["atomic_model.out_bias"][0, ti]
        energies.append(e[0] * (ti not in model.cfg.atom_exclude_types))
    return torch.stack(descriptors), torch.stack(energies)


def dpx_descriptor(model, coord, atype, box):
    """The descriptor on dpx's list, with the model's pair exclusions made -1 entries."""
    d = model.atomic_model.descriptor
    nl = ops.neighbor_list(coord, atype, box, RCUT, d.get_sel(), mixed_types=True)
    nlist = nl.nlist.clone()
    for a, b in model.cfg.pair_exclude_types:
        tj = nl.ext_atype[0, nlist.clamp(min=0)]
        ti = atype[0, :, None].expand_as(nlist)
        drop = (nlist >= 0) & (((ti == a) & (tj == b)) | ((ti == b) & (tj == a)))
        nlist[drop] = -1
    return d(nl.ext_coord, nl.ext_atype, nlist, atype)[0].detach()


def strategies(block) -> tuple[str, ...]:
    """The evaluation strategies a block can take (fused: strip mode without attention)."""
    return ("narrow", "dense") + (("fused",) if block.fusable else ())


def close(got, want, tol=1e-12):
    scale = max(float(want.detach().abs().max()), 1.0)
    diff = float((got.detach() - want.detach()).abs().max())
    assert diff <= tol * scale, (diff, scale)


# ---------------------------------------------------------------- the formula
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_descriptor_and_energy_equal_brute_force(variant, monkeypatch):
    model = dpa1_model(**VARIANTS[variant])
    block = model.atomic_model.descriptor.se_atten
    assert block.strategy == ("fused" if block.fusable else "narrow")
    for name, coord, atype, box in frames():
        want_d, want_e = oracle(model, coord, atype, box)
        for strategy in strategies(block):
            monkeypatch.setattr(block, "strategy", strategy)
            got = dpx_descriptor(model, coord, atype, box)
            assert got.shape == want_d.shape == (atype.shape[1], block.get_dim_out() + (
                model.cfg.descriptor.tebd_dim if model.cfg.descriptor.concat_output_tebd
                else 0))
            close(got, want_d)
            out = model(coord, atype, box)
            close(out["atom_energy"][0, :, 0], want_e)
            close(out["energy"][0, 0], want_e.sum())
            assert torch.isfinite(out["force"]).all(), (name, strategy)


def test_frames_cover_the_cases():
    counts = {name: [len(n) for n in brute_neighbors(c, b)] for name, c, _, b in frames()}
    assert max(counts["periodic"]) < SEL and min(counts["periodic"]) < max(counts["periodic"])
    assert min(counts["crowded"]) > SEL  # the nearest sel kept
    assert 0 in counts["cluster"]        # an atom without neighbors


def test_slot_dependent_statistics_take_the_dense_path():
    """davg/dstd that differ between slots (no statistics make them; a foreign checkpoint
    might): the dense strategy, chosen again when a state dict is loaded; the oracle's
    numbers."""
    model = dpa1_model(**VARIANTS["strip"])
    block = model.atomic_model.descriptor.se_atten
    with torch.no_grad():
        block.mean[1, 5, 0] += 0.3
        block.stddev[0, 12, 1:] *= 1.5
    fresh = dpa1_model(**VARIANTS["strip"], seed=4)
    assert fresh.atomic_model.descriptor.se_atten.strategy in ("narrow", "fused")
    fresh.load_state_dict(model.state_dict())
    assert fresh.atomic_model.descriptor.se_atten.strategy == "dense"
    for coord, atype, box in (periodic_frame(), cluster_frame()):
        want_d, want_e = oracle(model, coord, atype, box)
        close(dpx_descriptor(fresh, coord, atype, box), want_d)
        close(fresh(coord, atype, box)["atom_energy"][0, :, 0], want_e)


def test_statistics_are_sums_taken_by_hand():
    """Per center type, every slot of every atom of that type pooled, padding and excluded
    pairs as zeros: davg [mean r, 0, 0, 0] (set_davg_zero: 0), dstd [std r, std a x 3] with
    the xyz columns pooled (deepmd-dpa1 §3.2)."""
    model = dpa1_model(set_davg_zero=False, exclude_types=[[0, 2]])
    d = model.atomic_model.descriptor
    samples = [{"coord": c, "atype": a, "box": b} for _, c, a, b in frames()]
    sums = d.compute_stats(samples)
    assert sorted(sums) == ["a_0", "a_1", "a_2", "r_0", "r_1", "r_2"]
    radial, xyz = {t: [] for t in range(3)}, {t: [] for t in range(3)}
    for f in samples:
        types = f["atype"][0].tolist()
        for i, nbrs in enumerate(brute_neighbors(f["coord"], f["box"])):
            for j in range(SEL):
                raw = [0.0] * 4
                if j < len(nbrs) and {types[i], types[nbrs[j][2]]} != {0, 2}:
                    r, vec, _ = nbrs[j]
                    raw = [switch(r) / r, *(switch(r) * vec / r ** 2).tolist()]
                radial[types[i]].append(raw[0])
                xyz[types[i]].extend(raw[1:])
    d.set_stats(sums)
    plain = dpa1_model()  # set_davg_zero
    plain.atomic_model.descriptor.set_stats(sums)
    for t in range(3):
        r = torch.tensor(radial[t], dtype=torch.float64)
        a = torch.tensor(xyz[t], dtype=torch.float64)
        assert sums[f"r_{t}"].number == len(r) and sums[f"a_{t}"].number == len(a)
        want_avg = torch.tensor([float(r.mean()), 0, 0, 0], dtype=torch.float64)
        want_std = torch.tensor([float(r.std(unbiased=False))] +
                                [float(a.std(unbiased=False))] * 3, dtype=torch.float64)
        for block in (d.se_atten, plain.atomic_model.descriptor.se_atten):
            torch.testing.assert_close(block.stddev[t], want_std.expand(SEL, 4), rtol=1e-12,
                                       atol=0)
        torch.testing.assert_close(d.se_atten.mean[t], want_avg.expand(SEL, 4), rtol=1e-12,
                                   atol=0)
        assert not plain.atomic_model.descriptor.se_atten.mean.any()
    assert d.se_atten.strategy in ("narrow", "fused")


def test_a_batch_of_frames_equals_each_frame():
    """Frames of one call share the list's width; each keeps its own padding (its own count,
    the type of its own atom 0)."""
    model = dpa1_model(**VARIANTS["concat_davg_residual_exclude"])
    c1, a1, b1 = periodic_frame()
    c2, a2, b2 = periodic_frame(seed=2, box_len=6.5)
    a2 = (a2 + 1) % 3  # atom 0 of type 2
    both = model(torch.cat([c1, c2]), torch.cat([a1, a2]), torch.cat([b1, b2]))
    for k, (c, a, b) in enumerate([(c1, a1, b1), (c2, a2, b2)]):
        one = model(c, a, b)
        for key in ("energy", "atom_energy", "force", "virial"):
            close(both[key][k], one[key][0])


def test_virtual_atoms_are_nobodys_neighbors():
    """A type -1 atom: no energy, no force, and the others' numbers as without it."""
    model = dpa1_model(**VARIANTS["strip"])
    coord, atype, _ = cluster_frame()
    virtual = atype.clone()
    virtual[0, 3] = -1
    keep = [i for i in range(11) if i != 3]
    out = model(coord, virtual, None)
    ref = model(coord[:, keep], atype[:, keep], None)
    close(out["energy"], ref["energy"])
    close(out["force"][:, keep], ref["force"])
    assert float(out["atom_energy"][0, 3].abs()) == 0 and float(out["force"][0, 3].abs().max()) == 0


def test_isolated_atom_has_finite_derivatives():
    """Non-smooth attention on a center without neighbors: its scores are all masked (a NaN
    row in DeePMD-kit's softmax, zeroed after). Energy, forces and the gradient of a force
    loss by every parameter stay finite, in both strategies."""
    for variant in ("concat_davg_residual_exclude", "strip"):
        model = dpa1_model(**VARIANTS[variant]).train()
        coord, atype, box = cluster_frame()
        for strategy in strategies(model.atomic_model.descriptor.se_atten):
            model.atomic_model.descriptor.se_atten.strategy = strategy
            out = model(coord, atype, box)
            assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["force"]).all()
            assert float(out["force"][0, 7].abs().max()) == 0.0  # no neighbor, no force
            loss = (out["force"] ** 2).sum() + out["energy"].sum()
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            assert all(g is None or torch.isfinite(g).all() for g in grads), (variant, strategy)


# ---------------------------------------------------------------- the two strategies
def outputs_and_loss_gradient(model, coord, atype, box):
    """energy, force, virial and d(force loss)/d(every parameter) of a training model."""
    out = model(coord, atype, box)
    g = torch.Generator().manual_seed(7)
    target = torch.randn(out["force"].shape, generator=g, dtype=torch.float64)
    loss = ((out["force"] - target) ** 2).sum() + out["energy"].sum() ** 2
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return out, {i: gr for i, gr in enumerate(grads) if gr is not None}


@pytest.mark.parametrize("variant", ["concat_davg_residual_exclude", "concat_smooth_one_side",
                                     "strip", "se_atten_v2_attention", "se_atten_v2",
                                     "strip_no_attention"])
def test_narrow_strategy_equals_dense(variant, monkeypatch):
    """"narrow" drops the list's trailing columns that no center fills and adds what they
    contribute in closed form; "fused" (strip mode without attention) runs the radial net in
    the fused embedding op on the filled slots, grouped by (center, neighbor type), padding in
    closed form; "dense" runs every slot. Every center of these frames has fewer than sel
    neighbors, so columns are dropped."""
    model = dpa1_model(**VARIANTS[variant]).train()
    block = model.atomic_model.descriptor.se_atten
    for coord, atype, box in (cluster_frame(), periodic_frame(natoms=8, box_len=7.0)):
        assert max(len(n) for n in brute_neighbors(coord, box)) < SEL
        assert block.strategy == ("fused" if block.fusable else "narrow")
        monkeypatch.setattr(block, "strategy", "dense")
        dense, g_dense = outputs_and_loss_gradient(model, coord, atype, box)
        assert len(g_dense) > 10
        for strategy in strategies(block)[:1] + strategies(block)[2:]:
            monkeypatch.setattr(block, "strategy", strategy)
            out, grad = outputs_and_loss_gradient(model, coord, atype, box)
            for key in ("energy", "force", "virial"):
                close(out[key], dense[key])
            assert grad.keys() == g_dense.keys()
            for i in g_dense:
                close(grad[i], g_dense[i])
        monkeypatch.undo()


# ---------------------------------------------------------------- physics
PHYSICS = ["concat_davg_residual_exclude", "strip_smooth_one_side", "se_atten_v2_attention"]


@pytest.mark.parametrize("variant", PHYSICS)
@pytest.mark.parametrize("periodic", [True, False])
def test_forces_and_virial_are_derivatives_of_the_energy(variant, periodic):
    model = dpa1_model(**VARIANTS[variant])
    coord, atype, box = periodic_frame() if periodic else cluster_frame()
    out = model(coord, atype, box)
    h = 1e-5
    for i, c in [(0, 0), (4, 1), (9, 2)]:
        plus, minus = coord.clone(), coord.clone()
        plus[0, i, c] += h
        minus[0, i, c] -= h
        fd = -(model(plus, atype, box)["energy"] - model(minus, atype, box)["energy"]) / (2 * h)
        assert float(out["force"][0, i, c]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
    if periodic:  # r -> r S, S_ab = 1 + e: virial_ba = -dE/de
        for a, b in [(0, 0), (1, 2), (2, 1)]:
            def energy(e, a=a, b=b):
                strain = torch.eye(3, dtype=torch.float64)
                strain[a, b] += e
                return float(model(coord @ strain, atype,
                                   (box.view(3, 3) @ strain).view(1, 9))["energy"])
            fd = -(energy(h) - energy(-h)) / (2 * h)
            assert float(out["virial"][0, 3 * b + a]) == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("variant", PHYSICS)
def test_rotation_translation_permutation_invariance(variant):
    """The permutations keep atom 0 in place: padding slots take the type of extended atom 0
    (DeePMD-kit's gather), so with davg not zero the energy depends on which atom is first."""
    model = dpa1_model(**VARIANTS[variant])
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5),
                                       dtype=torch.float64))
    def keep_first(n):
        rest = 1 + torch.randperm(n - 1, generator=torch.Generator().manual_seed(1))
        return torch.cat([torch.zeros(1, dtype=torch.long), rest])
    perm = keep_first(11)
    coord, atype, _ = cluster_frame()
    ref = model(coord, atype, None)
    moved = model(coord @ q + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atype, None)
    close(moved["energy"], ref["energy"])
    close(moved["force"], ref["force"] @ q, 1e-10)
    swapped = model(coord[:, perm], atype[:, perm], None)
    close(swapped["energy"], ref["energy"])
    close(swapped["force"], ref["force"][:, perm], 1e-10)
    coord, atype, box = periodic_frame()
    ref = model(coord, atype, box)
    rotated = model(coord @ q, atype, (box.view(3, 3) @ q).view(1, 9))
    close(rotated["energy"], ref["energy"])
    close(rotated["virial"].view(3, 3), q.T @ ref["virial"].view(3, 3) @ q, 1e-10)
    perm = keep_first(10)
    swapped = model(coord[:, perm], atype[:, perm], box)
    close(swapped["energy"], ref["energy"])
    close(swapped["force"], ref["force"][:, perm], 1e-10)


# strip: padding G_pad = N_s(-davg/dstd) whatever the type; concat: the padding slot takes
# the type embedding of atom 0, so only davg = 0 (R_pad = 0) makes it vanish at rcut
@pytest.mark.parametrize("variant", [{"type": "se_atten_v2", "attn_layer": 2},
                                     {"smooth_type_embedding": True, "attn_layer": 2}])
def test_smooth_when_a_neighbor_crosses_rcut(variant):
    model = dpa1_model(**variant)
    # atom 2 crosses atom 0's cut-off; atom 1 stays out of atom 2's range
    coord = torch.tensor([[[0.0, 0.0, 0.0], [-1.0, 0.2, 0.3], [RCUT, 0.1, 0.0]]],
                         dtype=torch.float64)
    atype = torch.tensor([[1, 0, 2]])
    energies, forces = [], []
    for h in (-1e-4, -1e-7, 1e-7, 1e-4):
        c = coord.clone()
        c[0, 2, 0] = math.sqrt(RCUT ** 2 - 0.1 ** 2) + h
        out = model(c, atype, None)
        energies.append(float(out["energy"]))
        forces.append(out["force"])
    assert abs(energies[1] - energies[2]) < 1e-10
    assert abs(energies[0] - energies[3]) < 1e-8
    close(forces[1], forces[2], 1e-10)


# ---------------------------------------------------------------- the frozen model
def frozen(model):
    return FrozenEnergyModel.from_model(model, "{}").script()


@pytest.mark.parametrize("variant, sel", [("concat_davg_residual_exclude", SEL),
                                          ("strip_smooth_one_side", SEL),
                                          ("concat_smooth_one_side", 5)])
def test_frozen_model_equals_eager(variant, sel, tmp_path):
    """forward on a periodic and an open frame; forward_lower on LAMMPS' kind of list (every
    atom within rcut + 1.5, rows shuffled, -1 padded wider; sel 5 < the neighbor count) and
    on a list narrower than sel; the saved file loaded again."""
    model = dpa1_model(**{**VARIANTS[variant], "sel": sel})
    torch.jit.save(frozen(model), str(tmp_path / "m.pth"))
    m = torch.jit.load(str(tmp_path / "m.pth"))
    assert m.mixed_types() and m.get_nsel() == sel and not m.need_sorted_nlist_for_lower()
    for coord, atype, box in (periodic_frame(), cluster_frame()):
        ref = model(coord, atype, box, do_atomic_virial=True)
        out = m(coord, atype, box, do_atomic_virial=True)
        for key in ("energy", "atom_energy", "force", "virial", "atom_virial"):
            close(out[key], ref[key], 1e-10)
    coord, atype, box = periodic_frame()
    ref = model(coord, atype, box, do_atomic_virial=True)
    nl = ops.neighbor_list(coord, atype, box, RCUT + 1.5, [200], mixed_types=True)
    raw = raw_nlist(nl.ext_coord, nl.ext_atype, atype.shape[1], RCUT + 1.5)
    assert raw.shape[-1] > sel
    low = m.forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping, do_atomic_virial=True)
    close(low["energy"], ref["energy"], 1e-10)
    close(low["atom_energy"], ref["atom_energy"], 1e-10)
    close(low["virial"], ref["virial"], 1e-10)
    close(fold(low["extended_force"], nl.mapping, 10), ref["force"], 1e-10)
    close(fold(low["extended_virial"], nl.mapping, 10), ref["atom_virial"], 1e-10)
    eager = model.forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping)
    close(eager["energy"], ref["energy"], 1e-10)
    close(fold(eager["extended_force"], nl.mapping, 10), ref["force"], 1e-10)
    if sel > 12:  # the filled columns only: padded to sel again
        nl = ops.neighbor_list(coord, atype, box, RCUT, [sel], mixed_types=True)
        narrow = nl.nlist[..., :int((nl.nlist >= 0).sum(-1).max())]
        assert narrow.shape[-1] < sel
        low = m.forward_lower(nl.ext_coord, nl.ext_atype, narrow, nl.mapping)
        close(low["energy"], ref["energy"], 1e-10)
        close(fold(low["extended_force"], nl.mapping, 10), ref["force"], 1e-10)


@pytest.mark.parametrize("variant", ["concat_davg_residual_exclude", "strip_smooth_one_side"])
def test_frozen_blocks_of_centers_equal_one_pass(variant):
    """A box larger than chunk_atoms goes a block of centers at a time; the padding still
    takes the type of the system's atom 0 (with davg != 0 in concat mode it shows in T):
    blocks of 4 start at atoms of types 1, 2 and 0, and the last one is short."""
    model = dpa1_model(**VARIANTS[variant])
    coord, atype, box = periodic_frame()
    ref = model(coord, atype, box)
    blocked = FrozenEnergyModel.from_model(model, "{}")
    blocked.chunk_atoms = 4
    out = blocked.script()(coord, atype, box)
    for key in ("energy", "atom_energy", "force", "virial"):
        close(out[key], ref[key], 1e-10)


def test_frozen_state_dict_is_deepmd_kits(tmp_path):
    """DeePMD-kit's names and nothing else (deepmd-dpa1 §12.2): its `dp --pt compress` of a
    frozen file does get_model(model_def_script).load_state_dict(file.state_dict())."""
    model = dpa1_model(**VARIANTS["strip"])
    torch.jit.save(frozen(model), str(tmp_path / "m.pth"))
    m = torch.jit.load(str(tmp_path / "m.pth"))
    assert set(m.state_dict()) == set(model.state_dict())


# ---------------------------------------------------------------- compression
def compressed(model, min_nbor_dist):
    deepmd.ensure()  # deepmd::tabulate_fusion_se_atten (dpx's, where DeePMD-kit is absent)
    f = FrozenEnergyModel.from_model(model, "{}")
    ranges = f.atomic_model.descriptor.enable_compression(min_nbor_dist)
    return f, ranges, f.script()


def min_distance(coord, box):
    return min(n[0][0] for n in brute_neighbors(coord, box) if n)


@pytest.mark.parametrize("variant, rows", [("strip", 16), ("strip_smooth_one_side", 4)])
def test_compression_of_strip_with_attention_is_the_type_embedding_only(variant, rows):
    """The type factor N_t tabulated on (ntypes + 1)^2 type pairs, or ntypes + 1 types (one
    side): exact; the radial net stays a net (its output feeds the attention)."""
    model = dpa1_model(**{**VARIANTS[variant], "attn_layer": 2})
    coord, atype, box = periodic_frame()
    f, ranges, m = compressed(model, min_distance(coord, box))
    block = f.atomic_model.descriptor.se_atten
    assert ranges == {} and block.tebd_compress and not block.geo_compress
    assert block.type_embd_data.shape == (rows, 8)
    assert not m.need_sorted_nlist_for_lower()
    for coord, atype, box in (periodic_frame(), cluster_frame()):
        ref = model(coord, atype, box, do_atomic_virial=True)
        out = m(coord, atype, box, do_atomic_virial=True)
        for key in ("energy", "force", "virial", "atom_virial"):
            close(out[key], ref[key], 1e-13)


@pytest.mark.parametrize("options", [{}, {"type_one_side": True, "exclude_types": [[1, 1]],
                                          "sel": 8}])
def test_geometric_compression_without_attention(options):
    """attn_layer 0: the radial net N_s becomes DeePMD-kit's table too (within its error);
    the frozen file sorts LAMMPS' list (sel 8: the nearest of more neighbors)."""
    model = dpa1_model(**{**VARIANTS["se_atten_v2"], **options})
    dmin = min(min_distance(c, b) for _, c, _, b in frames())
    f, ranges, m = compressed(model, dmin)
    assert list(ranges) == ["filter_net"] and f.atomic_model.descriptor.se_atten.geo_compress
    assert m.need_sorted_nlist_for_lower()
    for _, coord, atype, box in frames():
        ref = model(coord, atype, box, do_atomic_virial=True)
        out = m(coord, atype, box, do_atomic_virial=True)
        for key in ("energy", "force", "virial", "atom_virial"):
            close(out[key], ref[key], 1e-9)
    # LAMMPS' list, sorted by the frozen file before the table op
    coord, atype, box = periodic_frame()
    ref = model(coord, atype, box)
    nl = ops.neighbor_list(coord, atype, box, RCUT + 1.5, [200], mixed_types=True)
    raw = raw_nlist(nl.ext_coord, nl.ext_atype, atype.shape[1], RCUT + 1.5)
    low = m.forward_lower(nl.ext_coord, nl.ext_atype, raw, nl.mapping)
    close(low["energy"], ref["energy"], 1e-9)
    close(fold(low["extended_force"], nl.mapping, 10), ref["force"], 1e-9)


@pytest.mark.parametrize("options, match", [
    ({}, r"tebd_input_mode 'strip' only"),
    ({"tebd_input_mode": "strip", "resnet_dt": True}, r"resnet_dt true cannot be compressed"),
])
def test_compression_refusals(options, match):
    model = dpa1_model(**options)
    with pytest.raises(ValueError, match=match):
        model.atomic_model.descriptor.enable_compression(0.8)


def test_compressing_twice_is_refused():
    model = dpa1_model(**VARIANTS["se_atten_v2"])
    model.atomic_model.descriptor.enable_compression(0.8)
    with pytest.raises(ValueError, match="compressed already"):
        model.atomic_model.descriptor.enable_compression(0.8)


# ---------------------------------------------------------------- precision
@pytest.mark.parametrize("variant", ["concat_davg_residual_exclude", "se_atten_v2_attention"])
def test_float32_agrees_with_float64(variant):
    """The eager model and its frozen file in float32. The frame keeps every pair 0.04 A or
    more from rcut: without the smooth type embedding the angular gate of a neighbor takes
    the direction of its env-matrix row whatever its size, and 3 mA inside rcut the float32
    switch u^3 (-6u^2 + 15u - 10) + 1 (DeePMD-kit's form, cancelling near u = 1) is -6e-7
    where it should be 9e-9: the direction flips, and the energy moves by 1e-3."""
    m64 = dpa1_model(**VARIANTS[variant])
    m32 = dpa1_model(precision="float32", **VARIANTS[variant])
    m32.load_state_dict(m64.state_dict())  # the same weights, cast
    coord, atype, box = periodic_frame(seed=1)
    pairs = brute_neighbors(coord, box, RCUT + 0.5)
    assert min(abs(r - RCUT) for n in pairs for r, _, _ in n) > 0.04
    ref, out = m64(coord, atype, box), m32(coord, atype, box)
    assert out["force"].dtype == torch.float32
    assert abs(float(out["energy"] - ref["energy"])) <= 1e-5 * abs(float(ref["energy"]))
    scale = float(ref["force"].abs().max())
    assert float((out["force"].double() - ref["force"]).abs().max()) <= 1e-4 * scale
    script = frozen(m32)(coord, atype, box)  # the frozen file of a float32 model
    assert abs(float(script["energy"] - ref["energy"])) <= 1e-5 * abs(float(ref["energy"]))
    assert float((script["force"] - ref["force"]).abs().max()) <= 1e-4 * scale
