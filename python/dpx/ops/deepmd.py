"""DeePMD-kit's custom op names, so that its frozen and compressed files load here.

DeePMD-kit's se_e2_a, se_e2_r and se_atten (DPA-1, se_atten_v2) modules call their
compression ops (deepmd::tabulate_fusion_se_a, ...): a compressed file (`dp compress`) on
every evaluation,
an uncompressed one on a branch it never takes, but TorchScript resolves every op a file names
when it loads it. Where DeePMD-kit is installed and its op library loads, that library
provides them; elsewhere dpx defines them with DeePMD-kit's schemas: tabulate_fusion_se_a by
dpx's compiled kernel (dpx.ops.tabulate), _se_r and _se_atten by their PyTorch versions (all
twins in dpx.ops.reference, differentiable by autograd), the ops
of descriptors dpx does not implement by kernels that refuse to run. dpx defines them only
when a file needs them and DeePMD-kit's library is absent, so loading DeePMD-kit into the
same process later is not a double registration of a live library.
"""
from __future__ import annotations

import logging

import torch

from dpx.ops import reference, tabulate

# what stands in for each op dpx implements: the compiled kernel where dpx's op library has
# one, else the PyTorch twin (differentiable by autograd, so registered as composite)
IMPLEMENTED = {"tabulate_fusion_se_a": tabulate.tabulate_fusion_se_a,
               "tabulate_fusion_se_r": reference.tabulate_fusion_se_r,
               "tabulate_fusion_se_atten": reference.tabulate_fusion_se_atten}
# the DeePMD-kit descriptor parts (lower-case class names) whose compressed forward calls
# only those ops; DescrptDPA2 is not one: its three-body block calls _se_t_tebd
COMPRESSED_SUPPORTED = ("descrptsea", "descrptblocksea", "descrptser", "descrptdpa1",
                        "descrptseattenv2", "descrptblockseatten")

log = logging.getLogger(__name__)

# DeePMD-kit 3.2.0's op schemas, as its library declares them (positional arguments)
SCHEMAS = {
    "tabulate_fusion_se_a": "(Tensor table, Tensor table_info, Tensor em_x, Tensor em, "
                            "int last_layer_size) -> Tensor[]",
    "tabulate_fusion_se_r": "(Tensor table, Tensor table_info, Tensor em, "
                            "int last_layer_size) -> Tensor[]",
    "tabulate_fusion_se_t": "(Tensor table, Tensor table_info, Tensor em_x, Tensor em, "
                            "int last_layer_size) -> Tensor[]",
    "tabulate_fusion_se_t_tebd": "(Tensor table, Tensor table_info, Tensor em_x, Tensor em, "
                                 "int last_layer_size) -> Tensor[]",
    "tabulate_fusion_se_atten": "(Tensor table, Tensor table_info, Tensor em_x, Tensor em, "
                                "Tensor two_embed, int last_layer_size, bool is_sorted) "
                                "-> Tensor[]",
}
_LIBRARY = None  # the stub library, kept alive while the process runs
STUBBED = False


def _present() -> bool:
    try:
        torch.ops.deepmd.tabulate_fusion_se_a  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


def _refuse(*args, **kwargs):
    raise RuntimeError("this compressed DeePMD-kit model's descriptor needs DeePMD-kit's op "
                       "library, which is not installed here (dpx evaluates compressed "
                       "se_e2_a, se_e2_r and se_atten (DPA-1, se_atten_v2) files); evaluate "
                       "the frozen file from before `dp compress`, or its checkpoint")


def ensure() -> None:
    """Make deepmd::tabulate_fusion_* resolvable (DeePMD-kit's library, or dpx's)."""
    global _LIBRARY, STUBBED
    if _present():
        return
    try:  # DeePMD-kit's own library, when it is installed for this torch
        import deepmd.pt.cxx_op  # noqa: F401
    except Exception:  # absent, or built for another torch
        pass
    if _present():
        return
    _LIBRARY = torch.library.Library("deepmd", "FRAGMENT")
    for name, schema in SCHEMAS.items():
        _LIBRARY.define(name + schema)
        if name in IMPLEMENTED:  # autograd differentiates what they are made of
            _LIBRARY.impl(name, IMPLEMENTED[name], "CompositeImplicitAutograd")
        else:
            _LIBRARY.impl(name, _refuse, "CompositeExplicitAutograd")
    STUBBED = True
    log.debug("DeePMD-kit's op library is not installed: dpx's tabulate ops stand in")


def unsupported_compression(module) -> str | None:
    """The descriptor type of a compressed DeePMD-kit frozen model (`dp compress`) whose ops
    dpx does not implement, or None (not compressed, or every compressed part of its
    descriptor one of COMPRESSED_SUPPORTED). A part is compressed when its `compress` flag
    (se_e2_a, se_e2_r, se_e3, ...) or its `geo_compress` one (DPA-1's, the table of the
    radial net; `tebd_compress` needs no op) is set."""
    descriptor = getattr(getattr(module, "atomic_model", None), "descriptor", None)
    if descriptor is None:
        return None
    parts = descriptor.modules() if hasattr(descriptor, "modules") else [descriptor]
    for part in parts:
        if bool(getattr(part, "compress", False)) or bool(getattr(part, "geo_compress", False)):
            # DeePMD-kit's class: DescrptSeA, DescrptBlockSeAtten, ...
            kind = str(getattr(part, "original_name", type(part).__name__)).lower()
            if kind not in COMPRESSED_SUPPORTED:
                return str(getattr(descriptor, "original_name",
                                   type(descriptor).__name__)).lower()
    return None
