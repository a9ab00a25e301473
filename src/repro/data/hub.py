"""Raw sources of a real dataset: local files, a saved hub copy, and the hub download itself.

A *source split* is a sequence of raw rows with a location for error messages. It comes from

1. ``local`` files (the offline override): ``.jsonl`` (and JSON-lines ``.json``) are read line by
   line here so that errors name ``file:line`` exactly and no Arrow type unification can coerce a
   wrong-typed field; a ``.json`` array, ``.parquet``, ``.csv``, ``.tsv`` and ``.txt`` go through
   ``datasets.load_dataset(<builder>, data_files=...)``;
2. a ``save_to_disk`` folder written by :func:`download_dataset` (``--raw``), via
   ``datasets.load_from_disk``.

Either way the rows then go through the same normaliser (:mod:`repro.data.normalise`).
:func:`download_dataset` calls ``datasets.load_dataset(id, name, revision=<pinned>)`` and saves the
result atomically (temporary folder, then rename) with a ``repro_source.json`` provenance file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from repro.io import (
    ESCAPED_SURROGATE,
    InputError,
    atomic_write_json,
    check_strings,
    check_utf8,
    iter_jsonl,
    make_temp_dir,
)

from .config import DataConfig

PROVENANCE_FILE = "repro_source.json"
_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".txt": "text"}


class HubUnavailable(InputError):
    """The hub cannot be reached (offline mode, no network) — the message says how to go local."""


class Source:
    """A source split: ``len()`` rows, iterated as ``(location, raw row)`` pairs."""

    def __init__(self, parts: Sequence[Any], desc: str) -> None:
        self._parts = list(parts)  # each: _JsonlPart, _LinesPart or _ArrowPart
        self.desc = desc

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def iter_rows(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, dict]]:
        stop = len(self) if stop is None else stop
        offset = 0
        for part in self._parts:
            n = len(part)
            lo, hi = max(start - offset, 0), min(stop - offset, n)
            if lo < hi:
                yield from part.iter_rows(lo, hi)
            offset += n
            if offset >= stop:
                return


class _LinesPart:
    """Rows parsed here (JSON Lines or a JSON array): exact ``file:line`` locations."""

    def __init__(self, rows: list[tuple[str, dict]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def iter_rows(self, lo: int, hi: int) -> Iterator[tuple[str, dict]]:
        yield from self.rows[lo:hi]


class _ArrowPart:
    """A ``datasets.Dataset``; locations are ``<desc> row <1-based index>``."""

    def __init__(self, ds: Any, desc: str) -> None:
        self.ds, self.desc = ds, desc

    def __len__(self) -> int:
        return len(self.ds)

    def iter_rows(self, lo: int, hi: int) -> Iterator[tuple[str, dict]]:
        for i, row in enumerate(self.ds.select(range(lo, hi)), start=lo + 1):
            yield f"{self.desc} row {i}", row


class _JsonlPart:
    """A JSON Lines file read row by row: checked and counted when opened, then re-read on each
    iteration, so no more than one row is held; exact ``file:line`` locations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = sum(1 for _ in iter_jsonl(path))  # every line is checked, as a full read would

    def __len__(self) -> int:
        return self.n

    def iter_rows(self, lo: int, hi: int) -> Iterator[tuple[str, dict]]:
        if lo >= hi:
            return
        for i, (lineno, row) in enumerate(iter_jsonl(self.path)):
            if i >= lo:
                yield f"{self.path}:{lineno}", row
            if i + 1 >= hi:
                return


# --------------------------------------------------------------------------- local files


def _read_json_lines(path: Path) -> _JsonlPart:
    return _JsonlPart(path)


def _read_local_file(path: Path, where: str) -> Any:
    if not path.is_file():
        raise InputError(f"{where}: file not found: {path} (paths are relative to {Path.cwd()})")
    suffix = path.suffix.lower()
    if path.name.lower().endswith(".jsonl.gz"):
        suffix = ".jsonl"
    if suffix == ".jsonl":
        return _read_json_lines(path)
    if suffix == ".json":
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            head = fh.read(4096).lstrip()
        if not head.startswith("["):
            return _read_json_lines(path)
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        for lineno, line in enumerate(text.split("\n"), start=1):
            check_utf8(line, f"{path}:{lineno}")
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        rows = []
        escaped = ESCAPED_SURROGATE.search(text) is not None
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise InputError(f"{path} item {i}: expected a JSON object, got {type(item).__name__}")
            if escaped:
                check_strings(item, f"{path} item {i}")
            rows.append((f"{path} item {i}", item))
        return _LinesPart(rows)
    if suffix in _BUILDERS:
        import datasets

        kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
        try:
            ds = datasets.load_dataset(
                _BUILDERS[suffix], data_files={"data": [str(path)]}, split="data", **kwargs
            )
        except Exception as err:  # the builders raise many types; name the file
            raise InputError(f"{path}: could not be read as {suffix[1:]} ({err})") from err
        return _ArrowPart(ds, str(path))
    raise InputError(
        f"{where}: {path}: unsupported file type {suffix!r}; use .jsonl(.gz), .json, .parquet, "
        ".csv, .tsv or .txt"
    )


def open_local(dc: DataConfig, source_split: str) -> Source:
    paths = dc.local[source_split]
    where = f"datasets.{dc.name}.local.{source_split}"
    parts = [_read_local_file(p, where) for p in paths]
    return Source(parts, ", ".join(str(p) for p in paths))


# --------------------------------------------------------------------------- saved hub copy


@functools.lru_cache(maxsize=4)
def _load_saved(raw_dir: str) -> Any:
    import datasets

    path = Path(raw_dir)
    if not path.is_dir():
        raise InputError(f"--raw {path}: folder not found; run the download stage first")
    try:
        return datasets.load_from_disk(str(path))
    except Exception as err:
        raise InputError(f"--raw {path}: not a datasets.save_to_disk folder ({err})") from err


