"""Each text metric against its reference package (or an independent formulation).

Real sentences come from ``shared/data`` (QQP test pairs: source as hypothesis, target as
reference; newstest2014 English: a seeded perturbation as hypothesis); the tests of real data
skip when that folder is absent. Edge cases are checked everywhere.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from repro.metrics import compute_metric
from repro.metrics.text import compute_bleu, tokenize_13a

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

EDGE_PAIRS = [  # (hypothesis, reference)
    ("", "the cat sat on the mat"),
    ("the", "the cat sat on the mat"),
    ("cat", "cat"),
    ("a b", "a b"),
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", ""),
    ("", ""),
    ("   ", "some words here"),
    ("Über Straße, naïve café — 東京 です!", "Über Straße, naïve café — 東京 です!"),
    ("Über Straße café", "Uber Strasse cafe"),
    ("!!! ??? ...", "!!! ??? ..."),
    ("How can I be a good geologist?", "What should I do to be a great geologist?"),
    ("the the the the the", "the cat"),
]


def _perturb(text: str, rng: random.Random) -> str:
    tokens = text.split()
    out = []
    for tok in tokens:
        r = rng.random()
        if r < 0.1:
            continue  # drop
        if r < 0.2 and tokens:
            tok = rng.choice(tokens)  # substitute
        out.append(tok)
    if len(out) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    if rng.random() < 0.2:
        out = out[: max(1, len(out) // 2)]
    return " ".join(out)


def _load_pairs() -> list[tuple[str, str]]:
    qqp, wmt = DATA / "qqp" / "test.jsonl", DATA / "wmt14_de_en" / "newstest2014.jsonl"
    if not (qqp.exists() and wmt.exists()):
        pytest.skip(f"real data samples not found under {DATA}")
    pairs = []
    with open(qqp, encoding="utf-8") as fh:
        for _, line in zip(range(250), fh):
            row = json.loads(line)
            pairs.append((row["src"], row["trg"]))
    rng = random.Random(0)
    with open(wmt, encoding="utf-8") as fh:
        for _, line in zip(range(150), fh):
            ref = json.loads(line)["en"]
            pairs.append((_perturb(ref, rng), ref))
    return pairs


@pytest.fixture(scope="module")
def real_pairs() -> list[tuple[str, str]]:
    return _load_pairs()


def _samples(pairs):
    return [{"id": str(i), "hypothesis": h, "reference": r} for i, (h, r) in enumerate(pairs)]


def _mean(values):
    return math.fsum(values) / len(values)


# --- sentence_bleu_nltk -------------------------------------------------------------------------


def _nltk_bleu(hyp: str, ref: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return sentence_bleu([ref.split()], hyp.split(), smoothing_function=SmoothingFunction().method4)


@pytest.mark.parametrize("which", ["real", "edge"])
def test_sentence_bleu_nltk_equals_nltk(which, request):
    pairs = request.getfixturevalue("real_pairs") if which == "real" else EDGE_PAIRS
    res = compute_metric("sentence_bleu_nltk", _samples(pairs))
    expected = [_nltk_bleu(h, r) for h, r in pairs]
    assert res.per_example == pytest.approx(expected, abs=1e-6)
    assert res.value == pytest.approx(_mean(expected), abs=1e-6)
    assert "nltk 3." in res.variant and "method4" in res.variant


def test_sentence_bleu_nltk_edge_values():
    pairs = [("", "a b c"), ("a b c", ""), ("a", "a"), ("a b c d", "a b c d")]
    res = compute_metric("sentence_bleu_nltk", _samples(pairs))
    assert res.per_example[:2] == [0.0, 0.0]  # no token on one side: defined as 0
    assert res.per_example[2] == pytest.approx(1.0)  # NLTK: one-token exact match
    assert res.per_example[3] == pytest.approx(1.0)
    assert res.details["n_empty_pairs_scored_0"] == 2


# --- bleu_klflow --------------------------------------------------------------------------------


def _sacrebleu_unsmoothed(hyp: str, ref: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(
        hyp, [ref], smooth_method="none", tokenize="13a", use_effective_order=False
    ).score


@pytest.mark.parametrize("which", ["real", "edge"])
def test_bleu_klflow_equals_unsmoothed_sacrebleu(which, request):
    """Same statistics and brevity penalty (exp(1 - r/c) = exp(1 - 1/ratio), 1 if c >= r); the one
    difference: an empty side is 0 for sacreBLEU but undefined (None) here, since compute_bleu
    divides by zero there and KL-flow drops empty responses."""
    pairs = request.getfixturevalue("real_pairs") if which == "real" else EDGE_PAIRS
    res = compute_metric("bleu_klflow", _samples(pairs))
    n_nonzero = 0
    for (hyp, ref), ours in zip(pairs, res.per_example):
        expected = _sacrebleu_unsmoothed(hyp, ref)
        if not tokenize_13a(hyp) or not tokenize_13a(ref):
            assert ours is None and expected == 0.0
        else:
            assert ours == pytest.approx(expected, abs=1e-6)
            n_nonzero += expected > 0
    defined = [v for v in res.per_example if v is not None]
    assert res.value == pytest.approx(_mean(defined), abs=1e-9)
    assert res.details["n_skipped_empty"] == len(pairs) - len(defined)
    if which == "real":
        assert n_nonzero > 50  # the comparison is not vacuous (all-zero unsmoothed BLEU)


def _toks(text: str) -> list[str]:
    return text.split()


def test_compute_bleu_google_nmt_semantics():
    ref = _toks("a b c d e f")
    # all precisions 1; ratio 4/6 <= 1 -> bp = exp(1 - 1/ratio) = exp(-0.5)
    assert compute_bleu(ref, _toks("a b c d")) == pytest.approx(math.exp(-0.5))
    # ratio exactly 1 -> bp = exp(0) = 1
    assert compute_bleu(ref, ref) == pytest.approx(1.0)
    # longer hypothesis: bp = 1, p_n = (6/7, 5/6, 4/5, 3/4)
    hyp = _toks("a b c d e f g")
    expected = math.exp(sum(math.log(p) for p in (6 / 7, 5 / 6, 4 / 5, 3 / 4)) / 4)
    assert compute_bleu(ref, hyp) == pytest.approx(expected)
    # fewer than 4 tokens -> a zero precision -> 0 without smoothing
    assert compute_bleu(ref, _toks("a b c")) == 0.0
    # clipped counts: "the" x5 vs one "the" in the reference, no bigram match -> 0
    assert compute_bleu(_toks("the cat"), _toks("the the the the the")) == 0.0
    assert compute_bleu(ref, []) is None and compute_bleu([], ref) is None
    assert compute_bleu(ref, _toks("a b"), max_order=2) == pytest.approx(math.exp(1 - 3))


def test_tokenize_13a_splits_punctuation():
    assert tokenize_13a("Hello, world!") == ["Hello", ",", "world", "!"]
    assert tokenize_13a("  ") == []


# --- corpus_sacrebleu ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["real", "edge"])
def test_corpus_sacrebleu_equals_sacrebleu(which, request):
    import sacrebleu

    pairs = request.getfixturevalue("real_pairs") if which == "real" else EDGE_PAIRS
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    res = compute_metric("corpus_sacrebleu", _samples(pairs))
    assert res.value == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-6)
    expected = [sacrebleu.sentence_bleu(h, [r]).score for h, r in pairs]
    assert res.per_example == pytest.approx(expected, abs=1e-6)
    assert res.details["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")


# --- ROUGE-L ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["real", "edge"])
def test_rouge_l_rouge_score_equals_rouge_score(which, request):
    from rouge_score import rouge_scorer

    pairs = request.getfixturevalue("real_pairs") if which == "real" else EDGE_PAIRS
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = [scorer.score(r, h)["rougeL"].fmeasure for h, r in pairs]
    res = compute_metric("rouge_l_rouge_score", _samples(pairs))
    assert res.per_example == pytest.approx(expected, abs=1e-6)
    assert res.value == pytest.approx(_mean(expected), abs=1e-6)


@pytest.mark.parametrize("which", ["real", "edge"])
def test_rouge_l_torchmetrics_equals_rougescore(which, request):
    from torchmetrics.text.rouge import ROUGEScore

    pairs = request.getfixturevalue("real_pairs") if which == "real" else EDGE_PAIRS
    pairs = pairs[::4] if which == "real" else pairs  # keep the test fast
    # DiffuSeq's ROUGEScore() defaults minus rougeLsum (needs NLTK punkt data, offline here):
    # the keys are computed independently, so rougeL is the same.
    scorer = ROUGEScore(rouge_keys=("rouge1", "rouge2", "rougeL"))
    expected = [float(scorer(h, r)["rougeL_fmeasure"]) for h, r in pairs]
    res = compute_metric("rouge_l_torchmetrics", _samples(pairs))
    assert res.per_example == pytest.approx(expected, abs=1e-6)
    assert res.value == pytest.approx(_mean(expected), abs=1e-6)


def test_clean_diffuseq_removes_special_strings():
    raw = [
        ("[CLS] how do i learn python [SEP] [PAD] [PAD]", "[CLS] how can i learn python ? [SEP]")
    ]
    plain = [("how do i learn python", "how can i learn python ?")]
    for kind in ("sentence_bleu_nltk", "bleu_klflow", "rouge_l_rouge_score", "corpus_sacrebleu"):
        cleaned = compute_metric(kind, _samples(raw), clean="diffuseq")
        assert cleaned.per_example == pytest.approx(
            compute_metric(kind, _samples(plain)).per_example
        )
        assert "clean=diffuseq" in cleaned.variant
        uncleaned = compute_metric(kind, _samples(raw))
        assert uncleaned.per_example != pytest.approx(cleaned.per_example)


# --- unigram_entropy ----------------------------------------------------------------------------


def test_unigram_entropy_against_numpy():
    import numpy as np

    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, k, size=n).tolist() for k, n in ((2, 10), (50, 64), (1000, 128))]
    seqs += [[7], [3, 3, 3], [1, 2, 3, 4], []]
    samples = [{"hypothesis_ids": s} for s in seqs]

    def entropy(ids, log):
        _, counts = np.unique(ids, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * log(p)).sum())

    nats = compute_metric("unigram_entropy", samples)
    bits = compute_metric("unigram_entropy", samples, base="2")
    assert nats.per_example[:-1] == pytest.approx([entropy(s, np.log) for s in seqs[:-1]], abs=1e-9)
    assert bits.per_example[:-1] == pytest.approx(
        [entropy(s, np.log2) for s in seqs[:-1]], abs=1e-9
    )
    assert nats.per_example[3:6] == [0.0, 0.0, pytest.approx(math.log(4))]
    assert nats.per_example[-1] is None and nats.details["n_empty"] == 1
    assert nats.value == pytest.approx(_mean(nats.per_example[:-1]))
    assert "nats" in nats.variant and "bits" in bits.variant
