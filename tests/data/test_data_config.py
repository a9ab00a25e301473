"""Dataset sub-config: accepted keys, defaults, clear errors; the registry's pins."""

from __future__ import annotations

import re

import pytest

from repro.data import LOADERS, data_subconfig, needs_download, parse_config, validate_rows
from repro.data.config import parse_split_spec
from repro.io import InputError

SYN = {"loader": "synthetic", "synthetic": {"generator": "paraphrase", "seed": 1,
                                            "size": {"train": 5, "validation": 2, "test": 2}}}


def test_registry_revisions_are_commit_shas_where_pinned():
    for name, spec in LOADERS.items():
        if spec.hub.pinned:
            assert re.fullmatch(r"[0-9a-f]{40}", spec.hub.revision), name
        else:
            assert spec.hub.revision == "main", name
        assert set(spec.splits) == {"train", "validation", "test"}
        for s in spec.splits.values():
            parse_split_spec(s, name)


@pytest.mark.parametrize(
    ("spec", "n", "bounds"),
    [
        ("train", 10, (0, 10)),
        ("train[:90%]", 10_001, (0, 9000)),
        ("train[90%:95%]", 10_001, (9000, 9500)),
        ("train[95%:]", 10_001, (9500, 10_001)),
        ("validation[2048:4548]", 3000, (2048, 3000)),
        ("train[-1000:]", 5000, (4000, 5000)),
        ("train[:-10%]", 100, (0, 90)),
        ("x[5:2]", 10, (5, 5)),
    ],
)
def test_split_spec_bounds(spec, n, bounds):
    assert parse_split_spec(spec, "w").bounds(n) == bounds


@pytest.mark.parametrize("spec", ["train[1.5:]", "train[:", "", "a b", 3])
def test_bad_split_spec(spec):
    with pytest.raises(InputError, match="bad split spec"):
        parse_split_spec(spec, "datasets.x.splits.train")


def test_defaults_and_overrides():
    dc = parse_config("q", {"loader": "qqp", "kind": "seq2seq", "tokenizer": {"ignored": True}})
    assert dc.kind == "seq2seq" and dc.hub.id == "nyu-mll/glue" and dc.hub.name == "qqp"
    assert str(dc.splits["test"]) == "validation[2048:4548]"
    assert dc.hub_splits() == ["train", "validation"]
    dc = parse_config("w", {"loader": "wmt14", "hub": {"revision": "a" * 40},
                            "splits": {"train": "train[:100]"}, "local": {"test": "t.jsonl"}})
    assert dc.hub.revision == "a" * 40 and dc.hub.name == "de-en"
    assert dc.hub_splits() == ["train", "validation"]
    assert parse_config("s", SYN).is_synthetic and parse_config("s", SYN).kind == "seq2seq"
    # `loader` may be left out when a synthetic block is given
    assert parse_config("s", {"synthetic": SYN["synthetic"]}).loader == "synthetic"


def test_needs_download():
    assert not needs_download(SYN)
    assert needs_download({"loader": "mbpp"})
    local = {s: f"{s}.jsonl" for s in ("train", "validation", "test")}
    assert not needs_download({"loader": "mbpp", "local": local})
    assert needs_download({"loader": "mbpp", "local": {"train": "t.jsonl"}})
    assert not needs_download({"loader": "lamini", "local": {"train": "t.jsonl"}})  # held-out slices


def test_data_subconfig_keeps_only_data_keys():
    cfg = {**SYN, "tokenizer": {}, "seq_len": 40, "eval": {}}
    assert data_subconfig(cfg) == SYN


@pytest.mark.parametrize(
    ("cfg", "pattern"),
    [
        ({}, r"datasets\.d: missing key 'loader'"),
        ({"loader": "qqpp"}, r"datasets\.d\.loader: unknown loader 'qqpp'"),
        ({"loader": "qqp", "kind": "text"}, r"datasets\.d\.kind: 'text' does not match"),
        ({"loader": "qqp", "hub": {"revison": "x"}}, r"datasets\.d\.hub: unknown key\(s\) \['revison'\]"),
        ({"loader": "qqp", "hub": {"id": "me/qqp"}}, r"needs 'revision'"),
        ({"loader": "qqp", "splits": {"dev": "validation"}}, r"datasets\.d\.splits: unknown key"),
        ({"loader": "qqp", "max_rows": {"train": 0}}, r"datasets\.d\.max_rows\.train: expected an integer >= 1"),
        ({"loader": "qqp", "local": {"train": 3}}, r"datasets\.d\.local\.train: expected a file path"),
        ({"loader": "wmt14", "options": {"direction": "fr-en"}}, r"options\.direction: expected one of"),
        ({"loader": "qqp", "options": {"min_lines": 3}}, r"datasets\.d\.options: unknown key"),
        ({**SYN, "loader": "qqp"}, r"both loader 'qqp' and a 'synthetic' block"),
        ({**SYN, "local": {}}, r"datasets\.d\.local: not used with loader 'synthetic'"),
        ({"loader": "synthetic"}, r"needs a 'synthetic' block"),
        ({"loader": "synthetic", "synthetic": {**SYN["synthetic"], "generator": "poems"}},
         r"synthetic\.generator: unknown generator 'poems'"),
        ({"loader": "synthetic", "synthetic": {**SYN["synthetic"], "size": {"train": 5}}},
         r"synthetic\.size: missing split\(s\) \['validation', 'test'\]"),
        ({"loader": "synthetic", "synthetic": {**SYN["synthetic"], "seed": True}},
         r"synthetic\.seed: expected an integer"),
        ({**SYN, "kind": "code"}, r"datasets\.d\.kind: 'code' does not match"),
    ],
)
def test_config_errors_name_the_key(cfg, pattern):
    with pytest.raises(InputError, match=pattern):
        parse_config("d", cfg)


def test_validate_rows_errors():
    ok = [{"id": "a", "prompt": "", "code": "x = 1", "tests": [], "setup": ""}]
    assert validate_rows(ok, "code", "f") == 1
    with pytest.raises(InputError, match=r"f: row 2: duplicate id 'a'"):
        validate_rows(ok + ok, "code", "f")
    with pytest.raises(InputError, match=r"f: row 1: field 'tests' must be a list of strings"):
        validate_rows([{**ok[0], "tests": "assert 1"}], "code", "f")
    with pytest.raises(InputError, match=r"f: row 1: missing field 'trg'"):
        validate_rows([{"id": "a", "src": "x"}], "seq2seq", "f")
    with pytest.raises(InputError, match=r"f: row 1: field 'id' must be a non-empty string"):
        validate_rows([{"text": "x"}], "text", "f")
    with pytest.raises(InputError, match="unknown task kind"):
        validate_rows([], "image", "f")
