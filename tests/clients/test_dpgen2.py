"""dpgen2's training step with dpx as its command (issue 27): `RunDPTrain().execute`, the code
a dpgen2 workflow runs in its training pods, run by tests/clients/dpgen2_driver.py in the oracle
venv (dpgen2 0.1.0 installed there --no-deps by tests/oracle/install_lammps.sh). dpgen2 writes
the input (its systems, auto_prob, start_lr, numb_steps), puts `--pt` after the command and
chooses between a fresh run, `--restart model.ckpt-N.pt` and `--init-model`: each case fails
when dpx refuses the line dpgen2 builds (before issue 27, `--pt` alone gave rc 2 and dpgen2's
FatalError), or when the run does not end where dpgen2 expects its files."""
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dpx
from tests.fidelity.conftest import (
    ORACLE,
    OracleBatch,
    _run,
    multi_input,
    oracle,
    single_input,
    write_json,
)

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("dpgen2_driver.py")
STEPS = 2


@pytest.fixture(scope="module")
def dpgen2(oracle_python) -> Path:
    res = subprocess.run([str(oracle_python), "-c", "import dpgen2.op.run_dp_train"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"dpgen2 is not installed in the oracle venv {oracle_python} "
                    f"(tests/oracle/install_lammps.sh installs it): {res.stderr[-300:]}")
    return oracle_python


@pytest.fixture(scope="module")
def work(tmp_path_factory, dpgen2, toy_data) -> Path:
    """The folder dpgen2 runs in, with a `dpx` that runs this tree's dpx under pytest's
    python (dpgen2 splits "command" and runs it without a shell)."""
    out = tmp_path_factory.mktemp("dpgen2")
    wrapper = out / "dpx"
    package = shlex.quote(str(Path(dpx.__file__).parents[1]))
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={package}${{PYTHONPATH:+:$PYTHONPATH}} "
                       f"exec {shlex.quote(sys.executable)} -m dpx.cli.main \"$@\"\n")
    wrapper.chmod(0o755)
    return out


def config(work: Path, **extra) -> dict:
    return {"command": str(work / "dpx"), "impl": "pytorch", **extra}


def template(work: Path, name: str, cfg: dict) -> Path:
    """PrepDPTrain's task folder: the input dpgen2 fills in."""
    task = work / f"prep_{name}"
    task.mkdir()
    write_json(task / "input.json", cfg)
    return task


def iter_data(work: Path, name: str, system: Path) -> Path:
    """An iteration's data as dpgen2 collects it: a folder of systems."""
    out = work / "iter" / name
    out.mkdir(parents=True)
    shutil.copytree(system, out / system.name)
    return out


def run_train(work: Path, name: str, **job) -> dict:
    """RunDPTrain().execute in task folder `name`: its outputs (script, model, lcurve, log)."""
    job = {"task_name": name, **job}
    out = work / f"{name}.out.json"
    oracle(DRIVER, "train", "--job", write_json(work / f"{name}.job.json", job), "--out", out,
           cwd=work)
    return {k: Path(v) for k, v in json.loads(out.read_text()).items()}


def small(toy_data: Path, steps: int = STEPS) -> dict:
    cfg = single_input(toy_data)
    cfg["training"].update(numb_steps=steps, save_freq=steps)
    return cfg


def last_step(lcurve: Path) -> int:
    return int(lcurve.read_text().split("\n")[-2].split()[0])


@pytest.fixture(scope="module")
def fresh(work, toy_data) -> dict:
    return run_train(work, "task.0000", config=config(work),
                     task_path=str(template(work, "fresh", small(toy_data))),
                     init_data=[str(toy_data / "sys_a")],
                     iter_data=[str(iter_data(work, "fresh", toy_data / "sys_b"))])


def test_fresh_training(fresh):
    """dpgen2 runs `dpx --pt train input.json` and returns model.ckpt.pt and lcurve.out."""
    assert fresh["model"].name == "model.ckpt.pt" and fresh["model"].exists()
    assert last_step(fresh["lcurve"]) == STEPS
    script = json.loads(fresh["script"].read_text())
    assert len(script["training"]["training_data"]["systems"]) == 2
    assert fresh["log"].name == "train.log" and "step 2/2" in fresh["log"].read_text()


