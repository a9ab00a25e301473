"""Tests of DiffuSeq (:mod:`repro.methods.diffuseq`, methods.md §1).

Schedule numbers, the loss-aware importance sampler, the loss terms, every sampler's exact NFE,
anchoring, clamping and determinism; the learning test at the end is the correctness proof: a tiny
model trained with this loss and decoded with DDPM solves a reversal task it never saw.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.io import InputError
from repro.methods.base import Batch
from repro.methods.diffuseq import (
    HISTORY_PER_TERM,
    UNIFORM_PROB,
    DiffuSeq,
    DiffuSeqModel,
    Schedule,
    respaced_steps,
    sqrt_betas,
)

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)
V, L, E, T = 20, 16, 8, 20
IDS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, sep_id=SEP, mask_id=MASK)


def build(seed: int = 0, **overrides) -> DiffuSeqModel:
    cfg = dict(d_model=32, n_layers=2, n_heads=4, emb_dim=E, dropout=0.0, diffusion_steps=T, **IDS)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return DiffuSeq().build_model(cfg, vocab_size=V, seq_len=L)


def diffuseq_batch(src_lens=(3, 5, 4), seed: int = 0) -> Batch:
    """``[CLS] src [SEP] [SEP] [CLS] trg [SEP] [PAD]…`` rows, cond on ``[CLS] src [SEP] [SEP]``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(src_lens), L), PAD)
    cond = torch.zeros(len(src_lens), L, dtype=torch.bool)
    for i, n in enumerate(src_lens):
        src, trg = torch.randint(7, V, (n,), generator=g), torch.randint(7, V, (n,), generator=g)
        row = torch.cat([torch.tensor([CLS]), src, torch.tensor([SEP, SEP, CLS]), trg,
                         torch.tensor([SEP])])
        ids[i, : len(row)] = row
        cond[i, : n + 3] = True
    return Batch(ids, cond)


def prompt_only(batch: Batch) -> Batch:
    """What the sample stage passes: non-given positions hold [PAD], never the answer."""
    return Batch(torch.where(batch.cond, batch.ids, PAD), batch.cond)


