"""make report: a self-contained page of a half-built results/ tree made by the project's own
table and figure writers (no DAG run): tables beside the paper values, figures, variants, config,
what is missing; generated text is escaped."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import pytest

from repro.report.figures import make_figure
from repro.report.html_report import build_report, main
from repro.report.tables import make_table

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "paper_values"
SMOKE = ROOT / "config" / "smoke.yaml"
HOSTILE = "<script>alert(1)</script>"


def _scores(path: Path, values: dict[str, float], variant: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = {
        m: {"value": v, "variant": f"{variant} {m}", "per_example": [v, v], "details": {}}
        for m, v in values.items()
    }
    path.write_text(json.dumps({"n": 2, "ids": ["a", "b"], "metrics": metrics, "provenance": {}}))
    return str(path)


@pytest.fixture
def results(tmp_path):
    """results/ with table qqp_paraphrase, the samples table and figure fig_qqp_nfe built; the
    rest of the smoke catalogue missing."""
    res = tmp_path / "results"
    s0 = _scores(res / "scores/syn/fm/euler/nfe8/seed0.json", {"bleu": 0.2, "rouge_l": 0.5}, "pkgA")
    s1 = _scores(res / "scores/syn/fm/euler/nfe8/seed1.json", {"bleu": 0.3, "rouge_l": 0.6}, "pkgA")
    table = {
        "title": "DiffuSeq Table 1 (test)",
        "source": "DiffuSeq (ICLR 2023) Table 1",
        "columns": [{"label": "BLEU", "metric": "bleu"}, {"label": "ROUGE-L", "metric": "rouge_l"}],
        "rows": [{"label": "DiffuSeq", "dataset": "syn", "experiment": "fm", "sampler": "euler",
                  "nfe": 2000, "seeds": [0, 1], "scores": [s0, s1]}],
    }  # fmt: skip
    make_table(table, PAPER / "qqp_paraphrase.csv", res / "tables" / "qqp_paraphrase.csv")
    samples = res / "samples/syn/fm/euler/nfe8/seed0.jsonl"
    samples.parent.mkdir(parents=True)
    samples.write_text(
        json.dumps({"id": "a", "source": "how do i?", "reference": "how?", "hypothesis": HOSTILE})
        + "\n"
    )
    samples_spec = {
        "kind": "samples", "title": "samples", "examples": 1,
        "rows": [{"label": "FM", "nfe": 8, "samples": str(samples)}],
    }  # fmt: skip
    make_table(samples_spec, None, res / "tables" / "qqp_samples.csv")
    figure = {
        "title": "QQP vs NFE",
        "kind": "nfe_curve",
        "metrics": [{"label": "BLEU", "metric": "bleu"}],
        "series": [{"label": "FM-seq2seq", "dataset": "syn", "experiment": "fm", "sampler": "euler",
                    "points": [{"nfe": 8, "seeds": [0, 1], "scores": [s0, s1]}]}],
    }  # fmt: skip
    make_figure(figure, PAPER / "fig_qqp_nfe.csv", res / "figures" / "fig_qqp_nfe.png")
    return res


def test_report_of_a_half_built_tree(results):
    page = build_report(results, [SMOKE])
    # the table: wide view with ours (mean ± std over the two seeds) beside the paper's value
    assert 'id="table-qqp_paraphrase"' in page and "DiffuSeq (ICLR 2023) Table 1" in page
    assert "<table>" in page and "0.25 ± 0.07071" in page
    with open(PAPER / "qqp_paraphrase.csv", newline="") as fh:
        paper_bleu = next(
            r["value"] for r in csv.DictReader(fh) if (r["row"], r["column"]) == ("DiffuSeq", "BLEU")
        )
    assert f"0.25 ± 0.07071 ({paper_bleu})" in page
    # the long CSV and the files, embedded
    assert "paper_source" in page and "<td>mean</td>" in page
    assert 'download="qqp_paraphrase.csv"' in page and 'download="qqp_paraphrase.md"' in page
    # the figure: the PNG inline (the very bytes on disk), the PDF as an embedded download
    png = (results / "figures" / "fig_qqp_nfe.png").read_bytes()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert 'download="fig_qqp_nfe.pdf" href="data:application/pdf;base64,' in page
    # metric variants from the tables and the scores files (2 files each)
    row = re.search(r"<tr><td>bleu</td><td>pkgA bleu</td><td>(.*?)</td><td>(.*?)</td>"
                    r"<td>(\d+)</td></tr>", page)
    assert row and "sentence_bleu_nltk" in row.group(1)
    assert row.group(2) == "qqp_paraphrase" and row.group(3) == "2"
    # the config, and the catalogue entries not built
    assert "scale: smoke" in page
    missing = page.split("<h2>Not built yet</h2>")[1].split("</p>")[0]
    assert "table1" in missing and "fig8_loss_vs_t" in missing
    assert "qqp_paraphrase" not in missing and "fig_qqp_nfe" not in missing
    # generated text is escaped, nothing points outside the page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)


def test_cli_writes_the_page_and_names_bad_inputs(results, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["--results", str(results), "--configfile", str(SMOKE), "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["--results", str(results), "--configfile", str(SMOKE)]) == 0  # RESULTS/report.html
    assert (results / "report.html").is_file()
    assert main(["--results", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no results folder" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    assert main(["--results", str(results), "--configfile", str(bad), "--out", str(out)]) == 2
    assert f"{bad}: the config must be a mapping" in capsys.readouterr().err
