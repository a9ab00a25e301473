"""repro.sandbox: hostile programs end within their limits and harm nothing; benign ones run.

Every hostile program runs twice: with the namespaces this machine offers and with none (the
degraded mode of a machine without ``unshare``), where the other layers must still hold. Each
test checks afterwards that the sentinel file outside the sandbox is intact, that every sandbox
directory is gone and that no process started by the test is left (psutil: any process whose
command line names this test's temporary directory, which every sandboxed process does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from types import SimpleNamespace

import psutil
import pytest

from repro import sandbox
from repro.sandbox import assemble_program, cgroups, kernel, run_many, run_program
from repro.sandbox import limits as run_limits
from repro.sandbox import run as runner

SECRET_VAR = "REPRO_SANDBOX_TEST_SECRET"
SECRET = "s3cr3t-8d1f0c2e-do-not-leak"
ORIGINAL = "precious data"


TAG_VAR = "REPRO_SANDBOX_TEST_TAG"


def _processes_naming(*tags: str) -> list[psutil.Process]:
    """Processes whose command line names one of ``tags`` or whose environment has it in TAG_VAR."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        if proc.pid == os.getpid():
            continue
        cmdline = proc.info["cmdline"] or ()
        env = proc.info["environ"] or {}
        if env.get(TAG_VAR) in tags or any(t in arg for t in tags for arg in cmdline):
            found.append(proc)
    return found


def require_bwrap() -> None:
    """Skip without bubblewrap, except in CI (``CI=true``), where its absence is a failure."""
    if kernel._is_bwrap(kernel._namespace_prefix()):
        return
    why = f"bubblewrap is not the active sandbox layer here ({kernel.namespace_layers()})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; CI must install it (.ci/run does: apt-get install bubblewrap)")
    pytest.skip(why)


@pytest.fixture
def tagged(tmp_path, monkeypatch):
    """Every sandboxed process carries this test's tag in its environment (see _processes_naming)."""
    tag = f"tag-{os.getpid()}-{tmp_path.name}"
    child_env = runner._child_env
    monkeypatch.setattr(runner, "_child_env", lambda *a: {**child_env(*a), TAG_VAR: tag})
    return tag


def _left(*tags: str) -> list[psutil.Process]:
    # A SIGKILLed sandbox can take a moment to be torn down on a loaded machine; what matters is
    # that nothing survives.
    _, alive = psutil.wait_procs(_processes_naming(*tags), timeout=10)
    return alive


@pytest.fixture(params=["ns", "no_ns"])
def box(request, tmp_path, monkeypatch, tagged):
    """Sandbox directories under this test's tmp_path, a sentinel beside them, a secret in env.

    ``ns``: the strongest kernel-side layer of this machine (bubblewrap; required in CI);
    ``no_ns``: none at all (the degraded mode of a machine without bwrap or unshare).
    """
    if request.param == "no_ns":
        monkeypatch.setattr(kernel, "_namespace_prefix", lambda: ())
    else:
        require_bwrap()
    root = tmp_path / "boxes"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv(SECRET_VAR, SECRET)
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text(ORIGINAL)
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield SimpleNamespace(root=root, sentinel=sentinel, tmp=tmp_path, mode=request.param)
    assert sentinel.read_text() == ORIGINAL
    assert sorted(tmp_path.iterdir()) == sorted([root, sentinel]), "something wrote outside"
    assert list(root.iterdir()) == [], "a sandbox directory was not removed"
    assert _left(tagged, str(tmp_path)) == [], "a sandboxed process is still alive"
    children_after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert children_after <= children_before


def _src(template: str, box: SimpleNamespace, **extra: object) -> str:
    return textwrap.dedent(template).format(
        sentinel=str(box.sentinel), tmp=str(box.tmp), pid=os.getpid(), secret_var=SECRET_VAR,
        **extra,
    )  # fmt: skip


# --- hostile programs ---------------------------------------------------------------------------

