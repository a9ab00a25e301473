"""A memory + pids cgroup per sandboxed run (layer f of :mod:`repro.sandbox`; root only).

:class:`_Cgroup` makes one (v1 ``memory`` + ``pids`` or v2), sets its limits and moves a process
or the calling thread in; :func:`_cgroup_for` gives each run its cgroup (on v1 a worker thread
keeps one and every process it forks is born inside); finished ones are removed when empty
(:func:`_remove_stale`, at exit too), and those of callers that died without cleaning up are
swept once (:func:`_sweep_dead_cgroups`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import threading
import time
import uuid

from repro.sandbox import kernel
from repro.sandbox.limits import _CGROUP_EXTRA_PIDS, _cgroup_memory, _limits

log = logging.getLogger("repro.sandbox")


@functools.lru_cache(maxsize=1)
def _own_cgroups() -> dict[str, str]:
    """This process's cgroup directory per controller we use (v1 ``memory``/``pids``, or v2)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(","):
                if name in ("memory", "pids"):
                    found[name] = f"/sys/fs/cgroup/{name}{path}"
            if controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                found.setdefault("v2", f"/sys/fs/cgroup{path}")
    return found


class _Cgroup:
    """A memory + pids cgroup holding one bwrap sandbox (root only; where cgroups are writable).

    It bounds what the rlimits cannot: the memory of every process of the run together, tmpfs
    and ``memfd`` pages included, and their number even for a host-root uid. The parent moves
    bwrap's sandbox process into it while that process waits for its id maps (:class:`_IdMap`),
    so everything the program starts is born inside.
    """

    _seq = 0
    #: whether processes forked by the creating thread are born inside (see :func:`_cgroup_for`)
    born_inside = False

    def __init__(self, memory_bytes: int, pids: int) -> None:
        _Cgroup._seq += 1
        name = f"repro-sandbox-{os.getpid()}-{_Cgroup._seq}-{uuid.uuid4().hex[:8]}"
        own = _own_cgroups()
        if "memory" in own and "pids" in own:
            limits, self.v1 = [f"{own['memory']}/{name}", f"{own['pids']}/{name}"], True
        elif "v2" in own:
            limits, self.v1 = [f"{own['v2']}/{name}"], False
        else:
            raise OSError("no writable memory and pids cgroup controllers found")
        self.dirs: list[str] = []
        self.limits: tuple[int, int] = (1 << 62, 0)  # a new cgroup's: unlimited
        try:
            for path in limits:
                os.mkdir(path)
                self.dirs.append(path)
            self.set_limits(memory_bytes, pids)
        except OSError:
            self.close()
            raise

    def set_limits(self, memory_bytes: int, pids: int) -> None:
        if self.limits == (memory_bytes, pids):
            return
        # v1 wants limit_in_bytes <= memsw.limit_in_bytes at every step: raise memsw first,
        # lower it last
        memory = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        if memory_bytes > self.limits[0]:
            memory = memory[::-1]
        for path in self.dirs:
            names = os.listdir(path)
            for file, value in (
                *((name, memory_bytes) for name in memory),
                ("memory.max", memory_bytes), ("memory.swap.max", 0), ("pids.max", pids),
            ):  # fmt: skip
                if file in names:  # (no swap accounting: no swap file)
                    with open(f"{path}/{file}", "w") as fh:
                        fh.write(str(value))
        self.limits = (memory_bytes, pids)

    def add(self, pid: int) -> None:
        """Move process ``pid`` in (a cgroup migration: ~10 ms of RCU grace period)."""
        for path in self.dirs:
            with open(f"{path}/cgroup.procs", "w") as fh:
                fh.write(str(pid))

    def enter_thread(self) -> None:
        """Move the calling thread in (cgroup v1 only), once: what it forks is born inside."""
        for path in self.dirs:
            with open(f"{path}/tasks", "w") as fh:
                fh.write(str(threading.get_native_id()))
        self.born_inside = True

    def close(self) -> None:
        """Remove the cgroups; one whose last process is still exiting is removed later."""
        with _STALE_LOCK:
            _STALE.extend(self.dirs)
        self.dirs = []
        _remove_stale()


