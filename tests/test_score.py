"""The score_samples stage: CLI end to end, the scores JSON contract, input errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from repro.io import InputError
from repro.metrics import compute_metric
from repro.score import main, score

ROWS = [
    {"id": "d/test/0", "source": "s", "reference": "how can i learn python ?",
     "hypothesis": "how do i learn python ?", "hypothesis_ids": [5, 6, 7, 8, 9, 10]},
    {"id": "d/test/1", "source": "s", "reference": "what is the best phone",
     "hypothesis": "", "hypothesis_ids": []},
    {"id": "d/test/2", "source": "s", "reference": "why is the sky blue ?",
     "hypothesis": "why is the sky blue ?", "hypothesis_ids": [11, 12, 13, 14, 15, 16]},
]  # fmt: skip
CFG = {
    "bleu": {"kind": "sentence_bleu_nltk", "clean": "diffuseq"},
    "bleu_klflow": {"kind": "bleu_klflow"},
    "sacrebleu": {"kind": "corpus_sacrebleu"},
    "rouge_l": {"kind": "rouge_l_rouge_score"},
    "entropy": {"kind": "unigram_entropy", "base": "2"},
}


def _write(path, rows, blank_lines_at=()):
    lines = [json.dumps(r) for r in rows]
    for i in sorted(blank_lines_at, reverse=True):
        lines.insert(i, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_writes_the_scores_contract(tmp_path):
    samples = _write(tmp_path / "seed0.jsonl", ROWS)
    out = tmp_path / "scores" / "seed0.json"
    rc = main(["--samples", str(samples), "--metrics-json", json.dumps(CFG), "--out", str(out)])
    assert rc == 0
    scores = json.loads(out.read_text())
    assert scores["samples"] == str(samples)
    assert scores["n"] == 3 and scores["ids"] == ["d/test/0", "d/test/1", "d/test/2"]
    assert set(scores["metrics"]) == set(CFG)
    for name, cfg in CFG.items():
        entry = scores["metrics"][name]
        opts = {k: v for k, v in cfg.items() if k != "kind"}
        expected = compute_metric(cfg["kind"], ROWS, **opts)
        assert entry["kind"] == cfg["kind"]
        assert entry["value"] == pytest.approx(expected.value)
        assert entry["per_example"] == pytest.approx(expected.per_example)
        assert entry["variant"] == expected.variant
        assert len(entry["per_example"]) == 3
    assert scores["metrics"]["bleu_klflow"]["per_example"][1] is None  # empty hypothesis
    assert scores["metrics"]["bleu_klflow"]["options"] == {"clean": "none", "max_order": 4}
    assert scores["metrics"]["entropy"]["per_example"][0] == pytest.approx(2.584962500721156)
    prov = scores["provenance"]
    assert prov["repro"]
    assert set(prov["packages"]) >= {"nltk", "sacrebleu", "rouge-score", "torchmetrics", "torch"}
    assert prov["packages"]["nltk"][0].isdigit()


def test_python_m_entry_point_and_lazy_imports(tmp_path):
    """`python -m repro.score` works, and BLEU alone imports neither torch nor torchmetrics."""
    samples = _write(tmp_path / "s.jsonl", ROWS)
    out = tmp_path / "o.json"
    code = (
        "import sys; from repro.score import main; "
        f"rc = main(['--samples', {str(samples)!r}, '--metrics-json', "
        '\'{"b": {"kind": "sentence_bleu_nltk"}}\', '
        f"'--out', {str(out)!r}]); "
        "heavy = [m for m in ('torch', 'torchmetrics') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert json.loads(out.read_text())["metrics"]["b"]["value"] > 0
    bad = subprocess.run(
        [sys.executable, "-m", "repro.score", "--samples", str(samples), "--metrics-json",
         '{"b": {"kind": "nope"}}', "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown metric kind 'nope'" in bad.stderr
    assert not (tmp_path / "x.json").exists()


def test_empty_samples_file_is_an_error(tmp_path):
    samples = tmp_path / "empty.jsonl"
    samples.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(f"{samples}: no samples")):
        score(samples, {"b": {"kind": "sentence_bleu_nltk"}}, tmp_path / "o.json")
    assert not (tmp_path / "o.json").exists()


def test_missing_field_names_file_and_line(tmp_path):
    rows = [dict(r) for r in ROWS]
    del rows[2]["reference"]
    samples = _write(tmp_path / "s.jsonl", rows, blank_lines_at=[1])  # row 2 is on line 4
    with pytest.raises(InputError, match=re.escape(f"{samples}:4: missing field 'reference'")):
        score(samples, {"b": {"kind": "bleu_klflow"}}, tmp_path / "o.json")
    rows = [dict(r) for r in ROWS]
    del rows[0]["hypothesis"]
    samples = _write(tmp_path / "s2.jsonl", rows)
    with pytest.raises(InputError, match=re.escape(f"{samples}:1: missing field 'hypothesis'")):
        score(samples, {"e": {"kind": "unigram_entropy"}}, tmp_path / "o.json")


def test_bad_metrics_config(tmp_path):
    samples = _write(tmp_path / "s.jsonl", ROWS)
    with pytest.raises(InputError, match=r"expected an object"):
        score(samples, [], tmp_path / "o.json")
    # no metric requested (the tables ask only for kinds not implemented yet): valid, empty
    assert score(samples, {}, tmp_path / "none.json")["metrics"] == {}
    with pytest.raises(InputError, match=r"metrics config 'b'.*unknown option\(s\) weights"):
        score(samples, {"b": {"kind": "sentence_bleu_nltk", "weights": [1]}}, tmp_path / "o.json")
    assert main(["--samples", str(samples), "--metrics-json", "{bad", "--out", "o.json"]) == 2
