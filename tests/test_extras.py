"""An optional package the input needs is one line and rc 2 (MissingPackage, raised where it
is imported); any other ImportError is a defect in dpx and keeps its traceback."""
import pytest

from dpx.cli import main as cli
from dpx.extras import MissingPackage, need


def test_need_names_the_missing_package():
    with pytest.raises(MissingPackage, match="x needs no_such_pkg_dpx: pip install it"):
        need("json", "no_such_pkg_dpx", message="x needs {name}: pip install it")
    assert need("json", message="unused").__name__ == "json"


@pytest.mark.parametrize("error, rc", [(MissingPackage("LMDB data needs the lmdb package"), 2),
                                       (ImportError("cannot import name 'f' from 'dpx.x'"), None)])
def test_cli_reports_only_missing_packages(monkeypatch, capsys, error, rc):
    def run(args):
        raise error
    monkeypatch.setattr(cli.COMMANDS["show"], "run", run)
    if rc is None:
        with pytest.raises(ImportError):
            cli.main(["show", "x.pt", "model-branch"])
    else:
        assert cli.main(["show", "x.pt", "model-branch"]) == rc
        assert "LMDB data needs the lmdb package" in capsys.readouterr().err
