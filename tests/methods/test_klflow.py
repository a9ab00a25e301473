"""Tests of KL-flow, :mod:`repro.methods.klflow` (methods.md §3).

The geometry against hand computations (smoothed targets, Dirichlet noise, KL geodesics), the loss,
the time grids of both parametrisations, every sampler's exact NFE, given positions and the simplex
at every state, the basic ODE against its closed form, the re-noising of the sampling scheme, top-k
draws, determinism under the generator and option errors. The two learning tests at the end are the
correctness proof: a tiny model trained with this file's loss and decoded with its samplers solves a
conditional token-mapping task and generates text-like sequences of a Markov chain.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from repro.io import InputError
from repro.methods import klflow
from repro.methods.base import Batch
from repro.methods.klflow import (
    MODEL_KEYS,
    KLFlow,
    KLFlowModel,
    exp_noise_,
    geodesic_point,
    log_gap,
    smoothed_target,
    time_plan,
)
from repro.models import TransformerConfig
from repro.tokenization import LAYOUTS

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)
V, L = 23, 16  # 7 specials + 16 content tokens
IDS = dict(pad_id=PAD, bos_id=BOS, eos_id=EOS, sep_id=SEP, mask_id=MASK)
SAMPLERS = ("basic", "semi_sampling", "sampling", "hybrid")
#: the options each sampler is run with in the generic tests (hybrid switches half-way)
OPTS = {"basic": {}, "semi_sampling": {}, "sampling": {"top_k": 2}, "hybrid": {"t_star": 0.15}}
CODE = dict(time_param="code", t_max=0.3)
#: target = MAP[source]: a derangement of the 16 content tokens, specials kept
MAP = torch.arange(V)
MAP[7:] = torch.roll(torch.arange(7, V), 5)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on a busy 2-core runner is several times slower
    yield
    torch.set_num_threads(threads)


def config(**overrides) -> dict:
    cfg = dict(d_model=32, n_layers=2, n_heads=4, dropout=0.0, **IDS)
    cfg.update(overrides)
    return cfg


def build(seed: int = 0, **overrides) -> KLFlowModel:
    torch.manual_seed(seed)
    return KLFlow().build_model(config(**overrides), vocab_size=V, seq_len=L)


def randomise(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Give every parameter random N(0, std) values (adaLN-Zero starts the blocks at identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


class ConstantDenoiser(KLFlowModel):
    """A 'network' whose logits are the fixed z (L, V) for every input: one call = one NFE."""

    def __init__(self, z: torch.Tensor, **path) -> None:
        cfg = TransformerConfig(
            vocab_size=V, seq_len=L, d_model=8, n_layers=1, n_heads=2, time_cond=True, input="probs"
        )
        path = {"beta": 0.01, "t_max": 1.0, "time_param": "paper"} | path
        super().__init__(cfg, **path)
        self.register_buffer("z", z)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.z.expand(x.shape[0], -1, -1)  # (B, L, V)


def conditional_batch(n_rows: int, seed: int = 0, lengths: tuple[int, int] = (3, 6)) -> Batch:
    """``conditional`` rows ``[BOS] a₁…aₙ [SEP] MAP[a₁]…MAP[aₙ] [EOS] [PAD]…``, cond on BOS…SEP."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(lengths[0], lengths[1] + 1, (n_rows, 1), generator=g)
    src = torch.randint(7, V, (n_rows, L), generator=g)
    pos = torch.arange(L)[None]  # (1, L)
    ids = torch.where(pos == 0, BOS, torch.full((n_rows, L), PAD))
    ids = torch.where((pos >= 1) & (pos <= n), src, ids)
    ids = torch.where(pos == n + 1, SEP, ids)
    j = pos - (n + 2)  # index into the target
    aligned = src.gather(1, (j.clamp(0, L - 2) + 1).expand(n_rows, L))  # src[j] at target slot j
    ids = torch.where((j >= 0) & (j < n), MAP[aligned], ids)
    ids = torch.where(j == n, EOS, ids)
    return Batch(ids, (pos <= n + 1).expand(n_rows, L).clone())


