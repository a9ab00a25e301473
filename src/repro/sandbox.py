"""Run untrusted Python programs (generated code, MBPP tests) in a sandboxed subprocess.

Nothing here ever runs a program in the calling process (KL-flow ``exec``s in-process, methods.md
§5.5). One program = one short-lived interpreter, confined by independent layers, so that a hole in
one is still covered by the others:

(a) **Temporary working directory.** A fresh ``tempfile.mkdtemp`` directory holds the program
    (``program.py``) and the marshalled bootstrap; it is the child's cwd, ``HOME`` and ``TMPDIR``,
    and it is removed afterwards. stdout / stderr go to unnamed temporary files (read back
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
(c) **Resource limits and process-group kill.** Before the program runs, a bootstrap in the child
    sets ``RLIMIT_CPU`` (soft = hard: SIGKILL), ``RLIMIT_AS`` (memory → ``MemoryError``),
    ``RLIMIT_FSIZE`` (files and captured output → ``OSError``), ``RLIMIT_NPROC`` and
    ``RLIMIT_CORE=0``; these are lowered hard limits, and raising them back is denied by (d). The
    child starts a new session; past the wall-clock timeout the whole process group is SIGKILLed
    and reaped. (Limits are set in the bootstrap, not in a ``preexec_fn``, which is unsafe with
    the threads of :func:`run_many`.) Root ignores ``RLIMIT_NPROC``, hence (d) and (e).
(d) **In-child guard** (``sys.addaudithook``, which a program cannot remove), installed before
    the program is read. It raises ``PermissionError("repro-sandbox: … denied …")`` on: process
    creation (``os.system``, ``os.exec*``, ``os.posix_spawn*``, ``os.fork``/``forkpty``,
    ``subprocess.Popen``, ``pty.spawn``; importing ``_posixsubprocess``), signals to any other
    process (``os.kill`` of another pid, ``os.killpg``), every ``socket.*`` event, ``ctypes`` /
    ``cffi`` (import and events), sub-interpreters, ``gc`` object walks, building code objects,
    loading bytecode from outside the standard library, ``fcntl.ioctl``, ``resource.setrlimit``;
    writes, deletions, renames, links, chmod/chown/utime/xattr and ``chdir`` outside the sandbox
    directory; reads and directory listings outside the sandbox directory, the standard library,
    ``/proc/self`` and a few device files (so nothing secret can be echoed into an error message
    that ends up in a scores file); opening directories (so no ``dir_fd`` tricks). Paths are
    resolved with the guard's own symlink-following resolver built from functions captured at
    install time (monkeypatching ``os`` does not fool it). A few ``os`` functions without audit
    events (``setsid``, ``setpgid``, ``setpgrp``, ``pidfd_open``, ``mkfifo``, ``mknod``,
    ``signal.pidfd_send_signal``) are removed. An in-process guard is **not** a security boundary
    on its own (CPython's audit hooks are documented as such): a program that reaches native code
    through interpreter bugs can bypass it. It stops ordinary hostile code; (c) and (e) hold
    regardless.
(e) **Namespaces** (``unshare``, probed once and cached): a new user namespace mapping the caller
    to root *inside* it only (no capability on the host), a network namespace (no interface but a
    down loopback: no network at all), a pid namespace with the program as its pid 1 (when it
    exits every process it may have started is killed by the kernel; it cannot see or signal any
    host process) and a mount namespace with its own ``/proc``. Where ``unshare`` cannot create
    them (no binary, user namespaces disabled) the probe falls back to fewer namespaces or none,
    logs one warning, and (a)–(d) still apply; without a pid namespace, processes carrying this
    run's marker variable are additionally hunted down in ``/proc`` and killed after each run.

Statuses of :class:`RunResult`: ``ok`` (exit 0), ``error`` (non-zero exit: exception, syntax error,
``sys.exit(1)``), ``denied`` (non-zero exit after a guard denial), ``memory`` (ended with
``MemoryError``), ``timeout`` (wall clock exceeded, killed), ``killed`` (ended by a signal: CPU
limit, segfault, ...).

Known limits of the guard's file rules: opening directories is denied everywhere, so
``shutil.rmtree`` and ``tempfile.TemporaryDirectory`` cleanup fail even inside the sandbox;
``pathlib``/``str`` paths work, other path-like objects are refused by ``os`` functions.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import math
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
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

STATUSES = ("ok", "error", "denied", "memory", "timeout", "killed")
DENIAL_MARKER = "repro-sandbox:"
_MARKER_VAR = "REPRO_SANDBOX_RUN"
_PROGRAM_NAME = "program.py"
# `unshare --fork` (util-linux 2.38) passes a child's death by signal on by raising the same signal
# on itself, which fails for SIGKILL (RLIMIT_CPU, OOM killer): it then prints this and exits 1.
_UNSHARE_SIGKILL = "unshare: sigprocmask unblock failed: Invalid argument"
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


# --- the child's bootstrap (runs as ``python -c`` before the program) ---------------------------

# Everything the guard uses is bound to closure variables at install time, so replacing builtins or
# module attributes afterwards does not change its decisions.
_BOOTSTRAP = r"""
import sys