# name -> (source template, statuses accepted, run_program limits)
HOSTILE = {
    "infinite_loop": ("while True:\n    pass\n", {"timeout"}, {"timeout_s": 1.0}),
    "sleep_forever": ("import time\ntime.sleep(3600)\n", {"timeout"}, {"timeout_s": 1.0}),
    "unbounded_allocation": (
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n",
        {"memory", "killed"}, {"memory_mb": 128, "timeout_s": 10.0},
    ),
    # Linear, bounded and self-ending, so that even a broken guard cannot hurt this machine.
    "fork_bomb": (
        "import os, time\nfor _ in range(200):\n    if os.fork() == 0:\n        time.sleep(20)\n"
        "        os._exit(0)\n",
        {"denied"}, {},
    ),
    "subprocess": (
        "import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned > {sentinel}'])\n",
        {"denied"}, {},
    ),
    "os_system": ("import os\nos.system('rm -f {sentinel}')\n", {"denied"}, {}),
    "os_exec": ("import os\nos.execv('/bin/sh', ['sh', '-c', 'rm -f {sentinel}'])\n", {"denied"}, {}),
    "posix_spawn": ("import os\nos.posix_spawn('/bin/rm', ['rm', '{sentinel}'], {{}})\n", {"denied"}, {}),
    "multiprocessing": (
        "import multiprocessing as mp\np = mp.Process(target=print)\np.start()\np.join()\n",
        {"denied"}, {},
    ),
    "write_outside": ("open('{sentinel}', 'w').write('pwned')\n", {"denied"}, {}),
    "append_outside_relative": (
        "import os\nopen(os.path.join('..', '..', 'sentinel.txt'), 'a').write('pwned')\n",
        {"denied"}, {},
    ),
    "create_outside": ("open('{tmp}/new_file.txt', 'x').write('pwned')\n", {"denied"}, {}),
    "os_open_outside": (
        "import os\nfd = os.open('{sentinel}', os.O_WRONLY | os.O_TRUNC)\nos.write(fd, b'pwned')\n",
        {"denied"}, {},
    ),
    "write_via_symlink": ("import os\nos.symlink('{sentinel}', 'link')\nopen('link', 'w').write('x')\n", {"denied"}, {}),
    "relative_symlink": ("import os\nos.symlink('../../sentinel.txt', 'link')\n", {"denied"}, {}),
    "hardlink": ("import os\nos.link('{sentinel}', 'hard')\nopen('hard', 'w').write('x')\n", {"denied"}, {}),
    "delete_outside": ("import os\nos.remove('{sentinel}')\n", {"denied"}, {}),
    "rename_outside": ("import os\nos.rename('{sentinel}', 'stolen.txt')\n", {"denied"}, {}),
    "rmtree_outside": ("import shutil\nshutil.rmtree('{tmp}')\n", {"denied"}, {}),
    "chmod_outside": ("import os\nos.chmod('{sentinel}', 0)\n", {"denied"}, {}),
    "truncate_outside": ("import os\nos.truncate('{sentinel}', 0)\n", {"denied"}, {}),
    "chdir_outside_then_write": (
        "import os\nos.chdir('{tmp}')\nopen('sentinel.txt', 'w').write('x')\n", {"denied"}, {},
    ),
    "dir_fd_escape": (
        "import os\nfd = os.open('{tmp}', os.O_RDONLY)\nos.unlink('sentinel.txt', dir_fd=fd)\n",
        {"denied"}, {},
    ),
    "read_outside": ("print(open('{sentinel}').read())\n", {"denied"}, {}),
    "read_etc": ("print(open('/etc/passwd').read())\n", {"denied"}, {}),
    "list_outside": ("import os\nprint(os.listdir('{tmp}'))\n", {"denied"}, {}),
    "env_secret": (
        "import os\nassert os.environ.get('{secret_var}') is not None, sorted(os.environ)\n",
        {"error"}, {},
    ),
    "proc_environ_of_parent": (
        "import os\nprint(open('/proc/{pid}/environ', 'rb').read())\n", {"denied", "error"}, {},
    ),
    "proc_scan_for_secret": (
        """\
        import os
        found = []
        for name in os.listdir('/proc'):
            if name.isdigit():
                found.append(open('/proc/' + name + '/environ', 'rb').read())
        assert any(b'{secret_var}' in data for data in found)
        """,
        {"denied", "error"}, {},
    ),
    "socket_connect": (
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n", {"denied"}, {},
    ),
    "socket_create_connection": (
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n", {"denied"}, {},
    ),
    "socket_bind": (
        "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n", {"denied"}, {},
    ),
    "http_request": (
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)\n",
        {"denied"}, {},
    ),
    "kill_parent": ("import os, signal\nos.kill({pid}, signal.SIGKILL)\n", {"denied"}, {}),
    "kill_getppid": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", {"denied"}, {}),
    # signal 0 only probes: a broken guard must not let this test kill every process (as root)
    "kill_everything": ("import os\nos.kill(-1, 0)\n", {"denied"}, {}),
    "killpg": ("import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)\n", {"denied"}, {}),
    "setsid_escape": ("import os\nos.setsid()\n", {"error"}, {}),
    "ctypes": ("import ctypes\nctypes.CDLL(None).kill({pid}, 9)\n", {"denied"}, {}),
    "gc_walk_to_the_guard": ("import gc\nprint(len(gc.get_objects()))\n", {"denied"}, {}),
    "craft_bytecode": ("c = compile('1', 'x', 'eval')\nc.replace(co_code=b'd\\x07S\\x00')\n", {"denied"}, {}),
    # the import system's loader called directly: a standard-library path, bytes of its own
    "bytecode_under_a_stdlib_path": (
        """\
        import marshal, re
        from importlib._bootstrap_external import _compile_bytecode
        code = _compile_bytecode(marshal.dumps(compile('1', 'x', 'eval')), 're', re.__file__)
        """,
        {"denied"}, {},
    ),
    "raise_rlimits": (
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n", {"denied"}, {},
    ),
    "tamper_then_write": (
        """\
        import builtins, os, posix, posixpath
        os.path.realpath = posixpath.realpath = lambda p, **k: os.getcwd() + '/ok'
        os.lstat = posix.lstat = lambda *a, **k: os.stat('.')
        builtins.isinstance = lambda *a: True
        builtins.str = bytes
        open('{sentinel}', 'w').write('pwned')
        """,
        {"denied"}, {},
    ),
    "cpu_limit": ("while True:\n    pass\n", {"killed"}, {"cpu_s": 1, "timeout_s": 20.0}),
    "huge_output": ("while True:\n    print('y' * 10000)\n", {"error"}, {"timeout_s": 20.0}),
    "big_file_in_sandbox": (
        "open('big.bin', 'wb').write(b'x' * (2 << 20))\n", {"error"}, {"fsize_mb": 1},
    ),
}  # fmt: skip


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that must never see a connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name, box, listener):
    template, statuses, limits = HOSTILE[name]
    source = _src(template, box, port=listener.getsockname()[1])
    limit = limits.get("timeout_s", 5.0)
    start = time.monotonic()
    res = run_program(source, **limits)
    elapsed = time.monotonic() - start
    assert res.status in statuses, (res.status, res.stderr[-600:])
    assert not res.passed
    assert elapsed < limit + 3.0
    assert SECRET not in res.stdout + res.stderr
    if res.status == "denied":
        assert "repro-sandbox:" in res.stderr


