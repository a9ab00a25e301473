"""Autoregressive (AR) baseline: the shared backbone with a causal mask, left-to-right decoding.

Follows the AR baseline of KL-flow (Sevriugov & Oseledets; ``docs/methods.md`` §3.6, the long
spec): the same transformer as the flow models, causal, RoPE, next-token cross-entropy, plain
ancestral sampling (temperature 1, no top-k) in the paper setting; ``greedy`` and
``top_k``/``temperature`` are extra knobs.

Shapes and maths: ids (B, L) int64, cond (B, L) bool. The network maps ids[:, :-1] to logits
(B, L−1, V); the loss is −Σ m_j·log softmax(logits_j)[ids_{j+1}] / Σ m_j over the batch, with
m_j = 1 iff position j+1 is generated (not ``cond``) and not ``[PAD]``. Sampling draws each
position from softmax(logits / temperature) restricted to the top k (Gumbel-max: argmax of
logits/T + G, G = −log(−log U)), or takes the argmax (``greedy``).

Layouts (docs/architecture.md): seq2seq → ``conditional`` (``[BOS] src [SEP] trg [EOS] [PAD]…``),
text → ``lm`` (``[BOS] text [EOS] [PAD]…``), code → ``infill_ar`` (masked lines appended at the end,
each behind a given ``[SEP]``).

Decoding is left to right with a KV cache: one prefill pass over the prompt prefix shared by the
whole batch, then one single-position pass per generated position. A position that is given for a
row (``cond``) keeps that row's token (teacher forcing), so rows with longer prompts and the given
``[SEP]`` separators of ``infill_ar`` are handled by the same loop. After a row emits ``[EOS]`` its
non-given positions are ``[PAD]`` up to its next given position (a new segment in ``infill_ar``);
decoding stops once every row has emitted ``[EOS]`` after its last given position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from ..models import Transformer, TransformerConfig
from .base import Batch, Method, Samples, batch_on, check_model_cfg, eval_mode
from .options import ar_options, check_nfe

#: backbone keys of the experiment's ``model`` config (None = required) and their defaults
BACKBONE_KEYS: dict[str, Any] = {
    "d_model": None,
    "n_layers": None,
    "n_heads": None,
    "mlp_ratio": 4.0,
    "dropout": 0.0,
    "pos_emb": "rope",
    "tie_embeddings": False,
}
#: token ids the train stage injects from ``meta.json`` specials (None = optional)
REQUIRED_IDS = ("pad_id", "eos_id")
OPTIONAL_IDS = ("bos_id", "sep_id", "mask_id")

#: sampling steps between two host-side "has every row finished?" checks
EARLY_STOP_EVERY = 8


class Autoregressive(Method):
    """Causal transformer trained with next-token cross-entropy; ancestral or greedy decoding."""

    name: ClassVar[str] = "ar"
    samplers: ClassVar[tuple[str, ...]] = ("ancestral", "greedy")


    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        """Causal tokens→logits :class:`Transformer`; the special ids become model attributes.

        ``model_cfg`` holds the backbone keys of :data:`BACKBONE_KEYS` plus ``pad_id`` and
        ``eos_id`` (and optionally ``bos_id``, ``sep_id``, ``mask_id``), which the train stage
        injects from the tokenizer's specials. They are stored as plain ints (``model.pad_id`` …),
        not buffers: the checkpoint's ``model`` cfg rebuilds them, and strict state_dict loading
        is unaffected.
        """
        backbone, ids = check_model_cfg(
            "model config of method 'ar'", model_cfg, BACKBONE_KEYS, vocab_size,
            REQUIRED_IDS, OPTIONAL_IDS,
        )
        if ids["pad_id"] == ids["eos_id"]:
            raise InputError(
                "model config of method 'ar': pad_id equals eos_id; the AR loss skips [PAD] "
                "targets, so [EOS] needs its own id (add a [PAD] token to the tokenizer)"
            )
        cfg = TransformerConfig.from_model(
            backbone, vocab_size=vocab_size, seq_len=seq_len, where="model config of method 'ar'",
            causal=True, time_cond=False,
        )
        model = Transformer(cfg)
        for key, value in ids.items():
            setattr(model, key, value)
        return model

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean next-token cross-entropy over the positions the method must generate.

        Predicts ``ids[:, 1:]`` from ``ids[:, :-1]``; target position j counts iff
        ``cond[:, j] == 0`` and ``ids[:, j] != pad_id`` ([EOS] is trained, trailing [PAD]s are not).
        """
        ids, cond = batch.ids, batch.cond  # (B, L), (B, L)
        logits = model(ids[:, :-1])  # (B, L-1, V)
        target = ids[:, 1:]  # (B, L-1)
        counted = ~cond[:, 1:].bool() & (target != model.pad_id)  # (B, L-1)
        target = target.masked_fill(~counted, -100)
        total = F.cross_entropy(
            logits.float().flatten(0, 1), target.flatten(), ignore_index=-100, reduction="sum"
        )
        # masked mean without a host sync; a batch with no target yields 0 rather than NaN
        return total / counted.sum().clamp_min(1)

    @torch.no_grad()
    def sample(
        self, model: nn.Module, cond: Batch, nfe: int, sampler: str, generator: torch.Generator,
        temperature: float = 1.0, top_k: int = 0, **opts: Any,
    ) -> Samples:
        """Decode the non-given positions of ``cond`` left to right.

        Args:
            model: a model from :meth:`build_model`.
            cond: ``ids`` (B, L) with the given tokens at ``cond`` positions; ``cond`` (B, L) bool.
                Position 0 must be given for every row (BOS).
            nfe: budget of forward passes. Position ``p0 + k`` (``p0`` = first non-given position
                of the batch) is filled from pass ``k + 1``, so non-given positions at or beyond
                ``p0 + nfe`` stay [PAD].
            sampler: ``"ancestral"`` (softmax(logits / temperature) over the top_k logits) or
                ``"greedy"`` (argmax; temperature and top_k have no effect).
            generator: the only source of randomness (must live on the model's device).
            temperature: > 0.
            top_k: keep the k largest logits (0 = the full vocabulary).

        Returns:
            :class:`Samples` with ``nfe`` = the number of forward passes made (prefill counts 1).
        """
        self.check_sampler(sampler)
        temperature, top_k = ar_options({"temperature": temperature, "top_k": top_k, **opts})
        check_nfe(nfe, "max new tokens")
        device = next(model.parameters()).device
        self.check_generator(generator, device)
        ids, given = batch_on(cond, device, model.cfg.seq_len)  # (B, L) each
        out = torch.where(given, ids, torch.full_like(ids, model.pad_id))  # (B, L) given, else PAD
        if not bool(given[:, 0].all()):
            raise InputError(
                "AR sampling needs position 0 given (the [BOS]) in every row; "
                "check the layout's cond mask"
            )
        with eval_mode(model):
            passes = _decode(
                model, ids, given, out, nfe,
                lambda logits: _draw(logits, sampler, generator, temperature, top_k),
            )
        return Samples(ids=out, nfe=passes)


