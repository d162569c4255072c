"""The filled-slots-only embedding equals embedding every slot (the dense path)."""
import pytest
import torch

from tests.model.test_physics import random_frame, small_model


@pytest.mark.parametrize("type_one_side", [False, True])
def test_sparse_embedding_equals_dense(type_one_side, monkeypatch):
    model = small_model(type_one_side)
    sea = model.atomic_model.descriptor.sea
    sea.mean.copy_(sea.mean[:, :1].expand_as(sea.mean))    # slot-constant, as statistics make them
    sea.stddev.copy_(sea.stddev[:, :1].expand_as(sea.stddev))
    assert sea.slot_constant_stats()
    sea.plan()
    assert sea.strategy in ("sparse", "fused")
    coord, atype, box = random_frame(natoms=14)
    coord = coord.clone().requires_grad_(True)
    sparse = model(coord, atype, box)
    monkeypatch.setattr(sea, "strategy", "dense")
    dense = model(coord, atype, box)
    for key in ("energy", "force", "virial"):
        torch.testing.assert_close(sparse[key], dense[key], rtol=1e-13, atol=1e-13)