def open_saved(dc: DataConfig, source_split: str, raw_dir: str | os.PathLike) -> Source:
    saved = _load_saved(str(Path(raw_dir).resolve()))
    available = list(saved.keys()) if hasattr(saved, "keys") else []
    if source_split not in available:
        raise InputError(
            f"dataset {dc.name!r}: source split {source_split!r} is not in the downloaded copy "
            f"{raw_dir} (it has {available}); check datasets.{dc.name}.splits or re-run the "
            "download stage"
        )
    return Source([_ArrowPart(saved[source_split], f"{raw_dir}[{source_split}]")],
                  f"{raw_dir}[{source_split}]")


def open_source(dc: DataConfig, source_split: str, raw_dir: str | os.PathLike | None) -> Source:
    """Source split ``source_split``: local override first, then the saved hub copy."""
    if source_split in dc.local:
        return open_local(dc, source_split)
    if raw_dir is not None:
        return open_saved(dc, source_split, raw_dir)
    have = sorted(dc.local) or "none"
    raise InputError(
        f"dataset {dc.name!r}: source split {source_split!r} is neither a local file "
        f"(datasets.{dc.name}.local has: {have}) nor available from a downloaded hub copy "
        f"(no --raw folder). Add datasets.{dc.name}.local.{source_split}: <file>, or run the "
        f"download stage for {dc.hub.id if dc.hub else 'the hub dataset'} and pass --raw."
    )


# --------------------------------------------------------------------------- download


def _offline_flag() -> str | None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return var
    return None


def _unavailable(dc: DataConfig, reason: str) -> HubUnavailable:
    hub = dc.hub
    assert hub is not None
    cfg_name = f", config {hub.name}" if hub.name else ""
    splits = dc.hub_splits()
    example = ", ".join(f"{s}: <file>" for s in splits)
    return HubUnavailable(
        f"cannot download dataset {dc.name!r} ({hub.id}@{hub.revision}{cfg_name}): {reason}. "
        f"Without hub access, give the files instead: datasets.{dc.name}.local: {{{example}}} "
        "(.jsonl/.json/.parquet/.csv/.txt), or copy a datasets.save_to_disk folder made "
        "elsewhere and pass it to prepare as --raw."
    )


def resolve_revision(dc: DataConfig, timeout: float = 10.0) -> str:
    """The commit SHA of ``dc.hub`` (fails fast, with the local-files hint, when offline)."""
    flag = _offline_flag()
    if flag:
        raise _unavailable(dc, f"offline mode is on ({flag}=1)")
    try:
        from huggingface_hub import HfApi

        info = HfApi().dataset_info(dc.hub.id, revision=dc.hub.revision, timeout=timeout)
    except Exception as err:
        raise _unavailable(dc, f"the hub is unreachable or refused ({type(err).__name__}: {err})") from None
    return str(info.sha)


def _first_rows(stream: Any, n: int) -> Iterator[dict]:
    """The first ``n`` rows of a streamed hub split, one at a time."""
    yield from islice(iter(stream), n)


def download_dataset(dc: DataConfig, out: str | os.PathLike) -> dict:
    """Download the hub source splits of ``dc`` into ``out`` (``save_to_disk``), atomically.

    Returns the provenance written to ``out/repro_source.json``.
    """
    if dc.is_synthetic:
        raise InputError(f"dataset {dc.name!r} is synthetic: there is nothing to download")
    splits = dc.hub_splits()
    if not splits:
        raise InputError(
            f"dataset {dc.name!r}: every split is read from datasets.{dc.name}.local; "
            "there is nothing to download"
        )
    hub = dc.hub
    assert hub is not None
    if hub.huge and dc.hub_take is None and dc.hub_data_files is None:
        raise InputError(
            f"datasets.{dc.name}.hub: {hub.id} is too large to download whole; set hub.take "
            "(stream the first N rows of each split) or hub.data_files (a subset of its files)"
        )
    sha = resolve_revision(dc)
    import datasets

    common: dict[str, Any] = {"revision": hub.revision}
    if dc.hub_data_files is not None:
        common["data_files"] = dc.hub_data_files
    parts = {}
    try:
        for split in splits:
            if dc.hub_take is None:
                parts[split] = datasets.load_dataset(hub.id, hub.name, split=split, **common)
            else:
                stream = datasets.load_dataset(hub.id, hub.name, split=split, streaming=True, **common)
                # rows go to Arrow files on disk as they arrive (bounded memory, whatever `take`)
                parts[split] = datasets.Dataset.from_generator(
                    _first_rows, features=stream.features,
                    gen_kwargs={"stream": stream, "n": dc.hub_take}, keep_in_memory=False,
                )
    except Exception as err:
        raise _unavailable(dc, f"load_dataset failed ({type(err).__name__}: {err})") from err

    provenance = {
        "id": hub.id, "name": hub.name, "revision": hub.revision, "resolved_sha": sha,
        "pinned": hub.pinned, "splits": {s: len(d) for s, d in parts.items()},
        "data_files": dc.hub_data_files, "take": dc.hub_take, "datasets": datasets.__version__,
    }
    out = Path(out)
    tmp = make_temp_dir(out)
    try:
        datasets.DatasetDict(parts).save_to_disk(str(tmp))
        atomic_write_json(tmp / PROVENANCE_FILE, provenance)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return provenance


def _replace_dir(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old.{os.getpid()}")
    os.replace(out, old)
    os.replace(tmp, out)
    with contextlib.suppress(OSError):
        shutil.rmtree(old)
