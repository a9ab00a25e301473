"""Everything the Snakefile needs beyond glue: the catalogue expansion and each rule's params.

``workflow/rules/common.smk`` builds one :class:`Catalogue` from the validated config; every rule
asks it for its inputs and params. Keeping this here (not in ``.smk`` files) makes it unit-testable
and keeps the rule files thin.

Staleness contract (docs/pipeline.md §1): each rule's ``params`` carry only the sub-config that rule
uses, serialised as canonical JSON, plus a content digest of the package files it runs. So:

* changing an NFE grid or a sampler option re-samples, re-scores and re-reports only the affected
  experiment (samplers live inside their experiment, NFEs inside catalogue rows);
* changing an experiment's ``model``/``train`` block retrains that experiment only;
* editing ``methods/<name>.py`` retrains experiments of that method only;
* ``touch`` without an edit re-runs nothing (digests hash content, not mtimes).

Nothing here imports torch or the heavy NLP stack: the DAG of the paper config must build fast.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from repro.io import InputError
from repro.methods import REGISTRY, method_source_files
from repro.methods.options import check_sampler_config

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent.parent
SPLITS = ("train", "validation", "test")

#: Entry modules of each stage (relative to src/repro). A stage's code digest covers these and
#: every ``repro`` module they import, transitively (see :func:`import_closure`); the method module
#: of an experiment is added for train/sample. ``methods/__init__.py`` (the registry) is left out:
#: registering a new method must not retrain the others.
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "download": ("data/download.py",),
    "prepare": ("data/prepare.py",),
    "tokenizer": ("tokenization/vocab.py",),
    "tokenize": ("tokenization/__main__.py",),
    "train": ("train/__main__.py",),
    "sample": ("sample.py",),
    "score": ("score.py",),
    "mbr": ("mbr.py",),
    "judge": ("judge.py",),
    "table": ("report/tables.py",),
    "figure": ("report/figures.py",),
    "export_embeddings": ("export_embeddings.py",),
    "analysis": ("analysis.py",),
}
# progress.py: log lines, bars and loggers only; editing it never changes a result
_NOT_TRACKED = {"methods/__init__.py", "workflow_utils.py", "progress.py"}

#: Table aggregates over sample seeds (see repro.report.tables).
AGGREGATES = ("mean", "best_of_seeds", "mean_of_seeds", "pass_at_k")

#: ``model.embeddings: "from:<experiment>"`` — the frozen matrix of FM-seq2seq comes from another
#: experiment's trained model (rule export_embeddings); methods that can export one:
EMBEDDING_PREFIX = "from:"
EMBEDDING_EXPORTERS = ("diffuseq", "embedding_fm")
#: figure kinds drawn from ``results/analysis/`` files (rule analyse_loss_vs_t) -> file name
ANALYSIS_FIGURES = {"loss_vs_t": "loss_vs_t.json"}
#: figure kind whose x axis is the value of one sampler option (KL-flow's top-k and t* sweeps)
#: or, with ``sweep: layout``, of one layout option of the evaluation data (App. A's masked p)
OPTION_SWEEP = "option_sweep"
SWEEP_TARGETS = ("sampler", "layout")


def sweep_name(base: str, option: str, value: object) -> str:
    """Name of the sampler (``sweep: sampler``) or evaluation-only dataset (``sweep: layout``) an
    ``option_sweep`` figure derives from ``base``: ``base.<option><v>``.

    It is a path component (``results/samples/…/hybrid.t_star0.1/…``,
    ``results/samples/humaneval.mask_fraction0.3/…``) and an ordinary sampler or dataset from then
    on, so each swept value is its own sample and score job.
    """
    return f"{base}.{option}{value}"


def sweep_target(spec: dict) -> str:
    """What an ``option_sweep`` figure sweeps: ``sampler`` (default) or ``layout``."""
    return spec.get("sweep", "sampler")


def _format_options(dataset: dict) -> dict:
    """A dataset's layout options less those that only pick the masked positions (an
    evaluation-only dataset may change them: ``Layout.eval_options``)."""
    from repro.tokenization.layouts import LAYOUTS

    out = {}
    for name, opts in (dataset.get("layouts") or {}).items():
        free = LAYOUTS[name].eval_options if name in LAYOUTS else ()
        out[name] = {k: v for k, v in (opts or {}).items() if k not in free}
    return out


#: keys of a sampler's config that the workflow reads and the method's sampler never sees:
#: ``max_examples`` caps the evaluation rows of the sampler's sample jobs
WORKFLOW_SAMPLER_KEYS: tuple[str, ...] = ("max_examples",)


def method_sampler(cfg: dict) -> dict:
    """A config's sampler without the keys only the workflow reads (:data:`WORKFLOW_SAMPLER_KEYS`)."""
    return {k: v for k, v in cfg.items() if k not in WORKFLOW_SAMPLER_KEYS}


