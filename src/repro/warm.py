"""Warm worker: a local process with the heavy packages imported, forking one child per job.

``python -m repro.job MODULE ARGS`` (:mod:`repro.job`) asks the worker of its *key* (interpreter,
working directory and environment, :func:`worker_key`) to run ``python -m MODULE ARGS``. The
worker is started on first use, in the background (the job that starts it runs directly, none
ever waits for it), and exits after :data:`IDLE_S` seconds without a job.

Per job (one Unix-socket connection)::

    launcher ──request + fds 0/1/2──►  worker ──fork──►  handler ──fork──►  stage
       ▲  ◄──────── exit status ─────────────────────── handler (waitpid)     │
       └── signals (SIGTERM, SIGINT, SIGUSR1, SIGHUP) ──► handler ──killpg──►──┘

* the **stage** process becomes its own process group, takes the launcher's standard streams,
  working directory, umask and exact environment, drops every ``repro`` module the worker may
  hold (so edited sources always run), restores default signal handling and runs the module as
  ``__main__``;
* the **handler** waits for it and sends its status back; a signal message from the launcher is
  delivered to the stage's process group; if the launcher's connection drops (it was killed), the
  stage group gets SIGTERM and, :data:`KILL_GRACE_S` seconds later, SIGKILL;
* the **worker** only imports (it never runs a torch operation, so no thread pool exists when it
  forks) and accepts connections from its own user (``SO_PEERCRED``) through a socket in a
  directory only that user can enter.

The worker never outlives a change that could alter a result: a different interpreter, project
directory or any environment variable (``HF_HUB_OFFLINE``, ``PYTHONPATH``, thread counts, …)
gives another key and so another worker; an upgraded package (the interpreter's site-packages
touched) makes the worker exit at its next job, which then runs directly.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from repro.job import VOLATILE_ENV

#: seconds without a job after which a worker exits
IDLE_S = float(os.environ.get("REPRO_WARM_IDLE_S", "120"))
#: seconds between SIGTERM and SIGKILL when the launcher vanished
KILL_GRACE_S = 10.0
#: what the worker imports before accepting jobs (each one optional); REPRO_WARM_PRELOAD (comma
#: separated) replaces the list
PRELOAD_DEFAULT = (
    "numpy",
    "torch",
    "lightning.pytorch",
    "transformers",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.bert.modeling_bert",
    "bert_score",
    "torchmetrics.functional.text.rouge",
    "nltk.translate.bleu_score",
    "rouge_score.rouge_scorer",
    "sacrebleu",
    "tokenizers",
    "pandas",
    "matplotlib.pyplot",
    "seaborn",
    "jsonschema",
    "yaml",
)


def preload_list() -> tuple[str, ...]:
    raw = os.environ.get("REPRO_WARM_PRELOAD")
    if raw is None:
        return PRELOAD_DEFAULT
    return tuple(name.strip() for name in raw.split(",") if name.strip())

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
_MAX_REQUEST = 16 << 20


# --- where and who ------------------------------------------------------------------------------


def runtime_dir() -> Path | None:
    """A directory only this user can enter (created 0700), or None when none can be had."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = Path(base) / f"repro-warm-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return None
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return path


