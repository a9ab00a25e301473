"""Checkpoint I/O: atomic, byte-reproducible saves and the one loader of a trained model.

``model.ckpt`` (format :data:`CKPT_FORMAT`, written once training is complete) is a dict:
``method``, ``model`` (its cfg, specials filled in), ``train``, ``vocab_size``, ``seq_len``,
``layout``, ``state_dict`` (the weights named by ``weights``: ``raw``, ``ema`` or
``ema<decay>``), optionally ``alt_state_dicts`` (every set of weights when ``train.ema`` lists
several decays), ``step``, ``val_loss``, ``specials`` and ``tokenizer_sha256``.
:func:`load_model` rebuilds the method and model from it for sampling, analysis and export.
Lightning's resumable ``_work/last.ckpt`` is saved through :func:`atomic_checkpoint_io`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro import methods
from repro.io import InputError, atomic_path
from repro.methods.base import Method

CKPT_FORMAT = "repro.ckpt.v1"


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`repro.io.atomic_path`).

    Saved through a file object, not the temporary's name: ``torch.save`` names the zip's records
    after the file it is given, so a random temporary name would make identical checkpoints differ
    byte for byte. The records are named ``archive/…`` instead, and identical contents give an
    identical file (users can compare checkpoints by sha256).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def atomic_checkpoint_io() -> Any:
    """A Lightning ``CheckpointIO`` whose saves are atomic, with :func:`save_torch`.

    Lightning's own saves (the periodic ``last.ckpt`` of ``ModelCheckpoint`` included) go through
    fsspec, which writes a temporary in the system temp directory and *copies* it over the target
    when that is another filesystem (the usual case on a cluster): a kill during the copy leaves a
    truncated ``last.ckpt``. Here the new file is written beside the target and renamed over it
    once complete, so the previous one stays until then.
    """
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(
            self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
        ) -> None:
            if storage_options is not None:
                raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
            save_torch(checkpoint, path)

    return AtomicCheckpointIO()



def final_checkpoint(module: Any, run: Any, model_cfg: dict, meta: dict, step: int) -> dict:
    """The ``model.ckpt`` dict of a completed run (``module``: its
    :class:`~repro.train.module.TrainModule`, ``run``: its :class:`~repro.train.config.RunConfig`).
    """
    tc = run.train
    weights = module.weights_name()
    alt = module.alt_state_dicts() if isinstance(tc.ema, tuple) else None
    # with alternates the main state_dict is the same tensors as one alternate: torch.save
    # writes shared storage once, so the file holds each set of weights once
    state_dict = module.final_state_dict() if alt is None else dict(alt[weights])
    ckpt = {
        "format": CKPT_FORMAT,
        "method": run.method,
        "model": model_cfg,
        "train": tc.to_dict(),
        "vocab_size": int(meta["vocab_size"]),
        "seq_len": int(meta["seq_len"]),
        "layout": meta["layout"],
        "state_dict": state_dict,
        "weights": weights,
        "step": step,
        "val_loss": module.val_loss,
        "specials": dict(meta["specials"]),
        "tokenizer_sha256": meta.get("tokenizer_sha256"),
    }
    if alt is not None:
        ckpt["alt_state_dicts"] = alt
    return ckpt


def load_model(
    ckpt_path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    weights: str | None = None,
) -> tuple[Method, nn.Module, dict]:
    """Rebuild the method and model of a ``model.ckpt``: eval mode, on ``map_location``.

    ``weights`` picks the weights to load: ``None`` or the checkpoint's ``weights`` name means
    its main ``state_dict``; otherwise a key of ``alt_state_dicts`` (``raw``, ``ema0.999``, …),
    which runs trained with ``train.ema`` as a list of decays have.
    """
    path = Path(ckpt_path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found; run the train_model stage first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means a bad or foreign file
        raise InputError(
            f"{path}: not a readable torch checkpoint ({err}); retrain to recreate it"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(
            f"{path}: expected format {CKPT_FORMAT!r}, got {got!r}; retrain to recreate it"
        )
    state_dict = _pick_weights(ckpt, weights, path)
    method = methods.get_method(ckpt["method"])
    model = method.build_model(
        dict(ckpt["model"]), vocab_size=ckpt["vocab_size"], seq_len=ckpt["seq_len"]
    )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise InputError(
            f"{path}: weights do not fit method {ckpt['method']!r}'s model ({err})"
        ) from err
    model.to(map_location).eval()
    return method, model, ckpt


def _pick_weights(ckpt: dict, weights: str | None, path: Path) -> dict[str, torch.Tensor]:
    main = ckpt.get("weights")
    if weights is None or weights == main:
        return ckpt["state_dict"]
    alt = ckpt.get("alt_state_dicts") or {}
    if isinstance(weights, str) and weights in alt:
        return alt[weights]
    available = sorted({main, *alt} - {None})
    hint = (
        ""
        if alt
        else "; alternate weights (raw, ema<decay>) exist only for runs trained with train.ema "
        "as a list of decays, e.g. ema: [0.999, 0.9999]"
    )
    raise InputError(f"{path}: no weights {weights!r}; available: {available}{hint}")
