"""The limits of one sandboxed run, checked before anything starts.

:class:`_Limits` holds them (wall-clock ``timeout_s``, ``RLIMIT_CPU`` in whole seconds, memory,
file size, process count, output kept), :func:`_limits` validates them and fills the default CPU
limit (``ceil(timeout_s) + 1``). The constants size what the rlimits leave open: the descriptors
(hence ``memfd``/pipe buffers) a program may hold, its writable tmpfs under bubblewrap and the
per-run cgroup's memory and process count (layers c, e and f of :mod:`repro.sandbox`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: ``RLIMIT_NOFILE`` of a program: with ``RLIMIT_FSIZE`` it bounds what ``memfd_create`` files and
#: pipes can hold outside ``RLIMIT_AS`` (at most this many descriptors of ``fsize_mb`` each).
_NOFILE = 64
#: The program's writable directory under bubblewrap is a tmpfs of this many times ``fsize_mb``.
_TMPFS_FILES = 4
#: The per-run cgroup's memory: the program's ``memory_mb``, its work tmpfs and its captured
#: stdout and stderr (memory files of at most ``fsize_mb`` each), plus this for the interpreter and
#: bwrap themselves.
_CGROUP_EXTRA_MB = 64
#: The captured streams (stdout, stderr) that the run's cgroup is charged for.
_STREAMS = 2
#: ... and its process count: ``nproc`` plus bwrap's own processes.
_CGROUP_EXTRA_PIDS = 4


def _cgroup_memory(lim: _Limits) -> int:
    return (lim.memory_mb + _CGROUP_EXTRA_MB << 20) + (_TMPFS_FILES + _STREAMS) * (lim.fsize_mb << 20)


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    cpu_s: int
    memory_mb: int
    fsize_mb: int
    nproc: int
    output_limit: int


#: The limits a caller may set, with their defaults (those of :func:`repro.sandbox.run_program`).
_DEFAULTS: dict[str, object] = {
    "timeout_s": 5.0, "cpu_s": None, "memory_mb": 512, "fsize_mb": 16, "nproc": 64,
    "output_limit": 4096,
}  # fmt: skip


def _limits(**given: object) -> _Limits:
    """The validated limits: ``given`` over :data:`_DEFAULTS` (``ValueError`` on a bad value)."""
    for name in given:
        if name not in _DEFAULTS:
            known = ", ".join(_DEFAULTS)
            raise TypeError(f"repro.sandbox: unknown limit {name!r} (known: {known})")
    values = {**_DEFAULTS, **given}
    timeout_s, cpu_s = values["timeout_s"], values["cpu_s"]

    def positive_int(name: str, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"repro.sandbox: {name} must be a positive integer, got {value!r}")
        return value

    if (
        not isinstance(timeout_s, int | float)
        or isinstance(timeout_s, bool)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ValueError(f"repro.sandbox: timeout_s must be a positive number, got {timeout_s!r}")
    if cpu_s is None:
        cpu_s = math.ceil(timeout_s) + 1
    return _Limits(
        float(timeout_s),
        positive_int("cpu_s", cpu_s),
        *(positive_int(name, values[name]) for name in ("memory_mb", "fsize_mb", "nproc")),
        positive_int("output_limit", values["output_limit"]),
    )
