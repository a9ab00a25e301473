"""Tests of discrete flow matching, :mod:`repro.methods.dfm` (methods.md §4, §3.6).

The learning test at the end is the correctness proof: a tiny model trained with this file's loss
and sampled with this file's mixture Euler solver solves a synthetic conditional task (target = a
fixed permutation of the source tokens, mapped through a fixed derangement), far above copying the
source and chance.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from repro.io import InputError
from repro.methods import dfm, get_method
from repro.methods.base import Batch
from repro.methods.dfm import (
    DFM,
    Scheduler,
    mixture_losses,
    path_sample,
    time_grid,
)

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)
V, L, N = 23, 16, 6  # vocabulary, sequence, source/target tokens per row
IDS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, sep_id=SEP, mask_id=MASK)
#: target token j = MAP[source token PERM[j]]: a fixed permutation and a derangement of tokens 7…22
PERM = torch.tensor([3, 0, 4, 5, 1, 2])
MAP = torch.arange(V)
MAP[7:] = torch.roll(torch.arange(7, V), 5)
GIVEN = N + 2  # [BOS] s₁…s₆ [SEP]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: more threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**overrides) -> dict:
    cfg = dict(d_model=32, n_layers=2, n_heads=4, time_dim=32, dropout=0.0, **IDS)
    cfg.update(overrides)
    return cfg


def build(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return DFM().build_model(config(**overrides), vocab_size=V, seq_len=L)


def randomise(model, seed: int = 0, std: float = 0.3) -> None:
    """Random weights everywhere (adaLN-Zero and the zero output would hide t and the context)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def task_batch(n_rows: int, seed: int = 0) -> Batch:
    """``conditional`` rows ``[BOS] s₁…s₆ [SEP] t₁…t₆ [EOS] [PAD]``, t_j = MAP[s_PERM[j]]."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(7, V, (n_rows, N), generator=g)
    trg = MAP[src[:, PERM]]
    col = torch.full((n_rows, 1), 0)
    ids = torch.cat([col + BOS, src, col + SEP, trg, col + EOS, col + PAD], dim=1)  # (B, 16)
    cond = torch.zeros(n_rows, L, dtype=torch.bool)
    cond[:, :GIVEN] = True
    return Batch(ids, cond)


def hidden(batch: Batch) -> Batch:
    """What the sample stage passes: the non-given positions are [PAD]."""
    return Batch(torch.where(batch.cond, batch.ids, PAD), batch.cond)


def record_calls(model) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, t, logits) of every forward call of ``model``."""
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def hook(mod, args, out):
        t = torch.as_tensor(args[1])
        calls.append((args[0].clone(), t.clone(), out.detach().clone()))

    model.register_forward_hook(hook)
    return calls


# ------------------------------------------------------------------------------------------------
# interface and build_model
# ------------------------------------------------------------------------------------------------


