"""make_figure: nfe_curve and loss_vs_t figures are written (PNG + PDF), deterministic; gaps and
bad inputs are reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from repro.io import InputError
from repro.report.figures import _ours_frame, loss_vs_t, main, make_figure, read_paper_curve

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


# --- loss_vs_t (FM-seq2seq Fig. 8) ----------------------------------------------------------


def _curve(path, scale, std=True):
    t = [i / 10 for i in range(11)]
    record = {"t": t, "loss": [scale * 0.1 * 10 ** (-3 * x) for x in t], "n_examples": 8}
    if std:
        record["loss_std"] = [0.5 * v for v in record["loss"]]
    path.write_text(json.dumps(record))
    return str(path)


@pytest.fixture
def loss_spec(tmp_path):
    return {
        "name": "fig_qqp_loss_vs_t",
        "title": "QQP validation loss vs t",
        "kind": "loss_vs_t",
        "source": "FM-seq2seq Fig. 8",
        "series": [
            {"label": "FM-seq2seq", "path": _curve(tmp_path / "fm.json", 1.0)},
            {"label": "FM-seq2seq (random E)", "path": _curve(tmp_path / "r.json", 2.0, False)},
        ],
    }


@pytest.fixture
def loss_paper(tmp_path):
    path = tmp_path / "fig_loss.csv"
    path.write_text(
        "series,nfe,metric,value,source\n"
        "FM-seq2seq,0,loss,0.10,Fig. 8\n"
        "FM-seq2seq,0.2,loss,0.04,Fig. 8\n"
        "FM-seq2seq,0.4,loss,0.004,Fig. 8\n"
        "FM-seq2seq,1,loss,0.002,Fig. 8\n"
        "Other model,0.5,loss,0.01,Fig. 8\n"
        "FM-seq2seq,1,BLEU,0.17,Fig. 7\n"
    )
    return path


def test_loss_vs_t_figure_written_and_deterministic(loss_spec, loss_paper, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        png, pdf = make_figure(loss_spec, loss_paper, tmp_path / "a" / "fig_loss.png")
    assert "1 row(s) whose metric is not 'loss' skipped" in caplog.text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.with_suffix(".png") == png
    assert b"CreationDate" not in pdf.read_bytes()
    again = make_figure(loss_spec, loss_paper, tmp_path / "b" / "fig_loss.png")
    assert again[0].read_bytes() == png.read_bytes()
    assert again[1].read_bytes() == pdf.read_bytes()


def test_loss_vs_t_figure_content(loss_spec, loss_paper):
    fig = loss_vs_t(loss_spec, read_paper_curve(loss_paper))
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "t" and ax.get_xlim() == (0.0, 1.0)
    lines = ax.get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "-", "--", "--"]
    paper_fm = lines[2]
    assert list(paper_fm.get_xdata()) == [0.0, 0.2, 0.4, 1.0]
    assert list(paper_fm.get_ydata()) == [0.10, 0.04, 0.004, 0.002]
    assert paper_fm.get_color() == lines[0].get_color()  # paper in its series' colour
    assert len(ax.collections) == 1  # a std band only for the series that has loss_std
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [
        "FM-seq2seq",
        "FM-seq2seq (paper)",
        "FM-seq2seq (random E)",
        "Other model (paper)",
    ]
    loss_spec["band"] = False
    assert not loss_vs_t(loss_spec, []).axes[0].collections


def test_loss_vs_t_via_main(loss_spec, tmp_path):
    args = ["--spec-json", json.dumps(loss_spec), "--out", str(tmp_path / "f.png")]
    assert main(args) == 0
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0


def test_loss_vs_t_missing_file_is_named(loss_spec, tmp_path, capsys):
    loss_spec["series"][1]["path"] = str(tmp_path / "missing" / "loss_vs_t.json")
    with pytest.raises(InputError, match=r"missing/loss_vs_t\.json: file not found"):
        make_figure(loss_spec, None, tmp_path / "f.png")
    assert main(["--spec-json", json.dumps(loss_spec), "--out", str(tmp_path / "f.png")]) == 2
    assert "loss_vs_t.json: file not found" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda s: s["series"][0].pop("path"), r"series\[0\]: missing key 'path'"),
        (lambda s: s.update(band="yes"), "'band' must be true or false"),
        (lambda s: s.update(series=[{"label": "x", "path": s["_bad"]}]), "'loss' has 2 values"),
    ],
)
def test_loss_vs_t_spec_errors(loss_spec, tmp_path, mutate, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"t": [0.0, 0.5, 1.0], "loss": [1.0, 2.0]}))
    loss_spec["_bad"] = str(bad)
    mutate(loss_spec)
    with pytest.raises(InputError, match=message):
        make_figure(loss_spec, None, tmp_path / "f.png")


@pytest.mark.parametrize(
    "row,message",
    [
        ("FM,1.5,loss,0.1,x", r"holds t in \[0, 1\]"),
        ("FM,,loss,0.1,x", r"holds t in \[0, 1\]"),
        ("FM,0.5,loss,abc,x", "value column a number"),
        ("FM,0.5,loss,0.1", "expected 5 fields"),
    ],
)
def test_loss_vs_t_paper_values_errors(tmp_path, row, message):
    path = tmp_path / "p.csv"
    path.write_text(f"series,nfe,metric,value,source\n{row}\n")
    with pytest.raises(InputError, match=message):
        read_paper_curve(path)
    path.write_text("series,nfe,metric,value,source\nFM,0.5,loss,1,x\nFM,0.50,loss,2,x\n")
    with pytest.raises(InputError, match="p.csv:3: duplicate of line 2"):
        read_paper_curve(path)
    with pytest.raises(InputError, match="paper-values file not found"):
        read_paper_curve(tmp_path / "none.csv")


def test_nfe_curve_still_rejects_float_nfe(spec, tmp_path):
    """The shared integer-NFE reader is unchanged for the other kinds."""
    path = tmp_path / "p.csv"
    path.write_text("series,nfe,metric,value,source\nFM-seq2seq,0.5,BLEU,0.1,x\n")
    with pytest.raises(InputError, match="nfe must be an integer"):
        make_figure(spec, path, tmp_path / "f.png")


def test_option_sweep_draws_against_the_option(spec, tmp_path):
    sweep = {**spec, "name": "sweep", "kind": "option_sweep", "option": "top_k",
             "x_label": "top-k", "log_x": True}
    for point, k in zip(sweep["series"][0]["points"], (1, 5, 50)):
        point["x"] = k
    df = _ours_frame(sweep)
    assert sorted(df["x"].unique()) == [1, 5, 50]
    paper = tmp_path / "paper.csv"
    paper.write_text("series,nfe,metric,value,source\nFM-seq2seq,5,BLEU,0.2,Fig. 3\n"
                     "FM-seq2seq,0.5,BLEU,0.1,Fig. 3\n")
    png, _ = make_figure(sweep, paper, tmp_path / "sweep.png")
    assert png.stat().st_size > 10_000
    paper.write_text("series,nfe,metric,value,source\nFM-seq2seq,all,BLEU,0.2,Fig. 3\n")
    with pytest.raises(InputError, match=r"paper\.csv:2: an option_sweep"):
        make_figure(sweep, paper, tmp_path / "sweep2.png")
    del sweep["series"][0]["points"][0]["x"]
    with pytest.raises(InputError, match=r"points\[0\]: an option_sweep point needs a numeric 'x'"):
        make_figure(sweep, None, tmp_path / "sweep3.png")
