"""The sandboxed child's bootstrap: limits, the in-process guard, the program, the verdict.

This file runs inside the sandbox before the untrusted program, in the same interpreter (see
:mod:`repro.sandbox` for the layers around it). The parent compiles it once and hands the code
object to the child marshalled (``python -S -s -B [-P] -c LOADER BOOT ARGS...``); the loader
executes it in the child's ``__main__`` namespace, where :func:`run` takes over. Importing this
module (``repro.sandbox.boot``) runs nothing: ruff lints it and the tests import it like any other.

Arguments (``sys.argv[2:]``): the work directory, the program's path, then ``RLIMIT_CPU`` (s),
``RLIMIT_AS``, ``RLIMIT_FSIZE`` (bytes), ``RLIMIT_NPROC``, ``RLIMIT_NOFILE``, the verdict
descriptor, the token descriptor, ``1``/``0`` for the guard (``0`` only in the tests that show
what the kernel-side layers hold without it) and the uid/gid to switch to first (``-1``: none;
bubblewrap started by root leaves that to the bootstrap, see ``repro.sandbox.kernel._BWRAP_AS_ROOT``).

Everything the guard and the verdict use is bound to local variables before the program runs, so
replacing builtins or module attributes afterwards does not change them.
"""

import sys


def _setup(argv):
    """Limits, token, guard, program: returns ``(code, namespace, finish)``; runs no program code."""
    import posix
    import resource

    work, program = argv[2], argv[3]
    cpu, mem, fsize, nproc, nofile, verdict, token_fd, guard, drop = map(int, argv[4:13])
    _write, _close, _read, _exit = posix.write, posix.close, posix.read, posix._exit
    _write(verdict, b"1")  # tells the parent that the sandbox itself started
    # The per-run token: read to its end and the descriptor closed before any program code runs.
    token = b""
    while True:
        chunk = _read(token_fd, 64)
        if not chunk:
            break
        token += chunk
    _close(token_fd)
    if drop >= 0:  # bwrap started by root: become the unprivileged id (clears every capability)
        posix.setgroups([])
        posix.setresgid(drop, drop, drop)
        posix.setresuid(drop, drop, drop)
    for which, value in (
        (resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_NOFILE, nofile),
    ):  # fmt: skip
        if value < 0:
            continue
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
    if guard:
        _install_guard(work)

    with open(program, encoding="utf-8") as fh:
        source = fh.read()
    # optimize=0: asserts are never compiled away, whatever the interpreter's flags
    code = compile(source, program, "exec", dont_inherit=True, optimize=0)
    main = type(sys)("__main__")
    main.__file__ = program
    sys.modules["__main__"] = main
    sys.argv = [program]

    flushes = tuple(s.flush for s in (sys.stdout, sys.stderr) if s is not None)
    _len, _BaseException = len, BaseException

    def finish():
        # Reached only when the program's code object returned normally: every statement ran.
        done = 0
        while done < _len(token):
            done += _write(verdict, token[done:])
        _close(verdict)
        for flush in flushes:
            try:  # noqa: SIM105 (no contextlib import in the child)
                flush()
            except _BaseException:  # a program may have closed or detached stdout
                pass
        _exit(0)  # no atexit handler, thread join or __del__ of the program runs after this

    return code, main.__dict__, finish


# --- the audit-hook guard (layer d) --------------------------------------------------------------
#
# The guard is built by the module-level functions below, each called once by _install_guard
# before the program runs. What they return are closures that use only names bound at that
# moment (their own locals and cells: never a global or builtin looked up while the program
# runs, which `test_guard_closures_look_up_no_global_name` checks), and they test types with
# `issubclass(type(x), str)`, never `isinstance` (which calls a foreign object's `__class__`),
# and take the text of a str / bytes subclass with `str.join` (no method of the program's): no
# program code runs inside the guard, short of a signal handler or finalizer it set up that
# fires there (see the module docstring of repro.sandbox). Once run() has cleared the loader's namespace, nothing
# of the guard is reachable from the program but its frames in the traceback of a denial, whose
# `tb_frame` the guard itself denies (_frame_rule).

