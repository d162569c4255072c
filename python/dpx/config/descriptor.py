"""Descriptor sections of the input, one dataclass per descriptor type, chosen by `type`.
Defaults are those DeePMD-kit's argument checker applies to `dp train` (deepmd-compat §3.1).

A new descriptor adds its class here (TYPES: the `type` values it answers to); defining a
subclass of DescriptorConfig registers it (dpx.plugin) as a choice of model/descriptor/type
(in the order defined: the first is the default). Its model class registers itself by naming
this class (dpx.model.descriptor).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dpx.config.schema import at_least, fail
from dpx.plugin import RegisteredSection

ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "gelu_tf", "silu",
               "linear", "none")
PRECISIONS = ("default", "float64", "float32")


def positive_ints(path, xs, what="neuron"):
    if not xs or any(x <= 0 for x in xs):
        fail(path, f"{what} must be a non-empty list of positive integers, got {xs}")


def check_activation(path, name):
    base = name.lower().split(":")[0]
    if base not in ACTIVATIONS and not base.startswith(("silut", "custom_silu")):
        fail(path, f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)}, silut[:thr])")


def check_axis_neuron(path, section) -> None:
    """axis_neuron columns of T are taken: at most neuron[-1]."""
    if not 1 <= section.axis_neuron <= section.neuron[-1]:
        fail(f"{path}/axis_neuron", f"must lie in [1, neuron[-1] = {section.neuron[-1]}], "
                                    f"got {section.axis_neuron}")


def check_precision(path, p):
    if p not in PRECISIONS:
        fail(path, f"precision must be one of {PRECISIONS}, got '{p}'")


@dataclass
class DescriptorConfig(RegisteredSection):
    """What every descriptor on the se_e2 environment matrix takes; each subclass sets `type`."""
    REGISTRY = {}
    type: str = ""
    sel: Union[list[int], str] = "auto"
    rcut: float = 6.0
    rcut_smth: float = 0.5
    neuron: list[int] = field(default_factory=lambda: [10, 20, 40])
    activation_function: str = "tanh"
    resnet_dt: bool = False
    precision: str = "default"
    trainable: bool = True
    seed: int | None = None
    exclude_types: list[list[int]] = field(default_factory=list)
    env_protection: float = 0.0
    set_davg_zero: bool = False
    # keys that fix the shapes of the weights (a finetune must keep them) and keys that change
    # the function but not the shapes (a finetune may change them, with a warning)
    SHAPE_KEYS = ("type", "neuron", "resnet_dt")
    FUNCTION_KEYS = ("rcut", "rcut_smth", "activation_function", "env_protection",
                     "set_davg_zero")
    # one distance-sorted list of any type (True) or one section of sel[t] slots per type
    MIXED_TYPES = False

    def check_types(self, path, ntypes: int) -> None:
        """What the section needs of the type map (ntypes elements)."""
        if isinstance(self.sel, list) and len(self.sel) != ntypes:
            fail(f"{path}/sel", f"must have one entry per type of type_map ({ntypes}), got "
                                f"{len(self.sel)}: {self.sel}")

    def sel_list(self) -> list[int]:
        """sel as the list the descriptor's get_sel() returns (resolved: not 'auto')."""
        if isinstance(self.sel, str):
            raise ValueError(f"sel '{self.sel}' is resolved from the training data before a "
                             f"model is built")
        return [self.sel] if isinstance(self.sel, int) else list(self.sel)

    def check(self, path):
        self.type = self.TYPES[0]
        if not self.rcut > 0:
            fail(f"{path}/rcut", f"must be > 0, got {self.rcut}")
        if not 0 <= self.rcut_smth < self.rcut:
            fail(f"{path}/rcut_smth", f"must satisfy 0 <= rcut_smth < rcut = {self.rcut}, "
                                      f"got {self.rcut_smth}")
        positive_ints(f"{path}/neuron", self.neuron)
        if isinstance(self.sel, str) and not (self.sel == "auto" or self.sel.startswith("auto:")):
            fail(f"{path}/sel", f"must be a list of integers, 'auto' or 'auto:factor', "
                                f"got '{self.sel}'")
        if isinstance(self.sel, list) and any(s < 0 for s in self.sel):
            fail(f"{path}/sel", f"entries must be >= 0, got {self.sel}")
        for i, pair in enumerate(self.exclude_types):
            if len(pair) != 2:
                fail(f"{path}/exclude_types/{i}", f"must be a pair of types, got {pair}")
        if self.env_protection < 0:
            fail(f"{path}/env_protection", f"must be >= 0, got {self.env_protection}")
        check_activation(f"{path}/activation_function", self.activation_function)
        check_precision(f"{path}/precision", self.precision)


@dataclass
class SeAConfig(DescriptorConfig):
    """se_e2_a (DeepPot-SE): radial and angular information; deepmd-compat §3.1."""
    type: str = "se_e2_a"
    axis_neuron: int = 4
    type_one_side: bool = False
    TYPES = ("se_e2_a", "se_a")
    ALIASES = {"n_axis_neuron": "axis_neuron"}
    SHAPE_KEYS = DescriptorConfig.SHAPE_KEYS + ("axis_neuron", "type_one_side")

    def check(self, path):
        super().check(path)
        check_axis_neuron(path, self)