def infill_batch(n_rows: int, seed: int = 0) -> Batch:
    """``infill``-like rows: two masked slots between given code, trailing [PAD]s given."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, V, (n_rows, L), generator=g)
    ids[:, 0], ids[:, 12:] = BOS, PAD
    ids[:, 5], ids[:, 11] = PAD, PAD  # a masked line's unused budget slots
    cond = torch.ones(n_rows, L, dtype=torch.bool)
    cond[:, 3:6] = cond[:, 9:12] = False
    return Batch(ids, cond)


def hidden(batch: Batch) -> Batch:
    """What the sample stage passes: the non-given positions hold [PAD], never the answer."""
    return Batch(torch.where(batch.cond, batch.ids, PAD), batch.cond)


def record_calls(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, t) of every network call of ``model``."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.register_forward_pre_hook(
        lambda mod, args: calls.append((args[0].clone(), torch.as_tensor(args[1]).clone()))
    )
    return calls


def k(sampler: str, top_k: int) -> dict:
    """The top_k option, for the samplers that take one (basic draws nothing)."""
    return {} if sampler == "basic" else {"top_k": top_k}


def run(model, batch: Batch, nfe: int, sampler: str, seed: int = 0, **opts):
    """sample(); returns (Samples, [(t, x) of every state the sampler passed to ``trace``])."""
    states: list[tuple[float, torch.Tensor]] = []
    out = KLFlow().sample(
        model,
        batch,
        nfe,
        sampler,
        torch.Generator().manual_seed(seed),
        trace=lambda t, x: states.append((t, x.clone())),
        **(OPTS[sampler] | opts),
    )
    return out, states


# ------------------------------------------------------------------------------------------------
# interface and build_model
# ------------------------------------------------------------------------------------------------


def test_interface_and_layouts():
    method = KLFlow()
    assert method.name == "klflow" and method.samplers == SAMPLERS
    assert method.layout("text") == "lm"
    assert method.layout("seq2seq") == "conditional"
    assert method.layout("code") == "infill"
    assert {"lm", "conditional", "infill"} <= set(LAYOUTS)


def test_backbone_and_path_constants():
    model = build(beta=0.02)
    cfg = model.cfg
    assert (cfg.input, cfg.output, cfg.activation, cfg.pos_emb) == (
        "probs",
        "logits",
        "relu2",
        "rope",
    )
    assert cfg.time_cond and cfg.adaln_gate and not cfg.causal and not cfg.bias
    assert (cfg.time_freq_dim, cfg.time_max_period, cfg.time_scale) == (256, 10000.0, 1.0)
    assert (model.beta, model.t_max, model.time_param) == (0.02, 1.0, "paper")
    assert model.gap == pytest.approx(math.log((1 - 0.02 + 0.02 / V) / (0.02 / V)))
    assert (model.pad_id, model.eos_id, model.sep_id) == (PAD, EOS, SEP)
    x = torch.softmax(torch.randn(3, L, V), -1)
    assert model(x, torch.rand(3)).shape == (3, L, V)
    code = build(**CODE)
    assert (code.t_max, code.time_param) == (0.3, "code")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nope": 1}, "unknown key"),
        ({"beta": 0.0}, "beta"),
        ({"beta": 1.0}, "beta"),
        ({"beta": "0.01"}, "beta"),
        ({"beta": 1e-30}, "beta"),
        ({"time_param": "arxiv"}, "time_param"),
        ({"t_max": 0.3}, "t_max"),  # < 1 needs time_param: code
        ({"time_param": "code"}, "t_max"),  # code needs t_max < 1
        ({"time_param": "code", "t_max": 0.0}, "t_max"),
        ({"t_max": True}, "t_max"),
        ({"n_heads": 5}, "n_heads"),
        ({"pos_emb": "alibi"}, "pos_emb"),
        ({"dropout": 1.5}, "dropout"),
        ({"time_scale": 0}, "time_scale"),
        ({"pad_id": V}, "pad_id"),
    ],
)
def test_build_model_rejects_bad_configs(overrides, message):
    with pytest.raises(InputError, match=message):
        build(**overrides)


def test_build_model_requires_the_backbone_size():
    for key in ("d_model", "n_layers", "n_heads"):
        cfg = config()
        del cfg[key]
        with pytest.raises(InputError, match=key):
            KLFlow().build_model(cfg, vocab_size=V, seq_len=L)


def test_the_paper_configs_keys_are_model_keys():
    """Every ``model`` key of a klflow experiment in the shipped configs is accepted."""
    root = Path(__file__).resolve().parents[2] / "config"
    found = 0
    for path in sorted(root.glob("*.yaml")):
        experiments = (yaml.safe_load(path.read_text()) or {}).get("experiments", {})
        for name, exp in experiments.items():
            if exp.get("method") == "klflow" or name.startswith("klflow"):
                assert set(exp.get("model", {})) <= set(MODEL_KEYS), (path.name, name)
                found += 1
    assert found >= 1
    build(**CODE, mlp_ratio=4.0, pos_emb="rope", beta=0.01)  # klflow_150m's keys, small sizes


# ------------------------------------------------------------------------------------------------
# geometry: targets, noise, geodesics
# ------------------------------------------------------------------------------------------------


def test_smoothed_targets_and_their_logits():
    beta, vocab = 0.1, 5
    x1 = smoothed_target(torch.tensor([2, 0]), vocab, beta)  # (2, 5)
    expected = torch.tensor([[0.02, 0.02, 0.92, 0.02, 0.02], [0.92, 0.02, 0.02, 0.02, 0.02]])
    assert torch.allclose(x1, expected, atol=1e-7)
    assert torch.allclose(x1.sum(-1), torch.ones(2))
    # the logit gap between the target and any other entry: log(0.92 / 0.02)
    assert log_gap(vocab, beta) == pytest.approx(math.log(0.92 / 0.02), rel=1e-12)
    # the paper's numbers: V = 50,257, beta = 0.01 -> about 15.4 nats
    assert log_gap(50257, 0.01) == pytest.approx(math.log(0.99 / (0.01 / 50257) + 1), rel=1e-12)
    assert 15.3 < log_gap(50257, 0.01) < 15.5


def test_dirichlet_noise_uses_only_the_generator():
    state = torch.get_rng_state()
    e = exp_noise_(torch.empty(4000, 50), torch.Generator().manual_seed(3))
    again = exp_noise_(torch.empty(4000, 50), torch.Generator().manual_seed(3))
    other = exp_noise_(torch.empty(4000, 50), torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(e, again) and not torch.equal(e, other)
    assert bool((e > 0).all()) and bool((e <= 25 * math.log(2) + 1e-5).all())
    # Exp(1): mean 1, variance 1, P(E > 1) = 1/e; so each row / its sum is Dirichlet(1)
    assert e.mean().item() == pytest.approx(1.0, abs=0.02)
    assert e.var().item() == pytest.approx(1.0, abs=0.05)
    assert (e > 1).float().mean().item() == pytest.approx(math.exp(-1), abs=0.01)
    x0 = e / e.sum(-1, keepdim=True)
    # Dirichlet(1_V) marginal: Beta(1, V - 1), mean 1/V, variance (V - 1) / (V² (V + 1))
    assert x0.var().item() == pytest.approx(49 / (50**2 * 51), rel=0.05)


def test_geodesic_endpoints_and_formula_against_a_hand_computation():
    beta = 0.01
    e = exp_noise_(torch.empty(6, V), torch.Generator().manual_seed(0))
    x0 = (e / e.sum(-1, keepdim=True)).double()  # (6, V)
    ids = torch.tensor([7, 8, 22, 0, 9, 7])
    x1 = torch.full((6, V), beta / V, dtype=torch.float64)
    x1[torch.arange(6), ids] = 1 - beta + beta / V
    for t in (0.0, 0.1, 0.37, 0.9, 1.0):
        # paper eq. 3: x_t = C · x0^(1-t) · x1^t, computed in float64 from the definition
        hand = x0 ** (1 - t) * x1**t
        hand = hand / hand.sum(-1, keepdim=True)
        for scale in (1.0, 7.5):  # x0 up to a positive factor (unnormalised Exp draws)
            got = geodesic_point(x0.float() * scale, ids, t, beta)
            assert torch.allclose(got.double(), hand, rtol=1e-5, atol=1e-7), t
    assert torch.allclose(geodesic_point(x0.float(), ids, 0.0, beta).double(), x0, atol=1e-7)
    assert torch.allclose(geodesic_point(x0.float(), ids, 1.0, beta).double(), x1, atol=1e-7)
    # logit form (eq. 4): log x_t − [(1 − t) log x0 + t log x1] is constant in each row
    t = 0.37
    diff = geodesic_point(x0.float(), ids, t, beta).double().log() - (
        (1 - t) * x0.log() + t * x1.log()
    )
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-5)


def test_geodesic_per_example_times_and_given_rows_are_exact_one_hot():
    e = exp_noise_(torch.empty(3, L, V), torch.Generator().manual_seed(1))
    batch = conditional_batch(3)
    t = torch.tensor([0.0, 0.5, 1.0])
    got = geodesic_point(e, batch.ids, t, 0.01, given=batch.cond)  # (3, L, V)
    one_hot = F.one_hot(batch.ids, V).float()
    assert torch.equal(got[batch.cond], one_hot[batch.cond])
    for b in range(3):
        row = geodesic_point(e[b], batch.ids[b], float(t[b]), 0.01)  # (L, V)
        free = ~batch.cond[b]
        assert torch.allclose(got[b][free], row[free], atol=1e-7)
    assert torch.allclose(
        got[2][~batch.cond[2]], smoothed_target(batch.ids[2], V, 0.01)[~batch.cond[2]]
    )


# ------------------------------------------------------------------------------------------------
# training objective
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [{}, CODE], ids=["paper", "code"])
def test_loss_is_the_mean_cross_entropy_over_all_positions(path):
    method, model = KLFlow(), randomise(build(**path))
    calls = record_calls(model)
    outputs: list[torch.Tensor] = []
    model.register_forward_hook(lambda mod, args, out: outputs.append(out.detach()))
    batch = conditional_batch(64, seed=3)
    torch.manual_seed(5)
    loss = method.loss(model, batch)
    (x, t), logits = calls[0], outputs[0]
    t_max = path.get("t_max", 1.0)
    assert t.shape == (64,) and bool((t >= 0).all()) and bool((t < t_max).all())
    assert t.max().item() > 0.8 * t_max  # U[0, t_max), not a fixed t
    # hand: mean over all B×L positions (given, pads and target alike) of −log softmax[w]
    hand = -torch.log_softmax(logits.double(), -1).gather(-1, batch.ids[..., None]).mean()
    assert loss.item() == pytest.approx(hand.item(), rel=1e-5)
    # the input is x_t on the simplex, given rows exact one-hot
    assert bool((x >= 0).all()) and torch.allclose(x.sum(-1), torch.ones(64, L), atol=1e-5)
    assert torch.equal(x[batch.cond], F.one_hot(batch.ids, V).float()[batch.cond])
    # the same noise at the same t: loss_at_t(t).mean() is the loss
    torch.manual_seed(5)
    t_again = torch.rand(64) * t_max
    assert torch.equal(t_again, t)
    per = method.loss_at_t(model, batch, t_again)
    assert per.shape == (64,) and per.mean().item() == pytest.approx(loss.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_loss_at_t_endpoints():
    method, model = KLFlow(), randomise(build())
    calls = record_calls(model)
    batch = conditional_batch(8, seed=4)
    method.loss_at_t(model, batch, torch.ones(8))
    x = calls[-1][0]
    free = ~batch.cond
    # t = 1: the noise is gone, free rows are the smoothed one-hot targets
    assert torch.allclose(x[free], smoothed_target(batch.ids, V, 0.01)[free], atol=1e-6)
    method.loss_at_t(model, batch, torch.zeros(8))
    x = calls[-1][0]
    assert (x[free].argmax(-1) == batch.ids[free]).float().mean() < 0.3  # pure noise at t = 0
    for bad in (torch.zeros(7), torch.full((8,), 1.5)):
        with pytest.raises(ValueError, match="t must"):
            method.loss_at_t(model, batch, bad)
    long = Batch(torch.zeros(2, L + 1, dtype=torch.long), torch.ones(2, L + 1, dtype=torch.bool))
    with pytest.raises(InputError, match="seq_len"):
        method.loss(model, long)


# ------------------------------------------------------------------------------------------------
# time grids and NFE
# ------------------------------------------------------------------------------------------------


def test_time_plan_paper_and_code():
    steps, readout = time_plan("paper", 1.0, 4, "basic")
    assert readout is None and len(steps) == 4
    assert [s.t for s in steps] == [0.0, 0.25, 0.5, 0.75]
    assert [s.t_next for s in steps] == [0.25, 0.5, 0.75, 1.0]
    # Euler weight h / (1 − t): the last step lands exactly on the target (a = 1)
    assert [s.a for s in steps] == pytest.approx([0.25 / 1.0, 0.25 / 0.75, 0.25 / 0.5, 1.0])
    steps, readout = time_plan("code", 0.3, 5, "sampling")
    assert readout == 0.3 and len(steps) == 4  # n = nfe − 1 steps + the read-out call
    tau = -math.log(0.7) / 4
    assert [s.t for s in steps] == pytest.approx([1 - math.exp(-i * tau) for i in range(4)])
    assert steps[-1].t_next == 0.3 and all(s.a == pytest.approx(tau) for s in steps)
    assert {s.kind for s in steps} == {"sampling"}
    assert {s.kind for s in time_plan("paper", 1.0, 3, "semi_sampling")[0]} == {"semi"}


def test_hybrid_switch_is_in_the_models_own_time():
    paper, _ = time_plan("paper", 1.0, 100, "hybrid", t_star=0.28)
    assert [s.kind for s in paper] == ["basic"] * 28 + ["sampling"] * 72
    code, _ = time_plan("code", 0.3, 101, "hybrid", t_star=0.28)
    n_basic = sum(s.kind == "basic" for s in code)
    assert n_basic == math.ceil(100 * math.log(1 / 0.72) / math.log(1 / 0.7))  # ≈ 92 %
    assert [s.kind for s in code] == ["basic"] * n_basic + ["sampling"] * (100 - n_basic)
    assert {s.kind for s in time_plan("paper", 1.0, 10, "hybrid", t_star=0.0)[0]} == {"sampling"}
    assert {s.kind for s in time_plan("paper", 1.0, 10, "hybrid", t_star=1.0)[0]} == {"basic"}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(
    "path, nfe",
    [({}, 1), ({}, 2), ({}, 7), (CODE, 2), (CODE, 7)],
    ids=["paper-1", "paper-2", "paper-7", "code-2", "code-7"],
)
def test_nfe_equals_the_network_calls(sampler, path, nfe):
    model = randomise(build(**path))
    calls = record_calls(model)
    out, states = run(model, hidden(conditional_batch(3)), nfe, sampler)
    assert out.nfe == nfe == len(calls)
    assert out.extras["time_param"] == path.get("time_param", "paper")
    steps, readout = time_plan(
        model.time_param, model.t_max, nfe, sampler, OPTS[sampler].get("t_star", 0.0)
    )
    assert (
        out.extras["nfe_paper"] == out.extras["steps"] == len(steps) == nfe - (readout is not None)
    )
    assert out.extras["readout"] == (readout is not None)
    assert out.extras["ode_steps"] + out.extras["sampling_steps"] == len(steps)
    expected_t = [s.t for s in steps] + ([readout] if readout is not None else [])
    for (_, t), want in zip(calls, expected_t):
        assert t.shape == (3,) and torch.allclose(t, torch.full((3,), want))
    # one state per step plus the prior; the last at t = 1 (paper) or t_max (code)
    assert [s for s, _ in states] == [0.0] + [s.t_next for s in steps]
    assert states[-1][0] == pytest.approx(model.t_max)
    assert model.training  # mode restored


# ------------------------------------------------------------------------------------------------
# sampler invariants
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("path", [{}, CODE], ids=["paper", "code"])
@pytest.mark.parametrize("make", [conditional_batch, infill_batch], ids=["conditional", "infill"])
def test_given_positions_never_change_and_every_state_is_on_the_simplex(sampler, path, make):
    model = randomise(build(**path))
    calls = record_calls(model)
    batch = make(4, seed=2)
    out, states = run(model, hidden(batch), 6, sampler)
    one_hot = F.one_hot(batch.ids, V).float()
    free = ~batch.cond
    assert len(states) == 6 + (path == {})  # the prior + one state per step
    for x in [x for _, x in states] + [x for x, _ in calls]:
        assert torch.isfinite(x).all() and bool((x >= 0).all())
        assert torch.allclose(x.sum(-1), torch.ones(4, L), atol=1e-5)
        assert torch.equal(x[batch.cond], one_hot[batch.cond])  # exact one-hot, every t
    assert torch.equal(out.ids[batch.cond], batch.ids[batch.cond])
    assert out.ids.shape == (4, L) and out.ids.dtype == torch.int64
    # the paper's last state is x_1: its argmax is the answer
    if path == {}:
        assert torch.equal(out.ids[free], states[-1][1][free].argmax(-1))


@pytest.mark.parametrize("path", [{}, CODE], ids=["paper", "code"])
def test_basic_follows_the_closed_form_of_its_euler_scheme(path):
    """Constant denoiser p: l̄₁ is fixed, so Euler on dl = a (l̄₁ − l) has a closed form.

    paper: l_i = (1 − t_i) log x₀ + t_i l̄₁ exactly (a_i = h / (1 − t_i));
    code: l_i = (1 − Δτ)^i log x₀ + (1 − (1 − Δτ)^i) l̄₁ (Euler in τ = −ln(1 − t)).
    """
    z = torch.randn(L, V, generator=torch.Generator().manual_seed(0)) * 2
    model = ConstantDenoiser(z, **path)
    batch = hidden(conditional_batch(2))
    nfe = 5
    out, states = run(model, batch, nfe, "basic")
    beta = 0.01
    p = torch.softmax(z.double(), -1)
    l_bar = p * math.log(1 - beta + beta / V) + (1 - p) * math.log(beta / V)  # (L, V)
    x0 = states[0][1].double()
    free = ~batch.cond
    steps, _ = time_plan(model.time_param, model.t_max, nfe, "basic")
    for i, (t, x) in enumerate(states):
        w = t if path == {} else 1 - (1 - steps[0].a) ** i  # weight of l̄₁
        hand = torch.softmax((1 - w) * x0.clamp_min(1e-300).log() + w * l_bar, -1)
        assert torch.allclose(x.double()[free], hand[free], atol=1e-5), (i, t)
    assert torch.equal(out.ids[free], z.argmax(-1).expand(2, L)[free])


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("path", [{}, CODE], ids=["paper", "code"])
def test_every_sampler_returns_the_argmax_of_a_constant_denoiser(sampler, path):
    z = torch.randn(L, V, generator=torch.Generator().manual_seed(1)) * 2
    batch = hidden(conditional_batch(3))
    out, _ = run(ConstantDenoiser(z, **path), batch, 4, sampler, **k(sampler, 1))
    free = ~batch.cond
    assert torch.equal(out.ids[free], z.argmax(-1).expand(3, L)[free])


def test_sampling_renoises_with_fresh_dirichlet_noise_at_every_step():
    """x_s = softmax((1 − s) log x₀' + s log x₁ˢ(x̂₁)): recover x₀' from each state; it must be a
    new Dirichlet(1) draw (Exp(1)-like spread, uncorrelated with the previous step's)."""
    z = torch.randn(L, V, generator=torch.Generator().manual_seed(2))
    model = ConstantDenoiser(z)
    batch = Batch(torch.full((64, L), BOS), torch.zeros(64, L, dtype=torch.bool))
    batch.cond[:, 0] = True
    _, states = run(model, batch, 5, "sampling", top_k=1)
    tok = z.argmax(-1)  # x̂₁ of every position
    gap = model.gap
    noise = []
    for s, x in states[:-1]:  # s = 0, 0.2, …, 0.8 (the last state, s = 1, is noise-free)
        log_e = x[:, 1:].double().log()  # (64, L − 1, V)
        log_e.scatter_add_(
            -1,
            tok[1:].expand(64, -1)[..., None],
            torch.full((64, L - 1, 1), -s * gap, dtype=torch.float64),
        )
        log_e = log_e / (1 - s)  # = log x₀' + a per-row constant
        e = torch.softmax(log_e, -1) * V  # Dirichlet(1) scaled by V: mean 1, std ≈ 1
        noise.append(e.flatten())
        assert e.std().item() == pytest.approx(math.sqrt((V - 1) / (V + 1)), rel=0.1), s
    for a, b in zip(noise, noise[1:]):
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.05
    assert torch.allclose(
        states[-1][1][:, 1:], smoothed_target(tok[1:], V, 0.01).expand(64, -1, -1), atol=1e-6
    )


@pytest.mark.parametrize("sampler", ["semi_sampling", "sampling"])
def test_top_k_draws_follow_the_restricted_softmax(sampler):
    """NFE 1 (paper): the answer is x̂₁ itself, drawn from softmax(z) on its top-k entries."""
    z = torch.full((L, V), -9.0)
    z[:, 7], z[:, 8], z[:, 9] = 1.0, 0.0, -0.5  # the top-3 of every position
    model = ConstantDenoiser(z)
    batch = Batch(torch.full((256, L), BOS), torch.zeros(256, L, dtype=torch.bool))
    batch.cond[:, 0] = True
    draws = {}
    for k in (1, 2, 0):
        out, _ = run(model, batch, 1, sampler, top_k=k)
        draws[k] = out.ids[:, 1:].flatten()  # 3,840 draws
    assert bool((draws[1] == 7).all())
    assert set(draws[2].tolist()) == {7, 8}
    assert (draws[2] == 7).float().mean().item() == pytest.approx(1 / (1 + math.exp(-1)), abs=0.03)
    p = torch.softmax(z[0], -1)
    freq = torch.bincount(draws[0], minlength=V).float() / draws[0].numel()
    assert torch.allclose(freq[7:10], p[7:10], atol=0.03)
    assert set(draws[0].tolist()) >= {7, 8, 9}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_fixed_seeds_give_identical_samples_and_different_seeds_differ(sampler):
    model = randomise(build())
    batch = hidden(conditional_batch(8, seed=1))
    state = torch.get_rng_state()
    a, _ = run(model, batch, 4, sampler, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    b, _ = run(model, batch, 4, sampler, seed=7)
    c, _ = run(model, batch, 4, sampler, seed=8)
    assert torch.equal(a.ids, b.ids) and not torch.equal(a.ids, c.ids)
    torch.set_rng_state(state)
    run(model, batch, 2, sampler, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("path", [{}, CODE], ids=["paper", "code"])
def test_blocks_of_positions_do_not_change_the_samples_on_the_cpu(sampler, path):
    model = randomise(build(**path))
    batch = hidden(conditional_batch(5, seed=6))
    opts = k(sampler, 0 if sampler == "sampling" else 2)  # full-softmax and top-k draws
    whole, states = run(model, batch, 5, sampler, **opts)
    for chunk in (1, 7):
        part, part_states = run(model, batch, 5, sampler, chunk=chunk, **opts)
        assert torch.equal(part.ids, whole.ids)
        for (_, x), (_, y) in zip(states, part_states):  # same draws; vector/scalar ulps aside
            assert torch.allclose(x, y, rtol=1e-5, atol=1e-7)


def test_sample_rejects_bad_arguments():
    method, model = KLFlow(), build()
    batch = hidden(conditional_batch(2))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="no sampler 'euler'"):
        method.sample(model, batch, 4, "euler", g)
    bad = [
        ("basic", {"top_k": 1}, "top_k"),
        ("basic", {"t_star": 0.2}, "t_star"),
        ("sampling", {"t_star": 0.2}, "t_star"),
        ("sampling", {"temperature": 1.0}, "temperature"),
        ("hybrid", {}, "t_star"),
        ("hybrid", {"t_star": 1.5}, "t_star"),
        ("hybrid", {"t_star": "0.3"}, "t_star"),
        ("sampling", {"top_k": -1}, "top_k"),
        ("sampling", {"top_k": V + 1}, "top_k"),
        ("semi_sampling", {"top_k": True}, "top_k"),
        ("sampling", {"chunk": 0}, "chunk"),
        ("basic", {"trace": 3}, "trace"),
    ]
    for sampler, opts, key in bad:
        with pytest.raises(InputError, match=key):
            method.sample(model, batch, 4, sampler, g, **opts)
    for nfe in (0, -1, 2.0, True):
        with pytest.raises(InputError, match="nfe must be a positive int"):
            method.sample(model, batch, nfe, "basic", g)
    with pytest.raises(InputError, match="nfe must be >= 2"):
        method.sample(build(**CODE), batch, 1, "basic", g)
    long = Batch(torch.zeros(2, L + 2, dtype=torch.long), torch.ones(2, L + 2, dtype=torch.bool))
    with pytest.raises(InputError, match="seq_len"):
        method.sample(model, long, 4, "basic", g)


def test_nothing_to_generate_makes_no_call():
    model = build()
    calls = record_calls(model)
    batch = conditional_batch(2)
    full = Batch(batch.ids, torch.ones_like(batch.cond))
    out = KLFlow().sample(model, full, 4, "sampling", torch.Generator().manual_seed(0))
    assert out.nfe == 0 == len(calls) and torch.equal(out.ids, batch.ids)


# ------------------------------------------------------------------------------------------------
# learning
# ------------------------------------------------------------------------------------------------


def train(model, make_batch, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Adam on the KL-flow loss, the global RNG reseeded every step as the training loop does."""
    method, opt = KLFlow(), torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    start = time.monotonic()
    for step in range(steps):
        batch = make_batch(int(torch.randint(1 << 30, (), generator=g)))
        torch.manual_seed(1000 + step)
        loss = method.loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item(), time.monotonic() - start


def test_learns_a_token_mapping_in_the_conditional_layout():
    """d_model 64, 2 layers, Adam 3e-3, batch 128, 300 steps, paper time (t ~ U[0, 1)).

    ``conditional`` rows of 3–6 source tokens, target = MAP[source] (a derangement), then [EOS] and
    generated [PAD]s. Content-token accuracy at NFE 8 on 512 fresh rows for every sampler, against
    copying the aligned source token, chance (1/16) and the untrained model. Outcomes measured on CPU: benchmarks/README.md, "Learning tests".
    """
    method = KLFlow()
    model = build(d_model=64, n_layers=2, n_heads=4)
    test = conditional_batch(512, seed=99)
    content = ~test.cond & (test.ids >= 7)

    def accuracy(sampler: str, nfe: int = 8) -> float:
        opts = {"t_star": 0.5} if sampler == "hybrid" else {}
        out = method.sample(
            model, hidden(test), nfe, sampler, torch.Generator().manual_seed(0), **opts
        )
        return (out.ids == test.ids)[content].float().mean().item()

    untrained = accuracy("sampling")
    loss, seconds = train(model, lambda seed: conditional_batch(128, seed), 300)
    acc = {s: accuracy(s) for s in SAMPLERS}
    print(
        f"trained 300 steps in {seconds:.1f}s, loss {loss:.4f}; content accuracy {acc}, "
        f"untrained {untrained:.3f}, chance {1 / 16:.3f}, copy 0"
    )
    assert untrained < 0.2
    for sampler, value in acc.items():
        assert value > 0.85, sampler


#: Markov chain on the 16 content tokens: c -> c + 1 or c + 5 (mod 16), probability 1/2 each
NEXT = torch.stack([(torch.arange(16) + 1) % 16, (torch.arange(16) + 5) % 16], 1) + 7


def chain_batch(n_rows: int, seed: int) -> Batch:
    """``lm`` rows ``[BOS] c₁…cₙ [EOS] [PAD]…`` of the chain, n in 8…14; cond = BOS only."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n_rows, L), PAD)
    ids[:, 0] = BOS
    n = torch.randint(8, L - 1, (n_rows,), generator=g)
    tok = torch.randint(7, V, (n_rows,), generator=g)
    for j in range(1, L):
        ids[:, j] = torch.where(j <= n, tok, torch.where(j == n + 1, EOS, PAD))
        tok = NEXT[tok - 7, torch.randint(0, 2, (n_rows,), generator=g)]
    cond = torch.zeros(n_rows, L, dtype=torch.bool)
    cond[:, 0] = True
    return Batch(ids, cond)


def chain_log_likelihood(ids: torch.Tensor) -> tuple[float, float]:
    """(fraction of content bigrams the chain allows, mean log-probability per content bigram,
    an impossible bigram scored as the uniform model's log(1/16), not −inf)."""
    a, b = ids[:, 1:-1], ids[:, 2:]
    both = (a >= 7) & (b >= 7)
    n = max(both.sum().item(), 1)
    ok = ((NEXT[(a - 7).clamp(min=0)] == b[..., None]).any(-1) & both).sum().item()
    return ok / n, (ok * math.log(0.5) + (n - ok) * math.log(1 / 16)) / n


def test_unconditional_samples_follow_the_data_chain():
    """``lm`` layout, only [BOS] given; d_model 64, 2 layers, 300 steps.

    The share of generated content bigrams the chain allows and their mean log-likelihood, at
    NFE 16 on 256 samples, against a uniform model (2/16 allowed, log 1/16) and the untrained
    model. Outcomes measured on CPU: benchmarks/README.md, "Learning tests".
    """
    method = KLFlow()
    model = build(d_model=64, n_layers=2, n_heads=4)
    prompt = Batch(torch.full((256, L), PAD), torch.zeros(256, L, dtype=torch.bool))
    prompt.ids[:, 0], prompt.cond[:, 0] = BOS, True

    def quality(sampler: str) -> tuple[float, float, float]:
        opts = {"t_star": 0.3} if sampler == "hybrid" else {}
        ids = method.sample(
            model, prompt, 16, sampler, torch.Generator().manual_seed(0), **opts
        ).ids
        valid, ll = chain_log_likelihood(ids)
        return valid, ll, ((ids[:, 1:] >= 7).sum(1)).float().mean().item()

    assert chain_log_likelihood(chain_batch(64, 5).ids)[0] == 1.0
    untrained = quality("sampling")
    loss, seconds = train(model, lambda seed: chain_batch(128, seed), 300)
    got = {s: quality(s) for s in ("basic", "sampling", "hybrid")}
    print(
        f"trained 300 steps in {seconds:.1f}s, loss {loss:.3f}; (valid bigrams, log-lik, "
        f"content tokens): {got}; untrained {untrained}; uniform valid 0.125, "
        f"log-lik {math.log(1 / 16):.2f}"
    )
    assert untrained[0] < 0.3
    for sampler, (valid, ll, length) in got.items():
        assert valid > 0.5 and ll > math.log(1 / 16) + 1.0, sampler
        assert length > 4, sampler  # real sequences, not [EOS]/[PAD] only


def test_module_docstring_names_every_sampler():
    for sampler in SAMPLERS:
        assert f"``{sampler}``" in klflow.__doc__