def worker_key(environ: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """Identity of the worker a job may use: interpreter, site-packages, cwd and environment."""
    env = dict(os.environ if environ is None else environ)
    for name in VOLATILE_ENV:
        env.pop(name, None)
    blob = json.dumps(
        {
            "exe": sys.executable,
            "prefix": sys.prefix,
            "cwd": os.path.realpath(cwd or os.getcwd()),
            "env": sorted(env.items()),
        }
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _site_stamp() -> float:
    """Newest mtime among the interpreter's site-packages directories (pip install touches it)."""
    import site

    stamps = []
    for d in [*site.getsitepackages(), site.getusersitepackages()]:
        with contextlib.suppress(OSError):
            stamps.append(os.stat(d).st_mtime)
    return max(stamps, default=0.0)


# --- framing ------------------------------------------------------------------------------------


def _send_msg(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    data = struct.pack("!I", len(payload)) + payload
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _recv_request(sock: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(4, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if len(msg) < 4:
        msg += _recv_exact(sock, 4 - len(msg)) or b""
    (size,) = struct.unpack("!I", msg)
    if size > _MAX_REQUEST:
        raise ValueError("request too large")
    body = _recv_exact(sock, size)
    if body is None:
        raise ConnectionError("launcher closed the connection mid-request")
    return json.loads(body), list(fds)


# --- the launcher's side -------------------------------------------------------------------------


def run_warm(module: str, args: list[str]) -> int | None:
    """Run the stage in a warm worker; its exit status, or None to run it in this process."""
    rdir = runtime_dir()
    if rdir is None:
        return None
    key = worker_key()
    sock_path = rdir / f"{key}.sock"
    sock = _connect(sock_path)
    if sock is None:
        _start_worker(rdir, key)
        return None
    request = {
        "module": module,
        "args": args,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": _umask(),
        "key": key,
    }
    try:
        _send_msg(sock, json.dumps(request).encode(), fds=[0, 1, 2])
    except OSError:
        sock.close()
        return None
    return _wait(sock)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _start_worker(rdir: Path, key: str) -> None:
    """Start the worker of ``key`` in the background unless one is alive or starting."""
    lock = rdir / f"{key}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # a worker holds the lock: it is starting (or exiting)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    log = rdir / f"{key}.log"
    with open(log, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "repro.warm", "--serve", str(rdir), key],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )


def _wait(sock: socket.socket) -> int | None:
    """Forward signals to the stage until its status arrives; the status (None: not started)."""
    previous = {}
    started = False

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(struct.pack("!I", signum))

    for sig in _SIGNALS:
        previous[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                head = _recv_exact(sock, 1)
            except InterruptedError:
                continue
            if head is None:  # the worker went away: before the stage started, run it here
                if started:
                    print("repro.job: the warm worker ended without the stage's status",
                          file=sys.stderr)
                    return 1
                return None
            if head == b"R":  # refused (another key, or the worker is going away)
                return None
            if head == b"S":  # the stage is being started: from now on it must not run here
                started = True
                continue
            if head == b"X":
                raw = _recv_exact(sock, 4)
                if raw is None:
                    return 1
                return struct.unpack("!i", raw)[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


# --- the worker's side ---------------------------------------------------------------------------


def serve(rdir: Path, key: str) -> int:
    lock_fd = os.open(rdir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another worker of this key is alive
    if worker_key() != key:
        return 0
    pid_file = rdir / f"{key}.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through the clean-up below
    for name in preload_list():  # each optional: a missing package only costs its import in the job
        with contextlib.suppress(Exception):
            __import__(name)
    stamp = _site_stamp()
    path = rdir / f"{key}.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    server.settimeout(5.0)
    children: set[int] = set()
    last = time.monotonic()
    cwd = os.getcwd()
    try:
        while True:
            _reap(children)
            if not os.path.isdir(cwd) or _site_stamp() != stamp:
                return 0  # project deleted or packages changed: go away
            if not children and time.monotonic() - last > IDLE_S:
                return 0
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            last = time.monotonic()
            if not _same_user(conn):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:  # the handler
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                server.close()
                os.close(lock_fd)
                code = 0
                try:
                    code = _handle(conn, key)
                finally:
                    os._exit(code)
            children.add(pid)
            conn.close()
    finally:
        for leftover in (path, pid_file):
            with contextlib.suppress(OSError):
                leftover.unlink()
        server.close()


def stop_workers(under: str | os.PathLike | None = None) -> int:
    """SIGTERM the warm workers of this user (each exits after its running jobs' handlers are
    detached; running stages finish). Returns how many were signalled.

    ``under``: only the workers whose project directory (working directory) lies inside it — the
    test suite stops the workers of its own temporary projects and leaves a ``make demo`` that runs
    beside it alone.
    """
    rdir = runtime_dir()
    if rdir is None:
        return 0
    root = None if under is None else os.path.realpath(under)
    stopped = 0
    for pid_file in rdir.glob("*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd") if root is not None else ""
        except (OSError, ValueError):
            continue
        if b"repro.warm" not in cmdline:
            continue
        if root is not None and os.path.commonpath([root, os.path.realpath(cwd)]) != root:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            stopped += 1
    return stopped


def _reap(children: set[int]) -> None:
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if not done:
                continue
        children.discard(pid)


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _handle(conn: socket.socket, key: str) -> int:
    try:
        request, fds = _recv_request(conn)
    except (OSError, ValueError, ConnectionError):
        return 1
    env = request.get("env", {})
    if request.get("key") != key or worker_key(env, request.get("cwd")) != key or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.sendall(b"R")
        return 0
    conn.sendall(b"S")
    pid = os.fork()
    if pid == 0:  # the stage
        conn.close()
        _run_stage(request, fds)
    for fd in fds:
        os.close(fd)
    import threading

    done = threading.Event()

    def relay() -> None:
        while not done.is_set():
            try:
                raw = _recv_exact(conn, 4)
            except OSError:
                raw = None
            if raw is None:  # the launcher is gone: end the stage
                if done.is_set():
                    return
                _kill_group(pid, signal.SIGTERM)
                if not done.wait(KILL_GRACE_S):
                    _kill_group(pid, signal.SIGKILL)
                return
            _kill_group(pid, struct.unpack("!I", raw)[0])

    threading.Thread(target=relay, daemon=True).start()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    done.set()
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    with contextlib.suppress(OSError):
        conn.sendall(b"X" + struct.pack("!i", code))
    return 0


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _run_stage(request: dict, fds: list[int]) -> None:
    """In the stage process: become ``python -m module args`` as the launcher would have."""
    code = 1
    try:
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        for name in [m for m in sys.modules if m == "repro" or m.startswith("repro.")]:
            del sys.modules[name]
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the stage's streams for its lifetime
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        from repro.job import run_here

        code = run_here(request["module"], list(request["args"]), "warm")
    except BaseException:  # noqa: BLE001 - report like the interpreter would, then exit
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 3 and argv[0] == "--serve":
        return serve(Path(argv[1]), argv[2])
    if argv == ["--stop"]:
        print(f"stopped {stop_workers()} warm worker(s)")
        return 0
    print("usage: python -m repro.warm --stop   (workers are started by repro.job)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
