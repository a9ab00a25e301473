"""The score_samples stage: CLI end to end, the scores JSON contract, input errors."""

from __future__ import annotations

import errno
import json
import os
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
    assert scores["metrics"]["bleu_klflow"]["options"] == {
        "clean": "none", "max_order": 4, "empty": "drop"
    }
    assert scores["metrics"]["entropy"]["per_example"][0] == pytest.approx(2.584962500721156)
    prov = scores["provenance"]
    assert prov["repro"]
    assert set(prov["packages"]) >= {"nltk", "sacrebleu", "rouge-score", "torchmetrics", "torch"}
    assert prov["packages"]["nltk"][0].isdigit()


def test_disk_full_names_the_scores_file_and_keeps_the_old_one(tmp_path, monkeypatch, capsys):
    samples = _write(tmp_path / "seed0.jsonl", ROWS)
    out = tmp_path / "scores" / "seed0.json"
    args = ["--samples", str(samples), "--metrics-json", '{"e": {"kind": "unigram_entropy"}}',
            "--out", str(out)]
    assert main(args) == 0
    before = out.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"error: cannot write {out}: No space left on device" in err
    assert "the previous file is kept" in err and "Traceback" not in err
    assert out.read_bytes() == before and sorted(out.parent.iterdir()) == [out]


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


# --- group metrics: k samples files of the same sources -----------------------------------------

GROUP_HYPS = [  # per seed file: hypotheses of d/test/0..2
    ["how do i learn python ?", "", "why is the sky blue ?"],
    ["how can i learn python quickly ?", "what is the best phone", "why is the sky blue"],
    ["best way to learn python ?", "which phone is best", "why is the sky so blue ?"],
]


def _seed_rows(s: int) -> list[dict]:
    return [dict(row, hypothesis=h, seed=s) for row, h in zip(ROWS, GROUP_HYPS[s])]


def test_group_scores_align_by_id(tmp_path):
    from repro.metrics import compute_group_metric

    files = [
        _write(tmp_path / "seed0.jsonl", _seed_rows(0)),
        _write(tmp_path / "seed1.jsonl", _seed_rows(1)[::-1]),  # another row order
        _write(tmp_path / "seed2.jsonl", _seed_rows(2)),
    ]
    cfg = {"self_bleu": {"kind": "self_bleu"}, "div_4": {"kind": "div_4", "clean": "diffuseq"}}
    out = tmp_path / "group3.json"
    assert main(["--samples", *map(str, files), "--metrics-json", json.dumps(cfg),
                 "--out", str(out)]) == 0  # fmt: skip
    scores = json.loads(out.read_text())
    assert scores["samples"] == [str(f) for f in files] and scores["group_size"] == 3
    assert scores["n"] == 3 and scores["ids"] == ["d/test/0", "d/test/1", "d/test/2"]
    groups = [_seed_rows(s) for s in range(3)]
    for name, c in cfg.items():
        opts = {k: v for k, v in c.items() if k != "kind"}
        expected = compute_group_metric(c["kind"], groups, **opts)
        entry = scores["metrics"][name]
        assert entry["per_example"] == pytest.approx(expected.per_example)
        assert entry["value"] == pytest.approx(expected.value) and len(entry["per_example"]) == 3
        assert entry["options"] == {"clean": opts.get("clean", "none")}
    # the reordered file must not change anything: same as writing it in order
    in_order = _write(tmp_path / "seed1_ordered.jsonl", _seed_rows(1))
    again = score([files[0], in_order, files[2]], cfg, tmp_path / "again.json")
    assert again["metrics"]["self_bleu"]["per_example"] == scores["metrics"]["self_bleu"][
        "per_example"
    ]
    assert scores["metrics"]["self_bleu"]["per_example"][2] > 0.3  # near-identical outputs


def test_group_and_per_file_kinds_are_not_mixed(tmp_path):
    files = [_write(tmp_path / f"seed{s}.jsonl", _seed_rows(s)) for s in range(2)]
    with pytest.raises(InputError, match=r"metric 'sb' \(kind 'self_bleu'\) is a group metric"):
        score(files[0], {"sb": {"kind": "self_bleu"}}, tmp_path / "o.json")
    with pytest.raises(InputError, match=r"metric 'b' \(kind 'sentence_bleu_nltk'\) scores one"):
        score(files, {"b": {"kind": "sentence_bleu_nltk"}}, tmp_path / "o.json")
    other = _seed_rows(1)
    other[2]["id"] = "d/test/99"
    bad = _write(tmp_path / "bad.jsonl", other)
    with pytest.raises(InputError, match=r"bad.jsonl: its sample ids differ from .*seed0.jsonl"):
        score([files[0], bad], {"d": {"kind": "div_4"}}, tmp_path / "o.json")
    assert main(["--samples", str(files[0]), "--metrics-json", '{"d": {"kind": "div_4"}}',
                 "--out", str(tmp_path / "o.json")]) == 2  # fmt: skip
    assert not (tmp_path / "o.json").exists()


def test_single_file_diversity_and_length(tmp_path):
    samples = _write(tmp_path / "s.jsonl", ROWS)
    cfg = {"dist_1": {"kind": "dist_1"}, "len": {"kind": "length_diffuseq"},
           "words": {"kind": "length"}}  # fmt: skip
    scores = score(samples, cfg, tmp_path / "o.json")
    assert "group_size" not in scores and scores["samples"] == str(samples)
    assert scores["metrics"]["dist_1"]["per_example"] == [1.0, 0.0, 1.0]
    assert scores["metrics"]["words"]["per_example"] == [6.0, 0.0, 6.0]
    assert scores["metrics"]["len"]["per_example"] == [8.0, 2.0, 8.0]  # +2: DiffuSeq's artefact