@pytest.fixture(scope="module")
def restarted(work, toy_data, fresh) -> dict:
    """A task folder that holds a numbered checkpoint: dpgen2 passes --restart."""
    task = work / "task.0001"
    task.mkdir()
    shutil.copy(fresh["model"].with_name(f"model.ckpt-{STEPS}.pt"), task)
    return run_train(work, task.name, config=config(work),
                     task_path=str(template(work, "restart", small(toy_data, 2 * STEPS))),
                     init_data=[str(toy_data / "sys_a")],
                     iter_data=[str(iter_data(work, "restart", toy_data / "sys_b"))])


def test_restart_resumes_to_numb_steps(restarted):
    assert f"restarting from step {STEPS}" in restarted["log"].read_text()
    steps = [int(r.split()[0]) for r in restarted["lcurve"].read_text().splitlines()
             if r.strip() and not r.startswith("#")]
    assert steps[0] > STEPS and steps[-1] == 2 * STEPS
    assert restarted["model"].with_name(f"model.ckpt-{2 * STEPS}.pt").exists()


OLD_RATIO = 0.6


@pytest.fixture(scope="module")
def initialized(work, toy_data, fresh) -> dict:
    """init_model with two iterations of data: dpgen2 passes --init-model and writes
    auto_prob "prob_sys_size; 0:2:0.6; 2:3:0.4" (init data and the old iteration against the
    newest)."""
    cfg = config(work, init_model_policy="yes", init_model_old_ratio=OLD_RATIO,
                 init_model_numb_steps=STEPS, init_model_start_lr=2e-4)
    return run_train(work, "task.0002", config=cfg, init_model=str(fresh["model"]),
                     task_path=str(template(work, "init", small(toy_data, 100))),
                     init_data=[str(toy_data / "sys_a")],
                     iter_data=[str(iter_data(work, "init_0", toy_data / "sys_b")),
                                str(iter_data(work, "init_1", toy_data / "sys_a"))])


def system_probs(log: Path) -> list[float]:
    """The prob column of dpx's first system table (training_data)."""
    text = log.read_text().split("training/training_data:", 1)[1].split("#====")[0]
    table = text.split(" prob pbc\n", 1)[1].split("INFO training", 1)[0]
    return [float(m) for m in re.findall(r" (\S+) +[TF]\n", table)]


def test_init_model_takes_auto_prob(initialized):
    """Within a block prob_sys_size weighs systems by batches (10 each): 0.3 0.3 0.4, where a
    dropped auto_prob would give 1/3 each."""
    script = json.loads(initialized["script"].read_text())
    assert script["training"]["training_data"]["auto_prob"] == \
        f"prob_sys_size; 0:2:{OLD_RATIO}; 2:3:{1 - OLD_RATIO:g}"
    assert system_probs(initialized["log"]) == pytest.approx([0.3, 0.3, 0.4], abs=1e-3)
    assert last_step(initialized["lcurve"]) == STEPS  # init_model_numb_steps, not the 100


@pytest.fixture(scope="module")
def multitask(work, toy_data) -> dict:
    """Multi-task with head water_1: dpgen2 gives the head the iteration data."""
    cfg = multi_input(toy_data)
    cfg["training"].update(numb_steps=STEPS, save_freq=STEPS)
    return run_train(work, "task.0003", config=config(work, multitask=True, head="water_1"),
                     task_path=str(template(work, "multi", cfg)),
                     init_data={"water_1": [str(toy_data / "sys_a")],
                                "water_2": [str(toy_data / "sys_b")]},
                     iter_data=[str(iter_data(work, "multi", toy_data / "sys_b"))])


def test_multitask_head_trains(multitask):
    script = json.loads(multitask["script"].read_text())["training"]["data_dict"]
    assert len(script["water_1"]["training_data"]["systems"]) == 2
    assert len(script["water_2"]["training_data"]["systems"]) == 1
    assert multitask["model"].exists() and last_step(multitask["lcurve"]) == STEPS


