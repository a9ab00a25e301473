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

* ``option_sweep`` (KL-flow App. B Fig. 3 top-k, Figs. 6-7 t*: metrics against the value of one
  sampler option at a fixed NFE) — spec as ``nfe_curve`` plus ``option``, ``values``, optional
  ``x_label`` and ``log_x``; each point carries ``x`` (the option's value). Paper values: the
  figure CSV header with the ``nfe`` column holding the option's value (a number); ``metric`` =
  the panel's label.

* ``loss_vs_t`` (FM-seq2seq Fig. 8: the l2 training loss on validation data across t ∈ [0, 1])
  — spec::

    {"name": "fig_qqp_loss_vs_t", "title": "...", "kind": "loss_vs_t", "source": "...",
     "series": [{"label": "FM-seq2seq", "path": "results/analysis/D/EXP/loss_vs_t.json"}, ...],
     "band": true}

  One panel, t on x, the loss on a log y axis: one solid line with markers per series from the
  ``python -m repro.analysis loss-vs-t`` JSON (``t``, ``loss``, optional ``loss_std``), with a
  ± one-std band across examples unless ``"band": false`` (on the log axis its lower edge is
  floored at a tenth of the smallest positive loss drawn). Paper values: the same CSV header
  ``series,nfe,metric,value,source``, but only rows with ``metric`` = ``loss`` are read and the
  ``nfe`` column holds **t** (a number in [0, 1]; rows of other metrics are skipped with a
  warning); each series is drawn dashed with square markers, labelled "<series> (paper)", in the
  colour of our series of the same label (paper-only series are drawn too). ``source`` is
  provenance only (not drawn). A missing series file is an error naming it.

Output is deterministic: the Agg backend, no pyplot state, PDF without creation date, PNG without
timestamps (matplotlib writes none).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import NamedTuple

from repro.io import InputError, atomic_path, read_json
from repro.report import (
    PaperValue,
    iter_paper_rows,
    load_cell,
    read_paper_values,
    read_scores,
    require,
    spec_main,
)

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
            x = point.get("x", nfe)
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
                                "x": x,
                                "metric": m["label"],
                                "seed_file": path,
                                "value": value * scale,
                            }
                        )
    return pd.DataFrame.from_records(
        records, columns=["series", "nfe", "x", "metric", "seed_file", "value"]
    )


def _paper_frame(paper: list[PaperValue], metric_labels: list[str]):
    import pandas as pd

    records = [
        {"series": v.label, "x": v.nfe, "metric": v.column, "value": v.value}
        for v in paper
        if v.column in metric_labels and v.nfe is not None
    ]
    return pd.DataFrame.from_records(records, columns=["series", "x", "metric", "value"])


def nfe_curve(spec: dict, paper: list[PaperValue]):
    """Build the ``nfe_curve`` figure; returns a matplotlib ``Figure``."""
    return _metric_curves(spec, _paper_frame(paper, _metric_labels(spec)), "NFE", log_x=True)


def read_paper_sweep(path: str | os.PathLike | None) -> list[PaperValue]:
    """Paper values of an ``option_sweep``: the figure CSV with a number (the option's value) in
    the ``nfe`` column; a non-numeric value or a duplicate is an InputError naming ``file:line``."""
    if path is None:
        return []
    out: list[PaperValue] = []
    seen: dict[tuple[str, float, str], int] = {}
    for line, (label, x_s, column, value_s, source) in iter_paper_rows(path, "figure"):
        try:
            x, value = float(x_s), float(value_s)
        except ValueError:
            x = value = math.nan
        if not (math.isfinite(x) and math.isfinite(value)):
            raise InputError(
                f"{path}:{line}: an option_sweep figure's nfe column holds the option's value and "
                f"its value column a number, got nfe={x_s!r} value={value_s!r}"
            )
        if (label, x, column) in seen:
            raise InputError(
                f"{path}:{line}: duplicate of line {seen[label, x, column]} for "
                f"({label!r}, {x}, {column!r})"
            )
        seen[label, x, column] = line
        # PaperValue.nfe holds the option's value here (a float): only the drawing reads it
        out.append(PaperValue(label, x, column, value, source, value_s))  # type: ignore[arg-type]
    return out


def option_sweep(spec: dict, paper: list[PaperValue]):
    """Build the ``option_sweep`` figure; returns a matplotlib ``Figure``."""
    option = require(spec, "option", str, "figure spec")
    x_label = spec.get("x_label", option)
    log_x = spec.get("log_x", False)
    if not isinstance(x_label, str) or not isinstance(log_x, bool):
        raise InputError("figure spec: 'x_label' must be a string and 'log_x' true or false")
    for i, series in enumerate(require(spec, "series", list, "figure spec")):
        for j, point in enumerate(series.get("points", []) if isinstance(series, dict) else []):
            x = point.get("x") if isinstance(point, dict) else None
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise InputError(
                    f"figure spec series[{i}].points[{j}]: an option_sweep point needs a "
                    f"numeric 'x' (the value of {option!r}), got {x!r}"
                )
    frame = _paper_frame(paper, _metric_labels(spec))
    return _metric_curves(spec, frame, x_label, log_x=log_x)


