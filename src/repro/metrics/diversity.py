"""Diversity and length of generated text, as DiffuSeq's ``scripts/eval_seq2seq.py`` computes them.

Per-file metrics (one value per sample, averaged; docs/methods.md §5.1):

* ``dist_1``           intra-sentence distinct unigrams: |unique tokens| / |tokens| of each
  hypothesis on ``str.split()`` tokens, 0 for an empty one; mean over samples, 0–1.
* ``length_diffuseq``  DiffuSeq's "Len": ``len(recover.split(' '))``, artefact included (below).
* ``length``           words per hypothesis, ``len(text.split())``; mean over samples.

Group metrics (k samples of each source, one samples file per seed, rows aligned by id; see
:func:`repro.metrics.base.group_metric`):

* ``self_bleu``  per source, the mean over the k(k−1)/2 pairs i < j (in the order of the files) of
  NLTK sentence BLEU(hypothesis = s_i, reference = s_j), ``SmoothingFunction().method4``,
  ``str.split()`` tokens — one direction only, as DiffuSeq (its issue #69); then the mean over
  sources, 0–1 (lower = more diverse).
* ``div_4``      per source, |distinct 4-grams| / |4-grams| pooled over the k outputs (0 when the
  outputs hold no 4-gram); then the mean over sources, 0–1.

The option ``clean`` is :mod:`repro.metrics.text`'s (``"diffuseq"`` removes the strings ``[SEP]``,
``[CLS]``, ``[PAD]``); whitespace-split tokens do not depend on it otherwise.

**The Len artefact.** DiffuSeq decodes the generated target region (trailing ``[PAD]`` popped) with
the BERT tokenizer, so a typical output reads ``"[CLS] how are you ? [SEP]"``; its evaluation
``strip()``s, *then* deletes the special strings, leaving ``" how are you ? "``, and counts
``len(recover.split(' '))`` = 6 for 4 words: each removed ``[CLS]``/``[SEP]`` leaves an empty token.
Our samples' ``hypothesis`` is clean decoded text (layouts drop special ids), so
``length_diffuseq`` rebuilds DiffuSeq's decoded string with ``markers="cls_sep"`` (the default):
``"[CLS] " + hypothesis + " [SEP]"`` (``"[CLS] [SEP]"`` for an empty hypothesis, 2 empty tokens),
then applies DiffuSeq's strip / remove / ``split(' ')``. With ``markers="none"`` the hypothesis is
taken as DiffuSeq's raw ``recover`` string (e.g. imported DiffuSeq outputs that still carry the
markers). Inner ``[PAD]`` strings or double spaces count as DiffuSeq counts them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from repro.metrics.base import (
    MetricResult,
    check_choice,
    group_metric,
    metric,
    package_version,
)
from repro.metrics.text import CLEAN_CHOICES, clean_text

MARKER_CHOICES = ("cls_sep", "none")


def _texts(kind: str, samples: Sequence[dict], clean: str) -> list[str]:
    check_choice(kind, "clean", clean, CLEAN_CHOICES)
    return [clean_text(s["hypothesis"], clean) for s in samples]


# --- NLTK sentence BLEU, shared with repro.mbr ------------------------------------------------


class NltkBleu:
    """NLTK ``sentence_bleu`` of one reference, weights (¼,¼,¼,¼), ``method4`` smoothing.

    Called on token lists. A side without tokens scores 0.0 without calling NLTK (NLTK 3.9.2
    returns 0 there too; its degenerate-input behaviour changed across versions, methods.md
    §5.1). ``n_warnings`` counts the warnings NLTK emitted.
    """

    def __init__(self) -> None:
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        self._bleu = sentence_bleu
        self._smoothing = SmoothingFunction().method4
        self.n_warnings = 0

    def __call__(self, hyp: Sequence[str], ref: Sequence[str]) -> float:
        if not hyp or not ref:
            return 0.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(self._bleu([ref], hyp, smoothing_function=self._smoothing))
        self.n_warnings += len(caught)
        return value

    @staticmethod
    def variant() -> str:
        return (
            f"nltk {package_version('nltk')} sentence_bleu, SmoothingFunction().method4, weights "
            "(0.25, 0.25, 0.25, 0.25), str.split() tokens"
        )


# --- per-file metrics ---------------------------------------------------------------------------


def distinct_ratio(tokens: Sequence[str]) -> float:
    """|unique tokens| / |tokens|, 0.0 without tokens."""
    return len(set(tokens)) / len(tokens) if tokens else 0.0


@metric("dist_1", fields=("hypothesis",))
def dist_1(samples: Sequence[dict], *, clean: str = "none") -> MetricResult:
    """DiffuSeq's dist-1: per hypothesis |unique unigrams| / |unigrams| (0 if empty), mean, 0–1."""
    texts = _texts("dist_1", samples, clean)
    per_example: list[float | None] = [distinct_ratio(t.split()) for t in texts]
    variant = (
        f"dist-1 (DiffuSeq eval_seq2seq.py): per hypothesis |unique|/|all| str.split() unigrams, "
        f"0 for an empty one, clean={clean}, mean over samples, 0-1 scale"
    )
    details = {"n_empty": sum(not t.split() for t in texts)}
    return MetricResult.of_examples(per_example, variant, details)