def freeze_both(work: Path, models: list[tuple[Path, str | None]]) -> tuple[list, list]:
    """dpgen2's run_lmp freeze (`dp --pt freeze -c CKPT -o OUT [--head H]`, in one oracle
    process: its start-up is most of a freeze) and dpx's of the same checkpoints."""
    from dpx.cli.main import main
    batch, theirs, ours = OracleBatch(work), [], []
    for i, (ckpt, head) in enumerate(models):
        extra = ["--head", head] if head else []
        theirs.append(work / f"dp_{i}.pth")
        ours.append(work / f"dpx_{i}.pth")
        batch.dp("--pt", "freeze", "-c", ckpt, "-o", theirs[-1], *extra, cwd=work)
        assert main(["--pt", "freeze", "-c", str(ckpt), "-o", str(ours[-1]), *extra]) == 0
    batch.run()
    return theirs, ours


def deepmd_devi(work: Path, sets: list[list[Path]], system: Path) -> list[np.ndarray]:
    """calc_model_devi of each set of models, in one oracle process (one thread: see
    OracleBatch)."""
    outs = [work / f"devi_{i}.npy" for i in range(len(sets))]
    oracle(DRIVER, "model-devi", "--system", system, "--out", *outs,
           *[a for models in sets for a in ("--models", *models)], cwd=work,
           env=OracleBatch.ONE_THREAD)
    return [np.load(out) for out in outs]


LAMMPS_DEVI = """\
units metal
boundary p p p
atom_style atomic
read_data frame.lmp
pair_style deepmd {models} out_freq 1 out_file model_devi.out
pair_coeff * *
run 0
"""


def lammps_devi(work: Path, models: list[Path], system: Path) -> np.ndarray:
    """model_devi.out's row of frame 0 of the system (`pair_style deepmd m1 ... m4`, as
    dpgen2's run_lmp writes it): step, max/min/avg virial, max/min/avg force."""
    from dpx.data.lammps import write_lammps_data
    write_lammps_data(work / "frame.lmp", system, ["O", "H"])
    (work / "in.lmp").write_text(LAMMPS_DEVI.format(models=" ".join(map(str, models))))
    _run([ORACLE.parent / "lmp", "-in", "in.lmp", "-log", "none"], work,
         env=OracleBatch.ONE_THREAD)
    return np.loadtxt(work / "model_devi.out", ndmin=2)[0]


def dpx_devi(models: list[Path], system: Path) -> np.ndarray:
    """calc_model_devi's columns (step, max/min/avg virial, max/min/avg force, energy) from
    dpx's evaluation of each model: std over models, per atom divided by natoms as DeePMD-kit."""
    from dpx.data import load_systems
    from dpx.infer.evaluate import evaluate
    from dpx.io import load_model
    runs = []
    for path in models:
        model, _ = load_model(path)
        (sys_,) = load_systems(str(system), type_map=model.type_map, sort_atoms=False)
        runs.append(evaluate(model, sys_.coord, sys_.atype, sys_.box))
    natoms = runs[0]["force"].shape[1]
    v = np.std([r["virial"] / natoms for r in runs], axis=0)
    f = np.linalg.norm(np.std([r["force"] for r in runs], axis=0), axis=-1)
    e = np.std([r["energy"] / natoms for r in runs], axis=0)
    return np.column_stack([np.arange(len(e)), v.max(-1), v.min(-1),
                            np.linalg.norm(v, axis=-1) / 3, f.max(-1), f.min(-1), f.mean(-1), e])


def test_exploration_freeze_and_model_deviation(work, toy_data, fresh, restarted, initialized,
                                                multitask):
    """dpgen2's exploration step on the four models the training steps made, frozen by
    DeePMD-kit and by dpx: DeePMD-kit's model deviation of either set equals the one dpx's
    evaluation of DeePMD-kit's files gives (dpx on its own frozen files: tests/export; each
    load of a frozen file costs seconds here), and so does LAMMPS' model_devi.out of dpx's
    files (printed to 7 digits)."""
    models = [(fresh["model"], None), (restarted["model"], None),
              (initialized["model"], None), (multitask["model"], "water_1")]
    theirs, ours = freeze_both(work, models)
    system = toy_data / "sys_b"
    expected = dpx_devi(theirs, system)
    assert expected[:, 4].min() > 0  # four different models
    for devi in deepmd_devi(work, [theirs, ours], system):
        np.testing.assert_allclose(devi, expected, rtol=0, atol=1e-10)
    if (ORACLE.parent / "lmp").exists():  # the oracle venv of install_lammps.sh has it
        np.testing.assert_allclose(lammps_devi(work, ours, system), expected[0, :7],
                                   rtol=1e-6, atol=1e-12)
