"""dpx's commands that have a `dp` twin print what it prints: neighbor-stat, show with
attributes, and dp test's detail files of an open-boundary system."""
import re

import numpy as np
import pytest

from dpx.cli.main import main
from tests.fidelity.conftest import dp
from tests.fidelity.test_deepmd_fidelity import TOL, dpx_single  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def logged(text: str, key: str) -> str:
    """What follows `key` (and a colon, if any) on the last line of a log that has it."""
    return [line.split(key, 1)[1].lstrip(":").strip() for line in text.splitlines()
            if key in line][-1]


@pytest.mark.parametrize("options", [["-t", "O", "H"], ["--mixed-type"]])
def test_neighbor_stat_equals_dp(toy_data, tmp_path, capsys, options):
    res = dp("--pt", "neighbor-stat", "-s", toy_data, "-r", "4.0", *options, cwd=tmp_path)
    theirs = res.stdout + res.stderr
    capsys.readouterr()
    assert main(["neighbor-stat", "-s", str(toy_data), "-r", "4.0", *options]) == 0
    ours = capsys.readouterr().err
    assert float(logged(ours, "min_nbor_dist")) == pytest.approx(
        float(logged(theirs, "min_nbor_dist")), rel=1e-6)
    want = [int(x) for x in re.findall(r"\d+", logged(theirs, "max_nbor_size"))]
    assert [int(x) for x in re.findall(r"\d+", logged(ours, "max_nbor_size").split("(")[0])] \
        == want


def test_show_attributes_equal_dp(dpx_single, tmp_path, capsys):  # noqa: F811
    attrs = ["type-map", "size", "observed-type"]
    res = dp("--pt", "show", dpx_single, *attrs, cwd=tmp_path)
    theirs = res.stdout + res.stderr
    capsys.readouterr()
    assert main(["show", str(dpx_single), *attrs]) == 0
    ours = capsys.readouterr().err
    for key in ("The type_map is", "Parameters in descriptor", "Parameters in fitting-net",
                "Parameters in total", "Number of observed types", "Observed types"):
        assert logged(ours, key) == logged(theirs, key), key


def test_dp_test_files_of_an_open_boundary_system(dpx_single, toy_data, tmp_path):  # noqa: F811
    src, sys = toy_data / "sys_b", tmp_path / "open"
    (sys / "set.000").mkdir(parents=True)
    for name in ("type.raw", "type_map.raw"):
        (sys / name).write_bytes((src / name).read_bytes())
    for name in ("coord", "energy", "force", "virial"):
        (sys / "set.000" / f"{name}.npy").write_bytes((src / "set.000" / f"{name}.npy")
                                                      .read_bytes())
    (sys / "nopbc").touch()
    dp("--pt", "test", "-m", dpx_single, "-s", sys, "-d", tmp_path / "dp", cwd=tmp_path)
    assert main(["test", "-m", str(dpx_single), "-s", str(sys), "-d",
                 str(tmp_path / "dpx")]) == 0
    made = {p.name.split(".", 1)[1] for p in tmp_path.glob("dp.*.out")}
    assert made == {p.name.split(".", 1)[1] for p in tmp_path.glob("dpx.*.out")}
    assert "v.out" in made and "s.out" not in made
    for suffix in made:
        a, b = np.loadtxt(tmp_path / f"dpx.{suffix}"), np.loadtxt(tmp_path / f"dp.{suffix}")
        assert np.abs(a - b).max() <= TOL * np.abs(b).max(), suffix
