"""make_figure: the nfe_curve figure is written (PNG + PDF), deterministic, and skips gaps."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from repro.io import InputError
from repro.report.figures import _ours_frame, main, make_figure

PAPER_VALUES = Path(__file__).resolve().parents[2] / "config" / "paper_values" / "fig_qqp_nfe.csv"


def _scores(path, bleu, rouge=None):
    metrics = {"bleu": {"value": bleu, "variant": "v", "per_example": [bleu], "details": {}}}
    if rouge is not None:
        metrics["rouge_l"] = {"value": rouge, "variant": "v", "per_example": [rouge], "details": {}}
    path.write_text(json.dumps({"n": 1, "ids": ["a"], "metrics": metrics, "provenance": {}}))
    return str(path)


@pytest.fixture
def spec(tmp_path):
    points = []
    for nfe, (b0, b1) in {1: (0.10, 0.12), 10: (0.15, 0.16), 100: (0.17, 0.17)}.items():
        # the nfe-100 point has no ROUGE-L (metric not computed): skipped in that panel
        rouge = None if nfe == 100 else 0.4
        points.append(
            {
                "nfe": nfe,
                "seeds": [0, 1],
                "scores": [
                    _scores(tmp_path / f"n{nfe}s0.json", b0, rouge),
                    _scores(tmp_path / f"n{nfe}s1.json", b1, rouge),
                ],
            }
        )
    return {
        "name": "fig_qqp_nfe",
        "title": "QQP quality vs NFE",
        "kind": "nfe_curve",
        "metrics": [
            {"label": "BLEU", "metric": "bleu", "scale": 1.0},
            {"label": "ROUGE-L", "metric": "rouge_l"},
        ],
        "series": [
            {
                "label": "FM-seq2seq",
                "dataset": "qqp",
                "experiment": "fm",
                "sampler": "euler",
                "points": points,
            },
        ],  # fmt: skip
    }


def test_ours_frame_values(spec):
    df = _ours_frame(spec)
    bleu = df[df["metric"] == "BLEU"].groupby("nfe")["value"].mean()
    assert bleu.to_dict() == pytest.approx({1: 0.11, 10: 0.155, 100: 0.17})
    assert sorted(df[df["metric"] == "ROUGE-L"]["nfe"].unique()) == [1, 10]


def test_figure_written_and_deterministic(spec, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        written = make_figure(spec, PAPER_VALUES, tmp_path / "a" / "fig_qqp_nfe.png")
    assert "'rouge_l' not in every scores file" in caplog.text
    png, pdf = written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.suffix == ".pdf"
    assert b"CreationDate" not in pdf.read_bytes()
    again = make_figure(spec, PAPER_VALUES, tmp_path / "b" / "fig_qqp_nfe.png")
    assert again[0].read_bytes() == png.read_bytes()
    assert again[1].read_bytes() == pdf.read_bytes()


def test_figure_without_any_scores_still_written(spec, tmp_path):
    for point in spec["series"][0]["points"]:
        point["scores"] = []
    assert main(["--spec-json", json.dumps(spec), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0


def test_unknown_kind(spec, tmp_path):
    spec["kind"] = "bar_chart"
    with pytest.raises(InputError, match="unknown kind 'bar_chart'; known: nfe_curve"):
        make_figure(spec, None, tmp_path / "f.png")
