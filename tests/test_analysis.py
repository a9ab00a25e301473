"""Tests of ``Method.loss_at_t`` and the ``loss-vs-t`` analysis (:mod:`repro.analysis`).

Tiny EmbeddingFM / DiffuSeq models are trained (or left untrained) in-process and saved in the
documented checkpoint format beside a tokenized directory written with numpy, so the CLI runs
exactly as the pipeline would run it, without Lightning's start-up cost.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from repro import analysis, methods
from repro.io import InputError
from repro.methods.base import Batch, Method
from repro.methods.diffuseq import DiffuSeq
from repro.methods.embedding_fm import EmbeddingFM
from repro.train.checkpoint import CKPT_FORMAT

SPECIALS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "bos": 5, "eos": 6}
IDS = dict(pad_id=0, bos_id=5, eos_id=6, sep_id=3, mask_id=4)
V, H = 23, 8
L = 2 * H  # halves: source in 0…H−1, target in H…L−1
T = 20  # DiffuSeq diffusion steps
#: target token = MAP[source token] with probability 0.7, else uniform: x₁ is uncertain given the
#: source, as in a real seq2seq task, so the FM loss at t = 0 cannot fall to zero
MAP = torch.arange(V)
MAP[7:] = torch.roll(torch.arange(7, V), 5)
FM_CFG = dict(
    d_model=32, n_layers=2, n_heads=4, emb_dim=16, time_dim=32, embeddings="random", **IDS
)
DS_CFG = dict(d_model=32, n_layers=2, n_heads=4, emb_dim=8, dropout=0.0, diffusion_steps=T, **IDS)


def halves_rows(n: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(7, V, (n, H), generator=g)
    noisy = torch.rand(n, H, generator=g) < 0.3
    trg = torch.where(noisy, torch.randint(7, V, (n, H), generator=g), MAP[src])
    cond = torch.zeros(n, L, dtype=torch.bool)
    cond[:, :H] = True
    return Batch(torch.cat([src, trg], dim=1), cond)


def write_tokenized(root: Path, layout: str, n_val: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    batch = halves_rows(n_val, seed=123)
    np.save(root / "validation.ids.npy", batch.ids.numpy().astype(np.int32))
    np.save(root / "validation.cond.npy", batch.cond.numpy().astype(np.uint8))
    meta = {
        "layout": layout,
        "options": {},
        "seq_len": L,
        "vocab_size": V,
        "specials": SPECIALS,
        "tokenizer_sha256": "0" * 64,
        "splits": {"validation": {"n": n_val, "row_ids": [f"toy/{i}" for i in range(n_val)]}},
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def save_ckpt(path: Path, method: str, cfg: dict, model: nn.Module, layout: str) -> Path:
    torch.save(
        {
            "format": CKPT_FORMAT,
            "method": method,
            "model": dict(cfg),
            "train": {"steps": 1},
            "vocab_size": V,
            "seq_len": L,
            "layout": layout,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "weights": "raw",
            "step": 1,
            "val_loss": None,
            "specials": SPECIALS,
            "tokenizer_sha256": "0" * 64,
        },
        path,
    )
    return path


def build_fm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return EmbeddingFM().build_model(dict(FM_CFG), vocab_size=V, seq_len=L)


def build_ds(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return DiffuSeq().build_model(dict(DS_CFG), vocab_size=V, seq_len=L)


def randomise_head(model: nn.Module) -> None:
    """EmbeddingFM's output layer is zero-initialised; give it weights so v ≠ 0."""
    g = torch.Generator().manual_seed(1)
    head = model.net.final.head
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
        head.bias.copy_(torch.randn(head.bias.shape, generator=g) * 0.3)