def test_huge_output_is_truncated(box):
    res = run_program("print('x' * 1_000_000)\nprint('tail-marker')\n", output_limit=1000)
    assert res.status == "ok"
    assert len(res.stdout) < 1100 and "bytes omitted" in res.stdout
    assert res.stdout.startswith("x" * 400) and res.stdout.rstrip().endswith("tail-marker")


def test_secret_environment_is_not_inherited(box):
    res = run_program("import os\nfor k, v in sorted(os.environ.items()):\n    print(k, v)\n")
    assert res.status == "ok"
    names = {line.split(" ", 1)[0] for line in res.stdout.splitlines()}
    assert SECRET_VAR not in names and SECRET not in res.stdout
    assert names <= {
        "PATH", "LANG", "LC_ALL", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8",
        "PYTHONIOENCODING", "HOME", "TMPDIR", "PWD", runner._MARKER_VAR, TAG_VAR,
    }  # fmt: skip


def test_timeout_kills_promptly_and_reports_it(box):
    res = run_program("import time\nprint('started', flush=True)\ntime.sleep(60)\n", timeout_s=1.0)
    assert res.status == "timeout" and res.returncode is None
    assert 1.0 <= res.wall_s < 3.0
    assert res.stdout == "started\n"


# --- the verdict: "ok" only when the harness reached the end of the program -------------------

# Ways of ending the interpreter with status 0 before the asserts, or after a failing one. Each
# comes before `def f(): return 1` and a failing `assert f() == 2` (so an exit-status verdict
# would turn a failure into a pass); "before_passing_asserts" shows that asserts which never ran
# do not count either (stricter than an exit status, as the harness writes the token only after
# the program's last statement).
EXIT_TRICKS = {
    "sys_exit_0": "import sys\nsys.exit(0)\n",
    "sys_exit_main": (
        "import sys\ndef main():\n    return 0\nif __name__ == '__main__':\n    sys.exit(main())\n"
    ),
    "raise_systemexit": "raise SystemExit\n",
    "os_exit_0": "import os\nos._exit(0)\n",
    "atexit_handler": "import atexit, os\natexit.register(os._exit, 0)\n",
    "excepthook": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "thread_exit_0": (
        "import os, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), os._exit(0))).start()\n"
    ),
    "del_at_shutdown": (
        "import os\nclass Bye:\n    def __del__(self, _exit=os._exit):\n        _exit(0)\n"
        "keep = Bye()\n"
    ),
    "fake_token_on_every_fd": (
        "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'1' + b'0' * 32)\n"
        "    except OSError:\n        pass\nos._exit(0)\n"
    ),
    # whatever the frames below the program hold, calling it does not produce the token
    "call_what_the_frames_hold": (
        "import sys\nframe = sys._getframe().f_back\nwhile frame is not None:\n"
        "    for ns in (frame.f_locals, frame.f_globals):\n"
        "        for value in list(ns.values()):\n"
        "            try:\n                value()\n            except Exception:\n                pass\n"
        "    frame = frame.f_back\nsys.exit(0)\n"
    ),
}
FAILING_TESTS = "def f():\n    return 1\nassert f() == 2\n"
PASSING_TESTS = "def f():\n    return 1\nassert f() == 1\n"


