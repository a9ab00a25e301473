"""code_exec: pass / compiles per sample, scored in the sandbox.

The MBPP tests use ``shared/data/mbpp/mbpp.jsonl`` (974 problems) and skip when it is absent:
every canonical solution passes its own ``test_list`` (one known exception, below), and mutated
solutions fail. The hostile programs of tests/sandbox/test_run.py are scored 0 here too.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import random
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from repro.io import InputError
from repro.metrics.base import FIELD_TYPES, MetricResult
from repro.metrics.code import code_exec
from repro.sandbox import run as runner
from tests.sandbox.test_run import EXIT_TRICKS, TAG_VAR, _processes_naming, require_bwrap

MBPP = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mbpp" / "mbpp.jsonl"

#: Canonical MBPP solutions that may fail in the sandbox, with the reason.
CANONICAL_MAY_FAIL = {
    # amicable_numbers_sum(9999) sums divisors by trial division up to n for every n (O(n²)):
    # ~3.6 s on the 2-core development machine, over the standard 3 s timeout ("timeout").
    123: {"timeout"},
}

#: Problems whose code survives the first-comparison swap of :func:`_swap_first_comparison`:
#: equivalent mutants or tests that do not reach the swapped branch (measured over all 974).
SWAP_SURVIVORS = {3, 76, 101, 227, 347, 348, 466, 486, 520, 658, 661, 876, 952}


def _sample(i, code, tests=None, setup=None):
    row = {"id": f"t/{i}", "hypothesis": code}
    if tests is not None:
        row["tests"] = tests
    if setup is not None:
        row["setup"] = setup
    return row


# --- the metric contract ------------------------------------------------------------------------


def test_signature_follows_the_registry_protocol():
    assert code_exec.kind == "code_exec"
    assert set(code_exec.fields) <= set(FIELD_TYPES)
    params = list(inspect.signature(code_exec).parameters.values())
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert {p.name: p.default for p in params[1:]} == {
        "mode": "tests", "timeout_s": 3.0, "memory_mb": 512, "workers": 2,
    }  # fmt: skip
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])


def test_pass_and_compile_per_example():
    square = "def sq(x):\n    return x * x\n"
    samples = [
        _sample(0, square, ["assert sq(3) == 9", "assert sq(-2) == 4"]),
        _sample(1, "def sq(x):\n    return x + x\n", ["assert sq(3) == 9"]),  # wrong answer
        _sample(2, "def sq(x):\n    return x * x\nraise RuntimeError('top')\n", ["assert sq(1) == 1"]),
        _sample(3, "def sq(x)\n    return x\n", ["assert sq(1) == 1"]),  # syntax error
        _sample(4, "class N:\n    def __init__(self, v):\n        self.v = v\n", ["assert t.v == 2"],
                setup="t = N(2)"),  # setup after the code, as MBPP needs
        _sample(5, "import math\ndef f():\n    return math.pi\n", ["assert round(f(), 2) == 3.14"]),
    ]  # fmt: skip
    res = code_exec(samples, mode="tests")
    assert isinstance(res, MetricResult)
    assert res.per_example == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert res.value == pytest.approx(3 / 6)
    assert res.details["status_counts"] == {
        "ok": 3, "exited": 0, "error": 3, "denied": 0, "memory": 0, "timeout": 0, "killed": 0,
    }  # fmt: skip
    messages = {f["id"]: f["message"] for f in res.details["first_failures"]}
    assert messages["t/1"] == "AssertionError"
    assert messages["t/2"] == "RuntimeError: top"
    assert messages["t/3"].startswith("SyntaxError")
    assert "mode=tests" in res.variant and "repro.sandbox" in res.variant

    comp = code_exec(samples, mode="compile")
    assert comp.per_example == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]  # wrong answers still compile
    assert "mode=compile" in comp.variant


def test_compile_mode_needs_no_tests_and_timeouts_fail():
    samples = [_sample(0, "x = 1\n"), _sample(1, "while True:\n    pass\n")]
    start = time.monotonic()
    res = code_exec(samples, mode="compile", timeout_s=1.0)
    assert time.monotonic() - start < 4.0
    assert res.per_example == [1.0, 0.0]
    assert res.details["status_counts"]["timeout"] == 1


@pytest.mark.parametrize(
    "row, pattern",
    [
        ({"id": "mbpp/test/7", "hypothesis": "x = 1"}, r"sample 0 \(id 'mbpp/test/7'\): missing field 'tests'"),
        ({"id": "a", "hypothesis": "x = 1", "tests": "assert x"}, r"'tests' must be a list of strings"),
        ({"id": "a", "hypothesis": "x = 1", "tests": []}, r"'tests' is empty"),
        ({"id": "a", "hypothesis": "x = 1", "tests": ["assert x"], "setup": None}, r"'setup' must be a string"),
        ({"id": "a", "hypothesis": 3, "tests": ["assert x"]}, r"'hypothesis' must be the completed program"),
    ],
)  # fmt: skip
def test_bad_rows_name_the_row(row, pattern):
    with pytest.raises(InputError, match=pattern):
        code_exec([row])


@pytest.mark.parametrize(
    "opts, pattern",
    [
        ({"mode": "run"}, r"mode='run' is not one of 'tests', 'compile'"),
        ({"timeout_s": 0}, r"timeout_s must be a positive number"),
        ({"timeout_s": float("inf")}, r"timeout_s must be a positive number"),
        ({"workers": 0}, r"workers must be a positive integer"),
        ({"memory_mb": 1.5}, r"memory_mb must be a positive integer"),
    ],
)
def test_bad_options(opts, pattern):
    with pytest.raises(InputError, match=pattern):
        code_exec([_sample(0, "x = 1", ["assert x == 1"])], **opts)


# --- hostile programs score 0 -------------------------------------------------------------------


@pytest.mark.parametrize("guard", [1, 0], ids=["guard", "kernel_only"])
def test_hostile_programs_are_scored_as_failures(guard, tmp_path, monkeypatch):
    """Every attack class scores 0, harms nothing, leaves no process; with the audit-hook guard
    switched off (``kernel_only``: bubblewrap alone, required in CI) too. With the guard each
    sample's asserts would pass, so the attack itself must be what fails it; without it the asserts
    fail, so that only an escape or a fooled verdict could score 1. The exit-0 tricks always come
    with failing asserts."""
    if not guard:
        require_bwrap()
    monkeypatch.setattr(runner, "_GUARD", guard)
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(boxes))
    monkeypatch.setenv("REPRO_CODE_TEST_SECRET", "hunter2")
    tag = f"code-tag-{os.getpid()}-{tmp_path.name}"
    child_env = runner._child_env
    monkeypatch.setattr(runner, "_child_env", lambda *a: {**child_env(*a), TAG_VAR: tag})
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep")
    s = str(sentinel)
    hostile = [
        "while True:\n    pass\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n",
        # a linear, bounded fork loop: even a broken guard must not hurt this machine
        "import os, time\nfor _ in range(100):\n    if os.fork() == 0:\n        time.sleep(20)\n"
        "        os._exit(0)\n",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",  # daemon
        "import subprocess\nsubprocess.run(['true'])\n",
        "import os\nos.system('true')\n",
        f"open({s!r}, 'w').write('pwned')\n",
        f"import os\nos.remove({s!r})\n",
        "open('/usr/pwned-by-code-test', 'w')\n",
        "import os\nassert os.environ['REPRO_CODE_TEST_SECRET'] == 'hunter2'\n",
        f"assert open({s!r}).read() == 'keep'\n",
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n",
        f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os\nwhile True:\n    os.write(os.memfd_create('m'), b'x' * (1 << 24))\n",
        "while True:\n    print('y' * 10000)\n",
    ]
    body = "def f():\n    return 1\n"
    samples = [_sample(i, body + src, ["assert f() == 1" if guard else "assert f() == 2"])
               for i, src in enumerate(hostile)]  # fmt: skip
    samples += [_sample(len(samples) + i, body + src, ["assert f() == 2"])
                for i, src in enumerate(EXIT_TRICKS.values())]  # fmt: skip
    start = time.monotonic()
    res = code_exec(samples, timeout_s=1.0, memory_mb=128)
    assert time.monotonic() - start < 30.0
    assert res.per_example == [0.0] * len(samples), res.details["first_failures"]
    assert res.value == 0.0
    assert sum(res.details["status_counts"].values()) == len(samples)
    assert res.details["status_counts"]["exited"] >= len(EXIT_TRICKS)
    assert sentinel.read_text() == "keep"
    assert sorted(tmp_path.iterdir()) == sorted([boxes, sentinel])
    assert list(boxes.iterdir()) == []
    assert not os.path.exists("/usr/pwned-by-code-test")
    # A SIGKILLed process group can take a moment to be torn down on a loaded machine (seen once
    # in a full-suite run at load ~3 on 2 cores); what matters is that nothing survives.
    left = _processes_naming(tag, str(tmp_path))
    _, alive = psutil.wait_procs(left, timeout=10)
    assert alive == []


# --- MBPP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mbpp():
    if not MBPP.exists():
        pytest.skip(f"{MBPP} is absent")
    rows = [json.loads(line) for line in MBPP.read_text().splitlines() if line.strip()]
    assert len(rows) == 974
    return rows


def _mbpp_sample(row, code=None):
    return {
        "id": f"mbpp/{row['task_id']}",
        "hypothesis": row["code"] if code is None else code,
        "tests": row["test_list"],
        "setup": row["test_setup_code"],
    }


def _return_none(code: str) -> str:
    """Redefine every top-level function of ``code`` to return None."""
    names = [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    assert names, "expected a function"
    return code + "\n" + "".join(f"\ndef {n}(*args, **kwargs):\n    return None\n" for n in names)


_SWAP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq}  # fmt: skip


def _swap_first_comparison(code: str) -> str | None:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAP:
            node.ops[0] = _SWAP[type(node.ops[0])]()
            return ast.unparse(tree)
    return None


def test_mbpp_canonical_solutions_pass_and_mutants_fail(mbpp):
    start = time.monotonic()
    res = code_exec([_mbpp_sample(r) for r in mbpp], mode="tests", workers=2)
    canonical_s = time.monotonic() - start
    failed = {
        r["task_id"]: status
        for r, v, status in zip(mbpp, res.per_example, _statuses(res, len(mbpp)))
        if v != 1.0
    }
    unexpected = {t: s for t, s in failed.items() if s not in CANONICAL_MAY_FAIL.get(t, ())}
    assert unexpected == {}, unexpected
    assert res.value >= (len(mbpp) - len(CANONICAL_MAY_FAIL)) / len(mbpp)

    rng = random.Random(0)
    subset = rng.sample(mbpp, 300)
    mutants = code_exec([_mbpp_sample(r, _return_none(r["code"])) for r in subset])
    assert mutants.per_example == [0.0] * len(subset)

    swapped = [(r, _swap_first_comparison(r["code"])) for r in rng.sample(mbpp, 300)]
    swapped = [(r, c) for r, c in swapped if c is not None]
    res_swap = code_exec([_mbpp_sample(r, c) for r, c in swapped], timeout_s=3.0)
    survivors = {r["task_id"] for (r, _), v in zip(swapped, res_swap.per_example) if v == 1.0}
    assert survivors <= SWAP_SURVIVORS
    assert len(swapped) > 100

    compiles = code_exec([_mbpp_sample(r) for r in rng.sample(mbpp, 200)], mode="compile")
    assert compiles.per_example == [1.0] * 200
    print(f"MBPP canonical: {len(mbpp)} programs in {canonical_s:.1f} s; total "
          f"{time.monotonic() - start:.1f} s")  # fmt: skip


def _statuses(res: MetricResult, n: int) -> list[str]:
    """Per-example statuses: 'ok' where passed, else the failure status listed in details."""
    by_index = {f["index"]: f["status"] for f in res.details["first_failures"]}
    return [by_index.get(i, "ok" if res.per_example[i] == 1.0 else "?") for i in range(n)]
