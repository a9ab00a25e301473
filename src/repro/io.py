"""Small, dependency-free I/O helpers shared by every stage.

Every final output of the pipeline is written atomically: to a temporary file in the same
directory, flushed and fsync'ed, then ``os.replace``d onto the target. A killed job therefore
never leaves a truncated file behind that Snakemake (or a user) could mistake for a result.

Temporaries are named ``.<name>.<host>~<pid>.<random>.tmp``: the writer's host and process id
let the next writer of the same output remove what a killed one left (:func:`remove_stale_temps`)
without touching a write still in progress. Outputs get the usual permissions of a new file
(``0666`` less the umask), not ``mkstemp``'s private ``0600``, so collaborators on a shared
filesystem can read them.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gzip
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad user input: the message names the file, line or key, and the fix."""


class OutputError(OSError):
    """Writing an output failed (disk full, quota, read-only filesystem …).

    The message names the path being written; the previous file at that path (if any) is kept.
    ``errno`` and ``filename`` (the output) are those of an :class:`OSError`.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


#: a temporary of another host, or of the older name without ``<host>~<pid>``, that has not been
#: modified for this long is a killed writer's leftover (a live writer modifies its file while
#: writing; on its own host a writer is recognised by its process id instead)
STALE_TEMP_AGE_S = 3600.0
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
#: after ``.<name>.``: ``<host>~<pid>.<random>…`` (this format) or ``<random>…`` (the older one,
#: tempfile's 8 random characters)
_TEMP_TAIL = re.compile(r"(?:(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)\.)?[a-z0-9_]{8}(?:\.[^/~]*)?\.tmp")


def current_umask() -> int:
    """The process umask (read from ``/proc`` where possible: ``os.umask`` can only be read by
    setting it, which races with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """Temporaries of ``path`` (files or directories beside it) left by killed writers.

    On this host a temporary is stale when the process that made it is gone; a temporary of
    another host (a shared filesystem) or of the older name format when it has not been modified
    for :data:`STALE_TEMP_AGE_S`. Temporaries of other outputs are never matched.
    """
    path = Path(path)
    prefix = f".{path.name}."
    out = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _TEMP_TAIL.fullmatch(entry.name[len(prefix):])
        if m is None:
            continue
        if m["host"] == _HOST:
            stale = not _pid_alive(int(m["pid"]))
        else:
            try:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_AGE_S
            except FileNotFoundError:
                continue
        if stale:
            out.append(Path(entry.path))
    return out


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Remove :func:`stale_temps` of ``path``; returns how many were removed."""
    n = 0
    for tmp in stale_temps(path):
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            n += 1
        except FileNotFoundError:
            continue
    if n:
        logging.getLogger("repro.io").info("removed %d stale temporary file(s) of %s", n, path)
    return n


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}~{os.getpid()}."


def make_temp_dir(out: str | os.PathLike) -> Path:
    """An empty directory beside ``out`` named like :func:`atomic_path`'s temporaries (after
    removing stale ones of ``out``), with the permissions of a new directory (``0777`` less the
    umask, not ``mkdtemp``'s ``0700``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=".tmp", dir=out.parent))
    with contextlib.suppress(OSError):  # a filesystem without modes keeps its own
        tmp.chmod(0o777 & ~current_umask())
    return tmp


def _output_error(err: OSError, path: Path, tmp: Path) -> OSError:
    """``err`` as an :class:`OutputError` naming ``path`` when it is about the file being written
    (a write, flush, fsync or rename error: no file name, or the temporary's); an error about
    another file already names that file and is returned unchanged."""
    if isinstance(err, OutputError) or err.filename not in (None, str(tmp), str(path)):
        return err
    kept = "the previous file is kept" if path.exists() else "no file was written"
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (free space or quota on that filesystem, then rerun)"
    new = OutputError(err.errno or 0, f"cannot write {path}: {reason}; {kept}")
    new.filename = str(path)
    return new


class OptionError(InputError):
    """A bad option of a config block; ``key`` names it, so the workflow can prefix its config path
    (``experiments.ar.samplers.ancestral.temperatur: …``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Stale temporaries of ``path`` (:func:`stale_temps`) are removed first. The new file gets the
    permissions of any new file (``0666`` less the umask). On an exception the temporary file is
    removed and ``path`` is left untouched; an :class:`OSError` of the write itself (disk full …)
    becomes an :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix + ".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        with contextlib.suppress(OSError):  # a filesystem without modes keeps its own
            os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        new = _output_error(err, path, tmp_path)
        if new is err:
            raise
        raise new from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Atomically write ``rows`` as JSON Lines; returns the number of rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line (universal newlines: ``\n``, ``\r\n`` or
    a lone ``\r``; a ``.gz`` file is read decompressed); a malformed line raises
    :class:`InputError` naming ``file:line``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    opener = gzip.open if path.name.endswith(".gz") else open  # HumanEval.jsonl.gz
    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate that check_utf8 reports
    # with its line, instead of a UnicodeDecodeError from deep inside the reader
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield lineno, _parse_jsonl_line(line, f"{path}:{lineno}")


def iter_jsonl_at(
    path: str | os.PathLike, start: int = 0, first_lineno: int = 1
) -> Iterator[tuple[int, int, int, dict]]:
    """``(line number, byte offset of the line, byte offset after it, object)`` for each non-blank
    line from byte ``start`` on (the line there is numbered ``first_lineno``).

    Lines end at ``\n`` only. A byte that is not UTF-8 is decoded as a lone surrogate
    (``surrogateescape``), which :func:`check_utf8` reports with its line; a line that is not a
    JSON object raises :class:`InputError` naming ``file:line``. The offsets let a reader stop and
    later resume at a line without parsing the lines before it.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    opener = gzip.open if path.name.endswith(".gz") else open  # HumanEval.jsonl.gz
    with opener(path, "rb") as fh:
        fh.seek(start)
        offset, lineno = start, first_lineno
        for raw in fh:
            end = offset + len(raw)
            line = raw.decode("utf-8", errors="surrogateescape")
            if line.strip():
                yield lineno, offset, end, _parse_jsonl_line(line, f"{path}:{lineno}")
            offset, lineno = end, lineno + 1


def _parse_jsonl_line(line: str, where: str) -> dict:
    check_utf8(line, where)
    row = _json_object(line, where)
    if ESCAPED_SURROGATE.search(line):
        check_strings(row, where)
    return row


#: a JSON ``\uD800``–``\uDFFF`` escape: valid in a pair (one character), a lone one is not text
ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def check_utf8(text: str, where: str) -> None:
    """Raise :class:`InputError` naming ``where`` when ``text`` holds a byte that was not UTF-8
    (read with ``errors="surrogateescape"``) or a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        col = err.start + 1
        if "\udc80" <= bad <= "\udcff":  # surrogateescape of an undecodable byte
            raise InputError(
                f"{where}: not valid UTF-8 (byte 0x{ord(bad) - 0xDC00:02x} at character {col}); "
                "re-encode the file as UTF-8"
            ) from None
        raise InputError(
            f"{where}: lone surrogate U+{ord(bad):04X} at character {col} is not valid text"
        ) from None


def check_strings(value: Any, where: str) -> None:
    """Raise :class:`InputError` naming ``where`` for a lone surrogates from ``\\uD8xx`` escapes, in any string (key or value) of a JSON value."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InputError(
                f"{where}: JSON escape of a lone surrogate (U+{ord(value[err.start]):04X}, "
                f"in {value[max(err.start - 20, 0):err.start]!r}…) is not valid text"
            ) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            check_strings(k, where)
            check_strings(v, where)
    elif isinstance(value, list):
        for v in value:
            check_strings(v, where)


