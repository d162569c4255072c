"""Shares the synthetic-data fixtures of tests/train."""
from tests.train.conftest import dataset, run_dir  # noqa: F401
