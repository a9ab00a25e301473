"""Generative-perplexity throughput of the smoke judge on CPU (``python benchmarks/bench_judge.py``).

Trains the smoke judge first (``python -m repro.judge train`` on the syn_stories stand-in, 3,000
stories, the smoke config: 2 layers, d = 64, context 128, 300 steps, 1 thread) unless ``--judge DIR``
names one, then scores ``--n`` (512) texts of about 80 judge tokens with ``gen_ppl`` in each
aggregation and with ``judge_entropy``, and prints tokens/s and samples/s (median of ``--repeat``
runs, after one warm-up call) per aggregation and batch size. ``--json PATH`` writes the numbers.
Everything runs in a temporary directory; the repository is never written.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def smoke_judge_config() -> dict:
    """The smoke config's judge (config/smoke.yaml `judges.smoke_judge.train`), minus its dataset."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["judges"]["smoke_judge"]
    return {k: v for k, v in cfg["train"].items() if k != "dataset"}


def train_smoke_judge(work: Path, threads: int) -> tuple[Path, float]:
    from repro.data.synthetic import generate
    from repro.io import write_jsonl

    rows = generate("stories", 14, {"train": 3000})["train"]
    data = work / "train.jsonl"
    write_jsonl(data, [{"id": f"syn_stories/train/{i}", **r} for i, r in enumerate(rows)])
    out = work / "smoke_judge"
    cmd = [
        sys.executable, "-m", "repro.judge", "train", "--data", str(data), "--kind", "text",
        "--config-json", json.dumps(smoke_judge_config()), "--threads", str(threads), "--out", str(out),
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out, time.perf_counter() - t0


def make_texts(judge: Path, n: int, n_tokens: int) -> list[str]:
    """``n`` held-out-like story texts cut to about ``n_tokens`` judge tokens."""
    from repro.data.synthetic import generate
    from repro.metrics.judge import load_judge_tokenizer

    tokenizer, _ = load_judge_tokenizer(str(judge))
    rows = generate("stories", 99, {"bench": 2 * n})["bench"]
    texts = []
    for i in range(n):
        joined = rows[2 * i]["text"] + " " + rows[2 * i + 1]["text"]
        ids = tokenizer(joined, add_special_tokens=False)["input_ids"][:n_tokens]
        texts.append(tokenizer.decode(ids))
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judge", default=None, help="judge directory (default: train the smoke judge)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=512, help="number of texts")
    p.add_argument("--tokens", type=int, default=80, help="judge tokens per text (about)")
    p.add_argument("--batch-sizes", default="8,64", help="comma-separated gen_ppl batch sizes")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=None, help="write the numbers here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from repro.metrics.judge import AGGREGATIONS, gen_ppl, judge_entropy

    command = "python " + shlex.join(["benchmarks/bench_judge.py", *sys.argv[1:]])
    print(f"command: {command}")
    results: dict = {"command": command, "threads": args.threads, "n": args.n, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.judge:
            judge = Path(args.judge)
        else:
            judge, train_s = train_smoke_judge(Path(tmp), args.threads)
            results["train_seconds"] = round(train_s, 2)
            print(f"smoke judge trained in {train_s:.1f} s (300 steps, {args.threads} thread(s))")
        texts = make_texts(judge, args.n, args.tokens)
        samples = [{"hypothesis": t} for t in texts]

        def timed(fn, **kw):
            fn(samples[:16], **kw)  # warm-up: loading, first-call overheads
            times, res = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = fn(samples, **kw)
                times.append(time.perf_counter() - t0)
            return statistics.median(times), res

        print(f"{'metric':<34}{'batch':>6}{'tokens':>8}{'tok/s':>10}{'samples/s':>11}{'value':>9}")
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            for agg in AGGREGATIONS:
                sec, res = timed(
                    gen_ppl, judge=str(judge), aggregation=agg, batch_size=bs, device="cpu"
                )
                n_tok = res.details["n_judge_tokens"]
                row = {
                    "metric": f"gen_ppl/{agg}",
                    "batch_size": bs,
                    "tokens": n_tok,
                    "seconds": round(sec, 4),
                    "tokens_per_s": round(n_tok / sec, 1),
                    "samples_per_s": round(args.n / sec, 1),
                    "value": res.value,
                }
                results["rows"].append(row)
                print(
                    f"{row['metric']:<34}{bs:>6}{n_tok:>8}{row['tokens_per_s']:>10.0f}"
                    f"{row['samples_per_s']:>11.1f}{res.value:>9.3f}"
                )
        sec, res = timed(judge_entropy, judge=str(judge), max_length=args.tokens)
        row = {"metric": "judge_entropy", "seconds": round(sec, 4), "value": res.value}
        row["samples_per_s"] = round(args.n / sec, 1)
        results["rows"].append(row)
        print(f"{'judge_entropy (tokenizer only)':<34}{'':>6}{'':>8}{'':>10}"
              f"{row['samples_per_s']:>11.1f}{res.value:>9.3f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
