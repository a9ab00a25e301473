"""Trivial baselines scored as the table's own cells are (repro.report.baselines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.config_file import load_config_file
from repro.io import InputError, read_jsonl, write_jsonl
from repro.metrics import compute_metric
from repro.report.baselines import baseline_samples, table_baselines
from repro.workflow.catalogue import Catalogue

REPO_ROOT = Path(__file__).resolve().parents[2]

ROWS = [
    {"id": "qqp/test/0", "source": "how do i learn python ?", "reference": "how can i learn python ?",
     "hypothesis": "what", "hypothesis_ids": [5], "sampler": "euler", "nfe": 1, "seed": 0,
     "wall_seconds": 0.1},
    {"id": "qqp/test/1", "source": "what is love ?", "reference": "what does love mean ?",
     "hypothesis": "is", "hypothesis_ids": [6], "sampler": "euler", "nfe": 1, "seed": 0,
     "wall_seconds": 0.1},
]


def test_each_kind_replaces_only_the_hypothesis():
    name, rows = baseline_samples(ROWS, "seq2seq")
    assert name == "copy source"
    assert [r["hypothesis"] for r in rows] == [r["source"] for r in ROWS]
    assert all("hypothesis_ids" not in r and r["reference"] == s["reference"]
               for r, s in zip(rows, ROWS))
    assert [r["hypothesis"] for r in baseline_samples(ROWS, "text")[1]] == [
        r["reference"] for r in ROWS]
    with pytest.raises(InputError, match="kind"):
        baseline_samples(ROWS, "image")


def test_a_table_baseline_is_scored_with_the_cells_own_metric_configs(tmp_path):
    config = load_config_file(REPO_ROOT / "config" / "small-cpu.yaml")
    samples = tmp_path / "samples" / "qqp" / "fm" / "euler" / "nfe1" / "seed0.jsonl"
    samples.parent.mkdir(parents=True)
    write_jsonl(samples, ROWS)
    records = table_baselines(Catalogue(config), "qqp_nfe", tmp_path)
    by_metric = {r["metric"]: r for r in records}
    assert set(by_metric) == {"bleu", "rouge_l"}  # seconds/sample is a model's own
    copied = baseline_samples(ROWS, "seq2seq")[1]
    expected = compute_metric("sentence_bleu_nltk", copied, clean="diffuseq").value
    assert by_metric["bleu"]["value"] == pytest.approx(expected)
    assert by_metric["bleu"]["baseline"] == "copy source" and by_metric["bleu"]["n"] == 2
    written = tmp_path / "baselines" / "qqp_nfe" / "qqp"
    assert [r["hypothesis"] for r in read_jsonl(written / "copy_source.jsonl")] == [
        r["source"] for r in ROWS]
    assert json.loads((written / "copy_source.json").read_text())["n"] == 2


def test_copying_the_qqp_source_gives_the_known_bleu_on_the_whole_test_split():
    """The reference point of the small-cpu docs: hypothesis = source on all 2,500 QQP test pairs
    gives NLTK sentence BLEU 0.2144 and ROUGE-L 0.580 with the pipeline's metrics."""
    import os

    samples = Path(os.environ.get("REPRO_SAMPLE_DATA") or REPO_ROOT.parent / "shared" / "data")
    path = samples / "qqp" / "test.jsonl"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path}: the QQP test pairs are missing")
        pytest.skip(f"{path}: the QQP test pairs are missing (set REPRO_SAMPLE_DATA)")
    rows = [{"id": str(i), "source": r["src"], "reference": r["trg"], "hypothesis": ""}
            for i, r in enumerate(read_jsonl(path))]
    copied = baseline_samples(rows, "seq2seq")[1]
    assert len(copied) == 2500
    assert compute_metric("sentence_bleu_nltk", copied, clean="diffuseq").value == pytest.approx(
        0.2144, abs=5e-5)
    assert compute_metric("rouge_l_torchmetrics", copied, clean="diffuseq").value == pytest.approx(
        0.5800, abs=5e-5)
