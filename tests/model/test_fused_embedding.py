"""se_e2_a on the fused embedding op against the same model on PyTorch modules.

The same weights and statistics run once with ModelOptions.fused_embedding (the training
default: each embedding net and its reduction one op) and once without (the nets as modules,
G assembled and reduced by the unfused ops). Energies, forces and virials, and the gradient
of a force + energy loss by every weight, agree to 1e-10 for each option a user can set:
type_one_side both ways, exclude_types, resnet_dt, each implemented activation, float32,
trainable false; an activation the kernels lack takes the unfused path.
"""
import dataclasses

import pytest
import torch

from dpx import ops
from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.model import TRAINING, EnergyModel
from tests.model.test_physics import random_frame

pytestmark = pytest.mark.skipif(not ops.LOADED, reason="dpx op library not built")
UNFUSED = dataclasses.replace(TRAINING, fused_embedding=False)


def config(**descriptor):
    return parse(ModelConfig, {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [12, 24], "rcut": 4.0, "rcut_smth": 1.0,
                       "neuron": [4, 8, 16], "axis_neuron": 3, "seed": 2, **descriptor},
        "fitting_net": {"neuron": [8, 8], "seed": 2},
    }, "model")


def model_with_stats(cfg, options):
    model = EnergyModel(cfg, options)
    block = model.atomic_model.descriptor.sea
    with torch.no_grad():
        block.mean[..., 0] = torch.tensor([0.3, 0.2])[:, None]
        block.stddev[..., :] = torch.tensor([0.4, 0.6])[:, None, None]
    block.plan()  # statistics written by hand: choose the strategy again
    return model.train()


def run(model, coord, atype, box):
    """(energy, force, virial, gradient of the loss by every trainable weight)"""
    target = torch.randn(coord.shape, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    out = model(coord, atype, box)
    loss = ((out["force"] - target.to(out["force"])) ** 2).sum() + out["energy"].sum() ** 2
    params = [p for p in model.parameters() if p.requires_grad and p.numel()]
    grads = torch.autograd.grad(loss, params) if params else ()
    return [out["energy"], out["force"], out["virial"], *grads]


CASES = {
    "type_one_side": {"type_one_side": True},
    "pairs": {"type_one_side": False},
    "exclude_types": {"type_one_side": False, "exclude_types": [[0, 1]]},
    "resnet_dt": {"resnet_dt": True, "neuron": [4, 4, 8]},
    "gelu": {"activation_function": "gelu"},
    "softplus": {"activation_function": "softplus"},
    "sigmoid": {"activation_function": "sigmoid"},
    "relu": {"activation_function": "relu"},
    "linear": {"activation_function": "linear"},
    "float32": {"precision": "float32"},
    "frozen_descriptor": {"trainable": False},
}


def assert_fused_equals_unfused(case, fused_options=TRAINING, device="cpu"):
    """The model built with fused_options against the unfused one, same weights and frame."""
    cfg = config(**CASES[case])
    coord, atype, box = (x.to(device) for x in random_frame(natoms=16, box_len=6.0))
    fused = model_with_stats(cfg, fused_options).to(device)
    plain = model_with_stats(cfg, UNFUSED).to(device)
    plain.load_state_dict(fused.state_dict())
    assert fused.atomic_model.descriptor.sea.fused
    assert not plain.atomic_model.descriptor.sea.fused
    tol = 1e-5 if case == "float32" else 1e-10
    for a, b in zip(run(fused, coord, atype, box), run(plain, coord, atype, box)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(float(b.abs().max()), 1.0))
    return fused


@pytest.mark.parametrize("case", list(CASES))
def test_fused_equals_unfused(case):
    assert_fused_equals_unfused(case)


def test_unimplemented_activation_takes_the_unfused_path():
    model = model_with_stats(config(activation_function="silu"), TRAINING)
    assert not model.atomic_model.descriptor.sea.fused
    coord, atype, box = random_frame(natoms=8, box_len=6.0)
    assert torch.isfinite(model(coord, atype, box)["force"]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", ["type_one_side", "pairs", "resnet_dt", "float32"])
def test_fused_equals_unfused_on_cuda(case):
    """ModelOptions.fused_embedding_cuda: the op family's generic implementation on the GPU
    against the unfused nets on the GPU."""
    fused = assert_fused_equals_unfused(
        case, dataclasses.replace(TRAINING, fused_embedding_cuda=True), "cuda")
    assert fused.atomic_model.descriptor.sea.strategy == "fused"


@pytest.fixture
def generic_on_cpu():
    """dpx::se_a_embed_reduce* on the CPU replaced, for one test, by the generic code CUDA
    runs (dpx_generic::), so the model's whole fused path is checked with it here."""
    names = ["se_a_embed_reduce", "se_a_embed_reduce_grad_em", "se_a_embed_reduce_grad_params",
             "se_a_embed_reduce_grad_em_grad"]
    lib = torch.library.Library("dpx", "IMPL")
    calls = []
    def kernel_of(name):
        op = getattr(torch.ops.dpx_generic, name)

        def kernel(*args):
            calls.append(name)
            return op(*args)
        return kernel
    for name in names:
        lib.impl(name, kernel_of(name), "CPU")
    yield calls
    lib._destroy()


@pytest.mark.filterwarnings("ignore:.*(previously registered|Overriding a previously).*")
@pytest.mark.parametrize("case", ["type_one_side", "pairs", "resnet_dt"])
def test_generic_code_in_the_model_equals_unfused(case, generic_on_cpu):
    assert_fused_equals_unfused(case)
    assert {"se_a_embed_reduce", "se_a_embed_reduce_grad_em",
            "se_a_embed_reduce_grad_em_grad"} <= set(generic_on_cpu)
