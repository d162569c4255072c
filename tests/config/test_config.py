"""Bad input is rejected before any work, with the key path and what was expected."""
import copy
import json

import pytest

from dpx.config import ConfigError, load_input, parse_input
from dpx.config.text import read_input

SINGLE = {
    "model": {"type_map": ["O", "H"],
              "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5,
                             "neuron": [25, 50, 100], "axis_neuron": 16, "_comment": "ok"},
              "fitting_net": {"neuron": [240, 240, 240]}},
    "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 3.51e-8, "decay_steps": 5000},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
             "limit_pref_f": 1},
    "training": {"training_data": {"systems": ["a"], "batch_size": 1}, "numb_steps": 10},
}

MULTI = {
    "model": {"shared_dict": {"tm": ["O", "H"],
                              "d1": SINGLE["model"]["descriptor"]},
              "model_dict": {"w1": {"type_map": "tm", "descriptor": "d1", "fitting_net": {}},
                             "w2": {"type_map": "tm", "descriptor": "d1:1", "fitting_net": {}}}},
    "learning_rate": {"start_lr": 1e-3},
    "loss_dict": {"w1": {}, "w2": {}},
    "training": {"model_prob": {"w1": 0.5, "w2": 1.5},
                 "data_dict": {"w1": {"training_data": {"systems": ["a"]}},
                               "w2": {"training_data": {"systems": ["b"]}}},
                 "numb_steps": 10},
}


def with_change(base, path, value):
    d = copy.deepcopy(base)
    keys = path.split("/")
    node = d
    for k in keys[:-1]:
        node = node[k]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return d


def test_defaults_are_filled_in():
    cfg = parse_input(SINGLE)
    d = cfg.branches["Default"].model.descriptor
    assert d.activation_function == "tanh" and d.type_one_side is False and d.resnet_dt is False
    f = cfg.branches["Default"].model.fitting_net
    assert f.resnet_dt is True and f.activation_function == "tanh"
    assert cfg.training.disp_freq == 1000 and cfg.training.save_ckpt == "model.ckpt"
    assert cfg.branches["Default"].loss.start_pref_v == 0.0


