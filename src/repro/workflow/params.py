"""Per-rule params: the sub-config each rule passes to its stage, as canonical JSON.

Staleness contract (docs/pipeline.md §1): each rule's ``params`` carry only the sub-config that
rule uses, plus a content digest of the package files it runs (:mod:`repro.workflow.digests`). So:

* changing an NFE grid or a sampler option re-samples, re-scores and re-reports only the affected
  experiment (samplers live inside their experiment, NFEs inside catalogue rows);
* changing an experiment's ``model``/``train`` block retrains that experiment only;
* editing ``methods/<name>.py`` retrains experiments of that method only;
* ``touch`` without an edit re-runs nothing (digests hash content, not mtimes).

:class:`Params` is a part of :class:`~repro.workflow.catalogue.Catalogue`; the module functions
are the params and inputs the rules compute from a job's wildcards or inputs alone.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from repro.workflow import digests, paths
from repro.workflow.expansion import Expansion
from repro.workflow.spec import canonical_json, method_sampler


def tokenized_data_dir(wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake's name)
    """``--data`` of a stage reading tokenized arrays: the directory of its inputs' ``meta.json``."""
    return input.data[-1].rsplit("/", 1)[0]


def job_device(config: dict) -> str:
    """``--device`` of sample and analysis jobs: ``cpu`` under ``accelerator: cpu``, else auto."""
    return "cpu" if config.get("accelerator") == "cpu" else "auto"


def seed_samples(wildcards: Any) -> list[str]:
    """The samples files of seeds 0..k-1 of a job's cell (mbr_select, score_group)."""
    wc = wildcards
    return paths.seed_samples(wc.dataset, wc.experiment, wc.sampler, wc.nfe, int(wc.k))


