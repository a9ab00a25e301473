"""``benchmarks/compare_results.py``: two results trees compared, measured times aside."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_results.py"
_spec = importlib.util.spec_from_file_location("compare_results", BENCH)
cr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cr)

CSV = (
    "table,row,column,metric,ours,ours_std\n"
    "t,FM,BLEU,bleu,0.5,\n"
    "t,FM,seconds/sample,wall_seconds,{secs},\n"
)
MD = "# t\n\n| Row | BLEU | seconds/sample |\n|---|---|---|\n| FM | {bleu} | {secs} |\n"


def _tree(root: Path, secs: float, hyp: str = "a b", bleu: str = "0.5") -> Path:
    (root / "tables").mkdir(parents=True)
    (root / "samples").mkdir()
    (root / "train" / "x" / "_work").mkdir(parents=True)
    (root / "tables" / "t.csv").write_text(CSV.format(secs=secs).replace("0.5", bleu, 1))
    (root / "tables" / "t.md").write_text(MD.format(bleu=bleu, secs=secs))
    (root / "samples" / "seed0.jsonl").write_text(
        json.dumps({"hypothesis": hyp, "wall_seconds": secs}) + "\n")
    (root / "train" / "x" / "model.ckpt").write_bytes(b"weights")
    (root / "train" / "x" / "_work" / "last.ckpt").write_bytes(str(secs).encode())  # skipped
    return root


def test_only_measured_times_differ(tmp_path, capsys):
    old, new = _tree(tmp_path / "a", 0.1), _tree(tmp_path / "b", 0.3)
    res = cr.compare(old, new)
    assert res["identical"] == ["train/x/model.ckpt"]
    assert res["times"] == ["samples/seed0.jsonl", "tables/t.csv", "tables/t.md"]
    assert not (res["differ"] or res["only_old"] or res["only_new"])
    assert cr.main([str(old), str(new)]) == 0


def test_a_changed_value_or_a_missing_file_is_a_difference(tmp_path):
    old = _tree(tmp_path / "a", 0.1)
    new = _tree(tmp_path / "b", 0.1, hyp="a c", bleu="0.6")
    (new / "train" / "x" / "model.ckpt").unlink()
    res = cr.compare(old, new)
    assert res["differ"] == ["samples/seed0.jsonl", "tables/t.csv", "tables/t.md"]
    assert res["only_old"] == ["train/x/model.ckpt"]
    assert cr.main([str(old), str(new)]) == 1
