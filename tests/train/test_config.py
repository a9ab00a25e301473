"""The training configuration (:mod:`repro.train.config`): validation, defaults, lr schedules, budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from repro.io import InputError
from repro.train import config


@pytest.mark.parametrize(
    ("train_cfg", "message"),
    [
        ({"steps": 5, "lerning_rate": 0.1}, r"unknown key\(s\) \['lerning_rate'\]"),
        ({"batch_size": 4}, r"train\.steps is required"),
        ({"steps": "10"}, r"train\.steps must be an integer"),
        ({"steps": 5, "lr": "3e-4"}, r"train\.lr must be a number.*3\.0e-4"),
        ({"steps": 5, "schedule": "exp"}, r"train\.schedule is 'exp'; choose one of"),
        ({"steps": 5, "ema": 1.0}, r"train\.ema must"),
        ({"steps": 5, "ema": []}, r"train\.ema is an empty list"),
        ({"steps": 5, "ema": [0.9, 0.9]}, r"train\.ema lists a decay twice"),
        ({"steps": 5, "ema": [0.0, 0.9]}, r"train\.ema must lie in \(0\.0, 1\.0\]"),
        ({"steps": 5, "ema": [0.9, 1.0]}, r"train\.ema: every listed decay must lie in \(0, 1\)"),
        ({"steps": 5, "ema": ["0.9"]}, r"train\.ema must be a number"),
        (
            {"steps": 5, "ema": [0.9, 0.99], "ema_eval": 0.999},
            r"train\.ema_eval is 0\.999 but the decays are \[0\.9, 0\.99\]; set it to one of",
        ),
        ({"steps": 5, "ema_eval": 0.9}, r"train\.ema_eval is 0\.9 but EMA is off"),
        ({"steps": 5, "ema": 0.9, "ema_eval": 0.99}, r"train\.ema_eval is 0\.99 but the decays"),
        (
            {"steps": 5, "decay_rate": 0.9, "decay_steps": 10},
            r"train: \['decay_rate', 'decay_steps'\] only apply to schedule: exponential "
            r"\(schedule is 'cosine'\)",
        ),
        (
            {"steps": 5, "schedule": "constant", "decay_begin": 3},
            r"\['decay_begin'\] only apply to schedule: exponential",
        ),
        (
            {"steps": 5, "schedule": "exponential", "decay_rate": 0.9},
            r"train\.decay_steps is required when decay_rate < 1",
        ),
        ({"steps": 5, "schedule": "exponential", "decay_rate": 0.0}, r"train\.decay_rate must"),
        ({"steps": 5, "schedule": "exponential", "decay_steps": 0}, r"train\.decay_steps must"),
        ({"steps": 5, "decay_begin": -1}, r"train\.decay_begin must be >= 0"),
        ({"steps": 5, "warmup_init_lr": -1.0}, r"train\.warmup_init_lr must lie in"),
        (
            {"steps": 5, "warmup_init_lr": 1.0e-7},
            r"train\.warmup_init_lr=1e-07 has no effect without warmup_steps",
        ),
        (
            {"steps": 5, "lr": 1.0e-4, "warmup_steps": 2, "warmup_init_lr": 1.0e-3},
            r"train\.warmup_init_lr=0\.001 exceeds lr=0\.0001",
        ),
        ({"steps": 5, "betas": [0.9]}, r"train\.betas must be a list of two numbers"),
    ],
)
def test_train_config_errors(train_cfg, message):
    with pytest.raises(InputError, match=message):
        config.RunConfig.from_dict({"method": "ar", "train": train_cfg})


def test_run_config_errors_and_defaults():
    with pytest.raises(InputError, match=r"unknown key\(s\) \['optim'\]"):
        config.RunConfig.from_dict({"method": "ar", "train": {"steps": 1}, "optim": {}})
    with pytest.raises(InputError, match="method must be a method name"):
        config.RunConfig.from_dict({"method": 3, "train": {"steps": 1}})
    tc = config.TrainConfig.from_dict({"steps": 10})
    assert (tc.val_every, tc.ckpt_every, tc.seed, tc.batch_size, tc.precision) == (
        2,
        2,
        0,
        32,
        "auto",
    )
    assert config.TrainConfig.from_dict({"steps": 3, "val_every": 2}).ckpt_every == 2
    assert config.TrainConfig.from_dict({"steps": 2}).val_every == 1


def test_train_config_ema_forms_and_round_trip():
    off = config.TrainConfig.from_dict({"steps": 4})
    assert (off.ema, off.ema_eval, off.ema_decays) == (0.0, None, ())
    one = config.TrainConfig.from_dict({"steps": 4, "ema": 0.99})
    assert (one.ema, one.ema_eval, one.ema_decays) == (0.99, 0.99, (0.99,))
    two = config.TrainConfig.from_dict({"steps": 4, "ema": [0.9999, 0.999]})
    assert two.ema == (0.9999, 0.999) and two.ema_eval == 0.9999  # default: the largest
    picked = config.TrainConfig.from_dict({"steps": 4, "ema": [0.999, 0.9999], "ema_eval": 0.999})
    assert picked.ema_eval == 0.999
    fm = config.TrainConfig.from_dict(
        {
            "steps": 10,
            "schedule": "exponential",
            "lr": 3.0e-4,
            "warmup_steps": 2,
            "warmup_init_lr": 1.0e-7,
            "decay_begin": 3,
            "decay_rate": 0.9,
            "decay_steps": 5,
        }
    )
    for tc in (off, one, two, picked, fm):
        d = tc.to_dict()
        assert config.TrainConfig.from_dict(d) == tc
        assert config.TrainConfig.from_dict(json.loads(json.dumps(d))) == tc  # via JSON
    assert two.to_dict()["ema"] == [0.9999, 0.999] and isinstance(one.to_dict()["ema"], float)
    assert config.ema_weights_name(0.9999) == "ema0.9999"
    assert config.ema_weights_name(0.999) == "ema0.999"


def test_lr_schedule_shapes():
    tc = config.TrainConfig.from_dict({"steps": 12, "warmup_steps": 2, "min_lr_ratio": 0.1})
    assert config.lr_factor(0, tc) == pytest.approx(0.5)
    assert config.lr_factor(2, tc) == pytest.approx(1.0)
    assert config.lr_factor(7, tc) == pytest.approx(0.55)  # cosine midpoint
    assert config.lr_factor(12, tc) == pytest.approx(0.1)
    lin = config.TrainConfig.from_dict({"steps": 10, "schedule": "linear", "min_lr_ratio": 0.0})
    assert config.lr_factor(5, lin) == pytest.approx(0.5)
    const = config.TrainConfig.from_dict({"steps": 10, "schedule": "constant"})
    assert config.lr_factor(9, const) == 1.0


def test_lr_schedule_exponential_matches_fm_seq2seq():
    """FM-seq2seq's optax schedule: linear warm-up from 1e-7, constant, continuous decay."""
    tc = config.TrainConfig.from_dict(
        {
            "steps": 500000,
            "schedule": "exponential",
            "lr": 3.0e-4,
            "warmup_init_lr": 1.0e-7,
            "warmup_steps": 20000,
            "decay_begin": 200000,
            "decay_rate": 0.9,
            "decay_steps": 50000,
        }
    )

    def lr(step: int) -> float:
        return tc.lr * config.lr_factor(step, tc)

    rel = 1e-12
    assert lr(0) == pytest.approx(1.0e-7, rel=rel)
    assert lr(10000) == pytest.approx(1.0e-7 + (3.0e-4 - 1.0e-7) * 0.5, rel=rel)
    assert lr(19999) == pytest.approx(1.0e-7 + (3.0e-4 - 1.0e-7) * 19999 / 20000, rel=rel)
    for step in (20000, 100000, 219999, 220000):  # constant for decay_begin steps
        assert lr(step) == pytest.approx(3.0e-4, rel=rel)
    assert lr(245000) == pytest.approx(3.0e-4 * 0.9**0.5, rel=rel)  # not a staircase
    assert lr(270000) == pytest.approx(3.0e-4 * 0.9, rel=rel)
    assert lr(500000) == pytest.approx(3.0e-4 * 0.9**5.6, rel=rel)
    assert lr(500000) == pytest.approx(1.66e-4, abs=5e-7)
    assert lr(10**7) < 3.0e-4 * 0.9**190  # not floored by min_lr_ratio

    # warmup_init_lr > 0 switches any schedule's warm-up to the optax form ...
    cos = config.TrainConfig.from_dict(
        {"steps": 12, "warmup_steps": 4, "lr": 1.0e-2, "warmup_init_lr": 2.0e-3}
    )
    assert cos.lr * config.lr_factor(0, cos) == pytest.approx(2.0e-3, rel=rel)
    assert cos.lr * config.lr_factor(2, cos) == pytest.approx(6.0e-3, rel=rel)
    assert config.lr_factor(4, cos) == pytest.approx(1.0)
    # ... and without it the warm-up is (step + 1) / warmup_steps, exponential included
    plain = config.TrainConfig.from_dict(
        {"steps": 12, "warmup_steps": 4, "schedule": "exponential"}
    )
    assert [config.lr_factor(s, plain) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_time_budget_keeps_a_margin():
    assert config.time_budget_seconds(60) == pytest.approx(3240.0)
    assert config.time_budget_seconds(1) == pytest.approx(30.0)
    assert config.time_budget_seconds(24 * 60) == pytest.approx(24 * 3600 - 600)
    with pytest.raises(InputError):
        config.time_budget_seconds(0)


def test_checking_a_config_imports_neither_torch_nor_lightning():
    """The package and its light modules (config, world, signals, logs) load without torch."""
    code = (
        "import sys; import repro.train, repro.train.world, repro.train.signals, repro.train.logs; "
        "from repro.train.config import RunConfig, TrainConfig, lr_factor; "
        "tc = TrainConfig.from_dict({'steps': 4, 'warmup_steps': 1}); "
        "RunConfig.from_dict({'method': 'ar', 'train': {'steps': 4}}); lr_factor(2, tc); "
        "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]; print('HEAVY', heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
