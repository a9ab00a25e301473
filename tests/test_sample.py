"""Tests of the sample_text stage (:mod:`repro.sample`).

A scripted fake method (registered by monkeypatching ``repro.methods.get_method``), a fake layout
(a stand-in ``repro.tokenization`` module) and a checkpoint written directly in the documented
format keep these tests independent of the real methods, tokenizers and of training.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from repro import methods, sample
from repro.io import InputError, read_jsonl
from repro.methods.base import Batch, Method, Samples

from .train.toy import write_meta

SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "bos": 5, "eos": 6}
VOCAB, SEQ, N = 20, 10, 7
FIELDS = {
    "id",
    "source",
    "reference",
    "hypothesis",
    "hypothesis_ids",
    "sampler",
    "nfe",
    "seed",
    "wall_seconds",
}


class Scorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, VOCAB)


class ScriptedMethod(Method):
    """``greedy`` writes a fixed pattern; ``ancestral`` draws tokens from ``generator``."""

    name = "scripted"
    samplers = ("ancestral", "greedy")
    calls: list[dict] = []

    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        return Scorer()

    def sample(self, model, cond: Batch, nfe, sampler, generator, **opts) -> Samples:
        ScriptedMethod.calls.append(
            {
                "ids": cond.ids.clone(),
                "cond": cond.cond.clone(),
                "sampler": sampler,
                "opts": opts,
                "grad": torch.is_grad_enabled(),
                "emb": model.emb.weight.detach().clone(),
            }
        )
        b, length = cond.ids.shape
        if sampler == "greedy":
            row = torch.tensor([10, 11, SPECIALS["eos"], 12] + [SPECIALS["pad"]] * length)
            gen = row.repeat(b, 1)
            gen[:, 0] += torch.arange(b)
        else:
            probs = torch.ones(b * length, VOCAB) / VOCAB
            gen = torch.multinomial(probs, 1, generator=generator).view(b, length)
        fill = torch.zeros_like(cond.ids)
        for i in range(b):  # non-given positions, left to right
            free = (~cond.cond[i]).nonzero().flatten()
            fill[i, free] = gen[i, : len(free)]
        extras = (
            {"how": "scripted", "steps": torch.tensor(nfe - 1)} if sampler == "ancestral" else {}
        )
        return Samples(torch.where(cond.cond, cond.ids, fill), nfe=nfe - 1, extras=extras)


class FakeLayout:
    def decode(self, ids, cond) -> str:
        return " ".join(str(int(i)) for i, c in zip(ids, cond) if not c)

    def source_text(self, row: dict) -> str:
        return row["src"]

    def reference_text(self, row: dict) -> str:
        return row["trg"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    ScriptedMethod.calls = []
    real = methods.get_method
    monkeypatch.setattr(
        methods, "get_method", lambda name: ScriptedMethod() if name == "scripted" else real(name)
    )
    fake_tok = types.ModuleType("repro.tokenization")
    fake_tok.load_layout_from_meta = lambda directory, tokenizer, meta=None: FakeLayout()
    monkeypatch.setitem(sys.modules, "repro.tokenization", fake_tok)

    rng = np.random.default_rng(0)
    data = tmp_path / "tok"
    data.mkdir()
    ids = np.zeros((N, SEQ), np.int32)
    cond = np.zeros((N, SEQ), np.uint8)
    ids[:, 0], ids[:, 1:4], ids[:, 4] = (
        SPECIALS["bos"],
        rng.integers(7, VOCAB, (N, 3)),
        SPECIALS["sep"],
    )
    ids[:, 5:8], ids[:, 8] = rng.integers(7, VOCAB, (N, 3)), SPECIALS["eos"]  # the answers
    cond[:, :5] = 1
    np.save(data / "test.ids.npy", ids)
    np.save(data / "test.cond.npy", cond)
    row_ids = [f"toy/test/{i}" for i in range(N)]
    write_meta(data, {"test": {"n": N, "row_ids": row_ids}}, SEQ, VOCAB, "a" * 64)
    prepared = tmp_path / "test.jsonl"
    rows = [{"id": r, "src": f"source {i}", "trg": f"target {i}"} for i, r in enumerate(row_ids)]
    prepared.write_text(
        "".join(json.dumps(r) + "\n" for r in reversed(rows))
    )  # order must not matter

    ckpt = tmp_path / "model.ckpt"
    torch.save(
        {
            "format": "repro.ckpt.v1",
            "method": "scripted",
            "model": {"pad_id": 0, "eos_id": 6},
            "train": {"steps": 1},
            "vocab_size": VOCAB,
            "seq_len": SEQ,
            "layout": "conditional",
            "state_dict": Scorer().state_dict(),
            "weights": "raw",
            "step": 1,
            "val_loss": None,
            "specials": SPECIALS,
            "tokenizer_sha256": "a" * 64,
        },
        ckpt,
    )
    return {
        "ckpt": ckpt,
        "data": data,
        "prepared": prepared,
        "ids": ids,
        "cond": cond,
        "tmp": tmp_path,
    }


def run(
    env: dict, out: Path, kind: str = "ancestral", seed: int = 0, extra: dict | None = None, **kw
) -> list[dict]:
    cfg = {"kind": kind, "temperature": 0.7, **(extra or {})}
    n = sample.sample(
        env["ckpt"],
        env["data"],
        env["tmp"] / "tokenizer.json",
        env["prepared"],
        "test",
        f"{kind}_t07",
        cfg,
        8,
        seed,
        out,
        **kw,
    )
    rows = read_jsonl(out)
    assert n == len(rows)
    return rows


def test_writes_documented_records(env):
    rows = run(env, env["tmp"] / "s" / "seed0.jsonl", kind="greedy", max_examples=5, batch_size=2)
    assert [r["id"] for r in rows] == [f"toy/test/{i}" for i in range(5)]  # first K, in order
    for i, r in enumerate(rows):
        assert set(r) == FIELDS
        assert (r["source"], r["reference"]) == (f"source {i}", f"target {i}")
        assert r["sampler"] == "greedy_t07" and r["seed"] == 0
        assert r["nfe"] == 7  # Samples.nfe, not the requested budget
        assert r["wall_seconds"] >= 0
    # batches of 2: row j of a batch got 10 + j first; cut at EOS, pads removed
    assert [r["hypothesis_ids"] for r in rows] == [[10, 11], [11, 11], [10, 11], [11, 11], [10, 11]]
    assert rows[0]["hypothesis"] == "10 11 6 12 0"  # the layout decodes the whole completed row
    assert len(ScriptedMethod.calls) == 3  # ceil(5 / 2) batches
    assert all(
        c["opts"] == {"temperature": 0.7} and c["sampler"] == "greedy" for c in ScriptedMethod.calls
    )
    assert not any(c["grad"] for c in ScriptedMethod.calls)


def test_sampler_info_records_the_methods_extras(env):
    rows = run(env, env["tmp"] / "s" / "info.jsonl", kind="ancestral", max_examples=3)
    assert all(r["sampler_info"] == {"how": "scripted", "steps": 7} for r in rows)
    assert json.dumps(rows)  # tensors became numbers


def test_method_never_sees_the_answer(env):
    assert len(run(env, env["tmp"] / "s.jsonl", batch_size=3, max_examples=0)) == N  # 0 = all
    seen_ids = torch.cat([c["ids"] for c in ScriptedMethod.calls])
    seen_cond = torch.cat([c["cond"] for c in ScriptedMethod.calls])
    ids, cond = torch.from_numpy(env["ids"]).long(), torch.from_numpy(env["cond"]).bool()
    assert torch.equal(seen_cond, cond)
    assert torch.equal(seen_ids[cond], ids[cond])  # the given positions are shown
    assert (seen_ids[~cond] == SPECIALS["pad"]).all()  # the answers are not
    assert (ids[~cond] != SPECIALS["pad"]).any()  # (the test data does have answers to hide)


def test_same_seed_same_file_other_seed_differs(env):
    def strip(rows):
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]

    a = run(env, env["tmp"] / "a.jsonl", seed=3)
    b = run(env, env["tmp"] / "b.jsonl", seed=3)
    c = run(env, env["tmp"] / "c.jsonl", seed=4)
    assert strip(a) == strip(b)
    assert [r["hypothesis_ids"] for r in a] != [r["hypothesis_ids"] for r in c]


def test_cli(env, monkeypatch, caplog):
    out = env["tmp"] / "cli" / "seed1.jsonl"
    args = [
        "--ckpt",
        str(env["ckpt"]),
        "--data",
        str(env["data"]),
        "--tokenizer",
        "tok.json",
        "--prepared",
        str(env["prepared"]),
        "--split",
        "test",
        "--sampler-name",
        "anc",
        "--sampler-json",
        '{"kind": "ancestral", "top_k": 0}',
        "--nfe",
        "4",
        "--seed",
        "1",
        "--max-examples",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert sample.main(args) == 0
    rows = read_jsonl(out)
    assert len(rows) == 3 and rows[0]["nfe"] == 3 and rows[0]["sampler"] == "anc"
    assert ScriptedMethod.calls[0]["opts"] == {"top_k": 0}
    bad = list(args)
    bad[bad.index("--sampler-json") + 1] = "{"
    assert sample.main(bad) == 2  # bad input: logged, exit status 2
    # disk full while writing: the message names the samples file, the old one is kept, status 1
    before = out.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as mp, caplog.at_level("ERROR"):
        mp.setattr(os, "fsync", full)
        assert sample.main(args) == 1
    assert f"cannot write {out}: No space left on device" in caplog.text
    assert "the previous file is kept" in caplog.text
    assert out.read_bytes() == before and sorted(out.parent.iterdir()) == [out]


def test_bad_inputs_are_reported(env):
    out = env["tmp"] / "bad.jsonl"
    with pytest.raises(InputError, match="has no sampler 'euler'"):
        run(env, out, kind="euler")
    rows = read_jsonl(env["prepared"])[1:]  # drop one id
    env["prepared"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"test\.jsonl: no row with id 'toy/test/6'"):
        run(env, out)
    ck = torch.load(env["ckpt"], weights_only=True)
    ck["layout"] = "halves"
    torch.save(ck, env["ckpt"])
    with pytest.raises(InputError, match="trained with layout='halves'"):
        run(env, out)
    assert not out.exists()


def test_weights_option_picks_the_checkpoint_weights(env):
    """``"weights"`` in the sampler config selects raw / EMA weights and is not a method option."""
    torch.manual_seed(1)
    alt = {"raw": Scorer().state_dict(), "ema0.999": Scorer().state_dict()}
    alt["ema0.9999"] = Scorer().state_dict()
    ck = torch.load(env["ckpt"], weights_only=True)
    ck.update(state_dict=alt["ema0.9999"], weights="ema0.9999", alt_state_dicts=alt)
    torch.save(ck, env["ckpt"])

    def sampled_with(weights):
        ScriptedMethod.calls = []
        extra = {} if weights is None else {"weights": weights}
        run(env, env["tmp"] / f"{weights}.jsonl", kind="greedy", extra=extra, max_examples=2)
        assert ScriptedMethod.calls and all(
            c["opts"] == {"temperature": 0.7} for c in ScriptedMethod.calls
        )  # popped before the method sees the options
        return ScriptedMethod.calls[0]["emb"]

    for name in ("raw", "ema0.999", "ema0.9999"):
        assert torch.equal(sampled_with(name), alt[name]["emb.weight"]), name
    assert torch.equal(sampled_with(None), alt["ema0.9999"]["emb.weight"])  # the main weights
    assert not torch.equal(alt["raw"]["emb.weight"], alt["ema0.999"]["emb.weight"])

    out = env["tmp"] / "bad.jsonl"
    with pytest.raises(InputError, match=r"no weights 'ema0\.99'; available: \['ema0\.999', "):
        run(env, out, extra={"weights": "ema0.99"})
    with pytest.raises(InputError, match="--sampler-json weights must be a string"):
        run(env, out, extra={"weights": 0.999})
    assert not out.exists()


def test_weights_option_needs_alternates(env):
    """A checkpoint without alt_state_dicts has only its main weights."""
    assert len(run(env, env["tmp"] / "ok.jsonl", extra={"weights": "raw"})) == N  # its main name
    with pytest.raises(InputError, match=r"no weights 'ema0\.999'.*train\.ema as a list"):
        run(env, env["tmp"] / "bad.jsonl", extra={"weights": "ema0.999"})


def test_generated_ids():
    row = np.array([5, 9, 3, 7, 0, 6, 8])
    cond = np.array([1, 1, 1, 0, 0, 0, 0])
    assert sample.generated_ids(row, cond, eos=6, pad=0) == [7]
    assert sample.generated_ids(row, cond, eos=None, pad=0) == [7, 6, 8]
