"""Reference-based text metrics: the BLEU and ROUGE-L variants of the three papers, and entropy.

Which paper uses which (docs/methods.md §5):

* ``sentence_bleu_nltk``   DiffuSeq ``scripts/eval_seq2seq.py`` and FM-seq2seq's evaluation: NLTK
  ``sentence_bleu`` per pair, one reference, ``str.split()`` tokens, weights (¼,¼,¼,¼),
  ``SmoothingFunction().method4``; the mean over pairs, 0–1.
* ``bleu_klflow``          KL-flow ``eval_conditional.py``: HF ``evaluate`` "bleu" on each single
  pair = Google NMT ``compute_bleu`` (max_order 4, no smoothing) on 13a tokens, ×100. Written here
  from its definition (:func:`compute_bleu`) with sacreBLEU's 13a tokenizer, no ``evaluate``.
* ``corpus_sacrebleu``     not used by the papers; the standard corpus BLEU for reference.
* ``rouge_l_rouge_score``  KL-flow: HF ``evaluate`` "rouge" → ``rouge_score`` rougeL F-measure, no
  stemmer, per pair, 0–1.
* ``rouge_l_torchmetrics`` DiffuSeq / FM-seq2seq: torchmetrics ``ROUGEScore`` ``rougeL_fmeasure``
  per pair, averaged, 0–1.
* ``unigram_entropy``      entropy of the generated token ids of each sample (MDLM follow-ups, the
  flow_matching text example), averaged. KL-flow's variant (judge-tokenised, padded, averaged over
  four judge tokenisations) needs the judge tokenizers and comes with the judge metrics.

Text cleaning (option ``clean``): the samples' ``hypothesis`` is already decoded, clean text, so the
default is ``"none"``. ``"diffuseq"`` removes the literal strings ``[SEP]``, ``[CLS]`` and ``[PAD]``
from hypothesis and reference, as DiffuSeq's and FM-seq2seq's scripts do (DiffuSeq removes
``[PAD]`` from the hypothesis only, but its references carry no ``[PAD]``, so this is the same);
their ``strip()`` calls do not change whitespace-split tokens.

Empty responses (option ``empty`` of ``bleu_klflow``, ``rouge_l_rouge_score`` and
:func:`repro.metrics.semantic.bertscore`): a hypothesis is *empty* when its cleaned text has no
non-whitespace character (``not text.strip()``, :func:`is_empty`). This is the one rule of every
metric that reads the hypothesis text: the judge metrics (``gen_ppl``, ``judge_entropy``) make an
empty hypothesis undefined (``None``), as KL-flow drops empty generations before scoring; a
whitespace-only string counts as empty everywhere, as bert-score (KL-flow's BERTScore) treats a
blank candidate. ``unigram_entropy`` reads the generated ids, not the text. ``"drop"`` gives such a sample the per-example
value ``None``, so it is left out of the mean and of the tables' ``best_of_seeds`` /
``mean_of_seeds`` aggregates — KL-flow's Table 3 protocol (methods.md §5.3: per prompt 5
responses, empty ones dropped, Top-5 = max and Avg = mean over the remaining ones, a prompt with no
remaining response skipped). ``"keep"`` scores it like any other sample: 0.0 for all three.
Defaults: ``"keep"`` for ``rouge_l_rouge_score`` and ``bertscore`` (their packages' own value,
0.0), ``"drop"`` for ``bleu_klflow``, the KL-flow-only metric, whose reference implementation
(Google NMT ``compute_bleu``) divides by zero on an empty response, so there is no package value
to keep. Set ``empty: drop`` on every metric of KL-flow's Table 3.

Heavy packages are imported inside the functions, so scoring BLEU alone starts fast.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from collections.abc import Sequence

from repro.metrics.base import (
    MetricResult,
    check_choice,
    check_positive_int,
    metric,
    package_version,
)

CLEAN_CHOICES = ("none", "diffuseq")
EMPTY_CHOICES = ("keep", "drop")
_DIFFUSEQ_SPECIAL_STRINGS = ("[SEP]", "[CLS]", "[PAD]")


def clean_text(text: str, clean: str) -> str:
    """Apply the paper-specific cleaning ``clean`` (one of :data:`CLEAN_CHOICES`)."""
    if clean == "diffuseq":
        for special in _DIFFUSEQ_SPECIAL_STRINGS:
            text = text.replace(special, "")
    return text


def _pairs(kind: str, samples: Sequence[dict], clean: str) -> tuple[list[str], list[str]]:
    check_choice(kind, "clean", clean, CLEAN_CHOICES)
    hyps = [clean_text(s["hypothesis"], clean) for s in samples]
    refs = [clean_text(s["reference"], clean) for s in samples]
    return hyps, refs


def is_empty(text: str) -> bool:
    """An empty response: no non-whitespace character (after cleaning). The one rule of every text
    metric (BLEU, ROUGE-L, BERTScore, gen_ppl, judge_entropy; see the module docstring)."""
    return not text.strip()


def drop_empty(
    kind: str, empty: str, hyps: Sequence[str], per_example: list[float | None]
) -> list[float | None]:
    """Apply option ``empty`` (:data:`EMPTY_CHOICES`): ``"drop"`` sets empty hypotheses to None."""
    check_choice(kind, "empty", empty, EMPTY_CHOICES)
    if empty == "keep":
        return per_example
    return [None if is_empty(h) else v for h, v in zip(hyps, per_example)]


# --- BLEU ---------------------------------------------------------------------------------------


@metric("sentence_bleu_nltk", fields=("hypothesis", "reference"))
def sentence_bleu_nltk(samples: Sequence[dict], *, clean: str = "none") -> MetricResult:
    """Mean NLTK sentence BLEU (method4 smoothing), DiffuSeq / FM-seq2seq, 0–1.

    Defined values at the edges: a pair whose hypothesis or reference has no token scores 0.0
    without calling NLTK (NLTK 3.9.2 returns 0 there too; NLTK's degenerate-input behaviour has
    changed across versions, see docs/methods.md §5.1). Every other pair is exactly NLTK's
    value, e.g. a one-token exact match scores 1.0 and an identical two-token pair 0.2214
    (method4 smooths the empty 3- and 4-gram precisions).
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyps, refs = _pairs("sentence_bleu_nltk", samples, clean)
    smoothing = SmoothingFunction().method4
    per_example: list[float | None] = []
    n_empty = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hyp, ref in zip(hyps, refs):
            hyp_tokens, ref_tokens = hyp.split(), ref.split()
            if not hyp_tokens or not ref_tokens:
                n_empty += 1
                per_example.append(0.0)
                continue
            per_example.append(
                float(sentence_bleu([ref_tokens], hyp_tokens, smoothing_function=smoothing))
            )
    variant = (
        f"nltk {package_version('nltk')} sentence_bleu, SmoothingFunction().method4, "
        f"weights (0.25, 0.25, 0.25, 0.25), single reference, str.split() tokens, clean={clean}, "
        "mean over pairs, 0-1 scale"
    )
    details = {"n_empty_pairs_scored_0": n_empty, "n_nltk_warnings": len(caught)}
    return MetricResult.of_examples(per_example, variant, details)


