"""Tables of generated texts, in the style of FM-seq2seq Table 1 (prompt, steps, method, output).

Called by ``python -m repro.report.tables`` for specs with ``"kind": "samples"``::

    {"name": "qqp_samples", "kind": "samples", "title": "...", "source": "...", "examples": 2,
     "rows": [{"label": "DiffuSeq", "method": "diffuseq", "sampler": "ddpm", "nfe": 2000,
               "samples": "results/samples/qqp/diffuseq/ddpm/nfe2000/seed0.jsonl"}, ...]}

The first ``examples`` sources of the first row's samples file are shown; every row must have
generated them (same evaluation split, same order). CSV columns: ``example, source, reference,
method, nfe, output``; the Markdown view groups the rows of one source under its prompt, NFE
descending as in the paper.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from repro.io import InputError, atomic_path, atomic_write_text, iter_jsonl
from repro.report import require

log = logging.getLogger("repro.report.samples_table")

CSV_COLUMNS = ["example", "source", "reference", "method", "nfe", "output"]


def _first_rows(path: str, n: int) -> list[dict]:
    if not Path(path).is_file():
        raise InputError(f"{path}: samples file not found; run the sample_text stage")
    rows = []
    for lineno, row in iter_jsonl(path):
        for key in ("id", "source", "reference", "hypothesis"):
            if not isinstance(row.get(key), str):
                raise InputError(f"{path}:{lineno}: field {key!r} must be a string")
        rows.append(row)
        if len(rows) == n:
            break
    if len(rows) < n:
        raise InputError(f"{path}: {len(rows)} samples, the table shows {n}; lower 'examples'")
    return rows


def build_samples_table(spec: dict) -> list[dict]:
    """CSV records: one per (source, row), sources in file order, rows in spec order."""
    n = require(spec, "examples", int, "samples table spec")
    if n < 1:
        raise InputError("samples table spec: examples must be >= 1")
    rows = require(spec, "rows", list, "samples table spec")
    if not rows:
        raise InputError("samples table spec: no rows (are the methods implemented?)")
    loaded = []
    for i, row in enumerate(rows):
        where = f"samples table spec rows[{i}]"
        loaded.append((require(row, "label", str, where), int(require(row, "nfe", int, where)),
                       _first_rows(require(row, "samples", str, where), n)))
    ids = [r["id"] for r in loaded[0][2]]
    for (label, _, samples), row in zip(loaded, rows, strict=True):
        if [r["id"] for r in samples] != ids:
            raise InputError(
                f"{row['samples']}: row {label!r} did not complete the same first {n} sources "
                f"as {rows[0]['samples']} (ids differ); sample the same split in the same order"
            )
    records = []
    for j, ref in enumerate(loaded[0][2]):
        for label, nfe, samples in sorted(loaded, key=lambda x: -x[1]):
            records.append({"example": j, "source": ref["source"], "reference": ref["reference"],
                            "method": label, "nfe": nfe, "output": samples[j]["hypothesis"]})
    return records


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or "∅"


def render_markdown(spec: dict, records: list[dict]) -> str:
    lines = [f"# {spec.get('title', spec['name'])}", ""]
    if spec.get("source"):
        lines += [f"Style of: {spec['source']}", ""]
    lines += ["| Question prompt | Inference steps | Method | Response |", "|---|---|---|---|"]
    last = None
    for rec in records:
        prompt = "" if rec["example"] == last else _md(rec["source"])
        last = rec["example"]
        lines.append(f"| {prompt} | {rec['nfe']} | {_md(rec['method'])} | {_md(rec['output'])} |")
    lines += ["", "References: " + "; ".join(
        f"({i + 1}) {_md(r['reference'])}" for i, r in enumerate(
            {rec["example"]: rec for rec in records}.values()))]
    return "\n".join(lines) + "\n"


def make_samples_table(spec: dict, out: str | os.PathLike) -> list[dict]:
    out = Path(out)
    spec = {"name": out.stem, **spec}
    records = build_samples_table(spec)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    atomic_write_text(out.with_suffix(".md"), render_markdown(spec, records))
    log.info("%s: %d generated texts written to %s", spec["name"], len(records), out)
    return records
