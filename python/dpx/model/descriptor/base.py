"""What a descriptor is to the rest of dpx, and the machinery the descriptors on the se_e2
environment matrix share.

A descriptor maps an atom's neighborhood to a fixed-width vector. The model, the trainer, the
statistics, multi-task sharing, finetune, freeze and compress talk to it only through
`Descriptor`:

- mixed_types(): the neighbor list it reads. False: the typed list of get_sel() (nlist
  [nf, nloc, sum(sel)], section t holds neighbors of type t within get_rcut(), nearest
  first); True: one list of the get_nsel() nearest neighbors of any type (DeePMD-kit's name).
  The model, the frozen model and the statistics build the list it asks for
  (dpx.ops.neighbor_list, dpx.nlist.format_nlist, both with mixed_types);
- forward(ext_coord, ext_atype, nlist, atype) -> [nf, nloc, get_dim_out()]; scriptable, so
  the same module is the frozen model's; ext_atype has no virtual atoms (type 0 stands in);
- compute_stats(frames, pair_excluded) -> sums, set_stats(sums): the input statistics
  (davg / dstd), kept as sums so that branches sharing the descriptor merge them; stat_names()
  and stat_hash_key() place them in a stat file as DeePMD-kit does;
- shared_with(base, level): this branch's descriptor when it shares `base` at `level`
  (SHARE_LEVELS says what each level shares);
- transfer_from(src, index): finetune's copy of a pretrained descriptor: new type i takes
  src's type index[i] (-1: a type src never saw, which keeps its own statistics; only
  descriptors with a type embedding accept one, NEW_TYPES);
- plan(): the evaluation strategy, chosen once whenever the statistics, the weights (a state
  dict) or the device change (hooks below), never per call;
- enable_compression(min_nbor_dist, ...): `dpx compress` (DeePMD-kit's name).

EnvMatBlock implements the environment matrix with its statistics and exclusions for every
descriptor on it; TypedEnvMatBlock adds the per-type embedding nets of the se_e2_* family.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from dpx import ops
from dpx.model.backend import DTYPES, ModelOptions, make_backend
from dpx.model.network import EmbeddingNet, NetworkCollection, child_seed
from dpx.model.stat import StatItem
from dpx.model.tabulate import tabulate_typed_nets
from dpx.nlist.exclude import exclude_pairs, excluded_slots, pair_table
from dpx.plugin import Registered


class Descriptor(Registered, nn.Module):
    """The interface (see the module docstring). A subclass that names its config class in
    CONFIG registers itself as the descriptor of that `type` (dpx.plugin)."""
    REGISTRY = {}
    SHARE_LEVELS: dict[int, str] = {}
    NEW_TYPES = False  # finetune may add elements the pretrained model never saw

    def __init__(self):
        super().__init__()
        self.register_load_state_dict_post_hook(_replan)

    def _apply(self, fn, recurse=True):
        """.to(device) / .double() ...: the strategy may depend on the device."""
        out = super()._apply(fn, recurse)
        self.plan()
        return out

    def plan(self) -> None:
        """Choose the evaluation strategy from the statistics, weights and device as they are
        now. Called after set_stats, a loaded state dict and a move; a no-op by default."""

    def mixed_types(self) -> bool:
        raise NotImplementedError

    def get_rcut(self) -> float:
        raise NotImplementedError

    def get_sel(self) -> list[int]:
        raise NotImplementedError

    def get_nsel(self) -> int:
        return sum(self.get_sel())

    def get_dim_out(self) -> int:
        raise NotImplementedError

    def need_sorted_nlist_for_lower(self) -> bool:
        """Whether a raw list (LAMMPS') must be sorted by distance, not only selected."""
        return False

    def compute_stats(self, frames: list[dict],
                      pair_excluded: list[list[bool]] | None = None) -> dict[str, StatItem]:
        raise NotImplementedError

    def set_stats(self, sums: dict[str, StatItem]) -> None:
        raise NotImplementedError

    def stat_names(self) -> list[str]:
        raise NotImplementedError

    def stat_hash_key(self) -> dict:
        raise NotImplementedError

    def shared_with(self, base: Descriptor, level: int) -> Descriptor:
        raise NotImplementedError

    def transfer_from(self, src: Descriptor, index: list[int]) -> None:
        raise NotImplementedError

    def enable_compression(self, min_nbor_dist: float, step: float = 0.01,
                           extrapolate: float = 5, check_frequency: int = -1) -> dict:
        """Tabulate what this descriptor tabulates (`dp compress`); returns {table name:
        (lower, upper)} of its input ranges."""
        raise ValueError(f"{type(self).__name__} cannot be compressed")

    def check_level(self, level: int) -> None:
        if level not in self.SHARE_LEVELS:
            raise ValueError(f"shared level {level} is not defined for {self.cfg.type} ("
                             + "; ".join(f"{k}: {v}" for k, v in self.SHARE_LEVELS.items())
                             + ")")

    def check_same_kind(self, base: Descriptor) -> None:
        if type(base) is not type(self):
            raise ValueError(f"a {type(self).__name__} cannot share the parameters of a "
                             f"{type(base).__name__}")


def _replan(module: Descriptor, incompatible_keys) -> None:
    module.plan()


class BlockDescriptor(Descriptor):
    """A descriptor that wraps one block under DeePMD-kit's name for it (BLOCK: se_e2_a's
    `sea`, DPA-1's `se_atten`); the interface is the block's unless a subclass says more."""
    BLOCK = ""

    def block(self) -> EnvMatBlock:
        return getattr(self, self.BLOCK)

    def plan(self) -> None:
        self.block().plan()

    def mixed_types(self) -> bool:
        return self.block().mixed_types()

    def get_rcut(self) -> float:
        return self.block().get_rcut()

    def get_sel(self) -> list[int]:
        return self.block().get_sel()

    def get_dim_out(self) -> int:
        return self.block().get_dim_out()

    def need_sorted_nlist_for_lower(self) -> bool:
        return self.block().need_sorted_nlist_for_lower()

    def compute_stats(self, frames, pair_excluded=None):
        return self.block().compute_stats(frames, pair_excluded)

    def set_stats(self, sums) -> None:
        self.block().set_stats(sums)

    def stat_names(self) -> list[str]:
        return self.block().stat_names()

    def stat_hash_key(self) -> dict:
        return self.block().stat_hash_key()

    def enable_compression(self, min_nbor_dist: float, step: float = 0.01,
                           extrapolate: float = 5, check_frequency: int = -1) -> dict:
        return self.block().enable_compression(min_nbor_dist, step, extrapolate,
                                               check_frequency)


class EnvMatBlock(Descriptor):
    """The environment matrix, its statistics and exclusions: davg / dstd (`mean`, `stddev`
    [ntypes, nnei, ncol]: ncol 4 for the full rows, 1 for the radial column only), indexed by
    center type and slot; `stat_type` names the statistics in DeePMD-kit's stat-file hash
    ("se_a": full rows, "se_r": radial), `mixed` the list the block reads."""

    def __init__(self, cfg, ntypes: int, ncol: int, mixed: bool, options: ModelOptions):
        super().__init__()
        self.cfg, self.ntypes, self.ncol, self.mixed = cfg, ntypes, ncol, mixed
        self.stat_type = "se_a" if ncol == 4 else "se_r"
        dtype = DTYPES[cfg.precision]
        self.sel = cfg.sel_list()
        self.nnei = sum(self.sel)
        self.sec = [0, *itertools.accumulate(self.sel)]
        self.rcut, self.rcut_smth = float(cfg.rcut), float(cfg.rcut_smth)
        self.protection = float(cfg.env_protection)
        self.register_buffer("mean", torch.zeros(ntypes, self.nnei, ncol, dtype=dtype))
        self.register_buffer("stddev", torch.ones(ntypes, self.nnei, ncol, dtype=dtype))
        self.excluded = pair_table(cfg.exclude_types, ntypes)
        self.has_exclusion = bool(cfg.exclude_types)
        self.backend = make_backend(options)

    def freeze_unless_trainable(self) -> None:
        """trainable: false keeps every weight as it is (statistics are buffers anyway)."""
        if not self.cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    # ------------------------------------------------------------ the interface
    def mixed_types(self) -> bool:
        return self.mixed

    def get_rcut(self) -> float:
        return self.rcut

    def get_sel(self) -> list[int]:
        return self.sel

    def get_nsel(self) -> int:
        return self.nnei

    def env_mat(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor, davg: torch.Tensor,
                dstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(em [nf, nloc, w, ncol], filled [nf, nloc, w]) of a list of width w: the normalized
        rows (padding: -davg/dstd; excluded type pairs: 0, deepmd-compat §3.5) and which slots
        hold a neighbor that is not excluded. davg/dstd [ntypes, w, ncol]."""
        if self.ncol == 1:  # the radial column of the full rows, normalized by its own stats
            davg = torch.cat([davg, torch.zeros_like(davg).expand(-1, -1, 3)], dim=-1)
            dstd = torch.cat([dstd, torch.ones_like(dstd).expand(-1, -1, 3)], dim=-1)
        em = self.backend.env_mat(ext_coord, nlist, atype, davg, dstd, self.rcut,
                                  self.rcut_smth, self.protection)
        if self.ncol == 1:
            em = em[..., :1]
        filled = nlist >= 0
        if self.has_exclusion:
            drop = excluded_slots(nlist, ext_atype, atype, self.excluded)
            em = em * (~drop)[..., None].to(em.dtype)
            filled = filled & ~drop
        return em, filled

    # ------------------------------------------------------------ statistics
    def stat_names(self) -> list[str]:
        parts = ("r", "a") if self.ncol == 4 else ("r",)
        return [f"{k}_{t}" for t in range(self.ntypes) for k in parts]

    def stat_hash_key(self) -> dict:
        """What DeePMD-kit hashes to name the statistics folder of a stat file."""
        return {"type": self.stat_type, "ntypes": self.ntypes,
                "rcut": round(self.rcut, 2), "rcut_smth": round(self.rcut_smth, 2),
                "nsel": self.nnei, "sel": self.sel, "mixed_types": self.mixed}

    # list entries (atoms x nnei) of the statistics frames taken at once: fewer, larger calls
    # over thousands of systems' samples, the environment matrix of one chunk ~32 MB
    STAT_CHUNK = 1 << 20

    @torch.no_grad()
    def compute_stats(self, frames: list[dict],
                      pair_excluded: list[list[bool]] | None = None) -> dict[str, StatItem]:
        """Sums of the raw rows (davg 0, dstd 1) per center type t over all nnei slots, padding
        and excluded pairs (rows 0) included: r_t of the radial column, a_t of the xyz columns
        pooled (deepmd-compat §3.3). Model-level pair exclusions remove the pairs from the
        list first, as in the model's forward. Samples of one atom count (and periodicity)
        go through together, STAT_CHUNK entries at a time: the sums do not depend on it."""
        stats = {name: StatItem() for name in self.stat_names()}
        dtype = self.mean.dtype
        zero, one = torch.zeros_like(self.mean), torch.ones_like(self.stddev)
        for coord, atype, box in stat_chunks(frames, self.STAT_CHUNK // max(self.nnei, 1)):
            coord = coord.to(dtype)
            box = None if box is None else box.to(dtype)
            nl = ops.neighbor_list(coord, atype, box, self.rcut, self.sel,
                                   mixed_types=self.mixed)
            nlist = nl.nlist if pair_excluded is None else \
                exclude_pairs(nl.nlist, nl.ext_atype, atype.clamp(min=0), pair_excluded)
            em, _ = self.env_mat(nl.ext_coord, nl.ext_atype, nlist, atype.clamp(min=0), zero, one)
            real = atype >= 0  # virtual atoms are nobody's center
            if bool(real.all()):  # no copy of em where every atom is real
                types, rows = atype.reshape(-1), em.reshape(-1, *em.shape[2:])
            else:
                types, rows = atype[real], em[real]  # [n], [n, nnei, ncol]
            rows = rows.double()
            # per atom and column, sum and sum of squares over the slots, then per type:
            # contiguous reductions, one pass each
            s1, s2 = _by_type(rows.sum(1), types, self.ntypes), \
                _by_type((rows * rows).sum(1), types, self.ntypes)  # [ntypes, ncol]
            nrow = torch.bincount(types, minlength=self.ntypes) * self.nnei
            cols = {"r": slice(0, 1), "a": slice(1, 4)} if self.ncol == 4 else {"r": slice(0, 1)}
            for k, c in cols.items():
                width = c.stop - c.start
                for t in range(self.ntypes):
                    stats[f"{k}_{t}"] += StatItem(int(nrow[t]) * width, float(s1[t, c].sum()),
                                                  float(s2[t, c].sum()))
        return stats

    def set_stats(self, sums: dict[str, StatItem]) -> None:
        """davg[t] = (avg r_t, 0, 0, 0), dstd[t] = (std r_t, std a_t x 3) in every slot
        (radial only: avg r_t, std r_t); set_davg_zero keeps davg 0. A std below 1e-2 is 1e-2:
        DeePMD-kit's fixed protection (model/data_stat_protect is for fitting inputs)."""
        davg = torch.zeros_like(self.mean)
        dstd = torch.ones_like(self.stddev)
        for t in range(self.ntypes):
            if not self.cfg.set_davg_zero:
                davg[t, :, 0] = sums[f"r_{t}"].avg()
            dstd[t, :, 0] = sums[f"r_{t}"].std()
            if self.ncol == 4:
                dstd[t, :, 1:] = sums[f"a_{t}"].std()
        with torch.no_grad():
            self.mean.copy_(davg)
            self.stddev.copy_(dstd)
        self.plan()

    @torch.no_grad()
    def transfer_stats(self, src: EnvMatBlock, index: list[int],
                       slots: torch.Tensor | None = None) -> None:
        """davg/dstd rows follow the center type (new type i: src's row index[i]; -1 keeps
        this block's own row), their columns `slots` of src's (all when None)."""
        for name in ("mean", "stddev"):
            mine, theirs = getattr(self, name), getattr(src, name)
            if slots is not None:
                theirs = theirs[:, slots]
            for i, old in enumerate(index):
                if old >= 0:
                    mine[i] = theirs[old]

    # ------------------------------------------------------------ helpers for subclasses
    def slot_constant_stats(self) -> bool:
        """davg/dstd the same in every slot of a type (as the statistics make them)."""
        return bool(torch.equal(self.mean, self.mean[:, :1].expand_as(self.mean)) and
                    torch.equal(self.stddev, self.stddev[:, :1].expand_as(self.stddev)))

    def padding_rows(self) -> torch.Tensor:
        """[ntypes, ncol]: the normalized row of a padded slot of a center of each type,
        -davg/dstd (slot-constant statistics)."""
        return -self.mean[:, 0, :] / self.stddev[:, 0, :]


def stat_chunks(frames: list[dict], max_atoms: int):
    """(coord [nf, nloc, 3], atype [nf, nloc] int64, box [nf, 9] or None) of consecutive
    statistics samples with one atom count and periodicity, at most max_atoms atoms (nf x
    nloc) each (a larger sample alone)."""
    group: list[dict] = []

    def joined():
        box = None if group[0].get("box") is None else torch.cat([g["box"] for g in group])
        return (torch.cat([g["coord"] for g in group]),
                torch.cat([g["atype"] for g in group]).long(), box)

    for sample in frames:
        kind = (sample["coord"].shape[1], sample.get("box") is None)
        if group and (kind != (group[0]["coord"].shape[1], group[0].get("box") is None)
                      or sum(g["coord"].shape[:2].numel() for g in group)
                      + sample["coord"].shape[:2].numel() > max_atoms):
            yield joined()
            group = []
        group.append(sample)
    if group:
        yield joined()


def _by_type(values: torch.Tensor, types: torch.Tensor, ntypes: int) -> torch.Tensor:
    """Per-atom values [n, ...] summed per type, [ntypes, ...] float64."""
    return torch.zeros(ntypes, *values.shape[1:], dtype=torch.float64,
                       device=values.device).index_add_(0, types, values.double())


def compression_slots(n: int, dtype: torch.dtype) -> nn.ParameterList:
    """DeePMD-kit's compression slots: size-0 trainable parameters that its state dicts and
    optimizer parameter lists carry (and never give a gradient) until `dp compress`."""
    return nn.ParameterList([nn.Parameter(torch.zeros(0, dtype=dtype)) for _ in range(n)])


class TypedEnvMatBlock(EnvMatBlock):
    """An EnvMatBlock on the typed list with one embedding net per neighbor type (ndim 1) or
    per (center, neighbor) pair at center + neighbor * ntypes (ndim 2) in `filter_layers`,
    input width 1 (the radial entry): the se_e2_* family."""

    SHARE_LEVELS = {0: "everything: embedding nets and davg/dstd",
                    1: "the embedding nets only; each branch keeps its own davg/dstd"}

    def __init__(self, cfg, ntypes: int, ncol: int, ndim: int, options: ModelOptions):
        super().__init__(cfg, ntypes, ncol, mixed=False, options=options)
        dtype = DTYPES[cfg.precision]
        nets = [None] * ntypes ** ndim
        # seeds follow the enumeration of (center, neighbor) keys, storage the flat index
        for ii, key in enumerate(itertools.product(range(ntypes), repeat=ndim)):
            flat = key[0] if ndim == 1 else key[0] + key[1] * ntypes
            nets[flat] = EmbeddingNet(1, cfg.neuron, cfg.activation_function, cfg.resnet_dt,
                                      dtype, child_seed(cfg.seed, ii))
        self.filter_layers = NetworkCollection(ndim, ntypes, nets)
        self.compress_info = compression_slots(len(nets), dtype)
        self.compress_data = compression_slots(len(nets), dtype)
        self.freeze_unless_trainable()

    def shared_with(self, base: Descriptor, level: int) -> Descriptor:
        """Level 0: the very module of `base`. Level 1: the embedding nets of `base`, own
        davg/dstd."""
        self.check_same_kind(base)
        self.check_level(level)
        if level == 0:
            return base
        self.filter_layers = base.filter_layers
        return self

    @torch.no_grad()
    def transfer_from(self, src: Descriptor, index: list[int]) -> None:
        """davg/dstd rows follow the center type, their slot sections the neighbor type; the
        net of (center i, neighbor j) is src's net of (index[i], index[j]) (of neighbor
        index[j] with one net per neighbor type)."""
        slots = torch.cat([torch.arange(src.sec[i], src.sec[i + 1]) for i in index])
        self.transfer_stats(src, index, slots)
        n_src, n_dst = src.ntypes, self.ntypes
        if self.filter_layers.ndim == 1:
            pairs = [(j, index[j]) for j in range(n_dst)]
        else:
            pairs = [(i + j * n_dst, index[i] + index[j] * n_src)
                     for i in range(n_dst) for j in range(n_dst)]
        for new, old in pairs:
            self.filter_layers.networks[new].load_state_dict(
                src.filter_layers.networks[old].state_dict())
        self.plan()

    def enable_compression(self, min_nbor_dist: float, step: float = 0.01,
                           extrapolate: float = 5, check_frequency: int = -1) -> dict:
        """Each embedding net becomes its table (dpx.model.tabulate, DeePMD-kit's layout)."""
        ranges = tabulate_typed_nets(self, min_nbor_dist, step, extrapolate, check_frequency)
        self.plan()
        return ranges
