"""Discrete Flow Matching (Gat et al., NeurIPS 2024) with a mask source.

Shapes: ids, x_t (B, L) int64 token ids, cond (B, L) bool, t (B,) float32; one network call maps
(x_t, t) to logits (B, L, V); the losses are (B, L) before the mean. The maths, piece by piece,
follows; the long spec is ``docs/methods.md`` §4 (FMLIB) and §3.6 (KLF-DFM).

Two sources describe the method and this file follows both, each where it is the authority:

* **FMLIB** — ``facebookresearch/flow_matching`` (library + ``examples/text``), methods.md §4: the
  mixture path, the polynomial scheduler, the cross-entropy / generalized-KL losses and the
  ``MixtureDiscreteEulerSolver`` (fp32 softmax, fp64 categorical draws, uniform grid, last step
  x ← x̂₁ without an extra call).
* **KLF-DFM** — the DFM baseline *as the KL-flow paper ran it* (its ``DFM`` class, methods.md §3.6):
  κ(t) = 2t − t², CE on all positions, a clamped linear jump probability, n + 1 network calls
  (an extra read-out call at t = 1 with argmax), "×3 iterations" = 3n steps. This repository's
  ``dfm_150m`` experiment and the tables' NFE values (257, 513, 1537 = n + 1, 3n + 1) are this
  variant, so it is the sampler's default; ``jump: exp, readout: none`` gives FMLIB's solver.

Written from the spec and the papers; no code is copied from either repository.

Piece by piece:

* **Layouts**: text → ``lm`` (``[BOS] text [EOS] [PAD]…``), seq2seq → ``conditional``
  (``[BOS] src [SEP] trg [EOS] [PAD]…``), code → ``infill`` (masked-line slots = tokens then
  ``[PAD]``). Whatever is not ``cond`` is generated. **Pads are ordinary tokens**: a ``[PAD]`` target
  is trained and generated like any other (KL-flow §3.5: "pads are generated"; FMLIB has no pads).
* **Tokens and source**: the source is the tokenizer's own ``[MASK]`` (``mask_id``, injected by
  the train stage) rather than FMLIB's extra id V — the model has V logits, ``[MASK]`` among them
  (KL-flow's ``DFM`` does the same with its tokenizer's mask token). No uniform source.
* **Path** (§4.1, FMLIB = KLF-DFM): per generated position independently x_t = x₁ w.p. κ_t, else
  ``[MASK]``; given (``cond``) positions are x₁ at every t (KLF-DFM's condition mask).
* **Schedulers** (model key ``scheduler``): ``polynomial`` κ_t = tⁿ, κ'_t = n·t^{n−1} (FMLIB's
  ``PolynomialConvexScheduler``, n = ``exponent``, default 1 = ``CondOTScheduler``) and
  ``klflow_quadratic`` κ_t = 2t − t², κ'_t = 2 − 2t (KLF-DFM), whose jump rate
  κ'/(1 − κ) = 2/(1 − t).
* **Network** (FMLIB text example's DDiT, §4.3): the shared :class:`~repro.models.Transformer`,
  bidirectional, token embedding in, logits out, adaLN-Zero time conditioning (DiT: sinusoid 256 of
  raw t ∈ [0, 1], period 10⁴, MLP to ``time_dim`` = 128 = DDiT's ``cond_dim``, SiLU before the
  modulation), RoPE, GELU-tanh MLP, dropout 0.1, zero-initialised final layer (DDiT's final linear
  is zeroed). One ``forward(x_t, t)`` is one network function evaluation.
* **Time** (§4.2, FMLIB): t ~ U[0, 1 − ε), ε = 10⁻³ with ``loss: generalized_kl`` and 0 with
  ``cross_entropy`` (KLF-DFM: U[0, 1)). Training noise (t, then the path's uniforms) comes from the
  global torch RNG, which the training loop reseeds before every step.
* **Losses** (model key ``loss``, §4.2): ``cross_entropy`` (FMLIB text default; KLF-DFM) = mean over
  **all** B×L positions (given ones included, as KLF-DFM; the target there is the visible token) of
  −log p_{1|t}(x₁ | x_t); ``generalized_kl`` (FMLIB ``MixturePathGeneralizedKL``, mean-reduced over
  all positions) ℓ = −κ'/(1−κ)·[p_{1|t}(x_t|x_t) − δ(x₁ = x_t) + (1 − δ(x₁ = x_t))·log
  p_{1|t}(x₁|x_t)]. Logits are cast to fp32 before the softmax.
* **Sampler** ``mixture_euler`` (§4.3 FMLIB, §3.6 KLF-DFM). Start: x = x₁ on given positions,
  ``[MASK]`` elsewhere. Grid of n steps: t_i = i/n (i < n), t_n = t_final = 1 − ε (FMLIB's
  ``step_size = 1/n`` grid with its last point clamped to ``time_grid[-1]``; KLF-DFM: linspace(0,
  1, n + 1)). Step i makes one call at t_i, p = softmax(logits) with p([MASK]) := 0 (fp32
  exp(l − max l), normalised by the fp64 cumulative sums of the draw), and per generated position

  - i < n − 1: jump w.p. P_i, to x̂₁ ~ p drawn in fp64 (already unmasked tokens may be redrawn,
    as in both references); P_i = min(1, h_i·κ'/(1−κ)) for ``jump: linear`` (KLF-DFM's
    C = clamp(κ'/(1−κ)·h, 0, 1), i.e. new token ~ (1−C)·δ_{x_t} + C·p) or 1 − exp(−h_i·κ'/(1−κ))
    for ``jump: exp`` (FMLIB: a jump to x̂₁ ≠ x_t at intensity κ'/(1−κ)); both give
    P(x_{t+h} = y ≠ x_t) = P_i·p(y), so the uniform is drawn first and x̂₁ only where it jumps;
  - i = n − 1 (the last step): x ← x̂₁ on every generated position, no extra call (FMLIB's rule,
    applied with either ``jump``; with KLF-DFM's scheduler its C = clamp(2h/(1 − t)) is 1 there
    too, so both references agree);

  then ``readout: argmax`` (default; KLF-DFM) makes one more call at t_final and writes
  argmax_{x ≠ [MASK]} of its logits on every generated position; ``readout: none`` (FMLIB) stops.
  Given positions are never written (clamped at every step, which KL-flow's snapshot forgets to do,
  §3.6). All randomness (uniforms, categorical draws) comes from the caller's generator.
* **NFE**: ``Samples.nfe`` = ``nfe`` = n + (1 with the argmax read-out), exactly the calls made.
  ``iterations`` (KL-flow Table 4's "×3 iterations", default 1) does not change the work for a
  given ``nfe``: it states that the n steps are ``iterations`` × the base count (n = 3·N for ×3),
  so n must be divisible by it (else :class:`~repro.io.InputError`): the table's ×3 row passes
  nfe = 1537 = 3·512 + 1. ``Samples.extras`` records ``steps`` n, ``base_steps`` n/iterations and
  ``readout_calls``. (KLF-DFM derives n from each batch, n = the number of generated positions,
  max over rows; here n comes from the NFE budget the catalogue passes: 257 / 513 for the 256 /
  512 generated positions of the conditional / code rows.)

Deviations from the references, on purpose: p([MASK]) := 0 when drawing or taking the argmax (the
data never contain ``[MASK]`` as a target, so the true posterior puts 0 there; the references
sample from all logits and rely on the trained model putting ~0 there; this guarantees no
``[MASK]`` survives sampling); prompt positions clamped every step (above); if n ≥ 1/ε the FMLIB
grid would have fewer than n points before t_final, and the grid becomes t_i = i·t_final/n so that
NFE stays exact.
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
from .options import dfm_options, dfm_steps

#: keys of the experiment's ``model`` config (None = required) and their defaults
MODEL_KEYS: dict[str, Any] = {
    "d_model": None,
    "n_layers": None,
    "n_heads": None,
    "mlp_ratio": 4.0,
    "dropout": 0.1,  # FMLIB text example (and KL-flow's transformer)
    "pos_emb": "rope",  # FMLIB DDiT: rotary
    "time_dim": 128,  # FMLIB DDiT cond_dim
    "scheduler": "polynomial",  # FMLIB default; dfm_150m sets klflow_quadratic
    "exponent": 1.0,  # n of the polynomial scheduler (1 = CondOT)
    "loss": "cross_entropy",  # FMLIB text example default
}
#: token ids the train stage injects from ``meta.json`` specials
REQUIRED_IDS = ("mask_id",)
OPTIONAL_IDS = ("pad_id", "bos_id", "eos_id", "sep_id")

SCHEDULERS = ("polynomial", "klflow_quadratic")
LOSSES = ("cross_entropy", "generalized_kl")
#: FMLIB text example: t ~ U[0, 1 − ε) and the sampler stops at 1 − ε with the generalized KL
GKL_TIME_EPSILON = 1e-3
#: DiT timestep embedding: sinusoid width and longest period (t raw in [0, 1])
TIME_FREQ_DIM = 256
TIME_MAX_PERIOD = 10000.0
#: largest (rows × V) block of logits turned into probabilities at once for the categorical draws
DRAW_BLOCK = 1 << 24
#: tokens per chunk of the two-level fp64 inverse CDF (:func:`_inverse_cdf`)
DRAW_CHUNK = 1024

_WHERE = "model config of method 'dfm'"


# ------------------------------------------------------------------------------------------------
# Scheduler and path
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheduler:
    """κ_t of the mixture path: ``polynomial`` tⁿ (n = ``exponent``) or ``klflow_quadratic`` 2t − t².

    Methods take a tensor t (any shape) and return tensors of its shape and dtype; ``rate`` is the
    jump intensity κ'_t / (1 − κ_t) (∞ at t = 1).
    """

    kind: str = "polynomial"
    exponent: float = 1.0

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "klflow_quadratic":
            return 2.0 * t - t * t
        return t.pow(self.exponent)

    def d_kappa(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "klflow_quadratic":
            return 2.0 - 2.0 * t
        n = self.exponent
        return n * t.pow(n - 1.0)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """κ'/(1 − κ); for ``klflow_quadratic`` in the cancelled form 2/(1 − t) (exact, stabler)."""
        if self.kind == "klflow_quadratic":
            return 2.0 / (1.0 - t)
        return self.d_kappa(t) / (1.0 - self.kappa(t))

    def jump_probability(self, t: float, h: float, jump: str) -> float:
        """Probability that a position jumps in the Euler step t → t + h (float64 host math)."""
        rate = float(self.rate(torch.tensor(t, dtype=torch.float64)))
        if math.isnan(rate):  # 0·∞ cannot occur for t < 1; be safe
            rate = math.inf
        if jump == "linear":  # KLF-DFM: C = clamp(κ'/(1 − κ)·h, 0, 1)
            return min(1.0, max(0.0, h * rate))
        return -math.expm1(-h * rate)  # FMLIB: 1 − exp(−h·λ)


