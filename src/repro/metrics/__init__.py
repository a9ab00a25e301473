"""The metric registry: ``kind`` -> metric function, used by the score_samples stage.

The config names each metric with a key of its choosing, a ``kind`` from :data:`METRICS` and the
kind's options, flat beside ``kind``::

    metrics:
      bleu: {kind: sentence_bleu_nltk, clean: diffuseq}
      rouge_l_klflow: {kind: rouge_l_rouge_score}

Tables and figures refer to the key. Each kind is one function (see :mod:`repro.metrics.base` for
the protocol and :mod:`repro.metrics.text` for the paper-by-paper definitions); its keyword-only
parameters are its options, so unknown options are rejected from the signature alone. To add a
metric, write the function with the :func:`~repro.metrics.base.metric` decorator and list it here.

Two sorts of kinds share one namespace, :data:`METRICS`:

* per-file metrics ``fn(samples, **options)``: one samples file, one value per sample
  (:func:`compute_metric`);
* group metrics ``fn(groups, **options)`` (:data:`GROUP_METRICS`, decorated with
  :func:`~repro.metrics.base.group_metric`): k >= 2 samples lists of the same sources (one file
  per seed) aligned row by row, one value per source (:func:`compute_group_metric`) — DiffuSeq's
  self-BLEU and div-4.

Importing this package stays light (heavy packages are imported inside the functions). Every
module is imported by name, so the score stage's code digest (repro.workflow.digests) covers it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from repro.io import InputError, OptionError
from repro.metrics import code, diversity, judge, semantic, text, timing
from repro.metrics.base import (
    MIN_GROUP_SIZE,
    GroupMetricFn,
    MetricFn,
    MetricResult,
    check_fields,
)

__all__ = [
    "GROUP_METRICS",
    "METRICS",
    "GroupMetricFn",
    "MetricFn",
    "MetricResult",
    "compute_group_metric",
    "compute_metric",
    "is_group_metric",
    "metric_options",
    "needs_gpu",
    "packaged_models",
    "parse_metric_config",
]

_FUNCTIONS: list[Any] = [
    text.sentence_bleu_nltk,
    text.bleu_klflow,
    text.corpus_sacrebleu,
    text.rouge_l_rouge_score,
    text.rouge_l_torchmetrics,
    text.unigram_entropy,
    semantic.bertscore,
    diversity.dist_1,
    diversity.length_diffuseq,
    diversity.length,
    diversity.self_bleu,
    diversity.div_4,
    code.code_exec,
    judge.gen_ppl,
    judge.judge_entropy,
    timing.wall_seconds,
]



#: every metric kind -> its function (per-file and group metrics)
METRICS: dict[str, MetricFn | GroupMetricFn] = {fn.kind: fn for fn in _FUNCTIONS}
#: the group metrics among :data:`METRICS` (k aligned samples lists in, one value per source)
GROUP_METRICS: dict[str, GroupMetricFn] = {
    kind: fn for kind, fn in METRICS.items() if getattr(fn, "group", False)
}


def is_group_metric(kind: str) -> bool:
    """Whether ``kind`` is a group metric (unknown kinds raise :class:`InputError`)."""
    _lookup(kind)
    return kind in GROUP_METRICS


def needs_gpu(kind: str) -> bool:
    """Whether metric ``kind`` runs a neural model (a GPU when its job has one); False if unknown."""
    return bool(getattr(METRICS.get(kind), "gpu", False))


def packaged_models(kind: str) -> tuple[str, ...]:
    """Model names metric ``kind`` finds inside installed packages (nothing to download)."""
    return tuple(getattr(METRICS.get(kind), "packaged_models", ()))


def _lookup(kind: str) -> MetricFn | GroupMetricFn:
    if kind not in METRICS:
        raise InputError(
            f"unknown metric kind {kind!r}; implemented kinds: {', '.join(sorted(METRICS))}"
        )
    return METRICS[kind]


def metric_options(kind: str) -> dict[str, Any]:
    """The options of metric ``kind`` with their defaults."""
    params = inspect.signature(_lookup(kind)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_options(kind: str, options: dict[str, Any]) -> None:
    allowed = metric_options(kind)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
        raise OptionError(
            unknown[0],
            f"metric kind {kind!r}: unknown option(s) {', '.join(unknown)}; its options: {listed}",
        )


def parse_metric_config(name: str, cfg: Any) -> tuple[str, dict[str, Any]]:
    """Validate one metrics-config entry ``name: {kind: ..., <options>}`` -> (kind, options)."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("kind"), str):
        raise InputError(
            f"metrics config {name!r}: expected an object with a string 'kind' and the kind's "
            f'options, e.g. {{"kind": "sentence_bleu_nltk"}}; got {cfg!r}'
        )
    options = {k: v for k, v in cfg.items() if k != "kind"}
    try:
        _check_options(cfg["kind"], options)
    except OptionError as err:
        raise OptionError(err.key, f"metrics config {name!r}: {err}") from None
    except InputError as err:
        raise OptionError("kind", f"metrics config {name!r}: {err}") from None
    return cfg["kind"], options


def compute_metric(kind: str, samples: Sequence[dict], **opts: Any) -> MetricResult:
    """Compute metric ``kind`` with options ``opts`` over ``samples`` (rows of a samples file)."""
    fn = _lookup(kind)
    if kind in GROUP_METRICS:
        raise InputError(
            f"metric kind {kind!r} is a group metric: it scores k >= {MIN_GROUP_SIZE} samples of "
            "each source (one samples file per seed, aligned by id), not one samples file; "
            "use compute_group_metric / pass k files to python -m repro.score --samples"
        )
    _check_options(kind, opts)
    check_fields(samples, fn.fields)
    return fn(samples, **opts)


def compute_group_metric(
    kind: str, groups: Sequence[Sequence[dict]], **opts: Any
) -> MetricResult:
    """Compute group metric ``kind`` over ``groups``: k samples lists aligned row by row.

    ``groups[s][i]`` is the sample of source ``i`` in the ``s``-th samples file; every list must
    have the same length and, where rows carry an ``id``, the same id at each position
    (:func:`repro.score.align_by_id` aligns files by id first).
    """
    fn = _lookup(kind)
    if kind not in GROUP_METRICS:
        raise InputError(
            f"metric kind {kind!r} scores one samples file at a time, not a group of "
            f"{len(groups)}; use compute_metric on each file (group kinds: "
            f"{', '.join(sorted(GROUP_METRICS))})"
        )
    _check_options(kind, opts)
    if len(groups) < MIN_GROUP_SIZE:
        raise InputError(
            f"group metric {kind!r} needs k >= {MIN_GROUP_SIZE} samples lists (one per seed), "
            f"got {len(groups)}"
        )
    n = len(groups[0])
    for s, rows in enumerate(groups):
        if len(rows) != n:
            raise InputError(
                f"group metric {kind!r}: samples list {s} has {len(rows)} rows, list 0 has {n}; "
                "every list must hold the same sources in the same order"
            )
        check_fields(rows, fn.fields, where=lambda i, s=s: f"samples list {s}, row {i}")
    for i in range(n):
        ids = [rows[i].get("id") for rows in groups]
        if any(x != ids[0] for x in ids):
            raise InputError(
                f"group metric {kind!r}: row {i} has ids {ids} across the samples lists; "
                "align them by id first (repro.score.align_by_id)"
            )
    return fn(groups, **opts)
