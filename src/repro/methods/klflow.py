"""KL-flow (Sevriugov & Oseledets): flow matching along KL geodesics of the V-simplex.

Shapes: ids (B, L) int64, cond (B, L) bool; states x_t (B, L, V) on the simplex; t (B,) float32;
logits (B, L, V). ``docs/methods.md`` §3 is the long spec.

Follows the arXiv paper ("KL-geodesics flow matching with a novel sampling scheme"); where the paper
is silent, the public code (``EgorSevriugov/KL-Flow``, snapshot b85e7cb, as methods.md reports it).
The public code's own time parametrisation is available as ``time_param: code``. Piece by piece
(P = the paper decides, C = the code decides, ours = neither says):

* Representation (§3.1, P = C): every position is a point of the V-simplex. The target is the
  smoothed one-hot x₁ˢ = (1 − β)·δ_w + β/V·𝟏 (β = ``beta``, 0.01), so log x₁ˢ = ℓ_lo + gap·δ_w with
  ℓ_lo = log(β/V) and gap = ℓ_hi − ℓ_lo = log(1 + V(1 − β)/β) (≈ 15.4 nats at V = 50,257). Prior:
  x₀ ~ Dirichlet(𝟏_V) per position, drawn as normalised Exp(1) variables E = −log U (U uniform on
  [2⁻²⁵, 1), so 0 < E ≤ 17.3: the Exp(1) law up to a 3·10⁻⁸ upper tail) on the model's device.
* Interpolation (§3.1, P eq. 4 = C): the KL geodesic x_t = softmax((1 − t)·log x₀ + t·log x₁ˢ),
  computed as x_t ∝ E^(1−t) ⊙ exp(t·gap·δ_w) (the same point: per-row constants cancel in the
  softmax, and E's normalisation is one of them). Given (``cond``) positions are the **exact**
  one-hot δ_w at every t, in training and sampling (C; methods.md §3.1).
* Denoiser (§3.2/§3.4): the shared :class:`~repro.models.Transformer`, bidirectional, input
  ``probs`` (bias-free Linear V → d of x_t, C), logits out (untied, C), DiT adaLN-Zero time
  conditioning (P App. C found adaLN best; the snapshot prepends a time token instead), a 256-wide
  sinusoid of t·``time_scale`` with max period 10,000 (C: raw t, ``time_scale`` 1), ReLU² MLP (C),
  bias-free attention/MLP Linears (C, modded-nanoGPT), RoPE (methods.md's recommendation; the
  snapshot has no working positions), dropout ``dropout`` (C: 0.1). The backbone's LayerNorm
  replaces the snapshot's RMSNorm and QK-norm (deliberate deviation: the shared backbone).
* Objective (§3.2, P eq. 18 = C): cross-entropy of the logits against the **hard** token ids, mean
  over **all** B×L positions (the paper sums over all S positions; the code averages
  ``F.cross_entropy`` over all positions: prompt, pads and target alike). Given positions see their
  own token as input, so their term is learned at once. Padding follows the layout's ``cond``:
  ``lm`` and ``conditional`` pads are generated (cond 0) and trained like any target token (C:
  "pads are generated"); ``infill``'s trailing pads are given (one-hot inputs), its masked-line pad
  slots generated. t ~ U[0, t_max) per example, then the Dirichlet noise, from the global torch RNG.
* Time parametrisation, model key ``time_param`` (the two sources disagree, methods.md §3.2/§3.3):

  - ``paper`` (default; ``t_max`` must be 1): t ~ U[0, 1) in training. Sampling with N = ``nfe``
    steps on the grid t_i = i/N, one network call per step at t_i; the last step reaches t = 1 and
    the tokens are argmax x₁ (P Algorithms 1–2 "return x_t"). NFE = N = network calls.
  - ``code``: t ~ U[0, t_max) (C: t_max 0.3). Sampling runs n = ``nfe`` − 1 steps on a uniform grid
    of τ = −ln(1 − t) over [0, −ln(1 − t_max)] (Δτ = τ_max/n, network time t = 1 − e^(−τ)), then one
    read-out call at t = t_max whose argmax gives the tokens (C). Network calls = n + 1 (the code's
    NFE count); the paper's count of the same run is n.

* Samplers (§3.3), with ``p = softmax(f_θ(x_t, t))`` and a = the Euler weight of a step
  (paper: h/(1 − t_i) = 1/(N − i); code: Δτ):

  - ``basic`` (P Alg. 1, C ``rhs``): l ← (1 − a)·l + a·l̄₁ with the expected smoothed logit
    l̄₁ = p·ℓ_hi + (1 − p)·ℓ_lo; x = softmax(l). The logit state l is kept up to a per-position
    constant (ℓ_lo terms dropped: they cancel in every softmax).
  - ``semi_sampling`` (P eq. 22; the code has no such class — in ``code`` time it uses the τ grid,
    ours): as basic with l̄₁ replaced by log x₁ˢ(x̂₁) of one draw x̂₁.
  - ``sampling`` (P Alg. 2, C ``rhs_sample``): x̂₁ drawn, a **fresh** x₀' ~ Dir(𝟏), and
    x ← softmax((1 − s)·log x₀' + s·log x₁ˢ(x̂₁)) at the next time s (P: t + h; C: 1 − e^(−τ−Δτ)).
  - ``hybrid`` (P §3.2, C ``t_split``): basic steps while t_i < ``t_star``, sampling steps after.
    ``t_star`` is in the model's own time (paper: of [0, 1]; code: of [0, t_max] — the paper's
    FineFineWeb 0.28 then means ≈ 92 % ODE steps); required, as the paper tunes it per dataset.

  x̂₁ draw (``top_k``, default 1 = argmax: P Table 1 "k = 1", C default ``k=1``): a sample from the
  softmax restricted to the k largest logits (C: Categorical over ``topk``), exactly, by the
  Gumbel-max trick; ``top_k: 0`` samples the full softmax (P Alg. 2 read literally).

* Randomness: sampling uses only the ``generator`` (initial noise, fresh noise, x̂₁ draws), in a
  fixed order: per step the x̂₁ draws of all positions, then the noise of all positions, each in
  blocks of positions; on the CPU the stream does not depend on the block size (``chunk``).
* Memory: the V-wide sampler state is the network input x (B·L·V fp32) plus, for basic /
  semi-sampling / hybrid-before-t*, the logit state l of the generated positions (n_gen·V fp32);
  every other V-wide temporary (softmax, noise, draws) is computed in blocks of ``chunk`` positions
  (default: :data:`BLOCK_ELEMENTS` V-wide values per block), so it stays bounded whatever B·L.
  A block of consecutive generated positions works on views of x and of the logits (fresh noise
  is drawn straight into x); only blocks of scattered positions (short infilled lines) gather and
  scatter. The network's own logits (B·L·V) come on top (``benchmarks/bench_klflow.py``).

``Samples.extras`` records ``time_param``, ``t_max``, ``beta``, ``steps`` (integration steps),
``nfe_paper`` (the paper's NFE count = steps), ``readout`` (whether a read-out call was made; then
``Samples.nfe`` = steps + 1 = the code's count), ``ode_steps`` / ``sampling_steps`` (basic or
semi-sampling vs re-noising steps), ``top_k`` and ``t_star``. Written from the paper and the
methods spec; no code is copied from the reference repositories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from ..models import Transformer, TransformerConfig
from .base import Batch, Method, Samples, batch_on, check_model_cfg, eval_mode
from .blocks import Block, Scratch, position_blocks
from .options import KLFLOW_TIME_PARAM, klflow_nfe, klflow_options

#: model config keys (None = required) and their defaults
MODEL_KEYS: dict[str, Any] = {
    "d_model": None,
    "n_layers": None,
    "n_heads": None,
    "mlp_ratio": 4.0,
    "dropout": 0.1,  # the snapshot's dropout
    "pos_emb": "rope",
    "beta": 0.01,  # smoothing of the one-hot targets (paper §5)
    "t_max": 1.0,  # end of the training/sampling time range; < 1 only with time_param: code
    "time_param": KLFLOW_TIME_PARAM,  # "paper" (t in [0, 1]) | "code" (t in [0, t_max], τ grid, read-out)
    "time_scale": 1.0,  # t is multiplied by this before the time sinusoid (1 = paper/code)
}
#: token ids the train stage injects from ``meta.json`` specials (all optional, unused by the math)
SPECIAL_IDS = ("pad_id", "bos_id", "eos_id", "sep_id", "mask_id")
TIME_PARAMS = ("paper", "code")
#: the public code's t_max (``fm_config.max_t``), quoted in error messages
CODE_T_MAX = 0.3
#: DiT timestep embedding of the snapshot: 256 frequencies, max period 10,000
TIME_FREQ_DIM = 256
TIME_MAX_PERIOD = 10000.0
#: largest gap = log(1 + V(1 − β)/β) accepted: exp(gap)·17.3 must stay far inside fp32
MAX_GAP = 60.0
#: lower end of the uniform draws behind E = −log U (so E is finite: E <= 25·ln 2 ≈ 17.3)
U_MIN = 2.0**-25
#: V-wide values per block of the sampler's temporaries, by device type (CPU: about a cache)
BLOCK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 25}

_WHERE = "model config of method 'klflow'"


# ------------------------------------------------------------------------------------------------
# The geometry: smoothed targets, Dirichlet noise, KL geodesics
# ------------------------------------------------------------------------------------------------


def log_gap(vocab_size: int, beta: float) -> float:
    """gap = ℓ_hi − ℓ_lo = log(1 − β + β/V) − log(β/V) = log(1 + V(1 − β)/β)."""
    return math.log1p(vocab_size * (1.0 - beta) / beta)


def smoothed_target(ids: torch.Tensor, vocab_size: int, beta: float) -> torch.Tensor:
    """x₁ˢ = (1 − β)·δ_w + β/V·𝟏 of ids (...) → (..., V) float32 (paper eq. 20)."""
    out = torch.full((*ids.shape, vocab_size), beta / vocab_size, device=ids.device)
    return out.scatter_(-1, ids[..., None], 1.0 - beta + beta / vocab_size)


def exp_noise_(buf: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``buf`` in place with Exp(1) draws E = −log U, U ~ U[2⁻²⁵, 1) (so 0 <= E <= 17.3).

    Each row of E / ΣE is a Dirichlet(𝟏) draw (normalised Gamma(1) = Exp(1) variables). E is 0 only
    if a draw rounds to U = 1 (not on the CPU); callers that take log E clamp it.
    """
    return buf.uniform_(U_MIN, 1.0, generator=generator).log_().neg_()