@pytest.fixture(scope="module")
def fm_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An EmbeddingFM model trained 150 steps (a few seconds on one thread), and its data."""
    root = tmp_path_factory.mktemp("fm")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        method, model = EmbeddingFM(), build_fm()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(150):
            torch.manual_seed(1000 + step)  # as the training loop: reseed before every step
            loss = method.loss(model, halves_rows(64, seed=step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return {
        "ckpt": save_ckpt(root / "fm.ckpt", "embedding_fm", FM_CFG, model, "halves"),
        "untrained": save_ckpt(root / "fm0.ckpt", "embedding_fm", FM_CFG, build_fm(), "halves"),
        "data": write_tokenized(root / "tok" / "halves", "halves"),
        "final_loss": loss.item(),
    }


def run(ckpt: Path, data: Path, out: Path, *extra: str) -> int:
    return analysis.main(
        ["loss-vs-t", "--ckpt", str(ckpt), "--data", str(data), "--out", str(out), *extra]
    )


# ------------------------------------------------------------------------------------------------
# Method.loss_at_t
# ------------------------------------------------------------------------------------------------


def test_base_method_has_no_loss_at_t():
    class Bare(Method):
        name = "bare"

    with pytest.raises(NotImplementedError, match="'bare' has no loss_at_t; the loss_vs_t"):
        Bare().loss_at_t(nn.Linear(1, 1), halves_rows(2, 0), torch.zeros(2))


def test_fm_loss_at_t_averages_to_the_training_loss():
    method, model = EmbeddingFM(), build_fm()
    randomise_head(model)
    batch = halves_rows(6, seed=3)
    torch.manual_seed(7)
    loss = method.loss(model, batch)
    torch.manual_seed(7)
    t = torch.rand(6)  # the loss draws t first, then z: the same stream
    per = method.loss_at_t(model, batch, t)
    assert per.shape == (6,)
    assert per.mean().item() == pytest.approx(loss.item(), rel=1e-6)
    assert loss.item() > 0.1  # v ≠ 0: not a trivial match


def test_fm_loss_at_t_is_the_velocity_mse_over_both_halves():
    method, model = EmbeddingFM(), build_fm()  # zero head: v = 0
    batch = halves_rows(4, seed=5)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.manual_seed(2)
    per = method.loss_at_t(model, batch, t)
    torch.manual_seed(2)
    z = torch.randn(4, L, FM_CFG["emb_dim"])
    x1 = model.embedding[batch.ids]
    target = x1 - torch.where(batch.cond[..., None], x1, z)  # 0 on the source half
    assert torch.allclose(per, target.square().mean((1, 2)), rtol=1e-6)


def test_fm_loss_at_t_leaves_out_the_rounding_ce():
    method = EmbeddingFM()
    torch.manual_seed(0)
    model = method.build_model(dict(FM_CFG, embeddings="trained"), vocab_size=V, seq_len=L)
    batch = halves_rows(4, seed=1)
    torch.manual_seed(4)
    total = method.loss(model, batch)
    torch.manual_seed(4)
    per = method.loss_at_t(model, batch, torch.rand(4))
    assert total.item() > per.mean().item() + 0.1  # + emb_loss_weight × CE (log V-ish at init)


def test_loss_at_t_rejects_bad_times():
    batch = halves_rows(3, seed=0)
    for method, model in ((EmbeddingFM(), build_fm()), (DiffuSeq(), build_ds())):
        with pytest.raises(ValueError, match="shape"):
            method.loss_at_t(model, batch, torch.zeros(2))
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            method.loss_at_t(model, batch, torch.tensor([0.0, 0.5, 1.5]))


def test_diffuseq_loss_at_t_is_the_mse_term_of_the_training_loss():
    method, model = DiffuSeq(), build_ds()
    model.eval()  # the loss-aware history stays untouched; dropout is 0 anyway
    batch = halves_rows(5, seed=2)
    torch.manual_seed(9)
    loss = method.loss(model, batch)
    torch.manual_seed(9)
    steps, weights = model.sample_timesteps(5)
    terms = method.loss_terms(model, batch.ids, batch.cond, steps)
    assert (terms["loss"] * weights).mean().item() == pytest.approx(loss.item(), rel=1e-6)
    torch.manual_seed(9)
    steps_again, _ = model.sample_timesteps(5)  # same RNG position for ε₀, ε
    per = method.loss_at_t(model, batch, steps_again.double() / (T - 1))
    assert torch.allclose(per, terms["mse"], rtol=1e-6, atol=0)


def test_diffuseq_loss_at_t_maps_t_to_round_t_times_T_minus_1():
    method, model = DiffuSeq(), build_ds()
    seen: list[torch.Tensor] = []
    model.register_forward_hook(lambda mod, args, out: seen.append(args[1].clone()))
    t = torch.tensor([0.0, 0.5, 0.97, 1.0, 0.026])
    method.loss_at_t(model, halves_rows(5, seed=0), t)
    assert seen[0].tolist() == [0, 10, 18, 19, 0]  # 9.5 → 10 (half to even), 0.494 → 0
    assert model.loss_counts.sum().item() == 0  # never enters the loss-aware history


# ------------------------------------------------------------------------------------------------
# the loss-vs-t CLI
# ------------------------------------------------------------------------------------------------


def test_cli_output_of_a_trained_fm_model(fm_env, tmp_path):
    out = tmp_path / "analysis" / "loss_vs_t.json"
    args = ["--bins", "11", "--max-examples", "32", "--batch-size", "12", "--seed", "0"]
    assert run(fm_env["ckpt"], fm_env["data"], out, *args) == 0
    rec = json.loads(out.read_text())
    assert set(rec) >= {
        "t",
        "loss",
        "loss_std",
        "n_examples",
        "method",
        "checkpoint",
        "seed",
        "split",
    }
    assert rec["t"] == pytest.approx(np.linspace(0, 1, 11).tolist()) and rec["t"][-1] == 1.0
    assert len(rec["loss"]) == len(rec["loss_std"]) == 11
    assert rec["n_examples"] == 32 and rec["method"] == "embedding_fm"
    assert rec["split"] == "validation" and rec["seed"] == 0
    assert rec["checkpoint"] == str(fm_env["ckpt"])
    assert all(np.isfinite(rec["loss"])) and all(s >= 0 for s in rec["loss_std"])
    loss = dict(zip(np.round(rec["t"], 6), rec["loss"]))
    # Trained FM: the loss is concentrated at small t (FM-seq2seq Fig. 8) — t = 0 is far above
    # the interior, where x_t identifies x₁ and hence z. (Untrained: flat ≈ 1.0, see below.)
    interior = min(loss[t] for t in (0.5, 0.6, 0.7, 0.8))
    assert loss[0.0] > 1.3 * interior, rec["loss"]
    assert loss[0.0] < 0.9  # learnt something: the untrained model's loss is ≈ 1.0
    # t = 1 exactly is degenerate (x_t = x₁ holds no trace of z): ≥ E[z²]/2 ≈ 0.5 for any model
    assert loss[1.0] > 0.4


def test_untrained_fm_curve_is_flat_since_noise_is_shared_across_t(fm_env, tmp_path):
    out = tmp_path / "flat.json"
    args = ["--bins", "5", "--max-examples", "0", "--batch-size", "16"]
    assert run(fm_env["untrained"], fm_env["data"], out, *args) == 0
    rec = json.loads(out.read_text())
    assert rec["n_examples"] == 40  # 0 = every row
    # v ≡ 0 (zero-initialised head): the loss is |x₁ − x₀|², the same z at every t ⇒ equal
    assert np.ptp(rec["loss"]) < 1e-6 * rec["loss"][0]
    assert 0.7 < rec["loss"][0] < 1.3  # (E[w]² + z²)/2 on N(0, 1) entries


def test_cli_is_deterministic_and_seeded(fm_env, tmp_path):
    common = ["--bins", "4", "--max-examples", "20", "--batch-size", "8", "--t-max", "0.9"]
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    torch.manual_seed(123)  # the global RNG's state going in does not matter
    assert run(fm_env["ckpt"], fm_env["data"], a, *common, "--seed", "3") == 0
    torch.manual_seed(456)
    assert run(fm_env["ckpt"], fm_env["data"], b, *common, "--seed", "3") == 0
    assert run(fm_env["ckpt"], fm_env["data"], c, *common, "--seed", "4") == 0
    assert a.read_bytes() == b.read_bytes()
    ra, rc = json.loads(a.read_text()), json.loads(c.read_text())
    assert ra["t"] == pytest.approx([0.0, 0.3, 0.6, 0.9]) and ra["seed"] == 3
    assert ra["loss"] != rc["loss"]


def test_cli_matches_loss_at_t_called_directly(fm_env, tmp_path):
    """The documented noise recipe: per batch a seed from Generator(seed), reseeded before each t."""
    out = tmp_path / "r.json"
    assert run(fm_env["ckpt"], fm_env["data"], out, "--bins", "3", "--max-examples", "10") == 0
    rec = json.loads(out.read_text())
    method, model, _ = analysis.load_model(fm_env["ckpt"])
    ids = torch.from_numpy(np.load(fm_env["data"] / "validation.ids.npy")[:10].astype(np.int64))
    cond = torch.from_numpy(np.load(fm_env["data"] / "validation.cond.npy")[:10] != 0)
    batch_seed = int(torch.randint(1 << 62, (), generator=torch.Generator().manual_seed(0)))
    with torch.inference_mode():
        for t, want in zip(rec["t"], rec["loss"]):
            torch.manual_seed(batch_seed)
            per = method.loss_at_t(model, Batch(ids, cond), torch.full((10,), t))
            assert per.mean().item() == pytest.approx(want, rel=1e-5)


def test_cli_runs_diffuseq(tmp_path):
    data = write_tokenized(tmp_path / "tok" / "diffuseq", "diffuseq", n_val=10)
    ckpt = save_ckpt(tmp_path / "ds.ckpt", "diffuseq", DS_CFG, build_ds(), "diffuseq")
    out = tmp_path / "ds.json"
    assert run(ckpt, data, out, "--bins", "3", "--batch-size", "4") == 0
    rec = json.loads(out.read_text())
    assert rec["method"] == "diffuseq" and rec["n_examples"] == 10
    assert rec["t"] == [0.0, 0.5, 1.0] and all(np.isfinite(rec["loss"]))


# ------------------------------------------------------------------------------------------------
# input errors: logged, exit status 2, no output file
# ------------------------------------------------------------------------------------------------


def test_missing_checkpoint(fm_env, tmp_path, caplog):
    out = tmp_path / "x.json"
    assert run(tmp_path / "nope.ckpt", fm_env["data"], out) == 2
    assert "nope.ckpt: checkpoint not found" in caplog.text
    assert not out.exists()


def test_unknown_split(fm_env, tmp_path, caplog):
    out = tmp_path / "x.json"
    assert run(fm_env["ckpt"], fm_env["data"], out, "--split", "dev") == 2
    assert "dev.ids.npy: file not found" in caplog.text
    assert not out.exists()
    with pytest.raises(InputError, match="split name"):
        analysis.loss_vs_t(fm_env["ckpt"], fm_env["data"], "../validation", out)


def test_layout_mismatch(fm_env, tmp_path, caplog):
    data = write_tokenized(tmp_path / "tok" / "diffuseq", "diffuseq", n_val=4)
    assert run(fm_env["ckpt"], data, tmp_path / "x.json") == 2
    assert "trained with layout='halves'" in caplog.text


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--bins", "1"], "--bins must be an integer >= 2"),
        (["--batch-size", "0"], "--batch-size must be"),
        (["--max-examples", "-1"], "--max-examples must be"),
        (["--t-max", "0"], r"--t-max must be a number in \(0, 1\]"),
        (["--t-max", "1.5"], "--t-max must be"),
    ],
)
def test_bad_options(fm_env, tmp_path, caplog, extra, message):
    assert run(fm_env["ckpt"], fm_env["data"], tmp_path / "x.json", *extra) == 2
    assert any(re.search(message, r.getMessage()) for r in caplog.records), caplog.text


class NoLossAtT(Method):
    name = "no_loss_at_t"
    samplers = ()

    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        return nn.Linear(2, 2)


def test_method_without_loss_at_t(fm_env, tmp_path, monkeypatch, caplog):
    real = methods.get_method
    monkeypatch.setattr(
        methods,
        "get_method",
        lambda name: NoLossAtT() if name == "no_loss_at_t" else real(name),
    )
    ckpt = save_ckpt(tmp_path / "m.ckpt", "no_loss_at_t", {}, nn.Linear(2, 2), "halves")
    out = tmp_path / "x.json"
    assert run(ckpt, fm_env["data"], out) == 2
    assert "method 'no_loss_at_t' has no loss_at_t; the loss_vs_t analysis needs it" in caplog.text
    assert not out.exists()
