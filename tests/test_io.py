"""Atomic writes and input parsing of repro.io."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import stat
import subprocess
import sys
import time

import pytest

from repro import io
from repro.io import (
    InputError,
    OutputError,
    atomic_path,
    atomic_write_json,
    id_difference,
    iter_jsonl,
    iter_jsonl_at,
    json_object_arg,
    make_temp_dir,
    read_json,
    read_jsonl,
    run_cli,
    run_stage,
    stage_parser,
    write_jsonl,
)


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}  # the old result survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]  # no temp left behind


def test_jsonl_round_trip_and_line_numbered_errors(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, [{"id": "a", "x": "é"}, {"id": "b"}]) == 2
    assert read_jsonl(path) == [{"id": "a", "x": "é"}, {"id": "b"}]
    path.write_text('{"id": 1}\n\n{"id": 2\n')
    with pytest.raises(InputError, match=rf"{path}:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match=rf"{path}:2: expected a JSON object, got list"):
        list(iter_jsonl(path))
    with pytest.raises(InputError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_json_object_arg(tmp_path):
    assert json_object_arg('{"a": [1]}', "--x") == {"a": [1]}
    spec = tmp_path / "spec.json"
    spec.write_text('{"b": 2}')
    assert json_object_arg(f"@{spec}", "--x") == {"b": 2}
    with pytest.raises(InputError, match="--x: not valid JSON"):
        json_object_arg("{bad", "--x")
    with pytest.raises(InputError, match="--x: expected a JSON object, got list"):
        json_object_arg("[1]", "--x")
    with pytest.raises(InputError, match=r"given to --x\): file not found"):
        json_object_arg(f"@{tmp_path / 'nope.json'}", "--x")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_honour_the_umask(tmp_path, umask):
    """Outputs get 0666 less the umask (mkstemp alone would make every result 0600)."""
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "out.json", {"a": 1})
        write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
        made = make_temp_dir(tmp_path / "judge")
    finally:
        os.umask(old)
    for name in ("out.json", "rows.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE(made.stat().st_mode) == 0o777 & ~umask


def test_stale_temporaries_of_an_output_are_removed(tmp_path, monkeypatch):
    out = tmp_path / "model.ckpt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free: a killed writer
    host = io._HOST
    killed = tmp_path / f".model.ckpt.{host}~{dead.pid}.ab12cd34.tmp"
    live = tmp_path / f".model.ckpt.{host}~{os.getppid()}.ef56gh78.tmp"  # a live writer
    other_host_new = tmp_path / ".model.ckpt.node7~12.ij90kl12.tmp"
    other_host_old = tmp_path / ".model.ckpt.node7~13.mn34op56.tmp"
    legacy_old = tmp_path / ".model.ckpt.qr78st90.tmp"  # the older name, no host~pid
    other_output = tmp_path / f".model.ckpt.old.{host}~{dead.pid}.uv12wx34.tmp"
    other_output2 = tmp_path / f".model.ckpt.abcdefgh.{host}~{dead.pid}.uv12wx34.tmp"
    killed_dir = tmp_path / f".model.ckpt.{host}~{dead.pid}.yz56ab78.tmp"
    for p in (killed, live, other_host_new, other_host_old, legacy_old, other_output,
              other_output2):
        p.write_bytes(b"partial")
    killed_dir.mkdir()
    (killed_dir / "f").write_text("x")
    old = time.time() - io.STALE_TEMP_AGE_S - 60
    for p in (other_host_old, legacy_old, other_output2):
        os.utime(p, (old, old))
    assert sorted(io.stale_temps(out)) == sorted([killed, other_host_old, legacy_old, killed_dir])
    atomic_write_json(out, {"a": 1})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in (out, live, other_host_new, other_output, other_output2))


def test_invalid_utf8_and_lone_surrogates_name_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=rf"{path}:3: not valid UTF-8 \(byte 0xe9 at character 25\)"):
        read_jsonl(path)
    path.write_text('{"id": "a"}\n{"id": "b", "text": "x\\ud800y"}\n')
    with pytest.raises(InputError, match=rf"{path}:2: JSON escape of a lone surrogate \(U\+D800"):
        read_jsonl(path)
    path.write_text('{"id": "a", "t": ["\\ud83d\\ude00", {"\\uDE00": 1}]}\n')  # a pair is fine...
    with pytest.raises(InputError, match=rf"{path}:1: .*lone surrogate \(U\+DE00"):  # ...keys too
        read_jsonl(path)
    path.write_text('{"id": "a", "t": "\\ud83d\\ude00"}\n')
    assert read_jsonl(path) == [{"id": "a", "t": "\U0001f600"}]
    gz = tmp_path / "data.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"id": 1}\n{"id": "\xff"}\n'))
    with pytest.raises(InputError, match=rf"{gz}:2: not valid UTF-8 \(byte 0xff"):
        read_jsonl(gz)
    js = tmp_path / "x.json"
    js.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputError, match=rf"{js}: not valid UTF-8"):
        read_json(js)


def test_disk_full_names_the_output_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "samples.jsonl"
    write_jsonl(out, [{"id": "old"}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=rf"cannot write {out}: No space left on device .*; "
                       "the previous file is kept") as info:
        write_jsonl(out, [{"id": "new"}])
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert read_jsonl(out) == [{"id": "old"}]
    assert [p.name for p in tmp_path.iterdir()] == ["samples.jsonl"]
    # a stage CLI logs it as one line and exits 1
    log = logging.getLogger("repro.test")
    with pytest.raises(OutputError, match="no file was written"):
        atomic_write_json(tmp_path / "new.json", {})
    assert run_stage(lambda: atomic_write_json(tmp_path / "new.json", {}), log) == 1
    # an error about another file (an input) is not attributed to the output
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "o.txt"):
        open(tmp_path / "missing-input.txt")  # noqa: SIM115


def test_run_cli_prints_the_error_and_returns_the_stage_status(capsys):
    def fail(err):
        def body():
            raise err

        return body

    assert run_cli(lambda: None) == 0
    assert run_cli(fail(InputError("rows.jsonl:3: bad"))) == 2
    assert capsys.readouterr().err == "error: rows.jsonl:3: bad\n"
    assert run_cli(fail(OutputError(errno.ENOSPC, "cannot write out.json: full"))) == 1
    assert capsys.readouterr().err == "error: cannot write out.json: full\n"
    with pytest.raises(ValueError):
        run_cli(fail(ValueError("a bug, not bad input")))


def test_stage_parser_names_the_module_and_the_first_docstring_line():
    parser = stage_parser("repro.x", "Do one thing.\n\nMore text.")
    assert parser.prog == "python -m repro.x" and parser.description == "Do one thing."


def test_id_difference():
    assert id_difference(["a", "c", "d"], ["a", "b"]) == "missing e.g. ['b'], extra e.g. ['c', 'd']"


def test_iter_jsonl_is_iter_jsonl_at_without_offsets(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n{"b": "\xc3\xa9"}\n')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"b": "é"})]
    assert [(n, s, e) for n, s, e, _ in iter_jsonl_at(path)] == [(1, 0, 10), (3, 11, 23)]

