"""GPU slots of local jobs: each job on a workstation sees only the GPUs it was given.

Snakemake counts a ``gpu`` resource (``--resources gpu=N``, the ``workstation`` profile) so that no
more GPU jobs run at once than there are GPUs, but for local jobs it never says *which* GPU a job
may use: without help, every job would start on GPU 0. :mod:`repro.job` therefore asks this module,
before the stage starts, for the job's GPUs:

* the rules put the job's ``gpu`` resource into ``REPRO_JOB_GPUS`` (``REPRO_JOB_GPUS=1 python -m
  repro.job repro.sample …``);
* the machine's GPUs are ``REPRO_GPUS`` (``0,1``; ``none``) if set, else the ``CUDA_VISIBLE_DEVICES``
  Snakemake was started with, else one per entry of ``/proc/driver/nvidia/gpus`` (0, 1, …);
* a job asking for G GPUs takes G free slots from a pool of lock files (``gpu-<id>.lock``, an
  exclusive ``flock`` each) in ``REPRO_GPU_LOCK_DIR`` (default: a directory of this user under
  ``$XDG_RUNTIME_DIR`` or ``/tmp``), waiting while none is free, and runs with
  ``CUDA_VISIBLE_DEVICES`` set to them; the locks are released when the launcher exits, however it
  ends (the kernel drops ``flock`` locks of a dead process), so a killed job never leaks its GPU;
* a job asking for no GPU gets ``CUDA_VISIBLE_DEVICES=""``: its ``device: auto`` runs on the CPU
  instead of silently sharing a card that the scheduler gave to another job.

Nothing happens inside a SLURM job (``SLURM_JOB_ID``: SLURM binds the allocation's GPUs itself),
for a command run by hand (no ``REPRO_JOB_GPUS``) or on a machine without GPUs (a ``gpu: 1`` config
then runs on the CPU, as before). Several Snakemake runs of the same user share the pool, so they
never put two jobs on one GPU either; users sharing a machine share it through one
``REPRO_GPU_LOCK_DIR`` that all can enter (``mkdir -m 1777``).

Standard library only: every job pays this import before its work.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

#: the job's ``gpu`` resource, set by the rules' shell commands
ENV_REQUEST = "REPRO_JOB_GPUS"
#: optional: the GPUs of this machine that jobs share (``0,1,3`` or ``none``)
ENV_DEVICES = "REPRO_GPUS"
#: optional: the directory of the lock files
ENV_LOCK_DIR = "REPRO_GPU_LOCK_DIR"
#: where the NVIDIA driver lists one entry per GPU
PROC_GPUS = "/proc/driver/nvidia/gpus"
#: seconds between two looks at the pool while every slot is taken
POLL_S = 0.5

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._/-]*$")


class SlotError(RuntimeError):
    """The job's GPU request cannot be met on this machine; the message says why."""


def parse_devices(raw: str, source: str) -> list[str]:
    """GPU ids of a comma-separated list (``0,1``; ``GPU-<uuid>``); ``none``/``""``/``-1``: none."""
    text = raw.strip()
    if text.lower() in ("", "none", "-1"):
        return []
    ids = [part.strip() for part in text.split(",")]
    for gid in ids:
        if not _DEVICE_ID.match(gid):
            raise SlotError(f"{source}={raw!r}: {gid!r} is not a GPU id (e.g. {source}=0,1)")
    if len(set(ids)) != len(ids):
        raise SlotError(f"{source}={raw!r} names a GPU twice")
    return ids


def machine_gpus(environ: MutableMapping[str, str], proc_gpus: str = PROC_GPUS) -> list[str]:
    """The GPUs local jobs share (see the module docstring for the order of the sources)."""
    for name in (ENV_DEVICES, "CUDA_VISIBLE_DEVICES"):
        if name in environ:
            return parse_devices(environ[name], name)
    try:
        count = len(os.listdir(proc_gpus))
    except OSError:
        count = 0
    return [str(i) for i in range(count)]