def test_interface_and_layouts():
    method = get_method("dfm")
    assert isinstance(method, DFM)
    assert method.name == "dfm" and method.samplers == ("mixture_euler",)
    assert method.layout("text") == "lm"
    assert method.layout("seq2seq") == "conditional"
    assert method.layout("code") == "infill"
    with pytest.raises(InputError, match="has no layout for task kind"):
        method.layout("images")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dmodel=32), "unknown key"),
        (dict(scheduler="cosine"), "scheduler 'cosine' is unknown"),
        (dict(scheduler="klflow_quadratic", exponent=2.0), "exponent only applies"),
        (dict(exponent=0), "exponent must be a number > 0"),
        (dict(exponent=-1.0), "exponent must be a number > 0"),
        (dict(exponent="2"), "exponent must be a number > 0"),
        (dict(exponent=True), "exponent must be a number > 0"),
        (dict(exponent=math.inf), "exponent must be a number > 0"),
        (dict(loss="mse"), "loss 'mse' is unknown"),
        (dict(mask_id=V), "mask_id"),
        (dict(pad_id=-1), "pad_id"),
        (dict(d_model=30), "divisible by n_heads"),
        (dict(pos_emb="alibi"), "pos_emb"),
        (dict(time_dim=0), "time_dim"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_build_model_rejects_bad_configs(overrides, message):
    with pytest.raises(InputError, match=message):
        build(**overrides)


def test_build_model_requires_keys():
    for key in ("d_model", "n_layers", "n_heads", "mask_id"):
        cfg = config()
        del cfg[key]
        with pytest.raises(InputError, match=f"lacks '{key}'"):
            DFM().build_model(cfg, vocab_size=V, seq_len=L)


def test_backbone_is_the_ddit_and_settings_are_stored():
    model = build(scheduler="polynomial", exponent=2, loss="generalized_kl")
    cfg = model.cfg
    assert cfg.time_cond and not cfg.causal and cfg.pos_emb == "rope"
    assert cfg.adaln_gate and cfg.adaln_silu and cfg.zero_init_output
    assert (cfg.input, cfg.output, cfg.vocab_size, cfg.seq_len) == ("tokens", "logits", V, L)
    assert cfg.time_freq_dim == 256 and cfg.time_dim == 32 and cfg.time_max_period == 10000.0
    assert cfg.activation == "gelu_tanh"
    assert (model.mask_id, model.pad_id, model.eos_id) == (MASK, PAD, EOS)
    assert model.scheduler == Scheduler("polynomial", 2.0)
    assert model.loss_kind == "generalized_kl" and model.time_epsilon == 1e-3
    default = DFM().build_model(dict(d_model=32, n_layers=1, n_heads=4, mask_id=MASK), V, L)
    assert default.cfg.dropout == 0.1 and default.cfg.time_dim == 128
    assert default.scheduler == Scheduler("polynomial", 1.0)
    assert default.loss_kind == "cross_entropy" and default.time_epsilon == 0.0
    assert default.pad_id is None
    # zero-initialised output: uniform p_{1|t} at initialisation
    logits = default(torch.randint(V, (2, L)), torch.tensor([0.1, 0.9]))
    assert logits.shape == (2, L, V) and not logits.any()


# ------------------------------------------------------------------------------------------------
# scheduler and path
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sched,kappa",
    [
        (Scheduler("polynomial", 1.0), lambda t: t),
        (Scheduler("polynomial", 2.0), lambda t: t * t),
        (Scheduler("polynomial", 3.0), lambda t: t**3),
        (Scheduler("polynomial", 0.5), lambda t: math.sqrt(t)),
        (Scheduler("klflow_quadratic"), lambda t: 2 * t - t * t),
    ],
)
def test_scheduler_values_and_derivatives(sched, kappa):
    ts = torch.tensor([0.05, 0.2, 0.5, 0.77, 0.95], dtype=torch.float64)
    expected = torch.tensor([kappa(float(t)) for t in ts], dtype=torch.float64)
    assert torch.allclose(sched.kappa(ts), expected, rtol=1e-12)
    # d_kappa is the derivative of kappa: autograd and central differences agree with it
    tg = ts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sched.kappa(tg).sum(), tg)
    assert torch.allclose(sched.d_kappa(ts), grad, rtol=1e-10)
    eps = 1e-6
    fd = torch.tensor([(kappa(float(t) + eps) - kappa(float(t) - eps)) / (2 * eps) for t in ts])
    assert torch.allclose(sched.d_kappa(ts), fd.double(), rtol=1e-6)
    # endpoints: all source at t = 0, all data at t = 1
    ends = sched.kappa(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ends.tolist() == [0.0, 1.0]
    # the jump rate is κ'/(1 − κ)
    assert torch.allclose(sched.rate(ts), sched.d_kappa(ts) / (1 - sched.kappa(ts)), rtol=1e-10)


def test_klflow_quadratic_rate_and_jump_probabilities():
    sched = Scheduler("klflow_quadratic")
    ts = torch.tensor([0.0, 0.25, 0.9])
    assert torch.allclose(sched.rate(ts), 2 / (1 - ts))
    n = 8
    h = 1 / n
    for i in range(n):
        t = i / n
        linear = sched.jump_probability(t, h, "linear")
        assert linear == pytest.approx(min(1.0, 2 * h / (1 - t)))  # KLF-DFM's C = 2h/(1 − t)
        assert sched.jump_probability(t, h, "exp") == pytest.approx(1 - math.exp(-2 * h / (1 - t)))
    assert sched.jump_probability(1 - h, h, "linear") == 1.0  # C = 2 → clamped at the last step
    lin = Scheduler("polynomial", 1.0)
    assert lin.jump_probability(0.5, 0.1, "linear") == pytest.approx(0.2)
    assert lin.jump_probability(0.5, 0.1, "exp") == pytest.approx(1 - math.exp(-0.2))
    cube = Scheduler("polynomial", 3.0)
    assert cube.jump_probability(0.0, 0.1, "linear") == 0.0  # κ'(0) = 0: nothing moves at t = 0
    root = Scheduler("polynomial", 0.5)
    assert root.jump_probability(0.0, 0.1, "exp") == 1.0  # κ'(0) = ∞


@pytest.mark.parametrize("t", [0.0, 0.15, 0.5, 0.8, 1.0])
def test_path_sample_marginals(t):
    """Over many draws the fraction of generated positions showing x₁ is κ_t; the rest is [MASK]."""
    sched = Scheduler("klflow_quadratic")
    batch = task_batch(1000, seed=3)
    tt = torch.full((1000,), t)
    xt = path_sample(batch.ids, batch.cond, tt, sched, MASK, torch.Generator().manual_seed(1))
    assert torch.equal(xt[batch.cond], batch.ids[batch.cond])  # given positions are x₁ at any t
    free = ~batch.cond
    shown = xt[free] == batch.ids[free]
    assert torch.equal(xt[free][~shown], torch.full_like(xt[free][~shown], MASK))
    kappa = 2 * t - t * t
    n = shown.numel()  # 8000 draws
    sigma = math.sqrt(kappa * (1 - kappa) / n)
    assert abs(shown.float().mean().item() - kappa) <= 4 * sigma + 1e-12


def test_the_loss_uses_the_path_at_its_time():
    """Inside the loss, x_t shows x₁ on a κ_t fraction of generated positions (κ = t² here)."""
    method, model = DFM(), build(scheduler="polynomial", exponent=2.0)
    calls = record_calls(model)
    batch = task_batch(2000, seed=4)
    for t in (0.3, 0.7):
        torch.manual_seed(0)
        method.loss_at_t(model, batch, torch.full((2000,), t))
        xt, t_seen, _ = calls[-1]
        assert torch.equal(t_seen, torch.full((2000,), t))
        free = ~batch.cond
        assert torch.equal(xt[batch.cond], batch.ids[batch.cond])
        frac = (xt[free] == batch.ids[free]).float().mean().item()
        assert abs(frac - t * t) < 4 * math.sqrt(t * t * (1 - t * t) / free.sum().item())
        assert set(xt[free].unique().tolist()) - set(batch.ids[free].unique().tolist()) == {MASK}


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------


def test_generalized_kl_matches_the_hand_formula():
    """Two positions with V = 3, mask id 2: x_t = [MASK] (x₁ = 0) and x_t = x₁ = 1."""
    logits = torch.tensor([[[1.0, 0.5, -1.0], [0.2, 2.0, 0.3]]])  # (1, 2, 3)
    x1 = torch.tensor([[0, 1]])
    xt = torch.tensor([[2, 1]])
    rate = torch.tensor([2.5])
    z0 = math.exp(1.0) + math.exp(0.5) + math.exp(-1.0)
    z1 = math.exp(0.2) + math.exp(2.0) + math.exp(0.3)
    # masked position: −rate·(p(mask) − 0 + log p(x₁)); visible one: −rate·(p(x₁) − 1)
    first = -2.5 * (math.exp(-1.0) / z0 + math.log(math.exp(1.0) / z0))
    second = -2.5 * (math.exp(2.0) / z1 - 1.0)
    got = mixture_losses(logits, x1, xt, rate, "generalized_kl")
    assert got.shape == (1, 2)
    assert got[0, 0].item() == pytest.approx(first, rel=1e-6)
    assert got[0, 1].item() == pytest.approx(second, rel=1e-6)
    assert second > 0 and first > 0
    ce = mixture_losses(logits, x1, xt, None, "cross_entropy")
    assert ce[0, 0].item() == pytest.approx(-math.log(math.exp(1.0) / z0), rel=1e-6)
    assert ce[0, 1].item() == pytest.approx(-math.log(math.exp(2.0) / z1), rel=1e-6)
    with pytest.raises(ValueError, match="needs the jump rate"):
        mixture_losses(logits, x1, xt, None, "generalized_kl")


def test_cross_entropy_loss_is_f_cross_entropy_over_all_positions():
    method, model = DFM(), build(scheduler="klflow_quadratic")
    randomise(model)
    calls = record_calls(model)
    batch = task_batch(8, seed=1)
    torch.manual_seed(5)
    loss = method.loss(model, batch)
    xt, t, logits = calls[0]
    torch.manual_seed(5)
    assert torch.equal(t, torch.rand(8))  # t ~ U[0, 1) first, from the global RNG
    expected = F.cross_entropy(logits.flatten(0, 1), batch.ids.flatten())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # a deliberately different reduction (generated positions only) is not what the loss computes
    free = ~batch.cond
    only_free = F.cross_entropy(logits[free], batch.ids[free])
    assert abs(only_free.item() - loss.item()) > 1e-3
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_generalized_kl_loss_in_the_method():
    method, model = DFM(), build(scheduler="klflow_quadratic", loss="generalized_kl")
    randomise(model)
    calls = record_calls(model)
    batch = task_batch(8, seed=2)
    torch.manual_seed(6)
    loss = method.loss(model, batch)
    xt, t, logits = calls[0]
    torch.manual_seed(6)
    assert torch.allclose(t, torch.rand(8) * (1 - 1e-3))  # t ~ U[0, 1 − ε), ε = 1e-3
    rate = (2 / (1 - t.double())).float()
    log_p = torch.log_softmax(logits.float(), -1)
    p_xt = log_p.gather(-1, xt[..., None])[..., 0].exp()
    lp_x1 = log_p.gather(-1, batch.ids[..., None])[..., 0]
    same = (xt == batch.ids).float()
    expected = (-rate[:, None] * (p_xt - same + (1 - same) * lp_x1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("loss", ["cross_entropy", "generalized_kl"])
def test_loss_at_t_is_the_per_example_loss(loss):
    method, model = DFM(), build(loss=loss)
    randomise(model)
    batch = task_batch(6)
    torch.manual_seed(3)
    full = method.loss(model, batch)
    torch.manual_seed(3)
    t = torch.rand(6) * (1 - model.time_epsilon)
    per = method.loss_at_t(model, batch, t)
    assert per.shape == (6,)
    assert per.mean().item() == pytest.approx(full.item(), rel=1e-6)
    ends = method.loss_at_t(model, batch, torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]))
    assert torch.isfinite(ends).all()  # generalized KL: t capped at 1 − ε
    with pytest.raises(ValueError, match="t must lie in"):
        method.loss_at_t(model, batch, torch.full((6,), 1.5))
    with pytest.raises(ValueError, match="shape"):
        method.loss_at_t(model, batch, torch.zeros(5))


# ------------------------------------------------------------------------------------------------
# sampler
# ------------------------------------------------------------------------------------------------


def test_time_grid():
    assert time_grid(4, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert time_grid(4, 0.999) == [0.0, 0.25, 0.5, 0.75, 0.999]  # FMLIB: last point clamped
    assert time_grid(1, 1.0) == [0.0, 1.0]
    grid = time_grid(2000, 0.999)  # (n − 1)/n ≥ 1 − ε: uniform over [0, 1 − ε] instead
    assert len(grid) == 2001 and grid[-1] == 0.999
    assert all(b > a for a, b in zip(grid, grid[1:]))


@pytest.mark.parametrize(
    "nfe,iterations,readout",
    [
        (1, 1, "none"),
        (2, 1, "argmax"),
        (5, 1, "argmax"),
        (7, 3, "argmax"),
        (9, 3, "none"),
        (13, 3, "argmax"),
        (16, 1, "none"),
    ],
)
def test_nfe_equals_network_calls(nfe, iterations, readout):
    method, model = DFM(), build(scheduler="klflow_quadratic")
    randomise(model)
    calls = record_calls(model)
    batch = hidden(task_batch(3))
    out = method.sample(
        model,
        batch,
        nfe,
        "mixture_euler",
        torch.Generator().manual_seed(0),
        iterations=iterations,
        readout=readout,
    )
    assert out.nfe == nfe == len(calls)
    steps = nfe - (readout == "argmax")
    assert out.extras == {
        "steps": steps,
        "base_steps": steps // iterations,
        "readout_calls": int(readout == "argmax"),
    }
    times = [c[1] for c in calls]
    for i in range(steps):
        assert torch.allclose(times[i], torch.full((3,), i / steps))
    if readout == "argmax":
        assert torch.equal(times[-1], torch.ones(3))  # the read-out call at t = 1
    assert model.training  # mode restored


def test_generalized_kl_model_stops_at_one_minus_epsilon():
    method, model = DFM(), build(loss="generalized_kl")
    calls = record_calls(model)
    method.sample(model, hidden(task_batch(2)), 5, "mixture_euler", torch.Generator())
    assert [round(float(c[1][0]), 6) for c in calls] == [0.0, 0.25, 0.5, 0.75, 0.999]


def test_iterations_must_divide_the_steps():
    method, model = DFM(), build()
    batch = hidden(task_batch(2))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(InputError, match=r"nfe = 9 gives 8 Euler steps.*iterations = 3"):
        method.sample(model, batch, 9, "mixture_euler", g, iterations=3)
    with pytest.raises(InputError, match=r"nfe = 10 gives 10 Euler steps"):
        method.sample(model, batch, 10, "mixture_euler", g, iterations=3, readout="none")
    with pytest.raises(InputError, match="nfe must be >= 2"):
        method.sample(model, batch, 1, "mixture_euler", g)
    # the catalogue's ×3 row passes nfe = 3·512 + 1 = 1537; one more is refused; a smaller twin runs
    with pytest.raises(InputError, match=r"nfe = 1538 gives 1537 Euler steps.*pass nfe = 3·N \+ 1"):
        method.sample(model, batch, 1538, "mixture_euler", g, iterations=3)
    out = method.sample(model, batch, 3 * 8 + 1, "mixture_euler", g, iterations=3)
    assert out.nfe == 25 and out.extras == {"steps": 24, "base_steps": 8, "readout_calls": 1}


def test_given_positions_never_change():
    method, model = DFM(), build(scheduler="polynomial", exponent=1.0)
    randomise(model)
    calls = record_calls(model)
    batch = task_batch(5)
    shown = hidden(batch)
    for jump in ("linear", "exp"):
        calls.clear()
        out = method.sample(
            model, shown, 12, "mixture_euler", torch.Generator().manual_seed(1), jump=jump
        )
        assert len(calls) == 12
        x0 = calls[0][0]
        assert torch.equal(x0[:, GIVEN:], torch.full_like(x0[:, GIVEN:], MASK))  # all-mask source
        for x, _, _ in calls:
            assert torch.equal(x[:, :GIVEN], batch.ids[:, :GIVEN])
        assert torch.equal(out.ids[:, :GIVEN], batch.ids[:, :GIVEN])
        assert out.ids.shape == batch.ids.shape and out.ids.dtype == torch.int64


@pytest.mark.parametrize("jump,readout", [("linear", "argmax"), ("exp", "none"), ("exp", "argmax")])
@pytest.mark.parametrize("exponent", [1.0, 3.0])
def test_no_mask_remains(jump, readout, exponent):
    method, model = DFM(), build(scheduler="polynomial", exponent=exponent)
    randomise(model, std=0.2)
    with torch.no_grad():
        model.net.final.head.weight[MASK] *= 20  # [MASK] logits large and of either sign
    batch = hidden(task_batch(16))
    calls = record_calls(model)
    out = method.sample(
        model,
        batch,
        6,
        "mixture_euler",
        torch.Generator().manual_seed(2),
        jump=jump,
        readout=readout,
    )
    assert (calls[0][2].argmax(-1) == MASK).float().mean() > 0.2  # the model does favour [MASK]
    assert not (out.ids == MASK).any()
    assert not (out.ids[:, GIVEN:] == PAD).all()  # the [PAD]s passed in are overwritten


def confident(model, token: int = 9) -> None:
    """p_{1|t} ≈ δ_token at every position and time: the final adaLN shift is a constant 1 (its
    modulation weights are zero), which the head reads into a logit of 40 for ``token`` (0 else)."""
    with torch.no_grad():
        net = model.net
        for block in net.blocks:
            block.modulation.linear.bias.zero_()
        net.final.modulation.linear.bias.zero_()
        net.final.head.weight.zero_()
        # the LayerNorm output sums to 0 over features, so only the shift reaches the logit
        net.final.modulation.linear.bias[: model.cfg.d_model] = 1.0  # shift = 1 everywhere
        net.final.head.weight[token] = 40.0 / model.cfg.d_model


@pytest.mark.parametrize("jump", ["linear", "exp"])
def test_unmasking_follows_the_jump_probabilities(jump):
    """With p ≈ δ_9, the unmasked fraction before call i+1 is 1 − Π_{j ≤ i}(1 − P_j)."""
    method, model = DFM(), build(scheduler="klflow_quadratic")
    confident(model)
    calls = record_calls(model)
    batch = hidden(task_batch(400))
    steps = 8
    out = method.sample(
        model,
        batch,
        steps,
        "mixture_euler",
        torch.Generator().manual_seed(3),
        jump=jump,
        readout="none",
    )
    assert (out.ids[:, GIVEN:] == 9).all()
    free = ~batch.cond
    n = free.sum().item()
    still = 1.0
    sched = Scheduler("klflow_quadratic")
    for i in range(steps - 1):
        still *= 1 - sched.jump_probability(i / steps, 1 / steps, jump)
        frac = (calls[i + 1][0][free] != MASK).float().mean().item()
        expected = 1 - still
        assert abs(frac - expected) <= 4 * math.sqrt(expected * (1 - expected) / n) + 1e-9, i


def test_categorical_draws_follow_p_and_skip_the_forbidden_token(monkeypatch):
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))[None].repeat(20000, 1)
    logits[:, 1] += 5.0  # token 1 is forbidden: its mass must go nowhere
    monkeypatch.setattr(dfm, "DRAW_BLOCK", 4 * 999)  # ragged blocks of 999 rows
    monkeypatch.setattr(dfm, "DRAW_CHUNK", 3)  # one full chunk and a tail of one token
    draws = dfm._draw(logits, torch.Generator().manual_seed(0), forbid=1)
    freq = torch.bincount(draws, minlength=4).double() / 20000
    assert freq[1] == 0
    expected = torch.tensor([0.125, 0.0, 0.375, 0.5], dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=0.015)


