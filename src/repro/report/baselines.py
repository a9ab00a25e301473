"""Trivial baselines of a built table, scored exactly as the table's cells are.

    python -m repro.report.baselines --configfile config/small-cpu.yaml [--tables table1 …]

For each dataset a scores table evaluates on, the first samples file of that dataset in the table
gives the evaluated rows (ids, sources, references, code fields). Each baseline replaces only the
hypotheses of those rows:

* seq2seq — ``copy source``: the hypothesis is the source (QQP: the question itself, NLTK
  sentence BLEU ≈ 0.21 on the whole test split);
* text — ``data``: the hypothesis is the held-out text itself (KL-flow Table 1's "Data" row:
  the data's own generative perplexity under the same judge);
* code — ``reference solution``: the hypothesis is the dataset's own program (it must pass: a
  check of the sandbox and of the tests, not a score to beat).

The rows are written as a samples file under ``results/baselines/<table>/<dataset>/`` and scored by
:func:`repro.score.score` with the metric configs the cell's own score job received
(:meth:`repro.workflow.catalogue.Catalogue.metrics_for`): same cleaning, same judge, same BERTScore
model; for an MBR row, the quality columns' configs too (the baseline has one hypothesis per row, so
its MBR selection is itself). Metrics that read what only a model produces (its token ids, its
sampling time) and group metrics (self-BLEU, div-4 over k samples) are left out. Values are multiplied by the column's ``scale`` as in the table. The summary
is printed as a Markdown table and written to ``results/baselines/baselines.md`` / ``.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from repro.io import (
    InputError,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    run_cli,
    stage_parser,
    write_jsonl,
)
from repro.workflow.catalogue import Catalogue

#: dataset kind -> (baseline name, the row field that becomes the hypothesis)
BASELINES = {
    "seq2seq": ("copy source", "source"),
    "text": ("data", "reference"),
    "code": ("reference solution", "reference"),
}
#: metric kinds a baseline cannot have: they read what only a model produces
MODEL_ONLY = {"unigram_entropy", "wall_seconds"}


def baseline_samples(rows: list[dict], kind: str) -> tuple[str, list[dict]]:
    """(baseline name, rows with the hypothesis replaced) for the dataset kind."""
    if kind not in BASELINES:
        raise InputError(f"no trivial baseline for dataset kind {kind!r}")
    name, field = BASELINES[kind]
    out = []
    for row in rows:
        if field not in row:
            raise InputError(f"samples row {row.get('id')!r} has no {field!r} field")
        new = {k: v for k, v in row.items() if k not in ("hypothesis_ids", "sampler_info")}
        new["hypothesis"] = row[field]
        new["sampler"] = f"baseline:{name}"
        out.append(new)
    return name, out


def table_baselines(c: Catalogue, table: str, results: Path) -> list[dict]:
    """Score the baselines of every dataset of ``table`` of the catalogue ``c``; one record per
    (dataset, column)."""
    from repro.score import score

    spec = c.tables[table]
    if spec.get("kind", "scores") != "scores":
        return []
    records: list[dict] = []
    seen: set[str] = set()
    for _, cell in c.table_cells(table):
        if cell.dataset in seen:
            continue
        seen.add(cell.dataset)
        seed = cell.seeds[0]
        path = (results / "samples" / cell.dataset / cell.experiment / cell.sampler /
                f"nfe{cell.nfe}" / f"seed{seed}.jsonl")
        if not path.is_file():
            raise InputError(f"{path}: not built — build tables.{table} first")
        # the configs every per-file draw of the cell was scored with (seed<s>, and mbr<k> for
        # the quality columns of an MBR row); group metrics need k model samples: left out
        draws = {d for col in spec["columns"] for d in c.column_draws(cell, col["metric"])
                 if not d.startswith("group")} or {f"seed{seed}"}
        metrics: dict[str, dict] = {}
        for draw in sorted(draws):
            metrics.update(json.loads(c.metrics_for(cell.dataset, cell.experiment, cell.sampler,
                                                    cell.nfe, draw)))
        metrics = {k: v for k, v in metrics.items() if v["kind"] not in MODEL_ONLY}
        kind = c.datasets[cell.dataset]["kind"]
        name, rows = baseline_samples(read_jsonl(path), kind)
        out_dir = results / "baselines" / table / cell.dataset
        samples = out_dir / f"{name.replace(' ', '_')}.jsonl"
        write_jsonl(samples, rows)
        scores = score(samples, metrics, out_dir / f"{name.replace(' ', '_')}.json")
        for col in spec["columns"]:
            entry = scores["metrics"].get(col["metric"])
            if entry is None:
                continue
            records.append({
                "table": table, "dataset": cell.dataset, "baseline": name,
                "column": col["label"], "metric": col["metric"],
                "value": entry["value"] * float(col.get("scale", 1.0)), "n": scores["n"],
            })
    return records


def render(records: list[dict]) -> str:
    lines = ["| table | dataset | baseline | column | value | n |", "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['table']} | {r['dataset']} | {r['baseline']} | {r['column']} | "
                     f"{r['value']:.4g} | {r['n']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("repro.report.baselines", __doc__)
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--tables", nargs="*", help="default: every scores table of the config")
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    from repro.config_file import load_config_file

    def body() -> None:
        config = load_config_file(args.configfile)
        tables = args.tables or [t for t, s in config.get("tables", {}).items()
                                 if s.get("kind", "scores") == "scores"]
        results = Path(args.results)
        catalogue = Catalogue(config)
        records = [r for t in tables for r in table_baselines(catalogue, t, results)]
        text = render(records)
        atomic_write_text(results / "baselines" / "baselines.md", text)
        atomic_write_json(results / "baselines" / "baselines.json", records)
        print(text, end="")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
