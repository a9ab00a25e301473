"""Kernel-side confinement (layer e of :mod:`repro.sandbox`): bubblewrap, else ``unshare``.

:func:`_namespaces` probes once which prefix works here (bubblewrap as root with the id maps the
parent writes, :class:`_IdMap`; bubblewrap mapping the caller itself; the strongest ``unshare``;
nothing), :func:`_bwrap_command` builds one run's bubblewrap command (read-only system, private
``/proc`` and ``/dev``, a size-limited tmpfs as the work directory) and :func:`_spawn` starts it.
The caller becomes a child subreaper so that bwrap's pid 1 of each run is reaped
(:func:`_become_subreaper`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repro.sandbox.cgroups import _Cgroup

log = logging.getLogger("repro.sandbox")


#: Where the program's writable directory is mounted inside bubblewrap (a size-limited tmpfs).
_BOX = "/sandbox"
#: Inside bubblewrap the program runs as this uid/gid, unprivileged on the host too (see _IdMap).
_BOX_ID = 65534
_BWRAP_NAMESPACES = (
    "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
    "--unshare-cgroup-try", "--die-with-parent",
)  # fmt: skip
# Started by an unprivileged user: bwrap maps that user to _BOX_ID and drops every capability.
_BWRAP_AS_USER = ("--uid", str(_BOX_ID), "--gid", str(_BOX_ID), "--cap-drop", "ALL")
# Started by root: bwrap would map _BOX_ID to host root, which the kernel exempts from
# RLIMIT_NPROC. Instead the parent writes the maps (ids 0 -> host 0 for bwrap's own set-up, whose
# binds need root's access to the host; _BOX_ID -> host _BOX_ID), and the bootstrap switches to
# _BOX_ID before any program code (that clears the two capabilities kept for it).
_BWRAP_AS_ROOT = ("--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID")
_BWRAP_MISSING = (
    "repro.sandbox: bubblewrap (`bwrap`) {why}; untrusted programs run WITHOUT the kernel-side "
    "filesystem confinement (read-only system, no host files, unprivileged uid), with {fallback} "
    "instead. Install it: `apt-get install bubblewrap` (`make setup` does this as root)."
)
_NAMESPACE_CANDIDATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("user+net+pid+mount namespaces",
     ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount",
      "--mount-proc")),
    ("net+pid+mount namespaces (no user namespace)",
     ("--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc")),
    ("user+net namespaces", ("--user", "--map-root-user", "--net")),
    ("net namespace", ("--net",)),
)  # fmt: skip


#: ``unshare(2)``'s flag for a new network namespace (``os.CLONE_NEWNET`` from Python 3.12).
_CLONE_NEWNET = 0x40000000
_THREAD_NET = threading.local()


def _thread_netns() -> bool:
    """Move the calling thread, once, into a new network namespace of its own (root only; False
    where that fails). Every bwrap this thread starts afterwards is born inside, so its runs need no
    ``--unshare-net``.

    Why: a network namespace per run costs the kernel ~2 ms of CPU (``setup_net``, then
    ``cleanup_net``'s RCU barriers in a kworker) and stalls the next run's creation on the RTNL
    lock meanwhile: a fifth of the sandbox's throughput on 2 cores. The thread's namespace holds
    only a loopback device that stays down, and it belongs to the host's initial user namespace,
    in which no program has a capability: no program can configure it, and there is no network
    in it to reach. Runs of one thread use it one after another, never two at once (the thread
    reaps each run's pid 1, after which no process of that run is left; where it could not, the
    thread takes a fresh namespace, :func:`_leave_thread_netns`). Threads of :func:`run_many`
    each have their own, so concurrent runs never share one (abstract Unix sockets are per
    network namespace). It ends with the thread.
    """
    made = getattr(_THREAD_NET, "made", None)
    if made is None:
        made = False
        try:
            if hasattr(os, "unshare"):  # Python >= 3.12
                os.unshare(_CLONE_NEWNET)
            else:
                import ctypes  # (the host process: the guard's ctypes ban is for programs only)

                libc = ctypes.CDLL(None, use_errno=True)
                if libc.unshare(_CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            made = True
        except (OSError, AttributeError) as exc:
            _warn_no_thread_netns(str(exc))
        _THREAD_NET.made = made
    return made


@functools.cache
def _warn_no_thread_netns(why: str) -> None:  # (once per reason, not once per thread)
    log.warning(
        "repro.sandbox: cannot give a thread a network namespace (%s): each run makes its own "
        "(slower)", why,
    )  # fmt: skip


def _leave_thread_netns() -> None:
    """Forget the calling thread's network namespace: the next run of this thread makes a new one
    (a run whose processes may still be alive must not share it with the next)."""
    if getattr(_THREAD_NET, "made", None):
        _THREAD_NET.made = None


def _python_flags() -> list[str]:
    return ["-S", "-s", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])


def _interpreter(prefix: Sequence[str]) -> str:
    """The interpreter to start: the real binary inside bubblewrap (a venv's path is not there)."""
    return _real_executable(sys.executable) if _is_bwrap(prefix) else sys.executable


@functools.lru_cache(maxsize=4)
def _real_executable(path: str) -> str:
    return os.path.realpath(path)  # (13 lstat calls for a pyenv venv: once, not per run)


def _is_bwrap(prefix: Sequence[str]) -> bool:
    return bool(prefix) and os.path.basename(prefix[0]) == "bwrap" and "--unshare-user" in prefix


def _maps_ids(prefix: Sequence[str]) -> bool:
    """Whether this bwrap prefix needs the parent to write its uid/gid maps (bwrap run as root)."""
    return _is_bwrap(prefix) and "--cap-add" in prefix


class _IdMap:
    """The uid/gid maps of a bwrap sandbox started by root (see ``_BWRAP_AS_ROOT``).

    bwrap reports its child's pid on ``--info-fd`` and waits on ``--userns-block-fd`` until the
    maps of that child's user namespace are written.
    """

    def __init__(self) -> None:
        self.info_r, self.info_w = os.pipe()
        self.block_r, self.block_w = os.pipe()
        self.pidfd = -1  # bwrap's pid 1 of the sandbox, to be reaped (see _reap_pid1)
        _become_subreaper()

    def flags(self) -> list[str]:
        return ["--info-fd", str(self.info_w), "--userns-block-fd", str(self.block_r)]

    def child_fds(self) -> tuple[int, int]:
        return self.info_w, self.block_r

    def write(self, timeout: float, cgroup: _Cgroup | None = None) -> bool:
        """After bwrap started: write the maps (and move its sandbox process into ``cgroup``),
        then let it go on; False if it never asked or that failed."""
        os.close(self.info_w)
        os.close(self.block_r)
        self.info_w = self.block_r = -1
        data = b""
        poller = select.poll()
        poller.register(self.info_r, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not data.rstrip().endswith(b"}"):
            if not poller.poll(max(0, int(1000 * (deadline - time.monotonic())))):
                return False
            chunk = os.read(self.info_r, 4096)
            if not chunk:
                return False
            data += chunk
        try:
            pid = int(json.loads(data)["child-pid"])
            # opened while it waits for us on the block fd: this pidfd names exactly that process
            self.pidfd = os.pidfd_open(pid) if hasattr(os, "P_PIDFD") else -1
            ids = f"0 0 1\n{_BOX_ID} {_BOX_ID} 1\n"
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{pid}/{name}", "w") as fh:
                    fh.write(ids)
            if cgroup is not None and not cgroup.born_inside:
                cgroup.add(pid)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("repro.sandbox: cannot write the sandbox's uid/gid maps: %s", exc)
            return False
        os.write(self.block_w, b"1")
        return True

    def close(self) -> bool:
        """Reap the sandbox's pid 1 (see :func:`_reap_pid1`) and close the pipes; False if that
        pid 1 was still running."""
        reaped = _reap_pid1(self.pidfd) if self.pidfd >= 0 else True
        for fd in (self.info_r, self.info_w, self.block_r, self.block_w, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.info_r = self.info_w = self.block_r = self.block_w = self.pidfd = -1
        return reaped


def _become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``),
    once per process (a forked child does not inherit it).

    With a pid namespace, bwrap's outer process exits as soon as its pid 1 reports the program's
    exit status, without waiting for that pid 1, which the kernel then hands to the nearest
    subreaper, else to the machine's pid 1. Where that pid 1 never reaps (a container whose
    entry point is not an init: this CI's, many ``docker run`` without ``--init``), every run left
    a zombie behind, still charged to the run's pids cgroup: a worker thread's cgroup, kept
    across runs on cgroup v1, refused to fork after ``nproc`` runs ("bwrap: Can't fork for pid 1:
    Resource temporarily unavailable"), and the machine's pid table filled up. As the subreaper,
    this process gets that pid 1 and :func:`_reap_pid1` reaps it (and nothing else: only the
    exact process behind a pidfd, never ``waitpid(-1)``, which would steal the exit status of a
    ``subprocess.Popen`` child from another thread). Any other orphaned descendant of this
    process now stays its zombie until it exits, instead of the machine's init's.
    """
    _subreaper_in(os.getpid())


@functools.cache
def _subreaper_in(pid: int) -> None:  # (keyed by pid: a forked child must set it again)
    try:
        import ctypes  # (the host process: the guard's ctypes ban is for programs only)

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER (idempotent)
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        _SUBREAPERS.add(pid)
    except (OSError, AttributeError) as exc:
        log.warning(
            "repro.sandbox: cannot become a child subreaper (%s): each run may leave "
            "a zombie process where the machine's pid 1 does not reap them",
            exc,
        )


#: The processes that made themselves subreapers (:func:`_become_subreaper`).
_SUBREAPERS: set[int] = set()


class _Pid1:
    """bwrap's pid 1 of a run without id maps (``_BWRAP_AS_USER``), to be reaped like
    :class:`_IdMap`'s: only in a subreaper, whose child it becomes (root whose id maps could not be
    written: every run left a zombie behind). bwrap reports its pid on ``--info-fd``; being this
    process's child (alive or a zombie) once bwrap's outer process is gone, that pid cannot be
    reused before it is reaped. Elsewhere the machine's pid 1 gets it (:meth:`for_run`: None)."""

    def __init__(self) -> None:
        self.info_r, self.info_w = os.pipe()

    @classmethod
    def for_run(cls, prefix: Sequence[str]) -> _Pid1 | None:
        return cls() if _is_bwrap(prefix) and os.getpid() in _SUBREAPERS else None

    def flags(self) -> list[str]:
        return ["--info-fd", str(self.info_w)]

    def child_fds(self) -> tuple[int, ...]:
        return (self.info_w,)

    def write(self, timeout: float, cgroup: _Cgroup | None = None) -> bool:
        """After bwrap started: nothing to write, only the parent's end of the pipe to close."""
        os.close(self.info_w)
        self.info_w = -1
        return True

    def close(self) -> bool:
        """After the run: reap bwrap's pid 1 if it reported one, close the pipe; False if that
        pid 1 was still running."""
        os.set_blocking(self.info_r, False)
        data = b""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.info_r, 4096):
                data += chunk
        reaped = True
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            pidfd = os.pidfd_open(int(json.loads(data)["child-pid"]))
            try:
                reaped = _reap_pid1(pidfd)
            finally:
                os.close(pidfd)
        for fd in (self.info_r, self.info_w):
            if fd >= 0:
                os.close(fd)
        self.info_r = self.info_w = -1
        return reaped


def _reap_pid1(pidfd: int, wait_s: float = 5.0) -> bool:
    """Reap the process behind ``pidfd`` (bwrap's pid 1 of a finished run) once it has exited,
    if it is this process's child by now (see :func:`_become_subreaper`); otherwise leave it.
    False if it was still running after ``wait_s`` (so may be other processes of its run)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(int(wait_s * 1000)):  # still running: it exits with the namespace
        log.warning("repro.sandbox: a sandbox's pid 1 was still running %g s after its run", wait_s)
        return False
    with contextlib.suppress(ChildProcessError, OSError):  # not our child: its parent reaps it
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)  # (Linux >= 5.4; pidfd_open needs 5.3)
    return True


@functools.lru_cache(maxsize=1)
def _system_mounts() -> tuple[str, ...]:
    """bwrap arguments exposing, read-only, what the interpreter needs and nothing else.

    ``/usr`` (with the ``/bin``, ``/lib``... links of a merged-/usr system, or read-only binds of
    those directories otherwise) and the interpreter's own installation when it lives elsewhere
    (e.g. pyenv under ``/root``: that prefix alone, not the rest of the home). No ``/etc``, no
    ``/home``, no ``/tmp``, no ``/run`` or ``/var`` (so no host Unix socket), no ``/sys``.
    """
    args = ["--ro-bind", "/usr", "/usr"]
    covered = ["/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
            covered.append(top)
    for path in (
        os.path.realpath(sys.base_prefix),
        os.path.dirname(os.path.realpath(sys.executable)),
    ):
        if not any(path == c or path.startswith(c + "/") for c in covered):
            # its parents, created by bwrap, would copy the host's modes (/root: 0700)
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                args += ["--perms", "0755", "--dir", "/" + "/".join(parts[:i])]
            args += ["--ro-bind", path, path]
            covered.append(path)
    return tuple(args)


def _bwrap_command(
    prefix: Sequence[str],
    tmpfs_bytes: int,
    files: Sequence[tuple[int, str]],
    ids: _IdMap | _Pid1 | None,
    netns: bool = False,
) -> list[str]:
    """The bubblewrap command of one run: ``prefix`` (namespaces and identity), read-only system,
    private /proc and /dev, a ``tmpfs_bytes`` tmpfs at :data:`_BOX` (the cwd, writable by
    anyone in the box) holding ``files`` (descriptor to copy from, name in the box) read-only, the
    rest of the root read-only. ``netns``: the calling thread has a network namespace of its own
    (:func:`_thread_netns`), which the run joins instead of making one."""
    head = [a for a in prefix if not (netns and a == "--unshare-net")]
    cmd = [*head, *(ids.flags() if ids else ()), *_system_mounts(), "--proc", "/proc"]
    cmd += ["--dev", "/dev", "--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", _BOX]
    for fd, name in files:  # (bwrap copies them into the box; readable by the program's uid)
        cmd += ["--perms", "0444", "--ro-bind-data", str(fd), f"{_BOX}/{name}"]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", _BOX, "--"]
    return cmd


def _spawn(
    cmd: list[str], ids: _IdMap | _Pid1 | None, timeout: float, cgroup: _Cgroup | None = None,
    **popen: object,
):  # fmt: skip
    """``subprocess.Popen(cmd, **popen)``; with ``ids``, also write the sandbox's id maps."""
    if ids is not None:
        popen["pass_fds"] = (*popen.get("pass_fds", ()), *ids.child_fds())  # type: ignore[misc]
    proc = subprocess.Popen(cmd, **popen)  # type: ignore[call-overload]
    if ids is not None and not ids.write(timeout, cgroup):
        _kill_process_group(proc.pid)  # it never reaches the program: reported as not started
    return proc


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    """``proc.wait(timeout)`` without its polling sleeps (up to 50 ms each): poll a pidfd."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # Python < 3.9, Linux < 5.3, not Linux
        return proc.wait(timeout=timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(1, math.ceil(timeout * 1000))):
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(pidfd)
    return proc.wait()


def _probe(prefix: Sequence[str], netns: bool = False) -> str | None:
    """None when a trivial program runs under ``prefix`` here, else why not (``netns``: in the
    calling thread's network namespace, see :func:`_bwrap_command`)."""
    ids = _IdMap() if _maps_ids(prefix) else _Pid1.for_run(prefix)
    try:
        bwrap = _is_bwrap(prefix)
        cmd = _bwrap_command(prefix, 1 << 20, (), ids, netns) if bwrap else list(prefix)
        code = f"import os; os.setresgid(*[{_BOX_ID}] * 3); os.setresuid(*[{_BOX_ID}] * 3)"
        drop = isinstance(ids, _IdMap)
        cmd += [_interpreter(prefix), *_python_flags(), "-c", code if drop else "pass"]
        with tempfile.TemporaryFile() as err:
            proc = _spawn(
                cmd, ids, 20, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env={"PATH": "/usr/bin:/bin"}, cwd="/", start_new_session=True,
            )  # fmt: skip
            try:
                rc = _wait(proc, 20)
            except subprocess.TimeoutExpired:
                _kill_process_group(proc.pid)
                proc.wait()
                return "timed out after 20 s"
            err.seek(0)
            text = err.read().decode(errors="replace").strip()[:300]
    except OSError as exc:
        return str(exc)
    finally:
        if ids is not None:
            ids.close()
    return None if rc == 0 else (text or f"exit status {rc}")


@functools.lru_cache(maxsize=1)
def _namespaces() -> tuple[str, tuple[str, ...]]:
    """(description, command prefix) of the strongest confinement that works here; probed once.

    bubblewrap first; without it (not installed, or it cannot create its namespaces) one loud
    warning and the strongest ``unshare`` that works, else nothing (the other layers still apply).
    """
    bwrap = shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin")
    if bwrap is not None:
        layer = (
            "bubblewrap (user+pid+net+ipc+uts+mount namespaces, read-only system, no host files, "
            f"uid {_BOX_ID} without capabilities"
        )
        as_root = (bwrap, *_BWRAP_NAMESPACES, *_BWRAP_AS_ROOT)
        as_user = (bwrap, *_BWRAP_NAMESPACES, *_BWRAP_AS_USER)
        why = _probe(as_root) if os.geteuid() == 0 else None
        if why is None and os.geteuid() == 0:  # (a network namespace per thread: _thread_netns)
            per_thread = "user+pid+ipc+uts+mount namespaces, net namespace per worker thread"
            return f"{layer.replace('user+pid+net+ipc+uts+mount namespaces', per_thread)})", as_root
        why_user = _probe(as_user)
        if why_user is None:
            if why is not None:  # root, but the id maps could not be written
                log.warning(
                    "repro.sandbox: bubblewrap runs the program as host root without "
                    "capabilities (the kernel then ignores RLIMIT_NPROC): %s", why,
                )  # fmt: skip
                return f"{layer}, host root: no process-count limit)", as_user
            return f"{layer})", as_user
        bwrap_why = f"cannot sandbox here ({why or why_user})"
    else:
        bwrap_why = "is not installed"
    unshare = shutil.which("unshare")
    found = None
    failures = []
    if unshare is not None:
        for name, flags in _NAMESPACE_CANDIDATES:
            why = _probe((unshare, *flags))
            if why is None:
                found = name, (unshare, *flags)
                break
            failures.append(f"{name}: {why[:200]}")
    fallback = (
        f"{found[0]} (unshare)" if found else "no namespaces at all"
    ) + ", temp dir, scrubbed env, rlimits and the audit-hook guard"
    log.error(_BWRAP_MISSING.format(why=bwrap_why, fallback=fallback))
    if found is not None:
        if failures:
            log.warning(
                "repro.sandbox: stronger unshare isolation failed here: %s", "; ".join(failures)
            )
        return found
    if unshare is None:
        log.warning("repro.sandbox: no `unshare` binary on PATH either (install util-linux)")
        return "no namespaces (unshare not found)", ()
    log.warning("repro.sandbox: `unshare` cannot create namespaces here: %s", "; ".join(failures))
    return "no namespaces (unshare failed)", ()


def _namespace_prefix() -> tuple[str, ...]:
    return _namespaces()[1]


def namespace_layers() -> str:
    """Which kernel-side layer programs get here (e.g. ``"bubblewrap (...)"``)."""
    return _namespaces()[0] if _namespace_prefix() else "no namespaces"


def _kill_process_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
