"""`dpx show`: what a checkpoint or frozen model holds (branches, type map, descriptor and
fitting settings, parameter counts, training step), read from its stored model_params and
tensors without building a model."""
from __future__ import annotations

import json
import logging

import torch

from dpx.io import checkpoint, is_frozen, load_frozen, params

log = logging.getLogger(__name__)

# tensors that training updates; davg/dstd, out_bias and the like are statistics
_TRAINABLE = ("matrix", "bias", "idt")


def read(path) -> tuple[dict, dict[str, dict[str, torch.Tensor]], dict]:
    """(model_params, {branch: {key within the branch: tensor}}, train_infos)."""
    if is_frozen(path):
        module = load_frozen(path).module
        return json.loads(module.model_def_script), {params.DEFAULT: dict(module.state_dict())}, {}
    state = checkpoint.load(path)
    stored = params.model_params(state, path)
    tensors = {b: params.branch_tensors(state, b) for b in params.branches(stored)}
    infos = params.train_infos(state)
    if "next_step" in state.get("dpx", {}):  # dpx's count of steps taken
        infos["steps_taken"] = int(state["dpx"]["next_step"])
    return stored, tensors, infos


def count_parameters(tensors: dict[str, dict[str, torch.Tensor]]) -> tuple[int, dict[str, int]]:
    """(shared, {branch: own}) trainable elements. A checkpoint stores a shared tensor under
    every branch that links it, so a tensor whose key and values recur in another branch is
    counted once, as shared; parts trained apart never stay bit-identical."""
    shared, own = 0, {b: 0 for b in tensors}
    seen: dict[str, list[torch.Tensor]] = {}
    for branch, sd in tensors.items():
        mine: set[int] = set()
        for key, t in sd.items():
            # DeePMD-kit's layout names each net twice (`networks` and its alias `_networks`)
            if key.rsplit(".", 1)[-1] not in _TRAINABLE or t.data_ptr() in mine:
                continue
            mine.add(t.data_ptr())
            if any(u.shape == t.shape and torch.equal(u, t) for u in seen.get(key, [])):
                continue
            others = [s[key] for b, s in tensors.items() if b != branch and key in s]
            if any(u.shape == t.shape and torch.equal(u, t) for u in others):
                shared += t.numel()
            else:
                own[branch] += t.numel()
            seen.setdefault(key, []).append(t)
    return shared, own


def _settings(section: dict, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={json.dumps(section[k])}" for k in keys if k in section)


DESCRIPTOR_KEYS = ("type", "rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "type_one_side",
                   "resnet_dt", "activation_function", "precision", "exclude_types")
FITTING_KEYS = ("neuron", "resnet_dt", "activation_function", "precision", "numb_fparam",
                "numb_aparam", "atom_ener")


def run_show(path: str) -> int:
    stored, tensors, infos = read(path)
    branches = params.branches(stored)
    multi = params.is_multi_task(stored)
    kind = "multi-task" if multi else "single-task"
    log.info("%s: %s model%s", path, kind, " (frozen)" if is_frozen(path) else "")
    if kind == "multi-task":
        log.info("model branches: %s", ", ".join(branches))
    if infos:
        # train_infos.step is the 0-based index of the last step taken (DeePMD-kit's layout;
        # 0 also after no step at all); dpx checkpoints also count the steps taken
        steps = infos.get("steps_taken", int(infos.get("step", -1)) + 1)
        log.info("training step: %d (lr %.3e)", steps, float(infos.get("lr", 0.0)))
    shared, own = count_parameters(tensors)
    for name, p in branches.items():
        prefix = f"[{name}] " if multi else ""
        log.info("%stype_map: %s", prefix, " ".join(p.get("type_map", [])))
        log.info("%sdescriptor: %s", prefix, _settings(p.get("descriptor", {}), DESCRIPTOR_KEYS))
        log.info("%sfitting_net: %s", prefix, _settings(p.get("fitting_net", {}), FITTING_KEYS))
    if multi:
        log.info("parameters shared by several branches: %d", shared)
        for name, n in own.items():
            log.info("parameters of branch %s alone: %d (%d with the shared ones)", name, n,
                     n + shared)
    log.info("trainable parameters in all: %d", shared + sum(own.values()))
    return 0