# --- KL-flow Table 3: empty responses dropped, Top-5 / Avg over the rest ------------------------

KLFLOW_REFS = ["the cat sat on the mat today", "how do i learn python fast", "the capital is paris"]
KLFLOW_RESPONSES = [  # [prompt][seed]: 5 responses per prompt
    ["the cat sat on the mat", "a cat sat on the mat today", "", "the cat sat on a mat today",
     "dogs run"],
    ["", "how do i learn python fast", "how can i learn python", "   ", "learn python fast"],
    ["", "", " ", "", ""],  # every response empty: KL-flow skips the prompt
]  # fmt: skip


def _klflow_expected(score_fn) -> tuple[float, float]:
    """KL-flow's protocol written out: per prompt drop empty responses, score the rest, Top-5 =
    max, Avg = mean; prompts left without a response are skipped; mean over prompts."""
    top, avg = [], []
    for ref, responses in zip(KLFLOW_REFS, KLFLOW_RESPONSES):
        kept = [r for r in responses if r.strip()]
        if not kept:
            continue
        values = [score_fn(r, ref) for r in kept]
        top.append(max(values))
        avg.append(sum(values) / len(values))
    return sum(top) / len(top), sum(avg) / len(avg)


def test_klflow_top5_and_avg_drop_empty_responses(tmp_path):
    import sacrebleu
    from rouge_score import rouge_scorer

    from repro.report import aggregate, load_cell

    paths = []
    for s in range(5):
        rows = [
            {"id": f"p{i}", "source": "prompt", "reference": ref,
             "hypothesis": KLFLOW_RESPONSES[i][s]}
            for i, ref in enumerate(KLFLOW_REFS)
        ]  # fmt: skip
        out = tmp_path / f"seed{s}.json"
        score(_write(tmp_path / f"seed{s}.jsonl", rows), {
            "bleu": {"kind": "bleu_klflow"},  # empty: drop is its default
            "rouge": {"kind": "rouge_l_rouge_score", "empty": "drop"},
            "rouge_keep": {"kind": "rouge_l_rouge_score"},
        }, out)  # fmt: skip
        paths.append(str(out))

    def bleu(hyp, ref):  # = HF evaluate "bleu" on one pair, x100 (see tests/metrics/test_text.py)
        return sacrebleu.sentence_bleu(
            hyp, [ref], smooth_method="none", tokenize="13a", use_effective_order=False
        ).score

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

    def rouge(hyp, ref):
        return scorer.score(ref, hyp)["rougeL"].fmeasure

    for metric, fn in (("bleu", bleu), ("rouge", rouge)):
        cell = load_cell(paths, metric)
        top5, avg = _klflow_expected(fn)
        assert aggregate(cell, "best_of_seeds").value == pytest.approx(top5, abs=1e-9)
        assert aggregate(cell, "mean_of_seeds").value == pytest.approx(avg, abs=1e-9)
        assert aggregate(cell, "mean_of_seeds").n_examples == 2  # prompt p2 skipped
    assert 0 < _klflow_expected(bleu)[1] < _klflow_expected(bleu)[0]  # non-trivial values
    # keeping empty responses (scored 0) lowers Avg: the option is what makes it KL-flow's
    keep = aggregate(load_cell(paths, "rouge_keep"), "mean_of_seeds")
    assert keep.n_examples == 3 and keep.value < _klflow_expected(rouge)[1]


def test_empty_option_of_bleu_klflow_and_rouge():
    rows = [{"id": "0", "hypothesis": " ", "reference": "a b c d"},
            {"id": "1", "hypothesis": "a b c d", "reference": "a b c d"},
            {"id": "2", "hypothesis": "", "reference": ""}]  # fmt: skip
    assert compute_metric("bleu_klflow", rows).per_example == [None, 100.0, None]
    assert compute_metric("bleu_klflow", rows, empty="keep").per_example == [0.0, 100.0, None]
    assert compute_metric("rouge_l_rouge_score", rows).per_example == [0.0, 1.0, 0.0]
    assert compute_metric("rouge_l_rouge_score", rows, empty="drop").per_example == [
        None, 1.0, None
    ]
    with pytest.raises(InputError, match=r"empty='none' is not one of 'keep', 'drop'"):
        compute_metric("bleu_klflow", rows, empty="none")


def test_a_capped_samples_file_is_scored_on_its_own_rows(tmp_path):
    """A sampler's ``max_examples`` leaves fewer samples than the split has references: each row
    carries its reference, so the scores cover exactly the sampled rows and the table's
    ``n_examples`` says how many."""
    from repro.report import AGGREGATES, load_cell

    cfg = {"bleu": CFG["bleu"]}
    full, capped = tmp_path / "full.json", tmp_path / "capped.json"
    assert main(["--samples", str(_write(tmp_path / "a.jsonl", ROWS)), "--metrics-json",
                 json.dumps(cfg), "--out", str(full)]) == 0
    assert main(["--samples", str(_write(tmp_path / "b.jsonl", ROWS[:2])), "--metrics-json",
                 json.dumps(cfg), "--out", str(capped)]) == 0
    a, b = json.loads(full.read_text()), json.loads(capped.read_text())
    assert b["n"] == 2 and b["ids"] == a["ids"][:2]
    assert b["metrics"]["bleu"]["per_example"] == a["metrics"]["bleu"]["per_example"][:2]
    assert AGGREGATES["mean"](load_cell([str(capped)], "bleu")).n_examples == 2
    assert AGGREGATES["mean"](load_cell([str(full)], "bleu")).n_examples == 3
