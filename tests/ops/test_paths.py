"""Which code runs on a GPU (dpx.ops.paths) and `dpx check` (dpx.ops.selfcheck), without a GPU.

The selection is a pure function of the device kind, the record and DPX_CUDA_KERNELS, so its
rule is tested here; the record's invalidation (another torch, driver, dpx build: never
trusted) too. The generic path itself, what a GPU runs until `dpx check` passed its kernels,
is run here on the CPU by giving the CPU a simulated "nothing passed" selection: the model's
energy, forces, virial and force-loss weight gradient must equal the kernels' path. The
check's child process must report a crashing kernel as a failure, not die with it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from dpx.cli.check import write_record
from dpx.model import TRAINING, EnergyModel
from dpx.ops import paths, selfcheck
from tests.model.test_backends import config, with_stats
from tests.model.test_physics import random_frame

needs_library = pytest.mark.skipif(not paths._library.LOADED, reason="dpx op library not built")
KEY = {"gpu": "NVIDIA H100 80GB HBM3", "driver": 13000, "torch": "2.11.0", "torch_cuda": "13.0",
       "dpx": "0.1.0", "library": "abc", "host_arch": "x86_64", "record_version": 1}
ALL = list(paths.FAMILIES)


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "_CACHE", {})
    monkeypatch.setenv("DPX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(paths.ENV, raising=False)


def record(**passed) -> dict:
    return {"families": {f: {"passed": ok} for f, ok in passed.items()}}


# ---------------------------------------------------------------- the rule
def test_cpu_always_runs_the_kernels():
    assert paths.select("cpu", None, None) == dict.fromkeys(ALL, True)
    assert paths.select("cpu", None, "0") == dict.fromkeys(ALL, True)


def test_gpu_without_a_record_runs_the_generic_code():
    assert paths.select("cuda", None, None) == dict.fromkeys(ALL, False)
    assert paths.select("mps", record(env_mat=True), "1") == dict.fromkeys(ALL, False)


def test_gpu_runs_exactly_the_kernels_that_passed():
    got = paths.select("cuda", record(neighbor_list=True, env_mat=False, se_a="yes"), None)
    assert got == {"neighbor_list": True, "env_mat": False, "se_a": False, "se_a_embed": False}


def test_override_forces_either_way():
    assert paths.select("cuda", None, "1") == dict.fromkeys(ALL, True)
    assert paths.select("cuda", record(**dict.fromkeys(ALL, True)), "0") == dict.fromkeys(ALL, False)


# ---------------------------------------------------------------- the record
def test_record_round_trip_and_stale_keys(tmp_path):
    path = tmp_path / "r.json"
    other = dict(KEY, gpu="NVIDIA A100")
    write_record(path, other, {"se_a": {"passed": True}}, "2026-12-01")
    write_record(path, KEY, {"se_a": {"passed": True}}, "2026-12-05")
    records, why = paths.read_records(path)
    assert why is None and len(records) == 2
    found, line = paths.find_record(records, KEY)
    assert found["families"] == {"se_a": {"passed": True}} and "2026-12-05" in line
    for change in ({"torch": "2.12.0"}, {"driver": 13010}, {"dpx": "0.2.0"},
                   {"library": "def"}):
        found, line = paths.find_record(records, dict(KEY, **change))
        name, value = next(iter(change.items()))
        assert found is None and "stale" in line and f"{name} {KEY[name]} -> {value}" in line
    found, line = paths.find_record(records, dict(KEY, gpu="NVIDIA H200"))
    assert found is None and "no dpx check record for NVIDIA H200" in line
    # a new check of a GPU replaces its stale record and keeps the other GPU's
    write_record(path, dict(KEY, torch="2.12.0"), {}, "2026-12-06")
    assert [r["key"]["gpu"] for r in paths.read_records(path)[0]] == ["NVIDIA A100", KEY["gpu"]]


@pytest.mark.parametrize("text", ["", "{", "[]", '{"records": 3}', '{"records": [1]}'])
def test_unreadable_record_is_never_trusted(tmp_path, text):
    path = tmp_path / "r.json"
    path.write_text(text)
    records, why = paths.read_records(path)
    assert records == [] and str(path) in why and "dpx check" in why


def test_resolve_reads_the_record_of_the_simulated_gpu(monkeypatch):
    monkeypatch.setattr(paths._library, "LOADED", True)
    monkeypatch.setattr(paths, "device_key", lambda index: KEY)
    gpu = torch.device("cuda:0")
    assert paths.resolve(gpu)[0] == dict.fromkeys(ALL, False)
    assert "no dpx check record" in paths.describe(gpu)
    write_record(paths.record_path(), KEY,
                       {"env_mat": {"passed": True}, "se_a": {"passed": False}}, "today")
    monkeypatch.setattr(paths, "_CACHE", {})
    assert paths.kernel(gpu, "env_mat") and not paths.kernel(gpu, "se_a")
    line = paths.describe(gpu)
    assert "env_mat kernel" in line and "se_a generic" in line and "DPX_CUDA_KERNELS" in line
    monkeypatch.setattr(paths, "device_key", lambda index: dict(KEY, torch="9.9"))
    monkeypatch.setattr(paths, "_CACHE", {})
    assert not paths.kernel(gpu, "env_mat") and "stale" in paths.describe(gpu)


def test_bad_override_is_named(monkeypatch):
    monkeypatch.setenv(paths.ENV, "yes")
    with pytest.raises(ValueError, match="DPX_CUDA_KERNELS must be 0 or 1, got 'yes'"):
        paths.resolve(torch.device("cuda:0"))


# ---------------------------------------------------------------- the generic path
def _outputs(model, coord, atype, box, target):
    out = model(coord, atype, box)
    loss = ((out["force"] - target) ** 2).sum() + out["energy"].sum() ** 2
    params = [p for p in model.parameters() if p.requires_grad and p.numel()]
    return [out["energy"], out["force"], out["virial"], *torch.autograd.grad(loss, params)]


@needs_library
@pytest.mark.parametrize("descriptor", ["se_e2_a", "se_e2_r"])
def test_generic_path_equals_the_kernels(descriptor, monkeypatch):
    """What a GPU runs by default (nothing checked), run here on the CPU: the same energy,
    forces, virial and force-loss weight gradient as the kernels' path."""
    coord, atype, box = random_frame(natoms=14, box_len=6.0)
    target = torch.randn(1, 14, 3, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    results, strategies = [], []
    for selection in (dict.fromkeys(ALL, True), dict.fromkeys(ALL, False)):
        monkeypatch.setattr(paths, "_CACHE", {"cpu": (selection, "simulated")})
        model = with_stats(EnergyModel(config(descriptor), TRAINING)).train()
        strategies.append(getattr(model.atomic_model.descriptor, "sea", None))
        strategies[-1] = getattr(strategies[-1], "strategy", None)
        results.append(_outputs(model, coord, atype, box, target))
    if descriptor == "se_e2_a":  # the fused family is not used where it has not passed
        assert strategies == ["fused", "sparse"]
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_library
def test_generic_path_calls_no_kernel(monkeypatch):
    """With nothing passed, a model step reaches none of the compiled ops."""
    monkeypatch.setattr(paths, "_CACHE", {"cpu": (dict.fromkeys(ALL, False), "simulated")})
    called = []
    lib = torch.library.Library("dpx", "IMPL")
    for name in ("neighbor_list", "env_mat_se_a", "env_mat_se_a_vjp", "se_a_reduce",
                 "se_a_gram", "se_a_embed_reduce"):
        lib.impl(name, lambda *a, _n=name: called.append(_n) or (_ for _ in ()).throw(
            RuntimeError(f"kernel {_n} called")), "CPU")
    try:
        model = with_stats(EnergyModel(config(), TRAINING))
        coord, atype, box = random_frame(natoms=10, box_len=6.0)
        out = model(coord, atype, box)
        assert torch.isfinite(out["force"]).all() and called == []
    finally:
        lib._destroy()


# ---------------------------------------------------------------- the check
@needs_library
def test_check_passes_the_cpu_kernels():
    rows = selfcheck.run("cpu", ALL)
    assert {r.family for r in rows} == set(ALL)
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    # every op of the library, both precisions
    ops = {r.op.split(" ")[0] for r in rows}
    assert {"env_mat_se_a_hvp", "se_a_gram_grad_b", "se_a_embed_reduce_grad_em_grad",
            "neighbor_list"} <= ops
    assert {r.dtype for r in rows} == {"float32", "float64"}


FAKE = '''
import os
import torch
from dpx.ops import selfcheck

def crash(device, dtype, gen):
    os.abort()

def wrong(device, dtype, gen):
    x = torch.ones(3, dtype=dtype)
    return [selfcheck.compare("wrong", "add_one", lambda t: t + 1e-3, lambda t: t, (x,),
                              dtype, device)]

def raises(device, dtype, gen):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")

CASES = {"crash": crash, "wrong": wrong, "raises": raises}
'''


def test_check_reports_a_crashing_kernel_as_a_failure(tmp_path):
    (tmp_path / "fake_kernels.py").write_text(textwrap.dedent(FAKE))
    rows = selfcheck.run("cpu", ["crash", "wrong", "raises"], module="fake_kernels",
                         pythonpath=[str(tmp_path)])
    by = {r.family: r for r in rows}
    assert not by["crash"].passed and "SIGABRT" in by["crash"].note
    assert not by["wrong"].passed and by["wrong"].error == pytest.approx(1e-3)
    assert not by["raises"].passed and "illegal memory access" in by["raises"].note


def test_check_without_a_gpu_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    proc = subprocess.run([sys.executable, "-m", "dpx.cli.main", "check"], capture_output=True,
                          text=True, env={**__import__("os").environ,
                                          "CUDA_VISIBLE_DEVICES": ""})
    if not paths._library.LOADED:
        assert proc.returncode == 2 and "not loaded" in proc.stderr
        return
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "no CUDA device" in lines[0], proc


def test_record_written_by_the_cli_format():
    """write_record's file (the CLI's) is what read_records reads."""
    path = paths.record_path()
    write_record(path, KEY, {"se_a": {"passed": True, "max_error": 1e-16}}, "now")
    assert json.loads(path.read_text())["records"][0]["key"] == KEY
