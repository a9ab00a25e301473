"""The metric registry: lookup, option checks, field checks."""

from __future__ import annotations

import inspect

import pytest

from repro.io import InputError
from repro.metrics import METRICS, MetricResult, compute_metric, metric_options, parse_metric_config
from repro.metrics.base import FIELD_TYPES

SAMPLES = [{"id": "a", "hypothesis": "a b c d", "reference": "a b c d", "hypothesis_ids": [1, 2]}]


def test_registry_keys_match_kinds_and_fields_are_known():
    assert set(METRICS) >= {
        "sentence_bleu_nltk", "bleu_klflow", "corpus_sacrebleu",
        "rouge_l_rouge_score", "rouge_l_torchmetrics", "unigram_entropy",
    }  # fmt: skip
    for kind, fn in METRICS.items():
        assert fn.kind == kind
        assert set(fn.fields) <= set(FIELD_TYPES)
        params = list(inspect.signature(fn).parameters.values())
        # one positional (samples), the rest keyword-only options with defaults
        assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
        assert all(p.default is not inspect.Parameter.empty for p in params[1:])


#: Kinds that need a model, a judge or several sample files, each covered by its own test module
#: (test_semantic, test_judge_metrics, test_code, test_diversity, test_timing); the rest run here on defaults.
NEEDS_MORE = {
    "rouge_l_torchmetrics", "bertscore", "gen_ppl", "judge_entropy", "code_exec", "wall_seconds"
}


def test_every_metric_returns_a_metric_result():
    from repro.metrics import GROUP_METRICS

    for kind in METRICS:
        if kind in NEEDS_MORE or kind in GROUP_METRICS:
            continue
        res = compute_metric(kind, SAMPLES)
        assert isinstance(res, MetricResult)
        assert len(res.per_example) == len(SAMPLES)
        assert isinstance(res.value, float) and res.variant


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(
        InputError, match=r"unknown metric kind 'sentence_blue'.*sentence_bleu_nltk"
    ):
        compute_metric("sentence_blue", SAMPLES)


def test_unknown_option_lists_the_allowed_ones():
    with pytest.raises(InputError, match=r"unknown option\(s\) smooth.*clean \(default 'none'\)"):
        compute_metric("sentence_bleu_nltk", SAMPLES, smooth=True)
    assert metric_options("bleu_klflow") == {"clean": "none", "max_order": 4, "empty": "drop"}
    assert metric_options("unigram_entropy") == {"base": "e"}


@pytest.mark.parametrize(
    "kind, opts, pattern",
    [
        ("sentence_bleu_nltk", {"clean": "bert"}, r"clean='bert' is not one of 'none', 'diffuseq'"),
        ("unigram_entropy", {"base": 10}, r"base=10 is not one of 'e', '2'"),
        ("bleu_klflow", {"max_order": 0}, r"max_order must be a positive integer"),
    ],
)
def test_bad_option_values(kind, opts, pattern):
    with pytest.raises(InputError, match=pattern):
        compute_metric(kind, SAMPLES, **opts)


def test_missing_or_mistyped_field():
    with pytest.raises(InputError, match=r"sample 0: missing field 'reference'"):
        compute_metric("bleu_klflow", [{"hypothesis": "x"}])
    with pytest.raises(InputError, match=r"'hypothesis_ids' must be a list of integer token ids"):
        compute_metric("unigram_entropy", [{"hypothesis_ids": "1 2 3"}])


def test_parse_metric_config():
    assert parse_metric_config("bleu", {"kind": "sentence_bleu_nltk", "clean": "diffuseq"}) == (
        "sentence_bleu_nltk",
        {"clean": "diffuseq"},
    )
    with pytest.raises(InputError, match=r"metrics config 'bleu': expected an object"):
        parse_metric_config("bleu", "sentence_bleu_nltk")
    with pytest.raises(InputError, match=r"metrics config 'r': metric kind 'rouge_l_rouge_score'"):
        parse_metric_config("r", {"kind": "rouge_l_rouge_score", "use_stemmer": True})


def test_metric_result_of_examples_means_the_defined_values():
    r = MetricResult.of_examples([1.0, None, 2.0], "v")
    assert (r.value, r.variant, r.per_example, r.details) == (1.5, "v", [1.0, None, 2.0], {})
    assert MetricResult.of_examples([None], "v", {"n": 1}).value is None
