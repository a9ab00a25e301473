"""Expansion of the catalogue: tables and figures into cells, option sweeps into samplers and
evaluation-only datasets, cells into the score and samples files each deliverable reads.

A table row or figure series ``{dataset, experiment, sampler, nfe: n | [n…], seeds, mbr, group}``
becomes one :class:`~repro.workflow.spec.Cell` per NFE; a cell's quality columns read
``mbr<k>`` (the MBR pick) or each ``seed<s>``, its group columns ``group<k>``
(:meth:`Expansion.column_draws`). :class:`Expansion` is a part of
:class:`~repro.workflow.catalogue.Catalogue`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from repro.methods import REGISTRY
from repro.workflow import paths, spec
from repro.workflow.spec import (
    ANALYSIS_FIGURES,
    EMBEDDING_PREFIX,
    OPTION_SWEEP,
    SWEEP_TARGETS,
    Cell,
    ConfigError,
    sweep_name,
    sweep_target,
)


class Expansion:
    """Sweeps, cells, inputs and deliverables of the catalogue (attributes set by the Catalogue)."""

    config: dict
    datasets: dict[str, dict]
    experiments: dict[str, dict]
    metrics: dict[str, dict]
    tables: dict[str, dict]
    figures: dict[str, dict]
    judges: dict[str, dict]
    _sweep_origin: dict[tuple[str, str], str]

    # ------------------------------------------------------------------ option sweeps
    def _check_sweeps(self) -> None:
        """What every ``option_sweep`` figure needs, whatever it sweeps."""
        for name, fig in self.figures.items():
            if fig.get("kind") != OPTION_SWEEP:
                continue
            where = f"figures.{name}"
            if not fig.get("option") or not fig.get("values"):
                raise ConfigError(f"{where}: an option_sweep figure needs 'option' and 'values'")
            if sweep_target(fig) not in SWEEP_TARGETS:
                raise ConfigError(f"{where}.sweep: {fig['sweep']!r} is not one of "
                                  f"{list(SWEEP_TARGETS)}")
            for i, row in enumerate(fig["series"]):
                if isinstance(row["nfe"], list):
                    raise ConfigError(f"{where}.series[{i}].nfe: an option_sweep series takes one "
                                      f"NFE (got {row['nfe']}); add a series per NFE")

    def _add_sweep_samplers(self) -> None:
        """Give each experiment of a ``sweep: sampler`` figure one sampler per swept value."""
        for name, fig in self.figures.items():
            if fig.get("kind") != OPTION_SWEEP or sweep_target(fig) != "sampler":
                continue
            where = f"figures.{name}"
            option, values = fig["option"], fig["values"]
            for i, row in enumerate(fig["series"]):
                swhere = f"{where}.series[{i}]"
                exp = self.experiments.get(row["experiment"])
                samplers = {} if exp is None else exp.get("samplers", {})
                if row["sampler"] not in samplers:
                    continue  # _check_row names the problem
                base = samplers[row["sampler"]]
                for j, value in enumerate(values):
                    derived = sweep_name(row["sampler"], option, value)
                    cfg = {**base, option: value}
                    self._sweep_origin.setdefault((row["experiment"], derived),
                                                  f"{where}.values[{j}]")
                    if samplers.setdefault(derived, cfg) != cfg:
                        raise ConfigError(
                            f"{swhere}: experiment {row['experiment']!r} already defines sampler "
                            f"{derived!r} with other options; rename it"
                        )

    def _add_sweep_datasets(self) -> None:
        """For each ``sweep: layout`` figure, one evaluation-only dataset per swept value: the
        series' dataset with the option set in the layout its experiment reads, models and
        tokenizer from the dataset it is trained on (``train_on``)."""
        for name, fig in self.figures.items():
            if fig.get("kind") != OPTION_SWEEP or sweep_target(fig) != "layout":
                continue
            for i, row in enumerate(fig["series"]):
                base = self.datasets.get(row["dataset"])
                exp = self.experiments.get(row["experiment"])
                if base is None or exp is None or exp.get("method") not in REGISTRY:
                    continue  # _check_row / _cells name the problem
                self._add_layout_sweep(f"figures.{name}", i, fig, row, base)

    def _add_layout_sweep(self, where: str, i: int, fig: dict, row: dict, base: dict) -> None:
        """The evaluation-only datasets of one series of a ``sweep: layout`` figure."""
        from repro.tokenization.layouts import LAYOUTS

        option = fig["option"]
        layout = self.layout(row["dataset"], row["experiment"])
        if option not in LAYOUTS[layout].eval_options:
            raise ConfigError(
                f"{where}.option: {option!r} cannot be swept on layout {layout!r} "
                f"(series[{i}]); a layout sweep changes only options that choose the "
                f"masked positions: {list(LAYOUTS[layout].eval_options)}"
            )
        for value in fig["values"]:
            derived = sweep_name(row["dataset"], option, value)
            cfg = copy.deepcopy(base)
            cfg["train_on"] = base.get("train_on", row["dataset"])
            layouts = cfg.setdefault("layouts", {})
            layouts[layout] = {**(layouts.get(layout) or {}), option: value}
            old = self.datasets.setdefault(derived, cfg)
            if old is not cfg:  # a second series on the same dataset: merge its layout
                if old["layouts"].get(layout, cfg["layouts"][layout]) != cfg["layouts"][layout]:
                    raise ConfigError(f"{where}.series[{i}]: dataset {derived!r} already exists "
                                      "with other options; rename it")
                old["layouts"][layout] = cfg["layouts"][layout]

    def _sweep_rows(self, figure: str) -> list[dict]:
        """An ``option_sweep`` figure's series expanded into one row per value (with its ``x``)."""
        fig = self.figures[figure]
        if sweep_target(fig) == "layout":
            return [{**row, "dataset": sweep_name(row["dataset"], fig["option"], value),
                     "x": value, "base_dataset": row["dataset"]}
                    for row in fig["series"] for value in fig["values"]]
        return [{**row, "sampler": sweep_name(row["sampler"], fig["option"], value),
                 "x": value, "base_sampler": row["sampler"]}
                for row in fig["series"] for value in fig["values"]]

    # ------------------------------------------------------------------ cells and paths
    @staticmethod
    def _nfes(row: dict) -> list[int]:
        nfe = row["nfe"]
        return list(nfe) if isinstance(nfe, list) else [nfe]

    def _cells(self, rows: list[dict]) -> list[tuple[dict, Cell]]:
        out = []
        for row in rows:
            mbr, group = row.get("mbr", 0), row.get("group", 0)
            seeds = tuple(row.get("seeds", range(max(mbr, group, 1))))
            for nfe in self._nfes(row):
                out.append((row, Cell(row["dataset"], row["experiment"], row["sampler"], nfe,
                                      seeds, mbr, group)))
        return out

    def table_cells(self, table: str) -> list[tuple[dict, Cell]]:
        return self._cells(self.tables[table]["rows"])

    def figure_cells(self, figure: str) -> list[tuple[dict, Cell]]:
        if self.is_analysis("figures", figure):
            return []
        rows = (self._sweep_rows(figure) if self.figures[figure]["kind"] == OPTION_SWEEP
                else self.figures[figure]["series"])
        return self._cells(rows)

    def analysis_series(self, figure: str) -> list[dict]:
        """Series of an analysis figure with their input file."""
        fig = self.figures[figure]
        return [{"label": row["label"], "dataset": row["dataset"], "experiment": row["experiment"],
                 "path": paths.analysis(self.source(row["dataset"]), row["experiment"],
                                        ANALYSIS_FIGURES[fig["kind"]])}
                for row in fig["series"]]

    @staticmethod
    def default_draws(c: Cell) -> list[str]:
        """The files a per-file metric of this cell is read from: the MBR pick, else each seed."""
        return [f"mbr{c.mbr}"] if c.mbr else [f"seed{s}" for s in c.seeds]

    def column_draws(self, c: Cell, metric: str) -> list[str]:
        """Draws a column's metric is computed on (every kind is a known one: ``_check``)."""
        per_file, group = spec.metric_kinds()
        kind = self.metrics[metric]["kind"]
        if kind in group:
            return [f"group{c.group}"]
        return self.default_draws(c) if kind in per_file else []

    def _spec_columns(self, kind: str, name: str) -> list[dict]:
        entry = (self.tables if kind == "tables" else self.figures)[name]
        return entry.get("columns", entry.get("metrics", []))

    def _inputs(self, kind: str, name: str, cells: list[tuple[dict, Cell]]) -> list[str]:
        out: dict[str, None] = {}
        for _, c in cells:
            draws = [d for col in self._spec_columns(kind, name)
                     for d in self.column_draws(c, col["metric"])]
            # a row whose metrics are all still to come is sampled and scored all the same
            for d in draws or self.default_draws(c):
                out[c.score_path(d)] = None
        return list(out)

    def table_inputs(self, table: str) -> list[str]:
        if self.is_samples_table(table):
            return list(dict.fromkeys(c.samples_path() for _, c in self.table_cells(table)))
        return self._inputs("tables", table, self.table_cells(table))

    def figure_inputs(self, figure: str) -> list[str]:
        if self.is_analysis("figures", figure):
            return [s["path"] for s in self.analysis_series(figure)]
        return self._inputs("figures", figure, self.figure_cells(figure))

    def targets(self) -> list[str]:
        """Every deliverable of the catalogue (``rule paper``)."""
        return [paths.table(t) for t in self.tables] + [paths.figure(f) for f in self.figures]

    def is_analysis(self, kind: str, name: str) -> bool:
        """A figure drawn from a model analysis (loss against t), not from samples' scores."""
        return kind == "figures" and self.figures[name]["kind"] in ANALYSIS_FIGURES

    def is_samples_table(self, table: str) -> bool:
        """A table of generated texts (FM-seq2seq Table 1), not of scores."""
        return self.tables[table].get("kind", "scores") == "samples"

    # ------------------------------------------------------------------ datasets and models
    def source(self, dataset: str) -> str:
        """The dataset whose tokenizer and trained models serve ``dataset`` (``train_on``)."""
        return self.datasets[dataset].get("train_on", dataset)

    def layout(self, dataset: str, experiment: str) -> str:
        method = self.experiments[experiment]["method"]
        return REGISTRY[method].layouts[self.datasets[dataset]["kind"]]

    def embedding_source(self, experiment: str) -> str | None:
        """The experiment whose word embeddings ``experiment`` flows in (``from:<name>``), if any."""
        value = self.experiments[experiment].get("model", {}).get("embeddings")
        if isinstance(value, str) and value.startswith(EMBEDDING_PREFIX):
            return value[len(EMBEDDING_PREFIX):]
        return None

    def judge_path(self, judge: str) -> str:
        """Local directory of a judge: trained by train_judge, downloaded, or given by the user."""
        j = self.judges[judge]
        if "train" in j:
            return paths.trained_judge(judge)
        if "hub" in j:
            return paths.downloaded_judge(judge)
        return j["local"]

    def train_extra_inputs(self, dataset: str, experiment: str) -> list[str]:
        """Files a training run reads besides its tokenized data (exported embeddings)."""
        src = self.embedding_source(experiment)
        return [] if src is None else [paths.embeddings(dataset, src)]

    # ------------------------------------------------------------------ wildcard constraints
    def wildcard_pattern(self, kind: str) -> str:
        names: Any = {
            "dataset": self.datasets,
            "experiment": self.experiments,
            "sampler": {s for e in self.experiments.values() for s in e.get("samplers", {})},
            "table": self.tables,
            "figure": self.figures,
            "judge": self.judges,
        }[kind]
        return "|".join(re.escape(n) for n in sorted(names)) or "^$"
