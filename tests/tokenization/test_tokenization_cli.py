"""`python -m repro.tokenization train|encode` end to end, and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tok_samples import CODE

from repro.io import write_jsonl
from repro.tokenization import load_layout_from_meta, load_tokenized, load_tokenizer, specials_of
from repro.tokenization.__main__ import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro.tokenization", *args],
                          capture_output=True, text=True, timeout=120)


def make_seq2seq(data_dir, n=(20, 4, 3)):
    for split, count in zip(("train", "validation", "test"), n):
        write_jsonl(data_dir / f"{split}.jsonl", [
            {"id": f"syn/{split}/{i}", "src": f"how do i learn python {i % 3}",
             "trg": "what is the best way to learn python" + " fast" * (i % 4)}
            for i in range(count)
        ])


def make_code(data_dir):
    for split in ("train", "validation", "test"):
        write_jsonl(data_dir / f"{split}.jsonl", [
            {"id": f"code/{split}/{i}", "prompt": "Write a function.", "code": c,
             "tests": ["assert True"], "setup": ""}
            for i, c in enumerate(CODE)
        ])


def test_train_and_encode_seq2seq_end_to_end(tmp_path):
    data = tmp_path / "data" / "syn"
    make_seq2seq(data)
    tok_path = tmp_path / "tokenizer" / "syn" / "tokenizer.json"
    cfg = json.dumps({"train": {"algorithm": "wordlevel", "vocab_size": 100, "lowercase": True}})
    res = run_cli("train", "--data-dir", str(data), "--kind", "seq2seq", "--config-json", cfg,
                  "--out", str(tok_path))
    assert res.returncode == 0, res.stderr
    assert "trained on 20 rows" in res.stdout
    tok = load_tokenizer(tok_path)
    assert tok.token_to_id("python") is not None and tok.token_to_id("[EOS]") == 6

    out = tmp_path / "tokenized" / "syn" / "conditional"
    res = run_cli("encode", "--data-dir", str(data), "--tokenizer", str(tok_path), "--layout",
                  "conditional", "--seq-len", "19", "--options-json", '{"max_src_len": 6}',
                  "--out-dir", str(out))
    assert res.returncode == 0, res.stderr
    assert "train: 20 rows -> n=20 dropped=0 truncated=5" in res.stdout  # 5 rows have 3 x fast
    assert "test: 3 rows -> n=3 dropped=0 truncated=0" in res.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["options"] == {"max_src_len": 6} and meta["seq_len"] == 19
    assert meta["splits"]["validation"]["row_ids"] == [f"syn/validation/{i}" for i in range(4)]
    test = load_tokenized(out, "test")
    assert test.ids.shape == (3, 19)
    lay = load_layout_from_meta(out, tok_path)
    assert lay.decode(test.ids[1], test.cond[1]) == "what is the best way to learn python fast"
    assert np.array_equal(test.cond[0], [1] * 8 + [0] * 11)
    assert meta["splits"]["validation"]["truncated"] == 1


def test_train_and_encode_code_in_process(tmp_path, capsys):
    data = tmp_path / "code"
    make_code(data)
    tok_path = tmp_path / "tok.json"
    cfg = json.dumps({"train": {"algorithm": "bytelevel_bpe", "vocab_size": 300}})
    assert main(["train", "--data-dir", str(data), "--kind", "code", "--config-json", cfg,
                 "--out", str(tok_path)]) == 0
    tok = load_tokenizer(tok_path)
    assert tok.decode(tok.encode("Write a function.").ids) == "Write a function."
    for layout in ("infill", "infill_ar"):
        out = tmp_path / layout
        assert main(["encode", "--data-dir", str(data), "--tokenizer", str(tok_path), "--layout",
                     layout, "--seq-len", "128", "--options-json", '{"line_budget": 16}',
                     "--out-dir", str(out)]) == 0
        lay = load_layout_from_meta(out, tok_path)
        split = load_tokenized(out, "test")
        assert split.row_ids == [f"code/test/{i}" for i in range(len(CODE))]
        assert [lay.decode(i, c) for i, c in zip(split.ids, split.cond)] == CODE
    assert "validation: 6 rows -> n=6 dropped=0 truncated=0" in capsys.readouterr().out


def test_pretrained_through_the_cli(tmp_path, word_tok):
    local = tmp_path / "pre" / "tokenizer.json"
    local.parent.mkdir()
    local.write_text(word_tok.to_str())
    out = tmp_path / "tok.json"
    cfg = json.dumps({"pretrained": {"id": str(local.parent), "revision": "local"}})
    assert main(["train", "--data-dir", str(tmp_path / "unused"), "--kind", "text",
                 "--config-json", cfg, "--out", str(out)]) == 0
    assert specials_of(load_tokenizer(out)) == specials_of(word_tok)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "--kind", "seq2seq", "--config-json", '{"train": {"algorithm": "wordlevel", '
          '"vocab_size": 50}, "pretrained": {}}'], "exactly one of"),
        (["train", "--kind", "seq2seq", "--config-json", "{oops"], "--config-json: not valid JSON"),
        (["train", "--kind", "text", "--config-json", '{"train": {"algorithm": "wordlevel", '
          '"vocab_size": 50}}'], "train.jsonl: row 1 is a seq2seq row, but --kind is text"),
        (["encode", "--layout", "lm", "--seq-len", "16"],
         r"a seq2seq dataset, but layout 'lm' takes text data; use one of \['halves', 'diffuseq', "
         r"'conditional'\]"),
        (["encode", "--layout", "wavelet", "--seq-len", "16"], "unknown layout 'wavelet'"),
        (["encode", "--layout", "halves", "--seq-len", "16", "--options-json", '{"x": 1}'],
         r"unknown option\(s\) \['x'\]"),
        (["encode", "--layout", "halves", "--seq-len", "16", "--splits", "train,dev"],
         "unknown split 'dev'"),
    ],
)
def test_cli_errors(tmp_path, capsys, word_tok, argv, match):
    data = tmp_path / "data"
    make_seq2seq(data)
    tok = tmp_path / "tok.json"
    tok.write_text(word_tok.to_str())
    extra = ["--data-dir", str(data)]
    extra += ["--out", str(tmp_path / "o.json")] if argv[0] == "train" else [
        "--tokenizer", str(tok), "--out-dir", str(tmp_path / "out")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o.json").exists()


def test_empty_split_and_all_dropped(tmp_path, capsys, word_tok):
    data = tmp_path / "data"
    make_seq2seq(data)
    (data / "validation.jsonl").write_text("")
    tok = tmp_path / "tok.json"
    tok.write_text(word_tok.to_str())
    base = ["encode", "--data-dir", str(data), "--tokenizer", str(tok), "--out-dir",
            str(tmp_path / "out")]
    assert main(base + ["--layout", "halves", "--seq-len", "16"]) == 2
    assert f"{data}/validation.jsonl: the validation split of {data} is empty" in capsys.readouterr().err
    code = tmp_path / "code"
    make_code(code)
    assert main(["encode", "--data-dir", str(code), "--tokenizer", str(tok), "--out-dir",
                 str(tmp_path / "out"), "--layout", "infill", "--seq-len", "8",
                 "--options-json", '{"line_budget": 2}']) == 2
    assert "every row was dropped" in capsys.readouterr().err
    assert not (tmp_path / "out" / "meta.json").exists()
    (data / "validation.jsonl").write_text('{"id": "x", "src": "a", "trg": 1}\n')
    assert main(base + ["--layout", "halves", "--seq-len", "16"]) == 2
    assert "validation.jsonl: row 1 (id x): field 'trg' must be a string" in capsys.readouterr().err
