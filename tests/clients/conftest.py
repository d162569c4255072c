"""Shares the DeePMD-kit oracle fixtures of tests/fidelity (its venv also holds dpgen2)."""
from tests.fidelity.conftest import _in_tmp, oracle_python, toy_data  # noqa: F401