def diffuseq_recover(hypothesis: str, markers: str) -> str:
    """The string DiffuSeq's evaluation reads as ``recover`` for ``hypothesis``."""
    if markers == "none":
        return hypothesis
    return f"[CLS] {hypothesis} [SEP]" if hypothesis else "[CLS] [SEP]"


@metric("length_diffuseq", fields=("hypothesis",))
def length_diffuseq(
    samples: Sequence[dict], *, clean: str = "diffuseq", markers: str = "cls_sep"
) -> MetricResult:
    """DiffuSeq's "Len": mean of ``len(recover.split(' '))``, the empty-token artefact included.

    ``recover`` is :func:`diffuseq_recover` of the hypothesis, ``strip()``-ed, then cleaned with
    ``clean`` (``"diffuseq"``: ``[CLS]``, ``[SEP]``, ``[PAD]`` deleted), then split on single
    spaces: "how are you ?" → "[CLS] how are you ? [SEP]" → " how are you ? " → 6 (see the
    module docstring). ``markers="none"`` reads the hypothesis as DiffuSeq's raw string.
    """
    check_choice("length_diffuseq", "markers", markers, MARKER_CHOICES)
    check_choice("length_diffuseq", "clean", clean, CLEAN_CHOICES)
    per_example: list[float | None] = [
        float(len(clean_text(diffuseq_recover(s["hypothesis"], markers).strip(), clean).split(" ")))
        for s in samples
    ]
    variant = (
        f"DiffuSeq Len: len(recover.split(' ')) of the strip()-ed then cleaned string "
        f"(markers={markers}, clean={clean}; removed [CLS]/[SEP] leave empty tokens), "
        "mean over samples, tokens"
    )
    words = [len(clean_text(s["hypothesis"], clean).split()) for s in samples]
    details = {"mean_words": math.fsum(words) / len(words) if words else None}
    return MetricResult.of_examples(per_example, variant, details)


@metric("length", fields=("hypothesis",))
def length(samples: Sequence[dict], *, clean: str = "none") -> MetricResult:
    """Mean number of whitespace-separated words, ``len(text.split())``, of the hypotheses."""
    texts = _texts("length", samples, clean)
    per_example: list[float | None] = [float(len(t.split())) for t in texts]
    variant = f"words per hypothesis, len(str.split()), clean={clean}, mean over samples, tokens"
    return MetricResult.of_examples(per_example, variant)


# --- group metrics ------------------------------------------------------------------------------


def _group_texts(kind: str, groups: Sequence[Sequence[dict]], clean: str) -> list[list[str]]:
    """Per source, the k cleaned hypotheses in the order of the samples files."""
    check_choice(kind, "clean", clean, CLEAN_CHOICES)
    n = len(groups[0])
    return [[clean_text(g[i]["hypothesis"], clean) for g in groups] for i in range(n)]


def self_bleu_of(sentences: Sequence[str], bleu: NltkBleu) -> float:
    """Mean over pairs i < j of BLEU(hyp = s_i, ref = s_j); 0.0 with fewer than two sentences
    (DiffuSeq's ``diversityOfSet``)."""
    tokens = [s.split() for s in sentences]
    scores = [
        bleu(tokens[i], tokens[j]) for i in range(len(tokens)) for j in range(i + 1, len(tokens))
    ]
    return math.fsum(scores) / len(scores) if scores else 0.0


@group_metric("self_bleu", fields=("id", "hypothesis"))
def self_bleu(groups: Sequence[Sequence[dict]], *, clean: str = "none") -> MetricResult:
    """DiffuSeq's self-BLEU over k samples per source (one direction, i < j), mean, 0–1."""
    bleu = NltkBleu()
    per_example: list[float | None] = [
        self_bleu_of(texts, bleu) for texts in _group_texts("self_bleu", groups, clean)
    ]
    variant = (
        f"self-BLEU (DiffuSeq eval_seq2seq.py): per source mean over pairs i<j of "
        f"BLEU(hyp=s_i, ref=s_j), {NltkBleu.variant()}, k={len(groups)} samples files in the "
        f"order given, clean={clean}, mean over sources, 0-1 scale"
    )
    details = {"group_size": len(groups), "n_nltk_warnings": bleu.n_warnings}
    return MetricResult.of_examples(per_example, variant, details)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def inter_distinct(sentences: Sequence[str], n: int) -> float:
    """|distinct n-grams| / |n-grams| pooled over ``sentences``; 0.0 without any n-gram."""
    pooled = [g for s in sentences for g in ngrams(s.split(), n)]
    return len(set(pooled)) / len(pooled) if pooled else 0.0


@group_metric("div_4", fields=("id", "hypothesis"))
def div_4(groups: Sequence[Sequence[dict]], *, clean: str = "none") -> MetricResult:
    """DiffuSeq's div-4: distinct 4-grams pooled over the k samples of a source, mean, 0–1."""
    per_source = _group_texts("div_4", groups, clean)
    per_example: list[float | None] = [inter_distinct(texts, 4) for texts in per_source]
    variant = (
        f"div-4 (DiffuSeq eval_seq2seq.py): per source |distinct 4-grams|/|4-grams| pooled over "
        f"k={len(groups)} samples, str.split() tokens, 0 without 4-grams, clean={clean}, "
        "mean over sources, 0-1 scale"
    )
    details = {
        "group_size": len(groups),
        "n_sources_without_4grams": sum(
            not any(len(t.split()) >= 4 for t in texts) for texts in per_source
        ),
    }
    return MetricResult.of_examples(per_example, variant, details)
