"""DiffuSeq (Gong et al., ICLR 2023): continuous diffusion on learned word embeddings, seq2seq.

Follows ``docs/methods.md`` §1 (the long spec), i.e. DiffuSeq *as its public code trains and
decodes* (Shark-NLP/DiffuSeq, snapshot f78945d) wherever code and paper differ; written from that
spec, no code copied. Shapes: ids (B, L) int64, cond (B, L) bool; latents z_t and the network's
x̂₀ (B, L, emb_dim); integer steps t (B,) in [0, T); ``lm_head`` logits (B, L, V).

* Layout (§1.1): ``diffuseq`` — ``[CLS] src [SEP] [SEP] [CLS] trg [SEP] [PAD]…``; ``cond`` marks
  ``[CLS] src [SEP] [SEP]`` (the complement of DiffuSeq's ``input_mask``). Pads are ordinary tokens.
* Model (§1.2, code): word embedding ``E`` (V × emb_dim, N(0, 1), trained jointly) whose transpose is
  the ``lm_head`` weight (with its own bias); up-projection Linear → tanh → Linear; time embedding of
  ``t·1000/T`` (sinusoid ``[cos | sin]``, dim 128, period 10⁴, then Linear(128 → 512) → SiLU →
  Linear(512 → d)) added to every position; a bidirectional encoder; down-projection
  Linear → tanh → Linear; the network predicts x̂₀. The encoder is this repository's shared backbone
  (:mod:`repro.models.transformer`: learned absolute positions, erf-GELU, LayerNorm eps 1e-12) —
  a pre-LN stack where DiffuSeq uses BERT's post-LN ``BertEncoder`` with an input LayerNorm, and
  the backbone's own input Linear(d → d) sits after DiffuSeq's up-projection (the composition is
  still an affine map, so the function class is unchanged). The backbone's output Linear(d → d) is
  the first Linear of the down-projection.
* Schedule (§1.3, code): ``sqrt``, ᾱ(s) = 1 − √(s + 10⁻⁴), β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999),
  computed in float64.
* Loss (§1.4, code, not the paper's Eq. 2): z₀ = E[w] + σ₀ε₀ (σ₀ = √(1−ᾱ₀)); partial noising (source
  positions keep z₀); mse of x̂₀ vs z₀ over *all* positions and dims, replaced at t = 0 by the mse vs
  E[w]; rounding CE of ``lm_head(z₀)`` over all positions; prior term mean(√ᾱ_{T−1} z₀)²; the sum
  weighted by the importance weight of t and averaged over the batch.
* Time sampling (§1.5, code): loss-aware importance sampling with a FIFO of the last 10 per-example
  losses per t (uniform until every t has 10), p_t ∝ √E[loss²], mixed 0.999/0.001 with uniform,
  weights 1/(T·p_t). The history is a pair of registered buffers (checkpointed, resumed) updated
  only in training mode, gathered over all ranks under torch.distributed (as DiffuSeq does).
* Samplers (§1.7): ``ddpm`` (code: clamping of x̂₀ to the nearest embedding row at every step,
  posterior mean with fixed-large variance, anchoring, argmax of ``lm_head``), ``ddim_gap`` (code's
  ``--step S``: step-skipping DDIM that updates to level t−1; faithful to the mismatch; S = T runs
  ``ddpm`` as the decode script does), ``ddim_respaced`` (ours: a correct η = 0 DDIM over ``nfe``
  evenly spaced timesteps).

Training noise (t, ε) comes from the global torch RNG (the training loop reseeds it every step);
sampling noise only from the ``generator`` argument.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from ..models import Transformer, TransformerConfig
from ..models.transformer import timestep_embedding
from .base import Batch, Method, Samples, batch_on, check_model_cfg, eval_mode
from .options import DIFFUSEQ_T, diffuseq_nfe, diffuseq_options

#: keys of the experiment's ``model`` config (None = required) and their defaults (DiffuSeq code)
MODEL_KEYS: dict[str, Any] = {
    "d_model": None,
    "n_layers": None,
    "n_heads": None,
    "mlp_ratio": 4.0,
    "dropout": 0.1,
    "emb_dim": 128,
    "diffusion_steps": DIFFUSEQ_T,
    "schedule": "sqrt",
}
#: token ids the train stage injects from ``meta.json`` specials (None = optional)
REQUIRED_IDS = ("pad_id",)
OPTIONAL_IDS = ("bos_id", "eos_id", "sep_id", "mask_id")

SCHEDULES = ("sqrt",)
#: DiffuSeq's ``hidden_t_dim``: sinusoid width; its time MLP is 128 → 4·128 → d
TIME_FREQ_DIM = 128
TIME_MAX_PERIOD = 10000.0
#: loss-aware sampler: losses kept per t, and the uniform mixing weight
HISTORY_PER_TERM = 10
UNIFORM_PROB = 1e-3
#: elements of one (rows × V) distance block of the nearest-embedding search
ROUND_BLOCK = 1 << 24


# ------------------------------------------------------------------------------------------------
# Noise schedule
# ------------------------------------------------------------------------------------------------


def sqrt_betas(steps: int, max_beta: float = 0.999) -> np.ndarray:
    """DiffuSeq's ``sqrt`` schedule (code): β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), max_beta), float64."""

    def alpha_bar(s: float) -> float:
        return 1.0 - math.sqrt(s + 1e-4)

    return np.array(
        [
            min(1.0 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta)
            for i in range(steps)
        ],
        dtype=np.float64,
    )