@dataclass
class SeRConfig(DescriptorConfig):
    """se_e2_r: the radial part of se_e2_a only, one embedding net per neighbor type.
    `type_one_side` is accepted as DeePMD-kit accepts it; its PyTorch backend, whose numbers
    dpx matches, builds one net per neighbor type whatever the key says."""
    type: str = "se_e2_r"
    type_one_side: bool = False
    TYPES = ("se_e2_r", "se_r")


@dataclass
class _AttentionConfig(DescriptorConfig):
    """The keys DPA-1 (se_atten) and se_atten_v2 share (deepmd-dpa1 §1.1): one list of sel
    neighbors of any type (sel an integer; a list is summed), a learned type embedding of
    tebd_dim, attn_layer gated self-attention layers of width attn over the neighbors."""
    sel: Union[int, list[int], str] = "auto"
    axis_neuron: int = 4
    tebd_dim: int = 8
    type_one_side: bool = False
    attn: int = 128
    attn_layer: int = 2
    attn_dotr: bool = True
    attn_mask: bool = False
    scaling_factor: float = 1.0
    normalize: bool = True
    temperature: float | None = None
    concat_output_tebd: bool = True
    trainable_ln: bool = True
    ln_eps: float | None = None
    use_econf_tebd: bool = False
    use_tebd_bias: bool = False
    lmax: int = 1
    MIXED_TYPES = True
    ALIASES = {"n_axis_neuron": "axis_neuron"}
    SHAPE_KEYS = DescriptorConfig.SHAPE_KEYS + (
        "axis_neuron", "type_one_side", "tebd_dim", "tebd_input_mode", "attn", "attn_layer",
        "use_econf_tebd", "use_tebd_bias", "concat_output_tebd")
    FUNCTION_KEYS = DescriptorConfig.FUNCTION_KEYS + (
        "attn_dotr", "scaling_factor", "normalize", "temperature", "smooth_type_embedding",
        "ln_eps")

    def check_types(self, path, ntypes: int) -> None:
        pass  # one list for every type: sel is a total, not per type

    @property
    def eps(self) -> float:
        """The layer norms' epsilon: ln_eps, 1e-5 when null (DeePMD-kit's PyTorch default)."""
        return 1e-5 if self.ln_eps is None else self.ln_eps

    def check(self, path):
        super().check(path)
        if not isinstance(self.sel, str) and sum(self.sel_list()) < 1:
            fail(f"{path}/sel", f"must keep at least one neighbor (an integer >= 1, or a list "
                                f"whose sum is), got {self.sel}")
        at_least(path, self, ("tebd_dim", "attn"), 1)
        at_least(path, self, ("attn_layer",), 0)
        check_axis_neuron(path, self)
        if self.attn_mask:
            fail(f"{path}/attn_mask", "true is not implemented (DeePMD-kit's PyTorch backend "
                                      "refuses it too); remove it or set it to false")
        if self.lmax != 1:
            fail(f"{path}/lmax", f"dpx implements the standard DPA-1 moments (lmax 1); the "
                                 f"higher angular moments of DeePMD-kit's PyPI 3.2.0 wheel "
                                 f"(lmax 2-4) are not supported, got {self.lmax}")
        if self.ln_eps is not None and not self.ln_eps > 0:
            fail(f"{path}/ln_eps", f"must be > 0, got {self.ln_eps}")
        if self.scaling_factor <= 0 and self.temperature is None:
            fail(f"{path}/scaling_factor", f"must be > 0, got {self.scaling_factor}")


@dataclass
class DPA1Config(_AttentionConfig):
    """DPA-1 (`dpa1` / `se_atten`), deepmd-dpa1: the embedding net's input is the radial
    entry with the type embeddings (tebd_input_mode concat) or a separate net of the type
    embeddings gates it (strip); set_davg_zero defaults to true."""
    type: str = "se_atten"
    set_davg_zero: bool = True
    tebd_input_mode: str = "concat"
    smooth_type_embedding: bool = False
    stripped_type_embedding: bool | None = None
    TYPES = ("se_atten", "dpa1")
    ALIASES = {**_AttentionConfig.ALIASES, "smooth_type_embdding": "smooth_type_embedding"}

    def check(self, path):
        super().check(path)
        if self.stripped_type_embedding is not None:  # the deprecated name wins, as in DeePMD-kit
            self.tebd_input_mode = "strip" if self.stripped_type_embedding else "concat"
        if self.tebd_input_mode not in ("concat", "strip"):
            fail(f"{path}/tebd_input_mode", f"must be 'concat' or 'strip', got "
                                            f"'{self.tebd_input_mode}'")


@dataclass
class SeAttenV2Config(_AttentionConfig):
    """se_atten_v2: DPA-1 with the strip mode and the smooth type embedding fixed (their keys
    are not accepted, as in DeePMD-kit's input check); set_davg_zero defaults to false."""
    type: str = "se_atten_v2"
    TYPES = ("se_atten_v2",)
    tebd_input_mode = "strip"          # class attributes, not keys of the input
    smooth_type_embedding = True