@pytest.mark.parametrize("chunk", [1, 5, 7, 1024])
def test_inverse_cdf_equals_a_full_float64_cumsum(monkeypatch, chunk):
    """The two-level search returns what one fp64 cumsum over V would (V = 23, ragged chunks),
    and never a zero-probability token, even at u → 1 and on rows of tiny probabilities."""
    monkeypatch.setattr(dfm, "DRAW_CHUNK", chunk)
    g = torch.Generator().manual_seed(4)
    p = torch.softmax(torch.randn(4000, V, generator=g) * 4, -1)
    p[:, [0, 11, 22]] = 0.0  # empty intervals, also at both ends
    p[:5] *= 1e-30  # a tiny total: only relative positions matter
    u = torch.rand(4000, 1, generator=g, dtype=torch.float64)
    u[-3:] = torch.tensor([[0.0], [1 - 2**-53], [0.5]], dtype=torch.float64)
    cdf = p.double().cumsum(-1)
    ref = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]
    got = dfm._inverse_cdf(p, u)
    assert torch.equal(got, ref)
    assert not torch.isin(got, torch.tensor([0, 11, 22])).any()


def test_sampling_is_deterministic_under_the_generator():
    method, model = DFM(), build()
    randomise(model, std=0.05)  # a flat p_{1|t}: draws differ between seeds
    batch = hidden(task_batch(6))
    state = torch.get_rng_state()
    for readout in ("none", "argmax"):

        def run(seed: int, readout=readout) -> torch.Tensor:
            g = torch.Generator().manual_seed(seed)
            return method.sample(model, batch, 6, "mixture_euler", g, readout=readout).ids

        a = run(7)
        torch.manual_seed(123)  # the global RNG plays no part
        b, c = run(7), run(8)
        assert torch.equal(a, b) and not torch.equal(a, c), readout
    torch.set_rng_state(state)
    method.sample(model, batch, 3, "mixture_euler", torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)


