"""dist-1, Len, self-BLEU and div-4 against direct re-implementations of DiffuSeq's definitions.

The references below are written from DiffuSeq's ``scripts/eval_seq2seq.py`` semantics
(docs/methods.md §5.1) with NLTK called directly (``nltk.ngrams``, ``sentence_bleu``), on real
QQP test sentences (skipped when ``shared/data`` is absent) and on edge cases.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from repro.io import InputError
from repro.metrics import GROUP_METRICS, METRICS, compute_group_metric, compute_metric

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

EDGE_TEXTS = [
    "",
    "   ",
    "word",
    "the the the the",
    "a b c d e f",
    "how  are you ?",  # double space
    " leading and trailing ",
    "Über Straße, naïve café — 東京 です!",
    "[CLS] how are you ? [SEP]",
    "the [PAD] cat [PAD]",
]


def _perturb(text: str, rng: random.Random) -> str:
    tokens = text.split()
    out = [t for t in tokens if rng.random() > 0.15]
    if len(out) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    if rng.random() < 0.3:
        out.append(rng.choice(tokens) if tokens else "x")
    return " ".join(out)


@pytest.fixture(scope="module")
def qqp_groups() -> list[list[dict]]:
    """k = 3 aligned "seed" lists of QQP test sentences: source, target, perturbed target."""
    path = DATA / "qqp" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"QQP test data not found at {path}")
    rng = random.Random(0)
    groups: list[list[dict]] = [[], [], []]
    with open(path, encoding="utf-8") as fh:
        for i, line in zip(range(300), fh):
            row = json.loads(line)
            texts = (row["src"], row["trg"], _perturb(row["trg"], rng))
            for s, text in enumerate(texts):
                groups[s].append({"id": f"qqp/test/{i}", "hypothesis": text})
    return groups


def _rows(texts):
    return [{"id": str(i), "hypothesis": t} for i, t in enumerate(texts)]


def _diffuseq_clean(text: str) -> str:
    for special in ("[CLS]", "[SEP]", "[PAD]"):
        text = text.replace(special, "")
    return text


# --- per-file: dist_1, length, length_diffuseq ---------------------------------------------------


def _dist1_reference(text: str) -> float:
    import nltk

    grams = list(nltk.ngrams(text.split(), 1))
    return len(set(grams)) / len(grams) if grams else 0.0


@pytest.mark.parametrize("which", ["real", "edge"])
def test_dist_1_and_length_equal_direct_definitions(which, request):
    texts = (
        [r["hypothesis"] for g in request.getfixturevalue("qqp_groups") for r in g]
        if which == "real"
        else EDGE_TEXTS
    )
    dist = compute_metric("dist_1", _rows(texts))
    expected = [_dist1_reference(t) for t in texts]
    assert dist.per_example == pytest.approx(expected, abs=1e-12)
    assert dist.value == pytest.approx(float(np.mean(expected)), abs=1e-12)
    length = compute_metric("length", _rows(texts))
    assert length.per_example == [float(len(t.split())) for t in texts]
    assert length.value == pytest.approx(float(np.mean([len(t.split()) for t in texts])))
    if which == "real":
        assert 0.9 < dist.value < 1.0  # not vacuous: some QQP questions repeat words
        assert min(expected) < 1.0


def test_dist_1_edge_values():
    res = compute_metric("dist_1", _rows(["", "   ", "a", "a a", "a b a b"]))
    assert res.per_example == [0.0, 0.0, 1.0, 0.5, 0.5]
    assert res.details["n_empty"] == 2
    # clean=diffuseq removes the special strings before counting
    cleaned = compute_metric("dist_1", _rows(["[PAD] a [PAD] b"]), clean="diffuseq")
    assert cleaned.per_example == [1.0]


def _diffuseq_len_of_raw(recover: str) -> int:
    """DiffuSeq: strip the raw decoded string, delete the specials, split on single spaces."""
    return len(_diffuseq_clean(recover.strip()).split(" "))


@pytest.mark.parametrize("which", ["real", "edge"])
def test_length_diffuseq_reproduces_the_artefact(which, request):
    texts = (
        [r["hypothesis"] for r in request.getfixturevalue("qqp_groups")[1]]
        if which == "real"
        else EDGE_TEXTS
    )
    res = compute_metric("length_diffuseq", _rows(texts))
    # DiffuSeq's decoded string of a clean output is "[CLS] text [SEP]" ("[CLS] [SEP]" if empty)
    raw = [f"[CLS] {t} [SEP]" if t else "[CLS] [SEP]" for t in texts]
    expected = [float(_diffuseq_len_of_raw(r)) for r in raw]
    assert res.per_example == expected
    assert res.value == pytest.approx(float(np.mean(expected)))
    # markers="none": the hypothesis is DiffuSeq's raw string itself
    as_raw = compute_metric("length_diffuseq", _rows(raw), markers="none")
    assert as_raw.per_example == expected
    if which == "real":
        words = compute_metric("length", _rows(texts)).per_example
        single = [i for i, t in enumerate(texts) if t and " ".join(t.split()) == t]
        assert len(single) > 250
        # single-spaced text: exactly two empty tokens more than words; a double space adds one
        assert all(res.per_example[i] == words[i] + 2 for i in single)
        assert any(res.per_example[i] > words[i] + 2 for i in set(range(len(texts))) - set(single))


def test_length_diffuseq_documented_example():
    res = compute_metric("length_diffuseq", _rows(["how are you ?", "", "a  b"]))
    # " how are you ? " -> ['', 'how', 'are', 'you', '?', ''] ; " " -> ['', ''] ;
    # " a  b " -> ['', 'a', '', 'b', '']
    assert res.per_example == [6.0, 2.0, 5.0]
    raw = compute_metric(
        "length_diffuseq", _rows(["[CLS] how are you ? [SEP]", "how are you ?"]), markers="none"
    )
    assert raw.per_example == [6.0, 4.0]
    with pytest.raises(InputError, match=r"markers='sep' is not one of 'cls_sep', 'none'"):
        compute_metric("length_diffuseq", _rows(["a"]), markers="sep")


# --- group metrics: self_bleu, div_4 -------------------------------------------------------------


def _nltk_bleu(hyp: str, ref: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(
        sentence_bleu([ref.split()], hyp.split(), smoothing_function=SmoothingFunction().method4)
    )


def _self_bleu_reference(sentences: list[str]) -> float:
    """DiffuSeq's diversityOfSet self-BLEU: pairs i < j, hyp = s_i, ref = s_j."""
    scores = [
        _nltk_bleu(sentences[i], sentences[j])
        for i in range(len(sentences))
        for j in range(i + 1, len(sentences))
    ]
    return float(np.mean(scores)) if scores else 0.0


