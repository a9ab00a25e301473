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
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from repro.io import InputError
from repro.metrics import text
from repro.metrics.base import MetricFn, MetricResult, check_fields

__all__ = [
    "METRICS",
    "MetricFn",
    "MetricResult",
    "compute_metric",
    "metric_options",
    "parse_metric_config",
]

METRICS: dict[str, MetricFn] = {
    fn.kind: fn
    for fn in (
        text.sentence_bleu_nltk,
        text.bleu_klflow,
        text.corpus_sacrebleu,
        text.rouge_l_rouge_score,
        text.rouge_l_torchmetrics,
        text.unigram_entropy,
    )
}


def _lookup(kind: str) -> MetricFn:
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
        raise InputError(
            f"metric kind {kind!r}: unknown option(s) {', '.join(unknown)}; its options: {listed}"
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
    except InputError as err:
        raise InputError(f"metrics config {name!r}: {err}") from None
    return cfg["kind"], options


def compute_metric(kind: str, samples: Sequence[dict], **opts: Any) -> MetricResult:
    """Compute metric ``kind`` with options ``opts`` over ``samples`` (rows of a samples file)."""
    fn = _lookup(kind)
    _check_options(kind, opts)
    check_fields(samples, fn.fields)
    return fn(samples, **opts)