@pytest.mark.parametrize("path, value, match", [
    ("model/descriptor/rcut", -1.0, r"model/descriptor/rcut: must be > 0"),
    ("model/descriptor/rcut_smth", 6.0, r"model/descriptor/rcut_smth: must satisfy"),
    ("model/descriptor/neuron", [], r"model/descriptor/neuron: neuron must be a non-empty"),
    ("model/descriptor/sel", [46], r"model/descriptor/sel: must have one entry per type"),
    ("model/descriptor/sel", "many", r"model/descriptor/sel: must be a list of integers"),
    ("model/descriptor/rcut", "6", r"model/descriptor/rcut: expected number"),
    ("model/descriptor/resnet_dt", 1, r"model/descriptor/resnet_dt: expected boolean"),
    ("model/descriptor/axis_neuron", 200, r"model/descriptor/axis_neuron: must lie in"),
    ("model/descriptor/typo_key", 1, r"model/descriptor/typo_key: unknown key"),
    ("model/descriptor/type", "dpa2", r"model/descriptor/type: dpx implements se_e2_a \(alias "
     r"se_a\).*; got 'dpa2'"),
    ("model/fitting_net/type", "dipole", r"model/fitting_net/type: dpx implements ener; got"),
    ("model/fitting_net/neuron", [0], r"model/fitting_net/neuron"),
    ("model/fitting_net/activation_function", "swish",
     r"model/fitting_net/activation_function: unknown activation"),
    ("model/type_map", ["O", "O"], r"model/type_map: must be a non-empty list of distinct"),
    ("learning_rate/start_lr", 0, r"learning_rate/start_lr: must be > 0"),
    ("learning_rate/start_lr", float("inf"), r"learning_rate/start_lr: expected a finite "
                                             r"number, got inf"),
    ("model/descriptor/rcut", float("nan"), r"model/descriptor/rcut: expected a finite number"),
    ("loss/start_pref_f", -1000, r"loss/start_pref_f: must be >= 0, got -1000"),
    ("loss/limit_pref_v", -1, r"loss/limit_pref_v: must be >= 0, got -1"),
    ("learning_rate/stop_lr", 1.0, r"learning_rate/stop_lr: gives stop_lr = 1 above start_lr"),
    ("loss/loss_func", "l4", r"loss/loss_func"),
    ("training/training_data", KeyError, r"training/training_data: missing"),
    ("training/numb_steps", KeyError, r"training/numb_steps: missing"),
    ("training/training_data/batch_size", "sometimes", r"training/training_data/batch_size"),
    ("training/training_data/batch_size", "mix:64", r"training/training_data/batch_size: must "
     r"be an integer, .* or 'filter:N', got 'mix:64'; DeePMD-kit's 'mix:N' .* is not "
     r"implemented, 'max:N' is the nearest"),
    ("training/disp_freq", 0, r"training/disp_freq: must be >= 1"),
    # inside an object or list of a union type (dict | None): the entry's own path and error
    ("training/model_prob", {"x": float("nan")}, r"training/model_prob/x: expected a finite "
                                                 r"number, got nan"),
    ("learning_rate/stop_lr", float("nan"), r"learning_rate/stop_lr: expected a finite number "
                                            r"or null, got nan"),
    ("training/unknown", 1, r"training/unknown: unknown key"),
])
def test_single_task_errors(path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_input(with_change(SINGLE, path, value))


def test_aliases_and_comments():
    d = with_change(SINGLE, "model/descriptor/n_axis_neuron", 8)
    del d["model"]["descriptor"]["axis_neuron"]
    d["training"]["stop_batch"] = d["training"].pop("numb_steps")
    cfg = parse_input(d)
    assert cfg.branches["Default"].model.descriptor.axis_neuron == 8
    assert cfg.training.numb_steps == 10


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_input(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": ')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON at line 1"):
        load_input(bad)
    good = tmp_path / "in.json"
    good.write_text(json.dumps(with_change(SINGLE, "model/descriptor/rcut", -2)))
    with pytest.raises(ConfigError, match=r"in.json: model/descriptor/rcut"):
        load_input(good)


def test_file_encoding_and_syntax_errors_name_the_place(tmp_path):
    raw = tmp_path / "latin1.json"
    raw.write_bytes('{"model": "é\n  \xe9"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.json: not UTF-8 text \(byte 0xe9 at line "
                                          r"1, column 12\); save the input as UTF-8"):
        load_input(raw)
    tabs = tmp_path / "in.yaml"
    tabs.write_text("model:\n\ttype_map: [O, H]\n")
    with pytest.raises(ConfigError, match=r"in.yaml: not valid YAML at line 2, column 1: "
                                          r"found character '\\t'"):
        load_input(tabs)
    broken = tmp_path / "broken.yml"
    broken.write_text("model: {type_map: [O, H]\ntraining: 1\n")
    with pytest.raises(ConfigError, match=r"broken.yml: not valid YAML at line \d+, column \d+"):
        load_input(broken)


def test_a_key_given_twice_is_refused_with_both_places(tmp_path):
    """Python's readers keep the last silently; dpx refuses (README: differences)."""
    text = json.dumps(SINGLE, indent=1).replace('"rcut": 6.0,', '"rcut": 6.0, "rcut": 9.0,')
    dup = tmp_path / "in.json"
    dup.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '"rcut": 9.0' in t)
    with pytest.raises(ConfigError, match=rf"in.json: key 'rcut' given twice in one object, at "
                                          rf"line {line}, column \d+ and line {line}, column \d+"):
        load_input(dup)
    # the same key in two objects (neuron in descriptor and fitting_net) is no repeat
    (tmp_path / "ok.json").write_text(json.dumps(SINGLE))
    load_input(tmp_path / "ok.json")
    yml = tmp_path / "in.yaml"
    yml.write_text("model:\n  type_map: [O, H]\n  type_map: [H, O]\n")
    with pytest.raises(ConfigError, match=r"in.yaml: key 'type_map' given twice in one "
                                          r"mapping, at line 2, column 3 and line 3, column 3"):
        load_input(yml)
    # a YAML merge key's overrides are no repeats
    yml.write_text("base: &b {type_map: [O, H], sel: [4, 8]}\nmodel:\n  <<: *b\n  sel: [5, 9]\n")
    assert read_input(yml)["model"] == {"type_map": ["O", "H"], "sel": [5, 9]}


