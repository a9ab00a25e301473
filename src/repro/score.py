"""Stages ``score_samples`` / ``score_group``: samples file(s) in, one scores JSON out.

Usage (docs/architecture.md)::

    python -m repro.score --samples results/samples/qqp/fm/euler/nfe1/seed0.jsonl \\
        --metrics-json '{"bleu": {"kind": "sentence_bleu_nltk", "clean": "diffuseq"}}' \\
        --out results/scores/qqp/fm/euler/nfe1/seed0.json

    python -m repro.score --samples …/seed0.jsonl …/seed1.jsonl …/seed2.jsonl \\
        --metrics-json '{"self_bleu": {"kind": "self_bleu"}, "div_4": {"kind": "div_4"}}' \\
        --out results/scores/qqp/diffuseq/ddpm/nfe2000/group3.json

With one samples file every requested kind must be a per-file metric; with k > 1 files (one per
seed, the same sources) every kind must be a group metric (:data:`repro.metrics.GROUP_METRICS`)
and the files' rows are aligned by ``id`` to the first file's order (:func:`align_by_id`). The
order of the files matters where a group metric says so (self-BLEU's i < j pairs).

The scores JSON holds ``samples`` (the path read; for a group, the list of paths in the order
given, plus ``group_size`` = k), ``n`` (samples; for a group, sources), ``ids`` (the ids in the
(first) file's order, which every ``per_example`` list follows), ``metrics`` (per config key:
``kind``, ``options`` with defaults filled in, ``value``, ``variant``, ``per_example``,
``details``) and ``provenance`` (repro and metric package versions). Metric kinds live in
:mod:`repro.metrics`.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro import __version__
from repro.io import (
    InputError,
    atomic_write_json,
    id_difference,
    json_object_arg,
    log_to_stderr,
    read_jsonl,
    run_cli,
    stage_parser,
)
from repro.metrics import (
    GROUP_METRICS,
    METRICS,
    compute_group_metric,
    compute_metric,
    metric_options,
    parse_metric_config,
)
from repro.metrics.base import MetricResult, check_fields, package_version

log = logging.getLogger("repro.score")

#: distributions whose versions are recorded with every scores file
PROVENANCE_PACKAGES = (
    "nltk",
    "sacrebleu",
    "rouge-score",
    "torchmetrics",
    "torch",
    "numpy",
    "bert-score",
    "transformers",
)


def _nonblank_line_numbers(path: Path) -> list[int]:
    """1-based numbers of the non-blank lines: row i of ``read_jsonl`` is on line [i]."""
    with open(path, encoding="utf-8") as fh:
        return [n for n, line in enumerate(fh, start=1) if line.strip()]


def read_samples(path: str | os.PathLike, fields: tuple[str, ...]) -> list[dict]:
    """Read a samples file and check every row has ``fields``; errors name ``file:line``."""
    path = Path(path)
    rows = read_jsonl(path)
    if not rows:
        raise InputError(
            f"{path}: no samples (the file is empty); re-run the sample_text job that wrote it"
        )
    lines = _nonblank_line_numbers(path)
    check_fields(rows, fields, where=lambda i: f"{path}:{lines[i]}")
    return rows


def align_by_id(named: Sequence[tuple[str, list[dict]]]) -> list[list[dict]]:
    """Reorder the rows of every ``(path, rows)`` to the first one's id order.

    Every file must hold the same ids, each once; errors name the offending file and the fix.
    """
    ref_path, ref_rows = named[0]
    ref_ids = [row["id"] for row in ref_rows]
    aligned = []
    for path, rows in named:
        ids = [row["id"] for row in rows]
        position = {x: k for k, x in enumerate(ids)}
        if len(position) != len(ids):
            dup = sorted({x for x in ids if ids.count(x) > 1})[:3]
            raise InputError(
                f"{path}: duplicated sample ids, e.g. {dup}; each source must appear once per "
                "samples file — re-run the sample_text job that wrote it"
            )
        if ids == ref_ids:
            aligned.append(rows)
            continue
        if set(ids) != set(ref_ids):
            raise InputError(
                f"{path}: its sample ids differ from {ref_path} (n = {len(ids)} vs "
                f"{len(ref_ids)}; {id_difference(ids, ref_ids)}); the samples files "
                "of one group must hold the same sources (seeds of one sampling run)"
            )
        aligned.append([rows[position[x]] for x in ref_ids])
    return aligned


def read_aligned(paths: Sequence[str | os.PathLike], fields: tuple[str, ...]) -> list[list[dict]]:
    """Read k samples files (checking ``fields`` and ``id``) and align their rows by id."""
    seen: dict[str, int] = {}
    for j, p in enumerate(paths):
        key = os.path.realpath(p)
        if key in seen:
            raise InputError(
                f"{p}: given twice (positions {seen[key]} and {j}); pass each seed's samples "
                "file once"
            )
        seen[key] = j
    fields = tuple(sorted(set(fields) | {"id"}))
    return align_by_id([(str(p), read_samples(p, fields)) for p in paths])


def provenance() -> dict[str, Any]:
    return {
        "repro": __version__,
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in PROVENANCE_PACKAGES},
    }


def _entry(kind: str, options: dict, result: MetricResult) -> dict[str, Any]:
    return {
        "kind": kind,
        "options": {**metric_options(kind), **options},
        "value": result.value,
        "variant": result.variant,
        "per_example": result.per_example,
        "details": result.details,
    }


def _check_sorts(parsed: dict[str, tuple[str, dict]], k: int) -> None:
    """One file: per-file kinds only; k > 1 files: group kinds only."""
    for name, (kind, _) in parsed.items():
        if k == 1 and kind in GROUP_METRICS:
            raise InputError(
                f"metric {name!r} (kind {kind!r}) is a group metric over k >= 2 samples files of "
                "the same sources (one per seed); pass them all to --samples, e.g. --samples "
                "seed0.jsonl seed1.jsonl seed2.jsonl"
            )
        if k > 1 and kind not in GROUP_METRICS:
            raise InputError(
                f"metric {name!r} (kind {kind!r}) scores one samples file; with {k} files only "
                f"group metrics ({', '.join(sorted(GROUP_METRICS))}) can be computed — score "
                "each file on its own"
            )


def score(
    samples_path: str | os.PathLike | Sequence[str | os.PathLike],
    metrics_cfg: dict,
    out: str | os.PathLike,
) -> dict:
    """Score the samples file(s) with every metric of ``metrics_cfg``; write and return the JSON.

    ``samples_path`` is one path (per-file metrics) or a list of k paths: k = 1 is one file,
    k > 1 a group (group metrics only, rows aligned by id; see the module docstring).
    """
    # An empty object is valid: the tables reading this file ask only for metric kinds that are
    # not implemented yet (the workflow leaves those out); the scores then hold no metric.
    if not isinstance(metrics_cfg, dict):
        raise InputError(
            "metrics config: expected an object {name: {kind: ..., <options>}}, "
            f"got {metrics_cfg!r}"
        )
    if isinstance(samples_path, str | os.PathLike):
        paths = [samples_path]
    else:
        paths = list(samples_path)
        if not paths:
            raise InputError("no samples file given (--samples needs at least one path)")
    k = len(paths)
    parsed = {name: parse_metric_config(name, cfg) for name, cfg in metrics_cfg.items()}
    _check_sorts(parsed, k)
    fields = {"id", "hypothesis"}
    for kind, _ in parsed.values():
        fields.update(METRICS[kind].fields)

    if k == 1:
        rows = read_samples(paths[0], tuple(sorted(fields)))
        where, n_rows, ids = str(paths[0]), len(rows), [row["id"] for row in rows]
    else:
        groups = read_aligned(paths, tuple(sorted(fields)))
        where = f"samples group {[str(p) for p in paths]}"
        n_rows, ids = len(groups[0]), [row["id"] for row in groups[0]]

    metrics: dict[str, Any] = {}
    for name, (kind, options) in parsed.items():
        start = time.perf_counter()
        try:
            if k == 1:
                result = compute_metric(kind, rows, **options)
            else:
                result = compute_group_metric(kind, groups, **options)
        except InputError as err:
            raise InputError(f"{where}: metric {name!r}: {err}") from None
        log.info(
            "%s [%s] = %s over %d %s (%.1f s)",
            name,
            kind,
            result.value,
            n_rows,
            "samples" if k == 1 else f"sources x {k} samples",
            time.perf_counter() - start,
        )
        metrics[name] = _entry(kind, options, result)
    scores: dict[str, Any] = {"samples": str(paths[0]) if k == 1 else [str(p) for p in paths]}
    if k > 1:
        scores["group_size"] = k
    scores.update({"n": n_rows, "ids": ids, "metrics": metrics, "provenance": provenance()})
    atomic_write_json(out, scores)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("repro.score", __doc__)
    parser.add_argument(
        "--samples",
        required=True,
        nargs="+",
        help="samples JSON Lines file; or k > 1 files (one per seed) for group metrics",
    )
    parser.add_argument(
        "--metrics-json",
        required=True,
        help='metrics config as JSON: {"name": {"kind": KIND, <options>}, ...}',
    )
    parser.add_argument("--out", required=True, help="scores JSON to write (atomically)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads of model-based metrics (torch, Rust tokenizers); 0 = their defaults",
    )
    args = parser.parse_args(argv)
    log_to_stderr()
    if args.threads > 0:  # the job's share of the cores: two 1-thread jobs must not each take all
        # Environment, read when torch / the Rust tokenizers start their pools: importing torch
        # here would cost every scoring job its memory, also those with no model-based metric
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        if "torch" in sys.modules:  # a warm worker (repro.warm) imported torch already
            sys.modules["torch"].set_num_threads(args.threads)
    # disk full …: the error names the scores file; the old one is kept
    return run_cli(
        lambda: score(args.samples, json_object_arg(args.metrics_json, "--metrics-json"), args.out)
    )


if __name__ == "__main__":
    sys.exit(main())