def _metric_labels(spec: dict) -> list[str]:
    return [
        m["label"]
        for m in require(spec, "metrics", list, "figure spec")
        if isinstance(m, dict) and "label" in m
    ]


def _series_colors(series_order: list[str]) -> dict:
    """One colour-blind-safe colour per series label, in legend order."""
    import seaborn as sns

    return dict(zip(series_order, sns.color_palette("colorblind", max(len(series_order), 1))))


def _no_values(ax) -> None:
    ax.text(0.5, 0.5, "no values yet", ha="center", va="center", transform=ax.transAxes)


def _legend_and_title(fig, spec: dict, handles: dict, series_order: list[str], max_cols: int):
    """The figure's legend below its panels, each series then its ``(paper)`` line in series
    order (at most ``max_cols`` columns), and the spec's title (else its name) on top."""
    if handles:
        order = sorted(handles, key=lambda h: (series_order.index(h.removesuffix(" (paper)")), h))
        fig.legend(
            [handles[h] for h in order],
            order,
            loc="outside lower center",
            ncols=min(len(order), max_cols),
            frameon=False,
        )
    fig.suptitle(spec.get("title", spec.get("name", "")))


def _metric_curves(spec: dict, ref, x_label: str, log_x: bool):
    """One panel per metric: ours solid (mean ± sd over seed files), the paper's dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ours = _ours_frame(spec)
    metric_labels = _metric_labels(spec)
    series_order = [s["label"] for s in spec["series"]]
    series_order += [s for s in dict.fromkeys(ref["series"]) if s not in series_order]
    colors = _series_colors(series_order)

    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        n = len(metric_labels)
        fig = Figure(figsize=(4.2 * n, 3.6), layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)[0]
        handles: dict[str, Line2D] = {}
        for ax, label in zip(axes, metric_labels):
            ours_m = ours[ours["metric"] == label]
            ref_m = ref[ref["metric"] == label]
            styles = (  # (frame, legend name, lineplot style, legend line style)
                (ours_m, "{}", {"marker": "o", "errorbar": "sd", "estimator": "mean"},
                 {"marker": "o", "linestyle": "-"}),
                (ref_m, "{} (paper)", {"linestyle": "--", "errorbar": None}, {"linestyle": "--"}),
            )
            for frame, name, plot_style, line_style in styles:
                if frame.empty:
                    continue
                sns.lineplot(data=frame, x="x", y="value", hue="series", palette=colors,
                             legend=False, ax=ax, **plot_style)
                for s in dict.fromkeys(frame["series"]):
                    handles[name.format(s)] = Line2D([], [], color=colors[s], **line_style)
            if ours_m.empty and ref_m.empty:
                _no_values(ax)
            elif log_x:
                ax.set_xscale("log")
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
            ax.set_title(label)
        _legend_and_title(fig, spec, handles, series_order, max_cols=4)
    return fig


class CurvePoint(NamedTuple):
    """One paper value of a curve over t (``loss_vs_t``)."""

    series: str
    t: float
    value: float
    source: str


def read_paper_curve(path: str | os.PathLike | None, metric: str = "loss") -> list[CurvePoint]:
    """Paper values of a curve over t: the figure CSV header with the ``nfe`` column holding t.

    :func:`repro.report.read_paper_values` takes integer NFEs only, so ``loss_vs_t`` reads its
    CSV here. Rows whose ``metric`` is not ``metric`` are skipped with a warning; a t outside
    [0, 1] (or blank), a non-numeric value or a duplicate (series, t) is an :class:`InputError`
    naming ``file:line``.
    """
    if path is None:
        return []
    out: list[CurvePoint] = []
    seen: dict[tuple[str, float], int] = {}
    skipped = 0
    for line, (label, t_s, column, value_s, source) in iter_paper_rows(path, "figure"):
        if column != metric:
            skipped += 1
            continue
        try:
            t, value = float(t_s), float(value_s)
        except ValueError:
            t = value = math.nan
        if not 0.0 <= t <= 1.0 or not math.isfinite(value):
            raise InputError(
                f"{path}:{line}: a loss_vs_t figure's nfe column holds t in [0, 1] and its "
                f"value column a number, got nfe={t_s!r} value={value_s!r}"
            )
        if (label, t) in seen:
            raise InputError(
                f"{path}:{line}: duplicate of line {seen[label, t]} for ({label!r}, t={t})"
            )
        seen[label, t] = line
        out.append(CurvePoint(label, t, value, source))
    if skipped:
        log.warning("%s: %d row(s) whose metric is not %r skipped", path, skipped, metric)
    return out


def _read_curve(path: object, where: str) -> dict[str, list[float]]:
    """One ``repro.analysis loss-vs-t`` JSON: its ``t``, ``loss`` and (optional) ``loss_std``."""
    if not isinstance(path, str) or not path:
        raise InputError(f"{where}: key 'path' must be the path of a loss_vs_t.json")
    data = read_json(path)  # InputError "PATH: file not found" when missing
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object (python -m repro.analysis loss-vs-t)")
    columns: dict[str, list[float]] = {}
    for key in ("t", "loss", "loss_std"):
        if key == "loss_std" and key not in data:
            continue
        column = data.get(key)
        if not isinstance(column, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in column
        ):
            raise InputError(f"{path}: key {key!r} must be a list of numbers")
        if key != "t" and len(column) != len(columns["t"]):
            raise InputError(
                f"{path}: {key!r} has {len(column)} values but 't' has {len(columns['t'])}"
            )
        columns[key] = [float(x) for x in column]
    return columns


def loss_vs_t(spec: dict, paper: list[CurvePoint]):
    """Build the ``loss_vs_t`` figure; returns a matplotlib ``Figure``."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if "source" in spec and not isinstance(spec["source"], str):
        raise InputError("figure spec: key 'source' must be a string")
    band = spec.get("band", True)
    if not isinstance(band, bool):
        raise InputError(f"figure spec: key 'band' must be true or false, got {band!r}")
    ours: list[tuple[str, dict[str, list[float]]]] = []
    for i, series in enumerate(require(spec, "series", list, "figure spec")):
        where = f"figure spec series[{i}]"
        if not isinstance(series, dict):
            raise InputError(f"{where}: expected an object")
        label = require(series, "label", str, where)
        ours.append((label, _read_curve(require(series, "path", str, where), where)))
    ref: dict[str, list[tuple[float, float]]] = {}
    for point in paper:
        ref.setdefault(point.series, []).append((point.t, point.value))
    series_order = list(dict.fromkeys(label for label, _ in ours))
    series_order += [s for s in ref if s not in series_order]
    colors = _series_colors(series_order)

    positive = [x for _, c in ours for x in c["loss"] if x > 0]
    positive += [y for points in ref.values() for _, y in points if y > 0]
    floor = min(positive) / 10.0 if positive else None  # lower edge of bands on the log axis

    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(4.8, 3.6), layout="constrained")
        ax = fig.subplots()
        handles: dict[str, Line2D] = {}
        for label, curve in ours:
            t, loss = np.asarray(curve["t"]), np.asarray(curve["loss"])
            color = colors[label]
            if band and "loss_std" in curve and floor is not None:
                std = np.asarray(curve["loss_std"])
                lower = np.maximum(loss - std, floor)
                ax.fill_between(t, lower, loss + std, color=color, alpha=0.2, linewidth=0)
            ax.plot(t, loss, color=color, marker="o", markersize=3.5, linestyle="-")
            handles[label] = Line2D([], [], color=color, marker="o", linestyle="-")
        for label, points in ref.items():
            points = sorted(points)
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color=colors[label],
                marker="s",
                markersize=3.5,
                linestyle="--",
            )
            handles[f"{label} (paper)"] = Line2D(
                [], [], color=colors[label], marker="s", linestyle="--"
            )
        if floor is None:
            _no_values(ax)
        else:
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("t")
        ax.set_ylabel("loss")
        _legend_and_title(fig, spec, handles, series_order, max_cols=3)
    return fig


FIGURE_KINDS = {"nfe_curve": nfe_curve, "option_sweep": option_sweep, "loss_vs_t": loss_vs_t}
#: kinds whose paper values are not read by the shared integer-NFE reader
_PAPER_READERS = {"loss_vs_t": read_paper_curve, "option_sweep": read_paper_sweep}


def make_figure(
    spec: dict, paper_values: str | os.PathLike | None, out: str | os.PathLike
) -> list[Path]:
    """Draw ``spec`` and write ``out`` (PNG) and the PDF beside it; return both paths."""
    out = Path(out)
    kind = spec.get("kind")
    if kind not in FIGURE_KINDS:
        raise InputError(f"figure spec: unknown kind {kind!r}; known: {', '.join(FIGURE_KINDS)}")
    if kind in _PAPER_READERS:
        paper = _PAPER_READERS[kind](paper_values)
    else:
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
    out_help = "results/figures/NAME.png (+ NAME.pdf)"
    return spec_main(argv, "repro.report.figures", __doc__, "figure", out_help, make_figure)


if __name__ == "__main__":
    sys.exit(main())
