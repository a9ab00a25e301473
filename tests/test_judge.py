"""The judge stage CLI: train a tiny judge end to end, config errors, the offline download error."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from repro.io import InputError, read_jsonl, write_jsonl
from repro.judge import check_train_config, main, read_texts, train_judge

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
SMALL = {
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "n_positions": 64,
    "vocab_size": 400,
    "steps": 150,
    "batch_size": 16,
    "lr": 3e-3,
    "seed": 0,
}


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    from repro.data.synthetic import generate

    d = tmp_path_factory.mktemp("stories")
    rows = generate("stories", 3, {"train": 400, "test": 30})
    for split, items in rows.items():
        write_jsonl(
            d / f"{split}.jsonl", [{"id": f"s/{split}/{i}", **r} for i, r in enumerate(items)]
        )
    return d


def test_train_cli_end_to_end(stories, tmp_path, monkeypatch):
    out = tmp_path / "judges" / "tiny"
    cmd = [
        sys.executable, "-m", "repro.judge", "train",
        "--data", str(stories / "train.jsonl"), "--kind", "text",
        "--config-json", json.dumps(SMALL), "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no temp dir left behind
    summary = json.loads((out / "judge_train.json").read_text())
    assert summary["config"]["steps"] == 150 and summary["n_texts"] == 400
    assert summary["loss_curve"][-1]["loss"] < summary["loss_curve"][0]["loss"]

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the hub
    from repro.metrics.judge import gen_ppl, load_judge

    jd = load_judge(str(out), device="cpu")
    assert jd.context == 64
    assert jd.tokenizer.eos_token == jd.tokenizer.pad_token == jd.tokenizer.bos_token
    assert type(jd.model).__name__ == "GPT2LMHeadModel"

    # it learned word order: held-out stories beat the same words shuffled
    test = [r["text"] for r in read_jsonl(stories / "test.jsonl")]
    rng = random.Random(0)
    shuffled = []
    for t in test:
        words = t.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    for agg in ("corpus_exp_mean_nll", "klflow_padded"):
        real = gen_ppl([{"hypothesis": t} for t in test], judge=str(out), aggregation=agg)
        shuf = gen_ppl([{"hypothesis": t} for t in shuffled], judge=str(out), aggregation=agg)
        assert real.value * 2 < shuf.value, (agg, real.value, shuf.value)


def test_train_is_deterministic_and_atomic(stories, tmp_path):
    cfg = {**SMALL, "steps": 4, "n_positions": 32}
    a = train_judge(stories / "train.jsonl", "text", cfg, tmp_path / "a")
    b = train_judge(stories / "train.jsonl", "text", cfg, tmp_path / "b")
    assert (tmp_path / "a/model.safetensors").read_bytes() == (
        tmp_path / "b/model.safetensors"
    ).read_bytes()
    assert a["loss_curve"] == b["loss_curve"]
    # retraining replaces the directory as a whole
    (tmp_path / "a/stale.txt").write_text("x")
    train_judge(stories / "train.jsonl", "text", cfg, tmp_path / "a")
    assert not (tmp_path / "a/stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_unknown_config_key_is_an_error(stories, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--data",
            str(stories / "train.jsonl"),
            "--kind",
            "text",
            "--config-json",
            '{"n_layers": 2}',
            "--out",
            str(tmp_path / "j"),
        ]  # fmt: skip
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "'n_layers'" in err and "n_layer (default 2)" in err
    assert not (tmp_path / "j").exists()
    with pytest.raises(InputError, match="divisible"):
        check_train_config({"n_embd": 30, "n_head": 4})
    with pytest.raises(InputError, match="steps must be a positive integer"):
        check_train_config({"steps": 0})


def test_kind_picks_the_text_field(tmp_path):
    p = tmp_path / "train.jsonl"
    write_jsonl(p, [{"id": "x/0", "src": "hallo", "trg": "hello"}])
    assert read_texts(p, "seq2seq") == ["hello"]
    with pytest.raises(InputError, match=r"train.jsonl:1: .*'text'.*--kind"):
        read_texts(p, "text")


def test_download_offline_is_a_clear_error(tmp_path):
    out = tmp_path / "resources" / "judges" / "gpt2"
    cmd = [
        sys.executable, "-m", "repro.judge", "download",
        "--id", "gpt2", "--revision", "607a30d783dfa663caf39e06633721c8d4cfcd7e",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "HF_HUB_OFFLINE" in proc.stderr and "local judge directory" in proc.stderr
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # the temporary directory was removed