@pytest.mark.parametrize("guard", [1, 0], ids=["guard", "no_guard"])
@pytest.mark.parametrize("name", sorted(EXIT_TRICKS))
def test_exit_tricks_are_failures(name, guard, box, monkeypatch):
    monkeypatch.setattr(runner, "_GUARD", guard)
    res = run_program(EXIT_TRICKS[name] + FAILING_TESTS)
    assert (res.status, res.returncode) == ("exited", 0), (res.status, res.stderr[-600:])
    assert not res.passed


def test_code_cannot_swallow_the_first_assert():
    """A trailing backslash continues the code's last line into the next one: `if 0: \\` would
    make the first assert part of a never-taken branch if the tests followed the code directly."""
    code = "def f():\n    return 1\nif 0: \\"
    swallowed = run_program(code + "\nassert f() == 2\n")
    assert swallowed.status == "ok", "the attack works on plain concatenation"
    res = run_program(assemble_program(code, ["assert f() == 2"]))
    assert res.status == "error" and "AssertionError" in res.stderr, res.stderr[-300:]


def test_asserts_that_never_ran_do_not_pass(box):
    res = run_program("import sys\nsys.exit(0)\n" + PASSING_TESTS)
    assert res.status == "exited" and not res.passed
    res = run_program(PASSING_TESTS + "import sys\nsys.exit(0)\n")
    assert res.status == "exited", "the program itself must end normally too"
    assert run_program(PASSING_TESTS).passed


# Forging the verdict through what only the guard denies (with it off these would work: the
# verdict rests on the guard against deliberate forgery, see the module docstring).
FORGERIES = {
    "gc_find_finish": (
        "import gc\nfor o in gc.get_objects():\n    if getattr(o, '__name__', '') == 'finish':\n"
        "        o()\n"
    ),
    # a trace function may set frame.f_lineno: jump over the asserts
    "settrace": "import sys\nsys.settrace(lambda *a: None)\n",
    "read_own_memory": "open('/proc/self/mem', 'rb')\n",
    "fd_of_the_token_pipe": "import os\nprint(os.listdir('/proc/self/fd'))\n",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_verdict_forgeries_are_denied(name, box):
    res = run_program(FORGERIES[name] + FAILING_TESTS)
    assert res.status == "denied", (res.status, res.stderr[-600:])


# --- the kernel-side layer alone (bubblewrap, audit-hook guard switched off) -------------------

# Each probe attempts one attack class and asserts that the kernel stopped it; "contained" at the
# end means every attempt failed (the box fixture checks the host side afterwards).
KERNEL_PROBES = {
    "write_outside": """\
        import os
        for path in ['{sentinel}', '{tmp}/new.txt', '{tmp}/boxes/new.txt', '/usr/{probe}',
                     '/{probe}', '/dev/shm/{probe}', '/dev/{probe}', '/proc/{probe}']:
            try:
                open(path, 'w').write('pwned')
            except OSError:
                continue
            raise SystemExit('wrote ' + path)
        for op in (os.remove, lambda p: os.rename(p, 'x'), lambda p: os.chmod(p, 0),
                   lambda p: os.truncate(p, 0)):
            try:
                op('{sentinel}')
            except OSError:
                continue
            raise SystemExit('changed the sentinel')
        print('contained')
        """,
    "read_secrets": """\
        import os
        assert not os.path.exists('{sentinel}') and not os.path.exists('{tmp}')
        assert '{secret_var}' not in os.environ
        assert not any(os.path.exists(p) for p in {home_entries!r}), 'host home visible'
        assert not os.path.exists('/etc/passwd')
        assert not os.path.exists('/sys/class') and not os.path.exists('/run')
        pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
        assert pids[-1] < 10, pids  # a pid namespace of its own
        for pid in pids:
            for what in ('environ', 'cmdline'):
                try:
                    data = open('/proc/%d/%s' % (pid, what), 'rb').read()
                except OSError:
                    continue
                assert b'{secret}' not in data and b'{tmp}' not in data, (pid, what)
        print('contained')
        """,
    "sockets": """\
        import socket
        tries = [(socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_UNIX, '{unix_path}'),
                 (socket.AF_UNIX, '\\0{abstract}')]
        for family, address in tries:
            s = socket.socket(family)
            s.settimeout(2)
            try:
                s.connect(address)
            except OSError:
                continue
            raise SystemExit('connected to %r' % (address,))
        try:
            socket.create_connection(('10.0.0.1', 80), timeout=2)
            raise SystemExit('network')
        except OSError:
            pass
        print('contained')
        """,
    "privileges": """\
        import os, socket
        assert (os.getuid(), os.geteuid(), os.getgid()) == (65534, 65534, 65534)
        status = open('/proc/self/status').read()
        fields = dict(line.split(':\\t') for line in status.splitlines() if ':\\t' in line)
        assert {{fields[k] for k in ('CapPrm', 'CapEff', 'CapAmb')}} == {{'0' * 16}}, status
        assert fields['NoNewPrivs'] == '1', status  # no setuid binary or file capability works
        for op in (lambda: os.setuid(0), lambda: os.chroot('/'), lambda: socket.sethostname('x'),
                   lambda: os.setgroups([0])):
            try:
                op()
            except OSError:
                continue
            raise SystemExit('privileged operation worked')
        print('contained')
        """,
    "memory_outside_rlimit_as": """\
        import os
        total = 0
        try:
            while True:  # memfd files: at most RLIMIT_NOFILE of RLIMIT_FSIZE bytes each
                fd = os.memfd_create('m')
                try:
                    while True:
                        total += os.write(fd, b'x' * (1 << 20))
                except OSError:
                    pass
        except OSError:
            pass
        assert total <= {nofile} * (1 << 20), total
        files = 0
        try:
            while True:  # the writable directory: a size-limited tmpfs
                with open('f%d' % files, 'wb') as fh:
                    fh.write(b'x' * (1 << 19))
                files += 1
        except OSError:
            pass
        assert files * (1 << 19) <= {tmpfs_files} * (1 << 20), files
        print('contained', total >> 20, files)
        """,
    "daemon_outlives_the_run": """\
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        time.sleep(0.2)
        print('contained')
        """,
    "fork_bomb": """\
        import os, time
        n = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                n += 1
        except OSError:
            pass
        assert n < 200, n
        print('contained')
        """,
    "signal_the_host": """\
        import os, signal
        for pid in ({pid}, os.getppid()):  # the caller (not in this pid namespace), bwrap's init
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            raise SystemExit('signalled %d' % pid)
        print('contained')
        """,
}


def _home_entries() -> list[str]:
    """What the caller's home holds, but the way to the interpreter (bound read-only if there)."""
    home = os.path.expanduser("~")
    python = os.path.realpath(sys.base_prefix)
    with os.scandir(home) as entries:
        paths = [e.path for e in entries if not (python + "/").startswith(e.path + "/")]
    return sorted(paths)[:50]


@pytest.mark.parametrize("box", ["ns"], indirect=True)
@pytest.mark.parametrize("name", sorted(KERNEL_PROBES))
def test_kernel_layer_contains_without_the_guard(name, box, listener, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "_GUARD", 0)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "host.sock"))
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"repro-sandbox-test-{os.getpid()}-{tmp_path.name}"
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    for s in (unix, abstract):
        s.setblocking(False)
    probe = f"repro-sandbox-probe-{tmp_path.name}"
    source = _src(
        KERNEL_PROBES[name], box, port=listener.getsockname()[1], probe=probe,
        unix_path=str(tmp_path / "host.sock"), abstract=abstract_name, secret=SECRET,
        nofile=run_limits._NOFILE, tmpfs_files=run_limits._TMPFS_FILES, home_entries=_home_entries(),
    )  # fmt: skip
    try:
        res = run_program(source, fsize_mb=1, memory_mb=256, timeout_s=20.0)
        assert (res.status, res.stdout.split()[:1]) == ("ok", ["contained"]), res.stderr[-800:]
        for s in (unix, abstract):
            with pytest.raises(BlockingIOError):
                s.accept()
    finally:
        unix.close()
        abstract.close()
        (tmp_path / "host.sock").unlink()
        for path in (f"/usr/{probe}", f"/{probe}"):
            assert not os.path.exists(path)
    assert os.getpid() == psutil.Process().pid  # the caller is alive


