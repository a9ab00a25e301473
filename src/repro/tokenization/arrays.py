"""Tokenized splits on disk: ``{split}.ids.npy`` / ``{split}.cond.npy`` and ``meta.json``.

For a layout of sequence length L a split of N rows is two arrays, ``ids`` int32 (N, L) and
``cond`` uint8 (N, L) (1 where a position is given), plus the split's ``n`` and ``row_ids`` in
``meta.json``; a sharded split keeps ``(0, L)`` placeholders here and its rows in shards
(:mod:`.shards`). :func:`write_tokenized` writes them (meta.json last); :func:`read_meta` and
:func:`load_tokenized` are the one reader, used by the tokenize stage's tests and by training,
sampling and analysis, and check the arrays against meta.json before anything uses them.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repro.io import InputError, atomic_path, atomic_write_json, read_json

from .shards import ShardedArray, ShardedSplit, open_shards

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from .layouts import Layout

#: keys every meta.json has (written by :func:`write_tokenized`)
META_KEYS = ("layout", "options", "seq_len", "vocab_size", "specials", "tokenizer_sha256", "splits")
#: the arrays of a split and their dtypes
PARTS = (("ids", np.dtype(np.int32)), ("cond", np.dtype(np.uint8)))


@dataclass
class EncodedSplit:
    ids: np.ndarray  # int32 (N, L)
    cond: np.ndarray  # uint8 (N, L)
    row_ids: list[str]
    dropped: int
    truncated: int
    drop_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class TokenizedSplit:
    """One split of a tokenized layout as :func:`load_tokenized` maps it (read-only)."""

    ids: np.ndarray | ShardedArray  # int32 (N, L), memory-mapped read-only
    cond: np.ndarray | ShardedArray  # uint8 (N, L), memory-mapped read-only
    row_ids: Sequence[str] | None  # a list, ShardedRowIds for a sharded split, None if unrecorded
    meta: dict

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def batch(self, rows: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids int64, cond bool) tensors of the given rows (an index array or a slice) (torch is imported on first use)."""
        import torch

        ids = torch.from_numpy(np.asarray(self.ids[rows], dtype=np.int64))
        cond = torch.from_numpy(np.asarray(self.cond[rows]) != 0)
        return ids, cond