class Schedule:
    """Float64 host-side tables of a discrete Gaussian diffusion with T = ``len(betas)`` steps.

    ``ab[i]`` = ᾱ_i = Π_{j ≤ i}(1 − β_j); ``ab_prev[i]`` = ᾱ_{i−1} (1 at i = 0); the DDPM posterior
    q(z_{i−1} | z_i, x₀) has mean ``coef1[i]·x₀ + coef2[i]·z_i``; ``var_large`` is the "fixed
    large" variance (β_i, with slot 0 replaced by the posterior variance at index 1).
    """

    def __init__(self, betas: np.ndarray) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        self.T = int(betas.shape[0])
        self.betas = betas
        alphas = 1.0 - betas
        self.ab = np.cumprod(alphas)
        self.ab_prev = np.append(1.0, self.ab[:-1])
        self.sqrt_ab = np.sqrt(self.ab)
        self.sqrt_1m_ab = np.sqrt(1.0 - self.ab)
        post_var = betas * (1.0 - self.ab_prev) / (1.0 - self.ab)
        self.coef1 = betas * np.sqrt(self.ab_prev) / (1.0 - self.ab)
        self.coef2 = (1.0 - self.ab_prev) * np.sqrt(alphas) / (1.0 - self.ab)
        self.var_large = np.append(post_var[1], betas[1:])


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


