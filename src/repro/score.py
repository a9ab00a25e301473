"""Stage ``score_samples``: one samples file in, one scores JSON out (docs/architecture.md).

Usage::

    python -m repro.score --samples results/samples/qqp/fm/euler/nfe1/seed0.jsonl \\
        --metrics-json '{"bleu": {"kind": "sentence_bleu_nltk", "clean": "diffuseq"}}' \\
        --out results/scores/qqp/fm/euler/nfe1/seed0.json

The scores JSON holds ``samples`` (the path read), ``n``, ``ids`` (the samples' ids in file
order, which every ``per_example`` list follows), ``metrics`` (per config key: ``kind``,
``options`` with defaults filled in, ``value``, ``variant``, ``per_example``, ``details``) and
``provenance`` (repro and metric package versions). Metric kinds live in :mod:`repro.metrics`.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from repro import __version__
from repro.io import InputError, atomic_write_json, json_object_arg, read_jsonl
from repro.metrics import METRICS, compute_metric, metric_options, parse_metric_config
from repro.metrics.base import check_fields, package_version

log = logging.getLogger("repro.score")

#: distributions whose versions are recorded with every scores file
PROVENANCE_PACKAGES = ("nltk", "sacrebleu", "rouge-score", "torchmetrics", "torch", "numpy")


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


def provenance() -> dict[str, Any]:
    return {
        "repro": __version__,
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in PROVENANCE_PACKAGES},
    }


def score(samples_path: str | os.PathLike, metrics_cfg: dict, out: str | os.PathLike) -> dict:
    """Score ``samples_path`` with every metric of ``metrics_cfg``; write and return the JSON."""
    # An empty object is valid: the tables reading this file ask only for metric kinds that are
    # not implemented yet (the workflow leaves those out); the scores then hold no metric.
    if not isinstance(metrics_cfg, dict):
        raise InputError(
            "metrics config: expected an object {name: {kind: ..., <options>}}, "
            f"got {metrics_cfg!r}"
        )
    parsed = {name: parse_metric_config(name, cfg) for name, cfg in metrics_cfg.items()}
    fields = {"id", "hypothesis"}
    for kind, _ in parsed.values():
        fields.update(METRICS[kind].fields)
    rows = read_samples(samples_path, tuple(sorted(fields)))

    metrics: dict[str, Any] = {}
    for name, (kind, options) in parsed.items():
        start = time.perf_counter()
        try:
            result = compute_metric(kind, rows, **options)
        except InputError as err:
            raise InputError(f"{samples_path}: metric {name!r}: {err}") from None
        log.info(
            "%s [%s] = %s over %d samples (%.1f s)",
            name,
            kind,
            result.value,
            len(rows),
            time.perf_counter() - start,
        )
        metrics[name] = {
            "kind": kind,
            "options": {**metric_options(kind), **options},
            "value": result.value,
            "variant": result.variant,
            "per_example": result.per_example,
            "details": result.details,
        }
    scores = {
        "samples": str(samples_path),
        "n": len(rows),
        "ids": [row["id"] for row in rows],
        "metrics": metrics,
        "provenance": provenance(),
    }
    atomic_write_json(out, scores)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.score", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", required=True, help="samples JSON Lines file")
    parser.add_argument(
        "--metrics-json",
        required=True,
        help='metrics config as JSON: {"name": {"kind": KIND, <options>}, ...}',
    )
    parser.add_argument("--out", required=True, help="scores JSON to write (atomically)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        score(args.samples, json_object_arg(args.metrics_json, "--metrics-json"), args.out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
