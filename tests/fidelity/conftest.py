"""DeePMD-kit 3.2.0 as the oracle, installed as users install it (tests/oracle/install_lammps.sh):
it runs in its own venv, called as a subprocess through tests/oracle/deepmd_runner.py; dpx's
venv never imports it."""
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "oracle" / "deepmd_runner.py"
# DeePMD-kit as users install it (deepmd-kit[torch,lmp] 3.2.0: torch 2.11, its op library,
# vesin-torch), the LAMMPS venv of tests/oracle/install_lammps.sh
ORACLE = Path(os.environ.get("DPX_DEEPMD_PYTHON", ROOT / ".venv-lammps" / "bin" / "python"))
QUIET = {"OMP_NUM_THREADS": "2", "DP_INTRA_OP_PARALLELISM_THREADS": "2",
         "DP_INTER_OP_PARALLELISM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}

SINGLE = {
    "model": {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [20, 40], "rcut_smth": 0.5, "rcut": 4.0,
                       "neuron": [4, 8, 16], "resnet_dt": False, "axis_neuron": 4,
                       "type_one_side": True, "seed": 1},
        "fitting_net": {"neuron": [16, 16], "resnet_dt": True, "seed": 1},
        "data_stat_nbatch": 20,
    },
    "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.001, "stop_lr": 3.51e-8},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
             "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0},
    "training": {
        "training_data": {"systems": ["SYS_A", "SYS_B"], "batch_size": 1},
        "validation_data": {"systems": ["SYS_B"], "batch_size": 1, "numb_btch": 1},
        "numb_steps": 3, "seed": 10, "disp_freq": 1, "save_freq": 3,
    },
}


def multi_input(data: Path) -> dict:
    single = single_input(data)
    desc = single["model"]["descriptor"]
    fit = single["model"]["fitting_net"]
    return {
        "model": {"shared_dict": {"type_map_all": ["O", "H"], "sea_descriptor_1": desc},
                  "model_dict": {
                      "water_1": {"type_map": "type_map_all", "descriptor": "sea_descriptor_1",
                                  "fitting_net": dict(fit, seed=1), "data_stat_nbatch": 20},
                      "water_2": {"type_map": "type_map_all", "descriptor": "sea_descriptor_1",
                                  "fitting_net": dict(fit, seed=2), "data_stat_nbatch": 20}}},
        "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.0002,
                          "decay_rate": 0.98, "stop_lr": 3.51e-8},
        "loss_dict": {"water_1": single["loss"], "water_2": single["loss"]},
        "training": {"model_prob": {"water_1": 0.5, "water_2": 0.5},
                     "data_dict": {"water_1": {k: single["training"][k]
                                               for k in ("training_data", "validation_data")},
                                   "water_2": {"training_data": {"systems": [str(data / "sys_b")],
                                                                 "batch_size": 1}}},
                     "numb_steps": 3, "seed": 10, "disp_freq": 1, "save_freq": 3},
    }


def single_input(data: Path) -> dict:
    cfg = copy.deepcopy(SINGLE)
    t = cfg["training"]
    t["training_data"]["systems"] = [str(data / "sys_a"), str(data / "sys_b")]
    t["validation_data"]["systems"] = [str(data / "sys_b")]
    return cfg


def _run(cmd, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env={**os.environ, **QUIET, **(env or {})},
                         text=True, capture_output=True)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n"
                             f"{res.stderr[-3000:]}")
    return res


