"""Fixtures of the training tests: the fake method registered, toy data, a reference run."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import methods
from repro.train import run as train_run

from .toy import FakeMethod, run_cfg, write_tokenized


@pytest.fixture
def fake_method(monkeypatch: pytest.MonkeyPatch) -> str:
    real = methods.get_method
    monkeypatch.setattr(
        methods, "get_method", lambda name: FakeMethod() if name == "fake" else real(name)
    )
    return "fake"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenized(tmp_path_factory.mktemp("tok") / "toy" / "conditional")


@pytest.fixture
def reference(fake_method: str, data_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "ref" / "model.ckpt"
    summary = train_run.train(data_dir, out, run_cfg())
    return out, summary


