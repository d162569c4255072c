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


ATTRIBUTES = ("model-branch", "type-map", "descriptor", "fitting-net", "size",
              "observed-type")
# element symbols by atomic number, for DeePMD-kit's order of observed types
ELEMENTS = ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
            "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
            "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn "
            "Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl "
            "Mc Lv Ts Og").split()


def _by_element(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (ELEMENTS.index(n) if n in ELEMENTS else len(ELEMENTS), n))


def show_attributes(path: str, attributes: list[str]) -> int:
    """`dp show FILE ATTR...`: the named attributes, in DeePMD-kit's words."""
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"dpx show: unknown attribute(s) {unknown} (known: "
                         f"{', '.join(ATTRIBUTES)})")
    stored, tensors, _ = read(path)
    multi = params.is_multi_task(stored)
    branches = params.branches(stored)
    log.info("This is a multitask model" if multi else "This is a singletask model")
    if "model-branch" in attributes:
        if not multi:
            raise ValueError("the 'model-branch' attribute needs a multi-task model")
        log.info("Available model branches are %s, where 'RANDOM' means using a randomly "
                 "initialized fitting net.", [*branches, "RANDOM"])
        for name, section in branches.items():
            log.info("  %s: alias %s, info %s", name, section.get("model_branch_alias", []),
                     json.dumps(section.get("info") or {}))
    for attr, key in (("type-map", "type_map"), ("descriptor", "descriptor"),
                      ("fitting-net", "fitting_net")):
        if attr not in attributes:
            continue
        label = "parameter" if key != "type_map" else ""
        for name, section in branches.items():
            where = f" of branch {name}" if multi else ""
            log.info("The %s%s%s is %s", key, f" {label}" if label else "", where,
                     section.get(key))
    if "size" in attributes:
        first = next(iter(tensors.values()))
        size = {part: sum(t.numel() for k, t in first.items() if part_key in k
                          and "_networks" not in k and k.rsplit(".", 1)[-1] in _TRAINABLE)
                for part, part_key in (("descriptor", "descriptor"),
                                       ("fitting-net", "fitting"))}
        size["total"] = size["descriptor"] + size["fitting-net"]
        log.info("Parameter counts%s:", " for a single branch model" if multi else "")
        for k in sorted(size):
            log.info("Parameters in %s: %s", k, f"{size[k]:,}")
    if "observed-type" in attributes:
        for name, sd in tensors.items():
            section = branches.get(name, {})
            types = (section.get("info") or {}).get("observed_type")
            if types is None:
                bias = sd["atomic_model.out_bias"][0, :, 0].tolist()
                types = _by_element([t for t, b in zip(section["type_map"], bias)
                                     if abs(b) > 1e-6])
            prefix = f"{name}: " if multi else ""
            log.info("%sNumber of observed types: %d", prefix, len(types))
            log.info("%sObserved types: %s", prefix, types)
    return 0


def run_show(path: str, attributes: list[str] | None = None) -> int:
    if attributes:
        return show_attributes(path, attributes)
    stored, tensors, infos = read(path)
    branches = params.branches(stored)
    multi = params.is_multi_task(stored)
    kind = "multi-task" if multi else "single-task"
    log.info("%s: %s model%s", path, kind, " (frozen)" if is_frozen(path) else "")
    if kind == "multi-task":
        log.info("model branches: %s", params.describe(stored))
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
        if p.get("info"):
            log.info("%sinfo: %s", prefix, json.dumps(p["info"]))
    if multi:
        log.info("parameters shared by several branches: %d", shared)
        for name, n in own.items():
            log.info("parameters of branch %s alone: %d (%d with the shared ones)", name, n,
                     n + shared)
    log.info("trainable parameters in all: %d", shared + sum(own.values()))
    return 0
