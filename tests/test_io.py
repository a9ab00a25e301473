"""Atomic writes and input parsing of repro.io."""

from __future__ import annotations

import json

import pytest

from repro.io import (
    InputError,
    atomic_path,
    atomic_write_json,
    iter_jsonl,
    json_object_arg,
    read_jsonl,
    write_jsonl,
)


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}  # the old result survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]  # no temp left behind


def test_jsonl_round_trip_and_line_numbered_errors(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, [{"id": "a", "x": "é"}, {"id": "b"}]) == 2
    assert read_jsonl(path) == [{"id": "a", "x": "é"}, {"id": "b"}]
    path.write_text('{"id": 1}\n\n{"id": 2\n')
    with pytest.raises(InputError, match=rf"{path}:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match=rf"{path}:2: expected a JSON object, got list"):
        list(iter_jsonl(path))
    with pytest.raises(InputError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_json_object_arg(tmp_path):
    assert json_object_arg('{"a": [1]}', "--x") == {"a": [1]}
    spec = tmp_path / "spec.json"
    spec.write_text('{"b": 2}')
    assert json_object_arg(f"@{spec}", "--x") == {"b": 2}
    with pytest.raises(InputError, match="--x: not valid JSON"):
        json_object_arg("{bad", "--x")
    with pytest.raises(InputError, match="--x: expected a JSON object, got list"):
        json_object_arg("[1]", "--x")
    with pytest.raises(InputError, match=r"given to --x\): file not found"):
        json_object_arg(f"@{tmp_path / 'nope.json'}", "--x")