def _div4_reference(sentences: list[str]) -> float:
    import nltk

    pooled = []
    for s in sentences:
        pooled += list(nltk.ngrams(s.split(), 4))
    return len(set(pooled)) / len(pooled) if pooled else 0.0


EDGE_GROUPS = [  # per source, k = 3 outputs
    ("", "", ""),
    ("a", "a", "a"),
    ("the cat sat on the mat", "the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "a dog ran in the park", ""),
    ("short", "the cat sat on the mat today", "the cat sat"),
    ("Über Straße café naïve", "Über Straße café naïve ok", "東京 です 東京 です 東京"),
    ("a b c d a b c d", "a b c d", "x y z w"),
]


def _groups_of(per_source: list[tuple[str, ...]]) -> list[list[dict]]:
    k = len(per_source[0])
    return [
        [{"id": str(i), "hypothesis": texts[s]} for i, texts in enumerate(per_source)]
        for s in range(k)
    ]


@pytest.mark.parametrize("which", ["real", "edge"])
def test_self_bleu_and_div_4_equal_direct_nltk(which, request):
    groups = (
        request.getfixturevalue("qqp_groups") if which == "real" else _groups_of(EDGE_GROUPS)
    )
    per_source = [[g[i]["hypothesis"] for g in groups] for i in range(len(groups[0]))]
    sb = compute_group_metric("self_bleu", groups)
    expected_sb = [_self_bleu_reference(s) for s in per_source]
    assert sb.per_example == pytest.approx(expected_sb, abs=1e-12)
    assert sb.value == pytest.approx(float(np.mean(expected_sb)), abs=1e-12)
    d4 = compute_group_metric("div_4", groups)
    expected_d4 = [_div4_reference(s) for s in per_source]
    assert d4.per_example == pytest.approx(expected_d4, abs=1e-12)
    assert d4.value == pytest.approx(float(np.mean(expected_d4)), abs=1e-12)
    assert sb.details["group_size"] == d4.details["group_size"] == 3
    assert "method4" in sb.variant and "k=3" in sb.variant
    if which == "real":
        assert 0.05 < sb.value < 0.9 and 0.3 < d4.value < 1.0  # real, non-degenerate values


def test_self_bleu_is_one_directional_in_file_order():
    """BLEU(hyp=s_i, ref=s_j) for i < j only: reversing the file order changes the value when the
    lengths differ (brevity penalty)."""
    per_source = [("the cat sat on the mat", "the cat sat on the mat and more words here")]
    forward = compute_group_metric("self_bleu", _groups_of(per_source)).value
    backward = compute_group_metric("self_bleu", _groups_of([per_source[0][::-1]])).value
    assert forward == pytest.approx(_nltk_bleu(*per_source[0]))
    assert backward == pytest.approx(_nltk_bleu(per_source[0][1], per_source[0][0]))
    assert forward != pytest.approx(backward)


def test_group_edge_values():
    groups = _groups_of(EDGE_GROUPS)
    sb = compute_group_metric("self_bleu", groups)
    d4 = compute_group_metric("div_4", groups)
    assert sb.per_example[0] == 0.0 and d4.per_example[0] == 0.0  # all empty
    assert sb.per_example[2] == pytest.approx(1.0)  # identical outputs
    assert d4.per_example[2] == pytest.approx(1 / 3)  # 3 distinct 4-grams of 9
    assert d4.per_example[1] == 0.0  # no 4-gram at all
    assert d4.details["n_sources_without_4grams"] == 2


def test_group_protocol_errors():
    groups = _groups_of(EDGE_GROUPS)
    assert set(GROUP_METRICS) == {"self_bleu", "div_4"} and set(GROUP_METRICS) <= set(METRICS)
    with pytest.raises(InputError, match=r"'self_bleu' is a group metric"):
        compute_metric("self_bleu", groups[0])
    with pytest.raises(InputError, match=r"'dist_1' scores one samples file at a time"):
        compute_group_metric("dist_1", groups)
    with pytest.raises(InputError, match=r"needs k >= 2 samples lists"):
        compute_group_metric("div_4", groups[:1])
    with pytest.raises(InputError, match=r"samples list 1 has 6 rows, list 0 has 7"):
        compute_group_metric("div_4", [groups[0], groups[1][:-1]])
    shuffled = [groups[0], groups[1][::-1]]
    with pytest.raises(InputError, match=r"row 0 has ids \['0', '6'\].*align them by id"):
        compute_group_metric("self_bleu", shuffled)
    with pytest.raises(InputError, match=r"samples list 1, row 0: missing field 'hypothesis'"):
        compute_group_metric("self_bleu", [groups[0], [{"id": "0"}] * 7])
    with pytest.raises(InputError, match=r"unknown option\(s\) n"):
        compute_group_metric("div_4", groups, n=3)
    with pytest.raises(InputError, match=r"clean='x' is not one of"):
        compute_group_metric("self_bleu", groups, clean="x")
