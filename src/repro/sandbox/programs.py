"""What goes into a sandboxed run and what comes out of it.

:func:`assemble_program` builds the program of one MBPP-style problem (code, setup, asserts);
:class:`RunResult` is one run's outcome, its ``status`` one of :data:`STATUSES`, labelled by
:func:`_classify` from the verdict token, the exit status and the tail of stderr (see the verdict
in :mod:`repro.sandbox`). Output is read back truncated to its head and tail.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

STATUSES = ("ok", "exited", "error", "denied", "memory", "timeout", "killed")
DENIAL_MARKER = "repro-sandbox:"
#: The line between a solution and its tests (see :func:`assemble_program`).
SEPARATOR = "pass  # (repro.sandbox: ends whatever line the code left open)"
_TRUNCATION = "\n[... {n} bytes omitted by repro.sandbox ...]\n"


class SandboxError(RuntimeError):
    """The sandbox itself could not run a program (not the program's fault)."""


@dataclass(frozen=True)
class RunResult:
    """Outcome of one sandboxed program.

    Attributes:
        status: one of :data:`STATUSES`.
        returncode: the exit status (negative: killed by that signal; ``None`` after a timeout).
        stdout, stderr: captured output, at most ``output_limit`` bytes each (head and tail kept,
            the middle replaced by a marker line).
        wall_s: wall-clock seconds from start to reaped exit.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float

    @property
    def passed(self) -> bool:
        return self.status == "ok"


def _read_output(fh, limit: int) -> str:
    """Decoded output; when longer than ``limit`` bytes, its head and tail around a marker."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    if size <= limit:
        data = fh.read()
    else:
        head = fh.read(limit // 2)
        fh.seek(size - (limit - limit // 2))
        tail = fh.read()
        data = head + _TRUNCATION.format(n=size - len(head) - len(tail)).encode() + tail
    return data.decode("utf-8", errors="replace")


def _classify(timed_out: bool, rc: int | None, reached_end: bool, stderr_tail: str) -> str:
    if timed_out:
        return "timeout"
    if rc == 0 and reached_end:
        return "ok"
    if rc is not None and rc < 0:
        return "killed"
    if rc == 0:  # ended the interpreter itself before the harness reached the end
        return "exited"
    if DENIAL_MARKER in stderr_tail:
        return "denied"
    last = next((ln for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
    if last.startswith("MemoryError"):
        return "memory"
    return "error"


def assemble_program(
    code: str, tests: Sequence[str] = (), setup: str = "", mode: str = "tests"
) -> str:
    """The program to run for one MBPP-style problem.

    ``mode="tests"``: ``code``, then ``setup``, then the ``tests`` asserts, newline-joined (the
    solution + MBPP's ``test_setup_code`` + ``test_list``; it passes iff the harness reaches its
    end, see the verdict in the module docstring). One line, :data:`SEPARATOR` (``pass``), follows
    the code, which is stricter than the papers' plain concatenation: code ending in a backslash
    continuation (``if 0: \\``) would otherwise swallow the next line, i.e. skip the first assert
    or the setup; the separator is what it swallows, and the setup and every assert still run. The
    setup
    comes *after* the code because it builds test fixtures from what the solution defines: the two
    MBPP rows that have one (task ids 367 and 927) construct ``Node`` trees with the solution's
    ``Node`` class, and fail with ``NameError`` when the setup runs first; setup that only imports
    (sanitized MBPP's ``test_imports``) works in either place. ``mode="compile"``: ``code`` alone
    (KL-flow's compiles@k, docs/methods.md §5.5: "c = #samples whose code alone executes without
    error"); ``tests`` and ``setup`` are ignored. KL-flow hoists imports because it runs ``exec``
    in-process; a fresh interpreter needs no hoisting.
    """
    if mode not in ("tests", "compile"):
        raise ValueError(f"repro.sandbox: mode must be 'tests' or 'compile', got {mode!r}")
    if isinstance(tests, str) or not all(isinstance(t, str) for t in tests):
        raise TypeError("repro.sandbox: tests must be a list of assert statements (strings)")
    parts = [code] if mode == "compile" else [code, SEPARATOR, setup, *tests]
    return "\n".join(p for p in parts if p) + "\n"
