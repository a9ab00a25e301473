"""Stage ``make_table``: a long CSV of ours beside the paper's value, plus a wide Markdown view.

Usage::

    python -m repro.report.tables --spec-json JSON --paper-values config/paper_values/table3.csv \\
        --out results/tables/table3.csv        # also writes results/tables/table3.md

The spec (resolved by the workflow from the config's table catalogue; ``@file.json`` also works)::

    {"name": "table3", "title": "...", "source": "KL-flow arXiv Table 3",
     "columns": [{"label": "BLEU Top-5", "metric": "bleu_klflow", "aggregate": "best_of_seeds",
                  "scale": 1.0}, ...],
     "rows": [{"label": "Lamini Instruction / Autoregressive", "dataset": "lamini",
               "experiment": "ar", "method": "ar", "sampler": "ancestral", "nfe": 512,
               "seeds": [0, 1], "scores": ["results/scores/.../seed0.json", ...]}, ...]}

``metric`` is a metrics-config key of the scores files; ``aggregate`` one of
:data:`repro.report.AGGREGATES` (default ``mean``; ``pass_at_k`` takes ``k``); ``scale``
multiplies ours (not the paper's value, which the CSV gives on the paper's scale). A column whose
metric a row's scores lack (a metric not implemented yet) and a row without score files are
skipped with a warning. The paper's value is matched on row label + column label (+ NFE where
the paper-values CSV gives one).
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.io import InputError, atomic_path, atomic_write_text
from repro.report import (
    PaperValue,
    aggregate,
    load_cell,
    match_paper,
    read_paper_values,
    read_scores,
    require,
    spec_main,
)

log = logging.getLogger("repro.report.tables")

CSV_COLUMNS = (
    "table", "row", "dataset", "experiment", "method", "sampler", "nfe", "column", "metric",
    "variant", "aggregate", "ours", "ours_std", "n_seeds", "n_examples", "paper", "paper_source",
)  # fmt: skip


@dataclass
class Column:
    label: str
    metric: str
    aggregate: str = "mean"
    scale: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)  # e.g. k of pass_at_k


def _parse_columns(spec: dict) -> list[Column]:
    columns = []
    for i, c in enumerate(require(spec, "columns", list, "table spec")):
        where = f"table spec columns[{i}]"
        if not isinstance(c, dict):
            raise InputError(f"{where}: expected an object")
        scale = c.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise InputError(f"{where}: 'scale' must be a number, got {scale!r}")
        extra = {k: v for k, v in c.items() if k not in ("label", "metric", "aggregate", "scale")}
        columns.append(
            Column(
                label=require(c, "label", str, where),
                metric=require(c, "metric", str, where),
                aggregate=c.get("aggregate", "mean"),
                scale=float(scale),
                options=extra,
            )
        )
    return columns


def _parse_rows(spec: dict) -> list[dict]:
    rows = require(spec, "rows", list, "table spec")
    for i, r in enumerate(rows):
        where = f"table spec rows[{i}]"
        if not isinstance(r, dict):
            raise InputError(f"{where}: expected an object")
        require(r, "label", str, where)
        scores = r.get("scores", [])
        if not isinstance(scores, list) or not all(isinstance(p, str) for p in scores):
            raise InputError(f"{where}: 'scores' must be a list of scores-file paths")
        by_col = r.get("scores_by_column", {})
        if not isinstance(by_col, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in by_col.values()
        ):
            raise InputError(
                f"{where}: 'scores_by_column' must map column labels to lists of scores-file paths"
            )
        seeds = r.get("seeds")
        if seeds is not None and len(seeds) != len(scores) and scores:
            raise InputError(
                f"{where}: {len(seeds)} seeds but {len(scores)} scores files; give one file per seed"
            )
        nfe = r.get("nfe")
        if nfe is not None and (isinstance(nfe, bool) or not isinstance(nfe, int)):
            raise InputError(f"{where}: 'nfe' must be an integer or null, got {nfe!r}")
    return rows


def _num(x: float | int | None) -> str:
    return "" if x is None else repr(x)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def build_table(spec: dict, paper: list[PaperValue]) -> tuple[list[dict], list[str]]:
    """The long-CSV records of ``spec`` and the notes (skips) for the Markdown view."""
    name = spec.get("name", "table")
    columns = _parse_columns(spec)
    rows = _parse_rows(spec)
    records: list[dict] = []
    notes: list[str] = []
    for row in rows:
        # A column may read other files than the row's seeds: the MBR selection (quality columns
        # of an MBR row) or the group of seeds a diversity metric is computed over.
        paths = row.get("scores", [])
        by_col = row.get("scores_by_column", {})
        if not paths and not by_col:
            msg = f"row {row['label']!r} (nfe {row.get('nfe')}): no score files, skipped"
            log.warning("%s: %s", name, msg)
            notes.append(msg)
            continue
        read: dict[str, dict] = {}
        for col in columns:
            cpaths = by_col.get(col.label, paths)
            files = [read[p] if p in read else read.setdefault(p, read_scores(p)) for p in cpaths]
            cell = load_cell(cpaths, col.metric, files)
            if cell is None:
                msg = (
                    f"row {row['label']!r} (nfe {row.get('nfe')}), column {col.label!r}: metric "
                    f"{col.metric!r} is not in every scores file, skipped"
                )
                log.warning("%s: %s", name, msg)
                notes.append(msg)
                continue
            try:
                agg = aggregate(cell, col.aggregate, **col.options)
            except InputError as err:
                raise InputError(f"table {name!r}, column {col.label!r}: {err}") from None
            if agg is None:
                msg = f"row {row['label']!r}, column {col.label!r}: no defined value, skipped"
                log.warning("%s: %s", name, msg)
                notes.append(msg)
                continue
            pv = match_paper(paper, row["label"], col.label, row.get("nfe"))
            records.append(
                {
                    "table": name,
                    "row": row["label"],
                    "dataset": row.get("dataset", ""),
                    "experiment": row.get("experiment", ""),
                    "method": row.get("method", ""),
                    "sampler": row.get("sampler", ""),
                    "nfe": row.get("nfe"),
                    "column": col.label,
                    "metric": col.metric,
                    "variant": cell.variant,
                    "aggregate": col.aggregate,
                    "ours": agg.value * col.scale,
                    "ours_std": None if agg.std is None else agg.std * abs(col.scale),
                    "n_seeds": agg.n_seeds,
                    "n_examples": agg.n_examples,
                    "paper": "" if pv is None else pv.text,
                    "paper_source": "" if pv is None else pv.source,
                }
            )
    return records, notes


def render_markdown(
    spec: dict, records: list[dict], paper: list[PaperValue], notes: list[str]
) -> str:
    """Wide Markdown: one line per (row, NFE), one column per spec column, cells "ours (paper)"."""
    columns = [c.label for c in _parse_columns(spec)]
    ours = {(r["row"], r["nfe"], r["column"]): r for r in records}
    lines = [f"# {spec.get('title', spec.get('name', 'table'))}", ""]
    if spec.get("source"):
        lines += [f"Paper values: {spec['source']}.", ""]
    lines += [
        "Cells: ours (paper). Ours is aggregated over seed files as the column says (mean: mean ± "
        "sample std over seeds); the paper's value is on the paper's scale. Long form with every "
        "variant and count: the CSV beside this file.",
        "",
    ]
    if not records:
        lines += [
            "**Nothing was computed yet**: no row has score files containing this table's "
            "metrics (see the notes below).",
            "",
        ]
    lines += ["| Row | Dataset | NFE | " + " | ".join(columns) + " |"]
    lines += ["|---|---|---|" + "---|" * len(columns)]
    spec_cells = set()
    for row in spec.get("rows", []):
        label, nfe = row["label"], row.get("nfe")
        spec_cells.add((label, nfe))
        cells = []
        for col in columns:
            rec = ours.get((label, nfe, col))
            cell = "–" if rec is None else _fmt(rec["ours"])
            if rec is not None and rec["ours_std"] is not None:
                cell += f" ± {_fmt(rec['ours_std'])}"
            pv = match_paper(paper, label, col, nfe)
            if pv is not None:
                cell += f" ({pv.text})"
            cells.append(cell)
        nfe_s = "" if nfe is None else str(nfe)
        lines.append(
            f"| {label} | {row.get('dataset', '')} | {nfe_s} | " + " | ".join(cells) + " |"
        )
    # the paper's rows and NFEs we do not run (other papers' baselines, methods not implemented
    # yet, NFEs outside our grid); a blank-NFE paper value is covered by its label at any NFE
    paper_only: list[tuple[str, int | None]] = []
    for v in paper:
        key = (v.label, v.nfe)
        covered = any(
            label == v.label and (v.nfe is None or nfe == v.nfe) for label, nfe in spec_cells
        )
        if not covered and v.column in columns and key not in paper_only:
            paper_only.append(key)
    for label, nfe in paper_only:
        cells = []
        for col in columns:
            pv = next((v for v in paper if (v.label, v.nfe, v.column) == (label, nfe, col)), None)
            cells.append("–" if pv is None else f"– ({pv.text})")
        nfe_s = "" if nfe is None else str(nfe)
        lines.append(f"| {label} | (paper only) | {nfe_s} | " + " | ".join(cells) + " |")
    variants = sorted({(r["metric"], r["variant"]) for r in records})
    if variants:
        lines += ["", "Metric variants:", ""]
        lines += [f"- `{metric}`: {variant}" for metric, variant in variants]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def make_table(
    spec: dict, paper_values: str | os.PathLike | None, out: str | os.PathLike
) -> list[dict]:
    """Write ``out`` (long CSV) and ``out`` with suffix ``.md``; return the CSV records."""
    out = Path(out)
    if spec.get("kind", "scores") == "samples":  # generated texts, not scores
        from repro.report.samples_table import make_samples_table

        return make_samples_table(spec, out)
    spec = {"name": out.stem, **spec}
    paper = read_paper_values(paper_values, "table")
    records, notes = build_table(spec, paper)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow(
                {k: _num(v) if k in ("ours", "ours_std", "nfe") else v for k, v in rec.items()}
            )
    atomic_write_text(out.with_suffix(".md"), render_markdown(spec, records, paper, notes))
    log.info("%s: %d cells written to %s", spec["name"], len(records), out)
    return records


def main(argv: list[str] | None = None) -> int:
    out_help = "results/tables/NAME.csv (+ NAME.md)"
    return spec_main(argv, "repro.report.tables", __doc__, "table", out_help, make_table)


if __name__ == "__main__":
    sys.exit(main())