def _repro_sandbox_install(argv):
    import os
    import posix
    import resource

    work, program = argv[2], argv[3]
    cpu, mem, fsize, nproc, started = (int(v) for v in argv[4:9])
    posix.write(started, b"1")  # tells the parent that the sandbox itself started
    posix.close(started)
    for which, value in (
        (resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NPROC, nproc),
    ):
        if value < 0:
            continue
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    for module in (os, posix):  # escape hatches that raise no audit event
        for name in ("setsid", "setpgid", "setpgrp", "pidfd_open", "mkfifo", "mknod"):
            if hasattr(module, name):
                delattr(module, name)
    _signal = sys.modules.get("_signal")
    if _signal is not None and hasattr(_signal, "pidfd_send_signal"):
        del _signal.pidfd_send_signal

    _isinstance, _str, _bytes, _int, _bool = isinstance, str, bytes, int, bool
    _tuple, _len, _any = tuple, len, any
    _Denied = PermissionError
    _lstat, _stat, _readlink, _getcwd, _getpid = (
        posix.lstat, posix.stat, posix.readlink, posix.getcwd, posix.getpid)
    _getframe = sys._getframe
    _join = str.join
    _compile_bytecode = sys.modules["_frozen_importlib_external"]._compile_bytecode.__code__
    WRITE_FLAGS = (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
                   | getattr(os, "O_TMPFILE", 0))
    IFMT, IFLNK, IFDIR = 0o170000, 0o120000, 0o040000

    def deny(event, why):
        raise _Denied(f"repro-sandbox: {event} denied ({why})")

    def as_text(event, p):
        # the exact text of a str/bytes path (subclass methods are never called); deny the rest
        if _isinstance(p, _str):
            return _join("", (p,))
        if _isinstance(p, _bytes):
            return _bytes.decode(_bytes.join(b"", (p,)), "utf-8", "surrogateescape")
        deny(event, "only str or bytes paths are accepted inside the sandbox")

    def resolve(event, path):
        # absolute path with every symlink followed (like os.path.realpath(strict=False))
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        todo = path.split("/")[::-1]
        out = []
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if out:
                    out.pop()
                continue
            here = "/" + "/".join(out + [part])
            try:
                mode = _lstat(here).st_mode
            except (OSError, ValueError):
                out.append(part)
                continue
            if mode & IFMT == IFLNK:
                hops += 1
                if hops > 40:
                    deny(event, "too many levels of symbolic links")
                target = _readlink(here)
                if target.startswith("/"):
                    out = []
                todo.extend(target.split("/")[::-1])
                continue
            out.append(part)
        return "/" + "/".join(out)

    def is_dir(path):
        try:
            return _stat(path).st_mode & IFMT == IFDIR
        except (OSError, ValueError):
            return False

    def under(path, roots):
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return True
        return False

    WORK = resolve("install", work)
    STDLIB = []
    for entry in sys.path:
        if entry and _isinstance(entry, _str):
            real = resolve("install", entry)
            if is_dir(real) and not under(real, (WORK,)) and real not in STDLIB:
                STDLIB.append(real)
    STDLIB = _tuple(STDLIB)
    DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
    try:
        SELF_PROC = ("/proc/" + _readlink("/proc/self"),)
    except OSError:
        SELF_PROC = ()
    READ_ROOTS = (WORK,) + STDLIB + DEVICES + SELF_PROC + ("/usr/share/zoneinfo",)
    WRITE_ROOTS = (WORK, "/dev/null")

    def check(event, path, roots, what):
        text = as_text(event, path)
        if roots is READ_ROOTS and text.startswith("/") and "/." not in text and "//" not in text:
            if under(text, STDLIB):  # fast path for imports: the program cannot change these
                return text
        real = resolve(event, text)
        if not under(real, roots):
            deny(event, f"{what} outside the sandbox directory: {real}")
        return real

    def read_path(event, args):
        path = args[0] if args else None
        if path is None or _isinstance(path, _int):
            return  # the cwd (inside) or an already opened descriptor
        check(event, path, READ_ROOTS, "reading")

    def write_path(event, args, allow_fd=False):
        path = args[0]
        if _isinstance(path, _int) and not _isinstance(path, _bool):
            if allow_fd:
                return
            deny(event, "changing a file by descriptor")
        check(event, path, WRITE_ROOTS, "changing")

    def dir_fd_free(event, args, positions):
        for i in positions:
            if _len(args) > i and args[i] is not None and args[i] != -1:
                deny(event, "dir_fd arguments")

    def on_open(event, args):
        path, flags = args[0], args[2]
        if _isinstance(path, _int):
            return
        write = _isinstance(flags, _int) and flags & WRITE_FLAGS
        if not _isinstance(flags, _int) and _isinstance(args[1], _str):
            write = _any(c in args[1] for c in "wax+")
        real = check(event, path, WRITE_ROOTS if write else READ_ROOTS,
                     "writing" if write else "reading")
        if args[1] is None and is_dir(real):  # os.open (io.open cannot open directories)
            deny(event, f"opening a directory: {real}")

    def on_two_paths(event, args):  # rename / link: both ends inside
        dir_fd_free(event, args, (2, 3))
        check(event, args[0], WRITE_ROOTS, "changing")
        check(event, args[1], WRITE_ROOTS, "changing")

    def on_symlink(event, args):
        dir_fd_free(event, args, (2,))
        target = as_text(event, args[0])
        if not target.startswith("/"):
            deny(event, "relative symlink targets; use an absolute path inside the sandbox")
        check(event, target, WRITE_ROOTS, "linking to")
        check(event, args[1], WRITE_ROOTS, "changing")

    def on_kill(event, args):
        pid = args[0]
        if not (_isinstance(pid, _int) and pid > 0 and pid == _getpid()):
            deny(event, f"signals to other processes (pid {pid!r})")

    def on_chdir(event, args):
        if not _isinstance(args[0], (_str, _bytes)):
            deny(event, "changing directory by descriptor")
        check(event, args[0], (WORK,), "changing directory")

    def on_import(event, args):
        name = args[0] if _isinstance(args[0], _str) else ""
        top = name.partition(".")[0]
        if top in BLOCKED_MODULES or top.startswith("_test"):
            deny(event, f"importing {name}")

    def on_marshal(event, args):
        # bytecode is loaded only by the import system, only from the standard library
        frame = _getframe(2)  # 0: on_marshal, 1: hook, 2: the caller of marshal.loads
        if frame.f_code is _compile_bytecode:
            path = frame.f_locals.get("bytecode_path")
            if _isinstance(path, _str) and under(resolve(event, path), STDLIB):
                return  # (its file was opened through check() already)
        deny(event, "loading bytecode from outside the standard library")

    def always(event, args):
        deny(event, "not allowed inside the sandbox")

    BLOCKED_MODULES = frozenset((
        "ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "_posixshmem",
        "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_interpchannels",
    ))
    HANDLERS = {
        "open": on_open,
        "import": on_import,
        "os.listdir": read_path, "os.scandir": read_path,
        "os.getxattr": read_path, "os.listxattr": read_path,
        "os.remove": lambda e, a: (dir_fd_free(e, a, (1,)), write_path(e, a)),
        "os.rmdir": lambda e, a: (dir_fd_free(e, a, (1,)), write_path(e, a)),
        "os.mkdir": lambda e, a: (dir_fd_free(e, a, (2,)), write_path(e, a)),
        "os.truncate": lambda e, a: write_path(e, a, allow_fd=True),
        "os.utime": lambda e, a: (dir_fd_free(e, a, (3,)), write_path(e, a)),
        "os.chmod": lambda e, a: (dir_fd_free(e, a, (2,)), write_path(e, a)),
        "os.chown": lambda e, a: (dir_fd_free(e, a, (3,)), write_path(e, a)),
        "os.setxattr": write_path, "os.removexattr": write_path,
        "shutil.rmtree": write_path,
        "os.rename": on_two_paths, "os.link": on_two_paths,
        "os.symlink": on_symlink,
        "os.chdir": on_chdir,
        "os.kill": on_kill,
        "marshal.loads": on_marshal, "marshal.load": on_marshal,
    }
    for name in (
        "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
        "pty.spawn", "os.killpg", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "code.__new__", "cpython.PyInterpreterState_New", "resource.setrlimit",
        "resource.prlimit", "fcntl.ioctl",
    ):
        HANDLERS[name] = always
    _get = HANDLERS.get
    _prefixes = ("socket.", "ctypes.")

    def hook(event, args):
        handler = _get(event)
        if handler is not None:
            handler(event, args)
        elif event.startswith(_prefixes):
            deny(event, "not allowed inside the sandbox")

    sys.addaudithook(hook)

    with open(program, encoding="utf-8") as fh:
        source = fh.read()
    code = compile(source, program, "exec")
    main = type(sys)("__main__")
    main.__file__ = program
    sys.modules["__main__"] = main
    sys.argv = [program]
    return code, main


