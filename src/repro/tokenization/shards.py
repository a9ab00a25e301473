"""Sharded token arrays: the ``lm`` layout with ``packing: stream`` and ``shard_windows: N``.

A sharded split ``S`` of a tokenized directory is stored as shards k = 0, 1, … (5 digits):

* ``S.ids.0000k.npy`` int32 ``(n_k, L)`` and ``S.cond.0000k.npy`` uint8 ``(n_k, L)``: windows
  ``[k·N, k·N + n_k)`` of the split (``n_k = N`` except in the last shard);
* ``S.rows.0000k.npy`` bytes ``(n_k,)``: each window's row id in UTF-8 (the id of the document
  its first token belongs to, as in the unsharded ``row_ids``);
* ``S.shard.0000k.json``: the shard's completion record, written after its three arrays: window
  count, sha256 of each array file, the run key (tokenizer, layout, input file) and where in the
  input the next shard starts (byte offset, line, row, tokens of that row already packed).

meta.json ``splits.S`` then holds ``shards: {windows: N, files: [{n, ids, cond, rows}, …]}`` (the
sha256 values) instead of a ``row_ids`` list, and ``S.ids.npy`` / ``S.cond.npy`` are ``(0, L)``
placeholders. :func:`open_shards` maps the shards as one read-only array each
(:class:`ShardedArray`).

:func:`write_stream_shards` reads the prepared JSONL row by row (``chunk_rows`` rows per
tokenizer call) and holds at most one shard of windows plus one chunk of tokens. Every file is
written atomically; a rerun with the same key keeps the leading shards whose records and sha256
match and resumes the input where the last of them ends. The windows are those of
:meth:`~repro.tokenization.layouts.LM.iter_encoded` for the same rows, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from repro.io import InputError, atomic_path, atomic_write_json, iter_jsonl_at, read_json

if TYPE_CHECKING:
    from .layouts import Layout

PARTS = ("ids", "cond", "rows")
_DTYPES = {"ids": np.dtype(np.int32), "cond": np.dtype(np.uint8)}


def shard_path(directory: str | os.PathLike, split: str, part: str, k: int) -> Path:
    """``{split}.{part}.{k:05d}.npy`` (part: ids, cond, rows) or ``.json`` (part: shard)."""
    suffix = "json" if part == "shard" else "npy"
    return Path(directory) / f"{split}.{part}.{k:05d}.{suffix}"


# ------------------------------------------------------------------------------------ reading


class ShardedArray:
    """Read-only view of ``.npy`` files concatenated along axis 0, memory-mapped.

    Supports ``len``, ``shape``, ``dtype``, ``ndim`` and indexing by an integer, a slice, an
    integer or boolean index array, or a tuple whose first item is one of those; results are
    in-memory numpy arrays (a copy). Pickles by its paths (the maps are reopened on first use).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], lengths: Sequence[int]) -> None:
        if not paths or len(paths) != len(lengths):
            raise ValueError("ShardedArray needs one length per path and at least one path")
        self.paths = [Path(p) for p in paths]
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, np.int64))])
        self._maps: list[np.ndarray] | None = None
        first = self._arrays()[0]
        self.dtype = first.dtype
        self.shape = (int(self.offsets[-1]), *first.shape[1:])

    def _arrays(self) -> list[np.ndarray]:
        if self._maps is None:
            self._maps = [np.load(p, mmap_mode="r", allow_pickle=False) for p in self.paths]
        return self._maps

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _locate(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            head, rest = (key[0], key[1:]) if key else (slice(None), ())
            got = self[head]
            return got[rest] if isinstance(head, (int, np.integer)) else got[(slice(None), *rest)]
        n, maps = len(self), self._arrays()
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} is out of bounds for {n} rows")
            s = int(self._locate(np.asarray(i)))
            return np.array(maps[s][i - self.offsets[s]])
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self[np.arange(start, stop, step)]
            pieces = []
            for s in range(len(maps)):
                lo, hi = max(start, self.offsets[s]), min(stop, self.offsets[s + 1])
                if lo < hi:
                    pieces.append(maps[s][lo - self.offsets[s] : hi - self.offsets[s]])
            if not pieces:
                return np.empty((0, *self.shape[1:]), self.dtype)
            return np.concatenate(pieces)
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            idx = np.flatnonzero(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"ShardedArray cannot be indexed by {type(key).__name__} {idx.dtype}")
        flat = idx.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= n):
            raise IndexError(f"index out of bounds for {n} rows")
        out = np.empty((flat.size, *self.shape[1:]), self.dtype)
        where = self._locate(flat)
        for s in np.unique(where):
            mask = where == s
            out[mask] = maps[s][flat[mask] - self.offsets[s]]
        return out.reshape(*idx.shape, *self.shape[1:])