def test_sample_rejects_bad_arguments():
    method, model = DFM(), build()
    batch = hidden(task_batch(2))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="no sampler 'euler'"):
        method.sample(model, batch, 4, "euler", g)
    with pytest.raises(InputError, match=r"\['top_k'\] are unknown to method 'dfm'"):
        method.sample(model, batch, 4, "mixture_euler", g, top_k=1)
    for iterations in (0, -1, 1.5, True, "3"):
        with pytest.raises(InputError, match="iterations must be an int >= 1"):
            method.sample(model, batch, 4, "mixture_euler", g, iterations=iterations)
    with pytest.raises(InputError, match="option jump must be one of"):
        method.sample(model, batch, 4, "mixture_euler", g, jump="euler")
    with pytest.raises(InputError, match="option readout must be one of"):
        method.sample(model, batch, 4, "mixture_euler", g, readout="sample")
    for nfe in (0, -1, 2.0, True):
        with pytest.raises(InputError, match="nfe must be a positive int"):
            method.sample(model, batch, nfe, "mixture_euler", g)
    long = Batch(torch.zeros(2, L + 2, dtype=torch.long), torch.ones(2, L + 2, dtype=torch.bool))
    with pytest.raises(InputError, match="seq_len"):
        method.sample(model, long, 4, "mixture_euler", g)