#: Cgroups of finished runs not removable yet (rmdir: EBUSY while a process is still exiting).
_STALE: list[str] = []
_STALE_LOCK = threading.Lock()


def _remove_stale(wait_s: float = 0.0) -> None:
    """rmdir the stale cgroups, retrying for up to ``wait_s`` (at exit) or not at all."""
    deadline = time.monotonic() + wait_s
    while True:
        with _STALE_LOCK:
            left = []
            for path in _STALE:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(path)
            _STALE[:] = left
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if left and wait_s:
        log.warning("repro.sandbox: cannot remove the cgroups %s", ", ".join(left))


atexit.register(_remove_stale, 2.0)


_THREAD_CGROUP = threading.local()


def _cgroup_for(memory_bytes: int, pids: int) -> _Cgroup:
    """The cgroup of this run.

    A thread that starts sandboxes (one of ours, see ``run._launchers``; never the main one, whose
    cgroup decides where the whole process's memory is charged) on cgroup v1 gets one of its own,
    once, and stays in it: every bwrap it starts is
    then born inside, free of a per-run migration. Otherwise a fresh cgroup per run, which the
    sandbox process is moved into (``_Cgroup.add``) and which :func:`run_program` removes.
    """
    group = getattr(_THREAD_CGROUP, "group", None)
    if group is not None:
        group.set_limits(memory_bytes, pids + 1)  # (+1: the thread itself)
        return group
    group = _Cgroup(memory_bytes, pids)
    if group.v1 and threading.current_thread() is not threading.main_thread():
        try:
            group.set_limits(memory_bytes, pids + 1)
            group.enter_thread()
        except OSError:
            group.close()
            raise
        _THREAD_CGROUP.group = group
        with _STALE_LOCK:  # removed once the thread has ended (rmdir fails while it lives)
            _STALE.extend(group.dirs)
    return group


def _sweep_dead_cgroups() -> None:
    """Remove the empty cgroups left by processes that ended without their exit handler (a
    ``fork``-ed caller's ``os._exit``): ``repro-sandbox-<pid>-...`` whose pid is gone."""
    for base in set(_own_cgroups().values()):
        with contextlib.suppress(OSError):
            for entry in os.scandir(base):
                pid = entry.name.split("-")[2] if entry.name.startswith("repro-sandbox-") else ""
                if not pid.isdigit():
                    continue
                try:
                    os.kill(int(pid), 0)
                except ProcessLookupError:
                    with contextlib.suppress(OSError):
                        os.rmdir(entry.path)  # (fails unless empty)
                except OSError:
                    continue


@functools.lru_cache(maxsize=1)
def _cgroups_work() -> bool:
    """Whether a per-run cgroup can be made here (probed once)."""
    if os.geteuid() != 0:
        return False
    _sweep_dead_cgroups()
    try:
        _Cgroup(64 << 20, 16).close()
    except OSError as exc:
        log.warning(
            "repro.sandbox: no per-run memory/pids cgroup (%s): memory is bounded by the rlimits "
            "and the work tmpfs only (see the module docstring)", exc,
        )  # fmt: skip
        return False
    return True


def cgroup_layer(**limits: object) -> str:
    """The per-run cgroup programs get here (``"no cgroup"`` where none can be made)."""
    if not (kernel._maps_ids(kernel._namespace_prefix()) and _cgroups_work()):
        return "no cgroup"
    lim = _limits(**limits)
    return (
        f"cgroup memory={_cgroup_memory(lim) >> 20}MB (all processes, tmpfs and memfd included) "
        f"pids={lim.nproc + _CGROUP_EXTRA_PIDS}"
    )
