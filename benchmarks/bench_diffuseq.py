"""Sampler overhead of DiffuSeq: wall time of a sample call per network call.

    .venv/bin/python benchmarks/bench_diffuseq.py [--device cpu|cuda] [--batch 8] [--seq-len 64]
        [--vocab 1000] [--d-model 256] [--layers 4] [--reps 3] [--json out.json]

overhead = time(sample(nfe=k)) / (calls × time of one network call), for each sampler at
k ∈ {16, 64}, where calls is the NFE the sampler reports (``ddim_gap`` makes ⌈T/(T//k)⌉ calls,
65 for k = 64 at T = 2000). ``ddpm`` runs at nfe = T, so it is timed on a model with
diffusion_steps = k (same network, same per-call cost); the DDIM samplers on T = 2000. Everything
the sampler adds to the network — nearest-embedding clamping over the vocabulary, the update,
anchoring, the final lm_head argmax — is in the numerator; the target is overhead ≤ 1.10 with
clamping on. Times are medians over ``--reps`` after one warm-up call; randomly initialised
weights (the cost does not depend on them).

On a shared CPU the per-call time drifts between separate measurements, so the script also reports
``in_run`` = sample wall time / the wall time of its own network calls, timed by forward hooks
inside the same sample call (robust to load changing between runs; on CUDA the hooks synchronise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from repro.methods.base import Batch
from repro.methods.diffuseq import DiffuSeq

KS = (16, 64)
SAMPLERS = ("ddpm", "ddim_gap", "ddim_respaced")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, reps: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_run_ratio(run, model: torch.nn.Module, device: torch.device) -> float:
    """Wall time of one ``run()`` / the wall time of the network calls made inside it."""
    spent = [0.0]
    start = [0.0]

    def pre(mod, args):
        sync(device)
        start[0] = time.perf_counter()

    def post(mod, args, out):
        sync(device)
        spent[0] += time.perf_counter() - start[0]

    handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    try:
        sync(device)
        t0 = time.perf_counter()
        run()
        sync(device)
        total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    return total / spent[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--emb-dim", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"command: {' '.join(sys.argv)}")
    print(f"cpus: {os.cpu_count()}  torch {torch.__version__}  device {device}  "
          f"threads {torch.get_num_threads()}")
    print(f"model: d={args.d_model} layers={args.layers} emb={args.emb_dim} V={args.vocab} "
          f"B={args.batch} L={args.seq_len}")

    method = DiffuSeq()
    half = args.seq_len // 2
    ids = torch.randint(7, args.vocab, (args.batch, args.seq_len), device=device)
    cond = torch.zeros(args.batch, args.seq_len, dtype=torch.bool, device=device)
    cond[:, :half] = True
    batch = Batch(torch.where(cond, ids, 0), cond)

    def build(steps: int):
        torch.manual_seed(0)
        cfg = dict(d_model=args.d_model, n_layers=args.layers, n_heads=4, emb_dim=args.emb_dim,
                   dropout=0.0, diffusion_steps=steps, pad_id=0)
        return method.build_model(cfg, args.vocab, args.seq_len).to(device).eval()

    rows = []
    models = {}
    for sampler in SAMPLERS:
        for k in KS:
            steps = k if sampler == "ddpm" else 2000
            model = models.setdefault(steps, build(steps))
            z = torch.randn(args.batch, args.seq_len, args.emb_dim, device=device)
            t = torch.full((args.batch,), steps // 2, device=device)
            with torch.inference_mode():
                per_call = median_time(lambda m=model, z=z, t=t: m(z, t), 5 * args.reps, device)
            for clamp in (True, False):
                gen = torch.Generator(device).manual_seed(0)
                result: dict = {}

                def run(m=model, s=sampler, k=k, c=clamp, g=gen, out=result):
                    with torch.inference_mode():
                        out["nfe"] = method.sample(m, batch, k, s, g, clamp=c).nfe

                seconds = median_time(run, args.reps, device)
                calls = result["nfe"]
                in_run = statistics.median(in_run_ratio(run, model, device) for _ in range(args.reps))
                row = {"sampler": sampler, "k": k, "T": steps, "clamp": clamp, "calls": calls,
                       "sample_s": seconds, "call_s": per_call,
                       "overhead": seconds / (calls * per_call), "in_run": in_run}
                rows.append(row)
                print(f"{sampler:<14} k={k:<3} T={steps:<5} clamp={clamp!s:<5} calls={calls:<3} "
                      f"sample {seconds * 1e3:8.1f} ms  call {per_call * 1e3:6.2f} ms  "
                      f"overhead {row['overhead']:.3f}  in_run {in_run:.3f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