# ------------------------------------------------------------------------------------------------
# learning
# ------------------------------------------------------------------------------------------------


#: training steps of the learning test (and of its control)
STEPS = 200


def train(method: DFM, model, steps: int) -> tuple[float, float]:
    """Adam 3e-3, batch 128 fresh task rows per step; (seconds, last loss)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    start = time.monotonic()
    for step in range(steps):
        batch = task_batch(128, seed=int(torch.randint(1 << 30, (), generator=g)))
        torch.manual_seed(1000 + step)  # as the training loop: reseed before every step
        loss = method.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.monotonic() - start, loss.item()


def test_learns_a_permutation_task_in_the_conditional_layout(monkeypatch):
    """d_model 64, 2 layers, κ = 2t − t², CE; Adam 3e-3, batch 128, 200 steps, CPU one thread.

    Evaluated on 512 fresh rows against copying the source, chance (1/16 on content) and the
    untrained model, with a control path that never masks. Outcomes measured on CPU: benchmarks/README.md, "Learning tests".
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        method = DFM()
        test = task_batch(512, seed=99)
        target = test.ids[:, GIVEN:]  # (512, 8): 6 content tokens, EOS, PAD
        content = torch.zeros_like(target, dtype=torch.bool)
        content[:, :N] = True

        def fresh():
            return build(
                d_model=64, n_layers=2, n_heads=4, time_dim=64, scheduler="klflow_quadratic"
            )

        def accuracy(model, nfe: int, **opts) -> tuple[float, float]:
            g = torch.Generator().manual_seed(0)
            out = method.sample(model, hidden(test), nfe, "mixture_euler", g, **opts)
            hit = out.ids[:, GIVEN:] == target
            return hit.float().mean().item(), hit[content].float().mean().item()

        copy = (test.ids[:, 1 : 1 + N] == target[:, :N]).float().mean().item()
        model = fresh()
        _, untrained = accuracy(model, 2)
        seconds, loss = train(method, model, STEPS)
        results = {
            "klflow nfe 2": accuracy(model, 2),
            "klflow nfe 9": accuracy(model, 9),
            "fmlib nfe 8": accuracy(model, 8, jump="exp", readout="none"),
        }
        # control: a path without masking teaches nothing about generating from [MASK]
        monkeypatch.setattr(dfm, "path_sample", lambda x1, *args, **kw: x1.clone())
        control = fresh()
        train(method, control, STEPS)
        _, control_content = accuracy(control, 9)
    finally:
        torch.set_num_threads(threads)
    shown = ", ".join(f"{k}: {a:.3f} (content {c:.3f})" for k, (a, c) in results.items())
    print(
        f"trained {STEPS} steps in {seconds:.1f}s, loss {loss:.4f}; {shown}; copy {copy:.3f}, "
        f"untrained (content) {untrained:.3f}, chance {1 / 16:.3f}; "
        f"never-masked control (content) {control_content:.3f}"
    )
    assert copy < 0.15 and untrained < 0.15
    for acc, acc_content in results.values():
        assert acc > 0.9
        assert acc_content > 0.85
    assert control_content < 0.3
