"""repro.sandbox.boot: the child's bootstrap is a plain module, and its guard keeps to itself.

The guard (layer d) must not be switched off from inside: nothing of it may be reachable by the
program (no global looked up while the program runs, no frame of it in a traceback, no program
code run inside it through a foreign object's methods), and bytecode is loaded only from the
standard library's files.
"""

from __future__ import annotations

import dis
import marshal
import sys
import types

import pytest

from repro.sandbox import boot, run_program
from repro.sandbox import run as runner

#: The module-level functions that build the guard's closures.
FACTORIES = (
    boot._setup,  # (its `finish` writes the token)
    boot._denier,
    boot._resolver,
    boot._path_rules,
    boot._file_handlers,
    boot._bytecode_rule,
    boot._frame_rule,
    boot._other_handlers,
    boot._hook,
)


def test_bootstrap_is_the_repro_sandbox_boot_module():
    """The child's bootstrap is the linted module: importing it runs nothing, and what the parent
    hands the child is that file compiled."""
    assert sys.modules["__main__"] is not boot
    assert {"run", "_setup", "_install_guard"} <= set(vars(boot))
    code = marshal.loads(runner._bootstrap_code())
    assert code.co_filename == "<repro.sandbox.boot>"
    with open(boot.__file__, encoding="utf-8") as fh:
        assert code == compile(fh.read(), "<repro.sandbox.boot>", "exec", dont_inherit=True)


def _nested_code(code: types.CodeType):
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from _nested_code(const)


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_guard_closures_look_up_no_global_name(factory):
    """Every function the guard keeps uses names bound when it was built: after the bootstrap's
    namespace is cleared, and whatever the program does to builtins, they still mean the same."""
    nested = list(_nested_code(factory.__code__))
    assert nested, "a factory returns closures"
    for code in nested:
        names = [
            ins.argval
            for ins in dis.get_instructions(code)
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL")
        ]
        assert names == [], f"{factory.__name__} -> {code.co_name} looks up {names}"


SWITCH_OFF_THROUGH_THE_TRACEBACK = """\
try:
    open('/etc/passwd')
except PermissionError as exc:
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    print('reached', sorted(frame.f_locals))
"""


def test_the_guards_frames_are_out_of_reach():
    res = run_program(SWITCH_OFF_THROUGH_THE_TRACEBACK)
    assert res.status == "denied", (res.status, res.stderr[-600:])
    assert "reached" not in res.stdout
    assert "object.__getattr__ denied (the sandbox guard's own frames)" in res.stderr


def test_tracebacks_of_the_programs_own_frames_still_work():
    source = (
        "import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n"
        "    text = traceback.format_exc()\nassert 'ZeroDivisionError' in text, text\n"
    )
    assert run_program(source).passed
    hook = (
        "import sys, traceback\n"
        "sys.excepthook = lambda *e: traceback.print_exception(*e) or print('printed')\n"
        "raise ValueError('uncaught')\n"
    )
    res = run_program(hook)
    assert res.status == "error" and "printed" in res.stdout, (res.status, res.stderr[-600:])


# (isinstance(obj, str) asks a foreign object for its __class__: program code, run inside the
# hook, where its frame's f_back is the guard's)
FOREIGN_PATH = """\
from importlib._bootstrap_external import _compile_bytecode

class Path:
    @property
    def __class__(self):
        print('program code ran inside the guard')
        return str

_compile_bytecode(b'', 're', Path())
"""


def test_a_foreign_path_object_runs_no_code_inside_the_guard():
    res = run_program(FOREIGN_PATH)
    assert "program code ran inside the guard" not in res.stdout
    assert res.status == "denied" and "loading bytecode from outside" in res.stderr, res


def test_a_str_subclass_path_is_taken_by_its_text():
    source = (
        "class P(str):\n    def startswith(self, *a):\n        raise SystemExit('called')\n"
        "open(P('x.txt'), 'w').write('ok')\nassert open('x.txt').read() == 'ok'\n"
    )
    res = run_program(source)
    assert res.passed, (res.status, res.stderr[-600:])


def test_guard_rules_in_this_process(tmp_path):
    """The guard's rules called directly (the hook itself is never installed here: it cannot be
    removed again)."""
    import os
    import posix

    work = tmp_path.resolve() / "work"
    (work / "real").mkdir(parents=True)
    os.symlink(work / "real", work / "link")
    os.symlink("/etc", work / "out")
    deny = boot._denier()
    as_text, resolve, is_dir, under = boot._resolver(posix, deny)
    assert resolve("t", f"{work}/link/../link/x") == f"{work}/real/x"
    assert resolve("t", f"{work}/out/passwd") == "/etc/passwd"
    assert as_text("t", str(work).encode()) == str(work) and is_dir(str(work))
    assert under(f"{work}/a", (str(work),)) and not under(f"{work}x", (str(work),))
    with pytest.raises(PermissionError, match="only str or bytes paths"):
        as_text("t", 3.0)
    check, roots = boot._path_rules(str(work), deny, as_text, resolve, is_dir, under)
    assert roots[0] == str(work) and roots[1]  # the standard library
    handlers = boot._file_handlers(posix, deny, check, as_text, is_dir, roots)
    handlers.update(boot._other_handlers(posix, deny))
    hook = boot._hook(handlers, deny)
    hook("open", (f"{work}/link/new.txt", "w", None))
    hook("open", (os.__file__, "r", None))
    hook("import", ("json", None, None, None, None))
    hook("os.kill", (os.getpid(), 0))
    hook("os.getcwd", ())  # (no rule: allowed)
    denied = [
        ("open", (f"{work}/out/passwd", "r", None), "reading outside the sandbox directory"),
        ("open", ("/etc/passwd", None, posix.O_WRONLY), "writing outside"),
        ("open", (str(work), None, posix.O_RDONLY), "opening a directory"),
        ("os.remove", (f"{work}/x", 3), "dir_fd arguments"),
        ("os.rename", (f"{work}/x", "/tmp/x", None, None), "changing outside"),
        ("os.symlink", ("x", f"{work}/y", None), "relative symlink targets"),
        ("os.chdir", (3,), "changing directory by descriptor"),
        ("os.kill", (1, 9), "signals to other processes"),
        ("import", ("ctypes.util", None, None, None, None), "importing ctypes.util"),
        ("socket.connect", (None, None), "not allowed inside the sandbox"),
        ("sys.settrace", (None,), "not allowed inside the sandbox"),
    ]
    for event, args, why in denied:
        with pytest.raises(PermissionError, match=f"repro-sandbox: {event} denied .*{why}"):
            hook(event, args)


def test_frame_rule_hides_only_the_guards_frames():
    deny = boot._denier()
    rule = boot._frame_rule(deny)
    try:
        deny("open", "a test")
    except PermissionError as exc:
        first = last = exc.__traceback__
    while last.tb_next is not None:
        last = last.tb_next
    with pytest.raises(PermissionError, match="the sandbox guard's own frames"):
        rule("object.__getattr__", (last, "tb_frame"))  # deny's frame
    rule("object.__getattr__", (first, "tb_frame"))  # this test's frame
    rule("object.__getattr__", (last, "tb_lineno"))  # (not a frame)
