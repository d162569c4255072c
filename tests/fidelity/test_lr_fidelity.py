"""Learning-rate schedules against DeePMD-kit 3.2.0's (dpmodel's make_learning_rate_schedule):
exp, cosine and wsd (each decay rule), with and without warmup, at every step of a run."""
import json

import numpy as np
import pytest

from dpx.config.input import LearningRateConfig
from dpx.config.schema import parse
from dpx.train.lr import LearningRate
from tests.fidelity.conftest import oracle

pytestmark = pytest.mark.slow
STEPS = 1000
SCHEDULES = [
    {"type": "exp", "start_lr": 1e-3, "stop_lr": 3.51e-8, "decay_steps": 50},
    {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-6, "decay_steps": 50, "smooth": True,
     "warmup_steps": 100, "warmup_start_factor": 0.1},
    {"type": "cosine", "start_lr": 1e-3, "stop_lr": 1e-6},
    {"type": "cosine", "start_lr": 2e-3, "stop_lr_ratio": 1e-3, "warmup_ratio": 0.05},
    {"type": "wsd", "start_lr": 1e-3, "stop_lr": 1e-5},
    {"type": "wsd", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_phase_ratio": 0.3,
     "decay_type": "cosine", "warmup_steps": 20},
    {"type": "wsd", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_type": "linear"},
]
CODE = """
import json, sys
from deepmd.dpmodel.utils.learning_rate import make_learning_rate_schedule
params, steps = json.loads(sys.argv[1]), int(sys.argv[2])
lr = make_learning_rate_schedule(params, steps)
print(json.dumps([float(lr.value(s)) for s in range(steps)]))
"""


@pytest.mark.parametrize("params", SCHEDULES, ids=lambda p: p["type"])
def test_schedule_equals_deepmd(params, oracle_python):
    theirs = json.loads(oracle("-c", CODE, json.dumps(params), str(STEPS)).stdout.splitlines()[-1])
    lr = LearningRate(parse(LearningRateConfig, dict(params), "learning_rate"), STEPS)
    ours = [lr(s) for s in range(STEPS)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
