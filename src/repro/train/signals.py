"""Stop signals of a training: SIGTERM and SIGUSR1 end it like its time budget.

The handler only records the signal; the training stops on its next optimizer-step boundary,
saves ``_work/last.ckpt`` and exits 75 (:mod:`repro.train.cli`), so a rerun continues it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

#: signals that stop a training like its time budget (save ``_work/last.ckpt``, exit 75):
#: SIGTERM (``scancel``, preemption, node drain, ``kill``; the warm worker forwards it to the
#: stage) and SIGUSR1 (the warning SLURM sends before the time limit when the job asks for one,
#: ``--signal=USR1@<seconds>``)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """In a DataLoader worker: ignore :data:`STOP_SIGNALS`. SLURM and the warm worker signal the
    whole process group; a worker killed by SIGTERM would end the training with an error ("DataLoader
    worker exited unexpectedly") before it saves. Workers still exit with their loader."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopSignals:
    """Record the first :data:`STOP_SIGNALS` received while training (a context manager).

    The handler only sets :attr:`received`; :class:`repro.train.module.TimeBudget` stops on the next optimizer-step
    boundary and saves ``last.ckpt``, exactly as when the time budget runs out. Previous handlers
    are restored on exit. Outside the main thread (no handlers can be set there) it does nothing.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.received is None:
            self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def reclaim(self, already: bool = False) -> None:
        """Handle the signals again (after Lightning replaced the SIGTERM handler); ``already``:
        Lightning's handler saw a SIGTERM meanwhile."""
        if already and self.received is None:
            self.received = signal.SIGTERM
        for sig in self._previous:
            signal.signal(sig, self._handler)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def name(self) -> str | None:
        return None if self.received is None else signal.Signals(self.received).name