def record_calls(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(z, t) of every forward pass of ``model``."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.register_forward_hook(lambda mod, args, out: calls.append((args[0].clone(), args[1])))
    return calls


# ------------------------------------------------------------------------------------------------
# interface, build_model
# ------------------------------------------------------------------------------------------------


def test_interface_and_layout():
    method = DiffuSeq()
    assert method.name == "diffuseq"
    assert method.samplers == ("ddpm", "ddim_gap", "ddim_respaced")
    assert method.layout("seq2seq") == "diffuseq"
    for kind in ("text", "code"):
        with pytest.raises(InputError, match="seq2seq"):
            method.layout(kind)


def test_build_model_validation_and_specials():
    model = build()
    assert model.pad_id == PAD and model.eos_id == EOS and model.T == T
    assert model.word_emb.weight.shape == (V, E)
    assert abs(model.word_emb.weight.std().item() - 1.0) < 0.3  # E ~ N(0, 1)
    base = dict(d_model=32, n_layers=1, n_heads=4, pad_id=PAD)
    for bad, match in [
        ({"d_modle": 32}, "unknown key"),
        ({"schedule": "linear"}, "schedule"),
        ({"diffusion_steps": 1}, "diffusion_steps"),
        ({"emb_dim": 0}, "emb_dim"),
        ({"pad_id": V}, "pad_id"),
        ({"n_heads": 5}, "divisible"),
    ]:
        with pytest.raises(InputError, match=match):
            DiffuSeq().build_model({**base, **bad}, V, L)
    with pytest.raises(InputError, match="n_layers"):
        DiffuSeq().build_model(dict(d_model=32, n_heads=4, pad_id=PAD), V, L)
    with pytest.raises(InputError, match="pad_id"):
        DiffuSeq().build_model(dict(d_model=32, n_layers=1, n_heads=4), V, L)


def test_forward_shape_and_time_dependence():
    model = build().eval()
    z = torch.randn(2, L, E)
    out0 = model(z, torch.tensor([0, 0]))
    out1 = model(z, torch.tensor([T - 1, T - 1]))
    assert out0.shape == (2, L, E)
    assert not torch.allclose(out0, out1)


def test_state_dict_holds_sampler_history_and_roundtrips():
    model = build()
    model.loss_history.uniform_(0.5, 2.0)
    model.loss_counts.fill_(HISTORY_PER_TERM)
    sd = model.state_dict()
    assert {"loss_history", "loss_counts", "word_emb.weight", "lm_bias"} <= set(sd)
    assert "sqrt_ab" not in sd  # fixed schedule tables are rebuilt from the cfg
    fresh = build(seed=1)
    fresh.load_state_dict(sd, strict=True)
    assert torch.equal(fresh.timestep_probs(), model.timestep_probs())


# ------------------------------------------------------------------------------------------------
# schedule (methods.md §1.3)
# ------------------------------------------------------------------------------------------------


def test_sqrt_schedule_numbers():
    sch = Schedule(sqrt_betas(2000))
    ab = sch.ab
    assert ab[0] == pytest.approx(0.98536, abs=1e-5)
    assert math.sqrt(1 - ab[0]) == pytest.approx(0.121, abs=1e-3)
    assert ab[100] == pytest.approx(0.783, abs=1e-3)
    assert ab[500] == pytest.approx(0.504, abs=1e-3)
    assert ab[1000] == pytest.approx(0.295, abs=1e-3)
    assert ab[1900] == pytest.approx(0.025, abs=1e-3)
    assert ab[1999] == pytest.approx(2e-7, rel=0.05)
    clipped = np.flatnonzero(sch.betas >= 0.999)
    assert clipped.tolist() == [1999]  # only the last β hits the clip
    assert np.all(np.diff(ab) < 0)


def test_posterior_coefficients():
    sch = Schedule(sqrt_betas(50))
    # the posterior mean at i = 0 is x̂₀ itself; elsewhere it is the standard DDPM posterior
    assert sch.coef1[0] == pytest.approx(1.0) and sch.coef2[0] == pytest.approx(0.0)
    i = 17
    ab, abp, beta = sch.ab[i], sch.ab[i - 1], sch.betas[i]
    assert sch.coef1[i] == pytest.approx(beta * math.sqrt(abp) / (1 - ab))
    assert sch.coef2[i] == pytest.approx((1 - abp) * math.sqrt(1 - beta) / (1 - ab))
    assert sch.var_large[i] == pytest.approx(beta)
    assert sch.var_large[0] == pytest.approx(sch.betas[1] * (1 - sch.ab[0]) / (1 - sch.ab[1]))


# ------------------------------------------------------------------------------------------------
# loss-aware importance sampler (methods.md §1.5)
# ------------------------------------------------------------------------------------------------


def reference_fifo(ts, losses, steps):
    """A plain sequential re-statement of the per-t FIFO of the last 10 losses."""
    history = [[] for _ in range(steps)]
    for t, loss in zip(ts, losses):
        history[t] = (history[t] + [loss])[-HISTORY_PER_TERM:]
    return history


def test_history_update_matches_a_sequential_fifo():
    model = build()
    rng = np.random.default_rng(0)
    ts_all, ls_all = [], []
    for _ in range(6):  # batches with many repeated t, so FIFOs overflow within one batch
        ts = rng.integers(0, T, size=40)
        ls = rng.random(40)
        model.update_loss_history(torch.from_numpy(ts), torch.from_numpy(ls))
        ts_all += ts.tolist()
        ls_all += ls.tolist()
        expected = reference_fifo(ts_all, ls_all, T)
        counts = model.loss_counts.tolist()
        for t in range(T):
            assert counts[t] == len(expected[t])
            assert model.loss_history[t, : counts[t]].tolist() == pytest.approx(expected[t])
            assert model.loss_history[t, counts[t] :].abs().sum() == 0


def test_sampler_is_uniform_until_every_t_is_full_then_loss_aware():
    model = build()
    model.loss_history.copy_(torch.rand(T, HISTORY_PER_TERM, dtype=torch.float64) + 0.1)
    model.loss_counts.fill_(HISTORY_PER_TERM)
    model.loss_counts[3] = HISTORY_PER_TERM - 1
    p = model.timestep_probs()
    assert torch.allclose(p, torch.full((T,), 1.0 / T, dtype=torch.float64))
    torch.manual_seed(0)
    t, w = model.sample_timesteps(64)
    assert torch.all(w == 1.0) and t.min() >= 0 and t.max() < T
    model.update_loss_history(torch.tensor([3]), torch.tensor([5.0]))  # t = 3 now holds 10
    p = model.timestep_probs()
    rms = model.loss_history.square().mean(-1).sqrt()
    expected = rms / rms.sum() * (1 - UNIFORM_PROB) + UNIFORM_PROB / T
    assert torch.allclose(p, expected) and not torch.allclose(p, torch.full_like(p, 1.0 / T))
    assert p.argmax().item() == 3 and p.sum().item() == pytest.approx(1.0)


def test_importance_weights_are_unbiased_exactly():
    model = build()
    model.loss_history.copy_(torch.rand(T, HISTORY_PER_TERM, dtype=torch.float64) ** 3)
    model.loss_counts.fill_(HISTORY_PER_TERM)
    p = model.timestep_probs()
    w = 1.0 / (T * p)  # the weight sample_timesteps attaches to each t
    f = torch.randn(T, dtype=torch.float64) + torch.arange(T)  # any fixed per-t loss
    assert (p * w * f).sum().item() == pytest.approx(f.mean().item(), rel=1e-12)
    # and the weights sample_timesteps returns are exactly 1/(T·p_t) of the drawn t
    torch.manual_seed(1)
    t, wt = model.sample_timesteps(5000)
    assert torch.allclose(wt.double(), w[t], rtol=1e-6)
    freq = torch.bincount(t, minlength=T).double() / 5000
    assert (freq - p).abs().max().item() < 0.03


def test_timesteps_come_from_the_global_rng():
    model = build()
    torch.manual_seed(7)
    a = model.sample_timesteps(32)[0]
    torch.manual_seed(7)
    b = model.sample_timesteps(32)[0]
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------
# loss (methods.md §1.4)
# ------------------------------------------------------------------------------------------------


def expected_terms(model, batch, t, seed):
    """The §1.4 terms re-derived by hand, drawing the same noise in the same order."""
    torch.manual_seed(seed)
    x_mean = model.word_emb(batch.ids)
    sch = model.schedule
    z0 = x_mean + math.sqrt(1 - sch.ab[0]) * torch.randn_like(x_mean)
    eps = torch.randn_like(z0)
    a = torch.tensor(sch.ab, dtype=torch.float32)[t].sqrt()[:, None, None]
    zt = a * z0 + (1 - a**2).sqrt() * eps
    zt = torch.where(batch.cond[..., None], z0, zt)
    out = model(zt, t)
    target = torch.where((t == 0)[:, None, None], x_mean, z0)
    mse = ((target - out) ** 2).mean((1, 2))
    logits = z0 @ model.word_emb.weight.T + model.lm_bias
    nll = F.cross_entropy(logits.transpose(1, 2), batch.ids, reduction="none").mean(1)
    prior = ((math.sqrt(sch.ab[-1]) * z0) ** 2).mean((1, 2))
    return mse, nll, prior


def test_loss_terms_follow_the_code_including_the_t0_branch():
    model = build()
    batch = diffuseq_batch()
    t = torch.tensor([0, 7, T - 1])
    torch.manual_seed(3)
    terms = DiffuSeq().loss_terms(model, batch.ids, batch.cond, t)
    mse, nll, prior = expected_terms(model, batch, t, seed=3)
    assert torch.allclose(terms["mse"], mse, atol=1e-5)
    assert torch.allclose(terms["decoder_nll"], nll, atol=1e-5)
    assert torch.allclose(terms["tT"], prior, atol=1e-9)
    assert torch.allclose(terms["loss"], mse + nll + prior, atol=1e-5)
    # the t = 0 branch really differs from the plain mse against z₀
    torch.manual_seed(3)
    plain = expected_terms(model, batch, torch.tensor([1, 7, T - 1]), seed=3)[0]
    assert not torch.isclose(terms["mse"][0], plain[0])


def test_loss_is_finite_differentiable_and_updates_history_in_training_only():
    model = build()
    batch = diffuseq_batch()
    method = DiffuSeq()
    model.train()
    torch.manual_seed(0)
    loss = method.loss(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.word_emb.weight.grad.abs().sum() > 0  # E learns (mse target, input and CE)
    assert model.lm_bias.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    assert model.loss_counts.sum().item() == 3
    model.eval()
    with torch.no_grad():
        method.loss(model, batch)
    assert model.loss_counts.sum().item() == 3  # validation leaves the sampler state alone
    # same global seed, same loss (t and ε come from the global RNG)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    a = method.loss(model, batch)
    model.load_state_dict(state)
    torch.manual_seed(5)
    b = method.loss(model, batch)
    assert torch.equal(a, b)


def test_loss_rejects_rows_longer_than_the_model():
    model = build()
    batch = Batch(torch.zeros(2, L + 1, dtype=torch.long), torch.zeros(2, L + 1, dtype=torch.bool))
    with pytest.raises(InputError, match="seq_len"):
        DiffuSeq().loss(model, batch)


# ------------------------------------------------------------------------------------------------
# sampling (methods.md §1.7)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler,nfe,expected",
    [
        ("ddpm", T, T),
        ("ddim_gap", 1, 1),
        ("ddim_gap", 4, 4),  # g = 5: t = 19, 14, 9, 4
        ("ddim_gap", 10, 10),  # g = 2
        ("ddim_gap", 5, 5),
        ("ddim_gap", T, T),  # = DDPM, as DiffuSeq's decode script
        ("ddim_respaced", 1, 1),
        ("ddim_respaced", 7, 7),
        ("ddim_respaced", T, T),
    ],
)
def test_nfe_equals_counted_network_calls(sampler, nfe, expected):
    model = build()
    calls = record_calls(model)
    batch = diffuseq_batch()
    out = DiffuSeq().sample(model, prompt_only(batch), nfe, sampler, torch.Generator().manual_seed(0))
    assert out.nfe == len(calls) == expected
    assert torch.equal(out.ids[batch.cond], batch.ids[batch.cond])  # given positions unchanged
    assert out.ids.shape == batch.ids.shape and out.ids.dtype == torch.int64
    steps = [int(t[0]) for _, t in calls]
    T_ = model.T
    if sampler == "ddim_gap" and nfe < T_:
        assert steps == list(range(T_ - 1, -1, -(T_ // nfe)))
    elif sampler == "ddim_respaced":
        assert steps == respaced_steps(T_, nfe)
        assert steps[0] == T_ - 1 and len(set(steps)) == nfe
    else:
        assert steps == list(range(T_ - 1, -1, -1))


def test_nfe_errors_and_options():
    model = build()
    cond = prompt_only(diffuseq_batch())
    g = torch.Generator()
    method = DiffuSeq()
    with pytest.raises(InputError, match="exactly T"):
        method.sample(model, cond, T - 1, "ddpm", g)
    for sampler in ("ddim_gap", "ddim_respaced"):
        with pytest.raises(InputError, match="at most"):
            method.sample(model, cond, T + 1, sampler, g)
    with pytest.raises(InputError, match="positive"):
        method.sample(model, cond, 0, "ddim_gap", g)
    # gap g = T // nfe visits ⌈T / g⌉ steps: nfe 3 and 7 at T = 20 would make 4 and 10 calls
    for nfe, calls in ((3, 4), (7, 10)):
        with pytest.raises(InputError, match=f"makes {calls} network calls, not nfe = {nfe}"):
            method.sample(model, cond, nfe, "ddim_gap", g)
    with pytest.raises(ValueError, match="no sampler"):
        method.sample(model, cond, T, "euler", g)
    with pytest.raises(InputError, match="unknown"):
        method.sample(model, cond, T, "ddpm", g, temperature=1.0)
    with pytest.raises(InputError, match="clamp"):
        method.sample(model, cond, T, "ddpm", g, clamp="yes")
    with pytest.raises(InputError, match="top_p"):
        method.sample(model, cond, 4, "ddim_gap", g, top_p=1.0)


@pytest.mark.parametrize("sampler,nfe", [("ddpm", T), ("ddim_gap", 4), ("ddim_respaced", 4)])
def test_anchoring_source_positions_hold_the_clean_embedding_at_every_call(sampler, nfe):
    model = build()
    batch = diffuseq_batch()
    calls = record_calls(model)
    DiffuSeq().sample(model, prompt_only(batch), nfe, sampler, torch.Generator().manual_seed(0))
    clean = model.word_emb(batch.ids).detach()  # (B, L, E)
    given = batch.cond[..., None].expand_as(clean)
    for z, _ in calls:
        assert torch.equal(z[given], clean[given])
        assert not torch.allclose(z[~given], clean[~given])  # the target part is a latent


def test_answer_positions_are_never_read():
    model = build()
    batch = diffuseq_batch()
    leaked = Batch(batch.ids, batch.cond)  # the answer visible at non-given positions
    a = DiffuSeq().sample(model, prompt_only(batch), T, "ddpm", torch.Generator().manual_seed(3))
    b = DiffuSeq().sample(model, leaked, T, "ddpm", torch.Generator().manual_seed(3))
    assert torch.equal(a.ids, b.ids)


def test_rounding_is_brute_force_nearest_neighbour():
    model = build()
    x = torch.randn(3, L, E) * 1.5
    ids = model.nearest_ids(x)
    emb = model.word_emb.weight.detach().double()
    brute = torch.cdist(x.double().reshape(-1, E), emb).argmin(-1).view(3, L)
    assert torch.equal(ids, brute)
    # tiny blocks give the same answer (the search is chunked for large vocabularies)
    import repro.methods.diffuseq as mod

    old, mod.ROUND_BLOCK = mod.ROUND_BLOCK, 3 * V
    try:
        assert torch.equal(model.nearest_ids(x), brute)
    finally:
        mod.ROUND_BLOCK = old


def test_clamping_feeds_embedding_rows_to_the_update():
    """With clamp, DDIM at the last visited step t = 0 returns exact rows of E; decode = their ids."""
    model = build()
    method = DiffuSeq()
    batch = diffuseq_batch()
    seen: list[torch.Tensor] = []
    orig = method._x0

    def spy(m, z, step, clamp, anchor):
        x0 = orig(m, z, step, clamp, anchor)
        seen.append(x0)
        return x0

    method._x0 = spy
    out = method.sample(model, prompt_only(batch), 5, "ddim_respaced", torch.Generator())
    emb = model.word_emb.weight.detach()
    free = ~batch.cond
    for x0 in seen:
        ids = model.nearest_ids(x0)
        assert torch.equal(x0[free], emb[ids][free])  # every generated x̂₀ is a row of E
    logits_ids = (emb[model.nearest_ids(seen[-1])] @ emb.T + model.lm_bias.detach()).argmax(-1)
    assert torch.equal(out.ids[free], logits_ids[free])


@pytest.mark.parametrize("sampler,nfe", [("ddpm", T), ("ddim_gap", 4), ("ddim_respaced", 4)])
def test_clamping_only_free_positions_equals_clamping_all(sampler, nfe):
    """DiffuSeq clamps every position; anchoring overwrites the source half, so skipping it in the
    V-wide search (our speed-up) gives the very same samples."""
    model = build()
    cond = prompt_only(diffuseq_batch())
    ours = DiffuSeq().sample(model, cond, nfe, sampler, torch.Generator().manual_seed(5))
    everywhere = DiffuSeq()

    def clamp_all(m, z, step, clamp, anchor):
        t = torch.full((z.shape[0],), step, dtype=torch.long, device=z.device)
        x0 = m(z, t).float()
        return m.word_emb(m.nearest_ids(x0)).float() if clamp else x0

    everywhere._x0 = clamp_all
    ref = everywhere.sample(model, cond, nfe, sampler, torch.Generator().manual_seed(5))
    assert torch.equal(ours.ids, ref.ids) and ours.nfe == ref.nfe


@pytest.mark.parametrize("sampler,nfe", [("ddpm", T), ("ddim_gap", 4), ("ddim_respaced", 4)])
def test_determinism_under_a_seeded_generator(sampler, nfe):
    model = build()
    cond = prompt_only(diffuseq_batch())
    method = DiffuSeq()
    torch.manual_seed(0)
    a = method.sample(model, cond, nfe, sampler, torch.Generator().manual_seed(11))
    torch.manual_seed(123)  # the global RNG plays no part
    b = method.sample(model, cond, nfe, sampler, torch.Generator().manual_seed(11))
    assert torch.equal(a.ids, b.ids)


def test_ddpm_noise_depends_on_the_generator():
    model = build()
    cond = prompt_only(diffuseq_batch(src_lens=(3,) * 8))
    method = DiffuSeq()
    a = method.sample(model, cond, T, "ddpm", torch.Generator().manual_seed(1), clamp=False)
    b = method.sample(model, cond, T, "ddpm", torch.Generator().manual_seed(2), clamp=False)
    assert not torch.equal(a.ids, b.ids)
    c = method.sample(model, cond, T, "ddpm", torch.Generator().manual_seed(1), top_p=0.5)
    assert c.nfe == T


def test_sample_restores_training_mode():
    model = build().train()
    DiffuSeq().sample(model, prompt_only(diffuseq_batch()), 2, "ddim_gap", torch.Generator())
    assert model.training


# ------------------------------------------------------------------------------------------------
# the training machinery: loss-aware history is checkpointed, resumed and exported
# ------------------------------------------------------------------------------------------------


def test_train_kill_resume_is_exact_and_keeps_the_sampler_history(tmp_path, monkeypatch):
    import json

    import lightning.pytorch as pl

    from repro import methods
    from repro.train.checkpoint import load_model
    from repro.train.run import train

    real = methods.get_method
    monkeypatch.setattr(
        methods, "get_method", lambda name: DiffuSeq() if name == "diffuseq" else real(name)
    )
    data = tmp_path / "tok"
    data.mkdir()
    splits = {}
    for split, n, seed in (("train", 48, 1), ("validation", 8, 2)):
        batch, _ = reversal_task(n, seed)
        np.save(data / f"{split}.ids.npy", batch.ids.numpy().astype(np.int32))
        np.save(data / f"{split}.cond.npy", batch.cond.numpy().astype(np.uint8))
        splits[split] = {"n": n, "row_ids": [f"toy/{split}/{i}" for i in range(n)], "dropped": 0}
    specials = {"pad": PAD, "unk": UNK, "cls": CLS, "sep": SEP, "mask": MASK, "bos": BOS,
                "eos": EOS}
    (data / "meta.json").write_text(json.dumps({
        "layout": "diffuseq", "options": {}, "seq_len": TASK_L, "vocab_size": FIRST + K,
        "specials": specials, "tokenizer_sha256": "0" * 64, "splits": splits,
    }))
    cfg = {
        "method": "diffuseq",
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 8,
                  "diffusion_steps": 8, "dropout": 0.1},
        "train": {"steps": 6, "batch_size": 8, "lr": 1e-3, "ema": 0.9, "val_every": 3,
                  "val_batches": 1, "ckpt_every": 2},
    }

    class Killer(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 5:
                raise RuntimeError("simulated job kill")

    ref = tmp_path / "ref" / "model.ckpt"
    train(data, ref, cfg)
    out = tmp_path / "killed" / "model.ckpt"
    with pytest.raises(RuntimeError, match="simulated job kill"):
        train(data, out, cfg, callbacks=[Killer()])
    assert train(data, out, cfg)["resumed_from"] == 4
    a = torch.load(ref, weights_only=True)["state_dict"]
    b = torch.load(out, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # 6 steps × 8 rows entered the history (capacity 8 × 10); validation added nothing
    assert a["loss_counts"].sum().item() == 6 * 8
    method, model, ckpt = load_model(out)
    assert ckpt["weights"] == "ema" and "word_emb.weight" in ckpt["state_dict"]
    test, _ = reversal_task(4, seed=3)
    res = method.sample(model, prompt_only(test), 2, "ddim_gap", torch.Generator())
    assert res.nfe == 2 and torch.equal(res.ids[test.cond], test.ids[test.cond])


# ------------------------------------------------------------------------------------------------
# learning test: the correctness proof
# ------------------------------------------------------------------------------------------------

FIRST, K, MAX_SRC, TASK_L, TASK_T = 7, 12, 5, 16, 50  # rows fit in 2·5 + 5 = 15


def reversal_task(n_rows: int, seed: int) -> tuple[Batch, torch.Tensor]:
    """diffuseq-layout rows whose target is the reversed source under a fixed token shift.

    ``[CLS] src [SEP] [SEP] [CLS] trg [SEP] [PAD]…``, trg_k = shift(src_{n−1−k}); also returns the
    (N, L) mask of the target content positions.
    """
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(3, MAX_SRC + 1, (n_rows, 1), generator=g)  # (N, 1) source lengths
    src = torch.randint(FIRST, FIRST + K, (n_rows, MAX_SRC), generator=g)  # (N, 5)
    pos = torch.arange(TASK_L)[None]  # (1, L)
    k = pos - n - 4  # index into the target
    trg = FIRST + (src.gather(1, (n - 1 - k).clamp(0, MAX_SRC - 1)) - FIRST + 5) % K  # (N, L)
    src_at = src.gather(1, (pos - 1).clamp(0, MAX_SRC - 1).expand(n_rows, -1))  # (N, L)
    ids = torch.full((n_rows, TASK_L), PAD)
    ids = torch.where(pos == 0, CLS, ids)
    ids = torch.where((pos >= 1) & (pos <= n), src_at, ids)
    ids = torch.where((pos == n + 1) | (pos == n + 2), SEP, ids)
    ids = torch.where(pos == n + 3, CLS, ids)
    content = (k >= 0) & (k < n)
    ids = torch.where(content, trg, ids)
    ids = torch.where(pos == 2 * n + 4, SEP, ids)
    return Batch(ids, pos <= n + 2), content


def test_learning_reversal_task():
    """DDPM at T = 50 and respaced DDIM with 10 calls learn the reversal task on held-out rows;
    gap-DDIM with 10 calls collapses, the low-NFE failure the FM-seq2seq paper reports for
    DiffuSeq. Outcomes measured on CPU: benchmarks/README.md, "Learning tests"."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and robust to a busy machine
    try:
        start = time.perf_counter()
        method = DiffuSeq()
        steps = 400
        torch.manual_seed(0)
        model = method.build_model(
            dict(d_model=64, n_layers=2, n_heads=4, emb_dim=16, dropout=0.0,
                 diffusion_steps=TASK_T, pad_id=PAD),
            vocab_size=FIRST + K, seq_len=TASK_L,
        )
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        data, _ = reversal_task(64 * steps, seed=1)
        model.train()
        for step in range(steps):
            rows = slice(64 * step, 64 * (step + 1))
            loss = method.loss(model, Batch(data.ids[rows], data.cond[rows]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        assert bool((model.loss_counts == HISTORY_PER_TERM).all())  # importance sampling was on
        test, content = reversal_task(1000, seed=2)
        seen = {tuple(row) for row in data.ids.tolist()}
        unseen = torch.tensor([tuple(row) not in seen for row in test.ids.tolist()])
        test, content = Batch(test.ids[unseen][:300], test.cond[unseen][:300]), content[unseen][:300]
        scores = {}
        for sampler, nfe in (("ddpm", TASK_T), ("ddim_respaced", 10), ("ddim_gap", 10)):
            out = method.sample(model, prompt_only(test), nfe, sampler, torch.Generator())
            hit = out.ids == test.ids
            scores[sampler] = (hit[content].float().mean().item(), hit.all(1).float().mean().item())
        # copy-the-source baseline: the target content is the source itself
        n = test.cond.sum(1) - 3
        copy = torch.stack([
            (test.ids[i, 1 : 1 + n[i]] == test.ids[i, n[i] + 4 : 2 * n[i] + 4]).float().mean()
            for i in range(len(n))
        ]).mean().item()
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    print(f"held-out rows {len(n)}: (content acc, exact) {scores}; copy baseline {copy:.3f}, "
          f"chance {1 / K:.3f} ({elapsed:.0f}s)")
    assert len(n) >= 250
    acc, exact = scores["ddpm"]
    assert acc > 0.9 and exact > 0.8
    assert copy < 0.15  # ≈ chance: src_j equals shift(src_{n-1-j}) by accident only
    assert scores["ddim_respaced"][1] > 0.7