def _ngram_counts(tokens: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts


def compute_bleu(
    reference: Sequence[str], translation: Sequence[str], max_order: int = 4
) -> float | None:
    """BLEU of one tokenised pair, 0–1, as Google NMT's ``compute_bleu`` (= HF evaluate "bleu").

    Unsmoothed: clipped n-gram precisions p_n = matches_n / (len − n + 1) for n ≤ ``max_order``
    (0 when len < n); BLEU = 0 if any p_n is 0 (so hypotheses shorter than ``max_order`` tokens
    score 0), else exp(mean log p_n) · BP with ratio = len(translation) / len(reference),
    BP = 1 if ratio > 1 else exp(1 − 1/ratio).

    Returns ``None`` when either side has no token: the reference implementation divides by zero
    there, and KL-flow drops empty responses (and skips prompts that raise) before averaging.
    """
    if not translation or not reference:
        return None
    overlap = _ngram_counts(translation, max_order) & _ngram_counts(reference, max_order)
    matches = [0] * max_order
    for ngram, count in overlap.items():
        matches[len(ngram) - 1] += count
    precisions = []
    for n in range(1, max_order + 1):
        possible = len(translation) - n + 1
        precisions.append(matches[n - 1] / possible if possible > 0 else 0.0)
    if min(precisions) <= 0.0:
        return 0.0
    geo_mean = math.exp(math.fsum(math.log(p) for p in precisions) / max_order)
    ratio = len(translation) / len(reference)
    bp = 1.0 if ratio > 1.0 else math.exp(1.0 - 1.0 / ratio)
    return geo_mean * bp


@functools.cache
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def tokenize_13a(text: str) -> list[str]:
    """sacreBLEU's ``13a`` (mteval-v13a) tokenisation, split into tokens (HF evaluate's default)."""
    return _tokenizer_13a()(text).split()


@metric("bleu_klflow", fields=("hypothesis", "reference"))
def bleu_klflow(
    samples: Sequence[dict], *, clean: str = "none", max_order: int = 4, empty: str = "drop"
) -> MetricResult:
    """KL-flow's per-pair BLEU: unsmoothed ``compute_bleu`` on 13a tokens, ×100.

    ``empty`` (see the module docstring): with ``"drop"`` (the default: KL-flow drops empty
    responses) an empty hypothesis is ``None``; with ``"keep"`` it scores 0.0 (no n-gram can
    match; ``compute_bleu`` itself would divide by zero in its brevity penalty). A pair whose
    reference, or whose non-blank hypothesis, has no 13a token is ``None`` either way (undefined in
    the reference implementation; KL-flow skips prompts that raise). ``None`` values are left out
    of the mean and of the tables' Top-5 / Avg aggregates.
    """
    check_positive_int("bleu_klflow", "max_order", max_order)
    check_choice("bleu_klflow", "empty", empty, EMPTY_CHOICES)
    hyps, refs = _pairs("bleu_klflow", samples, clean)
    per_example: list[float | None] = []
    for hyp, ref in zip(hyps, refs):
        ref_tokens = tokenize_13a(ref)
        if is_empty(hyp) and ref_tokens:
            per_example.append(0.0)  # "keep"; drop_empty below turns it into None for "drop"
            continue
        bleu = compute_bleu(ref_tokens, tokenize_13a(hyp), max_order=max_order)
        per_example.append(None if bleu is None else 100.0 * bleu)
    per_example = drop_empty("bleu_klflow", empty, hyps, per_example)
    variant = (
        f"per-pair BLEU, Google NMT compute_bleu semantics (HF evaluate 'bleu'), max_order "
        f"{max_order}, unsmoothed, sacrebleu {package_version('sacrebleu')} 13a tokens, "
        f"clean={clean}, empty={empty}, pairs without tokens skipped, mean over pairs, "
        "0-100 scale"
    )
    n_undefined = sum(v is None for v in per_example)
    details = {
        "n_scored": len(per_example) - n_undefined,
        "n_skipped_empty": n_undefined,
        "n_empty_hypotheses": sum(is_empty(h) for h in hyps),
    }
    return MetricResult.of_examples(per_example, variant, details)


@metric("corpus_sacrebleu", fields=("hypothesis", "reference"))
def corpus_sacrebleu(samples: Sequence[dict], *, clean: str = "none") -> MetricResult:
    """``sacrebleu.corpus_bleu`` with default settings (0–100); ``value`` is the corpus score.

    ``per_example`` holds ``sacrebleu.sentence_bleu`` (its defaults: exp smoothing, effective
    order) of each pair, for per-example aggregation across seeds; its mean is *not* ``value``.
    """
    from sacrebleu.metrics import BLEU

    hyps, refs = _pairs("corpus_sacrebleu", samples, clean)
    corpus = BLEU()
    result = corpus.corpus_score(hyps, [refs])
    sentence = BLEU(effective_order=True)
    per_example: list[float | None] = [
        float(sentence.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)
    ]
    signature = str(corpus.get_signature())
    variant = (
        f"sacrebleu {package_version('sacrebleu')} corpus_bleu defaults ({signature}), "
        f"clean={clean}, corpus-level, 0-100 scale"
    )
    details = {
        "signature": signature,
        "summary": str(result),
        "bp": float(result.bp),
        "sys_len": int(result.sys_len),
        "ref_len": int(result.ref_len),
        "precisions": [float(p) for p in result.precisions],
        "per_example": "sacrebleu.sentence_bleu defaults (exp smoothing, effective order)",
    }
    return MetricResult(float(result.score), variant, per_example, details)


# --- ROUGE-L ------------------------------------------------------------------------------------


@metric("rouge_l_rouge_score", fields=("hypothesis", "reference"))
def rouge_l_rouge_score(
    samples: Sequence[dict], *, clean: str = "none", empty: str = "keep"
) -> MetricResult:
    """Mean ``rouge_score`` rougeL F-measure (no stemmer) per pair, 0–1 (KL-flow's ROUGE-L).

    ``empty="drop"`` makes an empty hypothesis ``None`` (KL-flow's Table 3); ``"keep"`` gives
    rouge_score's own value for it, 0.0.
    """
    from rouge_score import rouge_scorer

    check_choice("rouge_l_rouge_score", "empty", empty, EMPTY_CHOICES)
    hyps, refs = _pairs("rouge_l_rouge_score", samples, clean)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    per_example: list[float | None] = [
        float(scorer.score(ref, hyp)["rougeL"].fmeasure) for hyp, ref in zip(hyps, refs)
    ]
    per_example = drop_empty("rouge_l_rouge_score", empty, hyps, per_example)
    variant = (
        f"rouge-score {package_version('rouge-score')} RougeScorer(['rougeL'], use_stemmer=False) "
        f"F-measure, clean={clean}, empty={empty}, mean over pairs, 0-1 scale"
    )
    details = {
        "n_empty_hypotheses": sum(is_empty(h) for h in hyps),
        "n_dropped": sum(v is None for v in per_example),
    }
    return MetricResult.of_examples(per_example, variant, details)


@metric("rouge_l_torchmetrics", fields=("hypothesis", "reference"))
def rouge_l_torchmetrics(samples: Sequence[dict], *, clean: str = "none") -> MetricResult:
    """Mean torchmetrics ``rougeL_fmeasure`` per pair, 0–1 (DiffuSeq's / FM-seq2seq's ROUGE-L).

    DiffuSeq calls ``ROUGEScore()`` with its defaults; we ask for ``rouge_keys=("rougeL",)``
    only, which gives the same rougeL (each key is computed independently) without rougeLsum's
    NLTK ``punkt`` download. Values are torchmetrics' float32 results.
    """
    from torchmetrics.functional.text.rouge import rouge_score

    hyps, refs = _pairs("rouge_l_torchmetrics", samples, clean)
    per_example: list[float | None] = [
        float(rouge_score(hyp, ref, rouge_keys=("rougeL",))["rougeL_fmeasure"])
        for hyp, ref in zip(hyps, refs)
    ]
    variant = (
        f"torchmetrics {package_version('torchmetrics')} ROUGEScore rougeL_fmeasure (defaults: "
        f"no stemmer, lower-case alphanumeric tokens, accumulate='best'), clean={clean}, "
        "mean over pairs, 0-1 scale"
    )
    return MetricResult.of_examples(per_example, variant)


# --- diversity of one sample --------------------------------------------------------------------


@metric("unigram_entropy", fields=("hypothesis_ids",))
def unigram_entropy(samples: Sequence[dict], *, base: str = "e") -> MetricResult:
    """Entropy −Σ p log p of each sample's token-id histogram, averaged over samples.

    ``base`` "e" gives nats (KL-flow's unit), "2" bits (the flow_matching text example). Every
    position of ``hypothesis_ids`` counts (the sample stage decides what it writes there). A
    sample with no ids is ``None`` (undefined, left out of the mean).
    """
    check_choice("unigram_entropy", "base", base, ("e", "2"))
    log = math.log if base == "e" else math.log2
    per_example: list[float | None] = []
    for s in samples:
        ids = s["hypothesis_ids"]
        if not ids:
            per_example.append(None)
            continue
        n = len(ids)
        # 0.0 - sum: a one-symbol sample gives 0.0, not -0.0
        per_example.append(0.0 - math.fsum(c / n * log(c / n) for c in Counter(ids).values()))
    unit = "nats" if base == "e" else "bits"
    variant = (
        f"unigram entropy of hypothesis_ids (generator tokens), {unit}, per sample, "
        "mean over samples (not KL-flow's judge-tokenised padded variant)"
    )
    details = {"base": base, "n_empty": sum(v is None for v in per_example)}
    return MetricResult.of_examples(per_example, variant, details)
