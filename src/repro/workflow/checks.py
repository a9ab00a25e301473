"""Cross-checks of the validated config, run when the DAG is built.

The schema (``workflow/schemas/config.schema.yaml``) checks types; these check consistency across
blocks (a row naming an unknown experiment, a group metric without ``group: k``, a sweep value a
sampler refuses, a ``gen_ppl`` max_length beyond its judge's context, …) by calling the stages'
own checks, so that what a job would refuse hours later stops the DAG build now, with a
:class:`~repro.workflow.spec.ConfigError` naming the config key. :class:`Checks` is a part of
:class:`~repro.workflow.catalogue.Catalogue`.
"""

from __future__ import annotations

import json
from pathlib import Path

from repro.io import InputError
from repro.methods import REGISTRY, MethodInfo
from repro.methods.options import check_sampler_config
from repro.workflow import spec
from repro.workflow.expansion import Expansion
from repro.workflow.spec import (
    EMBEDDING_PREFIX,
    OPTION_SWEEP,
    Cell,
    ConfigError,
    config_path,
    method_sampler,
    sweep_name,
    sweep_target,
)

#: context length (tokens) of the hub judges the configs name, as their ``config.json`` states it
#: (``n_positions`` / ``max_position_embeddings``): so that a gen_ppl ``max_length`` beyond it stops
#: the DAG build before the download, not the scoring job hours later
HUB_JUDGE_CONTEXT: dict[str, int] = {
    "openai-community/gpt2": 1024,
    "gpt2": 1024,
    "EleutherAI/gpt-neo-2.7B": 2048,
    "NousResearch/Llama-2-7b-chat-hf": 4096,
    "meta-llama/Llama-2-7b-chat-hf": 4096,
}


def _format_options(dataset: dict) -> dict:
    """A dataset's layout options less those that only pick the masked positions (an
    evaluation-only dataset may change them: ``Layout.eval_options``)."""
    from repro.tokenization.layouts import LAYOUTS

    out = {}
    for name, opts in (dataset.get("layouts") or {}).items():
        free = LAYOUTS[name].eval_options if name in LAYOUTS else ()
        out[name] = {k: v for k, v in (opts or {}).items() if k not in free}
    return out


def embedding_exporters() -> list[str]:
    """Methods whose trained model has word embeddings to export (``MethodInfo.exports_embeddings``)."""
    return [name for name, info in REGISTRY.items() if info.exports_embeddings]


