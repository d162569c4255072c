"""What a descriptor is to the rest of dpx, and the machinery the se_e2_* descriptors share.

A descriptor maps an atom's neighborhood to a fixed-width vector. The model, the trainer, the
statistics, multi-task sharing, finetune and freeze talk to it only through `Descriptor`:

- forward(ext_coord, ext_atype, nlist, atype) -> [nf, nloc, get_dim_out()] on the typed list
  of get_sel() (nlist [nf, nloc, sum(sel)], section t holds neighbors of type t within
  get_rcut()); scriptable, so the same module is the frozen model's;
- compute_stats(frames, pair_excluded) -> sums, set_stats(sums): the input statistics
  (davg / dstd), kept as sums so that branches sharing the descriptor merge them; stat_names()
  and stat_hash_key() place them in a stat file as DeePMD-kit does;
- shared_with(base, level): this branch's descriptor when it shares `base` at `level`;
- transfer_from(src, index): finetune's copy of a pretrained descriptor whose type i becomes
  this one's type index.index(i) (new type i takes pretrained type index[i]).

EnvMatBlock implements all of it for descriptors built on the se_e2_a environment matrix
(davg / dstd buffers `mean` and `stddev`, one embedding net per neighbor type or per (center,
neighbor) pair); a subclass adds its forward and get_dim_out.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from dpx import ops
from dpx.model.backend import DTYPES, ModelOptions, make_backend
from dpx.model.network import EmbeddingNet, NetworkCollection, child_seed
from dpx.model.stat import StatItem
from dpx.nlist.exclude import exclude_pairs, excluded_slots, pair_table


class Descriptor(nn.Module):
    """The interface (see the module docstring); every method is implemented by subclasses."""

    def get_rcut(self) -> float:
        raise NotImplementedError

    def get_sel(self) -> list[int]:
        raise NotImplementedError

    def get_dim_out(self) -> int:
        raise NotImplementedError

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


class EnvMatBlock(Descriptor):
    """davg / dstd (`mean`, `stddev` [ntypes, nnei, ncol]: ncol 4 for the full environment
    matrix rows, 1 for the radial column only), the embedding nets (`filter_layers`, ndim 1: one
    per neighbor type, ndim 2: one per (center, neighbor) pair at center + neighbor * ntypes),
    DeePMD-kit's empty compression slots, exclusions and the env-mat backend."""

    # the shared levels this family defines (dpx.train.wrapper documents them to users)
    SHARE_LEVELS = {0: "everything: embedding nets and davg/dstd",
                    1: "the embedding nets only; each branch keeps its own davg/dstd"}

    def __init__(self, cfg, ntypes: int, ncol: int, ndim: int, options: ModelOptions):
        super().__init__()
        self.cfg, self.ntypes, self.ncol = cfg, ntypes, ncol
        dtype = DTYPES[cfg.precision]
        self.sel = list(cfg.sel)
        self.nnei = sum(self.sel)
        self.sec = [0, *itertools.accumulate(self.sel)]
        self.rcut, self.rcut_smth = float(cfg.rcut), float(cfg.rcut_smth)
        self.protection = float(cfg.env_protection)
        self.register_buffer("mean", torch.zeros(ntypes, self.nnei, ncol, dtype=dtype))
        self.register_buffer("stddev", torch.ones(ntypes, self.nnei, ncol, dtype=dtype))
        nets = [None] * ntypes ** ndim
        # seeds follow the enumeration of (center, neighbor) keys, storage the flat index
        for ii, key in enumerate(itertools.product(range(ntypes), repeat=ndim)):
            flat = key[0] if ndim == 1 else key[0] + key[1] * ntypes
            nets[flat] = EmbeddingNet(1, cfg.neuron, cfg.activation_function, cfg.resnet_dt,
                                      dtype, child_seed(cfg.seed, ii))
        self.filter_layers = NetworkCollection(ndim, ntypes, nets)
        # model compression tables: unused, but DeePMD-kit's state dicts and optimizer parameter
        # lists carry them (size-0 trainable parameters that never get a gradient)
        self.compress_info = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, dtype=dtype)) for _ in nets])
        self.compress_data = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, dtype=dtype)) for _ in nets])
        self.excluded = pair_table(cfg.exclude_types, ntypes)
        self.has_exclusion = bool(cfg.exclude_types)
        self.backend = make_backend(options)
        if not cfg.trainable:
            for p in self.parameters():
                p.requires_grad_(False)

    # ------------------------------------------------------------ the interface
    def get_rcut(self) -> float:
        return self.rcut

    def get_sel(self) -> list[int]:
        return self.sel

    def get_nsel(self) -> int:
        return self.nnei

    def env_mat(self, ext_coord: torch.Tensor, ext_atype: torch.Tensor, nlist: torch.Tensor,
                atype: torch.Tensor, davg: torch.Tensor,
                dstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(em [nf, nloc, w, ncol], filled [nf, nloc, w]) of a typed list of width w: the
        normalized rows (padding: -davg/dstd; excluded type pairs: 0, deepmd-compat §3.5)
        and which slots hold a neighbor that is not excluded. davg/dstd [ntypes, w, ncol]."""
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
        return {"type": "se_a" if self.ncol == 4 else "se_r", "ntypes": self.ntypes,
                "rcut": round(self.rcut, 2), "rcut_smth": round(self.rcut_smth, 2),
                "nsel": self.nnei, "sel": self.sel, "mixed_types": False}

    @torch.no_grad()
    def compute_stats(self, frames: list[dict],
                      pair_excluded: list[list[bool]] | None = None) -> dict[str, StatItem]:
        """Sums of the raw rows (davg 0, dstd 1) per center type t over all nnei slots, padding
        and excluded pairs (rows 0) included: r_t of the radial column, a_t of the xyz columns
        pooled (deepmd-compat §3.3). Model-level pair exclusions remove the pairs from the
        list first, as in the model's forward."""
        stats = {name: StatItem() for name in self.stat_names()}
        dtype = self.mean.dtype
        zero, one = torch.zeros_like(self.mean), torch.ones_like(self.stddev)
        for sample in frames:
            coord = sample["coord"].to(dtype)
            box = None if sample.get("box") is None else sample["box"].to(dtype)
            atype = sample["atype"].long()
            nl = ops.neighbor_list(coord, atype, box, self.rcut, self.sel)
            nlist = nl.nlist if pair_excluded is None else \
                exclude_pairs(nl.nlist, nl.ext_atype, atype.clamp(min=0), pair_excluded)
            em, _ = self.env_mat(nl.ext_coord, nl.ext_atype, nlist, atype.clamp(min=0), zero, one)
            for t in range(self.ntypes):
                rows = em[atype == t].double()
                r = rows[..., 0]
                stats[f"r_{t}"] += StatItem(r.numel(), float(r.sum()), float((r * r).sum()))
                if self.ncol == 4:
                    a = rows[..., 1:]
                    stats[f"a_{t}"] += StatItem(a.numel(), float(a.sum()), float((a * a).sum()))
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
        self.mean.copy_(davg)
        self.stddev.copy_(dstd)

    # ------------------------------------------------------------ multi-task, finetune
    def shared_with(self, base: Descriptor, level: int) -> Descriptor:
        """Level 0: the very module of `base`. Level 1: the embedding nets of `base`, own
        davg/dstd."""
        if type(base) is not type(self):
            raise ValueError(f"a {type(self).__name__} cannot share the parameters of a "
                             f"{type(base).__name__}")
        if level == 0:
            return base
        if level == 1:
            self.filter_layers = base.filter_layers
            return self
        raise ValueError(f"shared level {level} is not defined for {self.cfg.type} ("
                         + "; ".join(f"{k}: {v}" for k, v in self.SHARE_LEVELS.items()) + ")")

    @torch.no_grad()
    def transfer_from(self, src: Descriptor, index: list[int]) -> None:
        """davg/dstd rows follow the center type, their slot sections the neighbor type; the
        net of (center i, neighbor j) is src's net of (index[i], index[j]) (of neighbor
        index[j] with one net per neighbor type)."""
        slots = torch.cat([torch.arange(src.sec[i], src.sec[i + 1]) for i in index])
        for name in ("mean", "stddev"):
            getattr(self, name).copy_(getattr(src, name)[index][:, slots])
        n_src, n_dst = src.ntypes, self.ntypes
        if self.filter_layers.ndim == 1:
            pairs = [(j, index[j]) for j in range(n_dst)]
        else:
            pairs = [(i + j * n_dst, index[i] + index[j] * n_src)
                     for i in range(n_dst) for j in range(n_dst)]
        for new, old in pairs:
            self.filter_layers.networks[new].load_state_dict(
                src.filter_layers.networks[old].state_dict())

    # ------------------------------------------------------------ helpers for subclasses
    def slot_constant_stats(self) -> bool:
        """davg/dstd the same in every slot of a type (as the statistics make them)."""
        return bool(torch.equal(self.mean, self.mean[:, :1].expand_as(self.mean)) and
                    torch.equal(self.stddev, self.stddev[:, :1].expand_as(self.stddev)))

