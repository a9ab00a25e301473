"""``make report``: one self-contained HTML page of whatever has been built under ``results/``.

Usage::

    python -m repro.report.html_report                               # results/ + config/config.yaml
    python -m repro.report.html_report --configfile config/smoke.yaml --out results/report.html

The page holds, for every table in ``results/tables/``, the wide view (ours beside the paper's
published value, the ``.md`` the ``make_table`` stage writes) and the long CSV with its metric
variants and counts; every figure in ``results/figures/`` (the PNG inline, the PDF as a download
embedded in the page); the metric variants found in the tables and in ``results/scores/``; the
config the run used; and the catalogue entries that are not built yet. Everything is embedded
(base64 data URIs, no external style sheet or script), so the one file can be mailed or archived.

Why not ``snakemake --report`` (kept for complete targets, see the README): Snakemake's report is
built from the DAG of its targets, and every output flagged with ``report()`` in that DAG must
exist — with the default target (every table and figure) one table not built yet stops it with
"File ... marked for report but does not exist" (Snakemake 9.27,
``snakemake/report/__init__.py::auto_report``; ``--report-after-run`` only runs it after a whole
successful run). A half-built paper run, the usual state for days, has no report unless the user
lists exactly the finished deliverables; and it cannot show what is missing, the metric variants
or the config. This generator reads the files that exist and says which ones are missing, so it
works at any point of a run.

Generated texts (the samples table) are model output: every piece of text is HTML-escaped and the
Markdown is rendered with raw HTML off, so nothing in a result file can inject markup or script.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from markdown_it import MarkdownIt

from repro.config_file import load_config_file
from repro.io import InputError, atomic_write_text, log_to_stderr, run_cli, stage_parser

log = logging.getLogger("repro.report.html_report")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
       line-height: 1.4; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 85%; }
img { max-width: 100%; border: 1px solid #ddd; }
.meta { color: #666; font-size: 90%; } .missing { color: #a33; }
section.item { margin-bottom: 2.5em; }
details summary { cursor: pointer; color: #225; }
"""


def _esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _download(path: Path, mime: str) -> str:
    return f'<a download="{_esc(path.name)}" href="{_data_uri(path, mime)}">{_esc(path.name)}</a>'


def _mtime(path: Path) -> str:
    t = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _markdown() -> MarkdownIt:
    # raw HTML off: text from result files (generated samples included) is escaped, never markup
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read the table CSV ({err}); re-run make_table") from None


def _csv_html(fields: list[str], rows: list[dict]) -> str:
    head = "".join(f"<th>{_esc(f)}</th>" for f in fields)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(r.get(f))}</td>" for f in fields) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def load_config(paths: list[Path]) -> tuple[dict, str]:
    """The config as Snakemake sees it with ``--configfile`` (later files merged into earlier ones,
    mappings key by key) and the text of each file for the page."""
    config: dict = {}
    texts = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: config file not found (--configfile)")
        text = path.read_text(encoding="utf-8")
        data = load_config_file(path) or {}  # strict (file:line), `seeds: N` expanded
        if not isinstance(data, dict):
            raise InputError(f"{path}: the config must be a mapping at the top level")
        _merge(config, data)
        texts.append(f"# --- {path}\n{text}")
    return config, "\n".join(texts)