class ShardedRowIds(Sequence[str]):
    """The row ids of a sharded split as a read-only sequence of str (decoded on access)."""

    def __init__(self, rows: ShardedArray) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return [b.decode("utf-8") for b in self.rows[key].tolist()]
        return self.rows[key].tolist().decode("utf-8")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ShardedRowIds | list | tuple):
            return len(self) == len(other) and list(self[:]) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def open_shards(
    directory: str | os.PathLike, split: str, info: dict, seq_len: int
) -> tuple[ShardedArray, ShardedArray, ShardedRowIds]:
    """``(ids, cond, row ids)`` of the sharded split described by meta.json ``splits.{split}``.

    Checks that every shard file exists with the dtype and shape the manifest gives (InputError
    naming the file otherwise); the content hashes are checked by the writer only.
    """
    directory = Path(directory)
    where = f"{directory}/meta.json: splits.{split}.shards"
    manifest = info.get("shards")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not files:
        raise InputError(f"{where}: expected {{windows, files: [...]}} with at least one shard")
    lengths = []
    for k, rec in enumerate(files):
        n = rec.get("n") if isinstance(rec, dict) else None
        if not isinstance(n, int) or n < 1:
            raise InputError(f"{where}.files[{k}]: missing or bad window count {n!r}")
        lengths.append(n)
    if sum(lengths) != info.get("n"):
        raise InputError(f"{where}: the shards hold {sum(lengths)} windows but n is {info.get('n')}")
    views = []
    for part in PARTS:
        paths = [shard_path(directory, split, part, k) for k in range(len(files))]
        for path, n in zip(paths, lengths):
            if not path.is_file():
                raise InputError(f"{path}: not found (meta.json lists it) — re-run the tokenize stage")
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            shape = (n, seq_len) if part != "rows" else (n,)
            ok = arr.dtype == _DTYPES[part] if part != "rows" else arr.dtype.kind == "S"
            if not ok or arr.shape != shape:
                raise InputError(
                    f"{path}: {arr.dtype} {arr.shape}, expected {_DTYPES.get(part, 'bytes')} "
                    f"{shape} per meta.json — re-run the tokenize stage"
                )
        views.append(ShardedArray(paths, lengths))
    return views[0], views[1], ShardedRowIds(views[2])


# ------------------------------------------------------------------------------------ writing