class DiffuSeqModel(nn.Module):
    """x̂₀-predicting network z_t (B, L, emb_dim), t (B,) int → x̂₀ (B, L, emb_dim); see module doc.

    Also holds what the method needs around the network: the embedding ``E`` (``word_emb``), the
    ``lm_head`` bias, the schedule (host tables and device buffers) and the loss-aware history.
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        emb_dim: int,
        diffusion_steps: int,
    ) -> None:
        super().__init__()
        self.vocab_size, self.emb_dim = vocab_size, emb_dim
        self.word_emb = nn.Embedding(vocab_size, emb_dim)  # E, shared by input and lm_head
        self.lm_bias = nn.Parameter(torch.zeros(vocab_size))  # lm_head's own (untied) bias
        self.up = nn.Sequential(nn.Linear(emb_dim, d_model), nn.Tanh(), nn.Linear(d_model, d_model))
        self.time_mlp = nn.Sequential(
            nn.Linear(TIME_FREQ_DIM, 4 * TIME_FREQ_DIM),
            nn.SiLU(),
            nn.Linear(4 * TIME_FREQ_DIM, d_model),
        )
        net_cfg = TransformerConfig(
            d_model=d_model, n_layers=n_layers, n_heads=n_heads, mlp_ratio=mlp_ratio,
            dropout=dropout, vocab_size=vocab_size, seq_len=seq_len, causal=False, time_cond=False,
            pos_emb="learned", input="vectors", d_in=d_model, output="vectors", d_out=d_model,
            activation="gelu", norm_eps=1e-12,  # BERT's
        )
        self.backbone = Transformer(net_cfg)
        # the backbone's output Linear(d → d) is the first Linear of DiffuSeq's down-projection
        self.down = nn.Sequential(nn.Tanh(), nn.Linear(d_model, emb_dim))

        self.schedule = Schedule(sqrt_betas(diffusion_steps))
        sch = self.schedule
        # device copies for per-example gathers in the loss (fixed: not part of the state_dict)
        for name in ("sqrt_ab", "sqrt_1m_ab"):
            self.register_buffer(name, torch.from_numpy(getattr(sch, name)), persistent=False)
        # loss-aware sampler state (persistent: checkpointed and resumed with the weights)
        self.register_buffer(
            "loss_history", torch.zeros(sch.T, HISTORY_PER_TERM, dtype=torch.float64)
        )
        self.register_buffer("loss_counts", torch.zeros(sch.T, dtype=torch.int64))
        self.reset_parameters()

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def seq_len(self) -> int:
        return self.backbone.cfg.seq_len

    def reset_parameters(self) -> None:
        """E ~ N(0, 1) and PyTorch-default Linears as DiffuSeq's code (the backbone keeps its own
        N(0, 0.02) init); the lm_head bias as nn.Linear's default U(±1/√emb_dim)."""
        nn.init.normal_(self.word_emb.weight)
        bound = 1.0 / math.sqrt(self.emb_dim)
        nn.init.uniform_(self.lm_bias, -bound, bound)
        for module in (*self.up, *self.time_mlp, *self.down):
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    # -- network ---------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x̂₀ (B, L, emb_dim) from z_t (B, L, emb_dim) and integer steps t (B,) in [0, T)."""
        freqs = timestep_embedding(t.float() * (1000.0 / self.T), TIME_FREQ_DIM, TIME_MAX_PERIOD)
        temb = self.time_mlp(freqs.to(self.time_mlp[0].weight.dtype))  # (B, d)
        h = self.up(z.to(self.up[0].weight.dtype)) + temb[:, None]  # (B, L, d)
        h = self.backbone(h)  # (B, L, d)
        return self.down(h)  # (B, L, emb_dim)

    # -- embedding space -------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """E[ids]: (B, L) → (B, L, emb_dim) float32."""
        return self.word_emb(ids).float()

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """lm_head(z) = z Eᵀ + b: (B, L, emb_dim) → (B, L, V), in float32 (autocast off)."""
        with torch.autocast(z.device.type, enabled=False):
            return F.linear(z.float(), self.word_emb.weight.float(), self.lm_bias.float())

    def nearest_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Id of the nearest (L2) row of E for every vector: (B, L, emb_dim) → (B, L) int64.

        argmin_k ‖E_k‖² − 2⟨E_k, x⟩ over the whole vocabulary (DiffuSeq's clamping), in float32,
        in blocks of at most :data:`ROUND_BLOCK` distances.
        """
        with torch.autocast(x.device.type, enabled=False):
            emb = self.word_emb.weight.float()  # (V, e)
            sq = emb.square().sum(-1)  # (V,)
            flat = x.reshape(-1, x.shape[-1]).float()  # (N, e)
            rows = max(1, ROUND_BLOCK // emb.shape[0])
            ids = [
                torch.addmm(sq, flat[s : s + rows], emb.t(), alpha=-2.0).argmin(-1)
                for s in range(0, flat.shape[0], rows)
            ]  # each (n,)
        return torch.cat(ids).view(x.shape[:-1])

    # -- loss-aware time sampler (§1.5) ----------------------------------------------------------
    def timestep_probs(self) -> torch.Tensor:
        """p (T,) float64: uniform until every t holds 10 losses, then ∝ √(mean loss²), mixed."""
        T = self.T
        warm = (self.loss_counts == HISTORY_PER_TERM).all()  # () bool, no host sync
        rms = self.loss_history.square().mean(-1).sqrt()  # (T,)
        p = rms / rms.sum() * (1.0 - UNIFORM_PROB) + UNIFORM_PROB / T
        return torch.where(warm, p, torch.full_like(p, 1.0 / T))

    def sample_timesteps(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """t (n,) int64 ~ p from the global torch RNG, and unbiased weights 1/(T·p_t) (n,) float32."""
        p = self.timestep_probs()
        t = torch.multinomial(p, n, replacement=True)
        return t, (1.0 / (self.T * p[t])).float()

    @torch.no_grad()
    def update_loss_history(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append per-example losses to the per-t FIFOs, in batch order (as a sequential loop would).

        Under torch.distributed the (t, loss) pairs of all ranks are gathered first, in rank order,
        so every rank keeps the same history (equal micro-batch sizes, as repro's loop has).
        """
        t, losses = t.reshape(-1).long(), losses.reshape(-1).to(torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                ts = [torch.empty_like(t) for _ in range(world)]
                ls = [torch.empty_like(losses) for _ in range(world)]
                torch.distributed.all_gather(ts, t.contiguous())
                torch.distributed.all_gather(ls, losses.contiguous())
                t, losses = torch.cat(ts), torch.cat(ls)
        T, H, N = self.T, HISTORY_PER_TERM, t.shape[0]
        dev = t.device
        counts = self.loss_counts  # (T,) entries held before this update
        arrivals = torch.bincount(t, minlength=T)  # (T,)
        # Sequence per t: old entries then arrivals in batch order; the last H survive.
        drop = (counts + arrivals - H).clamp(min=0)  # (T,) entries pushed out at the front
        src = torch.arange(H, device=dev)[None] + drop[:, None]  # (T, H) old slot feeding slot j
        kept = self.loss_history.gather(1, src.clamp(max=H - 1))
        kept = torch.where(src < counts[:, None], kept, torch.zeros_like(kept))
        # rank of each arrival among the arrivals of the same t (stable sort keeps batch order)
        order = torch.argsort(t, stable=True)
        sorted_t = t[order]
        rank = torch.empty_like(t)
        rank[order] = torch.arange(N, device=dev) - torch.searchsorted(sorted_t, sorted_t)
        slot = counts[t] + rank - drop[t]  # (N,) final slot, < 0 if pushed out already
        slot = torch.where(slot >= 0, slot, torch.full_like(slot, H))  # column H: discarded
        buf = torch.cat([kept, kept.new_zeros(T, 1)], dim=1)  # (T, H + 1)
        buf.index_put_((t, slot), losses)
        self.loss_history.copy_(buf[:, :H])
        self.loss_counts.copy_((counts + arrivals).clamp(max=H))


# ------------------------------------------------------------------------------------------------
# Method
# ------------------------------------------------------------------------------------------------


class DiffuSeq(Method):
    """Embedding diffusion with partial noising, loss-aware time sampling and clamped decoding."""

    name: ClassVar[str] = "diffuseq"
    samplers: ClassVar[tuple[str, ...]] = ("ddpm", "ddim_gap", "ddim_respaced")

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        """:class:`DiffuSeqModel` from the keys of :data:`MODEL_KEYS` plus the injected specials.

        ``pad_id`` (required) and ``bos_id``/``eos_id``/``sep_id``/``mask_id`` (optional) are stored
        as plain int attributes, not buffers, so the checkpoint's ``model`` cfg rebuilds them.
        """
        cfg, ids = check_model_cfg(
            "model config of method 'diffuseq'",
            model_cfg,
            MODEL_KEYS,
            vocab_size,
            REQUIRED_IDS,
            OPTIONAL_IDS,
        )
        if cfg["schedule"] not in SCHEDULES:
            raise InputError(
                f"model config of method 'diffuseq': schedule {cfg['schedule']!r} is not "
                f"implemented; choose one of {list(SCHEDULES)}"
            )
        for key in ("emb_dim", "diffusion_steps"):
            value = cfg[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise InputError(
                    f"model config of method 'diffuseq': {key} must be an int >= 2, got {value!r}"
                )
        try:
            model = DiffuSeqModel(
                vocab_size=vocab_size,
                seq_len=seq_len,
                **{k: v for k, v in cfg.items() if k != "schedule"},
            )
        except (ValueError, TypeError) as err:
            raise InputError(f"model config of method 'diffuseq': {err}") from None
        for key, value in ids.items():
            setattr(model, key, value)
        return model

    def word_embeddings(self, model: nn.Module) -> torch.Tensor:
        """E (V, emb_dim): ``word_emb.weight``, tied to the lm_head (EMA weights in a model.ckpt
        trained with ``ema``) — the matrix FM-seq2seq freezes (methods.md §2.2)."""
        return model.word_emb.weight.detach()

    # -- training --------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """§1.4 loss with t from the loss-aware sampler (§1.5): mean_i w(t_i)·loss_i.

        In training mode the unweighted per-example losses enter the loss-aware history.
        """
        ids, cond = self._check_batch(model, batch)
        t, weights = model.sample_timesteps(ids.shape[0])  # (B,), (B,)
        terms = self.loss_terms(model, ids, cond, t)
        if model.training:
            model.update_loss_history(t, terms["loss"].detach())
        return (terms["loss"] * weights).mean()

    def loss_at_t(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> torch.Tensor:
        """Per-example MSE term (B,) of the §1.4 loss at times ``t`` (B,) in [0, 1].

        ``t`` maps to the integer diffusion step round(t·(T−1)) (round half to even), so t = 0 is
        step 0 (**data**: DiffuSeq's time runs data → noise, the reverse of flow matching's) and
        t = 1 step T−1 (almost pure noise). Returned: :meth:`loss_terms`'s ``mse`` at that step
        (same code path and noise order, ε₀ then ε from the global torch RNG): the mean over all
        L×emb_dim entries of (x̂₀ − z₀)², z₀ = E[w] + σ₀ε₀, and at step 0 of (x̂₀ − E[w])². Not
        included: the rounding CE ``decoder_nll``, the prior term ``tT`` and the loss-aware
        importance weight of :meth:`loss`; the loss-aware history is never updated here.
        """
        ids, cond = self._check_batch(model, batch)
        t = self.check_times(t, ids, torch.float64)
        steps = torch.round(t * (model.T - 1)).long()  # (B,) in [0, T−1]
        return self.loss_terms(model, ids, cond, steps)["mse"]

    def loss_terms(
        self, model: DiffuSeqModel, ids: torch.Tensor, cond: torch.Tensor, t: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-example terms (B,) of DiffuSeq's training loss at given steps t (B,) (§1.4, code).

        Noise, in this order, from the global torch RNG: ε₀ of z₀ = E[w] + σ₀ε₀, then ε of z_t.
        Returns ``mse`` (with the t = 0 branch), ``decoder_nll``, ``tT`` and their sum ``loss``.
        """
        sch = model.schedule
        x_mean = model.embed(ids)  # (B, L, e) E[w]
        z0 = x_mean + float(sch.sqrt_1m_ab[0]) * torch.randn_like(x_mean)  # (B, L, e)
        eps = torch.randn_like(z0)
        a = model.sqrt_ab[t].float()[:, None, None]  # (B, 1, 1)
        s = model.sqrt_1m_ab[t].float()[:, None, None]
        zt = torch.where(cond[..., None], z0, a * z0 + s * eps)  # partial noising
        x0_hat = model(zt, t).float()  # (B, L, e)
        mse = (z0 - x0_hat).square().mean((1, 2))  # (B,) all positions, all dims
        mse_t0 = (x_mean - x0_hat).square().mean((1, 2))  # t = 0: target is E[w]
        mse = torch.where(t == 0, mse_t0, mse)
        logits = model.logits(z0)  # (B, L, V)
        decoder_nll = (
            F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none")
            .view(ids.shape)
            .mean(1)
        )  # (B,) rounding loss on z₀, all positions
        tT = (float(sch.sqrt_ab[-1]) * z0).square().mean((1, 2))  # (B,) prior term
        return {"mse": mse, "decoder_nll": decoder_nll, "tT": tT, "loss": mse + decoder_nll + tT}

    def _check_batch(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(model, DiffuSeqModel):
            raise TypeError(f"method 'diffuseq' needs a DiffuSeqModel, got {type(model).__name__}")
        return batch_on(batch, model.word_emb.weight.device, model.seq_len)

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, model: nn.Module, cond: Batch, nfe: int, sampler: str, generator: torch.Generator,
        clamp: bool = True, top_p: float = 0.0, **opts: Any,
    ) -> Samples:
        """Generate the non-given positions of ``cond`` (§1.7).

        Args:
            model: a :class:`DiffuSeqModel`.
            cond: ``ids`` (B, L) with the given tokens where ``cond`` (B, L) is True; other positions
                are never read.
            nfe: network calls: ``ddpm`` needs exactly T; ``ddim_gap`` visits t = T−1, T−1−g, …
                with g = T // nfe (⌈T/g⌉ calls; nfe = T is DDPM, as DiffuSeq's decode script);
                ``ddim_respaced`` makes exactly ``nfe`` ≤ T calls.
            sampler: ``"ddpm"`` | ``"ddim_gap"`` | ``"ddim_respaced"``.
            generator: the only source of randomness (initial noise; DDPM's per-step noise).
            clamp: replace x̂₀ by its nearest embedding row at every step (DiffuSeq's default).
            top_p: DDPM only: if > 0, resample every noise entry with |n| > top_p (DiffuSeq's
                ``--top_p``; 0 = off, its default).

        Returns:
            :class:`Samples`: ids (B, L) = argmax of ``lm_head`` of the final latent off the given
            positions, the given tokens on them; ``nfe`` = network calls made.
        """
        self.check_sampler(sampler)
        clamp, top_p = diffuseq_options(sampler, {"clamp": clamp, "top_p": top_p, **opts})
        ids, given = self._check_batch(model, cond)
        T = model.T
        diffuseq_nfe(sampler, nfe, T)
        device = model.word_emb.weight.device
        self.check_generator(generator, device)
        with eval_mode(model):
            x_src = model.embed(torch.where(given, ids, 0))  # (B, L, e) clean E[src]; rest unused
            anchor = given[..., None]  # (B, L, 1)
            noise = torch.randn(x_src.shape, generator=generator, device=device)
            z = torch.where(anchor, x_src, noise)  # (B, L, e) z_T
            if sampler == "ddpm" or (sampler == "ddim_gap" and nfe == T):
                z, calls = self._ddpm(model, z, x_src, anchor, generator, clamp, float(top_p))
            elif sampler == "ddim_gap":
                steps = list(range(T - 1, -1, -(T // nfe)))
                z, calls = self._ddim(model, z, x_src, anchor, steps, clamp, respaced=False)
            else:
                steps = respaced_steps(T, nfe)
                z, calls = self._ddim(model, z, x_src, anchor, steps, clamp, respaced=True)
            out = model.logits(z).argmax(-1)  # (B, L)
        return Samples(ids=torch.where(given, ids, out), nfe=calls)

    def _x0(
        self, model: DiffuSeqModel, z: torch.Tensor, step: int, clamp: bool, anchor: torch.Tensor
    ) -> torch.Tensor:
        """One network call: x̂₀ (B, L, e) at integer step ``step``, clamped to E if asked.

        DiffuSeq clamps every position; only the free ones (``~anchor``) are clamped here: an
        anchored position's x̂₀ only enters its own z, which anchoring then overwrites with E[src],
        so the samples are identical and the V-wide search skips the source half.
        """
        t = torch.full((z.shape[0],), step, dtype=torch.long, device=z.device)
        x0 = model(z, t).float()
        if not clamp:
            return x0
        free = ~anchor[..., 0]  # (B, L)
        x0 = x0.clone()
        x0[free] = model.word_emb(model.nearest_ids(x0[free])).float()  # (n_free, e)
        return x0

    def _ddpm(
        self,
        model: DiffuSeqModel,
        z: torch.Tensor,
        x_src: torch.Tensor,
        anchor: torch.Tensor,
        generator: torch.Generator,
        clamp: bool,
        top_p: float,
    ) -> tuple[torch.Tensor, int]:
        """Ancestral sampling i = T−1 … 0: posterior mean + √(fixed-large var)·n, then anchoring."""
        sch = model.schedule
        for i in range(sch.T - 1, -1, -1):
            x0 = self._x0(model, z, i, clamp, anchor)
            z = float(sch.coef1[i]) * x0 + float(sch.coef2[i]) * z  # (B, L, e) posterior mean
            if i > 0:
                n = _gaussian(z.shape, generator, z.device, top_p)
                z = z + math.sqrt(float(sch.var_large[i])) * n
            z = torch.where(anchor, x_src, z)
        return z, sch.T

    def _ddim(
        self,
        model: DiffuSeqModel,
        z: torch.Tensor,
        x_src: torch.Tensor,
        anchor: torch.Tensor,
        steps: list[int],
        clamp: bool,
        respaced: bool,
    ) -> tuple[torch.Tensor, int]:
        """Deterministic (η = 0) DDIM over the visited ``steps`` (descending), with anchoring.

        From step i the update goes to ᾱ_{i−1} in the gap variant (DiffuSeq's code, whatever the
        next visited step is) and to ᾱ of the next visited step in the respaced one (1 after the
        last), with ε̂ = (z_i/√ᾱ_i − x̂₀)/√(1/ᾱ_i − 1) from the (clamped) x̂₀.
        """
        ab, ab_prev = model.schedule.ab, model.schedule.ab_prev
        for k, i in enumerate(steps):
            x0 = self._x0(model, z, i, clamp, anchor)
            eps = (z / math.sqrt(ab[i]) - x0) / math.sqrt(1.0 / ab[i] - 1.0)  # (B, L, e)
            if respaced:
                target = float(ab[steps[k + 1]]) if k + 1 < len(steps) else 1.0
            else:
                target = float(ab_prev[i])
            z = math.sqrt(target) * x0 + math.sqrt(1.0 - target) * eps
            z = torch.where(anchor, x_src, z)
        return z, len(steps)


def respaced_steps(T: int, k: int) -> list[int]:
    """``k`` distinct steps evenly spaced over [0, T−1], descending: round(j·(T−1)/(k−1)); k = 1
    gives [T−1] (a single call on pure noise)."""
    if k == 1:
        return [T - 1]
    return [round(j * (T - 1) / (k - 1)) for j in range(k - 1, -1, -1)]


def _gaussian(
    shape: torch.Size, generator: torch.Generator, device: torch.device, top_p: float
) -> torch.Tensor:
    """N(0, I) noise from ``generator``; with top_p > 0 entries with |n| > top_p are redrawn."""
    n = torch.randn(shape, generator=generator, device=device)
    if top_p > 0:
        bad = n.abs() > top_p
        while bool(bad.any()):
            n = torch.where(bad, torch.randn(shape, generator=generator, device=device), n)
            bad = n.abs() > top_p
    return n