def scores_variants(scores_dir: Path) -> dict[str, dict[str, int]]:
    """metric → variant → number of scores files under ``scores_dir`` computed with it."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not scores_dir.is_dir():
        return {}
    for path in sorted(scores_dir.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("%s: not readable JSON (%s), left out of the metric variants", path, err)
            continue
        metrics = data.get("metrics") if isinstance(data, dict) else None
        if not isinstance(metrics, dict):
            continue
        for name, entry in metrics.items():
            if isinstance(entry, dict):
                out[name][str(entry.get("variant", ""))] += 1
    return {m: dict(v) for m, v in out.items()}


def _ordered(found: list[Path], catalogue: dict) -> list[Path]:
    """Catalogue order first, then anything else that was built (sorted by name)."""
    order = {name: i for i, name in enumerate(catalogue)}
    return sorted(found, key=lambda p: (order.get(p.stem, len(order)), p.stem))


def _table_section(csv_path: Path, spec: dict, md: MarkdownIt) -> tuple[str, dict]:
    """HTML of one table and its (metric → variants) from the CSV's ``variant`` column."""
    name = csv_path.stem
    md_path = csv_path.with_suffix(".md")
    fields, rows = read_csv(csv_path)
    parts = [f'<section class="item" id="table-{_esc(name)}">']
    title = spec.get("title") or name
    parts.append(f"<h3>{_esc(name)}: {_esc(title)}</h3>")
    meta = [f"built {_mtime(csv_path)}", f"{len(rows)} CSV lines"]
    if spec.get("source"):
        meta.append(f"paper values: {_esc(spec['source'])}")
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if md_path.is_file():
        text = md_path.read_text(encoding="utf-8")
        # the first heading repeats the title shown above
        lines = text.splitlines()
        if lines and lines[0].startswith("# "):
            lines = lines[1:]
        parts.append(md.render("\n".join(lines)))
    else:
        parts.append(f'<p class="missing">{_esc(md_path.name)} is missing; the long CSV only.</p>')
    parts.append(
        f"<details><summary>long CSV ({len(rows)} lines: every cell with its metric variant, "
        f"aggregate, seeds, examples and the paper's source)</summary>{_csv_html(fields, rows)}"
        "</details>"
    )
    links = [_download(csv_path, "text/csv")]
    if md_path.is_file():
        links.append(_download(md_path, "text/markdown"))
    parts.append(f'<p class="meta">files: {" · ".join(links)}</p></section>')
    variants: dict[str, set[str]] = defaultdict(set)
    if "metric" in fields and "variant" in fields:
        for r in rows:
            variants[r["metric"]].add(r["variant"])
    return "\n".join(parts), variants


def _figure_section(name: str, png: Path | None, pdf: Path | None, spec: dict) -> str:
    parts = [f'<section class="item" id="figure-{_esc(name)}">']
    parts.append(f"<h3>{_esc(name)}: {_esc(spec.get('title') or name)}</h3>")
    built = png or pdf
    meta = [f"built {_mtime(built)}"]
    if spec.get("source"):
        meta.append(f"paper values: {_esc(spec['source'])}")
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if png is not None:
        parts.append(f'<img alt="{_esc(name)}" src="{_data_uri(png, "image/png")}">')
    else:
        parts.append('<p class="missing">no PNG; the PDF only.</p>')
    links = [_download(p, m) for p, m in ((png, "image/png"), (pdf, "application/pdf")) if p]
    parts.append(f'<p class="meta">files: {" · ".join(links)}</p></section>')
    return "\n".join(parts)


def _not_built(missing_tables: list[str], missing_figures: list[str]) -> list[str]:
    """The "Not built yet" section (nothing when every catalogue table and figure is built)."""
    if not (missing_tables or missing_figures):
        return []
    out = ['<h2>Not built yet</h2><p class="missing">']
    if missing_tables:
        out.append("tables: " + ", ".join(_esc(n) for n in missing_tables) + "<br>")
    if missing_figures:
        out.append("figures: " + ", ".join(_esc(n) for n in missing_figures))
    out.append(
        "</p><p>Build one with <code>snakemake results/tables/NAME.csv</code> "
        "(or <code>results/figures/NAME.png</code>), then run <code>make report</code> "
        "again.</p>"
    )
    return out


def _variants_section(table_variants: dict, score_variants: dict, metric_opts: dict) -> list[str]:
    """The "Metric variants" section: one row per (metric, variant) of the tables
    (``table_variants[metric][variant]`` = table names) and scores files
    (``score_variants[metric][variant]`` = file count)."""
    out = ['<h2 id="variants">Metric variants</h2>']
    out.append(
        "<p>Each metric key of the config, the variant string its values carry (package, "
        "version, tokenisation, smoothing, …), the tables that show it, and how many scores "
        "files under <code>results/scores/</code> were computed with it. Two variants of one "
        "metric mean files scored in different environments.</p>"
    )
    rows = []
    for metric in sorted(set(table_variants) | set(score_variants)):
        variants = set(table_variants.get(metric, {})) | set(score_variants.get(metric, {}))
        for v in sorted(variants):
            in_tables = ", ".join(sorted(table_variants.get(metric, {}).get(v, ())))
            n_files = score_variants.get(metric, {}).get(v, 0)
            opts = json.dumps(metric_opts.get(metric), sort_keys=True) if metric in metric_opts \
                else ""
            rows.append({"metric": metric, "variant": v, "config": opts, "tables": in_tables,
                         "scores files": n_files})
    if rows:
        out.append(_csv_html(["metric", "variant", "config", "tables", "scores files"], rows))
    else:
        out.append("<p>No scores yet.</p>")
    return out