def path_sample(
    x1: torch.Tensor,
    given: torch.Tensor,
    t: torch.Tensor,
    scheduler: Scheduler,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x_t (B, L) of the mask-source mixture path: x₁ w.p. κ_t (and always where ``given``), else
    ``mask_id``. One U[0, 1) per position from ``generator`` (None: the global torch RNG)."""
    kappa = scheduler.kappa(t.float())[:, None]  # (B, 1)
    u = torch.rand(x1.shape, generator=generator, device=x1.device)  # (B, L)
    return torch.where(given | (u < kappa), x1, torch.full_like(x1, mask_id))


def mixture_losses(
    logits: torch.Tensor,
    x1: torch.Tensor,
    xt: torch.Tensor,
    rate: torch.Tensor | None,
    kind: str,
) -> torch.Tensor:
    """Per-position losses (B, L) from logits (B, L, V) (cast to fp32), targets x₁ and states x_t.

    ``cross_entropy``: −log p(x₁|x_t). ``generalized_kl``: −rate·[p(x_t|x_t) − δ + (1 − δ)·log
    p(x₁|x_t)] with δ = [x₁ = x_t] and ``rate`` (B,) = κ'/(1 − κ) (FMLIB ``MixturePathGeneralizedKL``).
    """
    logits = logits.float()
    if kind == "cross_entropy":
        flat = F.cross_entropy(logits.flatten(0, 1), x1.flatten(), reduction="none")
        return flat.view(x1.shape)
    if rate is None:
        raise ValueError("the generalized KL loss needs the jump rate κ'/(1 − κ) per example")
    log_p = torch.log_softmax(logits, dim=-1)  # (B, L, V)
    log_p_x1 = log_p.gather(-1, x1[..., None])[..., 0]  # (B, L)
    p_xt = log_p.gather(-1, xt[..., None])[..., 0].exp()  # (B, L)
    same = (x1 == xt).float()
    return -rate.float()[:, None] * (p_xt - same + (1.0 - same) * log_p_x1)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


class DFMModel(nn.Module):
    """Time-conditioned bidirectional transformer: ``forward(x_t, t)`` (B, L) ids, (B,) or scalar
    t → (B, L, V) logits of p_{1|t}. Carries the path settings (scheduler, loss, ``[MASK]`` id) as
    plain attributes, rebuilt from the checkpoint's ``model`` cfg."""

    def __init__(self, cfg: TransformerConfig, scheduler: Scheduler, loss: str, mask_id: int):
        super().__init__()
        self.net = Transformer(cfg)
        self.scheduler = scheduler
        self.loss_kind = loss
        self.mask_id = mask_id
        self.time_epsilon = GKL_TIME_EPSILON if loss == "generalized_kl" else 0.0

    @property
    def cfg(self) -> TransformerConfig:
        return self.net.cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.net(x, t)  # (B, L, V)


def _draw(logits: torch.Tensor, generator: torch.Generator, forbid: int) -> torch.Tensor:
    """One draw per row of (N, V) logits from p ∝ exp(logits) with p[forbid] = 0: fp32
    probabilities exp(l − max l) (softmax without its division — the fp64 CDF normalises),
    sampled in fp64 (FMLIB's text example: "logit precision is important") with one U[0, 1) per
    row from ``generator``, located by :func:`_inverse_cdf`. Rows go in blocks of at most
    ``DRAW_BLOCK`` entries. Float32 ``logits`` are overwritten (they become the probabilities):
    the caller passes a copy it owns.
    """
    n, V = logits.shape
    out = torch.empty(n, dtype=torch.long, device=logits.device)
    rows = max(1, DRAW_BLOCK // V)
    for lo in range(0, n, rows):
        p = logits[lo : lo + rows].float()  # (r, V), in place from here on
        p[:, forbid] = float("-inf")
        p.sub_(p.amax(-1, keepdim=True)).exp_()  # fp32, max entry 1, p[forbid] = 0
        u = torch.rand((p.shape[0], 1), generator=generator, device=p.device, dtype=torch.float64)
        out[lo : lo + rows] = _inverse_cdf(p, u)
    return out


def _inverse_cdf(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index (r,) of a categorical draw from p (r, V) ≥ 0 (any positive total) with uniforms
    u (r, 1) in [0, 1): the token whose cumulative interval holds u·Σp.

    Two levels, so that the V-wide pass stays in fast fp32 while every cumulative sum is fp64
    (FMLIB samples in fp64: an fp32 running sum over 50k tokens would round the intervals of
    improbable tokens away): fp32 sums of chunks of ``DRAW_CHUNK`` tokens, their fp64 cumulative
    sums pick the chunk, then the fp64 cumulative sums inside that chunk only pick the token at
    the same relative position. Each token's probability is thus p_j/Σp up to the ~1e-7 relative
    rounding of its chunk's fp32 sum, the precision of p itself. Zero-probability tokens have
    empty intervals and are never returned (the index is capped at the chunk's last positive
    entry against rounding at the chunk's end).
    """
    r, V = p.shape
    w = DRAW_CHUNK
    full = V // w
    parts = []
    if full:
        parts.append(p[:, : full * w].reshape(r, full, w).sum(-1))
    if full * w < V:
        parts.append(p[:, full * w :].sum(-1, keepdim=True))
    sums = torch.cat(parts, dim=1).double()  # (r, chunks)
    coarse = sums.cumsum(-1)  # (r, chunks) fp64
    v = u * coarse[:, -1:]  # (r, 1) in [0, Σp)
    chunk = torch.searchsorted(coarse, v, right=True).clamp_(max=coarse.shape[1] - 1)  # (r, 1)
    frac = (v - (coarse.gather(1, chunk) - sums.gather(1, chunk))) / sums.gather(1, chunk)
    cols = chunk * w + torch.arange(w, device=p.device)  # (r, w)
    mass = torch.where(cols < V, p.gather(1, cols.clamp(max=V - 1)), 0.0)  # (r, w)
    inner = torch.cumsum(mass, dim=-1, dtype=torch.float64)  # (r, w)
    j = torch.searchsorted(inner, frac.clamp(0.0, 1.0) * inner[:, -1:], right=True)  # (r, 1)
    last = (inner < inner[:, -1:]).sum(-1, keepdim=True)  # the chunk's last positive entry
    return (chunk * w + torch.minimum(j, last))[:, 0]


def time_grid(steps: int, t_final: float) -> list[float]:
    """FMLIB's grid: t_i = i/steps for i < steps, then t_final (uniform over [0, t_final] when
    (steps − 1)/steps ≥ t_final, which FMLIB would turn into fewer steps)."""
    if (steps - 1) / steps < t_final:
        return [i / steps for i in range(steps)] + [t_final]
    return [i * t_final / steps for i in range(steps)] + [t_final]


# ------------------------------------------------------------------------------------------------
# Method
# ------------------------------------------------------------------------------------------------


class DFM(Method):
    """Mask-source discrete flow matching; the mixture Euler sampler (see the module docstring)."""

    name: ClassVar[str] = "dfm"
    samplers: ClassVar[tuple[str, ...]] = ("mixture_euler",)

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        """A :class:`DFMModel` from the keys of :data:`MODEL_KEYS` plus the injected specials.

        ``mask_id`` (required: the source token) and ``pad_id``/``bos_id``/``eos_id``/``sep_id``
        (optional) become plain int attributes. Initial weights come from the global torch RNG.
        """
        cfg, ids = check_model_cfg(
            _WHERE, model_cfg, MODEL_KEYS, vocab_size, REQUIRED_IDS, OPTIONAL_IDS
        )
        if cfg["scheduler"] not in SCHEDULERS:
            raise InputError(
                f"{_WHERE}: scheduler {cfg['scheduler']!r} is unknown; choose one of "
                f"{list(SCHEDULERS)}"
            )
        exponent = cfg["exponent"]
        if "exponent" in model_cfg and cfg["scheduler"] != "polynomial":
            raise InputError(
                f"{_WHERE}: exponent only applies to scheduler 'polynomial' (got scheduler "
                f"{cfg['scheduler']!r}); remove it"
            )
        if (
            isinstance(exponent, bool)
            or not isinstance(exponent, int | float)
            or not math.isfinite(exponent)
            or exponent <= 0
        ):
            raise InputError(f"{_WHERE}: exponent must be a number > 0, got {exponent!r}")
        if cfg["loss"] not in LOSSES:
            raise InputError(
                f"{_WHERE}: loss {cfg['loss']!r} is unknown; choose one of {list(LOSSES)}"
            )
        # d_model, n_layers, n_heads, mlp_ratio, dropout, time_dim, pos_emb: from the model block
        net_cfg = TransformerConfig.from_model(
            cfg, vocab_size=vocab_size, seq_len=seq_len, where=_WHERE, causal=False,
            time_cond=True, time_freq_dim=TIME_FREQ_DIM, time_max_period=TIME_MAX_PERIOD,
            adaln_gate=True, adaln_silu=True,  # DiT's adaLN-Zero (FMLIB DDiT)
            input="tokens", output="logits", zero_init_output=True, activation="gelu_tanh",
        )
        scheduler = Scheduler(cfg["scheduler"], float(exponent))
        model = DFMModel(net_cfg, scheduler, cfg["loss"], ids["mask_id"])
        for key, value in ids.items():
            setattr(model, key, value)
        return model

    # -- training --------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean over all B×L positions of the configured loss; t ~ U[0, 1 − ε), then the path's
        uniforms, from the global torch RNG."""
        ids, given = self._check_batch(model, batch)
        t = torch.rand(ids.shape[0], device=ids.device) * (1.0 - model.time_epsilon)
        return self._position_losses(model, ids, given, t).mean()

    def loss_at_t(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> torch.Tensor:
        """Per-example loss (B,) at times ``t`` (B,) in [0, 1]: :meth:`loss`'s objective (same code
        path, path uniforms from the global torch RNG) averaged over each row's L positions, so
        ``loss_at_t(t).mean()`` is :meth:`loss` for the same t and noise. t = 0 is the all-mask
        source, t = 1 the data. With ``generalized_kl`` the jump coefficient κ'/(1 − κ) is infinite
        at t = 1, so t is capped at 1 − ε (the end of its training range).
        """
        ids, given = self._check_batch(model, batch)
        t = self.check_times(t, ids)
        if model.loss_kind == "generalized_kl":
            t = t.clamp(max=1.0 - model.time_epsilon)
        return self._position_losses(model, ids, given, t).mean(1)

    def _position_losses(
        self, model: DFMModel, ids: torch.Tensor, given: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) losses at times t (B,): x_t from :func:`path_sample` (global RNG), one call."""
        xt = path_sample(ids, given, t, model.scheduler, model.mask_id)
        logits = model(xt, t)  # (B, L, V)
        rate = None
        if model.loss_kind == "generalized_kl":
            rate = model.scheduler.rate(t.double()).float()  # (B,) κ'/(1 − κ)
        return mixture_losses(logits, ids, xt, rate, model.loss_kind)

    def _check_batch(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(model, DFMModel):
            raise TypeError(f"method 'dfm' needs a DFMModel, got {type(model).__name__}")
        return batch_on(batch, model.net.final.head.weight.device, model.cfg.seq_len)

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, model: nn.Module, cond: Batch, nfe: int, sampler: str, generator: torch.Generator,
        iterations: int = 1, jump: str = "linear", readout: str = "argmax", **opts: Any,
    ) -> Samples:
        """Generate the non-given positions of ``cond`` with the mixture Euler solver.

        Args:
            model: a :class:`DFMModel`.
            cond: ``ids`` (B, L) holding the given tokens where ``cond`` (B, L) is True; the other
                positions are never read (they start as ``[MASK]``).
            nfe: exact number of network calls: n Euler steps plus 1 for ``readout: argmax``.
            sampler: ``"mixture_euler"``.
            generator: the only source of randomness (on the model's device).
            iterations: the n steps are ``iterations`` × a base count ("×3 iterations"); n must be
                divisible by it.
            jump: ``"linear"`` (KLF-DFM, min(1, h·κ'/(1−κ))) or ``"exp"`` (FMLIB, 1 − e^{−h·κ'/(1−κ)}).
            readout: ``"argmax"`` (KLF-DFM: one more call at t_final, argmax) or ``"none"`` (FMLIB).

        Returns:
            :class:`Samples` with the given positions unchanged, ``nfe`` calls made, and
            ``extras`` ``steps``, ``base_steps``, ``readout_calls``.
        """
        self.check_sampler(sampler)
        iterations, jump, readout = dfm_options(
            {"iterations": iterations, "jump": jump, "readout": readout, **opts}
        )
        steps = dfm_steps(nfe, iterations, readout)
        extra = 1 if readout == "argmax" else 0
        ids, given = self._check_batch(model, cond)
        self.check_generator(generator, ids.device)
        free = ~given  # (B, L) generated positions
        x = torch.where(given, ids, torch.full_like(ids, model.mask_id))  # (B, L) x₀
        t_final = 1.0 - model.time_epsilon
        with eval_mode(model):
            _euler_steps(model, x, free, time_grid(steps, t_final), jump, generator)
            if extra:
                t = torch.full((ids.shape[0],), t_final, device=ids.device)
                logits = model(x, t)  # (B, L, V)
                logits[..., model.mask_id] = float("-inf")
                x = torch.where(free, logits.argmax(-1), x)
        return Samples(
            ids=x,
            nfe=nfe,
            extras={"steps": steps, "base_steps": steps // iterations, "readout_calls": extra},
        )


def _euler_steps(
    model: DFMModel,
    x: torch.Tensor,
    free: torch.Tensor,
    grid: list[float],
    jump: str,
    generator: torch.Generator,
) -> None:
    """The mixture Euler steps on ``grid``, in place on x (B, L): one network call per step.

    At step i (t = grid[i], h = grid[i+1] − t) each free position jumps with probability
    :meth:`Scheduler.jump_probability` (one (B, L) fp64 uniform draw when it is strictly between
    0 and 1) to a token drawn from the network's x̂₁ (never ``[MASK]``); at the last step every free
    position takes x̂₁.
    """
    B, L = x.shape
    device = x.device
    steps = len(grid) - 1
    for i in range(steps):
        t, h = grid[i], grid[i + 1] - grid[i]
        logits = model(x, torch.full((B,), t, device=device))  # (B, L, V)
        if i == steps - 1:
            moves = free  # last step: x ← x̂₁ everywhere (no extra call)
        else:
            prob = model.scheduler.jump_probability(t, h, jump)
            if prob <= 0.0:
                del logits
                continue
            if prob >= 1.0:
                moves = free
            else:
                u = torch.rand((B, L), generator=generator, device=device, dtype=torch.float64)
                moves = free & (u < prob)
        where = moves.nonzero(as_tuple=True)
        if where[0].numel():
            x[where] = _draw(logits[where], generator, model.mask_id)
        del logits  # before the next call: one (B, L, V) output alive at a time
