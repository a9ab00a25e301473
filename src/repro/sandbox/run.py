"""Running one program, or many: :func:`run_program`, :func:`run_many`, :func:`describe`.

One run: hand the program and the marshalled bootstrap (:mod:`repro.sandbox.boot`) to bwrap in
memory files (or, without bwrap, write them into a fresh temporary directory), start the
interpreter under the kernel-side prefix (:mod:`repro.sandbox.kernel`) in the run's cgroup
(:mod:`repro.sandbox.cgroups`), hand it the verdict token through a pipe, wait up to the
wall-clock timeout, kill and reap whatever is left, read the verdict and the truncated output
back, remove the directory. As root, runs start from threads of ours (:func:`_launchers`,
:func:`run_many`'s), each in a network namespace and on cgroup v1 a cgroup of its own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from repro.sandbox import cgroups, kernel
from repro.sandbox.limits import (
    _CGROUP_EXTRA_PIDS,
    _NOFILE,
    _TMPFS_FILES,
    _cgroup_memory,
    _Limits,
    _limits,
)
from repro.sandbox.programs import RunResult, SandboxError, _classify, _read_output

log = logging.getLogger("repro.sandbox")

_MARKER_VAR = "REPRO_SANDBOX_RUN"
_PROGRAM_NAME = "program.py"
# `unshare --fork` (util-linux 2.38) passes a child's death by signal on by raising the same signal
# on itself, which fails for SIGKILL (RLIMIT_CPU, OOM killer): it then prints this and exits 1.
_UNSHARE_SIGKILL = "unshare: sigprocmask unblock failed: Invalid argument"

# --- the child's bootstrap (repro/sandbox/boot.py, runs before the program) ---------------------

# The bootstrap is compiled once per parent process and handed to the child marshalled (the same
# interpreter runs both): compiling it in every child would cost ~5 ms per program.
_LOADER = "import marshal, sys; exec(marshal.loads(open(sys.argv[1], 'rb').read()))"
_BOOT_NAME = ".repro-sandbox-bootstrap"
_BOOT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot.py")


@functools.lru_cache(maxsize=1)
def _bootstrap_code() -> bytes:
    with open(_BOOT_SOURCE, encoding="utf-8") as fh:
        return marshal.dumps(compile(fh.read(), "<repro.sandbox.boot>", "exec", dont_inherit=True))


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


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose initial environment carries ``marker`` (no pid namespace)."""
    needle = f"{_MARKER_VAR}={marker}".encode()
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
    given = {
        "timeout_s": timeout_s, "cpu_s": cpu_s, "memory_mb": memory_mb, "fsize_mb": fsize_mb,
        "nproc": nproc, "output_limit": output_limit,
    }  # fmt: skip
    lim = _limits(**given)
    if not sys.executable:
        raise SandboxError("repro.sandbox: sys.executable is empty; cannot start an interpreter")
    prefix = kernel._namespace_prefix()
    if kernel._maps_ids(prefix) and not _is_launcher():
        # as root, the thread that starts a sandbox gets a network namespace (and on cgroup v1 a
        # cgroup) of its own: one of ours, never the caller's
        return _launchers().submit(run_program, source, **given).result()
    token = secrets.token_hex(16).encode()
    rc, timed_out, wall, said, stdout, stderr, cmd = _execute(source, prefix, lim, token)
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
    if kernel._is_bwrap(prefix) and rc is not None and 128 < rc < 128 + 65:
        rc = 128 - rc  # bwrap exits 128 + N when the program died of signal N
    reached_end = said == b"1" + token
    return RunResult(_classify(timed_out, rc, reached_end, stderr), rc, stdout, stderr, wall)