#: Module names the program may not import (native code, process creation, sub-interpreters).
_BLOCKED_MODULES = (
    "ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "_posixshmem",
    "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_interpchannels",
)  # fmt: skip
#: Audit events denied whatever their arguments.
_ALWAYS_DENIED = (
    "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "pty.spawn", "os.killpg", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "code.__new__", "cpython.PyInterpreterState_New", "resource.setrlimit", "resource.prlimit",
    "fcntl.ioctl",
    # a trace function can jump over lines (the asserts); frames of other threads
    "sys.settrace", "sys.setprofile", "sys._settraceallthreads", "sys._setprofileallthreads",
    "sys._current_frames",
)  # fmt: skip


def _remove_escape_hatches(posix):
    """Drop the process and signal functions that raise no audit event."""
    # `os` copies posix's names when it is imported, so removing them from posix covers an `os`
    # imported later; `os` itself is not imported here (~1 ms with its _collections_abc under -S,
    # for every program that never uses it).
    for module in (sys.modules.get("os"), posix):
        if module is None:
            continue
        for name in ("setsid", "setpgid", "setpgrp", "pidfd_open", "mkfifo", "mknod"):
            if hasattr(module, name):
                delattr(module, name)
    _signal = sys.modules.get("_signal")
    if _signal is not None and hasattr(_signal, "pidfd_send_signal"):
        del _signal.pidfd_send_signal


def _denier():
    """``deny(event, why)``: raise the guard's ``PermissionError``."""
    _Denied = PermissionError

    def deny(event, why):
        raise _Denied(f"repro-sandbox: {event} denied ({why})")

    return deny


def _resolver(posix, deny):
    """``(as_text, resolve, is_dir, under)``: exact path text, symlinks followed, prefix test."""
    _type, _issubclass, _str, _bytes, _join = type, issubclass, str, bytes, str.join
    _lstat, _stat, _readlink, _getcwd = posix.lstat, posix.stat, posix.readlink, posix.getcwd
    _errors = (OSError, ValueError)
    IFMT, IFLNK, IFDIR = 0o170000, 0o120000, 0o040000

    def as_text(event, p):
        # the exact text of a str/bytes path (subclass methods are never called); deny the rest
        if _issubclass(_type(p), _str):
            return _join("", (p,))
        if _issubclass(_type(p), _bytes):
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
            except _errors:
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
        except _errors:
            return False

    def under(path, roots):
        for root in roots:  # noqa: SIM110 (a hot path: every import; no generator)
            if path == root or path.startswith(root + "/"):
                return True
        return False

    return as_text, resolve, is_dir, under


def _path_rules(work, deny, as_text, resolve, is_dir, under):
    """``(check, roots)``: the read / write rule of a path; ``roots`` = WORK, STDLIB, READ, WRITE."""
    _tuple, _type, _str = tuple, type, str
    WORK = resolve("install", work)
    STDLIB = []
    for entry in sys.path:
        if entry and _type(entry) is _str:
            real = resolve("install", entry)
            if is_dir(real) and not under(real, (WORK,)) and real not in STDLIB:
                STDLIB.append(real)
    STDLIB = _tuple(STDLIB)
    DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
    # (no /proc at all: /proc/self/mem and /proc/self/fd would reach the harness's memory and
    # descriptors, see the verdict in run())
    READ_ROOTS = (WORK,) + STDLIB + DEVICES + ("/usr/share/zoneinfo",)
    WRITE_ROOTS = (WORK, "/dev/null")

    def check(event, path, roots, what):
        text = as_text(event, path)
        if (
            roots is READ_ROOTS
            and text.startswith("/")
            and "/." not in text
            and "//" not in text
            and under(text, STDLIB)
        ):  # fast path for imports: the program cannot change these
            return text
        real = resolve(event, text)
        if not under(real, roots):
            deny(event, f"{what} outside the sandbox directory: {real}")
        return real

    return check, (WORK, STDLIB, READ_ROOTS, WRITE_ROOTS)


