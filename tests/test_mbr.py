"""MBR selection (DiffuSeq's rule): known answers, ties, alignment by id, errors, the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repro.io import InputError, read_jsonl
from repro.mbr import main, mbr_index, mbr_utilities, run

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _nltk_bleu(hyp: str, ref: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(
        sentence_bleu([ref.split()], hyp.split(), smoothing_function=SmoothingFunction().method4)
    )


def _select_best_reference(sentences: list[str]) -> int:
    """DiffuSeq's selectBest: full BLEU matrix (hyp = row, ref = column), diagonal zeroed,
    ``np.argmax`` of the row sums."""
    matrix = [[_nltk_bleu(s1, s2) for s2 in sentences] for s1 in sentences]
    for i in range(len(sentences)):
        matrix[i][i] = 0
    return int(np.argmax(np.sum(matrix, -1)))


def test_known_answer_and_utilities():
    candidates = [
        "a dog ran in the park today",
        "the cat sat on the mat",
        "the cat sat on a mat",
        "the cat sat on the mat today",
    ]
    utilities = mbr_utilities(candidates)
    expected = [
        sum(_nltk_bleu(c, o) for j, o in enumerate(candidates) if j != i)
        for i, c in enumerate(candidates)
    ]
    assert utilities == pytest.approx(expected, abs=1e-12)
    assert mbr_index(candidates) == 1 == _select_best_reference(candidates)
    assert utilities[0] < min(utilities[1:])  # the outlier is never chosen


def test_ties_go_to_the_first_file():
    assert mbr_index(["same words here ok", "same words here ok", "same words here ok"]) == 0
    assert mbr_index(["", "", ""]) == 0  # all utilities 0
    # two exact copies beat the rest; the first copy wins, wherever it is
    cands = ["one two three four", "x y z w v", "x y z w v", "one two three five"]
    assert mbr_index(cands) == 1
    assert mbr_index(cands[::-1]) == 1  # reversed order: now index 1 is still the first copy


def test_real_qqp_equals_diffuseq_select_best():
    path = DATA / "qqp" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"QQP test data not found at {path}")
    rng = random.Random(1)
    chosen = []
    with open(path, encoding="utf-8") as fh:
        for _, line in zip(range(60), fh):
            row = json.loads(line)
            base = [row["src"], row["trg"]]
            cands = []
            for _ in range(5):
                toks = rng.choice(base).split()
                toks = [t for t in toks if rng.random() > 0.2] or ["?"]
                cands.append(" ".join(toks))
            got = mbr_index(cands)
            assert got == _select_best_reference(cands), cands
            chosen.append(got)
    assert len(set(chosen)) > 2  # the choice varies: the comparison is not vacuous


# --- files ---------------------------------------------------------------------------------------


def _rows(seed: int, hyps: list[str], order=None) -> list[dict]:
    rows = [
        {"id": f"d/test/{i}", "source": f"src {i}", "reference": f"ref {i}", "hypothesis": h,
         "hypothesis_ids": [seed, i], "sampler": "ancestral", "nfe": 31, "seed": seed,
         "wall_seconds": 0.5 + seed}
        for i, h in enumerate(hyps)
    ]  # fmt: skip
    return [rows[i] for i in order] if order else rows


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


CANDS = [  # per seed file: hypotheses of sources 0, 1
    ["completely different words here", "[CLS] a b c d [SEP]"],
    ["the cat sat on the mat", "a b c d"],
    ["the cat sat on the mat", "x y z"],
]


def test_cli_end_to_end(tmp_path):
    files = [
        _write(tmp_path / "seed0.jsonl", _rows(0, CANDS[0])),
        _write(tmp_path / "seed1.jsonl", _rows(1, CANDS[1], order=[1, 0])),  # other order
        _write(tmp_path / "seed2.jsonl", _rows(2, CANDS[2])),
    ]
    out = tmp_path / "mbr" / "mbr3.jsonl"
    assert main(["--samples", *files, "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["d/test/0", "d/test/1"]  # the first file's order
    # source 0: seeds 1 and 2 agree (a tie) against an outlier: the first of them, seed 1
    first = rows[0]
    assert first["mbr"] == {"k": 3, "chosen": 1, "seeds": [0, 1, 2]}
    assert _select_best_reference([c[0] for c in CANDS]) == 1
    assert first["hypothesis"] == CANDS[1][0] and first["seed"] == 1
    assert first["hypothesis_ids"] == [1, 0] and first["sampler"] == "ancestral"
    assert first["nfe"] == 31 and first["source"] == "src 0" and first["reference"] == "ref 0"
    assert first["wall_seconds"] == pytest.approx(0.5 + 1.5 + 2.5)
    # source 1: after DiffuSeq cleaning seeds 0 and 1 tie ("a b c d"): the first file wins, and
    # the row keeps its own, uncleaned hypothesis
    second = rows[1]
    assert second["mbr"]["chosen"] == 0 and second["hypothesis"] == CANDS[0][1]
    # without cleaning, "[CLS] a b c d [SEP]" no longer matches: seed 1 is chosen
    out2 = tmp_path / "mbr_none.jsonl"
    assert main(["--samples", *files, "--out", str(out2), "--clean", "none"]) == 0
    second = read_jsonl(out2)[1]
    assert second["mbr"]["chosen"] == 1 and second["seed"] == 1
    assert second["hypothesis"] == "a b c d" and second["hypothesis_ids"] == [1, 1]


def test_python_m_entry_point(tmp_path):
    files = [_write(tmp_path / f"seed{s}.jsonl", _rows(s, CANDS[s])) for s in range(3)]
    out = tmp_path / "o.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "repro.mbr", "--samples", *files, "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out)) == 2 and "chosen per file: [1, 1, 0]" in proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "repro.mbr", "--samples", files[0], "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "MBR needs k >= 2 samples files" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_alignment_and_input_errors(tmp_path):
    ok = [_write(tmp_path / f"seed{s}.jsonl", _rows(s, CANDS[s])) for s in range(2)]
    out = tmp_path / "o.jsonl"
    missing = _rows(2, CANDS[2])[:1]
    f_missing = _write(tmp_path / "short.jsonl", missing)
    with pytest.raises(InputError, match=r"short.jsonl: its sample ids differ from .*seed0.jsonl"):
        run([*ok, f_missing], out)
    dup = _rows(2, CANDS[2])
    dup[1]["id"] = dup[0]["id"]
    with pytest.raises(InputError, match=r"dup.jsonl: duplicated sample ids, e.g. \['d/test/0'\]"):
        run([*ok, _write(tmp_path / "dup.jsonl", dup)], out)
    other_ref = _rows(2, CANDS[2])
    other_ref[1]["reference"] = "something else"
    with pytest.raises(InputError, match=r"other.jsonl: sample 'd/test/1' has a different reference"):
        run([*ok, _write(tmp_path / "other.jsonl", other_ref)], out)
    no_seed = _rows(2, CANDS[2])
    del no_seed[0]["seed"]
    with pytest.raises(InputError, match=r"noseed.jsonl:1: missing field 'seed'"):
        run([*ok, _write(tmp_path / "noseed.jsonl", no_seed)], out)
    bad_wall = _rows(2, CANDS[2])
    bad_wall[0]["wall_seconds"] = "1s"
    with pytest.raises(InputError, match=r"wall.jsonl:1: field 'wall_seconds' must be a number of seconds >= 0"):
        run([*ok, _write(tmp_path / "wall.jsonl", bad_wall)], out)
    with pytest.raises(InputError, match=r"given twice"):
        run([ok[0], ok[1], ok[0]], out)
    with pytest.raises(InputError, match=r"--clean 'x' is not one of"):
        run(ok, out, clean="x")
    assert not out.exists()