def test_multi_task_expansion():
    cfg = parse_input(MULTI)
    assert cfg.multi_task and list(cfg.branches) == ["w1", "w2"]
    assert cfg.branches["w2"].model.descriptor.neuron == [25, 50, 100]
    levels = {(link.branch, link.kind): link.level for link in cfg.links}
    assert levels[("w1", "descriptor")] == 0 and levels[("w2", "descriptor")] == 1
    assert cfg.branches["w1"].model.type_map == ["O", "H"]


@pytest.mark.parametrize("path, value, match", [
    ("training/model_prob/w3", 1.0, r"training/model_prob/w3: names no branch"),
    ("training/model_prob/w1", 0.0, r"training/model_prob/w1: weights must be > 0"),
    ("training/data_dict/w2", KeyError, r"training/data_dict: has no entry for branch 'w2'"),
    ("loss_dict/w1", KeyError, r"loss_dict: has no entry for branch 'w1'"),
    ("model/model_dict/w1/descriptor", "nothing", r"model/model_dict/w1/descriptor: 'nothing' is "
     r"not in model/shared_dict"),
    ("model/model_dict/w1/descriptor", "d1:x", r"shared level after ':' must be an integer"),
    ("model/model_dict/RANDOM", {"type_map": "tm", "descriptor": "d1"}, r"'RANDOM' is reserved"),
    ("loss", {}, r"loss: a multi-task input gives one loss per branch"),
])
def test_multi_task_errors(path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_input(with_change(MULTI, path, value))


def test_shared_examples_parse():
    """The inputs of our documentation (when ../shared is present) parse unchanged."""
    import pathlib
    shared = pathlib.Path(__file__).resolve().parents[3] / "shared" / "examples"
    if not shared.exists():
        pytest.skip("../shared is not beside the project")
    for name in ("single_task/input.json", "single_task/input_finetune.json",
                 "multi_task/input.json"):
        load_input(shared / name)


# ---------------------------------------------------------------- DPA-1 (deepmd-dpa1 §1)
DPA1 = with_change(SINGLE, "model/descriptor", {"type": "dpa1", "sel": 30, "rcut": 6.0,
                                                "rcut_smth": 0.5, "neuron": [25, 50, 100]})


def dpa1_section(base=DPA1, **keys):
    d = copy.deepcopy(base)
    d["model"]["descriptor"].update(keys)
    return parse_input(d).branches["Default"].model.descriptor


@pytest.mark.parametrize("path, value, match", [
    ("model/descriptor/attn_mask", True, r"model/descriptor/attn_mask: true is not implemented"),
    ("model/descriptor/lmax", 2, r"model/descriptor/lmax: dpx implements the standard DPA-1 "
                                 r"moments \(lmax 1\)"),
    ("model/descriptor/sel", 0, r"model/descriptor/sel: must keep at least one neighbor"),
    ("model/descriptor/sel", [0, 0], r"model/descriptor/sel: must keep at least one"),
    ("model/descriptor/sel", "many", r"model/descriptor/sel: must be a list of integers, 'auto'"),
    ("model/descriptor/tebd_input_mode", "mixed",
     r"model/descriptor/tebd_input_mode: must be 'concat' or 'strip', got 'mixed'"),
    ("model/descriptor/attn_layer", -1, r"model/descriptor/attn_layer: must be >= 0"),
    ("model/descriptor/tebd_dim", 0, r"model/descriptor/tebd_dim: must be >= 1"),
    ("model/descriptor/ln_eps", 0.0, r"model/descriptor/ln_eps: must be > 0"),
    ("model/descriptor/axis_neuron", 101, r"model/descriptor/axis_neuron: must lie in"),
    ("model/descriptor/typo_key", 1, r"model/descriptor/typo_key: unknown key"),
])
def test_dpa1_errors(path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_input(with_change(DPA1, path, value))


@pytest.mark.parametrize("key, value", [("tebd_input_mode", "strip"),
                                        ("smooth_type_embedding", True),
                                        ("stripped_type_embedding", True)])
def test_se_atten_v2_rejects_the_keys_it_fixes(key, value):
    """DeePMD-kit's argcheck of se_atten_v2 has no such keys (strip and smooth are fixed)."""
    v2 = with_change(DPA1, "model/descriptor/type", "se_atten_v2")
    with pytest.raises(ConfigError, match=rf"model/descriptor/{key}: unknown key"):
        parse_input(with_change(v2, f"model/descriptor/{key}", value))


def test_use_econf_tebd_is_refused_by_name():
    from dpx.model.energy import EnergyModel
    cfg = parse_input(with_change(DPA1, "model/descriptor/use_econf_tebd", True))
    with pytest.raises(ValueError, match=r"descriptor/use_econf_tebd: the electronic-config"):
        EnergyModel(cfg.branches["Default"].model)


def test_dpa1_aliases():
    """The deprecated stripped_type_embedding overrides tebd_input_mode (deepmd-dpa1 §1.2);
    smooth_type_embdding is DeePMD-kit's misspelled alias; n_axis_neuron as for se_e2_a."""
    assert dpa1_section(stripped_type_embedding=True).tebd_input_mode == "strip"
    assert dpa1_section(stripped_type_embedding=False,
                        tebd_input_mode="strip").tebd_input_mode == "concat"
    assert dpa1_section(tebd_input_mode="strip").tebd_input_mode == "strip"
    assert dpa1_section(smooth_type_embdding=True).smooth_type_embedding is True
    assert dpa1_section(n_axis_neuron=6).axis_neuron == 6


def test_dpa1_sel_forms():
    """One list of any type: an integer, a list (only its sum counts, any length) or auto."""
    assert sum(dpa1_section(sel=30).sel_list()) == 30 and dpa1_section(sel=30).sel_list() == [30]
    assert sum(dpa1_section(sel=[10, 20, 5]).sel_list()) == 35  # three entries for two types
    assert dpa1_section(sel="auto").sel == "auto"
    assert dpa1_section(sel="auto:1.5").sel == "auto:1.5"


# deepmd-dpa1 §1.1 / §1.3: the argcheck defaults of DeePMD-kit 3.2.0 (not its class defaults)
DPA1_DEFAULTS = {"sel": "auto", "rcut": 6.0, "rcut_smth": 0.5, "neuron": [10, 20, 40],
                 "axis_neuron": 4, "tebd_dim": 8, "tebd_input_mode": "concat",
                 "resnet_dt": False, "type_one_side": False, "set_davg_zero": True,
                 "attn": 128, "attn_layer": 2, "attn_dotr": True, "attn_mask": False,
                 "activation_function": "tanh", "precision": "default", "exclude_types": [],
                 "env_protection": 0.0, "scaling_factor": 1.0, "normalize": True,
                 "temperature": None, "concat_output_tebd": True, "trainable": True,
                 "trainable_ln": True, "ln_eps": None, "smooth_type_embedding": False,
                 "use_econf_tebd": False, "use_tebd_bias": False, "seed": None}


@pytest.mark.parametrize("kind", ["dpa1", "se_atten", "se_atten_v2"])
def test_dpa1_defaults_are_deepmd_argcheck_defaults(kind):
    d = with_change(SINGLE, "model/descriptor", {"type": kind})
    section = parse_input(d).branches["Default"].model.descriptor
    want = dict(DPA1_DEFAULTS)
    if kind == "se_atten_v2":  # strip and smooth fixed, davg computed
        want.update(tebd_input_mode="strip", smooth_type_embedding=True, set_davg_zero=False)
    for key, value in want.items():
        assert getattr(section, key) == value, key
    assert section.eps == 1e-5  # ln_eps null: DeePMD-kit's PyTorch 1e-5
    assert section.type == ("se_atten_v2" if kind == "se_atten_v2" else "se_atten")
