"""Analyses of trained models beyond sampling; one sub-command per analysis.

``loss-vs-t`` (FM-seq2seq Fig. 8: the training loss on validation data across t ∈ [0, 1])::

    python -m repro.analysis loss-vs-t --ckpt results/train/D/EXP/model.ckpt \\
        --data results/tokenized/D/LAYOUT --split validation --bins 21 --max-examples 256 \\
        --batch-size 64 --seed 0 [--t-max 1.0] [--threads N] [--device auto|cpu|cuda] \\
        [--weights NAME] --out results/analysis/D/EXP/loss_vs_t.json

The first ``--max-examples`` rows of the split (0 = all) are read ``--batch-size`` at a time, with
their full ids (the loss needs the targets). At each of ``--bins`` times
t = linspace(0, t_max, bins) (``--t-max``, default 1) the method's
:meth:`~repro.methods.base.Method.loss_at_t` gives one loss per example; the output holds, per t,
the mean over examples and their (population, ddof 0) standard deviation. What the
loss is and which way t runs is the method's: ``embedding_fm`` returns its velocity MSE averaged
over all positions of both halves (t = 0 noise, t = 1 data; exactly the training loss without
the ``embeddings: trained`` rounding CE); ``diffuseq`` its MSE term at diffusion step
round(t·(T−1)) (t = 0 data, t = 1 noise).

FM's endpoint t = 1 is degenerate and never trained on (training draws t ~ U[0, 1)): there
x_t = x₁ carries nothing of the noise z, so the target velocity x₁ − z is unpredictable on the
generated half and the loss is at least E[z²] × (generated fraction of positions) ≈ 0.5 for the
``halves`` layout, whatever the model. The last point of a t ∈ [0, 1] curve therefore jumps up;
``--t-max`` below 1 (e.g. 0.95) keeps the grid inside the trained range.

Noise: a CPU ``torch.Generator`` seeded with ``--seed`` draws one seed per batch; before
each t the global torch RNG (where the methods draw their training noise) is reseeded with the
batch's seed inside :func:`torch.random.fork_rng`, so every t of a batch sees the *same* noise
(the curve's shape is not blurred by fresh noise per t) and the caller's RNG state is untouched.
Results therefore depend on ``--seed`` and ``--batch-size``; the same pair gives the same file
on the same device. The network runs in float32 (no autocast) under ``torch.inference_mode()``.

Output (JSON, written atomically)::

    {"t": [...], "loss": [...], "loss_std": [...], "n_examples": N, "method": "embedding_fm",
     "checkpoint": "results/train/.../model.ckpt", "seed": 0, "split": "validation",
     "batch_size": 64, "weights": "ema", "step": 100000}

Input errors (missing files, an unknown split, a method without ``loss_at_t``, bad options) are
printed and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.io import InputError, atomic_write_json, run_stage, stage_parser
from repro.methods.base import Batch, Method
from repro.sample import _check_compatible, resolve_device
from repro.tokenization.arrays import load_tokenized, read_meta
from repro.train.checkpoint import load_model
from repro.train.logs import setup_logging

log = logging.getLogger("repro.analysis")


def _int_option(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def _check_options(
    bins: int, t_max: float, max_examples: int | None, batch_size: int, seed: int, split: str
) -> None:
    _int_option("--bins", bins, 2)
    _int_option("--batch-size", batch_size, 1)
    _int_option("--seed", seed, 0)
    if max_examples is not None:
        _int_option("--max-examples", max_examples, 0)
    if isinstance(t_max, bool) or not isinstance(t_max, int | float) or not 0 < t_max <= 1:
        raise InputError(f"--t-max must be a number in (0, 1], got {t_max!r}")
    if not isinstance(split, str) or not split or "/" in split or "\\" in split:
        raise InputError(f"--split must be a split name such as 'validation', got {split!r}")


def _batch_losses(
    method: Method, model: torch.nn.Module, batch: Batch, ts: np.ndarray, batch_seed: int,
    rng_devices: list[int], ckpt_path: Path,
) -> np.ndarray:
    """(bins, B) float64 losses of one batch, every t under the same noise (``batch_seed``)."""
    size = batch.ids.shape[0]
    out = np.empty((len(ts), size), dtype=np.float64)
    for k, t_value in enumerate(ts):
        t = torch.full((size,), float(t_value), device=batch.ids.device)
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(batch_seed)
            try:
                per = method.loss_at_t(model, batch, t)
            except NotImplementedError as err:
                raise InputError(f"{ckpt_path}: {err}") from None
        per = per.detach().to("cpu", torch.float64).reshape(-1)
        if per.shape[0] != size:
            raise RuntimeError(
                f"method {method.name!r}: loss_at_t returned {tuple(per.shape)} values "
                f"for a batch of {size}"
            )
        out[k] = per.numpy()
    return out


def _losses(
    method: Method, model: torch.nn.Module, arrays: Any, n: int, ts: np.ndarray,
    batch_size: int, seed: int, dev: torch.device, ckpt_path: Path,
) -> np.ndarray:
    """(bins, n) losses of the first ``n`` rows, ``batch_size`` at a time (module docstring)."""
    losses = np.empty((len(ts), n), dtype=np.float64)
    seeds = torch.Generator().manual_seed(seed)
    rng_devices = (
        [dev.index if dev.index is not None else torch.cuda.current_device()]
        if dev.type == "cuda"
        else []
    )
    model.eval()
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            ids, cond = arrays.batch(slice(lo, hi))
            batch = Batch(ids, cond).to(dev)
            batch_seed = int(torch.randint(1 << 62, (), generator=seeds))
            losses[:, lo:hi] = _batch_losses(
                method, model, batch, ts, batch_seed, rng_devices, ckpt_path
            )
    return losses


def loss_vs_t(
    ckpt: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str,
    out: str | os.PathLike,
    *,
    bins: int = 21,
    t_max: float = 1.0,
    max_examples: int | None = 256,
    batch_size: int = 64,
    seed: int = 0,
    threads: int = 1,
    device: str = "auto",
    weights: str | None = None,
) -> dict:
    """Evaluate the loss at ``bins`` evenly spaced t in [0, t_max]; write and return the record."""
    ckpt_path, data_dir = Path(ckpt), Path(data_dir)
    _check_options(bins, t_max, max_examples, batch_size, seed, split)
    torch.set_num_threads(max(int(threads), 1))
    dev = resolve_device(device)
    method, model, ck = load_model(ckpt_path, map_location=dev, weights=weights)
    if type(method).loss_at_t is Method.loss_at_t:
        raise InputError(
            f"{ckpt_path}: method {method.name!r} has no loss_at_t; the loss_vs_t analysis needs it"
        )
    meta = read_meta(data_dir)
    _check_compatible(ck, meta, ckpt_path, data_dir)
    arrays = load_tokenized(data_dir, split, meta)
    n = min(max_examples, len(arrays)) if max_examples else len(arrays)

    ts = np.linspace(0.0, float(t_max), bins)  # float64; both ends exact
    started = time.perf_counter()
    losses = _losses(method, model, arrays, n, ts, batch_size, seed, dev, ckpt_path)
    record = {
        "t": [float(x) for x in ts],
        "loss": [float(x) for x in losses.mean(axis=1)],
        "loss_std": [float(x) for x in losses.std(axis=1)],
        "n_examples": int(n),
        "method": method.name,
        "checkpoint": str(ckpt_path),
        "seed": seed,
        "split": split,
        "batch_size": batch_size,
        "weights": weights if weights is not None else ck.get("weights"),
        "step": ck.get("step"),
    }
    if not np.isfinite(losses).all():
        log.warning("non-finite losses in %s (checkpoint %s)", out, ckpt_path)
    atomic_write_json(out, record)
    log.info(
        "loss vs t of %s (%s) on %d %s rows, %d bins: %.3g at t=0, %.3g at t=%g, in %.1f s; "
        "wrote %s",
        ckpt_path,
        method.name,
        n,
        split,
        bins,
        record["loss"][0],
        record["loss"][-1],
        record["t"][-1],
        time.perf_counter() - started,
        out,
    )
    return record


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = stage_parser("repro.analysis", __doc__)
    sub = p.add_subparsers(dest="analysis", required=True)
    q = sub.add_parser("loss-vs-t", help="training loss on a split across t in [0, 1] (Fig. 8)")
    q.add_argument("--ckpt", required=True, help="model.ckpt of the train_model stage")
    q.add_argument(
        "--data", required=True, help="tokenized layout directory the model was trained on"
    )
    q.add_argument("--split", default="validation")
    q.add_argument("--bins", type=int, default=21, help="evenly spaced t, ends included")
    q.add_argument("--t-max", type=float, default=1.0, help="last t of the grid (default 1)")
    q.add_argument("--max-examples", type=int, default=256, help="first K rows (0 = all)")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    q.add_argument("--weights", default=None, help="weights to load (passed to load_model)")
    q.add_argument("--out", required=True, help="results/analysis/D/EXP/loss_vs_t.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    return run_stage(
        lambda: loss_vs_t(
            args.ckpt,
            args.data,
            args.split,
            args.out,
            bins=args.bins,
            t_max=args.t_max,
            max_examples=args.max_examples,
            batch_size=args.batch_size,
            seed=args.seed,
            threads=args.threads,
            device=args.device,
            weights=args.weights,
        ),
        log,
    )

if __name__ == "__main__":
    sys.exit(main())