def lock_dir(environ: MutableMapping[str, str]) -> Path:
    """The pool's directory (created if missing)."""
    raw = environ.get(ENV_LOCK_DIR)
    if raw:
        path = Path(raw)
    else:
        base = environ.get("XDG_RUNTIME_DIR") or "/tmp"
        path = Path(base) / f"repro-gpus-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SlotError(f"cannot create the GPU lock directory {path} ({ENV_LOCK_DIR}): {exc}") from exc
    return path


class Slots:
    """GPUs held by this process: ``ids`` (what ``CUDA_VISIBLE_DEVICES`` gets) until :meth:`release`."""

    def __init__(self, ids: list[str], fds: list[int]):
        self.ids = ids
        self._fds = fds

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __enter__(self) -> Slots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_name(gid: str) -> str:
    return "gpu-" + gid.replace("/", "_") + ".lock"


def _open_lock(path: Path) -> int:
    """The lock file, created if missing (readable and writable by all in a shared directory:
    ``flock`` also locks a read-only descriptor, so another user's file still serves)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SlotError(f"cannot open the GPU lock file {path} ({ENV_LOCK_DIR}): {exc}") from exc
    except OSError as exc:
        raise SlotError(f"cannot open the GPU lock file {path} ({ENV_LOCK_DIR}): {exc}") from exc


def try_acquire(count: int, devices: list[str], directory: Path) -> Slots | None:
    """``count`` free GPUs of ``devices`` (first free first), or None (nothing held) if fewer are free."""
    ids: list[str] = []
    fds: list[int] = []
    for gid in devices:
        if len(ids) == count:
            break
        fd = _open_lock(directory / _lock_name(gid))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # who holds it, for a person looking at the directory (the lock is the flock, not this)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        ids.append(gid)
        fds.append(fd)
    slots = Slots(ids, fds)
    if len(ids) < count:
        slots.release()
        return None
    return slots


def acquire(count: int, devices: list[str], directory: Path, poll_s: float = POLL_S,
            timeout_s: float | None = None, log=None) -> Slots:
    """``count`` GPUs, waiting while fewer are free (one line on ``log`` when it starts waiting)."""
    if count > len(devices):
        raise SlotError(
            f"the job asks for {count} GPU(s) but this machine shares {len(devices)} "
            f"({','.join(devices) or 'none'}): lower the stage's `gpu` resource in the config or "
            f"set {ENV_DEVICES}"
        )
    start = time.monotonic()
    waited = False
    while True:
        slots = try_acquire(count, devices, directory)
        if slots is not None:
            if waited and log is not None:
                print(f"repro.job: got GPU {','.join(slots.ids)} after "
                      f"{time.monotonic() - start:.1f} s", file=log, flush=True)
            return slots
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise SlotError(f"no {count} free GPU(s) of {','.join(devices)} within {timeout_s} s")
        if not waited and log is not None:
            print(f"repro.job: waiting for {count} free GPU(s) of {','.join(devices)} "
                  f"(locks in {directory})", file=log, flush=True)
        waited = True
        time.sleep(poll_s)


def assign(environ: MutableMapping[str, str], log=sys.stderr,
           proc_gpus: str = PROC_GPUS) -> Slots | None:
    """Set ``CUDA_VISIBLE_DEVICES`` in ``environ`` for this job; the held slots (None: none held).

    Does nothing inside SLURM, without ``REPRO_JOB_GPUS`` or on a machine without GPUs.
    """
    if environ.get("SLURM_JOB_ID") or ENV_REQUEST not in environ:
        return None
    raw = environ[ENV_REQUEST].strip()
    try:
        count = int(raw)
    except ValueError:
        raise SlotError(f"{ENV_REQUEST}={raw!r} is not a GPU count") from None
    if count < 0:
        raise SlotError(f"{ENV_REQUEST}={raw!r} is negative")
    devices = machine_gpus(environ, proc_gpus)
    if not devices:
        return None
    if count == 0:
        environ["CUDA_VISIBLE_DEVICES"] = ""
        return None
    slots = acquire(count, devices, lock_dir(environ), log=log)
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(slots.ids)
    print(f"repro.job: CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}", file=log, flush=True)
    return slots
