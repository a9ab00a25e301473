"""Tests of the autoregressive method :mod:`repro.methods.ar`.

The learning test at the end is the correctness proof: a tiny model trained with this file's loss
and decoded with this file's sampler solves a synthetic seq2seq task, and the same budget with a
deliberately wrong loss does not.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from repro.io import InputError
from repro.methods import get_method
from repro.methods.ar import EARLY_STOP_EVERY, Autoregressive
from repro.methods.base import Batch

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)
V, L = 20, 16
IDS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, sep_id=SEP, mask_id=MASK)


def build(seed: int = 0, **overrides):
    cfg = dict(d_model=32, n_layers=2, n_heads=4, **IDS)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return Autoregressive().build_model(cfg, vocab_size=V, seq_len=L)


def conditional_batch(prompt_lens=(4, 6, 3), seed: int = 0) -> Batch:
    """``[BOS] src [SEP] trg [EOS] [PAD]…`` rows with cond on ``[BOS] src [SEP]``."""
    g = torch.Generator().manual_seed(seed)
    B = len(prompt_lens)
    ids = torch.full((B, L), PAD)
    cond = torch.zeros(B, L, dtype=torch.bool)
    for i, n in enumerate(prompt_lens):
        src = torch.randint(7, V, (n,), generator=g)
        trg = torch.randint(7, V, (n + 1,), generator=g)
        row = torch.cat([torch.tensor([BOS]), src, torch.tensor([SEP]), trg, torch.tensor([EOS])])
        ids[i, : len(row)] = row
        cond[i, : n + 2] = True
    return Batch(ids, cond)


def prompt_only(batch: Batch) -> Batch:
    """What the sample stage passes: the answer is never visible (non-cond positions are PAD)."""
    return Batch(torch.where(batch.cond, batch.ids, PAD), batch.cond)


def force_eos(model) -> None:
    """Make every position's logits put all mass on EOS (final norm outputs a constant vector)."""
    with torch.no_grad():
        b = torch.randn(model.cfg.d_model)
        model.final.norm.weight.zero_()
        model.final.norm.bias.copy_(b)
        model.final.head.weight.zero_()
        model.final.head.weight[EOS] = 10 * b


def count_calls(model) -> list[int]:
    """Record the sequence length of every forward pass of ``model``."""
    lengths: list[int] = []
    model.register_forward_hook(lambda mod, args, out: lengths.append(args[0].shape[1]))
    return lengths


# ------------------------------------------------------------------------------------------------
# interface, build_model
# ------------------------------------------------------------------------------------------------


def test_registry_and_layouts():
    method = get_method("ar")
    assert isinstance(method, Autoregressive)
    assert method.name == "ar" and method.samplers == ("ancestral", "greedy")
    assert [method.layout(k) for k in ("seq2seq", "text", "code")] == [
        "conditional",
        "lm",
        "infill_ar",
    ]
    with pytest.raises(InputError, match="'images'"):
        method.layout("images")


def test_build_model_is_causal_rope_and_stores_the_special_ids():
    model = build()
    assert model.cfg.causal and model.cfg.pos_emb == "rope" and not model.cfg.tie_embeddings
    assert (model.pad_id, model.bos_id, model.eos_id, model.sep_id, model.mask_id) == (
        PAD,
        BOS,
        EOS,
        SEP,
        MASK,
    )
    # The checkpoint carries the model cfg; rebuilding from it restores ids and weights (strict).
    clone = build(seed=1)
    clone.load_state_dict(model.state_dict(), strict=True)
    assert clone.eos_id == EOS
    x = conditional_batch().ids
    torch.testing.assert_close(clone(x), model(x))
    tied = build(tie_embeddings=True, pos_emb="learned")
    assert tied.final.head.weight is tied.tok_emb.weight and tied.cfg.pos_emb == "learned"


@pytest.mark.parametrize(
    "overrides,drop,match",
    [
        (dict(d_modle=32), None, "d_modle"),
        ({}, "n_heads", "n_heads"),
        ({}, "eos_id", "eos_id"),
        (dict(pad_id=EOS), None, "pad_id equals eos_id"),
        (dict(eos_id=V), None, "eos_id"),
        (dict(n_heads=5), None, "divisible"),
        (dict(pos_emb="alibi"), None, "pos_emb"),
    ],
)
def test_build_model_rejects_bad_config(overrides, drop, match):
    cfg = dict(d_model=32, n_layers=2, n_heads=4, **IDS)
    cfg.update(overrides)
    if drop:
        del cfg[drop]
    with pytest.raises(InputError, match=match):
        Autoregressive().build_model(cfg, vocab_size=V, seq_len=L)


