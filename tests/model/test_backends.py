"""The one model on its two backends: dpx's ops (training) and the pure-PyTorch twins (the
frozen file). Both build the same modules, script under TorchScript, and give the same
numbers; the training options (forces constant in the coordinates when differentiated
again) keep the force-loss weight gradient."""
import pytest
import torch

from dpx import ops
from dpx.config import ModelConfig
from dpx.config.schema import parse
from dpx.model import EXPORT, TRAINING, EnergyModel, ModelOptions
from dpx.model.backend import OpsBackend, ReferenceBackend
from tests.model.test_physics import random_frame

needs_library = pytest.mark.skipif(not ops.LOADED, reason="dpx op library not built")


def config(descriptor="se_e2_a"):
    extra = {"axis_neuron": 3} if descriptor == "se_e2_a" else {}
    return parse(ModelConfig, {
        "type_map": ["O", "H"],
        "descriptor": {"type": descriptor, "sel": [12, 24], "rcut": 4.0, "rcut_smth": 1.0,
                       "neuron": [4, 8], "seed": 2, **extra},
        "fitting_net": {"neuron": [8, 8], "seed": 2},
    }, "model")


def with_stats(model):
    d = model.atomic_model.descriptor
    block = getattr(d, "sea", d)
    with torch.no_grad():
        block.mean[..., 0] = torch.tensor([0.3, 0.2])[:, None]
        block.stddev[..., :] = torch.tensor([0.4, 0.6])[:, None, None]
    d.plan()  # statistics written by hand: choose the strategy again
    return model


@needs_library
@pytest.mark.parametrize("descriptor", ["se_e2_a", "se_e2_r"])
def test_atomic_model_scripts_on_either_backend(descriptor):
    coord, atype, box = random_frame(natoms=16, box_len=6.0)
    nl = ops.neighbor_list(coord, atype, box, 4.0, [12, 24])
    outs = []
    for options in (TRAINING, EXPORT):
        model = with_stats(EnergyModel(config(descriptor), options))
        backend = model.atomic_model.descriptor.get_submodule(
            "sea.backend" if descriptor == "se_e2_a" else "backend")
        assert isinstance(backend, OpsBackend if options is TRAINING else ReferenceBackend)
        scripted = torch.jit.script(model.atomic_model)
        eager = model.atomic_model(nl.ext_coord, nl.ext_atype, nl.nlist, atype)
        got = scripted(nl.ext_coord, nl.ext_atype, nl.nlist, atype)
        torch.testing.assert_close(got, eager, rtol=1e-12, atol=1e-12)
        outs.append(got)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)


@needs_library
def test_training_options_keep_the_force_loss_gradient():
    """Same weights, TRAINING vs the default options (forces with their full graph): the
    gradient of a force loss by every weight agrees."""
    coord, atype, box = random_frame(natoms=12, box_len=6.0)
    target = torch.randn(1, 12, 3, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    grads = []
    for options in (TRAINING, ModelOptions()):
        model = with_stats(EnergyModel(config(), options)).train()
        out = model(coord, atype, box)
        loss = ((out["force"] - target) ** 2).sum() + out["energy"].sum() ** 2
        params = [p for p in model.parameters() if p.requires_grad and p.numel()]
        grads.append(torch.autograd.grad(loss, params))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