class Checks(Expansion):
    """Consistency checks of the Catalogue's blocks, on top of its expansion."""

    def _check(self) -> None:
        """Every cross-check, block by block (the first problem raises)."""
        self._check_datasets()
        for name, exp in self.experiments.items():
            self._check_experiment(name, exp)
        self._check_metric_judges()
        for kind, entries in (("tables", self.tables), ("figures", self.figures)):
            for name, entry in entries.items():
                self._check_entry(kind, name, entry)
        self._check_metric_options()
        self._check_layout_options()

    def _check_datasets(self) -> None:
        from repro.data import data_subconfig, parse_config

        for name, d in self.datasets.items():
            try:  # what prepare_dataset would refuse (fields, local keys, splits, options)
                parse_config(name, data_subconfig(d))
            except InputError as err:
                raise ConfigError(str(err)) from None
            src = d.get("train_on")
            if src is None:
                if "tokenizer" not in d:
                    raise ConfigError(f"datasets.{name}: missing 'tokenizer' (or 'train_on')")
                continue
            if src not in self.datasets or "train_on" in self.datasets[src]:
                raise ConfigError(
                    f"datasets.{name}.train_on: {src!r} must name a dataset that is trained on itself"
                )
            same = ("kind", "seq_len")
            diff = [k for k in same if d.get(k) != self.datasets[src].get(k)]
            if _format_options(d) != _format_options(self.datasets[src]):
                diff.append("layouts")
            if diff:
                raise ConfigError(
                    f"datasets.{name}.train_on: {src!r} differs in {diff}; an evaluation-only dataset "
                    "must share kind, seq_len and layouts with the dataset its models are trained on "
                    "(layout options that only choose the masked positions may differ)"
                )

    def _check_experiment(self, name: str, exp: dict) -> None:
        where = f"experiments.{name}"
        if "method" not in exp:
            raise ConfigError(f"{where}: missing 'method' (after resolving 'extends')")
        info = REGISTRY.get(exp["method"])
        if info is None:
            raise ConfigError(
                f"{where}.method: unknown method {exp['method']!r}; known methods: "
                f"{sorted(REGISTRY)}"
            )
        bad = sorted(set(exp.get("model", {})) - set(info.model_keys))
        if bad:
            raise ConfigError(
                f"{where}.model: unknown key(s) {bad} for method {exp['method']!r}; "
                f"allowed: {list(info.model_keys)}"
            )
        self._check_embedding_source(name, exp)
        for sname, scfg in exp.get("samplers", {}).items():
            self._check_sampler(name, exp, info, sname, scfg)

    def _check_sampler(self, name: str, exp: dict, info: MethodInfo, sname: str,
                       scfg: dict) -> None:
        where = f"experiments.{name}.samplers.{sname}"
        cap = scfg.get("max_examples")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ConfigError(
                f"{where}.max_examples: expected an integer >= 1 (the "
                f"evaluation rows this sampler completes), got {cap!r}"
            )
        if "weights" in scfg:
            self._check_weights(f"{where}.weights", scfg["weights"], exp)
        if scfg["kind"] not in info.samplers:
            raise ConfigError(
                f"{where}.kind: {scfg['kind']!r} is not a sampler of "
                f"method {exp['method']!r}; choose one of {list(info.samplers)}"
            )
        swept = self._sweep_origin.get((name, sname))
        if info.sampler_checks is not None:
            with config_path(swept or where, swept is None):
                check_sampler_config(info.sampler_checks, method_sampler(scfg),
                                     exp.get("model", {}))

    def _check_metric_judges(self) -> None:
        for name, m in self.metrics.items():
            judge = m.get("judge")
            if judge is not None and judge not in self.judges:
                raise ConfigError(
                    f"metrics.{name}.judge: unknown judge {judge!r}; define it under 'judges:' "
                    f"(known: {sorted(self.judges)})"
                )
        for name, j in self.judges.items():
            src = j.get("train", {}).get("dataset")
            if src is not None and src not in self.datasets:
                raise ConfigError(f"judges.{name}.train.dataset: unknown dataset {src!r}")

    def _check_entry(self, kind: str, name: str, entry: dict) -> None:
        """One table or figure: its rows, its columns' metrics, NFEs and draws."""
        if self.is_analysis(kind, name):
            for i, row in enumerate(entry["series"]):
                self._check_row(f"{kind}.{name}.series[{i}]", row, sampler=False)
            return
        columns = self._spec_columns(kind, name)
        for i, col in enumerate(columns):
            if col["metric"] not in self.metrics:
                raise ConfigError(
                    f"{kind}.{name} column/metric [{i}]: unknown metric {col['metric']!r}; "
                    f"define it under 'metrics:' (known: {sorted(self.metrics)})"
                )
        for i, row in enumerate(entry.get("rows", entry.get("series", []))):
            where = f"{kind}.{name}.{'rows' if kind == 'tables' else 'series'}[{i}]"
            self._check_row(where, row)
            self._check_draws(where, row, columns)
            self._check_nfes(where, row, entry)
        if kind == "tables":
            self._check_pass_at_k(name, entry)

    def _check_nfes(self, where: str, row: dict, entry: dict) -> None:
        """Every NFE of a row must be one its sampler can make (DiffuSeq ddpm: exactly T)."""
        exp = self.experiments[row["experiment"]]
        checks = REGISTRY[exp["method"]].sampler_checks
        if checks is None:
            return
        samplers = [row["sampler"]]
        if entry.get("kind") == OPTION_SWEEP and sweep_target(entry) == "sampler":
            samplers += [sweep_name(row["sampler"], entry["option"], v) for v in entry["values"]]
        for i, nfe in enumerate(self._nfes(row)):
            at = f"{where}.nfe" + (f"[{i}]" if isinstance(row["nfe"], list) else "")
            for sampler in samplers:
                with config_path(at, False):
                    check_sampler_config(checks, method_sampler(exp["samplers"][sampler]),
                                         exp.get("model", {}),
                                         nfe)

    def _check_pass_at_k(self, table: str, entry: dict) -> None:
        """A pass@k column needs k sample seeds in every cell (repro.report's own check)."""
        from repro.report import check_pass_at_k_column

        for ci, col in enumerate(entry.get("columns", [])):
            if col.get("aggregate") != "pass_at_k":
                continue
            for ri, row in enumerate(entry["rows"]):
                c: Cell
                for _, c in self._cells([row]):
                    n = len(self.column_draws(c, col["metric"]))
                    with config_path(f"tables.{table}.columns[{ci}]",
                                     suffix=f" (rows[{ri}] {row.get('label', '')!r}: seeds "
                                            f"{list(c.seeds)}{f', mbr {c.mbr}' if c.mbr else ''})"):
                        check_pass_at_k_column(col.get("k"), n, col["metric"])

    def _check_metric_options(self) -> None:
        """Each metric's kind and options, as the score stage parses them; a gen_ppl max_length
        that does not fit its judge's context (when the judge's config tells it)."""
        from repro.metrics import metric_options, parse_metric_config
        from repro.metrics.judge import (
            check_gen_ppl_options,
            check_judge_entropy_options,
            check_max_length,
        )

        for name, m in self.metrics.items():
            with config_path(f"metrics.{name}"):
                kind, opts = parse_metric_config(name, m)
                o = {**metric_options(kind), **opts}  # the judge metrics' values, before scoring
                if kind == "gen_ppl":
                    check_gen_ppl_options(o["judge"], o["aggregation"], o["max_length"],
                                          o["batch_size"], o["add_bos"], o["precision"])
                elif kind == "judge_entropy":
                    check_judge_entropy_options(o["judge"], o["max_length"], o["base"])
            if kind == "gen_ppl" and opts.get("max_length") is not None and "judge" in opts:
                context = self.judge_context(opts["judge"])
                if context is not None:
                    with config_path(f"metrics.{name}"):
                        check_max_length(opts.get("aggregation"), opts["max_length"], context,
                                         opts["judge"])
        for name, j in self.judges.items():
            if "train" in j:
                self.judge_context(name)

    def judge_context(self, judge: str) -> int | None:
        """Context length of a judge, from its config: ``n_positions`` of a judge the DAG trains
        (its train options checked as repro.judge checks them), else the ``config.json`` of a
        downloaded or local judge if it is there yet, else :data:`HUB_JUDGE_CONTEXT` for a hub
        judge not downloaded yet; None when unknown."""
        from repro.judge import check_train_config
        from repro.metrics.judge import context_from_config

        j = self.judges[judge]
        if "train" in j:
            cfg = {k: v for k, v in j["train"].items() if k != "dataset"}
            try:
                return check_train_config(cfg, where=f"judges.{judge}.train")["n_positions"]
            except InputError as err:
                raise ConfigError(str(err)) from None
        path = Path(self.judge_path(judge)) / "config.json"
        if not path.is_file():
            # not downloaded yet: the context a hub judge's model card states, if it is known
            return HUB_JUDGE_CONTEXT.get(j.get("hub", {}).get("id", ""))
        try:
            return context_from_config(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (InputError, ValueError, TypeError) as err:
            raise ConfigError(f"judges.{judge}: {path}: {err}") from None

    def _check_layout_options(self) -> None:
        """Each dataset's layout options, as the tokenize stage's layout checks them."""
        from repro.tokenization.layouts import LAYOUTS

        for name, d in self.datasets.items():
            for layout, opts in (d.get("layouts") or {}).items():
                where = f"datasets.{name}.layouts.{layout}"
                if layout not in LAYOUTS:
                    raise ConfigError(f"{where}: unknown layout {layout!r}; choose one of "
                                      f"{sorted(LAYOUTS)}")
                with config_path(where):
                    LAYOUTS[layout].check_options(d.get("seq_len"), opts or {})

    @staticmethod
    def _check_weights(where: str, weights: object, exp: dict) -> None:
        """A sampler's ``weights`` must name weights the training run stores (``ema`` a list)."""
        ema = exp.get("train", {}).get("ema", 0.0)
        if not isinstance(ema, list):
            raise ConfigError(
                f"{where}: alternate weights need train.ema as a list of decays (e.g. "
                f"[0.999, 0.9999]); this experiment has ema: {ema!r}"
            )
        names = ["raw", *(f"ema{float(d)!r}" for d in ema)]
        if weights not in names:
            raise ConfigError(f"{where}: {weights!r} is not stored; choose one of {names}")

    def _check_embedding_source(self, name: str, exp: dict) -> None:
        src = self.embedding_source(name)
        if src is None:
            return
        where = f"experiments.{name}.model.embeddings"
        if src not in self.experiments or src == name:
            raise ConfigError(
                f"{where}: {EMBEDDING_PREFIX}{src} must name another experiment "
                f"(known: {sorted(self.experiments)})"
            )
        exporters = embedding_exporters()
        if self.experiments[src]["method"] not in exporters:
            raise ConfigError(
                f"{where}: experiment {src!r} uses method {self.experiments[src]['method']!r}, "
                f"which has no word embeddings to export; use one of {exporters}"
            )
        if self.embedding_source(src) is not None:
            raise ConfigError(f"{where}: {src!r} itself takes exported embeddings; name the source")
        dims = [self.experiments[e].get("model", {}).get("emb_dim", 128) for e in (name, src)]
        if dims[0] != dims[1]:
            raise ConfigError(
                f"{where}: emb_dim {dims[0]} differs from experiment {src!r}'s emb_dim {dims[1]}"
            )

    def _check_draws(self, where: str, row: dict, columns: list[dict]) -> None:
        seeds = row.get("seeds")
        for key in ("mbr", "group"):
            k = row.get(key, 0)
            if k and seeds is not None and not set(range(k)) <= set(seeds):
                raise ConfigError(
                    f"{where}.{key}: {key} {k} uses sample seeds 0..{k - 1}; list them in 'seeds' "
                    f"(or leave 'seeds' out)"
                )
        _, group_kinds = spec.metric_kinds()
        for col in columns:
            if self.metrics[col["metric"]]["kind"] in group_kinds and not row.get("group"):
                raise ConfigError(
                    f"{where}: column {col['label']!r} is a group metric (several samples per "
                    f"source); set 'group: k' on the row (DiffuSeq uses 3)"
                )

    def _check_row(self, where: str, row: dict, sampler: bool = True) -> None:
        if row["dataset"] not in self.datasets:
            raise ConfigError(f"{where}.dataset: unknown dataset {row['dataset']!r}")
        if row["experiment"] not in self.experiments:
            raise ConfigError(f"{where}.experiment: unknown experiment {row['experiment']!r}")
        exp = self.experiments[row["experiment"]]
        if sampler and row["sampler"] not in exp.get("samplers", {}):
            raise ConfigError(
                f"{where}.sampler: experiment {row['experiment']!r} defines no sampler "
                f"{row['sampler']!r} (has {sorted(exp.get('samplers', {}))})"
            )
        info = REGISTRY.get(exp["method"])
        kind = self.datasets[row["dataset"]]["kind"]
        if info is not None and kind not in info.layouts:
            raise ConfigError(
                f"{where}: method {exp['method']!r} has no layout for {kind!r} datasets "
                f"(dataset {row['dataset']!r})"
            )