NETNS = "import os, time\ntime.sleep({sleep})\nprint(os.readlink('/proc/self/ns/net'))\n"


def _root_bwrap_or_skip() -> None:
    require_bwrap()
    if not kernel._maps_ids(kernel._namespace_prefix()):
        pytest.skip("not root: bubblewrap makes each run's network namespace itself")


def test_runs_join_their_threads_network_namespace_never_the_hosts(monkeypatch):
    """As root, a run joins the network namespace of the thread that starts it (made once per
    thread, kernel._thread_netns): never the host's or the caller's thread's, never one that a
    concurrent run is in, and the caller's own thread keeps its namespace."""
    _root_bwrap_or_skip()
    monkeypatch.setattr(runner, "_GUARD", 0)  # (the guard denies /proc)
    caller = os.readlink("/proc/thread-self/ns/net")
    host = os.readlink(f"/proc/{os.getpid()}/ns/net")
    res = run_many([NETNS.format(sleep=0.3)] * 4, workers=2)  # (the first two run together)
    seen = [r.stdout.strip() for r in res]
    assert [r.status for r in res] == ["ok"] * 4 and all(s.startswith("net:[") for s in seen)
    assert seen[0] != seen[1] and len(set(seen)) == 2, seen  # two threads, one each, reused
    single = run_program(NETNS.format(sleep=0))
    assert {single.stdout.strip(), *seen}.isdisjoint({caller, host})
    assert os.readlink("/proc/thread-self/ns/net") == caller