def _decode(
    model: nn.Module,
    ids: torch.Tensor,
    given: torch.Tensor,
    out: torch.Tensor,
    nfe: int,
    draw: Callable[[torch.Tensor], torch.Tensor],
) -> int:
    """Fill ``out`` (B, L) left to right from ``p0`` (the batch's first non-given position) with
    at most ``nfe`` forward passes (prefill counts 1) and return how many were made.

    ``draw`` maps (B, V) logits to (B,) tokens. A given position keeps its token and opens a new
    segment; after a drawn [EOS] the rest of the segment is [PAD]. Decoding stops at the last
    position any row must fill, or (checked every :data:`EARLY_STOP_EVERY` positions, one host
    sync) once every row is done.
    """
    B, L = ids.shape
    pad, eos = model.pad_id, model.eos_id
    free = ~given  # (B, L) positions to generate
    pos = torch.arange(L, device=ids.device)
    # Per-row bookkeeping (one host sync here, none per step).
    last_given = torch.where(given, pos, -1).amax(1)  # (B,)
    last_free = torch.where(free, pos, -1).amax(1)  # (B,), -1 if the row has nothing to fill
    p0 = int(torch.where(free, pos, L).amin())  # first position any row must generate
    if p0 == L:
        return 0
    end = min(int(last_free.max()) + 1, p0 + nfe)  # positions p0 … end-1 are decoded
    cache = model.new_kv_cache(max_len=end)
    logits = model(out[:, :p0], kv_cache=cache, last_only=True)[:, -1]  # (B, V)
    passes = 1
    seg_done = torch.zeros(B, dtype=torch.bool, device=ids.device)  # EOS since last given
    done = last_free < p0  # (B,) rows that need no (more) tokens
    for j in range(p0, end):
        tok = draw(logits)  # (B,)
        g = given[:, j]
        tok = torch.where(seg_done, pad, tok)
        tok = torch.where(g, ids[:, j], tok)
        out[:, j] = tok
        hit = ~g & (tok == eos)
        seg_done = ~g & (seg_done | hit)  # a given position opens a new segment
        done = done | (hit & (j > last_given)) | (j >= last_free)
        if j + 1 == end:
            break
        if (j - p0) % EARLY_STOP_EVERY == EARLY_STOP_EVERY - 1 and bool(done.all()):
            break
        logits = model(out[:, j : j + 1], kv_cache=cache)[:, -1]  # (B, V)
        passes += 1
    return passes

def _draw(
    logits: torch.Tensor, sampler: str, generator: torch.Generator, temperature: float, top_k: int
) -> torch.Tensor:
    """One token per row from (B, V) logits: argmax, or a draw from softmax(logits/T) on the top k.

    The draw is the Gumbel-max trick, argmax_i (logit_i + G_i) with G_i = -log(-log U_i),
    U_i ~ U[0, 1): an exact sample of softmax(logits) that needs no host sync; masked logits stay
    -inf, so no NaN can arise.
    """
    if sampler == "greedy":
        return logits.argmax(-1)
    logits = logits.float() / temperature  # (B, V)
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device)  # (B, V)
    gumbel = -torch.log(-torch.log(uniform))
    return (logits + gumbel).argmax(-1)  # (B,)