@dataclass
class ShardedSplit:
    """What :func:`write_stream_shards` wrote: the manifest and the run's counters."""

    n: int  # windows
    windows: int  # shard size N
    files: list[dict]  # per shard: {n, ids, cond, rows} (sha256 of each file)
    rows: int  # rows of the input
    reused: int  # leading shards kept from an earlier run
    peak_tokens: int  # most tokens buffered at once
    peak_docs: int  # most rows buffered at once

    def manifest(self) -> dict:
        return {"windows": self.windows, "files": list(self.files)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _run_key(layout: Layout, path: Path, shard_windows: int) -> str:
    from .arrays import tokenizer_sha256

    st = path.stat()
    spec = {
        "layout": layout.name,
        "seq_len": layout.seq_len,
        "windows": shard_windows,
        "specials": layout.specials.as_dict(),
        "tokenizer_sha256": tokenizer_sha256(layout.tokenizer),
        "input": [st.st_size, st.st_mtime_ns],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _complete_shards(out: Path, split: str, key: str) -> list[dict]:
    """The leading shard records of an earlier run with this key whose files still match."""
    records: list[dict] = []
    while True:
        marker = shard_path(out, split, "shard", len(records))
        if not marker.is_file():
            return records
        try:
            rec = read_json(marker)
        except InputError:
            return records
        if not isinstance(rec, dict) or rec.get("key") != key:
            return records
        for part in PARTS:
            path = shard_path(out, split, part, len(records))
            if not path.is_file() or _sha256(path) != rec["sha256"].get(part):
                return records
        records.append(rec)
        if rec.get("last"):
            return records


def _remove_from(out: Path, split: str, k: int) -> None:
    """Delete the shard files of ``split`` with index >= k (left by an earlier, longer run)."""
    for path in out.glob(f"{split}.*.[0-9][0-9][0-9][0-9][0-9].*"):
        part, index = path.name[len(split) + 1 :].split(".")[:2]
        if part in (*PARTS, "shard") and index.isdigit() and int(index) >= k:
            path.unlink()


def _read_rows(
    layout: Layout, path: Path, state: dict, chunk_rows: int
) -> Iterator[tuple[list[dict], list[tuple[int, int]], dict]]:
    """Chunks ``(rows, [(byte offset, line)] per row, position after the chunk)`` from ``state``."""
    row = state["row"]
    reader = iter_jsonl_at(path, state["byte"], state["line"])
    pos = dict(state)
    while True:
        rows, places = [], []
        for lineno, start, end, obj in reader:
            row += 1
            layout.check_row(obj, f"{path}: row {row}")
            rows.append(obj)
            places.append((start, lineno))
            pos = {"byte": end, "line": lineno + 1, "row": row, "skip": 0}
            if len(rows) == chunk_rows:
                break
        if not rows:
            return
        yield rows, places, pos


class _StreamPacker:
    """The state of one :func:`write_stream_shards` run: the window buffer of the shard being
    filled, the tokens not yet packed (``buf``) with the rows they came from, and the shards written.
    """

    def __init__(
        self, layout: Layout, out: Path, split: str, key: str, records: list[dict], state: dict,
        n_win: int, on_shard: Callable[[int], None] | None,
    ) -> None:
        self.layout, self.out, self.split, self.key, self.records = layout, out, split, key, records
        self.n_win, self.on_shard = n_win, on_shard
        length, self.width = layout.seq_len, layout.seq_len - 1
        self.eos, self.pad = layout.specials.eos, layout.specials.pad
        self.ids_buf = np.empty((n_win, length), np.int32)
        self.ids_buf[:, 0] = layout.specials.bos
        self.cond_buf = np.zeros((n_win, length), np.uint8)
        self.cond_buf[:, 0] = 1
        self.window_rows: list[str] = []
        self.peak_tokens = self.peak_docs = 0
        # buf: tokens not yet packed; doc_*: the rows buffered, starts relative to buf
        self.buf = np.zeros(0, np.int32)
        self.doc_start = np.zeros(0, np.int64)
        self.doc_ids: list[str] = []
        self.doc_place = np.zeros((0, 3), np.int64)  # (byte offset, line, row index) per row
        self.skip = int(state["skip"])
        self.end_pos = dict(state)
        self.filled = 0

    def flush(self, n: int, nxt: dict, last: bool) -> None:
        """Write the first ``n`` windows as shard k (its arrays, then its record)."""
        out, split, k = self.out, self.split, len(self.records)
        rows = np.array([r.encode("utf-8") for r in self.window_rows[:n]], dtype=bytes)
        sha = {}
        for part, arr in (("ids", self.ids_buf[:n]), ("cond", self.cond_buf[:n]), ("rows", rows)):
            target = shard_path(out, split, part, k)
            with atomic_path(target) as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            sha[part] = _sha256(target)
        rec = {"key": self.key, "n": int(n), "sha256": sha, "next": nxt, "last": last}
        atomic_write_json(shard_path(out, split, "shard", k), rec)
        self.records.append(rec)
        self.window_rows.clear()
        if self.on_shard is not None:
            self.on_shard(k)

    def next_state(self, q: int) -> dict:
        """Where the window starting at buf position q begins in the input."""
        if q >= len(self.buf):
            return dict(self.end_pos)
        d = int(np.searchsorted(self.doc_start, q, side="right") - 1)
        byte, line, row = (int(v) for v in self.doc_place[d])
        return {"byte": byte, "line": line, "row": row, "skip": int(q - self.doc_start[d])}

    def add(self, rows: list[dict], places: list, end_pos: dict) -> None:
        """Tokenize a chunk of rows onto ``buf`` (each text + EOS), then pack full windows."""
        self.end_pos = end_pos
        toks = self.layout._tokenize([r["text"] for r in rows])
        lens = np.fromiter((len(t) + 1 for t in toks), np.int64, len(toks))
        new = np.fromiter(chain.from_iterable(chain(t, (self.eos,)) for t in toks), np.int32,
                          int(lens.sum()))
        starts = len(self.buf) + np.concatenate([[0], np.cumsum(lens)[:-1]]) - self.skip
        first_row = end_pos["row"] - len(rows)
        place = np.array([(b, ln, first_row + i) for i, (b, ln) in enumerate(places)], np.int64)
        self.buf = np.concatenate([self.buf, new[self.skip:]])
        self.skip = 0
        self.doc_start = np.concatenate([self.doc_start, starts])
        self.doc_ids += [r["id"] for r in rows]
        self.doc_place = np.concatenate([self.doc_place, place])
        self.peak_tokens = max(self.peak_tokens, len(self.buf))
        self.peak_docs = max(self.peak_docs, len(self.doc_ids))
        self._pack()

    def _pack(self) -> None:
        """Move every full window of ``buf`` into the window buffer, flushing full shards."""
        width, n_win, pos = self.width, self.n_win, 0
        while len(self.buf) - pos >= width:
            w = min(n_win - self.filled, (len(self.buf) - pos) // width)
            self.ids_buf[self.filled : self.filled + w, 1:] = (
                self.buf[pos : pos + w * width].reshape(w, width)
            )
            owners = np.searchsorted(self.doc_start, pos + np.arange(w) * width, side="right") - 1
            self.window_rows.extend(self.doc_ids[o] for o in owners.tolist())
            self.filled, pos = self.filled + w, pos + w * width
            if self.filled == n_win:
                self.flush(n_win, self.next_state(pos), False)
                self.filled = 0
        d0 = max(int(np.searchsorted(self.doc_start, pos, side="right") - 1), 0)
        self.buf = self.buf[pos:].copy()
        self.doc_start = self.doc_start[d0:] - pos
        self.doc_ids = self.doc_ids[d0:]
        self.doc_place = self.doc_place[d0:]

    def finish(self, path: Path) -> None:
        """Pad the last partial window and write the last shard (or mark the last one last)."""
        buf = self.buf
        if len(buf):
            self.ids_buf[self.filled, 1 : len(buf) + 1] = buf
            self.ids_buf[self.filled, len(buf) + 1 :] = self.pad
            owner = int(np.searchsorted(self.doc_start, 0, side="right") - 1)
            self.window_rows.append(self.doc_ids[owner])
            self.filled += 1
        if self.filled:
            self.flush(self.filled, dict(self.end_pos), True)
        elif self.records:
            self.records[-1]["last"] = True
            atomic_write_json(
                shard_path(self.out, self.split, "shard", len(self.records) - 1), self.records[-1]
            )
        else:
            raise InputError(f"{path}: no rows to tokenize")


def write_stream_shards(
    path: str | os.PathLike,
    layout: Layout,
    out_dir: str | os.PathLike,
    split: str,
    *,
    chunk_rows: int = 2048,
    on_shard: Callable[[int], None] | None = None,
) -> ShardedSplit:
    """Pack the rows of the JSONL ``path`` into ``shard_windows``-window shards of ``split``.

    ``layout`` is an ``lm`` layout with ``packing: stream`` and ``shard_windows`` set. Complete
    shards of an earlier run with the same tokenizer, layout and input file are kept;
    ``on_shard(k)`` is called after shard k is written. Raises InputError naming the file and row
    on a bad row, or when the file has no rows.
    """
    path, out = Path(path), Path(out_dir)
    n_win = layout.options.get("shard_windows")
    if layout.name != "lm" or layout.options.get("packing") != "stream" or not n_win:
        raise ValueError("write_stream_shards needs layout 'lm' with packing 'stream' and shard_windows")
    out.mkdir(parents=True, exist_ok=True)
    key = _run_key(layout, path, n_win)
    records = _complete_shards(out, split, key)
    reused = len(records)
    state = records[-1]["next"] if records else {"byte": 0, "line": 1, "row": 0, "skip": 0}
    packer = _StreamPacker(layout, out, split, key, records, state, n_win, on_shard)
    if not (records and records[-1].get("last")):
        for rows, places, end_pos in _read_rows(layout, path, state, chunk_rows):
            packer.add(rows, places, end_pos)
        packer.finish(path)
    _remove_from(out, split, len(records))
    files = [{"n": r["n"], **r["sha256"]} for r in records]
    return ShardedSplit(
        n=sum(r["n"] for r in records), windows=n_win, files=files,
        rows=int(records[-1]["next"]["row"]), reused=reused, peak_tokens=packer.peak_tokens,
        peak_docs=packer.peak_docs,
    )