def test_a_thread_that_could_not_reap_a_run_takes_a_fresh_network_namespace(monkeypatch):
    """If a run's pid 1 was not reaped (processes of that run may be alive), the next run of
    that thread must not share the namespace with them."""
    _root_bwrap_or_skip()
    monkeypatch.setattr(runner, "_GUARD", 0)
    reap = kernel._reap_pid1
    monkeypatch.setattr(kernel, "_reap_pid1", lambda *a, **k: reap(*a, **k) and False)
    res = run_many([NETNS.format(sleep=0)] * 2, workers=1)
    assert [r.status for r in res] == ["ok"] * 2
    assert res[0].stdout != res[1].stdout


MEMFD_CHILDREN = """\
import os
r, w = os.pipe()
for _ in range({children}):
    if os.fork() == 0:
        os.close(r)
        while True:
            try:
                fd = os.memfd_create('m')
            except OSError:  # RLIMIT_NOFILE
                break
            try:
                while True:  # up to RLIMIT_FSIZE
                    os.write(fd, b'x' * (1 << 20))
                    os.write(w, b'.')  # one byte per MiB that the kernel accepted
            except OSError:
                pass
        os._exit(0)
os.close(w)
total = 0
while chunk := os.read(r, 4096):
    total += len(chunk)
print('MiB', total)
"""


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup", "rlimits_only"])
@pytest.mark.parametrize("box", ["ns"], indirect=True)
def test_memory_of_the_whole_run_is_bounded(cgroup, box, monkeypatch):
    """Memory RLIMIT_AS does not see (memfd files), in several processes, guard off: with the
    per-run cgroup the run's total stays under its limit; without one (cgroups not writable: an
    optional layer, skipped where absent, while ``rlimits_only`` always runs) the rlimits still
    bound it, per process, at RLIMIT_NOFILE files of RLIMIT_FSIZE."""
    if cgroup and not (kernel._maps_ids(kernel._namespace_prefix()) and cgroups._cgroups_work()):
        pytest.skip("no writable memory/pids cgroup here (an optional layer)")
    if not cgroup:
        monkeypatch.setattr(cgroups, "_cgroups_work", lambda: False)
        # a fresh launcher thread: a reused one stays in the cgroup of its earlier runs
        monkeypatch.setattr(runner, "_LAUNCHERS", {})
    monkeypatch.setattr(runner, "_GUARD", 0)
    children, limits = 4, {"memory_mb": 64, "fsize_mb": 2, "timeout_s": 30.0}
    source = MEMFD_CHILDREN.format(children=children)
    res = run_program(source, **limits)
    layer = sandbox.cgroup_layer(**limits)
    if layer != "no cgroup":  # also from a worker thread (its own cgroup, see _cgroup_for)
        res_thread, ok = run_many([source, "print('next run')"], workers=1, **limits)
        assert res_thread.status == "killed", (res_thread.status, res_thread.stderr[-500:])
        assert ok.stdout == "next run\n"  # the same cgroup serves the next run
    if layer == "no cgroup":
        assert res.status == "ok", (res.status, res.stderr[-500:])
        total = int(res.stdout.split()[1])
        assert limits["fsize_mb"] <= total <= children * run_limits._NOFILE * limits["fsize_mb"]
    else:  # the kernel's OOM killer ends the run (here, 4 x ~116 MiB against 140 MiB)
        assert res.status == "killed", (res.status, res.stdout, res.stderr[-500:])


# --- the unshare fallback alone (no bwrap, no guard, no rlimits) ---------------------------------


def _unshare_or_skip() -> tuple[str, ...]:
    unshare = shutil.which("unshare")
    flags = kernel._NAMESPACE_CANDIDATES[0][1]
    if unshare is None or kernel._probe([unshare, *flags]) is not None:
        pytest.skip("unshare cannot create user+net+pid namespaces here")
    return (unshare, *flags)


def test_network_namespace_has_no_network(listener):
    prefix = _unshare_or_skip()
    port = listener.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    res = subprocess.run(
        [*prefix, sys.executable, "-S", "-c", code], capture_output=True, text=True
    )
    assert res.returncode != 0
    assert "OSError" in res.stderr or "unreachable" in res.stderr, res.stderr