def id_difference(ids: Iterable[str], ref_ids: Iterable[str]) -> str:
    """``missing e.g. [...], extra e.g. [...]``: up to three ids (sorted) of ``ref_ids`` not in
    ``ids`` and of ``ids`` not in ``ref_ids``, for the error of two files that must hold the same
    ids."""
    ids, ref_ids = set(ids), set(ref_ids)
    return f"missing e.g. {sorted(ref_ids - ids)[:3]}, extra e.g. {sorted(ids - ref_ids)[:3]}"


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON Lines; a malformed line raises :class:`InputError` naming ``file:line``."""
    return [row for _, row in iter_jsonl(path)]


def json_object_arg(text: str, flag: str) -> dict:
    """A command-line JSON object (``--config-json '{...}'``), or ``@path`` to a file holding one.

    Errors name the flag (or the file) and what was wrong.
    """
    where = flag
    if text.startswith("@"):
        where = text[1:]
        try:
            text = Path(where).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{where} (given to {flag}): file not found") from None
    return _json_object(text, where, at_char=True)


def _json_object(text: str, where: str, at_char: bool = False) -> dict:
    """``text`` parsed as a JSON object; else an :class:`InputError` naming ``where`` (and, with
    ``at_char``, the character at which the JSON broke)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        pos = f" at char {err.pos}" if at_char else ""
        raise InputError(f"{where}: not valid JSON ({err.msg}{pos})") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not valid UTF-8 (byte offset {err.start})") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


#: the line format of every stage CLI's log (``INFO repro.score: …``)
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def log_to_stderr() -> None:
    """Log INFO and above to stderr in :data:`LOG_FORMAT` (a stage CLI's first step)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def _exit_status(body: Callable[[], object], report: Callable[[OSError | ValueError], None]) -> int:
    try:
        body()
    except InputError as err:
        report(err)
        return 2
    except OutputError as err:  # disk full …: the message names the output; the old one is kept
        report(err)
        return 1
    return 0


def stage_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of the stage CLI ``python -m <module>``, described by the first line
    of its docstring ``doc``."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=(doc or "").split("\n")[0]
    )


def run_stage(body: Callable[[], object], log: logging.Logger) -> int:
    """Exit status of a stage CLI: 0, 2 after logging the :class:`InputError` of bad input, or 1
    after logging an :class:`OutputError` (the output could not be written: disk full …).

    The error message names the file, line or key at fault; nothing already written is touched
    (outputs are written atomically), so the job can be rerun once the input is fixed.
    """
    return _exit_status(body, lambda err: log.error("%s", err))


def run_cli(body: Callable[[], object]) -> int:
    """:func:`run_stage` for a CLI that reports its error as ``error: <message>`` on stderr."""
    return _exit_status(body, lambda err: print(f"error: {err}", file=sys.stderr))
