"""One workaround for Snakemake's scheduler, applied by the workflow (``common.smk``) in the main
Snakemake process only.

**Re-evaluation timers.** With a job-rate limit (``--max-jobs-per-timespan``, on by default:
``100/1s``), Snakemake 9's ``JobScheduler`` ends *every* pass of its scheduling loop by starting a
new ``threading.Timer(1 s)`` that wakes the loop again. A pass woken by such a timer starts the
next one, so each pass caused by something else (a job finishing) starts a chain of one wake-up
per second that runs until Snakemake exits. After n finished jobs about n passes run per second,
each stat-ing every input of every ready job (``update_input_sizes``) and starting a thread. On the
smoke DAG (348 jobs, 2 cores) this was most of the 40 CPU seconds of Snakemake's own process (13 %
of a core, taken from the jobs); the timers are also non-daemon, so Snakemake's exit waits for the
last one.

The loop needs one pending wake-up, not one per pass: :func:`apply` replaces the method with one
that keeps at most one pending timer (a daemon: nothing waits for it at exit). What the timer is
for is unchanged: while the rate limit holds jobs back, the loop is woken again after the
timespan; finished jobs wake it as before.

No library or setting does this: ``--max-jobs-per-timespan`` cannot be switched off (its value must
match ``N/<timespan>``), and a longer timespan only makes each exit wait longer. :func:`apply` does
nothing when the scheduler does not have the method it replaces (another Snakemake version).
"""

from __future__ import annotations

import threading
from typing import Any

#: attribute of the scheduler holding its pending wake-up timer
_TIMER = "_repro_reevaluation_timer"


def _schedule_reevaluation_once(self: Any, delay: float) -> None:
    """Wake the scheduling loop after ``delay`` seconds unless a wake-up is already pending."""
    pending = getattr(self, _TIMER, None)
    if pending is not None and pending.is_alive():
        return
    timer = threading.Timer(delay, self._open_jobs.release)
    timer.daemon = True
    timer.start()
    setattr(self, _TIMER, timer)


def apply() -> bool:
    """Patch Snakemake's ``JobScheduler`` (see the module docstring); whether it was patched."""
    try:
        from snakemake.scheduling import job_scheduler
    except ImportError:
        return False
    cls = getattr(job_scheduler, "JobScheduler", None)
    if cls is None or not hasattr(cls, "_schedule_reevalutation"):
        return False
    cls._schedule_reevalutation = _schedule_reevaluation_once
    return True