def _file_handlers(posix, deny, check, as_text, is_dir, roots):
    """The handlers of the file events: event name -> ``handler(event, args)``."""
    _type, _issubclass, _int, _bool, _str = type, issubclass, int, bool, str
    _len, _contains, _and = len, str.__contains__, int.__and__
    WORK, _, READ_ROOTS, WRITE_ROOTS = roots
    WRITE_FLAGS = (
        posix.O_WRONLY | posix.O_RDWR | posix.O_APPEND | posix.O_CREAT | posix.O_TRUNC
        | getattr(posix, "O_TMPFILE", 0)
    )  # fmt: skip

    def read_path(event, args):
        path = args[0] if args else None
        if path is None or _issubclass(_type(path), _int):
            return  # the cwd (inside) or an already opened descriptor
        check(event, path, READ_ROOTS, "reading")

    def write_path(event, args, allow_fd=False):
        path = args[0]
        if _issubclass(_type(path), _int) and _type(path) is not _bool:
            if allow_fd:
                return
            deny(event, "changing a file by descriptor")
        check(event, path, WRITE_ROOTS, "changing")

    def dir_fd_free(event, args, positions):
        for i in positions:
            if _len(args) > i and args[i] is not None and args[i] != -1:
                deny(event, "dir_fd arguments")

    def on_open(event, args):
        path, mode, flags = args[0], args[1], args[2]
        if _issubclass(_type(path), _int):
            return
        is_int = _issubclass(_type(flags), _int)
        write = is_int and _and(flags, WRITE_FLAGS)
        if not is_int and _issubclass(_type(mode), _str):
            for c in "wax+":
                if _contains(mode, c):
                    write = True
        real = check(
            event, path, WRITE_ROOTS if write else READ_ROOTS, "writing" if write else "reading"
        )
        if mode is None and is_dir(real):  # os.open (io.open cannot open directories)
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

    def on_chdir(event, args):
        if _issubclass(_type(args[0]), _int):
            deny(event, "changing directory by descriptor")
        check(event, args[0], (WORK,), "changing directory")

    def with_dir_fd(position, allow_fd=False):
        def handler(event, args):
            dir_fd_free(event, args, (position,))
            write_path(event, args, allow_fd)

        return handler

    return {
        "open": on_open, "os.listdir": read_path, "os.scandir": read_path,
        "os.getxattr": read_path, "os.listxattr": read_path,
        "os.remove": with_dir_fd(1), "os.rmdir": with_dir_fd(1), "os.mkdir": with_dir_fd(2),
        "os.truncate": lambda e, a: write_path(e, a, allow_fd=True),
        "os.utime": with_dir_fd(3), "os.chmod": with_dir_fd(2), "os.chown": with_dir_fd(3),
        "os.setxattr": write_path, "os.removexattr": write_path, "shutil.rmtree": write_path,
        "os.rename": on_two_paths, "os.link": on_two_paths, "os.symlink": on_symlink,
        "os.chdir": on_chdir,
    }  # fmt: skip


def _bytecode_rule(posix, deny, resolve, under, stdlib):
    """The handler of ``marshal.loads``: only the import system, only what a stdlib file holds."""
    _type, _str, _bytes, _OSError = type, str, bytes, OSError
    _getframe = sys._getframe
    _open, _read, _close = posix.open, posix.read, posix.close
    _O_RDONLY, _O_CLOEXEC = posix.O_RDONLY, posix.O_CLOEXEC
    _compile_bytecode = sys.modules["_frozen_importlib_external"]._compile_bytecode.__code__

    def file_bytes(event, path):
        # the file's bytes, read with functions bound at install time (its open is checked too)
        try:
            fd = _open(path, _O_RDONLY | _O_CLOEXEC)
        except _OSError:
            deny(event, "loading bytecode whose file cannot be read")
        chunks = []
        try:
            while True:
                chunk = _read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            _close(fd)
        return b"".join(chunks)

    def on_marshal(event, args):
        # `_compile_bytecode` is callable by the program too, with a standard-library path and
        # bytes of its own (crafted bytecode reads any memory): the bytes must be the file's
        frame = _getframe(2)  # 0: on_marshal, 1: hook, 2: the caller of marshal.loads
        if frame.f_code is _compile_bytecode and args and _type(args[0]) is _bytes:
            path = frame.f_locals.get("bytecode_path")
            if (
                _type(path) is _str
                and under(resolve(event, path), stdlib)
                and file_bytes(event, path)[16:] == args[0]  # (16: the .pyc header)
            ):
                return
        deny(event, "loading bytecode from outside the standard library")

    return on_marshal


