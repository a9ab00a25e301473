"""config/paper_values: every file parses, has the catalogue's labels, and matches the papers.

The cross-checks read the paper texts in ``shared/papers`` (and ``shared/docs/methods.md`` for the
figure values, which the paper prints only as a plot); they skip when those files are absent.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from repro.report import read_paper_values

ROOT = Path(__file__).resolve().parents[2]
PV = ROOT / "config" / "paper_values"
SHARED = ROOT / ".." / "shared"

KLFLOW_GEN_PPL_COLUMNS = {"Llama 2", "GPT 3", "GPT 2"}
EXPECTED = {
    "table1.csv": (
        {"Data", "Autoregressive", "DFM", "KL-flow (sampling, k=1)", "KL-flow (semi-sampling)",
         "KL-flow (basic)"},
        KLFLOW_GEN_PPL_COLUMNS,
    ),
    "table2.csv": (
        {"Data", "Autoregressive (1.5B)", "DFM (1.5B)", "KL-flow (hybrid, 150M)",
         "KL-flow (hybrid, 1.5B)"},
        KLFLOW_GEN_PPL_COLUMNS,
    ),
    "table3.csv": (
        {f"{d} / {m}" for d in ("Lamini Instruction", "WMT14 De-En")
         for m in ("Autoregressive", "DFM", "KL-flow (hybrid)", "KL-flow (sampling)")},
        {"BLEU Top-5", "BLEU Avg", "ROUGE-L Top-5", "ROUGE-L Avg", "BERTScore Top-5",
         "BERTScore Avg"},
    ),
    "table4.csv": (
        {"Autoregressive", "DFM (default, N = #masked tokens steps)", "DFM (×3 iterations)",
         "KL-flow (hybrid)",
         "KL-flow (sampling)"},
        {"Compiles@1", "Compiles@10", "Compiles@25", "Pass@1", "Pass@10", "Pass@25"},
    ),
    "qqp_paraphrase.csv": (
        {"GRU-attention", "Transformer-base", "GPT2-base FT", "GPT2-large FT", "GPVAE-T5",
         "NAR-LevT", "DiffuSeq"},
        {"BLEU", "ROUGE-L", "BERTScore", "dist-1", "self-BLEU", "div-4", "Len"},
    ),
}  # fmt: skip


def _raw(name: str) -> list[dict]:
    with open(PV / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _paper(prefix: str) -> str:
    found = sorted((SHARED / "papers").glob(f"{prefix}_*.txt"))
    if not found:
        pytest.skip("paper texts not found under shared/papers")
    text = found[0].read_text(encoding="utf-8")
    return re.sub(r"\s*/\s*", "/", re.sub(r"</?b>", "", text))  # "51.5/ <b>41.7" -> "51.5/41.7"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_table_files_parse_with_the_catalogue_labels(name):
    values = read_paper_values(PV / name, "table")
    rows, columns = EXPECTED[name]
    assert {v.label for v in values} == rows
    assert {v.column for v in values} == columns
    nfes = {v.nfe for v in values}
    # every (row, nfe) has every column
    for label in rows:
        for nfe in nfes:
            got = {v.column for v in values if v.label == label and v.nfe == nfe}
            assert got in (set(), columns), (label, nfe)


def test_figure_file_parses():
    values = read_paper_values(PV / "fig_qqp_nfe.csv", "figure")
    assert {v.label for v in values} == {"FM-seq2seq", "DiffuSeq (gap-DDIM)"}
    assert {v.column for v in values} == {"BLEU", "ROUGE-L"}
    assert sorted({v.nfe for v in values if v.label == "FM-seq2seq"}) == [
        1, 2, 4, 8, 16, 32, 64, 100, 200, 500, 1000, 2000,
    ]  # fmt: skip
    assert len(values) == 2 * 12 + 2 * 11


def _grouped(name, columns):
    """(row, [value strings per column, NFEs joined by '/'])."""
    raw = _raw(name)
    out = []
    for label in dict.fromkeys(r["row"] for r in raw):
        cells = []
        for col in columns:
            cells.append(
                "/".join(r["value"] for r in raw if r["row"] == label and r["column"] == col)
            )
        out.append((label, cells))
    return out


def test_klflow_tables_match_the_paper_text():
    text = _paper("001")
    for name, columns in (
        ("table1.csv", ["Llama 2", "GPT 3", "GPT 2"]),
        ("table2.csv", ["Llama 2", "GPT 3", "GPT 2"]),
        ("table3.csv", ["BLEU Top-5", "BLEU Avg", "ROUGE-L Top-5", "ROUGE-L Avg",
                        "BERTScore Top-5", "BERTScore Avg"]),
        ("table4.csv", ["Compiles@1", "Compiles@10", "Compiles@25", "Pass@1", "Pass@10",
                        "Pass@25"]),
    ):  # fmt: skip
        for label, cells in _grouped(name, columns):
            assert "\t".join(cells) in text, (name, label, cells)


def test_diffuseq_table_matches_the_paper_text():
    text = _paper("002")
    columns = ["BLEU", "ROUGE-L", "BERTScore", "dist-1", "self-BLEU", "div-4", "Len"]
    for label, c in _grouped("qqp_paraphrase.csv", columns):
        line = f"| {c[0]} | {c[1]} | {c[2]} | {c[3]} | {c[4]}/{c[5]} | {c[6]} |"
        assert line in text, (label, line)


def test_figure_values_match_methods_md():
    methods = SHARED / "docs" / "methods.md"
    if not methods.exists():
        pytest.skip("shared/docs/methods.md not found")
    text = methods.read_text(encoding="utf-8")
    raw = _raw("fig_qqp_nfe.csv")
    for series, metric, prefix in (
        ("FM-seq2seq", "BLEU", "| FM BLEU |"),
        ("FM-seq2seq", "ROUGE-L", "| FM ROUGE-L |"),
        ("DiffuSeq (gap-DDIM)", "BLEU", "| BLEU |"),
        ("DiffuSeq (gap-DDIM)", "ROUGE-L", "| ROUGE-L |"),
    ):
        vals = [r["value"] for r in raw if r["series"] == series and r["metric"] == metric]
        assert prefix + " " + " | ".join(vals) + " |" in text, (series, metric)