def _execute(source: str, prefix: tuple, lim: _Limits, token: bytes) -> tuple:
    """One run, cleaned up whatever happens: (returncode, timed out, wall s, what the verdict
    pipe said, stdout, stderr, command). Under bubblewrap the program and the bootstrap travel in
    memory files that bwrap copies into the run's tmpfs; otherwise they are written into a fresh
    host directory, the program's cwd, removed afterwards."""
    marker = uuid.uuid4().hex
    bwrap = kernel._is_bwrap(prefix)
    work = None if bwrap else tempfile.mkdtemp(prefix="repro-sandbox-")
    fds: list[int] = []  # descriptors to close on the way out
    ids = kernel._IdMap() if kernel._maps_ids(prefix) else None
    netns = ids is not None and _is_launcher() and kernel._thread_netns()
    watch = ids if ids is not None else kernel._Pid1.for_run(prefix)  # (bwrap's pid 1 to reap)
    cgroup = None
    try:
        if ids is not None and cgroups._cgroups_work():
            try:
                cgroup = cgroups._cgroup_for(_cgroup_memory(lim), lim.nproc + _CGROUP_EXTRA_PIDS)
            except OSError as exc:  # it worked when probed: do not quietly run without it
                raise SandboxError(f"repro.sandbox: cannot set up the run's cgroup: {exc}") from exc
        if work is None:
            head, keep = _bwrap_head(prefix, lim, _data_files(source, fds), watch, fds, netns)
            inside = kernel._BOX
        else:
            _write_files(work, source)
            head, inside, keep = list(prefix), work, ()
        # verdict: the bootstrap writes b"1" when it starts, the token when the program is done
        verdict_r, verdict_w = os.pipe()
        token_r, token_w = os.pipe()
        fds += [verdict_r, verdict_w, token_r, token_w]
        os.write(token_w, token)
        _close(token_w, fds)
        cmd = [
            *head, kernel._interpreter(prefix), *kernel._python_flags(), "-c", _LOADER,
            f"{inside}/{_BOOT_NAME}", inside, f"{inside}/{_PROGRAM_NAME}",
            str(lim.cpu_s), str(lim.memory_mb << 20), str(lim.fsize_mb << 20), str(lim.nproc),
            str(_NOFILE), str(verdict_w), str(token_r), str(_GUARD),
            str(kernel._BOX_ID if ids else -1),
        ]  # fmt: skip
        with _capture("stdout") as out, _capture("stderr") as err:
            rc, timed_out, wall = _run(
                cmd, work or "/", inside, marker, out, err, (verdict_w, token_r, *keep), prefix,
                lim, watch, cgroup,
            )  # fmt: skip
            for fd in (verdict_w, token_r, *keep):
                _close(fd, fds)
            said = _read_all(verdict_r)
            stdout = _read_output(out, lim.output_limit)
            stderr = _read_output(err, lim.output_limit)
    finally:
        for fd in fds:
            os.close(fd)
        if watch is not None and not watch.close() and netns:
            kernel._leave_thread_netns()  # a process of this run may still be alive in it
        if cgroup is not None and not cgroup.born_inside:
            cgroup.close()
        if work is not None:
            _rmtree(work)
    return rc, timed_out, wall, said, stdout, stderr, cmd


def _memfd(name: str) -> int:
    """A new unnamed in-memory file (closed on exec; ``pass_fds`` hands it on)."""
    return os.memfd_create(f"repro-sandbox-{name}", os.MFD_CLOEXEC)


def _capture(name: str):
    """An unnamed in-memory file for the child's ``name`` stream (``memfd_create``; a temporary
    file where there is none): nothing is written to disk, and the pages count toward the
    writer's memory (its run's cgroup), ``RLIMIT_FSIZE`` bounding their size as for a file."""
    try:
        return open(_memfd(name), "w+b")
    except (AttributeError, OSError):  # not Linux, or Linux < 3.17
        return tempfile.TemporaryFile()


def _close(fd: int, fds: list[int]) -> None:
    """Close ``fd`` and forget it in ``fds`` (the descriptors still to close)."""
    os.close(fd)
    fds.remove(fd)


def _write_files(work: str, source: str) -> None:
    """The program and the marshalled bootstrap in the host directory ``work``."""
    for name, data in ((_PROGRAM_NAME, source.encode()), (_BOOT_NAME, _bootstrap_code())):
        path = os.path.join(work, name)
        with open(path, "wb") as fh:
            fh.write(data)
        os.chmod(path, 0o644)  # readable by the sandbox's uid whatever the umask