def _frame_rule(deny):
    """The handler of ``object.__getattr__``: no ``tb_frame`` of the guard's own frames.

    A program that catches a denial finds the guard's frames in its traceback; their locals (the
    handlers, their cells, the handler table) would let it switch the guard off. Every frame of
    this module's code carries its file name (``<repro.sandbox.boot>`` in the child).
    """
    import _thread

    _getframe, _get_ident = sys._getframe, _thread.get_ident
    boot_file = _getframe(0).f_code.co_filename
    busy = set()  # threads reading a tb_frame here (that read raises this event again)

    def on_getattr(event, args):
        if args[1] != "tb_frame":
            return
        me = _get_ident()
        if me in busy:
            return
        busy.add(me)
        try:
            code = args[0].tb_frame.f_code
        finally:
            busy.discard(me)
        # (the loader's module frame and run() hold nothing, and the program reaches them by
        # f_back anyway: a traceback printed by a program's own sys.excepthook still works)
        if code.co_filename == boot_file and code.co_name not in ("<module>", "run"):
            deny(event, "the sandbox guard's own frames")

    return on_getattr


def _other_handlers(posix, deny):
    """The handlers of process, signal and import events and of the events always denied."""
    _type, _issubclass, _int, _str, _join = type, issubclass, int, str, str.join
    _getpid = posix.getpid
    blocked = frozenset(_BLOCKED_MODULES)

    def on_kill(event, args):
        pid = args[0]
        if not (_type(pid) is _int and pid > 0 and pid == _getpid()):
            deny(event, f"signals to other processes (pid {pid!r})")

    def on_import(event, args):
        name = _join("", (args[0],)) if _issubclass(_type(args[0]), _str) else ""
        top = name.partition(".")[0]
        if top in blocked or top.startswith("_test"):
            deny(event, f"importing {name}")

    def always(event, args):
        deny(event, "not allowed inside the sandbox")

    return {"os.kill": on_kill, "import": on_import, **dict.fromkeys(_ALWAYS_DENIED, always)}


def _hook(handlers, deny):
    """The audit hook: the handler of the event, else a denial of every socket/ctypes event."""
    _get = handlers.get
    _prefixes = ("socket.", "ctypes.")

    def hook(event, args):
        handler = _get(event)
        if handler is not None:
            handler(event, args)
        elif event.startswith(_prefixes):
            deny(event, "not allowed inside the sandbox")

    return hook


def _install_guard(work):
    """The audit-hook guard (layer d of :mod:`repro.sandbox`), installed before the program."""
    import posix

    _remove_escape_hatches(posix)
    deny = _denier()
    as_text, resolve, is_dir, under = _resolver(posix, deny)
    check, roots = _path_rules(work, deny, as_text, resolve, is_dir, under)
    handlers = _file_handlers(posix, deny, check, as_text, is_dir, roots)
    handlers.update(_other_handlers(posix, deny))
    on_marshal = _bytecode_rule(posix, deny, resolve, under, roots[1])
    handlers.update({"marshal.loads": on_marshal, "marshal.load": on_marshal})
    handlers["object.__getattr__"] = _frame_rule(deny)
    sys.addaudithook(_hook(handlers, deny))


def run(namespace):
    """Run the program; on normal completion write the token and ``_exit(0)``.

    ``namespace`` is the loader's globals (the dict this function's caller runs in). The last
    step is a chain of C calls with no Python frame of the harness on the program's stack:
    ``namespace.clear()`` empties the only Python-visible place that held the harness, then
    ``exec(code)`` runs the program, then ``finish()`` writes the token. ``finish`` is referenced
    only by the chain's iterator (C state, no frame locals), so a program that walks its frames
    finds empty globals; reaching it otherwise needs ``gc`` walks, ``/proc/self/mem`` or native
    code, which the guard denies. Any way out of ``exec`` but a normal return (an exception,
    ``SystemExit``, ``os._exit`` from any thread, a signal) skips ``finish``: no token.
    """
    # the C modules behind collections.deque and operator.call: `collections` and `operator`
    # themselves cost ~5 ms of imports under -S, on every run (the same objects)
    from _collections import deque
    from itertools import starmap

    try:
        from _operator import call
    except ImportError:  # Python < 3.11: a frame that holds only exec and its arguments

        def call(func, *args):
            return func(*args)

    code, program_ns, finish = _setup(sys.argv)
    # the chain leaves this frame's locals before it runs: `chain` is empty while the program runs
    chain = [iter(((namespace.clear,), (exec, code, program_ns), (finish,)))]
    del code, program_ns, finish
    deque(starmap(call, chain.pop()), 0)


if __name__ == "__main__":  # the child: exec'ed by the loader in its __main__ namespace
    run(globals())
