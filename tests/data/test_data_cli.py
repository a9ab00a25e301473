"""Stage entry points run as subprocesses: ``python -m repro.data.prepare`` / ``.download``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.io import read_json, read_jsonl

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    return env


def _run(module: str, args: list[str], tmp_path: Path, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True,
        env=_env(tmp_path), timeout=timeout, cwd=tmp_path,
    )


SYN = {"kind": "seq2seq", "loader": "synthetic", "tokenizer": {"train": {}}, "seq_len": 40,
       "synthetic": {"generator": "translation", "seed": 12,
                     "size": {"train": 300, "validation": 20, "test": 20}}}


def test_prepare_synthetic_end_to_end_is_reproducible(tmp_path):
    outs = []
    for run in ("a", "b"):
        res = _run("repro.data.prepare", ["--dataset", "syn_translation", "--config-json",
                                          json.dumps(SYN), "--out-dir", f"out_{run}"], tmp_path)
        assert res.returncode == 0, res.stderr
        assert "Warning" not in res.stderr, res.stderr
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        assert summary["counts"] == {"train": 300, "validation": 20, "test": 20}
        outs.append(tmp_path / f"out_{run}")
    for split in ("train", "validation", "test"):
        a, b = (o / f"{split}.jsonl" for o in outs)
        assert a.read_bytes() == b.read_bytes()
    rows = read_jsonl(outs[0] / "test.jsonl")
    assert rows[0]["id"] == "syn_translation/test/0" and set(rows[0]) == {"id", "src", "trg"}
    assert read_json(outs[0] / "stats.json")["splits"]["train"]["rows"] == 300


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
def test_prepare_local_files_end_to_end(tmp_path):
    cfg = {"loader": "mbpp", "local": {"full": str(SHARED / "mbpp/mbpp.jsonl")},
           "splits": {"train": "full[600:]", "validation": "full[510:600]", "test": "full[10:510]"},
           "max_rows": {"train": 50}}
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg), encoding="utf-8")
    res = _run("repro.data.prepare", ["--dataset", "mbpp", "--config-json", f"@{cfg_file}",
                                      "--out-dir", "results/data/mbpp"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"train": 50, "validation": 90, "test": 500}
    train = read_jsonl(tmp_path / "results/data/mbpp/train.jsonl")
    assert train[0]["id"] == "mbpp/601" and len(train) == 50


def test_prepare_bad_input_exits_2_with_message(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    cfg = {"loader": "tinystories", "local": {"train": str(bad), "validation": str(bad)}}
    res = _run("repro.data.prepare", ["--dataset", "ts", "--config-json", json.dumps(cfg),
                                      "--out-dir", "out"], tmp_path)
    assert res.returncode == 2
    assert "bad.jsonl:2: field 'text' must be a string" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_download_offline_fails_fast_with_local_hint(tmp_path):
    t0 = time.perf_counter()
    res = _run("repro.data.download", ["--dataset", "qqp", "--config-json",
                                       json.dumps({"loader": "qqp"}), "--out", "res/qqp"], tmp_path)
    assert time.perf_counter() - t0 < 30
    assert res.returncode == 2
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in res.stderr
    assert "nyu-mll/glue@bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c" in res.stderr
    assert "datasets.qqp.local: {train: <file>, validation: <file>}" in res.stderr
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_download_refuses_synthetic_and_fully_local(tmp_path):
    res = _run("repro.data.download", ["--dataset", "s", "--config-json", json.dumps(SYN),
                                       "--out", "o"], tmp_path)
    assert res.returncode == 2 and "synthetic: there is nothing to download" in res.stderr
    local = {"loader": "lamini", "local": {"train": "t.jsonl"}}
    res = _run("repro.data.download", ["--dataset", "l", "--config-json", json.dumps(local),
                                       "--out", "o"], tmp_path)
    assert res.returncode == 2 and "every split is read from datasets.l.local" in res.stderr


# --------------------------------------------------------------------------- download, in-process


def test_download_saves_atomically_and_prepare_reads_it(tmp_path, monkeypatch):
    """The download code path with the hub replaced by in-memory datasets (no network)."""
    import datasets

    from repro.data import hub, parse_config, prepare_dataset

    calls = []
    glue = {"question1": ["a?", "b?", "c?", "d?"], "question2": ["A?", "B?", "C?", "D?"],
            "label": [1, 1, 0, 1], "idx": [0, 1, 2, 3]}

    def fake_load_dataset(path, name=None, split=None, streaming=False, **kw):
        calls.append((path, name, split, streaming, kw))
        ds = datasets.Dataset.from_dict(glue)
        return ds.to_iterable_dataset() if streaming else ds

    monkeypatch.setattr(hub, "resolve_revision", lambda dc: "f" * 40)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    cfg = {"loader": "qqp", "splits": {"validation": "validation[:1]", "test": "validation[1:]"}}
    out = tmp_path / "resources/datasets/qqp"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("old", encoding="utf-8")  # replaced wholesale
    prov = hub.download_dataset(parse_config("qqp", cfg), out)
    assert [c[:4] for c in calls] == [("nyu-mll/glue", "qqp", "train", False),
                                     ("nyu-mll/glue", "qqp", "validation", False)]
    assert calls[0][4] == {"revision": "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"}
    assert prov["resolved_sha"] == "f" * 40 and prov["splits"] == {"train": 4, "validation": 4}
    assert read_json(out / "repro_source.json") == prov
    assert not (out / "stale.txt").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    counts = prepare_dataset("qqp", cfg, tmp_path / "data", raw_dir=out)
    assert counts == {"train": 3, "validation": 1, "test": 2}

    # hub.take streams the first N rows of each split
    calls.clear()
    prov = hub.download_dataset(parse_config("qqp", {**cfg, "hub": {"take": 2}}), out)
    assert all(c[3] for c in calls) and prov["splits"] == {"train": 2, "validation": 2}


def test_download_errors_without_network(monkeypatch):
    from huggingface_hub import HfApi

    from repro.data import hub, parse_config
    from repro.io import InputError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def unreachable(self, *a, **kw):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(HfApi, "dataset_info", unreachable)
    with pytest.raises(hub.HubUnavailable, match=r"unreachable.*ConnectionError.*local: \{train: <file>"):
        hub.resolve_revision(parse_config("ts", {"loader": "tinystories"}))
    with pytest.raises(InputError, match=r"too large to download whole; set hub\.take"):
        hub.download_dataset(parse_config("ffw", {"loader": "finefineweb"}), "unused")