def build_report(results: Path, config_files: list[Path]) -> str:
    """The HTML page of everything under ``results`` (see the module docstring)."""
    config, config_text = load_config(config_files)
    tables_cat = config.get("tables") or {}
    figures_cat = config.get("figures") or {}
    md = _markdown()
    tables = _ordered(sorted((results / "tables").glob("*.csv")), tables_cat)
    pngs = {p.stem: p for p in (results / "figures").glob("*.png")}
    pdfs = {p.stem: p for p in (results / "figures").glob("*.pdf")}
    figure_names = [
        p.stem for p in _ordered([Path(n) for n in set(pngs) | set(pdfs)], figures_cat)
    ]

    table_html, table_variants = [], defaultdict(lambda: defaultdict(set))
    for path in tables:
        section, variants = _table_section(path, tables_cat.get(path.stem) or {}, md)
        table_html.append(section)
        for metric, vs in variants.items():
            for v in vs:
                table_variants[metric][v].add(path.stem)
    figure_html = [
        _figure_section(n, pngs.get(n), pdfs.get(n), figures_cat.get(n) or {})
        for n in figure_names
    ]
    missing_tables = [n for n in tables_cat if n not in {p.stem for p in tables}]
    missing_figures = [n for n in figures_cat if n not in figure_names]
    score_variants = scores_variants(results / "scores")

    scale = config.get("scale", "?")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>repro report ({_esc(scale)})</title><style>{_STYLE}</style></head><body>",
        f"<h1>repro: tables and figures built so far ({_esc(scale)} config)</h1>",
        "<p>FM-seq2seq, KL-flow and DiffuSeq regenerated with their baselines. Every table "
        "shows our value beside the paper's published one (cells: <em>ours (paper)</em>); each "
        "metric value carries the exact variant it was computed with.</p>",
        f'<p class="meta">results: {_esc(results)} · config: '
        f"{_esc(', '.join(map(str, config_files)))} · {len(tables)} of {len(tables_cat)} "
        f"catalogue tables and {len(figure_names)} of {len(figures_cat)} figures built</p>",
    ]
    if scale != "paper":
        out.append(
            "<p><strong>Not the paper's scale</strong>: the numbers come from the "
            f"<code>{_esc(scale)}</code> config and are not comparable to the papers'.</p>"
        )
    toc = ["<h2>Contents</h2><ul>"]
    toc += [f'<li><a href="#table-{_esc(p.stem)}">table {_esc(p.stem)}</a></li>' for p in tables]
    toc += [f'<li><a href="#figure-{_esc(n)}">figure {_esc(n)}</a></li>' for n in figure_names]
    toc += ['<li><a href="#variants">metric variants</a></li>', '<li><a href="#config">config</a>'
            "</li></ul>"]
    out += toc
    out += _not_built(missing_tables, missing_figures)
    out.append("<h2>Tables</h2>")
    out += table_html or ["<p>No table built yet.</p>"]
    out.append("<h2>Figures</h2>")
    out += figure_html or ["<p>No figure built yet.</p>"]

    out += _variants_section(table_variants, score_variants, config.get("metrics") or {})
    out.append('<h2 id="config">Config</h2>')
    out.append(f"<pre>{_esc(config_text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("repro.report.html_report", __doc__)
    parser.add_argument("--results", default="results", help="the results folder (default results)")
    parser.add_argument(
        "--configfile", nargs="+", default=["config/config.yaml"],
        help="the config(s) the run used, as given to snakemake (default config/config.yaml)",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="the page (default RESULTS/report.html)")
    args = parser.parse_args(argv)
    log_to_stderr()
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "report.html"

    def body() -> None:
        if not results.is_dir():
            raise InputError(f"{results}: no results folder; build something first (make demo)")
        page = build_report(results, [Path(p) for p in args.configfile])
        atomic_write_text(out, page)
        print(f"report: {out} ({len(page.encode()) / 1e6:.1f} MB, self-contained)")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
