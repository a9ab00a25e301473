"""Packing benchmark: the ``lm`` / ``packing: stream`` tokenize path, sharded vs in memory.

Usage::

    .venv/bin/python benchmarks/bench_packing.py [DIR] [--tokens 100e6] [--old-tokens 20e6]
        [--seq-len 1024] [--shard-windows 65536] [--threads 1] [--work DIR]

``DIR`` is a directory of JSONL samples: every ``DIR/*/train.jsonl`` is read, rows with ``text``
as is and rows with ``instruction``/``response`` as the two joined by a blank line. A byte-level
BPE tokenizer (16,384 ids) is trained on those texts, then the texts are repeated, as rows of a
prepared split (``{"id", "text"}``), until the slice holds ``--tokens`` tokens (with one EOS per
row), and the slice is packed into windows of ``--seq-len``:

1. sharded (:func:`repro.tokenization.shards.write_stream_shards`, ``--shard-windows``) on the
   ``--old-tokens`` slice, then on the ``--tokens`` slice;
2. in memory (what the tokenize stage does without ``shard_windows``: read the JSONL, encode the
   split, write the arrays) on the ``--old-tokens`` slice.

``--only sharded`` / ``--only memory`` runs one of them, so the peak RSS printed is its own.

Each prints the wall time, tokens/s and the process's peak RSS so far (``ru_maxrss``; the runs go
in that order, so each peak is that of the runs so far) and the extrapolation of the sharded run
to 10B tokens (time at this throughput, disk of the arrays, memory). ``--threads`` caps the
tokenizer's thread pool (set before it is imported). The work directory is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", default="data",
                    help="a directory of JSONL samples laid out as config/small-cpu.yaml's header "
                         "says (default: %(default)s, small-cpu's data_root)")
    ap.add_argument("--tokens", type=float, default=100e6)
    ap.add_argument("--old-tokens", type=float, default=20e6)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--shard-windows", type=int, default=65536)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("sharded", "memory"), default=None,
                    help="run one path only (its own peak RSS); default: both, sharded first")
    ap.add_argument("--work", default=None, help="scratch directory (default: a new temporary one)")
    return ap.parse_args()


def _texts(root: Path) -> list[str]:
    texts = []
    for path in sorted(root.glob("*/train.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                if isinstance(row.get("text"), str):
                    texts.append(row["text"])
                elif isinstance(row.get("instruction"), str) and isinstance(row.get("response"), str):
                    texts.append(row["instruction"] + "\n\n" + row["response"])
    if not texts:
        sys.exit(f"error: {root}: no */train.jsonl with text or instruction/response rows")
    return texts


def _write_slice(path: Path, texts: list[str], counts: list[int], target: float) -> int:
    """Rows cycling through ``texts`` until ``target`` tokens; returns the tokens written."""
    total, i = 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while total < target:
            k = i % len(texts)
            fh.write(json.dumps({"id": f"bench/train/{i}", "text": texts[k]}) + "\n")
            total += counts[k]
            i += 1
    return total


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _du(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def _extrapolate(result: tuple, n_tok: int, seq_len: int, threads: int) -> None:
    wall, peak, disk = result
    scale = 10e9 / n_tok
    print(f"10B tokens at L={seq_len}, sharded, extrapolated: {wall * scale / 3600:.1f} h on "
          f"{threads} tokenizer thread(s), {disk * scale / 2**30:,.0f} GiB of arrays, peak RSS "
          f"~{peak:,.0f} MiB (independent of the split's size); in memory it would hold >= "
          f"{10e9 * 4 / 2**30:,.0f} GiB of int32 ids alone")


def main() -> int:
    args = _args()
    for var in ("RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        os.environ[var] = str(args.threads)
    from repro.io import read_jsonl
    from repro.tokenization import encode_split, get_layout, train_tokenizer, write_tokenized
    from repro.tokenization.shards import write_stream_shards

    root = Path(args.dir)
    texts = _texts(root)
    t0 = time.perf_counter()
    tok = train_tokenizer(texts, {"algorithm": "bytelevel_bpe", "vocab_size": 16384})
    counts = [len(e.ids) + 1 for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    print(f"samples: {len(texts)} texts, {sum(counts):,} tokens per pass; tokenizer trained in "
          f"{time.perf_counter() - t0:.1f} s; threads={args.threads}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_packing."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        small, big = work / "small.jsonl", work / "big.jsonl"
        n_small = _write_slice(small, texts, counts, args.old_tokens)
        n_big = _write_slice(big, texts, counts, args.tokens)
        base = _peak_mib()
        print(f"slices: {n_small:,} and {n_big:,} tokens ({small.stat().st_size / 2**20:,.0f} and "
              f"{big.stat().st_size / 2**20:,.0f} MiB of JSONL); peak RSS before packing "
              f"{base:,.0f} MiB")
        L = args.seq_len
        layout = get_layout("lm", L, tok, packing="stream", shard_windows=args.shard_windows)
        results = {}
        runs = () if args.only == "memory" else (("sharded", small, n_small), ("sharded", big, n_big))
        for name, src, n_tok in runs:
            out = work / f"out_{src.stem}"
            t = time.perf_counter()
            res = write_stream_shards(src, layout, out, "train")
            wall = time.perf_counter() - t
            disk = _du(out.glob("train.*"))
            results[(name, n_tok)] = (wall, _peak_mib(), disk)
            print(f"{name:8s} {n_tok / 1e6:7.1f}M tokens: {wall:7.1f} s, {n_tok / wall / 1e6:.2f}M "
                  f"tokens/s, {res.n:,} windows in {len(res.files)} shards, {disk / 2**20:,.0f} MiB "
                  f"on disk, peak RSS {_peak_mib():,.0f} MiB (buffered at most {res.peak_tokens:,} "
                  f"tokens, {res.peak_docs:,} rows)")
            shutil.rmtree(out)
        if args.only == "sharded" or args.only is None:
            _extrapolate(results[("sharded", n_big)], n_big, L, args.threads)
        if args.only == "sharded":
            return 0
        out = work / "out_old"
        t = time.perf_counter()
        rows = read_jsonl(small)
        enc = encode_split(rows, get_layout("lm", L, tok, packing="stream"), where=str(small))
        write_tokenized(out, layout, {"train": enc})
        wall = time.perf_counter() - t
        del rows, enc
        print(f"{'memory':8s} {n_small / 1e6:7.1f}M tokens: {wall:7.1f} s, {n_small / wall / 1e6:.2f}M "
              f"tokens/s, {(out / 'meta.json').stat().st_size / 2**20:.1f} MiB meta.json, peak RSS "
              f"{_peak_mib():,.0f} MiB")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