class ConfigError(ValueError):
    """The config is well-typed (the schema passed) but inconsistent; the message names the key."""


@contextlib.contextmanager
def _config_path(where: str, add_key: bool = True, suffix: str = "") -> Iterator[None]:
    """Turn a stage's :class:`InputError` into a :class:`ConfigError` prefixed with the config path
    ``where`` (plus the option an :class:`OptionError` names, if ``add_key``)."""
    try:
        yield
    except InputError as err:
        key = getattr(err, "key", None)
        at = f"{where}.{key}" if key and add_key else where
        raise ConfigError(f"{at}: {err}{suffix}") from None


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@cache
def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _module_file(dotted: str) -> str | None:
    """``repro.a.b`` -> ``a/b.py`` or ``a/b/__init__.py`` (relative to src/repro), if it exists."""
    parts = dotted.split(".")[1:]
    for rel in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
        if rel != ".py" and (PACKAGE_DIR / rel).is_file():
            return rel
    return None


@cache
def _direct_imports(rel: str) -> tuple[str, ...]:
    """Package files imported anywhere in ``rel`` (top level or inside functions)."""
    tree = ast.parse((PACKAGE_DIR / rel).read_text(encoding="utf-8"), filename=rel)
    package = ["repro", *Path(rel).parent.parts]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name == "repro" or not name.startswith("repro."):
                continue
            target = _module_file(name)
            if target is not None and target != rel:
                found.add(target)
    return tuple(sorted(found))