def encode_split(rows: Sequence[dict], layout: Layout, where: str = "rows") -> EncodedSplit:
    """Encode all rows of a split; ``where`` (e.g. the jsonl path) prefixes error messages."""
    rows = list(rows)
    layout.check_rows(rows, where)
    length = layout.seq_len
    ids_blocks, cond_blocks = [], []
    ids_buf: list[list[int]] = []
    cond_buf: list[list[int]] = []
    row_ids: list[str] = []
    reasons: Counter[str] = Counter()
    truncated = 0

    def flush() -> None:
        if ids_buf:
            ids_blocks.append(np.asarray(ids_buf, dtype=np.int32))
            cond_blocks.append(np.asarray(cond_buf, dtype=np.uint8))
            ids_buf.clear()
            cond_buf.clear()

    for row_id, enc in layout.iter_encoded(rows):
        if isinstance(enc, str):
            reasons[enc] += 1
            continue
        ids_buf.append(enc.ids)
        cond_buf.append(enc.cond)
        row_ids.append(row_id)
        truncated += enc.truncated
        if len(ids_buf) >= 4096:
            flush()
    flush()
    ids = np.concatenate(ids_blocks) if ids_blocks else np.zeros((0, length), np.int32)
    cond = np.concatenate(cond_blocks) if cond_blocks else np.zeros((0, length), np.uint8)
    return EncodedSplit(ids, cond, row_ids, sum(reasons.values()), truncated, dict(reasons))


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """sha256 of ``Tokenizer.to_str()`` (the train stage writes exactly these bytes)."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def write_tokenized(
    out_dir: str | os.PathLike,
    layout: Layout,
    splits: dict[str, EncodedSplit | ShardedSplit],
    meta_extra: dict | None = None,
) -> dict:
    """Write ``{split}.ids.npy``, ``{split}.cond.npy`` and ``meta.json`` (last), atomically.

    A :class:`ShardedSplit` (its shards already written by
    :func:`~repro.tokenization.shards.write_stream_shards`) gets ``(0, L)`` placeholder arrays and
    its shard manifest in meta.json instead of ``row_ids``.
    """
    out = Path(out_dir)
    meta = {
        "layout": layout.name,
        "options": layout.stored_options(),
        "seq_len": layout.seq_len,
        "vocab_size": layout.tokenizer.get_vocab_size(with_added_tokens=True),
        "specials": layout.specials.as_dict(),
        "tokenizer_sha256": tokenizer_sha256(layout.tokenizer),
        "splits": {},
    }
    clash = set(meta_extra or {}) & set(meta)
    if clash:
        raise ValueError(f"meta_extra may not override {sorted(clash)}")
    meta.update(meta_extra or {})
    for split, enc in splits.items():
        if isinstance(enc, ShardedSplit):
            for part, dtype in PARTS:
                _save_npy(out / f"{split}.{part}.npy", np.zeros((0, layout.seq_len), dtype))
            meta["splits"][split] = {
                "n": enc.n, "dropped": 0, "truncated": 0, "shards": enc.manifest(),
            }
            continue
        n = len(enc.row_ids)
        if enc.ids.shape != (n, layout.seq_len) or enc.cond.shape != (n, layout.seq_len):
            raise ValueError(f"split {split}: arrays of shape {enc.ids.shape}/{enc.cond.shape} do "
                             f"not match {n} row ids and seq_len {layout.seq_len}")
        _save_npy(out / f"{split}.ids.npy", enc.ids.astype(np.int32, copy=False))
        _save_npy(out / f"{split}.cond.npy", enc.cond.astype(np.uint8, copy=False))
        meta["splits"][split] = {
            "n": n, "row_ids": list(enc.row_ids), "dropped": int(enc.dropped),
            "truncated": int(enc.truncated),
        }
    atomic_write_json(out / "meta.json", meta, indent=None)
    return meta


def read_meta(directory: str | os.PathLike) -> dict:
    """``meta.json`` of a tokenized directory, with every key of :data:`META_KEYS`."""
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise InputError(
            f"{path}: file not found; run the tokenize stage for this layout first"
        )
    meta = read_json(path)
    for key in META_KEYS:
        if key not in meta:
            raise InputError(
                f"{path}: missing key {key!r} (written by an older version?); rerun the tokenize "
                "stage"
            )
    return meta


def load_tokenized(
    directory: str | os.PathLike, split: str, meta: dict | None = None
) -> TokenizedSplit:
    """Memory-map one split's arrays (read-only) with its row ids and the layout's meta.

    ``meta`` is :func:`read_meta` of ``directory`` (read here when not given). The split must be
    listed in meta.json; its arrays must be int32 / uint8 of shape (n, seq_len) as meta.json
    records, non-empty, with one row id per row. A sharded split (``splits.{split}.shards``) is
    mapped as one array over its shards.
    """
    directory = Path(directory)
    meta = read_meta(directory) if meta is None else meta
    info = _split_info(directory, split, meta)
    if "shards" in info:
        ids, cond, row_ids = open_shards(directory, split, info, meta["seq_len"])
        return TokenizedSplit(ids, cond, row_ids, meta)
    ids, cond = (_load_part(directory, split, part, dtype, info, meta) for part, dtype in PARTS)
    if ids.shape != cond.shape:
        raise InputError(
            f"{directory}: {split}.ids.npy {ids.shape} and {split}.cond.npy {cond.shape} differ"
        )
    if ids.shape[0] == 0:
        raise InputError(f"{directory}/{split}.ids.npy: the split is empty")
    row_ids = info.get("row_ids")
    if row_ids is not None and len(row_ids) != ids.shape[0]:
        raise InputError(
            f"{directory}/meta.json: splits.{split}.row_ids has {len(row_ids)} entries "
            f"but {split}.ids.npy has {ids.shape[0]} rows; rerun tokenize"
        )
    return TokenizedSplit(ids, cond, None if row_ids is None else list(row_ids), meta)


def _split_info(directory: Path, split: str, meta: dict) -> dict:
    """``meta["splits"][split]``; a split meta.json does not list is an error naming those it has."""
    splits = meta["splits"]
    if split not in splits:
        msg = f"{directory}/meta.json: no split {split!r}; it has {sorted(splits)}"
        ids_path = directory / f"{split}.ids.npy"
        if not ids_path.is_file():
            msg += f" ({ids_path}: file not found)"
        raise InputError(msg)
    return splits[split]


def _load_part(
    directory: Path, split: str, part: str, dtype: np.dtype, info: dict, meta: dict
) -> np.ndarray:
    """``{split}.{part}.npy`` memory-mapped, checked against meta.json (dtype, n, seq_len)."""
    path = directory / f"{split}.{part}.npy"
    if not path.is_file():
        raise InputError(
            f"{path}: file not found; run the tokenize stage for split {split!r} (meta.json "
            "lists it)"
        )
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    n = info.get("n", arr.shape[0])
    if arr.dtype != dtype or arr.shape != (n, meta["seq_len"]):
        raise InputError(
            f"{path}: {arr.dtype} {arr.shape}, expected {dtype} ({n}, {meta['seq_len']}) per "
            "meta.json (the directory mixes two tokenize runs?) — re-run the tokenize stage"
        )
    return arr
