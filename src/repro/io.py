"""Small, dependency-free I/O helpers shared by every stage.

Every final output of the pipeline is written atomically: to a temporary file in the same
directory, flushed and fsync'ed, then ``os.replace``d onto the target. A killed job therefore
never leaves a truncated file behind that Snakemake (or a user) could mistake for a result.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad user input: the message names the file, line or key, and the fix."""


class OptionError(InputError):
    """A bad option of a config block; ``key`` names it, so the workflow can prefix its config path
    (``experiments.ar.samplers.ancestral.temperatur: …``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
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
    """``(line number, object)`` for each non-blank line; a malformed line raises
    :class:`InputError` naming ``file:line``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    opener = gzip.open if path.name.endswith(".gz") else open  # HumanEval.jsonl.gz
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


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
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: not valid JSON ({err.msg} at char {err.pos})") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def run_stage(body: Callable[[], object], log: logging.Logger) -> int:
    """Exit status of a stage CLI: 0, or 2 after logging the :class:`InputError` of bad input.

    The error message names the file, line or key at fault; nothing already written is touched
    (outputs are written atomically), so the job can be rerun once the input is fixed.
    """
    try:
        body()
    except InputError as err:
        log.error("%s", err)
        return 2
    return 0