def import_closure(*entries: str) -> list[str]:
    """``entries`` plus every ``repro`` module they import, transitively (registry excluded)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        rel = todo.pop()
        if rel in seen or rel in _NOT_TRACKED:
            continue
        seen.add(rel)
        todo.extend(_direct_imports(rel))
    return sorted(seen)


def source_digest(*patterns: str) -> str:
    """Content digest of package files (globs relative to ``src/repro``), 16 hex chars.

    Hashes names and contents, never mtimes: ``touch`` changes nothing, an edit changes it.
    """
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in PACKAGE_DIR.glob(pattern) if p.is_file())
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(_file_sha(path).encode())
    return h.hexdigest()[:16]


def stage_digest(stage: str) -> str:
    """Content digest of the package files one stage runs (see :data:`STAGE_SOURCES`)."""
    return source_digest(*import_closure(*STAGE_SOURCES[stage]))


def lock_digest() -> str:
    """Digest of the pinned environment: library versions change tokenisation and scores."""
    lock = REPO_DIR / "envs" / "requirements.lock"
    return _file_sha(lock)[:16] if lock.exists() else "no-lock"


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_experiments(experiments: dict[str, dict]) -> dict[str, dict]:
    """Resolve ``extends:`` chains (ablations = a base experiment + overrides)."""
    resolved: dict[str, dict] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict:
        if name in resolved:
            return resolved[name]
        if name not in experiments:
            raise ConfigError(f"experiments.{chain[-1]}.extends: unknown experiment {name!r}")
        if name in chain:
            raise ConfigError(f"experiments: 'extends' cycle {' -> '.join((*chain, name))}")
        exp = copy.deepcopy(experiments[name])  # the catalogue adds sweep samplers to it
        parent = exp.pop("extends", None)
        if parent is not None:
            exp = deep_merge(resolve(parent, (*chain, name)), exp)
        resolved[name] = exp
        return exp

    for name in experiments:
        resolve(name, ())
    return resolved


def metric_kinds() -> tuple[set[str], set[str]]:
    """(per-file kinds, group kinds) implemented in :mod:`repro.metrics` (a light import)."""
    from repro import metrics

    group = set(getattr(metrics, "GROUP_METRICS", {}))
    return set(metrics.METRICS) - group, group


@dataclass(frozen=True)
class Cell:
    """One (dataset, experiment, sampler, nfe) point of the catalogue, with its sample seeds.

    ``mbr``: quality columns read the MBR selection over seeds 0..mbr-1 (DiffuSeq's MBR-10);
    ``group``: group metrics (self-BLEU, div-4) are computed over seeds 0..group-1 (DiffuSeq: 3).
    """

    dataset: str
    experiment: str
    sampler: str
    nfe: int
    seeds: tuple[int, ...]
    mbr: int = 0
    group: int = 0

    def score_path(self, draw: str) -> str:
        """``draw`` is ``seed<s>``, ``mbr<k>`` or ``group<k>``."""
        return (f"results/scores/{self.dataset}/{self.experiment}/{self.sampler}/nfe{self.nfe}/"
                f"{draw}.json")


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


class Catalogue:
    """The validated config, expanded into the jobs each table and figure needs."""

    def __init__(self, config: dict):
        self.config = config
        self.datasets: dict[str, dict] = dict(config["datasets"])
        self.experiments = resolve_experiments(config["experiments"])
        self.metrics: dict[str, dict] = config.get("metrics", {})
        self.tables: dict[str, dict] = config.get("tables", {})
        self.figures: dict[str, dict] = config.get("figures", {})
        self.judges: dict[str, dict] = config.get("judges", {})
        #: (experiment, sampler) -> config path of the figure value a swept sampler comes from
        self._sweep_origin: dict[tuple[str, str], str] = {}
        self._check_sweeps()
        self._add_sweep_samplers()
        self._add_sweep_datasets()
        self._check()

    def _check_sweeps(self) -> None:
        """What every ``option_sweep`` figure needs, whatever it sweeps."""
        for name, spec in self.figures.items():
            if spec.get("kind") != OPTION_SWEEP:
                continue
            where = f"figures.{name}"
            if not spec.get("option") or not spec.get("values"):
                raise ConfigError(f"{where}: an option_sweep figure needs 'option' and 'values'")
            if sweep_target(spec) not in SWEEP_TARGETS:
                raise ConfigError(f"{where}.sweep: {spec['sweep']!r} is not one of "
                                  f"{list(SWEEP_TARGETS)}")
            for i, row in enumerate(spec["series"]):
                if isinstance(row["nfe"], list):
                    raise ConfigError(f"{where}.series[{i}].nfe: an option_sweep series takes one "
                                      f"NFE (got {row['nfe']}); add a series per NFE")

    def _add_sweep_samplers(self) -> None:
        """Give each experiment of a ``sweep: sampler`` figure one sampler per swept value."""
        for name, spec in self.figures.items():
            if spec.get("kind") != OPTION_SWEEP or sweep_target(spec) != "sampler":
                continue
            where = f"figures.{name}"
            option, values = spec["option"], spec["values"]
            for i, row in enumerate(spec["series"]):
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
        from repro.tokenization.layouts import LAYOUTS

        for name, spec in self.figures.items():
            if spec.get("kind") != OPTION_SWEEP or sweep_target(spec) != "layout":
                continue
            option = spec["option"]
            for i, row in enumerate(spec["series"]):
                swhere = f"figures.{name}.series[{i}]"
                base = self.datasets.get(row["dataset"])
                exp = self.experiments.get(row["experiment"])
                if base is None or exp is None or exp.get("method") not in REGISTRY:
                    continue  # _check_row / _cells name the problem
                layout = self.layout(row["dataset"], row["experiment"])
                if option not in LAYOUTS[layout].eval_options:
                    raise ConfigError(
                        f"figures.{name}.option: {option!r} cannot be swept on layout {layout!r} "
                        f"(series[{i}]); a layout sweep changes only options that choose the "
                        f"masked positions: {list(LAYOUTS[layout].eval_options)}"
                    )
                for value in spec["values"]:
                    derived = sweep_name(row["dataset"], option, value)
                    cfg = copy.deepcopy(base)
                    cfg["train_on"] = base.get("train_on", row["dataset"])
                    layouts = cfg.setdefault("layouts", {})
                    layouts[layout] = {**(layouts.get(layout) or {}), option: value}
                    old = self.datasets.setdefault(derived, cfg)
                    if old is not cfg:  # a second series on the same dataset: merge its layout
                        if old["layouts"].get(layout, cfg["layouts"][layout]) != cfg["layouts"][layout]:
                            raise ConfigError(f"{swhere}: dataset {derived!r} already exists with "
                                              "other options; rename it")
                        old["layouts"][layout] = cfg["layouts"][layout]

    def _sweep_rows(self, figure: str) -> list[dict]:
        """An ``option_sweep`` figure's series expanded into one row per value (with its ``x``)."""
        spec = self.figures[figure]
        if sweep_target(spec) == "layout":
            return [{**row, "dataset": sweep_name(row["dataset"], spec["option"], value),
                     "x": value, "base_dataset": row["dataset"]}
                    for row in spec["series"] for value in spec["values"]]
        return [{**row, "sampler": sweep_name(row["sampler"], spec["option"], value),
                 "x": value, "base_sampler": row["sampler"]}
                for row in spec["series"] for value in spec["values"]]

    # ------------------------------------------------------------------ validation
    def _check(self) -> None:
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
        for name, exp in self.experiments.items():
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
                cap = scfg.get("max_examples")
                if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                    raise ConfigError(
                        f"{where}.samplers.{sname}.max_examples: expected an integer >= 1 (the "
                        f"evaluation rows this sampler completes), got {cap!r}"
                    )
                if "weights" in scfg:
                    self._check_weights(f"{where}.samplers.{sname}.weights", scfg["weights"], exp)
                if scfg["kind"] not in info.samplers:
                    raise ConfigError(
                        f"{where}.samplers.{sname}.kind: {scfg['kind']!r} is not a sampler of "
                        f"method {exp['method']!r}; choose one of {list(info.samplers)}"
                    )
                swept = self._sweep_origin.get((name, sname))
                if info.sampler_checks is not None:
                    with _config_path(swept or f"{where}.samplers.{sname}", swept is None):
                        check_sampler_config(info.sampler_checks, method_sampler(scfg),
                                             exp.get("model", {}))
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
        for kind, entries in (("tables", self.tables), ("figures", self.figures)):
            for name, spec in entries.items():
                if self.is_analysis(kind, name):
                    for i, row in enumerate(spec["series"]):
                        self._check_row(f"{kind}.{name}.series[{i}]", row, sampler=False)
                    continue
                columns = spec.get("columns", spec.get("metrics", []))
                for i, col in enumerate(columns):
                    if col["metric"] not in self.metrics:
                        raise ConfigError(
                            f"{kind}.{name} column/metric [{i}]: unknown metric {col['metric']!r}; "
                            f"define it under 'metrics:' (known: {sorted(self.metrics)})"
                        )
                for i, row in enumerate(spec.get("rows", spec.get("series", []))):
                    where = f"{kind}.{name}.{'rows' if kind == 'tables' else 'series'}[{i}]"
                    self._check_row(where, row)
                    self._check_draws(where, row, columns)
                    self._check_nfes(where, row, spec)
                if kind == "tables":
                    self._check_pass_at_k(name, spec)
        self._check_metric_options()
        self._check_layout_options()

    def _check_nfes(self, where: str, row: dict, spec: dict) -> None:
        """Every NFE of a row must be one its sampler can make (DiffuSeq ddpm: exactly T)."""
        exp = self.experiments[row["experiment"]]
        checks = REGISTRY[exp["method"]].sampler_checks
        if checks is None:
            return
        samplers = [row["sampler"]]
        if spec.get("kind") == OPTION_SWEEP and sweep_target(spec) == "sampler":
            samplers += [sweep_name(row["sampler"], spec["option"], v) for v in spec["values"]]
        for i, nfe in enumerate(self._nfes(row)):
            at = f"{where}.nfe" + (f"[{i}]" if isinstance(row["nfe"], list) else "")
            for sampler in samplers:
                with _config_path(at, False):
                    check_sampler_config(checks, method_sampler(exp["samplers"][sampler]),
                                         exp.get("model", {}),
                                         nfe)

    def _check_pass_at_k(self, table: str, spec: dict) -> None:
        """A pass@k column needs k sample seeds in every cell (repro.report's own check)."""
        from repro.report import check_pass_at_k_column

        for ci, col in enumerate(spec.get("columns", [])):
            if col.get("aggregate") != "pass_at_k":
                continue
            for ri, row in enumerate(spec["rows"]):
                for _, c in self._cells([row], f"tables.{table}"):
                    n = len(self.column_draws(c, col["metric"]))
                    with _config_path(f"tables.{table}.columns[{ci}]",
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
            with _config_path(f"metrics.{name}"):
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
                    with _config_path(f"metrics.{name}"):
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
                with _config_path(where):
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

    def embedding_source(self, experiment: str) -> str | None:
        """The experiment whose word embeddings ``experiment`` flows in (``from:<name>``), if any."""
        value = self.experiments[experiment].get("model", {}).get("embeddings")
        if isinstance(value, str) and value.startswith(EMBEDDING_PREFIX):
            return value[len(EMBEDDING_PREFIX):]
        return None

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
        if self.experiments[src]["method"] not in EMBEDDING_EXPORTERS:
            raise ConfigError(
                f"{where}: experiment {src!r} uses method {self.experiments[src]['method']!r}, "
                f"which has no word embeddings to export; use one of {list(EMBEDDING_EXPORTERS)}"
            )
        if self.embedding_source(src) is not None:
            raise ConfigError(f"{where}: {src!r} itself takes exported embeddings; name the source")
        dims = [self.experiments[e].get("model", {}).get("emb_dim", 128) for e in (name, src)]
        if dims[0] != dims[1]:
            raise ConfigError(
                f"{where}: emb_dim {dims[0]} differs from experiment {src!r}'s emb_dim {dims[1]}"
            )

    def embeddings_path(self, dataset: str, experiment: str) -> str:
        return f"results/embeddings/{dataset}/{experiment}/embeddings.npy"

    def train_extra_inputs(self, dataset: str, experiment: str) -> list[str]:
        """Files a training run reads besides its tokenized data (exported embeddings)."""
        src = self.embedding_source(experiment)
        return [] if src is None else [self.embeddings_path(dataset, src)]

    def _check_draws(self, where: str, row: dict, columns: list[dict]) -> None:
        seeds = row.get("seeds")
        for key in ("mbr", "group"):
            k = row.get(key, 0)
            if k and seeds is not None and not set(range(k)) <= set(seeds):
                raise ConfigError(
                    f"{where}.{key}: {key} {k} uses sample seeds 0..{k - 1}; list them in 'seeds' "
                    f"(or leave 'seeds' out)"
                )
        _, group_kinds = metric_kinds()
        for col in columns:
            if self.metrics[col["metric"]]["kind"] in group_kinds and not row.get("group"):
                raise ConfigError(
                    f"{where}: column {col['label']!r} is a group metric (several samples per "
                    f"source); set 'group: k' on the row (DiffuSeq uses 3)"
                )

    def is_analysis(self, kind: str, name: str) -> bool:
        """A figure drawn from a model analysis (loss against t), not from samples' scores."""
        return kind == "figures" and self.figures[name]["kind"] in ANALYSIS_FIGURES

    def is_samples_table(self, table: str) -> bool:
        """A table of generated texts (FM-seq2seq Table 1), not of scores."""
        return self.tables[table].get("kind", "scores") == "samples"

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

    # ------------------------------------------------------------------ cells and paths
    @staticmethod
    def _nfes(row: dict) -> list[int]:
        nfe = row["nfe"]
        return list(nfe) if isinstance(nfe, list) else [nfe]

    def _cells(self, rows: list[dict], where: str) -> list[tuple[dict, Cell]]:
        out = []
        for row in rows:
            mbr, group = row.get("mbr", 0), row.get("group", 0)
            seeds = tuple(row.get("seeds", range(max(mbr, group, 1))))
            for nfe in self._nfes(row):
                out.append((row, Cell(row["dataset"], row["experiment"], row["sampler"], nfe,
                                      seeds, mbr, group)))
        return out

    def table_cells(self, table: str) -> list[tuple[dict, Cell]]:
        return self._cells(self.tables[table]["rows"], f"tables.{table}")

    def figure_cells(self, figure: str) -> list[tuple[dict, Cell]]:
        if self.is_analysis("figures", figure):
            return []
        rows = (self._sweep_rows(figure) if self.figures[figure]["kind"] == OPTION_SWEEP
                else self.figures[figure]["series"])
        return self._cells(rows, f"figures.{figure}")

    def analysis_series(self, figure: str) -> list[dict]:
        """Series of an analysis figure with their input file."""
        spec = self.figures[figure]
        out = []
        for row in spec["series"]:
            base = f"results/analysis/{self.source(row['dataset'])}/{row['experiment']}"
            out.append({"label": row["label"], "dataset": row["dataset"],
                        "experiment": row["experiment"],
                        "path": f"{base}/{ANALYSIS_FIGURES[spec['kind']]}"})
        return out

    def samples_path(self, c: Cell, seed: int | None = None) -> str:
        s = c.seeds[0] if seed is None else seed
        return (f"results/samples/{c.dataset}/{c.experiment}/{c.sampler}/nfe{c.nfe}/"
                f"seed{s}.jsonl")

    @staticmethod
    def default_draws(c: Cell) -> list[str]:
        """The files a per-file metric of this cell is read from: the MBR pick, else each seed."""
        return [f"mbr{c.mbr}"] if c.mbr else [f"seed{s}" for s in c.seeds]

    def column_draws(self, c: Cell, metric: str) -> list[str]:
        """Draws a column's metric is computed on (every kind is a known one: ``_check``)."""
        per_file, group = metric_kinds()
        kind = self.metrics[metric]["kind"]
        if kind in group:
            return [f"group{c.group}"]
        return self.default_draws(c) if kind in per_file else []

    def _spec_columns(self, kind: str, name: str) -> list[dict]:
        spec = (self.tables if kind == "tables" else self.figures)[name]
        return spec.get("columns", spec.get("metrics", []))

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
            return list(dict.fromkeys(self.samples_path(c) for _, c in self.table_cells(table)))
        return self._inputs("tables", table, self.table_cells(table))

    def figure_inputs(self, figure: str) -> list[str]:
        if self.is_analysis("figures", figure):
            return [s["path"] for s in self.analysis_series(figure)]
        return self._inputs("figures", figure, self.figure_cells(figure))

    def targets(self) -> list[str]:
        """Every deliverable of the catalogue (``rule paper``)."""
        out = [f"results/tables/{t}.csv" for t in self.tables]
        out += [f"results/figures/{f}.png" for f in self.figures]
        return out

    def source(self, dataset: str) -> str:
        """The dataset whose tokenizer and trained models serve ``dataset`` (``train_on``)."""
        return self.datasets[dataset].get("train_on", dataset)

    def layout(self, dataset: str, experiment: str) -> str:
        method = self.experiments[experiment]["method"]
        return REGISTRY[method].layouts[self.datasets[dataset]["kind"]]

    def tokenized_files(self, dataset: str, layout: str, splits=SPLITS) -> list[str]:
        base = f"results/tokenized/{dataset}/{layout}"
        return [f"{base}/{s}.{a}.npy" for s in splits for a in ("ids", "cond")] + [f"{base}/meta.json"]

    # ------------------------------------------------------------------ per-rule params
    def needs_download(self, dataset: str) -> bool:
        """Some split of ``dataset`` is read from the hub (not synthetic, not all ``local``)."""
        from repro.data import needs_download

        return needs_download(self.datasets[dataset])

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

    def train_params(self, dataset: str, experiment: str) -> str:
        exp = self.experiments[experiment]
        cfg = {k: exp.get(k, {}) for k in ("method", "model", "train")}
        src = self.embedding_source(experiment)
        if src is not None:  # the method reads the exported matrix from this path
            cfg["model"] = {**cfg["model"], "embeddings": self.embeddings_path(dataset, src)}
        return canonical_json(cfg)

    def method_digest(self, experiment: str, stage: str) -> str:
        method = self.experiments[experiment]["method"]
        return source_digest(*import_closure(*STAGE_SOURCES[stage], *method_source_files(method)))

    def sampler_params(self, experiment: str, sampler: str) -> str:
        """The sampler's config as ``sample_text`` passes it on (``kind`` and options; the keys of
        :data:`WORKFLOW_SAMPLER_KEYS` are read by the workflow and left out)."""
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

    def metrics_for(
        self, dataset: str, experiment: str, sampler: str, nfe: int, draw: str = "seed0"
    ) -> str:
        """Metrics (name -> cfg) that some table or figure reads from this samples file."""
        names: set[str] = set()
        for kind, entries in (("tables", self.tables), ("figures", self.figures)):
            for name in entries:
                cells = self.table_cells(name) if kind == "tables" else self.figure_cells(name)
                for _, c in cells:
                    if (c.dataset, c.experiment, c.sampler, c.nfe) != (
                            dataset, experiment, sampler, nfe):
                        continue
                    for col in self._spec_columns(kind, name):
                        if draw in self.column_draws(c, col["metric"]):
                            names.add(col["metric"])
        return canonical_json({n: self._metric_cfg(n) for n in sorted(names)})

    # ------------------------------------------------------------------ judges
    def judge_path(self, judge: str) -> str:
        """Local directory of a judge: trained by train_judge, downloaded, or given by the user."""
        j = self.judges[judge]
        if "train" in j:
            return f"results/judges/{judge}"
        if "hub" in j:
            return f"resources/judges/{judge}"
        return j["local"]

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

    def table_spec(self, table: str) -> str:
        spec = self.tables[table]
        if self.is_samples_table(table):
            return canonical_json({
                "name": table, "kind": "samples", "title": spec.get("title", table),
                "source": spec.get("source", ""), "examples": spec["examples"],
                "rows": [{"label": row["label"], "dataset": c.dataset, "experiment": c.experiment,
                          "method": self.experiments[c.experiment]["method"],
                          "sampler": c.sampler, "nfe": c.nfe, "samples": self.samples_path(c)}
                         for row, c in self.table_cells(table)],
            })
        rows = []
        for row, c in self.table_cells(table):
            default = [c.score_path(d) for d in self.default_draws(c)]
            by_column = {}
            for col in spec["columns"]:
                paths = [c.score_path(d) for d in self.column_draws(c, col["metric"])]
                if paths and paths != default:
                    by_column[col["label"]] = paths
            rows.append({
                "label": row["label"], "dataset": c.dataset, "experiment": c.experiment,
                "method": self.experiments[c.experiment]["method"], "sampler": c.sampler,
                "nfe": c.nfe, "seeds": None if c.mbr else list(c.seeds), "scores": default,
                **({"scores_by_column": by_column} if by_column else {}),
            })
        return canonical_json({
            "name": table, "title": spec.get("title", table), "source": spec.get("source", ""),
            "columns": spec["columns"], "rows": rows,
        })

    def figure_spec(self, figure: str) -> str:
        spec = self.figures[figure]
        if self.is_analysis("figures", figure):
            return canonical_json({
                "name": figure, "title": spec.get("title", figure), "kind": spec["kind"],
                "source": spec.get("source", ""), "series": self.analysis_series(figure),
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
        sweep = {key: spec[key] for key in ("option", "values", "x_label", "log_x", "sweep")
                 if key in spec}
        return canonical_json({
            "name": figure, "title": spec.get("title", figure), "kind": spec["kind"],
            "source": spec.get("source", ""), "metrics": spec["metrics"],
            "series": list(series.values()), **sweep,
        })

    def paper_values(self, kind: str, name: str) -> list[str]:
        """The paper-values CSV of a table/figure: the configured one (which must then exist), else
        ``config/paper_values/<name>.csv`` if present, else none (a table of our own)."""
        entry = (self.tables if kind == "tables" else self.figures)[name]
        if "paper_values" in entry:
            return [entry["paper_values"]]
        default = f"config/paper_values/{name}.csv"
        return [default] if Path(default).is_file() else []

    def resource(self, stage: str, key: str, default):
        """``resources.<stage>.<key>`` of the config, or ``default``."""
        return self.config["resources"].get(stage, {}).get(key, default)

    # ------------------------------------------------------------------ wildcard constraints
    def wildcard_pattern(self, kind: str) -> str:
        names = {
            "dataset": self.datasets,
            "experiment": self.experiments,
            "sampler": {s for e in self.experiments.values() for s in e.get("samplers", {})},
            "table": self.tables,
            "figure": self.figures,
            "judge": self.judges,
        }[kind]
        return "|".join(re.escape(n) for n in sorted(names)) or "^$"