_code, _main = _repro_sandbox_install(sys.argv)
del _repro_sandbox_install
exec(_code, _main.__dict__)
"""


# The bootstrap is compiled once per parent process and handed to the child marshalled (the same
# interpreter runs both): compiling it in every child would cost ~5 ms per program.
_LOADER = "import marshal, sys; exec(marshal.loads(open(sys.argv[1], 'rb').read()))"
_BOOT_NAME = ".repro-sandbox-bootstrap"


@functools.lru_cache(maxsize=1)
def _bootstrap_code() -> bytes:
    return marshal.dumps(compile(_BOOTSTRAP, "<repro-sandbox-bootstrap>", "exec"))


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


# --- namespaces (layer e) -----------------------------------------------------------------------

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


@functools.lru_cache(maxsize=1)
def _namespaces() -> tuple[str, tuple[str, ...]]:
    """(description, command prefix) of the strongest ``unshare`` that works here; probed once."""
    unshare = shutil.which("unshare")
    if unshare is None:
        log.warning(
            "repro.sandbox: no `unshare` binary on PATH; untrusted programs run without "
            "network/pid namespaces (still sandboxed by the temp dir, scrubbed env, rlimits and "
            "the audit-hook guard). Install util-linux to add them."
        )
        return "no namespaces (unshare not found)", ()
    failures = []
    for name, flags in _NAMESPACE_CANDIDATES:
        cmd = [unshare, *flags, sys.executable, *_python_flags(), "-c", "pass"]
        try:
            res = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=20,
                env={"PATH": "/usr/bin:/bin"}, cwd="/",
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as err:
            failures.append(f"{name}: {err}")
            continue
        if res.returncode == 0:
            if failures:
                log.warning(
                    "repro.sandbox: using %s only; stronger isolation failed here: %s",
                    name, "; ".join(failures),
                )  # fmt: skip
            return name, (unshare, *flags)
        failures.append(f"{name}: {res.stderr.decode(errors='replace').strip()[:200]}")
    log.warning(
        "repro.sandbox: `unshare` cannot create namespaces here (%s); untrusted programs run "
        "without network/pid namespaces (still sandboxed by the temp dir, scrubbed env, rlimits "
        "and the audit-hook guard)",
        "; ".join(failures),
    )
    return "no namespaces (unshare failed)", ()


def _namespace_prefix() -> tuple[str, ...]:
    return _namespaces()[1]


def namespace_layers() -> str:
    """Which namespaces programs get on this machine (e.g. ``"user+net+pid+mount namespaces"``)."""
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


def describe(**limits: object) -> str:
    """One line naming the sandbox layers and limits (for metric ``variant`` strings)."""
    lim = _limits(**limits)  # type: ignore[arg-type]
    ver = ".".join(map(str, sys.version_info[:3]))
    return (
        f"repro.sandbox: subprocess python {ver} {' '.join(_python_flags())} (stdlib only), "
        f"temp cwd, scrubbed env (PYTHONHASHSEED=0), rlimits cpu={lim.cpu_s}s "
        f"as={lim.memory_mb}MB fsize={lim.fsize_mb}MB nproc={lim.nproc} core=0, audit-hook guard "
        f"(no processes/signals/sockets/ctypes, fs confined), {namespace_layers()}, "
        f"wall timeout {lim.timeout_s:g}s with process-group SIGKILL"
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


def _classify(timed_out: bool, rc: int | None, stderr_tail: str) -> str:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "ok"
    if rc is not None and rc < 0:
        return "killed"
    if DENIAL_MARKER in stderr_tail:
        return "denied"
    last = next((ln for ln in reversed(stderr_tail.splitlines()) if ln.strip()), "")
    if last.startswith("MemoryError"):
        return "memory"
    return "error"


# --- public API ---------------------------------------------------------------------------------


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

    Args:
        timeout_s: wall-clock limit (interpreter start-up included); past it the process group is
            SIGKILLed and the status is ``"timeout"``.
        cpu_s: ``RLIMIT_CPU`` in whole seconds (default ``ceil(timeout_s) + 1``).
        memory_mb: ``RLIMIT_AS`` (address space) in MiB.
        fsize_mb: ``RLIMIT_FSIZE`` in MiB: the largest file, captured stdout/stderr included.
        nproc: ``RLIMIT_NPROC`` (threads count; ignored by the kernel for root).
        output_limit: bytes of stdout and of stderr kept (head and tail).
    """
    if not isinstance(source, str):
        raise TypeError(f"repro.sandbox: source must be a str, got {type(source).__name__}")
    lim = _limits(timeout_s, cpu_s, memory_mb, fsize_mb, nproc, output_limit)
    if not sys.executable:
        raise SandboxError("repro.sandbox: sys.executable is empty; cannot start an interpreter")
    prefix = _namespace_prefix()
    marker = uuid.uuid4().hex
    work = tempfile.mkdtemp(prefix="repro-sandbox-")
    try:
        program = os.path.join(work, _PROGRAM_NAME)
        with open(program, "w", encoding="utf-8") as fh:
            fh.write(source)
        boot = os.path.join(work, _BOOT_NAME)
        with open(boot, "wb") as fh:
            fh.write(_bootstrap_code())
        started_r, started_w = os.pipe()  # the bootstrap writes one byte here, then closes it
        try:
            cmd = [
                *prefix, sys.executable, *_python_flags(), "-c", _LOADER, boot, work, program,
                str(lim.cpu_s), str(lim.memory_mb << 20), str(lim.fsize_mb << 20),
                str(lim.nproc), str(started_w),
            ]  # fmt: skip
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                rc, timed_out, wall = _run(cmd, work, marker, out, err, started_w, prefix, lim)
                os.close(started_w)
                started_w = -1
                os.set_blocking(started_r, False)
                try:
                    started = os.read(started_r, 1) == b"1"
                except BlockingIOError:
                    started = False
                stdout = _read_output(out, lim.output_limit)
                stderr = _read_output(err, lim.output_limit)
        finally:
            os.close(started_r)
            if started_w >= 0:
                os.close(started_w)
    finally:
        _rmtree(work)
    if not started:  # not the program's fault: never score it as a failure
        how = f"timed out after {lim.timeout_s:g} s" if timed_out else f"exit status {rc}"
        raise SandboxError(
            f"repro.sandbox: the sandboxed interpreter never reached its bootstrap ({how}; "
            f"command {' '.join(cmd[: len(prefix) + 1])} ...); its stderr: "
            f"{stderr.strip()[-500:]!r}. The machine may be overloaded (raise timeout_s) or "
            "unshare may have stopped working (try `unshare --user --map-root-user --net true`)."
        )
    if rc == 1 and "--fork" in prefix and stderr.rstrip().endswith(_UNSHARE_SIGKILL):
        rc = -signal.SIGKILL  # see _UNSHARE_SIGKILL
    return RunResult(_classify(timed_out, rc, stderr), rc, stdout, stderr, wall)


def _run(
    cmd: list[str], work: str, marker: str, out, err, keep_fd: int, prefix: tuple, lim: _Limits
) -> tuple[int | None, bool, float]:
    """Start ``cmd``, wait up to the timeout, kill and reap: (returncode, timed out, wall s)."""
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            cmd, cwd=work, env=_child_env(work, marker), stdin=subprocess.DEVNULL, stdout=out,
            stderr=err, start_new_session=True, close_fds=True, pass_fds=(keep_fd,),
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
        if "--pid" not in prefix:
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
    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        return list(pool.map(lambda s: run_program(s, **limits), sources))  # type: ignore[arg-type]


def assemble_program(
    code: str, tests: Sequence[str] = (), setup: str = "", mode: str = "tests"
) -> str:
    """The program to run for one MBPP-style problem.

    ``mode="tests"``: ``code``, then ``setup``, then the ``tests`` asserts, newline-joined (the
    solution + MBPP's ``test_setup_code`` + ``test_list``; it passes iff it exits 0). The setup
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
    parts = [code] if mode == "compile" else [code, setup, *tests]
    return "\n".join(p for p in parts if p) + "\n"
