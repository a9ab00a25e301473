"""The one interface every method implements.

A method is a small object registered by name in :mod:`repro.methods`. The stages never branch on
the method's name: ``repro.train`` calls :meth:`Method.build_model` and :meth:`Method.loss`,
``repro.sample`` calls :meth:`Method.sample`, and which token layout a method trains on is
:meth:`Method.layout` (a name in :data:`repro.tokenization.LAYOUTS`).

Tensors (B = batch, L = sequence length):

* ``Batch.ids``  — (B, L) int64 token ids, the full training sequence of the layout.
* ``Batch.cond`` — (B, L) bool, True where the position is *given* (prompt / source / visible
  code / BOS) and False where the method must generate it.
* ``Samples.ids`` — (B, L) int64, the completed sequences (given positions copied unchanged).
* ``Samples.nfe`` — the exact number of network forward passes each sample received.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class Batch:
    ids: torch.Tensor  # (B, L) int64
    cond: torch.Tensor  # (B, L) bool

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.ids.to(device, non_blocking=True), self.cond.to(device, non_blocking=True)
        )


@dataclass
class Samples:
    ids: torch.Tensor  # (B, L) int64, given positions unchanged
    nfe: int  # network evaluations per sample, counted exactly
    extras: dict[str, Any] = field(default_factory=dict)


def check_model_cfg(
    where: str,
    model_cfg: dict,
    keys: dict[str, Any],
    vocab_size: int,
    required_ids: tuple[str, ...] = (),
    optional_ids: tuple[str, ...] = (),
) -> tuple[dict, dict[str, int | None]]:
    """Validate a method's ``model:`` block; return (its keys with defaults, the special ids).

    ``keys`` maps each model key to its default (``None`` = required). The special-token ids
    (``pad_id`` …) are injected by the train stage from meta.json; each must be a token id.
    Errors are :class:`~repro.io.InputError` prefixed with ``where`` and say how to fix them.
    """
    from repro.io import InputError

    allowed = set(keys) | set(required_ids) | set(optional_ids)
    unknown = sorted(set(model_cfg) - allowed)
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)} "
            "(fix the spelling or remove them)"
        )
    for key, default in keys.items():
        if default is None and key not in model_cfg:
            raise InputError(f"{where} lacks {key!r}; set model.{key}")
    for key in required_ids:
        if key not in model_cfg:
            raise InputError(
                f"{where} lacks {key!r}; the train stage must inject it from meta.json 'specials'"
            )
    ids = {key: model_cfg.get(key) for key in (*required_ids, *optional_ids)}
    for key, value in ids.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size
        ):
            raise InputError(
                f"{where}: {key} = {value!r} is not a token id in [0, vocab_size={vocab_size})"
            )
    return {key: model_cfg.get(key, default) for key, default in keys.items()}, ids


def batch_on(batch: Batch, device: torch.device, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, cond)`` of ``batch`` on ``device`` (int64, bool), checked against the model.

    Shapes must agree (B, L) — a programming error (``ValueError``) — and L must not exceed the
    ``seq_len`` the model was built for: an :class:`~repro.io.InputError` telling the user to
    tokenize with the layout the model was trained on.
    """
    from repro.io import InputError

    ids, cond = batch.ids.to(device).long(), batch.cond.to(device).bool()  # (B, L) each
    if ids.dim() != 2 or ids.shape != cond.shape:
        raise ValueError(
            f"batch ids {tuple(ids.shape)} and cond {tuple(cond.shape)} must be equal (B, L)"
        )
    if ids.shape[1] > seq_len:
        raise InputError(
            f"rows have length {ids.shape[1]} but the model was built for seq_len {seq_len}; "
            "tokenize with the layout the model was trained on"
        )
    return ids, cond


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the body (no dropout), then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class Method:
    """Base class: subclasses set ``name``/``samplers`` and implement the four methods."""

    name: ClassVar[str]
    #: sampler kinds this method implements (``sampler.kind`` in config must be one of them)
    samplers: ClassVar[tuple[str, ...]]

    def layout(self, task_kind: str) -> str:
        """Name of the token layout this method trains on for a dataset of ``task_kind``.

        Read from the method's registry entry (:data:`repro.methods.REGISTRY`), the one place the
        workflow also reads it from, so the two cannot disagree.
        """
        from repro.io import InputError
        from repro.methods import REGISTRY

        layouts = REGISTRY[self.name].layouts
        try:
            return layouts[task_kind]
        except KeyError:
            raise InputError(
                f"method {self.name!r} has no layout for task kind {task_kind!r}; "
                f"known kinds: {sorted(layouts)}"
            ) from None

    def build_model(self, model_cfg: dict, vocab_size: int, seq_len: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar training loss, exactly as the paper (or its code) defines it."""
        raise NotImplementedError

    def loss_at_t(self, model: nn.Module, batch: Batch, t: torch.Tensor) -> torch.Tensor:
        """Per-example training loss (B,) at the given times ``t`` (B,) in [0, 1] (analysis only).

        The same objective as :meth:`loss`, with the method's own time drawn as ``t`` instead of
        sampled; other noise comes from the global torch RNG, as in :meth:`loss`. What exactly is
        returned (which terms, which time axis) is documented by each implementation; the
        ``loss-vs-t`` analysis (:mod:`repro.analysis`) plots it.
        """
        raise NotImplementedError(
            f"method {self.name!r} has no loss_at_t; the loss_vs_t analysis needs it"
        )

    def sample(
        self,
        model: nn.Module,
        cond: Batch,
        nfe: int,
        sampler: str,
        generator: torch.Generator,
        **opts: Any,
    ) -> Samples:
        """Complete the non-given positions of ``cond`` with an exact NFE budget."""
        raise NotImplementedError

    def word_embeddings(self, model: nn.Module) -> torch.Tensor:
        """(V, emb_dim) word-embedding matrix of a trained model (stage ``export_embeddings``).

        Only methods that diffuse in an embedding space have one (DiffuSeq, FM-seq2seq).
        """
        from repro.io import InputError

        raise InputError(
            f"method {self.name!r} has no word-embedding matrix to export; export_embeddings "
            "takes a DiffuSeq (or embedding_fm) experiment"
        )

    def check_sampler(self, sampler: str) -> None:
        if sampler not in self.samplers:
            raise ValueError(
                f"method {self.name!r} has no sampler {sampler!r}; choose one of {list(self.samplers)}"
            )

    def check_generator(self, generator: torch.Generator, device: torch.device) -> None:
        """Raise :class:`~repro.io.InputError` unless ``generator`` lives on ``device``'s type (a
        sampler's draws come from a generator on the model's device)."""
        from repro.io import InputError

        if generator.device.type != device.type:
            raise InputError(
                f"the generator lives on {generator.device} but the model on {device}; "
                "create it with torch.Generator(device=model_device)"
            )

    def check_times(
        self, t: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``t`` of :meth:`loss_at_t` as a (B,) ``dtype`` tensor on ``ids``' device; a
        ``ValueError`` unless it has one time per row of ``ids`` (B, L), each in [0, 1]."""
        t = torch.as_tensor(t, dtype=dtype, device=ids.device)
        if t.shape != ids.shape[:1]:
            raise ValueError(f"t must have shape (B,) = ({ids.shape[0]},), got {tuple(t.shape)}")
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise ValueError("t must lie in [0, 1]")
        return t
