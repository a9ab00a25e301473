"""Stage ``make_figure``: seaborn figures from scores JSON, the paper's curves beside ours.

Usage::

    python -m repro.report.figures --spec-json JSON --paper-values config/paper_values/NAME.csv \\
        --out results/figures/NAME.png        # also writes results/figures/NAME.pdf

Kinds (:data:`FIGURE_KINDS`):

* ``nfe_curve`` (FM-seq2seq Fig. 7: BLEU / ROUGE-L against NFE) — spec::

    {"name": "fig_qqp_nfe", "title": "...", "kind": "nfe_curve",
     "metrics": [{"label": "BLEU", "metric": "bleu", "scale": 1.0}, ...],
     "series": [{"label": "FM-seq2seq", "dataset": "qqp", "experiment": "fm", "method": "...",
                 "sampler": "euler", "points": [{"nfe": 1, "seeds": [0], "scores": [...]}, ...]}]}

  One panel per metric, NFE on a log axis; ours solid with markers (mean over seed files of the
  metric's ``value``, ± one sample std as a band when there are several seeds); the paper's values
  (CSV ``series,nfe,metric,value,source``, ``metric`` = the panel's label) dashed, labelled
  "<series> (paper)" in the series' colour. Paper series we do not run (e.g. DiffuSeq before its
  method lands) are drawn too, so the paper's comparison stays visible. A point whose scores lack
  the metric is skipped with a warning.

Output is deterministic: the Agg backend, no pyplot state, PDF without creation date, PNG without
timestamps (matplotlib writes none).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from repro.io import InputError, atomic_path
from repro.report import PaperValue, load_cell, load_spec, read_paper_values, read_scores, require

log = logging.getLogger("repro.report.figures")

#: metadata passed to savefig: no dates, no software string that changes between patch releases
_SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
}


def _ours_frame(spec: dict):
    """Long data frame (series, nfe, metric, seed_file, value) of our scores."""
    import pandas as pd

    records = []
    metrics = require(spec, "metrics", list, "figure spec")
    for i, m in enumerate(metrics):
        where = f"figure spec metrics[{i}]"
        if not isinstance(m, dict):
            raise InputError(f"{where}: expected an object")
        require(m, "label", str, where)
        require(m, "metric", str, where)
    for i, series in enumerate(require(spec, "series", list, "figure spec")):
        where = f"figure spec series[{i}]"
        label = require(series, "label", str, where)
        for j, point in enumerate(require(series, "points", list, where)):
            pwhere = f"{where}.points[{j}]"
            nfe = require(point, "nfe", int, pwhere)
            paths = require(point, "scores", list, pwhere)
            if not paths:
                log.warning("%s (%s, nfe %s): no score files, skipped", pwhere, label, nfe)
                continue
            files = [read_scores(p) for p in paths]
            for m in metrics:
                cell = load_cell(paths, m["metric"], files)
                if cell is None:
                    log.warning(
                        "%s (%s, nfe %s): metric %r not in every scores file, skipped",
                        pwhere,
                        label,
                        nfe,
                        m["metric"],
                    )
                    continue
                scale = float(m.get("scale", 1.0))
                for path, value in zip(cell.paths, cell.values):
                    if value is not None:
                        records.append(
                            {
                                "series": label,
                                "nfe": nfe,
                                "metric": m["label"],
                                "seed_file": path,
                                "value": value * scale,
                            }
                        )
    return pd.DataFrame.from_records(
        records, columns=["series", "nfe", "metric", "seed_file", "value"]
    )


def _paper_frame(paper: list[PaperValue], metric_labels: list[str]):
    import pandas as pd

    records = [
        {"series": v.label, "nfe": v.nfe, "metric": v.column, "value": v.value}
        for v in paper
        if v.column in metric_labels and v.nfe is not None
    ]
    return pd.DataFrame.from_records(records, columns=["series", "nfe", "metric", "value"])


def nfe_curve(spec: dict, paper: list[PaperValue]):
    """Build the ``nfe_curve`` figure; returns a matplotlib ``Figure``."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ours = _ours_frame(spec)
    metric_labels = [m["label"] for m in spec["metrics"]]
    ref = _paper_frame(paper, metric_labels)
    series_order = [s["label"] for s in spec["series"]]
    series_order += [s for s in dict.fromkeys(ref["series"]) if s not in series_order]
    colors = dict(zip(series_order, sns.color_palette("colorblind", max(len(series_order), 1))))

    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        n = len(metric_labels)
        fig = Figure(figsize=(4.2 * n, 3.6), layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)[0]
        handles: dict[str, Line2D] = {}
        for ax, label in zip(axes, metric_labels):
            ours_m = ours[ours["metric"] == label]
            ref_m = ref[ref["metric"] == label]
            if not ours_m.empty:
                sns.lineplot(
                    data=ours_m,
                    x="nfe",
                    y="value",
                    hue="series",
                    palette=colors,
                    marker="o",
                    errorbar="sd",
                    estimator="mean",
                    legend=False,
                    ax=ax,
                )
                for s in dict.fromkeys(ours_m["series"]):
                    handles[s] = Line2D([], [], color=colors[s], marker="o", linestyle="-")
            if not ref_m.empty:
                sns.lineplot(
                    data=ref_m,
                    x="nfe",
                    y="value",
                    hue="series",
                    palette=colors,
                    linestyle="--",
                    errorbar=None,
                    legend=False,
                    ax=ax,
                )
                for s in dict.fromkeys(ref_m["series"]):
                    handles[f"{s} (paper)"] = Line2D([], [], color=colors[s], linestyle="--")
            if ours_m.empty and ref_m.empty:
                ax.text(0.5, 0.5, "no values yet", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.set_xscale("log")
            ax.set_xlabel("NFE")
            ax.set_ylabel(label)
            ax.set_title(label)
        if handles:
            order = sorted(
                handles, key=lambda h: (series_order.index(h.removesuffix(" (paper)")), h)
            )
            fig.legend(
                [handles[h] for h in order],
                order,
                loc="outside lower center",
                ncols=min(len(order), 4),
                frameon=False,
            )
        fig.suptitle(spec.get("title", spec.get("name", "")))
    return fig


FIGURE_KINDS = {"nfe_curve": nfe_curve}


def make_figure(
    spec: dict, paper_values: str | os.PathLike | None, out: str | os.PathLike
) -> list[Path]:
    """Draw ``spec`` and write ``out`` (PNG) and the PDF beside it; return both paths."""
    out = Path(out)
    kind = spec.get("kind")
    if kind not in FIGURE_KINDS:
        raise InputError(f"figure spec: unknown kind {kind!r}; known: {', '.join(FIGURE_KINDS)}")
    paper = read_paper_values(paper_values, "figure")
    fig = FIGURE_KINDS[kind]({"name": out.stem, **spec}, paper)
    written = []
    for path, fmt in ((out, "png"), (out.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=_SAVE_METADATA[fmt])
        written.append(path)
    log.info("figure %s written to %s", spec.get("name", out.stem), ", ".join(map(str, written)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.report.figures", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--spec-json", required=True, help="figure spec as JSON, or @file.json")
    parser.add_argument("--paper-values", default=None, help="config/paper_values/NAME.csv")
    parser.add_argument("--out", required=True, help="results/figures/NAME.png (+ NAME.pdf)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        make_figure(load_spec(args.spec_json), args.paper_values, args.out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
