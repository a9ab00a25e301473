"""Stage ``prepare_dataset``: normalised ``train/validation/test.jsonl`` for one dataset.

Usage::

    python -m repro.data.prepare --dataset NAME --config-json JSON [--raw DIR] --out-dir DIR

``JSON`` is the dataset's config (see :mod:`repro.data.config`), or ``@file.json``. Where the rows
come from, in order of precedence: the synthetic generator (``loader: synthetic``), the ``local``
files, the ``--raw`` folder written by ``python -m repro.data.download``; otherwise it fails with
a message saying which source split is missing. No network is used.

Writes ``{split}.jsonl`` (atomically, rows as in docs/architecture.md "Normalised dataset rows")
and ``stats.json`` (per split: source, rows read, filtered, dropped, capped), prints the counts.
Row ids are ``{dataset}/{split}/{index}`` (0-based), or ``{dataset}/{source id}`` where the source
has its own (MBPP ``task_id``, HumanEval ``task_id``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from repro.io import (
    InputError,
    atomic_write_json,
    json_object_arg,
    run_cli,
    stage_parser,
    write_jsonl,
)

from .config import DataConfig, parse_config
from .hub import open_source
from .normalise import FILTERED, TASK_FIELDS, EmptyField, Mapper, check_field, make_field_mapper
from .registry import GENERIC_LOADER, LOADERS, SPLITS
from .synthetic import generate


def needs_download(cfg: dict) -> bool:
    """True iff some split is read from the hub: not synthetic and not all covered by ``local``."""
    return bool(parse_config("<dataset>", cfg).hub_splits())


def load_split(
    name: str, cfg: dict, split: str, raw_dir: str | os.PathLike | None = None
) -> list[dict]:
    """The normalised rows of ``split`` (train / validation / test) of dataset ``name``."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    dc = parse_config(name, cfg)
    return list(_iter_split(dc, split, raw_dir, {}))


def prepare_dataset(
    name: str, cfg: dict, out_dir: str | os.PathLike, raw_dir: str | os.PathLike | None = None
) -> dict[str, int]:
    """Write ``out_dir/{train,validation,test}.jsonl`` and ``stats.json``; returns row counts.

    Validation and test are built first and train is streamed to disk, so a failure in any split
    leaves no ``.jsonl`` of this call behind (each file is also written atomically). Local JSON
    Lines files and saved hub copies are read row by row, so train's memory does not grow with
    its size (except for loaders that filter rows, whose slice bounds need the kept rows).
    """
    dc = parse_config(name, cfg)
    out = Path(out_dir)
    stats: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    small = {s: list(_iter_split(dc, s, raw_dir, stats[s])) for s in SPLITS if s != "train"}
    counts = {"train": write_jsonl(out / "train.jsonl", _iter_split(dc, "train", raw_dir, stats["train"]))}
    for s, rows in small.items():
        counts[s] = write_jsonl(out / f"{s}.jsonl", rows)
    atomic_write_json(out / "stats.json", {"dataset": name, "kind": dc.kind, "splits": stats})
    return {s: counts[s] for s in SPLITS}


# --------------------------------------------------------------------------- internals


def _iter_split(
    dc: DataConfig, split: str, raw_dir: str | os.PathLike | None, stats: dict[str, Any]
) -> Iterator[dict]:
    """Normalised, validated rows of ``split`` with ids; fills ``stats``; raises if empty."""
    rows = _synthetic_rows(dc, split, stats) if dc.is_synthetic else _real_rows(dc, split, raw_dir, stats)
    cap = dc.max_rows.get(split)
    fields = TASK_FIELDS[dc.kind]
    seen: set[str] = set()  # ids from the source; the numbered ones are distinct by construction
    n = 0
    for n, (loc, row) in enumerate(islice(rows, cap), start=1):
        source_id = row.pop("_source_id", None)
        rid = f"{dc.name}/{source_id}" if source_id is not None else f"{dc.name}/{split}/{n - 1}"
        if rid in seen:
            raise InputError(f"{loc}: duplicate id {rid!r} in {dc.name}/{split}")
        if source_id is not None:
            seen.add(rid)
        for f in fields:
            if f not in row:
                raise InputError(f"{loc}: missing field {f!r}")
            check_field(row[f], f, loc)
        yield {"id": rid, **{f: row[f] for f in fields}}
    stats["rows"] = n
    if cap is not None:
        stats["max_rows"] = cap
    if n == 0:
        raise InputError(
            f"dataset {dc.name!r}: split {split!r} is empty ({_describe(stats)}); "
            f"check datasets.{dc.name}.splits.{split}, .max_rows and the source files"
        )