def _data_files(source: str, fds: list[int]) -> tuple[tuple[int, str], ...]:
    """The program and the marshalled bootstrap in memory files, for bwrap to copy into the box:
    ((descriptor, name in the box), ...). Nothing touches the host's disk."""
    files = []
    for name, data in ((_PROGRAM_NAME, source.encode()), (_BOOT_NAME, _bootstrap_code())):
        fd = _memfd(name)
        fds.append(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        files.append((fd, name))
    return tuple(files)


def _bwrap_head(
    prefix: tuple,
    lim: _Limits,
    files: tuple,
    ids: kernel._IdMap | kernel._Pid1 | None,
    fds: list[int],
    netns: bool,
) -> tuple[list[str], tuple[int, ...]]:
    """bwrap's part of the command, its options passed through a pipe (``--args``): inside,
    bwrap's command line names no host path. Returns (head, descriptors the child keeps)."""
    tmpfs = _TMPFS_FILES * (lim.fsize_mb << 20)
    head = kernel._bwrap_command(prefix, tmpfs, files, ids, netns)
    args_r, args_w = os.pipe()
    fds += [args_r, args_w]
    options = "".join(f"{a}\0" for a in head[1:-1]).encode()
    if len(options) > 60000:  # a pipe holds 64 KiB
        raise SandboxError("repro.sandbox: the bwrap options do not fit in a pipe")
    os.write(args_w, options)
    _close(args_w, fds)
    return [head[0], "--args", str(args_r), "--"], (args_r, *(fd for fd, _ in files))


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
    cwd: str,
    home: str,
    marker: str,
    out,
    err,
    keep_fds: tuple[int, ...],
    prefix: tuple,
    lim: _Limits,
    ids: kernel._IdMap | kernel._Pid1 | None,
    cgroup: cgroups._Cgroup | None,
) -> tuple[int | None, bool, float]:
    """Start ``cmd`` in ``cwd`` (``home``: the program's working directory, as it sees it), wait
    up to the timeout, kill and reap: (returncode, timed out, wall s)."""
    start = time.perf_counter()
    try:
        proc = kernel._spawn(
            cmd, ids, lim.timeout_s, cgroup, cwd=cwd, env=_child_env(home, marker),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            close_fds=True, pass_fds=keep_fds,
        )  # fmt: skip
    except OSError as exc:
        raise SandboxError(f"repro.sandbox: cannot start {cmd[0]!r}: {exc}") from exc
    timed_out = False
    try:
        rc: int | None = kernel._wait(proc, lim.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        kernel._kill_process_group(proc.pid)
        proc.wait()
        rc = None
    except BaseException:  # KeyboardInterrupt: never leave the child behind
        kernel._kill_process_group(proc.pid)
        proc.wait()
        raise
    finally:
        # In a pid namespace everything died with the program (its pid 1, reaped above).
        # Otherwise kill whatever is left in its process group, and anything carrying its
        # marker (a process that left the group).
        if "--pid" not in prefix and "--unshare-pid" not in prefix:
            kernel._kill_process_group(proc.pid)
            _kill_marked(marker)
    return rc, timed_out, time.perf_counter() - start


def run_many(sources: Iterable[str], *, workers: int = 2, **limits: object) -> list[RunResult]:
    """:func:`run_program` on each source, ``workers`` at a time; results in input order."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"repro.sandbox: workers must be a positive integer, got {workers!r}")
    _limits(**limits)  # bad limits fail before anything runs
    sources = list(sources)
    if not sources:
        return []
    kernel._namespaces()  # probe once, before the threads start
    cgroups._remove_stale()  # the cgroups of earlier calls' worker threads
    with ThreadPoolExecutor(
        max_workers=min(workers, len(sources)), thread_name_prefix="repro-sandbox",
        initializer=_mark_launcher,
    ) as pool:  # fmt: skip
        return list(pool.map(lambda s: run_program(s, **limits), sources))  # type: ignore[arg-type]


# --- the threads that start sandboxes ---------------------------------------------------------

_LAUNCHER = threading.local()
#: The launcher pool of this process (keyed by pid: a forked child does not inherit threads).
_LAUNCHERS: dict[int, ThreadPoolExecutor] = {}
_LAUNCHERS_LOCK = threading.Lock()
#: At most this many :func:`run_program` calls from other threads run at once (as root).
_MAX_LAUNCHERS = 32


def _mark_launcher() -> None:
    _LAUNCHER.ok = True


def _is_launcher() -> bool:
    """Whether the calling thread is one of ours (:func:`run_many`'s, :func:`_launchers`'), which
    may be moved into a network namespace and a cgroup of their own (as root)."""
    return getattr(_LAUNCHER, "ok", False)


def _launchers() -> ThreadPoolExecutor:
    """The threads that run :func:`run_program` for callers whose own thread must stay as it is
    (its network namespace and cgroup; see :func:`kernel._thread_netns`,
    :func:`cgroups._cgroup_for`). Idle threads are reused, so do their namespace and cgroup."""
    with _LAUNCHERS_LOCK:
        pool = _LAUNCHERS.get(os.getpid())
        if pool is None:
            _LAUNCHERS.clear()
            pool = _LAUNCHERS[os.getpid()] = ThreadPoolExecutor(
                _MAX_LAUNCHERS, thread_name_prefix="repro-sandbox", initializer=_mark_launcher
            )
        return pool


def describe(**limits: object) -> str:
    """One line naming the sandbox layers and limits (for metric ``variant`` strings)."""
    lim = _limits(**limits)
    ver = ".".join(map(str, sys.version_info[:3]))
    return (
        f"repro.sandbox: subprocess python {ver} {' '.join(kernel._python_flags())} (stdlib only), "
        f"temp cwd, scrubbed env (PYTHONHASHSEED=0), rlimits cpu={lim.cpu_s}s "
        f"as={lim.memory_mb}MB fsize={lim.fsize_mb}MB nproc={lim.nproc} nofile={_NOFILE} core=0, "
        f"audit-hook guard (no processes/signals/sockets/ctypes/tracing, fs confined), "
        f"{kernel.namespace_layers()}, {cgroups.cgroup_layer(**limits)}, "
        f"wall timeout {lim.timeout_s:g}s with process-group SIGKILL; "
        f"ok = the harness reached the program's end (per-run token), not the exit status"
    )
