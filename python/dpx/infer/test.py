"""`dpx test`: per-system and weighted-average errors in DeePMD-kit's layout (deepmd-compat §14)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dpx.data import load_systems
from dpx.infer.evaluate import evaluate, system_parameters
from dpx.io import load_model

log = logging.getLogger(__name__)


def _mae_rmse(diff: np.ndarray) -> tuple[float, float]:
    return float(np.mean(np.abs(diff))), float(np.sqrt(np.mean(diff * diff)))


def system_errors(model, system, numb_test: int) -> tuple[dict, dict]:
    """({metric: (value, weight)}, predictions) of the first numb_test frames (0 = all)."""
    n = system.nframes if numb_test <= 0 else min(numb_test, system.nframes)
    params = {k: v[:n] for k, v in system_parameters(model, system, "--system").items()}
    pred = evaluate(model, system.coord[:n], system.atype, None if system.box is None
                    else system.box[:n], **params)
    natoms = system.natoms
    err = {}
    if system.find["energy"][:n].any():
        mae, rmse = _mae_rmse(pred["energy"] - system.labels["energy"][:n, 0])
        err.update({"Energy MAE": (mae, n), "Energy RMSE": (rmse, n),
                    "Energy MAE/Natoms": (mae / natoms, n), "Energy RMSE/Natoms": (rmse / natoms, n)})
    if system.find["force"][:n].any():
        mae, rmse = _mae_rmse(pred["force"] - system.labels["force"][:n])
        err.update({"Force  MAE": (mae, n * natoms * 3), "Force  RMSE": (rmse, n * natoms * 3)})
    if system.box is not None and system.find["virial"][:n].any():
        dv = pred["virial"] - system.labels["virial"][:n]
        mae, rmse = _mae_rmse(dv)
        err.update({"Virial MAE": (mae, n * 9), "Virial RMSE": (rmse, n * 9),
                    "Virial MAE/Natoms": (mae / natoms, n * 9),
                    "Virial RMSE/Natoms": (rmse / natoms, n * 9)})
        stress = _stress_errors(pred["virial"], system.labels["virial"][:n], system.box[:n])
        if stress is not None:
            err.update(stress)
    pred["n"] = n
    return err, pred


def _volume(box: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.det(box.reshape(-1, 3, 3)))


def _stress_errors(pred_virial, label_virial, box) -> dict | None:
    """Stress = -virial / volume (eV/A^3, tensile positive), frames with a singular cell
    dropped, as dp test does."""
    vol = _volume(box)
    ok = vol > 0
    if not ok.any():
        return None
    mae, rmse = _mae_rmse((pred_virial[ok] - label_virial[ok]) / -vol[ok, None])
    return {"Stress MAE": (mae, int(ok.sum()) * 9), "Stress RMSE": (rmse, int(ok.sum()) * 9)}


UNITS = {"Energy": "eV", "Force ": "eV/A", "Virial": "eV", "Stress": "eV/A^3"}


def _print(err: dict) -> None:
    for name, (value, _) in err.items():
        log.info("%-20s: %e %s", name, value, UNITS[name[:6]])


def weighted_average(all_errs: list[dict]) -> dict:
    """MAE: sum(mae w)/sum(w); RMSE: sqrt(sum(rmse^2 w)/sum(w)), w = element counts."""
    out = {}
    for name in {k for e in all_errs for k in e}:
        pairs = [e[name] for e in all_errs if name in e]
        w = sum(p[1] for p in pairs)
        if "RMSE" in name:
            out[name] = (float(np.sqrt(sum(v * v * n for v, n in pairs) / w)), w)
        else:
            out[name] = (sum(v * n for v, n in pairs) / w, w)
    order = [k for k in all_errs[0]] if all_errs else []
    return {k: out[k] for k in order + sorted(set(out) - set(order))}


def write_detail(prefix: str, system, pred: dict) -> None:
    n, natoms = pred["n"], system.natoms
    base = Path(prefix)
    rows = {
        ".e.out": (np.c_[system.labels["energy"][:n, 0], pred["energy"]], ": data_e pred_e"),
        ".e_peratom.out": (np.c_[system.labels["energy"][:n, 0], pred["energy"]] / natoms,
                           ": data_e pred_e"),
        ".f.out": (np.c_[system.labels["force"][:n].reshape(-1, 3), pred["force"].reshape(-1, 3)],
                   ": data_fx data_fy data_fz pred_fx pred_fy pred_fz"),
    }
    # the virial files for open boundaries too, as dp test writes them; stress needs a cell
    comps = [a + b for a in "xyz" for b in "xyz"]
    vhead = ": " + " ".join([f"data_v{c}" for c in comps] + [f"pred_v{c}" for c in comps])
    label_v = system.labels["virial"][:n]
    rows[".v.out"] = (np.c_[label_v, pred["virial"]], vhead)
    rows[".v_peratom.out"] = (rows[".v.out"][0] / natoms, vhead)
    if system.box is not None:
        vol = _volume(system.box[:n])[:, None]
        rows[".s.out"] = (np.c_[-label_v / vol, -pred["virial"] / vol],
                          " (eV/Å³)" + vhead.replace("_v", "_s"))
    for suffix, (arr, header) in rows.items():
        path = base.with_suffix(suffix)
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a") as f:
            np.savetxt(f, arr, header=f"{system.name}{header}" if new else "")


def run_test(model_path: str, system_path: str, numb_test: int, detail: str | None,
             branch: str | None) -> int:
    model, _ = load_model(model_path, branch)
    systems = load_systems(system_path, type_map=model.type_map, sort_atoms=False,
                           key="--system")
    all_errs = []
    for system in systems:
        log.info("# ---------------output of dpx test---------------")
        log.info("# testing system : %s", system.name)
        err, pred = system_errors(model, system, numb_test)
        log.info("# number of test data : %d", pred["n"])
        _print(err)
        all_errs.append(err)
        if detail:
            write_detail(detail, system, pred)
    log.info("# ----------weighted average of errors-----------")
    log.info("# number of systems : %d", len(systems))
    _print(weighted_average(all_errs))
    return 0
