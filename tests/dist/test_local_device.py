"""Under torchrun each rank trains on the GPU of its local rank (every rank on cuda:0 would
share one GPU's memory, and NCCL refuses two ranks on one device)."""
import pytest
import torch

from dpx.train.dist import local_device


def test_each_rank_takes_its_local_gpu():
    assert local_device(torch.device("cuda"), 0, 4) == torch.device("cuda", 0)
    assert local_device(torch.device("cuda"), 3, 4) == torch.device("cuda", 3)


def test_a_device_the_user_named_is_kept():
    assert local_device(torch.device("cuda:2"), 0, 4) == torch.device("cuda", 2)
    assert local_device(torch.device("cpu"), 3, 0) == torch.device("cpu")


def test_more_ranks_than_gpus_is_named():
    with pytest.raises(ValueError, match="LOCAL_RANK 2 but 2 CUDA device"):
        local_device(torch.device("cuda"), 2, 2)
