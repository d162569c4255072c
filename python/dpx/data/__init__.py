"""The data layer: DeePMD npy/HDF5 systems (and dpdata formats) -> batches of torch tensors.

    systems = load_systems(["data"], base_dir=input_dir, type_map=["O", "H"])
    sampler = DataSampler(systems, "auto", seed=(seed, rank))
    batch = sampler.next_batch()        # dict of tensors, see collate()
    stats = sampler.stat_input(nbatch=10)
    ckpt["sampler"] = sampler.state_dict()

numpy throughout; torch appears only in the batch dicts (sampler.collate).
"""
from dpx.data.atoms import make_system, remap_types
from dpx.data.checks import check_labels, check_parameters
from dpx.data.formats import from_dpdata, load_dpdata, load_systems
from dpx.data.paths import expand_systems
from dpx.data.sampler import (
    DataSampler,
    collate,
    make_stat_input,
    prob_sys_size_ext,
    process_sys_probs,
    resolve_batch_size,
    system_probs,
    total_numb_batch,
)
from dpx.data.schema import LABELS, LabelSpec, System
from dpx.data.system import read_system, read_systems

__all__ = [
    "LABELS",
    "DataSampler",
    "LabelSpec",
    "System",
    "check_labels",
    "check_parameters",
    "collate",
    "expand_systems",
    "from_dpdata",
    "load_dpdata",
    "load_systems",
    "make_stat_input",
    "make_system",
    "prob_sys_size_ext",
    "process_sys_probs",
    "read_system",
    "read_systems",
    "remap_types",
    "resolve_batch_size",
    "system_probs",
    "total_numb_batch",
]