def test_pid_namespace_kills_everything_the_program_started(tmp_path):
    prefix = _unshare_or_skip()
    tag = f"repro-sandbox-fork-test-{os.getpid()}-{tmp_path.name}"
    code = textwrap.dedent(
        f"""\
        import os, time
        for _ in range(20):
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
        print(os.getpid(), os.getppid())
        try:
            os.kill({os.getpid()}, 0)
            print("host-visible")
        except ProcessLookupError:
            print("host-invisible")
        """
    )
    res = subprocess.run(
        [*prefix, sys.executable, "-S", "-c", code, tag], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "0", "host-invisible"]
    deadline = time.monotonic() + 5
    while _processes_naming(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_naming(tag) == []


# --- benign programs ----------------------------------------------------------------------------


BENIGN = """\
import collections, functools, heapq, itertools, json, math, re, threading
from collections import namedtuple
from pathlib import Path
import tempfile

Point = namedtuple("Point", "x y")
Path("data.txt").write_text("hello")
with open("data.txt") as fh:
    assert fh.read() == "hello"
with tempfile.NamedTemporaryFile() as tmp:
    tmp.write(b"x")
out = []
t = threading.Thread(target=out.append, args=(math.factorial(20),))
t.start()
t.join()
print(Point(1, 2), out[0], re.sub("a+", "b", "caaat"), json.dumps({"k": [1, 2]}))
"""


def test_benign_program_runs_and_its_directory_is_removed(box):
    res = run_program(BENIGN)
    assert res.status == "ok", res.stderr
    assert res.returncode == 0
    assert res.stdout == 'Point(x=1, y=2) 2432902008176640000 cbt {"k": [1, 2]}\n'


@pytest.mark.parametrize(
    "source, status, rc",
    [
        ("raise ValueError('boom')\n", "error", 1),
        ("def f(:\n", "error", 1),
        ("import sys\nsys.exit(3)\n", "error", 3),
        ("import sys\nsys.exit(0)\n", "exited", 0),
        ("assert 1 + 1 == 3\n", "error", 1),
        ("import numpy\n", "error", 1),  # -S: the standard library only
    ],
)
def test_exit_status_is_classified(source, status, rc, box):
    res = run_program(source)
    assert (res.status, res.returncode) == (status, rc), res.stderr


def test_hash_seed_is_fixed():
    src = "print(hash('abc'), list({'x', 'y', 'z', 'w'}))\n"
    assert run_program(src).stdout == run_program(src).stdout


def test_run_many_keeps_order_and_runs_in_parallel(box):
    sources = [f"import time\ntime.sleep(0.3)\nprint({i})\n" for i in range(4)]
    start = time.monotonic()
    results = run_many(sources, workers=2, timeout_s=5.0)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert time.monotonic() - start < 4 * 0.3 + 0.5  # two at a time, not one
    assert run_many([], workers=2) == []


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"timeout_s": 0}, "timeout_s must be a positive number"),
        ({"memory_mb": -1}, "memory_mb must be a positive integer"),
        ({"cpu_s": 1.5}, "cpu_s must be a positive integer"),
        ({"output_limit": 0}, "output_limit must be a positive integer"),
    ],
)
def test_bad_limits_are_rejected(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        run_program("pass", **kwargs)
    with pytest.raises(ValueError, match=pattern):
        run_many(["pass"], **kwargs)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_many(["pass"], workers=0)


def test_describe_names_layers_and_limits():
    text = sandbox.describe(timeout_s=3.0, memory_mb=256)
    assert "as=256MB" in text and "wall timeout 3s" in text and "audit-hook guard" in text
    assert kernel.namespace_layers() in text


def test_degraded_mode_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(kernel.shutil, "which", lambda *_a, **_k: None)
    kernel._namespaces.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="repro.sandbox"):
            assert kernel._namespace_prefix() == ()
            assert kernel._namespace_prefix() == ()
        assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]
        assert "bubblewrap (`bwrap`) is not installed" in caplog.records[0].message
        assert "apt-get install bubblewrap" in caplog.records[0].message
        assert "no `unshare`" in caplog.records[1].message
    finally:
        kernel._namespaces.cache_clear()


# --- assembling MBPP programs -------------------------------------------------------------------


def test_assemble_program_orders_code_setup_tests():
    code = "class Node:\n    pass\ndef f(n):\n    return n"
    setup = "root = Node()"
    tests = ["assert f(1) == 1", "assert isinstance(root, Node)"]
    sep = sandbox.SEPARATOR
    assert (
        assemble_program(code, tests, setup) == f"{code}\n{sep}\n{setup}\n{tests[0]}\n{tests[1]}\n"
    )
    assert assemble_program(code, tests, setup, mode="compile") == code + "\n"
    assert assemble_program(code, tests) == f"{code}\n{sep}\n{tests[0]}\n{tests[1]}\n"
    with pytest.raises(ValueError, match="mode must be"):
        assemble_program(code, tests, mode="run")
    with pytest.raises(TypeError, match="list of assert statements"):
        assemble_program(code, "assert f(1) == 1")


def test_kill_signal_is_reported_as_killed(box):
    res = run_program("import os, signal\nos.abort()\n")
    assert res.status == "killed" and res.returncode is not None and res.returncode < 0
    assert res.returncode in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGKILL)


@pytest.mark.parametrize(
    "prefix, timeout_s, pattern",
    [
        (("/bin/false",), 5.0, r"never reached its bootstrap \(exit status 1"),
        (("/bin/sh", "-c", "sleep 30", "sh"), 0.5, r"never reached its bootstrap \(timed out"),
    ],
)
def test_a_sandbox_that_cannot_start_raises(prefix, timeout_s, pattern, monkeypatch):
    """A broken sandbox must not be mistaken for a failing program (that would score it 0)."""
    monkeypatch.setattr(kernel, "_namespace_prefix", lambda: prefix)
    with pytest.raises(sandbox.SandboxError, match=pattern):
        run_program("print('never runs')\n", timeout_s=timeout_s)


