"""Progress lines, bars, loggers and quiet job logs (repro.progress); their use in training:
tests/train/test_run.py."""

from __future__ import annotations

import io
import logging

import pytest

from repro import progress
from repro.workflow import resources


def test_progress_line_and_clock_format():
    line = progress.progress_line(150, 600, 2.34567, 12345.6, 65.0, 3725.0)
    assert line == ("progress: step 150/600 (25.0%) loss=2.3457 tokens/s=12,346 "
                    "elapsed 0:01:05 eta 1:02:05")
    assert "loss=n/a" in progress.progress_line(0, 10, None, 0.0, 0.0, None)
    assert progress.hms(86400 + 61) == "24:01:01"


def test_batch_progress_lines_and_bar():
    ticks = iter([0.0, 2.0, 4.0])
    log = logging.getLogger("test.progress")
    lines = progress.BatchProgress(100, log, clock=lambda: next(ticks))
    assert lines.update(40) == "batch 1: 40/100 examples (40%) 20.0 examples/s eta 0:00:03"
    stream = io.StringIO()
    ticks2 = iter([0.0, 1.0])
    bar = progress.BatchProgress(10, log, bar=True, stream=stream, clock=lambda: next(ticks2))
    bar.update(10)
    assert stream.getvalue().startswith("\r[" + "#" * 30 + "]") and stream.getvalue().endswith("\n")


def test_want_bar_follows_the_flag_then_the_terminal():
    assert progress.want_bar(True, io.StringIO()) and not progress.want_bar(False)
    assert not progress.want_bar(None, io.StringIO())  # a log file: plain lines


def test_loggers_are_checked_and_name_the_missing_package(monkeypatch):
    assert progress.parse_loggers("csv, TensorBoard,tensorboard") == ["tensorboard"]
    with pytest.raises(progress.LoggerUnavailable, match="unknown logger 'mlflow'"):
        progress.parse_loggers("mlflow")
    monkeypatch.setattr(progress.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(progress.LoggerUnavailable, match="needs the `tensorboard` package"):
        progress.check_loggers(["tensorboard"], "config logging")
    with pytest.raises(resources.ClusterConfigError, match="`wandb` package"):
        resources.logging_env({"wandb": True})
    assert resources.logging_env({"progress_every_s": 30}) == "REPRO_PROGRESS_S=30 "
