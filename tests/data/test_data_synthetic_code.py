"""The ``code`` generator (:mod:`repro.data.synthetic_code`): programs that pass their tests."""

from __future__ import annotations

import random

import pytest

from repro.data.synthetic import generate
from repro.data.synthetic_code import code_row


def _run(code: str, tests: list[str]) -> None:
    exec(compile(code + "\n" + "\n".join(tests) + "\n", "<generated>", "exec"), {})


def test_code_rows_pass_their_tests_and_tests_can_fail():
    rows = generate("code", 6, {"train": 400, "validation": 0, "test": 0})["train"]
    templates = set()
    for r in rows:
        lines = r["code"].split("\n")
        assert 3 <= len(lines) <= 8 and lines[0].startswith("def ")
        assert 2 <= len(r["tests"]) <= 3 and all(t.startswith("assert ") for t in r["tests"])
        assert r["setup"] == "" and r["prompt"].startswith("write a function")
        _run(r["code"], r["tests"])
        templates.add(r["prompt"].split(" by ")[0].split(" to add ")[0])
        # the same function returning a wrong value fails its tests
        broken = lines[0] + "\n    return None"
        with pytest.raises(AssertionError):
            _run(broken, r["tests"])
    assert len(templates) >= 10


def test_code_row_is_deterministic_in_the_generator():
    assert code_row(random.Random("s")) == code_row(random.Random("s"))