def oracle(*args, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run([ORACLE, *args], cwd, env)


def dp(*args, cwd) -> subprocess.CompletedProcess:
    return _run([ORACLE.parent / "dp", *args], cwd)


@pytest.fixture(scope="session")
def oracle_python() -> Path:
    if not ORACLE.exists():
        pytest.skip(f"DeePMD-kit oracle venv not found at {ORACLE} "
                    f"(tests/oracle/install_lammps.sh makes it; CI does)")
    return ORACLE


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory, oracle_python) -> Path:
    out = tmp_path_factory.mktemp("toy")
    subprocess.run([sys.executable, str(RUNNER), "make-data", "--out", str(out)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="session")
def toy_data3(tmp_path_factory, oracle_python) -> Path:
    """Three elements (O, H, C): sys_a without C, sys_b without O, sys_c with all three."""
    out = tmp_path_factory.mktemp("toy3")
    subprocess.run([sys.executable, str(RUNNER), "make-data", "--out", str(out), "--types", "3"],
                   check=True, capture_output=True)
    return out


PARAMS = {"numb_fparam": 2, "numb_aparam": 1}


@pytest.fixture(scope="session")
def param_data(tmp_path_factory, toy_data):
    """The toy systems with fparam.npy [nf, 2] and aparam.npy [nf, natoms]."""
    out = tmp_path_factory.mktemp("param_toy")
    rng = np.random.default_rng(7)
    for name in ("sys_a", "sys_b"):
        shutil.copytree(toy_data / name, out / name)
        natoms = len((out / name / "type.raw").read_text().split())
        nf = len(np.load(out / name / "set.000" / "energy.npy"))
        np.save(out / name / "set.000" / "fparam.npy", rng.normal([1.0, -2.0], [0.3, 1.5],
                                                                  size=(nf, 2)))
        np.save(out / name / "set.000" / "aparam.npy", rng.normal(0.5, 2.0, size=(nf, natoms)))
    return out


class OracleBatch:
    """DeePMD-kit runs queued, then done in one oracle process (deepmd_runner.py batch): its
    start-up, about 12 s of the 14 s one evaluation takes on 2 cores, is paid once. One
    thread: on toy models two OpenMP threads on a busy 2-core machine wait on each other
    (DeepPot.eval of a 14-atom frame: 0.2-1.5 s with two, 0.02 s with one)."""
    ONE_THREAD = {"OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1"}

    def __init__(self, workdir: Path):
        self.workdir, self.jobs, self.outputs = workdir, [], 0

    def dp(self, *args, cwd: Path) -> None:
        """`dp <args>` in cwd."""
        self.jobs.append({"argv": ["dp", *map(str, args)], "cwd": str(cwd)})

    def eval(self, model: Path, system: Path, head: str | None = None,
             nlist_backend: str = "auto") -> Path:
        """DeepPot on a system, as deepmd_eval: the npz it will write."""
        self.outputs += 1
        out = self.workdir / f"eval_{self.outputs}.npz"
        argv = ["eval", "--model", model, "--system", system, "--out", out,
                "--nlist-backend", nlist_backend] + (["--head", head] if head else [])
        self.jobs.append({"argv": list(map(str, argv))})
        return out

    def run(self) -> None:
        oracle(RUNNER, "batch", "--jobs", write_json(self.workdir / "jobs.json", self.jobs),
               env=self.ONE_THREAD)
        self.jobs = []


def deepmd_eval(model: Path, system: Path, head: str | None = None,
                nlist_backend: str = "auto", evaluator: str = "eval",
                no_jit: bool = False) -> dict:
    """DeePMD-kit's DeepPot (evaluator "eval") or ASE calculator ("ase") on a system; its
    neighbor list is vesin's in a stock install (auto) or its own (native)."""
    out = model.parent / f"{evaluator}_{model.stem}_{head}_{system.name}_{nlist_backend}.npz"
    args = [evaluator, "--model", model, "--system", system, "--out", out,
            "--nlist-backend", nlist_backend] + (["--no-jit"] if no_jit else [])
    if head:
        args += ["--head", head]
    oracle(RUNNER, *args)
    return dict(np.load(out))


def checkpoint_tensors(path, keep_empty: bool = True) -> dict:
    """A checkpoint's tensors by state-dict key (DeePMD-kit's compression slots are size 0)."""
    import torch
    sd = torch.load(path, map_location="cpu", weights_only=False)["model"]
    return {k: v for k, v in sd.items() if k != "_extra_state" and (keep_empty or v.numel())}


def write_json(path: Path, cfg: dict) -> Path:
    path.write_text(json.dumps(cfg, indent=1))
    return path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every file a run writes stays in the test's folder."""
    monkeypatch.chdir(tmp_path)
