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