class Params(Expansion):
    """The params each rule reads (attributes set by the Catalogue)."""

    # ------------------------------------------------------------------ data and tokens
    def needs_download(self, dataset: str) -> bool:
        """Some split of ``dataset`` is read from the hub (not synthetic, not all ``local``)."""
        from repro.data import needs_download

        return needs_download(self.datasets[dataset])

    def raw_inputs(self, dataset: str) -> list[str]:
        """The hub download prepare_dataset reads, if any."""
        return [paths.raw_dataset(dataset)] if self.needs_download(dataset) else []

    def local_files(self, dataset: str) -> list[str]:
        """Local source files: inputs of prepare_dataset, so editing one re-prepares."""
        from repro.data.config import parse_config

        cfg = self.datasets[dataset]
        files: set[str] = set()
        for value in cfg.get("local", {}).values():
            files.update([value] if isinstance(value, str) else value)
        if cfg.get("loader", "synthetic") != "synthetic":  # + copies inside installed packages
            files.update(str(p) for ps in parse_config(dataset, cfg).local.values() for p in ps)
        return sorted(files)

    def data_params(self, dataset: str) -> str:
        from repro.data import data_subconfig

        return canonical_json(data_subconfig(self.datasets[dataset]))

    def tokenizer_params(self, dataset: str) -> str:
        return canonical_json(self.datasets[dataset]["tokenizer"])

    def layout_options(self, dataset: str, layout: str) -> str:
        return canonical_json(self.datasets[dataset].get("layouts", {}).get(layout, {}))

    # ------------------------------------------------------------------ rule inputs
    def tokenized_inputs(self, dataset: str, experiment: str, splits: tuple[str, ...]) -> list[str]:
        """The tokenized ``splits`` of ``dataset`` in the layout ``experiment``'s method reads."""
        return paths.tokenized_files(dataset, self.layout(dataset, experiment), splits)

    def eval_inputs(self, dataset: str, experiment: str) -> list[str]:
        """The tokenized evaluation split a sample job reads (``eval.split``)."""
        return self.tokenized_inputs(dataset, experiment, (self.eval_params(dataset)["split"],))

    def eval_prepared(self, dataset: str) -> str:
        """The prepared rows of the evaluation split (the references of the samples file)."""
        return paths.prepared(dataset, self.eval_params(dataset)["split"])

    def source_ckpt(self, dataset: str, experiment: str) -> str:
        """The model ``experiment`` trained on the dataset serving ``dataset`` (``train_on``)."""
        return paths.ckpt(self.source(dataset), experiment)

    def source_tokenizer(self, dataset: str) -> str:
        """The tokenizer of the dataset serving ``dataset`` (``train_on``)."""
        return paths.tokenizer(self.source(dataset))

    # ------------------------------------------------------------------ train and sample
    def train_params(self, dataset: str, experiment: str) -> str:
        exp = self.experiments[experiment]
        cfg = {k: exp.get(k, {}) for k in ("method", "model", "train")}
        src = self.embedding_source(experiment)
        if src is not None:  # the method reads the exported matrix from this path
            cfg["model"] = {**cfg["model"], "embeddings": paths.embeddings(dataset, src)}
        return canonical_json(cfg)

    def method_digest(self, experiment: str, stage: str) -> str:
        return digests.method_digest(self.experiments[experiment]["method"], stage)

    def sampler_params(self, experiment: str, sampler: str) -> str:
        """The sampler's config as ``sample_text`` passes it on (``kind`` and options; the keys of
        :data:`~repro.workflow.spec.WORKFLOW_SAMPLER_KEYS` are read by the workflow and left out)."""
        return canonical_json(method_sampler(self.experiments[experiment]["samplers"][sampler]))

    def sample_eval_params(self, dataset: str, experiment: str, sampler: str) -> dict:
        """:meth:`eval_params` of one sampler's sample jobs: its ``max_examples`` caps the rows
        (the smaller of it and the dataset's ``eval.max_examples`` when that is > 0); without one
        the dataset's params, unchanged."""
        ev = self.eval_params(dataset)
        cap = self.experiments[experiment]["samplers"][sampler].get("max_examples")
        if cap is not None:
            ev = {**ev, "max_examples": min(cap, ev["max_examples"]) if ev["max_examples"] > 0 else cap}
        return ev

    def analysis_options(self, dataset: str) -> dict:
        """Options of analyse_loss_vs_t: the t grid and the validation examples it averages.

        t runs over [0, 0.95], not to 1: training draws t ~ U[0, 1), and at t = 1 the input is x₁
        alone, so the noise half of the target velocity x₁ − z is unpredictable (loss >= ~0.5
        whatever the model) — a point the paper's curve (≤ 0.004 for t >= 0.4) does not have.
        """
        ev = self.eval_params(dataset)
        return {"bins": 20, "t_max": 0.95, "max_examples": ev["max_examples"] or 2048,
                "batch_size": ev["batch_size"], "seed": 0}

    def eval_params(self, dataset: str) -> dict:
        ev = {"split": "test", "max_examples": 0, "batch_size": 64}
        ev.update(self.datasets[dataset].get("eval", {}))
        return ev

    # ------------------------------------------------------------------ scoring and judges
    def metrics_for(
        self, dataset: str, experiment: str, sampler: str, nfe: int, draw: str = "seed0"
    ) -> str:
        """Metrics (name -> cfg) that some table or figure reads from this samples file."""
        names = self._metrics_read.get((dataset, experiment, sampler, nfe, draw), ())
        return canonical_json({n: self._metric_cfg(n) for n in sorted(names)})

    @functools.cached_property
    def _metrics_read(self) -> dict[tuple, set[str]]:
        """(dataset, experiment, sampler, nfe, draw) -> the metrics some table or figure reads
        from that samples file: every cell of the catalogue scanned once."""
        index: dict[tuple, set[str]] = {}
        for kind, entries in (("tables", self.tables), ("figures", self.figures)):
            for name in entries:
                cells = self.table_cells(name) if kind == "tables" else self.figure_cells(name)
                for _, c in cells:
                    for col in self._spec_columns(kind, name):
                        for draw in self.column_draws(c, col["metric"]):
                            key = (c.dataset, c.experiment, c.sampler, c.nfe, draw)
                            index.setdefault(key, set()).add(col["metric"])
        return index

    def _metric_cfg(self, name: str) -> dict:
        cfg = dict(self.metrics[name])
        if "judge" in cfg:  # the metric reads the judge from its local directory
            cfg["judge"] = self.judge_path(cfg["judge"])
        return cfg

    def judge_inputs(self, metrics_json: str) -> list[str]:
        return sorted({m["judge"] for m in json.loads(metrics_json).values() if "judge" in m})

    def judge_train_params(self, judge: str) -> str:
        cfg = dict(self.judges[judge]["train"])
        cfg.pop("dataset")
        return canonical_json(cfg)

    def judge_train_data(self, judge: str) -> str:
        """The prepared train rows a judge is trained on."""
        return paths.prepared(self.judges[judge]["train"]["dataset"], "train")

    def judge_train_kind(self, judge: str) -> str:
        """The kind of the dataset a judge is trained on."""
        return self.datasets[self.judges[judge]["train"]["dataset"]]["kind"]

    # ------------------------------------------------------------------ tables and figures
    def table_spec(self, table: str) -> str:
        if self.is_samples_table(table):
            return self._samples_table_spec(table)
        entry = self.tables[table]
        rows = []
        for row, c in self.table_cells(table):
            default = [c.score_path(d) for d in self.default_draws(c)]
            by_column = {}
            for col in entry["columns"]:
                files = [c.score_path(d) for d in self.column_draws(c, col["metric"])]
                if files and files != default:
                    by_column[col["label"]] = files
            rows.append({
                "label": row["label"], "dataset": c.dataset, "experiment": c.experiment,
                "method": self.experiments[c.experiment]["method"], "sampler": c.sampler,
                "nfe": c.nfe, "seeds": None if c.mbr else list(c.seeds), "scores": default,
                **({"scores_by_column": by_column} if by_column else {}),
            })
        return canonical_json({
            "name": table, "title": entry.get("title", table), "source": entry.get("source", ""),
            "columns": entry["columns"], "rows": rows,
        })

    def _samples_table_spec(self, table: str) -> str:
        entry = self.tables[table]
        return canonical_json({
            "name": table, "kind": "samples", "title": entry.get("title", table),
            "source": entry.get("source", ""), "examples": entry["examples"],
            "rows": [{"label": row["label"], "dataset": c.dataset, "experiment": c.experiment,
                      "method": self.experiments[c.experiment]["method"],
                      "sampler": c.sampler, "nfe": c.nfe, "samples": c.samples_path()}
                     for row, c in self.table_cells(table)],
        })

    def figure_spec(self, figure: str) -> str:
        entry = self.figures[figure]
        if self.is_analysis("figures", figure):
            return canonical_json({
                "name": figure, "title": entry.get("title", figure), "kind": entry["kind"],
                "source": entry.get("source", ""), "series": self.analysis_series(figure),
            })
        series: dict[str, dict] = {}
        for row, c in self.figure_cells(figure):
            s = series.setdefault(row["label"], {
                "label": row["label"], "dataset": row.get("base_dataset", c.dataset),
                "experiment": c.experiment,
                "method": self.experiments[c.experiment]["method"],
                "sampler": row.get("base_sampler", c.sampler), "points": [],
            })
            s["points"].append({"nfe": c.nfe, "seeds": None if c.mbr else list(c.seeds),
                                "scores": [c.score_path(d) for d in self.default_draws(c)],
                                **({"x": row["x"]} if "x" in row else {})})
        sweep = {key: entry[key] for key in ("option", "values", "x_label", "log_x", "sweep")
                 if key in entry}
        return canonical_json({
            "name": figure, "title": entry.get("title", figure), "kind": entry["kind"],
            "source": entry.get("source", ""), "metrics": entry["metrics"],
            "series": list(series.values()), **sweep,
        })

    def paper_values(self, kind: str, name: str) -> list[str]:
        """The paper-values CSV of a table/figure: the configured one (which must then exist), else
        ``config/paper_values/<name>.csv`` if present, else none (a table of our own)."""
        entry = (self.tables if kind == "tables" else self.figures)[name]
        if "paper_values" in entry:
            return [entry["paper_values"]]
        default = paths.paper_values(name)
        return [default] if Path(default).is_file() else []

    def resource(self, stage: str, key: str, default):
        """``resources.<stage>.<key>`` of the config, or ``default``."""
        return self.config["resources"].get(stage, {}).get(key, default)
