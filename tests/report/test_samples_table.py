"""Sample tables (FM-seq2seq Table 1): prompt, inference steps, method, response."""

from __future__ import annotations

import csv
import json

import pytest

from repro.io import InputError
from repro.report.tables import main, make_table


def _samples(path, outputs, ids=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = ids or [f"d/test/{i}" for i in range(len(outputs))]
    path.write_text("".join(json.dumps({
        "id": i, "source": f"question {k}?", "reference": f"reference {k}", "hypothesis": o,
        "wall_seconds": 0.1}) + "\n" for k, (i, o) in enumerate(zip(ids, outputs))))
    return str(path)


def test_rows_grouped_per_prompt_nfe_descending(tmp_path):
    a = _samples(tmp_path / "a.jsonl", ["diffuseq one", "diffuseq two", "diffuseq three"])
    b = _samples(tmp_path / "b.jsonl", ["fm one", "fm | two", "fm three"])
    c = _samples(tmp_path / "c.jsonl", ["fm1 one", "", "x"])
    spec = {"kind": "samples", "title": "Sample responses", "source": "FM-seq2seq Table 1",
            "examples": 2, "rows": [
                {"label": "DiffuSeq", "nfe": 2000, "samples": a},
                {"label": "Flow Matching", "nfe": 1, "samples": c},
                {"label": "Flow Matching", "nfe": 100, "samples": b}]}
    out = tmp_path / "t" / "qqp_samples.csv"
    records = make_table(spec, None, out)
    assert [(r["example"], r["nfe"], r["output"]) for r in records] == [
        (0, 2000, "diffuseq one"), (0, 100, "fm one"), (0, 1, "fm1 one"),
        (1, 2000, "diffuseq two"), (1, 100, "fm | two"), (1, 1, "")]
    rows = list(csv.DictReader(out.open()))
    assert rows[0] == {"example": "0", "source": "question 0?", "reference": "reference 0",
                       "method": "DiffuSeq", "nfe": "2000", "output": "diffuseq one"}
    md = out.with_suffix(".md").read_text()
    assert "| question 0? | 2000 | DiffuSeq | diffuseq one |" in md
    assert "|  | 100 | Flow Matching | fm \\| two |" in md  # prompt once per group, pipes escaped
    assert "| ∅ |" in md  # an empty response stays visible


def test_mismatched_or_short_files_are_named(tmp_path):
    a = _samples(tmp_path / "a.jsonl", ["x", "y"])
    other = _samples(tmp_path / "other.jsonl", ["x", "y"], ids=["d/test/9", "d/test/8"])
    spec = {"kind": "samples", "title": "t", "examples": 2, "rows": [
        {"label": "A", "nfe": 1, "samples": a}, {"label": "B", "nfe": 1, "samples": other}]}
    with pytest.raises(InputError, match="other.jsonl: row 'B' did not complete the same"):
        make_table(spec, None, tmp_path / "t.csv")
    spec["examples"] = 3
    spec["rows"] = spec["rows"][:1]
    with pytest.raises(InputError, match="a.jsonl: 2 samples, the table shows 3"):
        make_table(spec, None, tmp_path / "t.csv")
    spec["rows"][0]["samples"] = str(tmp_path / "missing.jsonl")
    assert main(["--spec-json", json.dumps(spec), "--out", str(tmp_path / "t.csv")]) == 2
    assert not (tmp_path / "t.csv").exists()
