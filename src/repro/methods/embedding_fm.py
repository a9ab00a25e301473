"""FM-seq2seq: flow matching in a (frozen) word-embedding space with a DiT.

Follows Shah's FM-seq2seq (FMS): the paper's objective and sampler, the FMS code's details where
the paper is silent; ``docs/methods.md`` §2 is the long spec. Shapes: ids (B, L) int64, cond
(B, L) bool; states x_t and velocities v_θ(x_t, t) (B, L, emb_dim); t (B,) in [0, 1]; E (V,
emb_dim). Piece by piece:

* Layout (§2.1, code): ``halves`` — source in positions 0…L/2−1, target in L/2…L−1, cond = 1 on the
  source half. Nothing below depends on the split being at L/2: "source" means ``cond`` positions.
* Embeddings (§2.2, code): a V×emb_dim matrix E, looked up per batch (``F.embedding``; the JAX code
  materialises the whole dataset's embeddings on device, which we avoid). ``model.embeddings``:

  - a path to a ``.npy`` of shape (V, emb_dim): DiffuSeq's trained word embeddings (the paper's
    setting), **frozen**;
  - ``"random"``: frozen N(0, 1) entries drawn from a torch generator seeded with ``emb_seed``
    (salted, so E is not the noise stream of sample seed ``emb_seed``): the paper's
    random-embedding ablation (Fig. 4–5);
  - ``embeddings_trainable: true`` with a ``.npy``: E starts from that matrix and is trained
    further (FMS Fig. 3, "freezing the embedding layer on continued training from a pre-trained
    checkpoint"), with the rounding CE below;
  - ``"trained"`` (ours, not in the paper): E starts random and is a parameter trained jointly. The velocity loss
    alone lets E collapse: with E → 0 the target half's velocity x₁ − x₀ = −z = −x_t / (1 − t)
    is exactly predictable, so the MSE falls to 0 while every token becomes indistinguishable.
    We therefore add ``emb_loss_weight`` × a rounding cross-entropy on the generated positions,
    ``CE(softmax_k(−‖x̂₁ − E_k‖²), token)`` of the model's one-step endpoint prediction
    x̂₁ = x_t + (1 − t)·v_θ(x_t, t) — the same nearest-neighbour rule the sampler rounds with.
    Collapse then costs log V nats; blow-up of E is held back by the MSE, whose targets scale
    with E. (DiffuSeq anchors its learned embeddings with a rounding CE too, methods.md §1.4, but
    on the σ₀-noised E[w] through a tied lm_head; ours rounds the model's prediction, as sampling
    does.)

  Frozen matrices are persistent buffers and the trained one a parameter; both are the state_dict
  entry ``embedding``, so a checkpoint carries the E it was trained with.
* Network (§2.3, paper + code): the shared :class:`~repro.models.Transformer` as FMS's DiT —
  vectors in (Linear emb_dim → d_model), fixed interleaved sin-cos positions, adaLN *without*
  gates whose modulation is fed the time vector c directly (no SiLU), time embedding of **raw**
  t ∈ [0, 1] (sinusoid dim 256, ``time_max_period`` 100 by default) → Dense → SiLU → Dense
  (``time_dim``), GELU-tanh MLP, LayerNorm eps 1e-6, no dropout, no attention mask, vectors out
  (Linear d_model → emb_dim, zero-initialised). Initialisation is re-done explicitly after
  construction (flax defaults of the FMS code): every Dense kernel LeCun-normal (truncated normal,
  variance 1/fan_in), the attention q/k/v/out kernels xavier-uniform (each d×d matrix on its own, as
  flax's per-projection DenseGeneral), all biases zero, the final Dense zero.
* Objective (§2.4, paper = code): x₀ = where(cond, E[ids], z), z ~ N(0, I); x₁ = E[ids];
  t ~ U[0, 1) per example; x_t = (1 − t)·x₀ + t·x₁; loss = mean over **all** B×L×emb_dim entries
  of (v_θ(x_t, t) − (x₁ − x₀))² (the source half's target velocity is 0). t and z come from the
  global torch RNG, which the training loop reseeds before every step.
* Sampler (§2.6, paper = code): Euler with N = nfe steps of h = 1/N from x = where(cond, E[src],
  z), z ~ N(0, I) from the caller's generator; step i evaluates v_θ(x, i·h) once (NFE = N exactly,
  last evaluation at t = 1 − h), x ← x + h·v, then re-writes the source positions with E[src].
  Finally each generated position is rounded to its nearest neighbour in L2 among the rows of E,
  argmin_k ‖E_k‖² − 2⟨E_k, x⟩ (one matmul per chunk of positions; given ids are returned as is).

Written from the methods spec; no code is copied from the reference repositories.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from ..models import Transformer, TransformerConfig
from ..models.transformer import SelfAttention
from .base import Batch, Method, Samples, batch_on, check_model_cfg, eval_mode
from .options import check_nfe, embedding_fm_options

#: model config keys (None = required) and their defaults
MODEL_KEYS: dict[str, Any] = {
    "d_model": None,
    "n_layers": None,
    "n_heads": None,
    "mlp_ratio": 4.0,  # FMS: 4 (its config default is 2 — the final run sets 4)
    "time_dim": 256,  # width of the time MLP and of c
    "time_max_period": 100.0,  # FMS's final run ("tep100"); DiT / the ablation default: 10,000
    "emb_dim": 128,
    "embeddings": None,  # "random" | "trained" | path to a (V, emb_dim) .npy
    # train E jointly, starting from the matrix above (FMS Fig. 3: DiffuSeq's E frozen vs trained
    # further); "trained" is shorthand for random + embeddings_trainable: true
    "embeddings_trainable": False,
    "emb_seed": 0,  # generator seed of the initial / random matrix
    "emb_loss_weight": 1.0,  # weight of the anti-collapse rounding CE ("trained" only)
}
#: token ids the train stage injects from ``meta.json`` specials (all optional, unused by the math)
SPECIAL_IDS = ("pad_id", "bos_id", "eos_id", "sep_id", "mask_id")
#: size of the sinusoidal timestep embedding (FMS: 256)
TIME_FREQ_DIM = 256
#: mixed with emb_seed into the seed of the random / initial embedding matrix
EMB_SALT = 0x454D42  # "EMB"
#: nearest-neighbour rounding: largest (positions × V) distance block computed at once
ROUND_BLOCK = 1 << 25

_WHERE = "model config of method 'embedding_fm'"


class EmbeddingFMModel(nn.Module):
    """The DiT velocity field plus the embedding matrix E it flows in.

    ``forward(x, t)`` maps (B, L, emb_dim) states and (B,) or scalar times in [0, 1] to (B, L,
    emb_dim) velocities: one call is one network function evaluation.
    """

    def __init__(self, cfg: TransformerConfig, embedding: torch.Tensor, trained: bool) -> None:
        super().__init__()
        self.net = Transformer(cfg)
        self.trained_embeddings = trained
        if trained:
            self.embedding = nn.Parameter(embedding)  # (V, emb_dim)
        else:
            self.register_buffer("embedding", embedding, persistent=True)  # (V, emb_dim)
        self.emb_loss_weight = 0.0
        self.reset_parameters()

    @property
    def cfg(self) -> TransformerConfig:
        return self.net.cfg

    def reset_parameters(self) -> None:
        """FMS (flax) initialisation; see the module docstring."""
        for module in self.net.modules():
            if isinstance(module, nn.Linear):
                lecun_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.net.modules():  # after the pass above, which also visits q/k/v/out
            if isinstance(module, SelfAttention):
                for weight in (*module.qkv.weight.chunk(3, dim=0), module.proj.weight):
                    nn.init.xavier_uniform_(weight)  # (d, d) view: fan_in = fan_out = d
        head = self.net.final.head
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids → (B, L, emb_dim) rows of E (float32)."""
        return F.embedding(ids, self.embedding).float()

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.net(x, t)  # (B, L, emb_dim)


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """flax's ``lecun_normal``: N(0, 1) truncated to ±2, scaled to variance 1 / fan_in."""
    fan_in = weight.shape[1]
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # the truncated normal's std correction
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def nearest_tokens(x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """Nearest row of ``embedding`` (V, d) in L2 for every row of ``x`` (N, d) → (N,) int64.

    argmin_k ‖E_k‖² − 2⟨E_k, x⟩ (‖x‖² is constant per row), in float32 with autocast off; ties go
    to the lowest index (``torch.argmin``). The positions are processed in blocks of at most
    ``ROUND_BLOCK`` distances — on the CPU at most 2²³ (32 MiB, about a last-level cache; larger
    blocks measured slower there) — never a loop over V. ‖E‖² is computed once per call; each
    block is one fused ``addmm`` (‖E‖² − 2·x Eᵀ) into a buffer that every block reuses, then its
    row argmin. No autograd (integer output; ``out=`` would refuse a trained E's graph).
    """
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        emb = embedding.float()  # (V, d)
        n, V = x.shape[0], emb.shape[0]
        sq = emb.square().sum(-1)  # (V,)
        budget = min(ROUND_BLOCK, 1 << 23) if x.device.type == "cpu" else ROUND_BLOCK
        rows = max(1, budget // max(1, V))
        out = torch.empty(n, dtype=torch.long, device=x.device)
        scores = torch.empty(min(rows, n), V, device=x.device)  # (rows, V) distance block
        emb_t = emb.t()  # (d, V) view, no copy
        for lo in range(0, n, rows):
            block = scores[: min(rows, n - lo)]
            torch.addmm(sq, x[lo : lo + rows], emb_t, alpha=-2.0, out=block)
            torch.argmin(block, dim=-1, out=out[lo : lo + rows])
    return out


class EmbeddingFM(Method):
    """Flow matching from Gaussian noise to word embeddings, Euler sampling, NN rounding."""

    name: ClassVar[str] = "embedding_fm"
    samplers: ClassVar[tuple[str, ...]] = ("euler",)


    # --------------------------------------------------------------------------- model

    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        """An :class:`EmbeddingFMModel` for ``vocab_size`` tokens and sequences of ``seq_len``.

        ``model_cfg`` holds the keys of :data:`MODEL_KEYS` (``d_model``, ``n_layers``,
        ``n_heads`` and ``embeddings`` are required) plus the special ids the train stage injects
        (stored as plain ints ``model.pad_id`` …). Randomness: the network's initial weights come
        from the global torch RNG (the train stage seeds it), E's from ``emb_seed`` alone (see
        :func:`_initial_embedding`).
        """
        cfg, ids = check_model_cfg(_WHERE, model_cfg, MODEL_KEYS, vocab_size, (), SPECIAL_IDS)
        emb_dim, seed, weight = cfg["emb_dim"], cfg["emb_seed"], cfg["emb_loss_weight"]
        for key, low in (("emb_dim", 1), ("emb_seed", 0)):
            value = cfg[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{_WHERE}: {key} must be an int >= {low}, got {value!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise InputError(f"{_WHERE}: emb_loss_weight must be a number >= 0, got {weight!r}")
        source = cfg["embeddings"]
        if not isinstance(cfg["embeddings_trainable"], bool):
            raise InputError(
                f"{_WHERE}: embeddings_trainable must be true or false, "
                f"got {cfg['embeddings_trainable']!r}"
            )
        trainable = source == "trained" or cfg["embeddings_trainable"]
        if "emb_loss_weight" in model_cfg and not trainable:
            raise InputError(
                f"{_WHERE}: emb_loss_weight only applies to trained embeddings (embeddings: "
                f"trained, or embeddings_trainable: true); got embeddings: {source!r}; remove it"
            )
        embedding = _initial_embedding(source, vocab_size, emb_dim, seed)
        # d_model, n_layers, n_heads, mlp_ratio, time_dim, time_max_period: from the model block
        net_cfg = TransformerConfig.from_model(
            cfg, vocab_size=vocab_size, seq_len=seq_len, where=_WHERE, dropout=0.0, causal=False,
            time_cond=True, time_freq_dim=TIME_FREQ_DIM, time_scale=1.0,
            adaln_gate=False, adaln_silu=False,  # FMS's gate-free AdaLN
            pos_emb="sincos", input="vectors", d_in=emb_dim, output="vectors", d_out=emb_dim,
            zero_init_output=True, activation="gelu_tanh", bias=True, norm_eps=1e-6,
        )
        model = EmbeddingFMModel(net_cfg, embedding, trained=trainable)
        model.emb_loss_weight = float(weight) if trainable else 0.0
        for key in SPECIAL_IDS:
            setattr(model, key, model_cfg.get(key))
        return model

    def word_embeddings(self, model: nn.Module) -> torch.Tensor:
        """E (V, emb_dim) the flow runs in (frozen or trained)."""
        return model.embedding.detach()

    # --------------------------------------------------------------------------- training

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """§2.4: mean over all B×L×emb_dim entries of (v_θ(x_t, t) − (x₁ − x₀))².

        With ``embeddings: trained`` the rounding cross-entropy of the module docstring is added
        (weighted by ``emb_loss_weight``). Noise (t, then z) comes from the global torch RNG.
        """
        ids, given = batch.ids.long(), batch.cond.bool()  # (B, L), (B, L)
        t = torch.rand(ids.shape[0], device=model.embedding.device)  # (B,) ~ U[0, 1)
        sq, xt, v = _velocity_error(model, ids, given, t)  # (B, L, d) ×3
        loss = sq.mean()
        tt = t[:, None, None]  # (B, 1, 1)
        if model.trained_embeddings and model.emb_loss_weight > 0:
            x1_hat = xt + (1.0 - tt) * v  # (B, L, d) one-step endpoint prediction
            free = ~given  # (B, L)
            emb = model.embedding.float()  # (V, d)
            logits = 2.0 * (x1_hat[free] @ emb.T) - emb.square().sum(-1)  # (n_free, V)
            ce = F.cross_entropy(logits, ids[free]) if logits.shape[0] else logits.sum()
            loss = loss + model.emb_loss_weight * ce
        return loss

    def loss_at_t(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> torch.Tensor:
        """Per-example velocity MSE (B,) of §2.4 at given times ``t`` (B,) in [0, 1].

        Exactly :meth:`loss`'s first term (same code path) with t given instead of drawn: z from
        the global torch RNG, x_t = (1 − t)·x₀ + t·x₁ with the source half fixed at E[src],
        mean over all L×emb_dim entries of each example (both halves; the source half's target
        velocity is 0). So ``loss_at_t(t).mean()`` equals :meth:`loss` for the same t and z
        (without the ``embeddings: trained`` rounding CE, which is not included). FM time: t = 0 is
        noise, t = 1 data.
        """
        ids, given = batch_on(batch, model.embedding.device, model.cfg.seq_len)  # (B, L) each
        t = self.check_times(t, ids)
        sq, _, _ = _velocity_error(model, ids, given, t)  # (B, L, d)
        return sq.mean((1, 2))

    # --------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self, model: nn.Module, cond: Batch, nfe: int, sampler: str, generator: torch.Generator,
        **opts: Any,
    ) -> Samples:
        """§2.6 Euler sampling with ``nfe`` steps, then nearest-neighbour rounding.

        Args:
            model: a model from :meth:`build_model`.
            cond: ``ids`` (B, L) with the source tokens at the ``cond`` positions (what is at the
                other positions is ignored); ``cond`` (B, L) bool.
            nfe: N, the number of Euler steps = network evaluations.
            sampler: ``"euler"``.
            generator: the only source of randomness (the initial noise; on the model's device).

        Returns:
            :class:`Samples` with the given positions unchanged and ``nfe`` = N.
        """
        self.check_sampler(sampler)
        embedding_fm_options(opts)
        check_nfe(nfe, "Euler steps")
        device = model.embedding.device
        self.check_generator(generator, device)
        ids, given = batch_on(cond, device, model.cfg.seq_len)  # (B, L) each
        src = model.embed(ids.masked_fill(~given, 0))  # (B, L, d) E[src] (rows off cond unused)
        keep = given[..., None]  # (B, L, 1)
        z = torch.randn(src.shape, generator=generator, device=device)  # (B, L, d)
        x = torch.where(keep, src, z)  # (B, L, d) x at t = 0
        h = 1.0 / nfe
        with eval_mode(model):
            for i in range(nfe):
                t = torch.full((ids.shape[0],), i / nfe, device=device)  # last step: t = 1 − h
                v = model(x, t).float()  # (B, L, d)
                x = torch.where(keep, src, x + h * v)  # source half re-written every step
        out = ids.clone()
        out[~given] = nearest_tokens(x[~given], model.embedding)  # (n_free,)
        return Samples(ids=out, nfe=nfe)


def _velocity_error(
    model: EmbeddingFMModel, ids: torch.Tensor, given: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(v_θ(x_t, t) − (x₁ − x₀))² (B, L, d), x_t and v at times ``t`` (B,); z from the global RNG.

    The one implementation of §2.4's interpolation, shared by ``loss`` and ``loss_at_t``.
    """
    x1 = model.embed(ids)  # (B, L, d)
    z = torch.randn(x1.shape, device=x1.device)  # (B, L, d)
    x0 = torch.where(given[..., None], x1, z)  # (B, L, d) source half: E[src]
    tt = t[:, None, None]  # (B, 1, 1)
    xt = (1.0 - tt) * x0 + tt * x1  # (B, L, d)
    v = model(xt, t).float()  # (B, L, d)
    return (v - (x1 - x0)).square(), xt, v


def _initial_embedding(source: Any, vocab_size: int, emb_dim: int, seed: int) -> torch.Tensor:
    """E (vocab_size, emb_dim) float32 for ``embeddings: random | trained | <path.npy>``."""
    if source in ("random", "trained"):
        # Salted: a plain manual_seed(emb_seed) would make E the very stream of N(0, 1) draws the
        # sampler's torch.Generator(seed) starts with, so the initial noise of sample seed
        # emb_seed would be E's rows in token order.
        salted = int(np.random.SeedSequence([EMB_SALT, seed]).generate_state(1, np.uint64)[0])
        g = torch.Generator().manual_seed(salted >> 1)
        return torch.randn(vocab_size, emb_dim, generator=g)  # N(0, 1) entries
    if not isinstance(source, str | Path) or not str(source):
        raise InputError(
            f"{_WHERE}: embeddings must be 'random', 'trained' or the path of a "
            f"(vocab_size, emb_dim) .npy file, got {source!r}"
        )
    path = Path(source)
    if not path.is_file():
        hint = (
            " ('diffuseq' names the embeddings of a trained DiffuSeq model: the train stage must "
            "export them to a .npy and pass its path)"
            if str(source) == "diffuseq"
            else ""
        )
        raise InputError(
            f"{_WHERE}: embeddings file {str(path)!r} not found; give 'random', 'trained' or "
            f"the path of a (vocab_size, emb_dim) .npy{hint}"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy embedding matrix ({err})") from err
    if array.shape != (vocab_size, emb_dim):
        raise InputError(
            f"{path}: embedding matrix of shape {array.shape}, expected (vocab_size, emb_dim) = "
            f"({vocab_size}, {emb_dim}); export it from a model of this tokenizer or set "
            "model.emb_dim to its width"
        )
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise InputError(f"{path}: the embedding matrix must hold finite floats ({array.dtype})")
    return torch.from_numpy(np.array(array, dtype=np.float32))
