"""Sampler overhead of DiffuSeq: wall time of a sample call per network call.

    .venv/bin/python benchmarks/bench_diffuseq.py [--device cpu|cuda] [--configs small,paper]
        [--batch 8] [--seq-len 64] [--vocab 1000] [--d-model 256] [--layers 4] [--heads 4]
        [--reps 3] [--paper-batch 2] [--paper-ks 16] [--paper-reps 1] [--json out.json]

Two configurations: ``small`` (the flags above: d 256, 4 layers, 4 heads, emb 128, V 1000,
L 64, batch 8; k ∈ {16, 80}; clamp on and off) and ``paper`` (DiffuSeq's model: d 768, 12 layers,
12 heads, emb 128, V 30,522 (bert-base-uncased), L 128, at a small batch ``--paper-batch``; k
``--paper-ks`` (16: the smallest k the target is about, where the fixed costs weigh most), clamp
on only (``--paper-clamp both`` adds off) — the configuration the target is about).

overhead = time(sample(nfe=k)) / (calls × time of one network call), for each sampler at each k,
where calls is the NFE the sampler reports (``ddim_gap`` steps every T // k: k must satisfy
⌈T/(T//k)⌉ = k, as every divisor of T = 2000 does). ``ddpm`` runs at nfe = T, so it is timed on a model with diffusion_steps = k (same
network, same per-call cost); the DDIM samplers on T = 2000. Everything the sampler adds to the
network — nearest-embedding clamping over the vocabulary, the update, anchoring, the final
lm_head argmax — is in the numerator; the target is overhead ≤ 1.10 with clamping on. Each of
``--reps`` (``--paper-reps``) rounds times ``CALLS_PER_REP`` (3) bare network calls (their
median) right before one sample run and divides by it; overhead and the printed times are
medians over rounds. The small configuration has one untimed warm-up sample run first, the
paper one only a warm-up network call. Randomly initialised weights (the cost does not depend
on them).

On a shared CPU the per-call time drifts between separate measurements, so the script also reports
``in_run`` = sample wall time / the wall time of its own network calls, timed by forward hooks
inside the same sample calls (robust to load changing between runs; on CUDA the hooks
synchronise). ``--threads 0`` uses the cores the load average leaves idle: more OpenMP threads
than idle cores can make every call many times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from _common import add_threads_arg, auto_threads, half_batch, overhead_rounds, overhead_summary

from repro.methods.diffuseq import DiffuSeq

KS = (16, 80)  # ddim_gap makes exactly k calls at T = 2000 (64 would make 65: refused)
SAMPLERS = ("ddpm", "ddim_gap", "ddim_respaced")
PAPER = dict(d_model=768, layers=12, heads=12, emb_dim=128, vocab=30522, seq_len=128)


def bench(cfg: argparse.Namespace, method: DiffuSeq, device: torch.device) -> list[dict]:
    """Rows of one configuration: every sampler × k × clamp."""
    print(
        f"[{cfg.name}] model: d={cfg.d_model} layers={cfg.layers} heads={cfg.heads} "
        f"emb={cfg.emb_dim} V={cfg.vocab} B={cfg.batch} L={cfg.seq_len}",
        flush=True,
    )
    batch = half_batch(cfg.batch, cfg.seq_len, cfg.seq_len // 2, cfg.vocab, device, fill=0)

    def build(steps: int):
        torch.manual_seed(0)
        model_cfg = dict(
            d_model=cfg.d_model,
            n_layers=cfg.layers,
            n_heads=cfg.heads,
            emb_dim=cfg.emb_dim,
            dropout=0.0,
            diffusion_steps=steps,
            pad_id=0,
        )
        return method.build_model(model_cfg, cfg.vocab, cfg.seq_len).to(device).eval()

    rows = []
    models = {}
    for sampler in SAMPLERS:
        for k in cfg.ks:
            steps = k if sampler == "ddpm" else 2000
            model = models.setdefault(steps, build(steps))
            z = torch.randn(cfg.batch, cfg.seq_len, cfg.emb_dim, device=device)
            t = torch.full((cfg.batch,), steps // 2, device=device)

            def one_call(m=model, z=z, t=t) -> None:
                m(z, t)  # (under inference mode: the timed region is the bare call)

            with torch.inference_mode():
                one_call()  # warm-up
            for clamp in cfg.clamps:
                gen = torch.Generator(device).manual_seed(0)
                result: dict = {}

                def run(m=model, s=sampler, k=k, c=clamp, g=gen, out=result):
                    with torch.inference_mode():
                        out["nfe"] = method.sample(m, batch, k, s, g, clamp=c).nfe

                # an untimed warm-up run if cfg.warmup, then cfg.reps timed rounds
                with torch.inference_mode():
                    reps = overhead_rounds(
                        one_call, {"run": run}, model, device, cfg.reps, warmup=cfg.warmup
                    )["run"]
                calls = result["nfe"]  # the NFE the sampler reports
                row = {
                    "config": cfg.name,
                    "sampler": sampler,
                    "k": k,
                    "T": steps,
                    "clamp": clamp,
                    "calls": calls,
                    **overhead_summary(reps, calls),
                }
                rows.append(row)
                print(
                    f"{sampler:<14} k={k:<3} T={steps:<5} clamp={clamp!s:<5} calls={calls:<3} "
                    f"sample {row['sample_s'] * 1e3:8.1f} ms  call {row['call_s'] * 1e3:6.2f} ms  "
                    f"overhead {row['overhead']:.3f}  in_run {row['in_run']:.3f}",
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default="small,paper", help="comma-separated: small, paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--emb-dim", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--paper-batch", type=int, default=2)
    parser.add_argument("--paper-ks", default="16", help="comma-separated k (paper config)")
    parser.add_argument("--paper-reps", type=int, default=1)
    parser.add_argument("--paper-clamp", choices=("on", "both"), default="on")
    add_threads_arg(parser, default=1)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if set(configs) - {"small", "paper"}:
        parser.error(f"unknown configs in {args.configs!r}; choose from small, paper")
    device = torch.device(args.device)
    torch.set_num_threads(auto_threads(args.threads))
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"cpus: {os.cpu_count()}  load {os.getloadavg()[0]:.1f}  torch {torch.__version__}  "
        f"device {device}  threads {torch.get_num_threads()}"
    )

    method = DiffuSeq()
    rows = []
    for name in configs:
        if name == "small":
            cfg = argparse.Namespace(
                name=name,
                d_model=args.d_model,
                layers=args.layers,
                heads=args.heads,
                emb_dim=args.emb_dim,
                vocab=args.vocab,
                seq_len=args.seq_len,
                batch=args.batch,
                ks=KS,
                clamps=(True, False),
                reps=args.reps,
                warmup=True,
            )
        else:
            cfg = argparse.Namespace(
                name=name,
                **PAPER,
                batch=args.paper_batch,
                ks=tuple(int(k) for k in args.paper_ks.split(",")),
                clamps=(True,) if args.paper_clamp == "on" else (True, False),
                reps=args.paper_reps,
                warmup=False,  # the per-call timing has warmed the model
            )
        rows += bench(cfg, method, device)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