# ------------------------------------------------------------------------------------------------
# loss
# ------------------------------------------------------------------------------------------------


def test_loss_is_the_masked_next_token_cross_entropy():
    model, batch = build(), conditional_batch()
    loss = Autoregressive().loss(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.tok_emb.weight.grad.abs().sum() > 0
    # reference: explicit loop over rows and target positions
    with torch.no_grad():
        logits = model(batch.ids[:, :-1])
        terms = [
            F.cross_entropy(logits[i, j - 1], batch.ids[i, j])
            for i in range(batch.ids.shape[0])
            for j in range(1, L)
            if not batch.cond[i, j] and batch.ids[i, j] != PAD
        ]
    n_target = sum(n + 2 for n in (4, 6, 3))  # trg (n + 1 tokens) + EOS per row
    assert len(terms) == n_target
    torch.testing.assert_close(loss.detach(), torch.stack(terms).mean())


def test_loss_masks_given_and_pad_targets_but_trains_eos():
    method, model, batch = Autoregressive(), build(), conditional_batch()
    base = method.loss(model, batch)
    # Marking the trailing PAD targets as given changes nothing: they were not counted.
    pads = batch.ids == PAD
    same = method.loss(model, Batch(batch.ids, batch.cond | pads))
    torch.testing.assert_close(same, base)
    # The EOS targets are counted: marking them as given changes the loss.
    eos = batch.ids == EOS
    assert not torch.allclose(method.loss(model, Batch(batch.ids, batch.cond | eos)), base)
    # The last position is a target only, never an input: when it is given, its token is unseen.
    ids = batch.ids.clone()
    cond = batch.cond.clone()
    cond[:, -1] = True
    before = method.loss(model, Batch(ids, cond))
    ids[:, -1] = 9
    torch.testing.assert_close(method.loss(model, Batch(ids, cond)), before)
    # ... and when it is not given (and not PAD), its token is trained.
    assert not torch.allclose(method.loss(model, Batch(ids, batch.cond)), before)


def test_loss_of_a_batch_without_targets_is_zero_not_nan():
    batch = conditional_batch()
    loss = Autoregressive().loss(build(), Batch(batch.ids, torch.ones_like(batch.cond)))
    assert loss.item() == 0.0


# ------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------


def sample(model, batch, nfe=L, sampler="ancestral", seed=0, **opts):
    return Autoregressive().sample(
        model, prompt_only(batch), nfe, sampler, torch.Generator().manual_seed(seed), **opts
    )


def test_sample_shapes_cond_preserved_and_determinism():
    model, batch = build(), conditional_batch()
    out = sample(model, batch, seed=3)
    assert out.ids.shape == batch.ids.shape and out.ids.dtype == torch.int64
    assert torch.equal(out.ids[batch.cond], batch.ids[batch.cond])
    assert torch.equal(sample(model, batch, seed=3).ids, out.ids)  # same seed, same output
    assert not torch.equal(sample(model, batch, seed=4).ids, out.ids)
    assert model.training  # the train/eval mode is restored


def test_sample_uses_only_the_given_generator():
    model, batch = build(), conditional_batch()
    torch.manual_seed(0)
    a = sample(model, batch, seed=5).ids
    torch.manual_seed(123)
    assert torch.equal(sample(model, batch, seed=5).ids, a)


def test_nfe_is_counted_exactly_and_decoding_is_incremental():
    model, batch = build(), conditional_batch()
    lengths = count_calls(model)
    out = sample(model, batch)
    p0 = 5  # shortest prompt: [BOS] + 3 src + [SEP]
    assert out.nfe == len(lengths) <= L - p0
    assert lengths[0] == p0 and set(lengths[1:]) <= {1}  # one prefill, then one position per pass


def test_nfe_cap_limits_new_tokens():
    model, batch = build(), conditional_batch()
    lengths = count_calls(model)
    out = sample(model, batch, nfe=3)
    assert out.nfe == len(lengths) <= 3
    p0 = 5
    beyond = torch.zeros_like(batch.cond)
    beyond[:, p0 + 3 :] = True
    assert (out.ids[beyond & ~batch.cond] == PAD).all()  # nothing generated past the cap
    assert torch.equal(out.ids[batch.cond], batch.ids[batch.cond])  # given ones still kept


def test_early_stop_after_eos_pads_the_rest():
    model, batch = build(), conditional_batch()
    force_eos(model)
    lengths = count_calls(model)
    out = sample(model, batch, sampler="greedy")
    for i, n in enumerate((4, 6, 3)):
        assert out.ids[i, n + 2] == EOS
        assert (out.ids[i, n + 3 :] == PAD).all()
    assert out.nfe == len(lengths) == EARLY_STOP_EVERY  # stops at the first check


def test_eos_ends_a_segment_only_until_the_next_given_token():
    """infill_ar: after EOS, PAD until the next given [SEP], then generation resumes."""
    model = build()
    force_eos(model)
    ids = torch.full((1, L), PAD)
    cond = torch.zeros(1, L, dtype=torch.bool)
    ids[0, :4] = torch.tensor([BOS, 9, 10, SEP])
    ids[0, 8] = SEP
    cond[0, :4] = True
    cond[0, 8] = True
    out = Autoregressive().sample(model, Batch(ids, cond), L, "greedy", torch.Generator())
    expected = [BOS, 9, 10, SEP, EOS, PAD, PAD, PAD, SEP, EOS] + [PAD] * (L - 10)
    assert out.ids[0].tolist() == expected


def _check_against_full_forward(model, batch, out, allowed):
    """Every generated token (up to its row's EOS) is allowed by the full-sequence logits."""
    with torch.no_grad():
        logits = model.eval()(out.ids)  # (B, L, V)
    checked = 0
    for i in range(out.ids.shape[0]):
        for j in range(1, L):
            if batch.cond[i, j]:
                continue
            tok = out.ids[i, j]
            assert allowed(logits[i, j - 1], tok), (i, j)
            checked += 1
            if tok == EOS:
                assert (out.ids[i, j + 1 :] == PAD).all()
                break
    assert checked > 0


def test_greedy_equals_argmax_of_the_full_forward():
    model, batch = build(seed=2), conditional_batch((2, 5, 3, 4))
    out = sample(model, batch, sampler="greedy")
    _check_against_full_forward(model, batch, out, lambda logit, tok: logit.argmax() == tok)


def test_top_k_draws_among_the_top_k_and_top_1_is_greedy():
    model, batch = build(seed=2), conditional_batch((2, 5, 3, 4))
    greedy = sample(model, batch, sampler="greedy")
    assert torch.equal(sample(model, batch, top_k=1, seed=7).ids, greedy.ids)
    out = sample(model, batch, top_k=3, seed=7, temperature=2.0)
    _check_against_full_forward(
        model, batch, out, lambda logit, tok: tok in logit.topk(3).indices.tolist()
    )


def test_ancestral_sampling_follows_the_softmax():
    """Frequencies of the first generated token match softmax(logits / temperature)."""
    model = build(seed=4, d_model=16)
    with torch.no_grad():
        model.final.head.weight.mul_(20)  # a peaked but non-degenerate distribution
    batch = conditional_batch((3,))
    rows = Batch(batch.ids.expand(4000, -1), batch.cond.expand(4000, -1))
    p0 = 5
    with torch.no_grad():
        probs = (model(batch.ids[:, :p0])[0, -1] / 1.5).softmax(-1)
    out = sample(model, rows, nfe=1, temperature=1.5, seed=0)
    freq = torch.bincount(out.ids[:, p0], minlength=V).float() / 4000
    assert (freq - probs).abs().max() < 0.03
    assert out.nfe == 1


def test_sample_rejects_bad_arguments():
    model, batch = build(), conditional_batch()
    with pytest.raises(ValueError, match="no sampler 'euler'"):
        sample(model, batch, sampler="euler")
    with pytest.raises(InputError, match="top_p"):
        sample(model, batch, top_p=0.9)
    with pytest.raises(InputError, match="nfe"):
        sample(model, batch, nfe=0)
    with pytest.raises(InputError, match="temperature"):
        sample(model, batch, temperature=0.0)
    long_rows = Batch(F.pad(batch.ids, (0, 2)), F.pad(batch.cond, (0, 2)))
    with pytest.raises(InputError, match="seq_len"):
        sample(model, long_rows)
    no_bos = Batch(batch.ids, batch.cond.clone())
    no_bos.cond[0, 0] = False
    with pytest.raises(InputError, match="position 0"):
        sample(model, no_bos)


def test_fully_given_rows_need_no_forward_pass():
    model, batch = build(), conditional_batch()
    out = sample(model, Batch(batch.ids, torch.ones_like(batch.cond)))
    assert out.nfe == 0 and torch.equal(out.ids, batch.ids)


# ------------------------------------------------------------------------------------------------
# learning test: the correctness proof
# ------------------------------------------------------------------------------------------------

FIRST, K, MAX_SRC, TASK_L = 7, 12, 5, 14  # content tokens 7…18; rows fit in 2·5 + 3 = 13


def reversal_task(n_rows: int, seed: int) -> Batch:
    """``[BOS] src [SEP] trg [EOS] [PAD]…`` with trg = reversed src under a fixed token shift."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(3, MAX_SRC + 1, (n_rows, 1), generator=g)  # (N, 1) source lengths
    src = torch.randint(FIRST, FIRST + K, (n_rows, MAX_SRC), generator=g)  # (N, 5)
    pos = torch.arange(TASK_L)[None]  # (1, L)
    k = pos - n - 2  # index into the target
    rev = (n - 1 - k).clamp(0, MAX_SRC - 1)  # source index that target slot k copies
    trg = FIRST + (src.gather(1, rev) - FIRST + 5) % K  # (N, L)
    src_at = src.gather(1, (pos - 1).clamp(0, MAX_SRC - 1).expand(n_rows, -1))  # (N, L)
    ids = torch.full((n_rows, TASK_L), PAD)
    ids = torch.where(pos == 0, BOS, ids)
    ids = torch.where((pos >= 1) & (pos <= n), src_at, ids)
    ids = torch.where(pos == n + 1, SEP, ids)
    ids = torch.where((k >= 0) & (k < n), trg, ids)
    ids = torch.where(pos == 2 * n + 2, EOS, ids)
    return Batch(ids, pos <= n + 1)


class ShiftedLossAR(Autoregressive):
    """Deliberately broken: predicts the token two positions ahead instead of the next one."""

    def loss(self, model, batch):
        logits = model(batch.ids[:, :-2])
        target = batch.ids[:, 2:].masked_fill(batch.cond[:, 2:] | (batch.ids[:, 2:] == PAD), -100)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)


def train_and_score(method: Autoregressive, steps: int = 500) -> tuple[float, float, int]:
    """Train with AdamW (warm-up + cosine, clip 1); greedy exact match on unseen rows."""
    torch.manual_seed(0)
    model = method.build_model(
        dict(d_model=64, n_layers=2, n_heads=4, **IDS), vocab_size=FIRST + K, seq_len=TASK_L
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    data = reversal_task(64 * steps, seed=1)
    model.train()
    for step in range(steps):
        rows = slice(64 * step, 64 * (step + 1))
        loss = method.loss(model, Batch(data.ids[rows], data.cond[rows]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    test = reversal_task(1000, seed=2)
    seen = {tuple(row) for row in data.ids.tolist()}
    unseen = torch.tensor([tuple(row) not in seen for row in test.ids.tolist()])
    test = Batch(test.ids[unseen], test.cond[unseen])  # held out: no row seen in training
    out = method.sample(model, prompt_only(test), TASK_L, "greedy", torch.Generator())
    exact = (out.ids == test.ids).all(1).float().mean().item()
    # copy-the-source baseline: the hypothesis is the source itself
    n = test.cond.sum(1) - 2
    copy = [
        torch.equal(test.ids[i, 1 : n[i] + 1], test.ids[i, n[i] + 2 : 2 * n[i] + 2])
        for i in range(len(n))
    ]
    return exact, sum(copy) / len(copy), len(n)


def test_learning_reversal_task_and_broken_loss_fails():
    # one thread: two threads on a busy 2-core machine spin-wait each other (188 s instead of ~20)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        exact, copy, n_test = train_and_score(Autoregressive())
        broken, _, _ = train_and_score(ShiftedLossAR())
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - start
    print(
        f"held-out rows {n_test}: exact match {exact:.3f}, copy baseline {copy:.3f}, "
        f"broken loss {broken:.3f} ({elapsed:.0f}s)"
    )
    assert n_test >= 300
    assert exact > 0.9
    assert copy < 0.05
    assert broken < 0.1