def test_bwrap_without_id_maps_still_confines(monkeypatch, caplog):
    """Root whose id maps cannot be written: bwrap maps the program to host root itself (no
    process-count limit, said in the layer's name and a warning), the other guarantees hold, and
    no run leaves a zombie behind."""
    require_bwrap()
    if os.geteuid() != 0:
        pytest.skip("the id maps are written only when the caller is root")
    run_program("pass")  # (as root first: this process is a subreaper from now on)
    zombies = _bwrap_zombies((os.getpid(),))
    monkeypatch.setattr(kernel._IdMap, "write", _maps_not_written)
    kernel._namespaces.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="repro.sandbox"):
            assert "host root: no process-count limit" in kernel.namespace_layers()
        assert "RLIMIT_NPROC" in caplog.text
        res = run_program("import os\nprint(os.getuid())\nopen('/usr/x', 'w')\n")
        assert "65534" in res.stdout and res.status == "denied"
        # bwrap's pid 1 of each run (and of the probe) is reaped here too: no zombie left
        assert _bwrap_zombies((os.getpid(),)) - zombies == set()
    finally:
        kernel._namespaces.cache_clear()


def test_a_strict_umask_does_not_hide_the_program(box):
    old = os.umask(0o077)
    try:
        assert run_program("print('read')\n").stdout == "read\n"
    finally:
        os.umask(old)


def test_a_forked_caller_can_still_run_programs():
    """The helper thread that runs programs for the main thread is not inherited by a fork."""
    assert run_program("print(1)\n").stdout == "1\n"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.write(w, run_program("print(2)\n", timeout_s=10.0).stdout.encode())
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked caller hung")
    with os.fdopen(r, "rb") as fh:
        assert fh.read() == b"2\n" and done[1] == 0


def test_cgroups_of_dead_callers_are_swept():
    if not (kernel._maps_ids(kernel._namespace_prefix()) and cgroups._cgroups_work()):
        pytest.skip("no writable memory/pids cgroup here (an optional layer)")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer exists
    dirs = [f"{base}/repro-sandbox-{proc.pid}-1-test" for base in cgroups._own_cgroups().values()]
    mine = f"{next(iter(cgroups._own_cgroups().values()))}/repro-sandbox-{os.getpid()}-0-test"
    for path in [*dirs, mine]:
        os.mkdir(path)
    try:
        cgroups._sweep_dead_cgroups()
        assert not any(os.path.exists(p) for p in dirs)
        assert os.path.exists(mine), "a live caller's cgroup was removed"
    finally:
        for path in [*dirs, mine]:
            if os.path.exists(path):
                os.rmdir(path)


def _maps_not_written(self, timeout, cgroup=None) -> bool:
    """``_IdMap.write`` when the maps cannot be written: bwrap has reported its pid (the parent
    holds a pidfd to reap it by), the maps are not written, the caller kills the run."""
    import json

    os.close(self.info_w)
    os.close(self.block_r)
    self.info_w = self.block_r = -1
    data = b""
    while not data.rstrip().endswith(b"}"):
        chunk = os.read(self.info_r, 4096)
        if not chunk:
            return False
        data += chunk
    self.pidfd = os.pidfd_open(int(json.loads(data)["child-pid"]))
    return False


def _bwrap_zombies(parents: tuple[int, ...] = ()) -> set[int]:
    """bwrap processes of ours (or orphaned to the machine's pid 1) that are zombies."""
    parents = parents or (1, os.getpid())
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = dict(
                    line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line
                )
        except OSError:
            continue
        if (
            status.get("Name") == "bwrap"
            and status.get("State", "").startswith("Z")
            and int(status.get("PPid", 0)) in parents
        ):
            found.add(int(pid))
    return found


def test_runs_leave_no_zombie_behind_and_a_kept_cgroup_never_fills_up():
    """bwrap's outer process exits without reaping its pid 1; where the machine's pid 1 does not
    reap either (this CI's container), every run left a zombie charged to the worker thread's
    pids cgroup, which is kept across runs on cgroup v1: after ``nproc + 5`` runs bwrap could not
    fork ("Can't fork for pid 1: Resource temporarily unavailable", the MBPP suite in CI). The
    sandbox now reaps its pid 1: 3 × that many runs in one thread all run, and no zombie is left."""
    before = _bwrap_zombies()
    results = run_many(["assert 1 + 1 == 2"] * 3 * (8 + 5), workers=1, nproc=8)
    assert [r.status for r in results] == ["ok"] * len(results)
    assert _bwrap_zombies() - before == set()


def test_run_program_defaults_are_the_limits_table():
    """``describe``, ``run_many`` and the cgroup read ``limits._DEFAULTS``: it must be
    ``run_program``'s own defaults."""
    import inspect

    params = inspect.signature(run_program).parameters
    assert {n: p.default for n, p in params.items() if n != "source"} == run_limits._DEFAULTS
