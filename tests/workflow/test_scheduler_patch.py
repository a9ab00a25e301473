"""The scheduler's re-evaluation timer (repro.workflow.scheduler_patch): one pending wake-up at a time."""

from __future__ import annotations

import threading
import time

from repro.workflow import scheduler_patch


class _Loop:
    """Stands in for Snakemake's JobScheduler: its loop waits on ``_open_jobs``."""

    def __init__(self) -> None:
        self._open_jobs = threading.Semaphore(0)


def test_one_pending_daemon_wakeup_whatever_the_number_of_passes():
    loop = _Loop()
    for _ in range(50):  # 50 passes of the loop, each asking to be woken again
        scheduler_patch._schedule_reevaluation_once(loop, 0.2)
    timer = getattr(loop, scheduler_patch._TIMER)
    assert timer.daemon  # Snakemake's exit never waits for it
    assert loop._open_jobs.acquire(timeout=5)  # the loop is woken ...
    time.sleep(0.3)
    assert not loop._open_jobs.acquire(blocking=False)  # ... once, not 50 times
    scheduler_patch._schedule_reevaluation_once(loop, 0.05)  # a later pass re-arms it
    assert loop._open_jobs.acquire(timeout=5)


def test_apply_patches_the_installed_snakemake():
    from snakemake.scheduling.job_scheduler import JobScheduler

    assert scheduler_patch.apply()
    assert JobScheduler._schedule_reevalutation is scheduler_patch._schedule_reevaluation_once
