"""Stage ``export_embeddings``: a trained model's word-embedding matrix → ``.npy`` for FM-seq2seq.

FM-seq2seq flows in the embedding space DiffuSeq learned on QQP and keeps it frozen (methods.md
§2.2: "E ∈ R^{30522×128}: DiffuSeq's trained QQP word-embedding matrix, exported to .npy …
regenerate from a DiffuSeq checkpoint's word_embedding.weight; EMA weights"). This stage is that
edge of the DAG::

    python -m repro.export_embeddings --ckpt results/train/qqp/diffuseq/model.ckpt \\
        --out results/embeddings/qqp/diffuseq/embeddings.npy

The checkpoint's main weights are used: for a DiffuSeq trained with ``ema`` those are the EMA
weights, as FM-seq2seq's export took them (``--weights`` picks another stored set, e.g. ``raw``).
Beside the ``.npy`` (float32, shape (V, emb_dim)) a ``.json`` records where it came from.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from repro.io import InputError, atomic_write_bytes, atomic_write_json, run_stage, stage_parser
from repro.train.checkpoint import load_model
from repro.train.logs import setup_logging

log = logging.getLogger("repro.export_embeddings")


def export_embeddings(
    ckpt: str | Path, out: str | Path, weights: str | None = None
) -> tuple[int, int]:
    """Write the (V, emb_dim) float32 matrix of ``ckpt`` to ``out``; return its shape."""
    ckpt, out = Path(ckpt), Path(out)
    if out.suffix != ".npy":
        raise InputError(f"--out {out}: the embedding matrix is written as a .npy file")
    method, model, meta = load_model(ckpt, map_location="cpu", weights=weights)
    matrix = method.word_embeddings(model).float().cpu().numpy()
    if matrix.ndim != 2 or matrix.shape[0] != int(meta["vocab_size"]):
        raise InputError(
            f"{ckpt}: word embeddings of shape {matrix.shape} do not have one row per token "
            f"(vocab_size {meta['vocab_size']})"
        )
    if not np.isfinite(matrix).all():
        raise InputError(f"{ckpt}: the word-embedding matrix holds non-finite values")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)
    data = buf.getvalue()
    atomic_write_bytes(out, data)
    atomic_write_json(
        out.with_suffix(".json"),
        {
            "checkpoint": str(ckpt),
            "method": meta["method"],
            "weights": weights or meta.get("weights"),
            "shape": list(matrix.shape),
            "sha256": hashlib.sha256(data).hexdigest(),
            "tokenizer_sha256": meta.get("tokenizer_sha256"),
            "step": meta.get("step"),
        },
    )
    log.info("exported %s word embeddings %s from %s to %s", meta["method"], matrix.shape, ckpt, out)
    return matrix.shape[0], matrix.shape[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = stage_parser("repro.export_embeddings", __doc__)
    p.add_argument("--ckpt", required=True, help="model.ckpt of a DiffuSeq (or embedding_fm) run")
    p.add_argument("--out", required=True, help="embeddings.npy to write")
    p.add_argument("--weights", default=None, help="stored weights to use (default: the main)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    return run_stage(lambda: export_embeddings(args.ckpt, args.out, args.weights), log)


if __name__ == "__main__":
    sys.exit(main())
