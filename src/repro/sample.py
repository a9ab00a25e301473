"""Stage ``sample_text``: complete the test split with a trained model; write one samples jsonl.

Usage (one Snakemake job per sampler x NFE x seed)::

    python -m repro.sample --ckpt results/train/D/EXP/model.ckpt \\
        --data results/tokenized/D/LAYOUT \\
        --tokenizer results/tokenizer/D/tokenizer.json --prepared results/data/D/test.jsonl \\
        --split test --sampler-name ancestral \\
        --sampler-json '{"kind": "ancestral", "temperature": 1.0, "top_k": 0}' --nfe 32 --seed 0 \\
        [--max-examples K] [--batch-size B] [--threads N] [--device auto|cpu|cuda] \\
        --out results/samples/D/EXP/ancestral/nfe32/seed0.jsonl

The first ``K`` rows of the split are completed in order, ``B`` at a time. The method sees only the
given positions: every non-given id is replaced by ``[PAD]`` before :meth:`Method.sample` is called.
One ``torch.Generator`` seeded with ``--seed`` drives the whole file, so the same seed (and batch
size) gives the same samples; only ``wall_seconds`` varies between runs. The sampler option
``weights`` (``raw``, ``ema0.999``, …) is not passed to the method: it picks which weights of the
checkpoint are loaded (:func:`repro.train.checkpoint.load_model`; default its main ``state_dict``). Output fields are listed in
``docs/architecture.md`` ("Samples").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.io import InputError, read_jsonl, run_stage, stage_parser, write_jsonl
from repro.methods.base import Batch
from repro.progress import BatchProgress, want_bar
from repro.tokenization.arrays import load_tokenized, read_meta
from repro.train.checkpoint import load_model
from repro.train.logs import setup_logging

log = logging.getLogger("repro.sample")


def _json_safe(extras: dict) -> dict:
    """``Samples.extras`` as JSON values: tensors and numpy scalars become Python numbers/lists."""
    out = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    json.dumps(out)  # fail here, naming nothing lost yet, rather than in write_jsonl
    return out


def _load_layout(data_dir: Path, tokenizer: Path, meta: dict) -> Any:
    """The :class:`repro.tokenization.Layout` of a tokenized directory (decode, source texts)."""
    from repro.tokenization import load_layout_from_meta

    return load_layout_from_meta(data_dir, tokenizer, meta)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def _check_compatible(ckpt: dict, meta: dict, ckpt_path: Path, data_dir: Path) -> None:
    """The checkpoint must have been trained on this tokenized layout."""
    for key in ("layout", "seq_len", "vocab_size", "tokenizer_sha256"):
        have, want = ckpt.get(key), meta.get(key)
        if have is not None and want is not None and have != want:
            raise InputError(
                f"{ckpt_path} was trained with {key}={have!r} but {data_dir}/meta.json has "
                f"{key}={want!r}; pass the tokenized directory the model was trained on"
            )


#: Fields of a normalised code row copied into its samples (repro.metrics.code runs them).
CODE_FIELDS = ("tests", "setup")


def generated_ids(row: np.ndarray, cond: np.ndarray, eos: int | None, pad: int) -> list[int]:
    """Non-given ids of a completed row, cut at the first EOS, with pads removed."""
    gen = [int(t) for t, c in zip(row, cond) if not c]
    if eos is not None and eos in gen:
        gen = gen[: gen.index(eos)]
    return [t for t in gen if t != pad]


def _sampler_options(
    sampler_cfg: Any, nfe: int, seed: int, batch_size: int, max_examples: int | None
) -> tuple[str, dict, str | None]:
    """Check the options; return the sampler kind, its options and the weights to load."""
    if not isinstance(sampler_cfg, dict) or not isinstance(sampler_cfg.get("kind"), str):
        raise InputError(
            f"--sampler-json must be an object with a 'kind' string, got {sampler_cfg!r}"
        )
    opts = {k: v for k, v in sampler_cfg.items() if k != "kind"}
    kind = sampler_cfg["kind"]
    # which weights of the checkpoint to load, not an option of the method's sampler
    weights = opts.pop("weights", None)
    if weights is not None and not isinstance(weights, str):
        raise InputError(
            f"--sampler-json weights must be a string such as 'raw' or 'ema0.9999', got {weights!r}"
        )
    for name, value, lo in (
        ("--nfe", nfe, 1),
        ("--seed", seed, 0),
        ("--batch-size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise InputError(f"{name} must be an integer >= {lo}, got {value!r}")
    if max_examples is not None and max_examples < 0:
        raise InputError(f"--max-examples must be >= 0 (0 = all rows), got {max_examples}")
    return kind, opts, weights


def _prepared_rows(
    prepared: Path, wanted: Sequence[str], split: str, data_dir: Path
) -> dict[str, dict]:
    """The prepared rows by id; every wanted id must be there."""
    rows = {r.get("id"): r for r in read_jsonl(prepared)}
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise InputError(
            f"{prepared}: no row with id {missing[0]!r} ({len(missing)} of {len(wanted)} ids "
            f"missing); pass the prepared {split}.jsonl that {data_dir} was tokenized from"
        )
    return rows


def _run_batch(
    method: Any, model: Any, ck: dict, ids: torch.Tensor, cond: torch.Tensor, pad: int,
    dev: torch.device, nfe: int, kind: str, generator: torch.Generator, opts: dict,
) -> tuple[Any, torch.Tensor, float]:
    """Sample one batch with the answer hidden; returns (samples, completed ids, seconds)."""
    hidden = torch.where(cond, ids, torch.full_like(ids, pad))  # the answer is never shown
    batch = Batch(hidden, cond).to(dev)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if dev.type == "cuda"
        else contextlib.nullcontext()
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast:
        result = method.sample(model, batch, nfe, sampler=kind, generator=generator, **opts)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    done = result.ids.detach().to("cpu", torch.int64)
    if done.shape != ids.shape:
        raise RuntimeError(
            f"method {ck['method']!r} returned ids of shape {tuple(done.shape)}, "
            f"expected {tuple(ids.shape)}"
        )
    if not torch.equal(done[cond], ids[cond]):
        raise RuntimeError(
            f"method {ck['method']!r} changed given (cond) positions while sampling"
        )
    return result, done, seconds


def _records(
    result: Any, done: np.ndarray, cond: np.ndarray, row_ids: Sequence[str],
    rows: dict[str, dict], layout: Any, eos: int | None, pad: int, fields: dict,
) -> list[dict]:
    """One output record per row of a sampled batch (``fields``: sampler, seed, wall_seconds)."""
    # how the method produced the batch (Samples.extras), converted once for all its rows
    info = {"sampler_info": _json_safe(result.extras)} if result.extras else {}
    out = []
    for j, row_id in enumerate(row_ids):
        row = rows[row_id]
        out.append(
            {
                "id": row_id,
                "source": layout.source_text(row),
                "reference": layout.reference_text(row),
                "hypothesis": layout.decode(done[j], cond[j]),
                "hypothesis_ids": generated_ids(done[j], cond[j], eos, pad),
                "sampler": fields["sampler"],
                "nfe": int(result.nfe),
                "seed": fields["seed"],
                "wall_seconds": fields["wall_seconds"],
                **info,
                # code rows: what code_exec needs to run the completed program's tests
                **{k: row[k] for k in CODE_FIELDS if k in row},
            }
        )
    return out


def sample(
    ckpt: str | os.PathLike,
    data_dir: str | os.PathLike,
    tokenizer: str | os.PathLike,
    prepared: str | os.PathLike,
    split: str,
    sampler_name: str,
    sampler_cfg: dict,
    nfe: int,
    seed: int,
    out: str | os.PathLike,
    *,
    max_examples: int | None = None,
    batch_size: int = 64,
    threads: int = 1,
    device: str = "auto",
    progress_bar: bool | None = None,
) -> int:
    """Complete the first ``max_examples`` rows of ``split`` (all if 0 or None); write ``out``.

    Logs a progress line per batch, or draws a bar (``progress_bar``; default: stderr is a
    terminal), :class:`repro.progress.BatchProgress`.

    Returns:
        The number of rows written.
    """
    ckpt_path, data_dir, prepared = Path(ckpt), Path(data_dir), Path(prepared)
    kind, opts, weights = _sampler_options(sampler_cfg, nfe, seed, batch_size, max_examples)
    torch.set_num_threads(max(int(threads), 1))
    dev = resolve_device(device)
    method, model, ck = load_model(ckpt_path, map_location=dev, weights=weights)
    try:
        method.check_sampler(kind)
    except ValueError as err:
        raise InputError(f"--sampler-json kind: {err}") from None
    meta = read_meta(data_dir)
    _check_compatible(ck, meta, ckpt_path, data_dir)
    arrays = load_tokenized(data_dir, split, meta)
    if arrays.row_ids is None:
        raise InputError(f"{data_dir}/meta.json: splits.{split}.row_ids is missing; rerun tokenize")
    n = min(max_examples, len(arrays)) if max_examples else len(arrays)
    wanted = arrays.row_ids[:n]
    rows = _prepared_rows(prepared, wanted, split, data_dir)
    layout = _load_layout(data_dir, Path(tokenizer), meta)
    specials = ck.get("specials") or {}
    pad = int(specials.get("pad", ck["model"].get("pad_id", 0)))
    eos = specials.get("eos", ck["model"].get("eos_id"))

    generator = torch.Generator(dev).manual_seed(seed)
    records: list[dict] = []
    started = time.perf_counter()
    bar = BatchProgress(n, log, bar=want_bar(progress_bar))
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        ids, cond = arrays.batch(slice(lo, hi))
        result, done, seconds = _run_batch(
            method, model, ck, ids, cond, pad, dev, nfe, kind, generator, opts
        )
        fields = {"sampler": sampler_name, "seed": seed, "wall_seconds": seconds / (hi - lo)}
        records += _records(
            result, done.numpy(), cond.numpy(), wanted[lo:hi], rows, layout, eos, pad, fields
        )
        bar.update(hi)
    written = write_jsonl(out, records)
    log.info(
        "wrote %d samples to %s (sampler=%s nfe=%d seed=%d) in %.1f s on %s",
        written,
        out,
        sampler_name,
        records[0]["nfe"] if records else nfe,
        seed,
        time.perf_counter() - started,
        dev,
    )
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = stage_parser("repro.sample", __doc__)
    p.add_argument("--ckpt", required=True, help="model.ckpt of the train_model stage")
    p.add_argument(
        "--data", required=True, help="tokenized layout directory the model was trained on"
    )
    p.add_argument("--tokenizer", required=True, help="tokenizer.json (for decoding)")
    p.add_argument("--prepared", required=True, help="prepared SPLIT.jsonl (source/reference text)")
    p.add_argument("--split", default="test")
    p.add_argument("--sampler-name", required=True, help="name recorded in the output (config key)")
    p.add_argument("--sampler-json", required=True, help='{"kind": …, other sampler options}')
    p.add_argument("--nfe", type=int, required=True, help="network-evaluation budget per sample")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--max-examples", type=int, default=0, help="first K rows (0 = all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: when stderr is a terminal; else a line per batch)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()

    def body() -> None:
        try:
            sampler_cfg = json.loads(args.sampler_json)
        except json.JSONDecodeError as err:
            raise InputError(f"--sampler-json is not valid JSON ({err})") from None
        sample(
            args.ckpt,
            args.data,
            args.tokenizer,
            args.prepared,
            args.split,
            args.sampler_name,
            sampler_cfg,
            args.nfe,
            args.seed,
            args.out,
            max_examples=args.max_examples,
            batch_size=args.batch_size,
            threads=args.threads,
            device=args.device,
            progress_bar=args.progress,
        )

    return run_stage(body, log)


if __name__ == "__main__":
    sys.exit(main())
