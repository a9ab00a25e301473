"""Loader ``jsonl`` (a user's own files, fields mapped in the config), the check that ``local`` keys
name source splits that are read, and the wmt14 loader's Moses detokenization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.data import load_split, needs_download, parse_config, prepare_dataset
from repro.io import InputError


def _jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_seq2seq_fields_and_identity_splits(tmp_path):
    local = {s: _jsonl(tmp_path / f"{s}.jsonl", [{"question": f"{s} q{i}", "paraphrase": f"{s} p{i}",
                                                   "label": 1} for i in range(3)])
             for s in ("train", "validation", "test")}
    cfg = {"loader": "jsonl", "kind": "seq2seq", "local": local,
           "fields": {"src": "question", "trg": "paraphrase"}}
    assert not needs_download(cfg)
    assert {s: str(v) for s, v in parse_config("mine", cfg).splits.items()} == {
        "train": "train", "validation": "validation", "test": "test"}
    counts = prepare_dataset("mine", cfg, tmp_path / "out")
    assert counts == {"train": 3, "validation": 3, "test": 3}
    rows = [json.loads(line) for line in (tmp_path / "out" / "test.jsonl").read_text().splitlines()]
    assert rows[1] == {"id": "mine/test/1", "src": "test q1", "trg": "test p1"}


def test_text_only_train_is_split_90_5_5_and_dotted_keys(tmp_path):
    path = _jsonl(tmp_path / "s.jsonl", [{"meta": {"story": f"story {i}"}} for i in range(20)])
    cfg = {"loader": "jsonl", "kind": "text", "local": {"train": path},
           "fields": {"text": "meta.story"}}
    assert [r["text"] for r in load_split("ts", cfg, "train")] == [f"story {i}" for i in range(18)]
    assert [r["text"] for r in load_split("ts", cfg, "validation")] == ["story 18"]
    assert load_split("ts", cfg, "test") == [{"id": "ts/test/0", "text": "story 19"}]


def test_code_rows_have_mbpp_shape(tmp_path):
    rows = [{"task": 7, "q": "Add one.", "sol": "def f(x):\r\n    return x + 1\r\n",
             "asserts": ["assert f(1) == 2"], "imports": "import math"},
            {"task": 8, "q": "Id.", "sol": "def g(x):\n    return x\n", "asserts": ["assert g(3) == 3"]}]
    path = _jsonl(tmp_path / "c.jsonl", rows)
    cfg = {"loader": "jsonl", "kind": "code", "local": {"test": path},
           "splits": {"train": "test", "validation": "test", "test": "test"},
           "fields": {"prompt": "q", "code": "sol", "tests": "asserts", "id": "task"}}
    with pytest.raises(InputError, match=r"c\.jsonl:2: missing field 'imports' \(datasets\.c\.fields\.setup\)"):
        load_split("c", {**cfg, "fields": {**cfg["fields"], "setup": "imports"}}, "test")
    got = load_split("c", cfg, "test")
    assert got[0] == {"id": "c/7", "prompt": "Add one.", "code": "def f(x):\n    return x + 1\n",
                      "tests": ["assert f(1) == 2"], "setup": ""}
    exec(got[0]["code"] + "\n".join(got[0]["tests"]), {})  # what code_exec runs
    only_code = load_split("c", {**cfg, "fields": {"code": "sol"}}, "test")
    assert only_code[1] == {"id": "c/test/1", "prompt": "", "code": rows[1]["sol"], "tests": [],
                            "setup": ""}


@pytest.mark.parametrize(("cfg", "pattern"), [
    ({"fields": {"src": "q"}}, r"datasets\.d\.fields\.trg: missing; loader 'jsonl' of kind 'seq2seq'"),
    ({"fields": {"src": "q", "trg": "p", "text": "t"}}, r"datasets\.d\.fields: unknown key\(s\) \['text'\]"),
    ({"fields": {"src": "q", "trg": 3}}, r"datasets\.d\.fields\.trg: expected the name of a key"),
    ({"kind": None}, r"datasets\.d\.kind: loader 'jsonl' needs the task kind"),
    ({"local": {}}, r"datasets\.d\.local: loader 'jsonl' reads local files only"),
    ({"local": {"train": "a", "test": "b"}},
     r"datasets\.d\.splits\.validation: source split 'validation' has no file in datasets\.d\.local"),
    ({"hub": {"id": "x/y"}}, r"datasets\.d\.hub: not used with loader 'jsonl'"),
    ({"splits": {"train": "valid", "validation": "valid", "test": "valid"}},
     r"datasets\.d\.splits\.train: source split 'valid' has no file"),
])
def test_generic_config_errors_name_the_key(cfg, pattern):
    base = {"loader": "jsonl", "kind": "seq2seq", "local": {"train": "t.jsonl"},
            "fields": {"src": "q", "trg": "p"}}
    with pytest.raises(InputError, match=pattern):
        parse_config("d", {k: v for k, v in {**base, **cfg}.items() if v is not None})


def test_generic_row_errors_name_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "r.jsonl", [{"q": "a", "p": "b"}, {"q": "c", "p": 5}, {"q": "d"}])
    cfg = {"loader": "jsonl", "kind": "seq2seq", "local": {"test": path},
           "splits": {s: "test" for s in ("train", "validation", "test")},
           "fields": {"src": "q", "trg": "p"}}
    with pytest.raises(InputError, match=r"r\.jsonl:2: field 'p' \(datasets\.d\.fields\.trg\) must be a "
                                         r"string, got int"):
        load_split("d", cfg, "test")
    with pytest.raises(InputError, match=r"r\.jsonl:3: missing field 'p' \(datasets\.d\.fields\.trg\)"):
        load_split("d", {**cfg, "splits": {**cfg["splits"], "test": "test[2:]"}}, "test")
    code = {"loader": "jsonl", "kind": "code", "local": {"test": path}, "splits": cfg["splits"],
            "fields": {"code": "q", "tests": "q"}}
    with pytest.raises(InputError, match=r"r\.jsonl:1: field 'q' \(datasets\.d\.fields\.tests\) must be "
                                         r"a list of strings"):
        load_split("d", code, "test")


def test_a_local_key_no_split_reads_is_an_error():
    # QQP's test is validation[2048:4548] of the source: `local: {test: …}` would read nothing
    with pytest.raises(InputError, match=r"datasets\.q\.local\.test: no split reads source split 'test'.*"
                                         r"reads \['train', 'validation'\]"):
        parse_config("q", {"loader": "qqp", "local": {"test": "t.jsonl"}})
    identity = {"splits": {s: s for s in ("train", "validation", "test")}}
    assert parse_config("q", {"loader": "qqp", "local": {"test": "t.jsonl"}, **identity}).local
    with pytest.raises(InputError, match=r"datasets\.l\.local\.validation: no split reads"):
        parse_config("l", {"loader": "lamini", "local": {"train": "a", "validation": "b"}})
    with pytest.raises(InputError, match=r"datasets\.q\.fields: only loader 'jsonl'"):
        parse_config("q", {"loader": "qqp", "fields": {"src": "a"}})


def test_wmt14_moses_detokenize(tmp_path):
    path = _jsonl(tmp_path / "wmt.jsonl", [
        {"de": "Das ist &quot; gut &quot; , oder ?", "en": "it &apos;s &quot; good &quot; , isn &apos;t it ?"},
        {"translation": {"de": "3 @-@ 4 Kinder .", "en": "3 @-@ 4 children ( aged 5 ) ."}},
    ])
    cfg = {"loader": "wmt14", "local": {"train": path}, "splits": {s: "train" for s in
                                                                  ("train", "validation", "test")}}
    raw = load_split("w", cfg, "train")
    assert raw[0]["trg"] == "it &apos;s &quot; good &quot; , isn &apos;t it ?"
    rows = load_split("w", {**cfg, "options": {"detokenize": "moses"}}, "train")
    assert [(r["src"], r["trg"]) for r in rows] == [
        ('Das ist "gut", oder?', 'it\'s "good", isn\'t it?'),
        ("3-4 Kinder.", "3-4 children (aged 5)."),
    ]
    with pytest.raises(InputError, match=r"options\.detokenize: expected one of \['moses'\]"):
        parse_config("w", {**cfg, "options": {"detokenize": "sacre"}})