def geodesic_point_(
    e: torch.Tensor,
    ids: torch.Tensor,
    t: torch.Tensor | float,
    gap: float,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_t = softmax((1 − t)·log x₀ + t·log x₁ˢ(ids)), in place of ``e``; returns it.

    Args:
        e: (..., V) x₀ up to a positive factor per row (e.g. Exp(1) draws: x₀ = e / Σe); no entry
            may be +inf. Overwritten with x_t (float32).
        ids: (...) target tokens w.
        t: scalar or (B,) times (one per leading row of a 3-D ``e``), in [0, 1].
        gap: :func:`log_gap` of (V, β).
        given: optional (...) bool: these rows become the exact one-hot δ_w instead.

    x_t ∝ e^(1−t) ⊙ exp(t·gap·δ_w): per-row constants (ℓ_lo, the normalisation of x₀) cancel. At
    t = 1, e^0 = 1 (also for e = 0), so x₁ = x₁ˢ exactly.
    """
    t = torch.as_tensor(t, dtype=torch.float32, device=e.device)
    if t.dim() == 1:
        t = t.view(-1, *([1] * (e.dim() - 1)))  # (B, 1, …, 1)
    e.pow_(1.0 - t)
    index = ids[..., None]  # (..., 1)
    e.scatter_(-1, index, e.gather(-1, index) * torch.exp(t * gap))
    e.div_(e.sum(-1, keepdim=True))
    if given is not None:
        keep = given[..., None]  # (..., 1)
        e.masked_fill_(keep, 0.0)
        e.scatter_(-1, index, torch.where(keep, 1.0, e.gather(-1, index)))
    return e


def geodesic_point(
    x0: torch.Tensor, ids: torch.Tensor, t: torch.Tensor | float, beta: float,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """The KL-geodesic point x_t between x₀ (..., V) and x₁ˢ(ids) (out of place; see above)."""
    return geodesic_point_(x0.float().clone(), ids, t, log_gap(x0.shape[-1], beta), given)


# ------------------------------------------------------------------------------------------------
# Time grid of the samplers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One integration step: a network call at ``t``, then the state moves to ``t_next``.

    ``kind`` is ``"basic"``, ``"semi"`` or ``"sampling"``; ``a`` is the Euler weight of the ODE
    kinds (l ← (1 − a)·l + a·l̄₁); a sampling step re-noises at ``t_next``.
    """

    t: float
    t_next: float
    kind: str
    a: float


def time_plan(
    time_param: str, t_max: float, nfe: int, sampler: str, t_star: float = 0.0
) -> tuple[list[Step], float | None]:
    """(steps, read-out time or None) of a run with exactly ``nfe`` network calls.

    ``paper``: N = nfe steps, t_i = i/N, a = h/(1 − t_i) = 1/(N − i), no read-out.
    ``code``: n = nfe − 1 steps, τ_i = i·Δτ, Δτ = −ln(1 − t_max)/n, t_i = 1 − e^(−τ_i), a = Δτ, then
    a read-out call at t_max. Hybrid steps with t_i < t_star are basic, the rest sampling.
    """
    if time_param == "paper":
        n, readout = nfe, None
        times = [i / n for i in range(n + 1)]
        weights = [1.0 / (n - i) for i in range(n)]
    else:
        n, readout = nfe - 1, t_max
        dtau = -math.log1p(-t_max) / n
        times = [-math.expm1(-i * dtau) for i in range(n + 1)]
        times[-1] = t_max
        weights = [dtau] * n
    kinds = {"basic": "basic", "semi_sampling": "semi", "sampling": "sampling"}
    steps = []
    for i in range(n):
        kind = kinds.get(sampler) or ("basic" if times[i] < t_star else "sampling")
        steps.append(Step(times[i], times[i + 1], kind, weights[i]))
    return steps, readout


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


class KLFlowModel(nn.Module):
    """The denoiser f_θ(x_t, t) → logits of p(x₁ | x_t) per position, plus the path's constants.

    ``forward(x, t)``: x (B, L, V) points of the simplex, t (B,) or scalar times → (B, L, V) logits;
    one call is one network function evaluation.
    """

    def __init__(self, cfg: TransformerConfig, beta: float, t_max: float, time_param: str) -> None:
        super().__init__()
        self.net = Transformer(cfg)
        self.beta = float(beta)
        self.t_max = float(t_max)
        self.time_param = time_param
        self.gap = log_gap(cfg.vocab_size, self.beta)

    @property
    def cfg(self) -> TransformerConfig:
        return self.net.cfg

    @property
    def vocab_size(self) -> int:
        return self.net.cfg.vocab_size

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.net(x, t)  # (B, L, V)


# ------------------------------------------------------------------------------------------------
# Method
# ------------------------------------------------------------------------------------------------


class KLFlow(Method):
    """Logit-linear (KL-geodesic) flow matching on the simplex with a cross-entropy denoiser."""

    name: ClassVar[str] = "klflow"
    samplers: ClassVar[tuple[str, ...]] = ("basic", "semi_sampling", "sampling", "hybrid")

    # --------------------------------------------------------------------------- model

    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        """A :class:`KLFlowModel` from the keys of :data:`MODEL_KEYS` plus the injected specials.

        ``d_model``, ``n_layers`` and ``n_heads`` are required. The special ids (all optional) are
        stored as plain int attributes (``model.pad_id`` …). Initial weights come from the global
        torch RNG (N(0, 0.02), adaLN-Zero modulation; the train stage seeds it).
        """
        cfg, ids = check_model_cfg(_WHERE, model_cfg, MODEL_KEYS, vocab_size, (), SPECIAL_IDS)
        beta, t_max, time_param = cfg["beta"], cfg["t_max"], cfg["time_param"]
        if time_param not in TIME_PARAMS:
            raise InputError(
                f"{_WHERE}: time_param {time_param!r} is not one of {list(TIME_PARAMS)} "
                "('paper': t in [0, 1]; 'code': the public code's t in [0, t_max])"
            )
        if not _is_number(beta) or not 0.0 < beta < 1.0:
            raise InputError(f"{_WHERE}: beta must be a number in (0, 1), got {beta!r}")
        if log_gap(vocab_size, beta) > MAX_GAP:
            raise InputError(
                f"{_WHERE}: beta = {beta!r} is too small for vocab_size {vocab_size} "
                f"(log(1 + V(1 − β)/β) > {MAX_GAP:g} overflows float32); the paper uses 0.01"
            )
        if not _is_number(t_max) or not 0.0 < t_max <= 1.0:
            raise InputError(f"{_WHERE}: t_max must be a number in (0, 1], got {t_max!r}")
        if time_param == "paper" and t_max != 1.0:
            raise InputError(
                f"{_WHERE}: t_max = {t_max!r} needs time_param: code (the public code's t in "
                f"[0, t_max] with a read-out call); time_param 'paper' runs t over [0, 1] — set "
                "time_param: code, or remove t_max"
            )
        if time_param == "code" and t_max >= 1.0:
            raise InputError(
                f"{_WHERE}: time_param 'code' needs t_max < 1 (its τ grid ends at −ln(1 − t_max)); "
                f"got t_max = {t_max!r} — the public code uses {CODE_T_MAX}"
            )
        # d_model, n_layers, n_heads, mlp_ratio, dropout, pos_emb, time_scale: from the model block
        net_cfg = TransformerConfig.from_model(
            cfg, vocab_size=vocab_size, seq_len=seq_len, where=_WHERE, causal=False,
            time_cond=True, time_freq_dim=TIME_FREQ_DIM, time_max_period=TIME_MAX_PERIOD,
            adaln_gate=True, adaln_silu=True,  # the snapshot's DiT blocks
            input="probs", output="logits", activation="relu2", bias=False,
        )
        model = KLFlowModel(net_cfg, beta=beta, t_max=t_max, time_param=time_param)
        for key, value in ids.items():
            setattr(model, key, value)
        return model

    # --------------------------------------------------------------------------- training

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over all B×L positions at t ~ U[0, t_max) (paper eq. 18; code).

        Noise from the global torch RNG: t (B,), then the Dirichlet draws (B, L, V).
        """
        ids, given = self._check_batch(model, batch)
        t = torch.rand(ids.shape[0], device=ids.device) * model.t_max  # (B,)
        return self._cross_entropy(model, ids, given, t).mean()

    def loss_at_t(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy (B,) at the given KL-flow times ``t`` (B,) in [0, 1].

        :meth:`loss`'s code path with t given (t = 0 noise, t = 1 data; the same t as the
        interpolation x_t = softmax((1 − t) log x₀ + t log x₁ˢ)); the Dirichlet noise from the
        global torch RNG; the mean over all L positions of each example, so ``loss_at_t(t).mean()``
        equals :meth:`loss` for the same t and noise. A ``time_param: code`` model was trained on
        t ∈ [0, t_max] only: larger t are outside its training range.
        """
        ids, given = self._check_batch(model, batch)
        t = self.check_times(t, ids)
        return self._cross_entropy(model, ids, given, t)

    def _cross_entropy(
        self, model: KLFlowModel, ids: torch.Tensor, given: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """(B,) mean over positions of −log p_θ(w | x_t, t); x_t drawn from the global RNG."""
        B, L = ids.shape
        e = exp_noise_(torch.empty(B, L, model.vocab_size, device=ids.device))  # (B, L, V)
        xt = geodesic_point_(e, ids, t, model.gap, given)  # (B, L, V), in place of e
        logits = model(xt, t)  # (B, L, V)
        ce = F.cross_entropy(logits.float().flatten(0, 1), ids.flatten(), reduction="none")
        return ce.view(B, L).mean(1)

    def _check_batch(self, model: KLFlowModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_on(batch, next(model.parameters()).device, model.cfg.seq_len)

    # --------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self, model: nn.Module, cond: Batch, nfe: int, sampler: str, generator: torch.Generator,
        **opts: Any,
    ) -> Samples:
        """Generate the non-given positions of ``cond`` with exactly ``nfe`` network calls.

        Args:
            model: a :class:`KLFlowModel` from :meth:`build_model`.
            cond: ``ids`` (B, L) with the given tokens at the ``cond`` positions (the rest is
                ignored); ``cond`` (B, L) bool.
            nfe: network calls per sample: the paper's N steps (``time_param: paper``), or n = nfe − 1
                steps plus the read-out call (``time_param: code``, nfe >= 2).
            sampler: ``basic`` | ``semi_sampling`` | ``sampling`` | ``hybrid``.
            generator: the only source of randomness (on the model's device).
            **opts: ``top_k`` (int >= 0, default 1; 0 = the full softmax; not for basic),
                ``t_star`` (hybrid only, required: number in [0, 1]), ``chunk`` (positions per block
                of V-wide temporaries; default :data:`BLOCK_ELEMENTS` // V) and ``trace`` (a callable
                ``trace(t, x)`` given every state x (B, L, V) of the run — the prior at t = 0, the
                state after every step, the last at t = 1 (paper) or t_max (code); a view of the
                sampler's buffer, clone it to keep it).

        Returns:
            :class:`Samples`: given positions unchanged, ``nfe`` = network calls (0 if no position
            is free), ``extras`` as in the module docstring.
        """
        self.check_sampler(sampler)
        top_k, t_star, chunk, trace = klflow_options(sampler, opts, model.vocab_size)
        klflow_nfe(nfe, model.time_param)
        device = next(model.parameters()).device
        self.check_generator(generator, device)
        ids, given = self._check_batch(model, cond)
        steps, readout = time_plan(model.time_param, model.t_max, nfe, sampler, t_star)
        extras = {
            "time_param": model.time_param,
            "t_max": model.t_max,
            "beta": model.beta,
            "steps": len(steps),
            "nfe_paper": len(steps),
            "readout": readout is not None,
            "ode_steps": sum(s.kind != "sampling" for s in steps),
            "sampling_steps": sum(s.kind == "sampling" for s in steps),
            "top_k": None if sampler == "basic" else top_k,
            "t_star": t_star if sampler == "hybrid" else None,
        }
        free = (~given).reshape(-1).nonzero().squeeze(1)  # (n_free,) one host sync
        if free.numel() == 0:
            return Samples(ids=ids.clone(), nfe=0, extras=extras | {"steps": 0, "nfe_paper": 0})
        V = model.vocab_size
        rows = chunk if chunk is not None else max(1, BLOCK_ELEMENTS.get(device.type, 1 << 25) // V)
        needs_l = any(s.kind != "sampling" for s in steps)
        run = _Run(model, ids, given, free, rows, needs_l)
        run.prior(generator)
        if trace is not None:
            trace(0.0, run.view())
        with eval_mode(model):
            for step in steps:
                run.step(step, top_k, generator)
                if trace is not None:
                    trace(step.t_next, run.view())
            run.read_out(readout)
        out = ids.reshape(-1).clone()
        out[free] = run.tokens
        calls = len(steps) + (readout is not None)
        return Samples(ids=out.view(ids.shape), nfe=calls, extras=extras)


class _Run:
    """The V-wide state of one :meth:`KLFlow.sample` run, updated block by block.

    ``x`` (B·L, V) is the network input: the given rows are the exact one-hot, written once; ``l``
    (n_free, V) the logit state of the free rows while ODE steps remain (else None); ``tokens``
    (n_free,) the last x̂₁ draws, and after :meth:`read_out` the answer.
    """

    def __init__(
        self,
        model: KLFlowModel,
        ids: torch.Tensor,
        given: torch.Tensor,
        free: torch.Tensor,
        rows: int,
        needs_l: bool,
    ) -> None:
        B, L = ids.shape
        V, device = model.vocab_size, ids.device
        self.model, self.shape, self.gap = model, (B, L, V), model.gap
        self.blocks = [Block(lo, hi, start, free) for lo, hi, start in position_blocks(free, rows)]
        flat_ids = ids.reshape(-1)  # (B·L,)
        self.x = torch.empty(B * L, V, device=device)
        giv = given.reshape(-1).nonzero().squeeze(1)  # (n_given,)
        self.x.index_fill_(0, giv, 0.0)
        self.x[giv, flat_ids[giv]] = 1.0
        n_free = free.numel()
        self.l = torch.empty(n_free, V, device=device) if needs_l else None
        self.scratch = Scratch(max(b.hi - b.lo for b in self.blocks), V, device)
        self.tokens = torch.empty(n_free, dtype=torch.long, device=device)

    def view(self) -> torch.Tensor:
        """x as (B, L, V) (a view: clone it to keep it)."""
        return self.x.view(self.shape)

    def prior(self, generator: torch.Generator) -> None:
        """x₀ = E / ΣE with E = −log U per free row, and l = log E."""
        for b in self.blocks:
            e = exp_noise_(b.target(self.x, self.scratch), generator)  # (c, V)
            if self.l is not None:
                torch.log(e.clamp_min(1e-30), out=self.l[b.lo : b.hi])
            b.write(self.x, e.div_(e.sum(-1, keepdim=True)))

    def _logits(self, t: float) -> torch.Tensor:
        """One network call at time t: logits as (B·L, V)."""
        B, L, V = self.shape
        logits = self.model(self.view(), torch.full((B,), t, device=self.x.device))
        return logits.reshape(B * L, V)

    def step(self, step: Step, top_k: int, generator: torch.Generator) -> None:
        """One network call and the update of every free row to time ``step.t_next``."""
        flat = self._logits(step.t)
        if step.kind != "basic":  # x̂₁ of every free position, before any new noise
            for b in self.blocks:
                self.tokens[b.lo : b.hi] = _draw(b.rows(flat), top_k, generator)
        if step.kind == "sampling":
            self.l = None  # hybrid: no ODE step follows
        x, gap = self.x, self.gap
        for b in self.blocks:
            if step.kind == "sampling":  # fresh x₀', then the geodesic point at t_next
                e = b.target(x, self.scratch)
                if step.t_next < 1.0:
                    exp_noise_(e, generator)
                else:  # (1 − s) = 0: no noise left (the paper's last step)
                    e.fill_(1.0)
                b.write(x, geodesic_point_(e, self.tokens[b.lo : b.hi], step.t_next, gap))
                continue
            lc = self.l[b.lo : b.hi]  # (c, V) view
            if step.kind == "basic":
                p = torch.softmax(b.rows(flat), -1, dtype=torch.float32)
                lc.mul_(1.0 - step.a).add_(p, alpha=step.a * gap)
            else:  # semi: l̄₁ = log x₁ˢ(x̂₁), up to ℓ_lo
                lc.mul_(1.0 - step.a)
                bump = lc.new_full((b.hi - b.lo, 1), step.a * gap)
                lc.scatter_add_(1, self.tokens[b.lo : b.hi, None], bump)
            b.write(x, torch.softmax(lc, -1))

    def read_out(self, readout: float | None) -> None:
        """``tokens`` = argmax of the read-out call's logits at ``readout`` (code), or of the
        state x at t = 1 (paper: ``readout`` None)."""
        flat = self._logits(readout) if readout is not None else self.x
        for b in self.blocks:
            self.tokens[b.lo : b.hi] = b.rows(flat).argmax(-1)


def _draw(logits: torch.Tensor, top_k: int, generator: torch.Generator) -> torch.Tensor:
    """x̂₁ (c,) from (c, V) logits: argmax for k = 1, else a softmax draw over the top k (0 = all).

    The draw is the Gumbel-max trick, argmax_i (z_i + G_i), G_i = −log(−log U_i), U ~ U[0, 1) from
    the generator: an exact sample of softmax(z) on the kept entries, with no host sync.
    """
    if top_k == 1:
        return logits.argmax(-1)
    if 0 < top_k < logits.shape[-1]:
        values, index = logits.topk(top_k, dim=-1)  # (c, k) each
    else:
        values, index = logits, None
    u = torch.rand(values.shape, generator=generator, device=values.device)
    pick = (values.float() - torch.log(-torch.log(u))).argmax(-1, keepdim=True)  # (c, 1)
    return pick.squeeze(1) if index is None else index.gather(1, pick).squeeze(1)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)
