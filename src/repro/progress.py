"""Progress a person can follow: periodic log lines in job logs, a bar when run by hand, loggers.

* **Training** (:func:`progress_callback`): every ``every_s`` seconds (and at the last step) one
  plain line in the job's log::

      2026-12-07 06:10:02,113 INFO repro.train: progress: step 1200/100000 (1.2%) loss=3.2141
      tokens/s=48,213 elapsed 0:10:02 eta 13:42:15

  ``every_s``: ``--progress-every-s`` of ``python -m repro.train``, else ``REPRO_PROGRESS_S``
  (set from the config's ``logging.progress_every_s`` by the workflow), else 60.
* **A bar** instead of nothing: ``--progress`` or a terminal on stderr (run by hand) turns on
  Lightning's progress bar (training) or a one-line bar (sampling); job logs, being files, keep the
  plain lines only.
* **Sampling** (:class:`BatchProgress`): one line per batch (examples done, examples/s, ETA).
* **Loggers** (:func:`lightning_loggers`): the CSV logger always; TensorBoard and Weights & Biases
  when asked for (``logging.tensorboard``/``logging.wandb`` of the config, ``REPRO_LOGGERS`` /
  ``--loggers`` of the train stage). Neither package is a dependency of the project: asking for
  one that is not installed is an error that names the package.
* **Quiet job logs** (:func:`quiet_lightning`): Lightning's advertising lines ("💡 Tip: …") and
  deprecation warnings of the libraries are dropped.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from repro.io import InputError

#: loggers the train stage can add to the CSV one, and the package each needs
LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
DEFAULT_EVERY_S = 60.0


class LoggerUnavailable(InputError):
    """A logger was asked for whose package is not installed (the message names it)."""


def parse_loggers(raw: str | Sequence[str] | None, where: str = "REPRO_LOGGERS") -> list[str]:
    """``"tensorboard,wandb"`` -> ``["tensorboard", "wandb"]`` (``csv`` is always on, allowed)."""
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out = []
    for item in (i.strip().lower() for i in items):
        if not item or item == "csv":
            continue
        if item not in LOGGER_PACKAGES:
            raise LoggerUnavailable(f"{where}: unknown logger {item!r} (known: csv, "
                                    f"{', '.join(LOGGER_PACKAGES)})")
        if item not in out:
            out.append(item)
    return out


def check_loggers(names: Sequence[str], where: str) -> None:
    """Fail, naming the package to install, when a logger's package is missing."""
    for name in names:
        packages = LOGGER_PACKAGES[name]
        if not any(importlib.util.find_spec(p) is not None for p in packages):
            raise LoggerUnavailable(
                f"{where}: the {name} logger needs the `{packages[0]}` package, which is not "
                f"installed in this environment ({sys.executable}): `pip install {packages[0]}`, "
                "or turn it off"
            )


def lightning_loggers(work: Path, names: Sequence[str], run_name: str) -> list[Any]:
    """The CSV logger under ``work/logs`` plus the asked-for ones (``work/tensorboard``, W&B)."""
    from lightning.pytorch.loggers import CSVLogger

    check_loggers(names, "loggers")
    out: list[Any] = [CSVLogger(work, name="logs")]
    if "tensorboard" in names:
        from lightning.pytorch.loggers import TensorBoardLogger

        out.append(TensorBoardLogger(work, name="tensorboard", default_hp_metric=False))
    if "wandb" in names:
        from lightning.pytorch.loggers import WandbLogger

        out.append(WandbLogger(name=run_name, save_dir=str(work),
                               project=os.environ.get("WANDB_PROJECT", "repro")))
    return out


def _lightning_tip(record: logging.LogRecord) -> bool:
    return not str(record.getMessage()).lstrip().startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Drop Lightning's "💡 Tip: …" lines and the libraries' deprecation warnings (this process)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _lightning_tip not in logger.filters:
            logger.addFilter(_lightning_tip)
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*is deprecated.*")


def every_seconds(value: float | None) -> float:
    if value is not None:
        return float(value)
    raw = os.environ.get("REPRO_PROGRESS_S", "").strip()
    try:
        return float(raw) if raw else DEFAULT_EVERY_S
    except ValueError:
        raise ValueError(f"REPRO_PROGRESS_S={raw!r} is not a number of seconds") from None


def want_bar(flag: bool | None, stream: TextIO | None = None) -> bool:
    """``--progress`` given, or a terminal on stderr (a job's log is a file: no bar)."""
    if flag is not None:
        return flag
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def hms(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(step: int, total: int, loss: float | None, tokens_per_s: float, elapsed: float,
                  eta: float | None) -> str:
    pct = 100.0 * step / total if total else 100.0
    loss_s = "n/a" if loss is None else f"{loss:.4f}"
    eta_s = "n/a" if eta is None else hms(eta)
    return (f"progress: step {step}/{total} ({pct:.1f}%) loss={loss_s} "
            f"tokens/s={tokens_per_s:,.0f} elapsed {hms(elapsed)} eta {eta_s}")


def progress_callback(pl: Any, every_s: float, tokens_per_step: int, log: logging.Logger,
                      clock=time.monotonic) -> Any:
    """A Lightning callback writing :func:`progress_line` every ``every_s`` seconds (rank 0)."""

    class ProgressLog(pl.Callback):
        def __init__(self) -> None:
            self.start_step = self.logged_step = 0
            self.started = self.last = 0.0
            self.lines = 0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.start_step = self.logged_step = trainer.global_step
            self.started = self.last = clock()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            if not trainer.is_global_zero:
                return
            step, now = trainer.global_step, clock()
            if step == self.logged_step:
                return  # mid-accumulation: no optimizer step since the last line
            if now - self.last < every_s and step < trainer.max_steps:
                return
            self.last, self.logged_step = now, step
            elapsed = now - self.started
            done = step - self.start_step
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (trainer.max_steps - step) / rate if rate > 0 else None
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            try:
                loss_v = None if loss is None else float(loss)
            except (TypeError, ValueError):
                loss_v = None
            log.info("%s", progress_line(step, trainer.max_steps, loss_v,
                                         rate * tokens_per_step, elapsed, eta))
            self.lines += 1

    return ProgressLog()


class BatchProgress:
    """Sampling progress: a plain line per batch on ``log`` (or, with ``bar``, one TTY line)."""

    def __init__(self, total: int, log: logging.Logger, bar: bool = False,
                 stream: TextIO | None = None, clock=time.perf_counter) -> None:
        self.total, self.log, self.bar = total, log, bar
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.started = clock()
        self.batches = 0

    def update(self, done: int) -> str:
        self.batches += 1
        elapsed = self.clock() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        text = (f"batch {self.batches}: {done}/{self.total} examples "
                f"({100.0 * done / max(self.total, 1):.0f}%) {rate:,.1f} examples/s "
                f"eta {'n/a' if eta is None else hms(eta)}")
        if self.bar:
            width = 30
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}")
            if done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        else:
            self.log.info("%s", text)
        return text