def _describe(stats: dict[str, Any]) -> str:
    keys = ("source", "source_rows", "slice", "filtered", "dropped_empty")
    return ", ".join(f"{k}: {stats[k]}" for k in keys if k in stats) or "no rows generated"


def _synthetic_rows(dc: DataConfig, split: str, stats: dict[str, Any]) -> Iterator[tuple[str, dict]]:
    assert dc.generator is not None and dc.seed is not None
    rows = generate(dc.generator, dc.seed, dc.size)[split]
    stats.update(source=f"synthetic:{dc.generator} seed {dc.seed}", source_rows=len(rows))
    for i, row in enumerate(rows, start=1):
        yield f"synthetic {dc.generator}/{split} row {i}", dict(row)


def _real_rows(
    dc: DataConfig, split: str, raw_dir: str | os.PathLike | None, stats: dict[str, Any]
) -> Iterator[tuple[str, dict]]:
    spec = dc.splits[split]
    src = open_source(dc, spec.source, raw_dir)
    mapper, filters = _mapper(dc)
    n = len(src)
    stats.update(source=f"{spec} <- {src.desc}", source_rows=n, filtered=0, dropped_empty=0)

    def normalised(start: int, stop: int) -> Iterator[tuple[str, dict]]:
        for loc, raw in src.iter_rows(start, stop):
            try:
                row = mapper(raw, loc, dc.options)
            except EmptyField:
                if not dc.options.get("drop_empty"):
                    raise
                stats["dropped_empty"] += 1
                continue
            if row is FILTERED:
                stats["filtered"] += 1
                continue
            yield loc, row

    if filters:  # slice bounds index the rows that survive filtering: scan them all
        kept = list(normalised(0, n))
        start, stop = spec.bounds(len(kept))
        stats["slice"] = [start, stop]
        yield from kept[start:stop]
    else:
        start, stop = spec.bounds(n)
        stats["slice"] = [start, stop]
        yield from normalised(start, stop)


def _mapper(dc: DataConfig) -> tuple[Mapper, bool]:
    """The row mapper of ``dc``'s loader and whether it may filter rows (slices then count kept rows)."""
    if dc.loader == GENERIC_LOADER:
        return make_field_mapper(dc.name, dc.kind, dc.fields), False
    spec = LOADERS[dc.loader]
    return spec.mapper, spec.filters


# --------------------------------------------------------------------------- CLI


def read_config_arg(text: str) -> dict:
    """``--config-json``: a JSON object, or ``@path`` to a file holding one."""
    return json_object_arg(text, "--config-json")


def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("repro.data.prepare", __doc__)
    ap.add_argument("--dataset", required=True, help="dataset name (ids and messages use it)")
    ap.add_argument("--config-json", required=True, help="the dataset's config as JSON, or @file")
    ap.add_argument("--raw", default=None, help="folder written by repro.data.download")
    ap.add_argument("--out-dir", required=True, help="e.g. results/data/NAME")
    args = ap.parse_args(argv)
    def body() -> None:
        counts = prepare_dataset(args.dataset, read_config_arg(args.config_json), args.out_dir, args.raw)
        print(json.dumps({"dataset": args.dataset, "out_dir": args.out_dir, "counts": counts}))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
