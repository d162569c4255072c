"""Runs in the DeePMD-kit oracle venv, where dpgen2 is installed (tests/oracle/install_lammps.sh):
the real clients' code paths, called as a workflow would call them, without a workflow server.

  train       --job JOB.json --out OUT.json
      dpgen2's RunDPTrain().execute on the job's inputs (paths as strings; init_data a list or,
      for multi-task, a dict of lists); OUT.json: the returned script/model/lcurve/log paths.
  model-devi  --system DIR --out OUT.npy... --models MODEL... [--models MODEL...]
      deepmd.infer.model_devi.calc_model_devi of each set of frozen models on every frame of
      the system (set.000, atoms in type.raw order): the rows dpgen2's exploration step reads.
"""
import argparse
import json
from pathlib import Path

import numpy as np


def _paths(value):
    """A job value as dpgen2's artifacts: Path, list of Path or dict of lists of Path."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [Path(v) for v in value]
    return Path(value)


def train(job_file: str, out: str) -> None:
    from dflow.python import OPIO
    from dpgen2.op.run_dp_train import RunDPTrain
    job = json.loads(Path(job_file).read_text())
    ip = {"config": job["config"], "task_name": job["task_name"],
          "optional_parameter": job.get("optional_parameter",
                                        RunDPTrain.default_optional_parameter)}
    for key in ("task_path", "init_model", "init_data", "iter_data", "valid_data",
                "optional_files"):
        ip[key] = _paths(job.get(key))
    res = RunDPTrain().execute(OPIO(ip))
    Path(out).write_text(json.dumps({k: str(Path.cwd() / v) for k, v in res.items()}))


def model_devi(system: str, sets: list[list[str]], outs: list[str]) -> None:
    from deepmd.infer import DeepPot
    from deepmd.infer.model_devi import calc_model_devi
    sset = Path(system) / "set.000"
    coord, box = np.load(sset / "coord.npy"), np.load(sset / "box.npy")
    atype = np.loadtxt(Path(system) / "type.raw", dtype=int)
    for models, out in zip(sets, outs, strict=True):
        np.save(out, calc_model_devi(coord, box, atype, [DeepPot(m) for m in models]))


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--job", required=True)
    t.add_argument("--out", required=True)
    m = sub.add_parser("model-devi")
    m.add_argument("--system", required=True)
    m.add_argument("--out", required=True, nargs="+")
    m.add_argument("--models", required=True, nargs="+", action="append")
    a = p.parse_args()
    if a.command == "train":
        train(a.job, a.out)
    else:
        model_devi(a.system, a.models, a.out)


if __name__ == "__main__":
    main()
